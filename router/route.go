package router

import (
	"fmt"
	"math"
	"slices"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"

	"github.com/gmod-realtime/realtime/config"
	"github.com/gmod-realtime/realtime/router/pattern"
)

// Route is one compiled route: a config route or one registered from Lua
// with realtime.On. Its definition is immutable; its limiter and stats are
// safe for concurrent use and survive reloads that keep its name.
type Route struct {
	Name    string
	Handler string // realtime.Handler name, "hook:Name", or the dynamic route's key
	Decode  string // config.DecodeRaw or config.DecodeJSON
	Dynamic bool   // registered from Lua, untouched by Reload
	group   string // a stream route's consumer group, server id filled in

	def     config.Route
	match   *pattern.Pattern // the pattern, or the channel as a literal
	exclude []*pattern.Pattern
	limiter *rate.Limiter // nil: unlimited
	Stats   *RouteStats
}

// RouteStats counts one route's events. Safe for concurrent use.
type RouteStats struct {
	Matched       atomic.Uint64 // events whose channel matched (before limits)
	RateLimited   atomic.Uint64
	Dropped       atomic.Uint64 // queue full or too big
	Dispatched    atomic.Uint64
	HandlerErrors atomic.Uint64
	NoHandler     atomic.Uint64
	DecodeErrors  atomic.Uint64

	rateLogged atomic.Int64           // unix nanoseconds of the last rate-limit log line
	refused    atomic.Pointer[string] // why the server refused the route's subscription
}

// Refused is why the backend's server refused the subscription that
// carries the route's events (an ACL NOPERM, say), or "" when it did not.
func (s *RouteStats) Refused() string {
	if p := s.refused.Load(); p != nil {
		return *p
	}
	return ""
}

// Stream is the stream a stream route reads, or "".
func (r *Route) Stream() string { return r.def.Stream }

// Pattern is the route's pattern as a Redis glob (a channel route's channel
// or a stream route's stream quoted).
func (r *Route) Pattern() string { return r.match.String() }

// Rate is the route's rate limit.
func (r *Route) Rate() config.Rate { return r.def.Rate }

// Matches reports whether the route takes events of channel.
func (r *Route) Matches(channel string) bool {
	if !r.match.Match(channel) {
		return false
	}
	for _, ex := range r.exclude {
		if ex.Match(channel) {
			return false
		}
	}
	return true
}

// allow takes a token for one event at now.
func (r *Route) allow(now time.Time) bool {
	return r.limiter == nil || r.limiter.AllowN(now, 1)
}

// compileRoute builds a Route from a validated definition, reusing prev's
// limiter and stats when prev is the same route by name.
func compileRoute(def config.Route, prev *Route, now time.Time, serverID string) (*Route, error) {
	src := def.Pattern
	switch {
	case def.Stream != "":
		src = pattern.Quote(def.Stream)
	case src == "":
		src = pattern.Quote(def.Channel)
	}
	m, err := pattern.Compile(src)
	if err != nil {
		return nil, fmt.Errorf("route %q: %w", def.RouteName(), err)
	}
	r := &Route{Name: def.RouteName(), Handler: def.Handler, Decode: def.Decode, def: def, match: m}
	if def.Stream != "" {
		r.group = def.GroupName(serverID)
	}
	if r.Decode == "" {
		r.Decode = config.DecodeRaw
	}
	for _, ex := range def.Exclude {
		p, err := pattern.Compile(ex)
		if err != nil {
			return nil, fmt.Errorf("route %q: exclude: %w", r.Name, err)
		}
		r.exclude = append(r.exclude, p)
	}
	burst := def.Burst
	if burst == 0 {
		burst = def.Rate.DefaultBurst()
	}
	r.Stats = &RouteStats{}
	if prev != nil {
		r.Stats = prev.Stats
	}
	switch {
	case def.Rate.Unlimited():
	case prev != nil && prev.limiter != nil && prev.limiter.Limit() == rate.Limit(def.Rate.PerSecond) && prev.limiter.Burst() == burst:
		r.limiter = prev.limiter
	default:
		// A new bucket, never a change to prev's: prev stays in use until
		// the new table is installed, and unchanged if the change fails.
		// A reload that changed the rate keeps the bucket's tokens.
		r.limiter = rate.NewLimiter(rate.Limit(def.Rate.PerSecond), burst)
		if prev != nil && prev.limiter != nil {
			if spent := burst - int(math.Floor(prev.limiter.TokensAt(now))); spent > 0 {
				r.limiter.AllowN(now, min(spent, burst))
			}
		}
	}
	return r, nil
}

func sameDef(a, b config.Route) bool {
	return a.Name == b.Name && a.Channel == b.Channel && a.Pattern == b.Pattern &&
		slices.Equal(a.Exclude, b.Exclude) && a.Handler == b.Handler && a.Decode == b.Decode &&
		a.Rate.PerSecond == b.Rate.PerSecond && a.Burst == b.Burst &&
		a.Stream == b.Stream && a.Group == b.Group && a.Start == b.Start &&
		a.MaxDeliveries == b.MaxDeliveries && a.ClaimAfter == b.ClaimAfter
}

// Table is an immutable snapshot of the routes, swapped atomically on
// change so that matching never waits on a lock. Glob routes are indexed by
// their literal prefix, so a channel is only tested against the globs whose
// prefix it starts with: matching costs a few map lookups, not one test per
// route.
type Table struct {
	routes     []*Route            // config routes first, then dynamic, in order
	exact      map[string][]*Route // routes whose pattern is a literal channel
	globs      map[string][]*Route // other routes, by literal prefix
	prefixLens []int               // the distinct prefix lengths of globs, ascending
	order      map[*Route]int      // position in routes, to keep matches in order
	byName     map[string]*Route
	streams    map[streamKey]*Route // stream routes, by stream and group
}

type streamKey struct{ stream, group string }

func newTable(routes []*Route) *Table {
	t := &Table{routes: routes, exact: map[string][]*Route{}, globs: map[string][]*Route{},
		order: map[*Route]int{}, byName: map[string]*Route{}, streams: map[streamKey]*Route{}}
	for i, r := range routes {
		t.byName[r.Name] = r
		t.order[r] = i
		if r.def.Stream != "" {
			t.streams[streamKey{r.def.Stream, r.group}] = r
			continue
		}
		p := r.match.Prefix()
		if r.match.IsLiteral() {
			t.exact[p] = append(t.exact[p], r)
			continue
		}
		if _, seen := t.globs[p]; !seen {
			t.prefixLens = append(t.prefixLens, len(p))
		}
		t.globs[p] = append(t.globs[p], r)
	}
	slices.Sort(t.prefixLens)
	t.prefixLens = slices.Compact(t.prefixLens)
	return t
}

// Routes returns the routes in order. The slice must not be modified.
func (t *Table) Routes() []*Route { return t.routes }

// Route returns the route named name, or nil.
func (t *Table) Route(name string) *Route { return t.byName[name] }

// Match calls fn once for every route that takes channel, in route order.
func (t *Table) Match(channel string, fn func(*Route)) {
	var buf [8]*Route
	matched := buf[:0]
	for _, r := range t.exact[channel] {
		if r.Matches(channel) {
			matched = append(matched, r)
		}
	}
	for _, n := range t.prefixLens {
		if n > len(channel) {
			break
		}
		for _, r := range t.globs[channel[:n]] {
			if r.Matches(channel) {
				matched = append(matched, r)
			}
		}
	}
	if len(matched) > 1 {
		slices.SortFunc(matched, func(a, b *Route) int { return t.order[a] - t.order[b] })
	}
	for _, r := range matched {
		fn(r)
	}
}

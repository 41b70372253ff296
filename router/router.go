// Package router is the heart of the module, in pure Go: it matches each
// event from a Backend against the routes, applies each route's rate limit,
// decodes JSON off the main thread, and queues one event per matching route
// in a bounded Queue that the game's main thread drains.
//
// A Router is safe for concurrent use: backends call Deliver and SetStatus
// from their goroutines, the main thread calls Drain, Publish, On, Off and
// Apply. Matching reads an immutable route Table through an atomic pointer,
// so it never waits on a lock the main thread holds, and the reverse.
package router

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"

	"github.com/gmod-realtime/realtime/config"
	"github.com/gmod-realtime/realtime/router/pattern"
)

// rateLogEvery is how often a route over its rate limit is logged.
const rateLogEvery = 10 * time.Second

// ErrNoBackend is returned by Publish before a backend is attached.
var ErrNoBackend = errors.New("router: no backend")

// Router routes events between a Backend and the main thread.
type Router struct {
	table atomic.Pointer[Table]
	lim   atomic.Pointer[limits]
	queue *Queue
	// Stats are the global counters.
	Stats Stats

	status        atomic.Int32
	refusedLogged atomic.Int64 // unix nanoseconds of the last refused-publish log line
	now           func() time.Time
	pending       *atomic.Int64
	queued        func() // WithQueued

	gen   atomic.Uint64 // of the attached backend's sink
	sinks atomic.Uint64 // numbers sinks
	// retiring is the backend a Replace keeps delivering until its
	// successor is connected, and retiringSink its sink. draining are the
	// sinks of replaced backends that still deliver what they had read
	// until they have drained (more than one after Replaces in a row).
	retiring     Backend
	retiringSink *sink
	active       *sink
	draining     map[*sink]bool
	mu           sync.Mutex // serialises route and plan changes
	dynamic      []*Route
	plan         Plan
	backend      Backend
	// starting is the backend between Attach/Replace releasing mu and its
	// Start returning: plan changes meanwhile are not sent to it (a
	// Backend takes no Update before Start) but applied once it started.
	starting Backend
	refused  map[string]string // the active sink's: "c:channel" or "p:pattern" its server refused -> why
	// uncovered are the literal prefixes whose covering pattern
	// ("prefix*") Redis refused: the routes under them keep their own
	// subscriptions (an ACL checks PSUBSCRIBE patterns literally, so a
	// user allowed game:* may use every route's channel yet not game:chat:*).
	uncovered map[string]bool

	entriesMu sync.Mutex
	entries   map[entryKey]struct{} // stream entries queued or with Lua, not settled yet
	// fence is held for reading while a stream entry is checked and
	// queued, and for writing while the routes are swapped or a sink
	// stops delivering: once such a change returns, no entry it turned
	// away is still on its way into the queue.
	fence sync.RWMutex

	logMu     sync.Mutex
	logf      func(level, line string)
	logLimit  *rate.Limiter
	logMuted  int
	logLevels map[string]int
	logLevel  int
}

type limits struct {
	maxBytes   int64 // the queue's: an event bigger than the whole queue is too big
	maxEvents  int   // the queue's
	maxPayload int
	jsonDepth  int
	maxSubs    int
	serverID   string // names stream routes' groups and this server's consumer
}

// Summary says what Apply changed, by route name.
type Summary struct {
	Added, Removed, Changed []string
	Plan                    PlanDiff
	// Refused are the routes whose subscription Redis refuses, as known
	// when Apply returns: a route the change adds is refused (or not) a
	// moment later, reported by a log line and its RouteStats.Refused.
	Refused []string
}

func (s Summary) String() string {
	out := fmt.Sprintf("%d routes added, %d removed, %d changed; %d subscriptions added, %d removed",
		len(s.Added), len(s.Removed), len(s.Changed),
		len(s.Plan.Subscribe)+len(s.Plan.PSubscribe), len(s.Plan.Unsubscribe)+len(s.Plan.PUnsubscribe))
	if len(s.Refused) > 0 {
		out += fmt.Sprintf("; Redis refuses the subscriptions of routes %q", s.Refused)
	}
	return out
}

// Option configures a Router.
type Option func(*Router)

// WithClock replaces time.Now, for rate-limit tests.
func WithClock(now func() time.Time) Option { return func(r *Router) { r.now = now } }

// WithQueued has fn called after events were queued, on the goroutine
// that queued them (without the router's locks held).
func WithQueued(fn func()) Option { return func(r *Router) { r.queued = fn } }

// WithPendingCounter makes the queue keep its pending count in *p (see
// Queue.SharePending).
func WithPendingCounter(p *atomic.Int64) Option {
	return func(r *Router) { r.pending = p }
}

// WithLog sends the router's log lines (drops, decode errors), rate-limited
// by the config's log.rate, to fn. fn must not block; it is called from
// backend goroutines too.
func WithLog(fn func(level, line string)) Option { return func(r *Router) { r.logf = fn } }

// New returns a router for the config's routes and limits. Attach a backend
// to start receiving.
func New(cfg *config.Config, opts ...Option) (*Router, error) {
	r := &Router{now: time.Now, logLevels: map[string]int{"debug": 0, "info": 1, "warn": 2, "error": 3}, entries: map[entryKey]struct{}{}}
	for _, o := range opts {
		o(r)
	}
	r.queue = NewQueue(cfg.Queue.MaxEvents, int64(cfg.Queue.MaxBytes), cfg.Queue.Overflow != config.OverflowDropNewest)
	if r.pending != nil {
		r.queue.SharePending(r.pending)
	}
	r.table.Store(newTable(nil))
	if _, err := r.Apply(cfg); err != nil {
		return nil, err
	}
	return r, nil
}

// Queue returns the event queue.
func (r *Router) Queue() *Queue { return r.queue }

// Table returns the current route table.
func (r *Router) Table() *Table { return r.table.Load() }

// Plan returns the current subscription plan.
func (r *Router) Plan() Plan {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.plan
}

// Attach starts b with the current plan; later route changes reach it as
// plan diffs. After Close, Attach may start a new backend (a reconnect with
// other settings).
func (r *Router) Attach(b Backend) {
	r.mu.Lock()
	r.backend = b
	s := r.newSinkLocked(nil)
	r.activateLocked(s)
	retiring := r.retiring
	r.retiring, r.retiringSink = nil, nil
	r.stopDrainingLocked()
	plan := r.plan
	r.starting = b
	r.mu.Unlock()
	if retiring != nil {
		_ = retiring.Close()
	}
	r.start(b, s, plan)
}

// start starts b with plan, then sends it the plan changes made by other
// goroutines while it was starting.
func (r *Router) start(b Backend, s *sink, plan Plan) {
	b.Start(s, plan)
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.starting == b {
		r.starting = nil
	}
	if d := Diff(plan, r.plan); !d.Empty() {
		switch b {
		case r.backend:
			b.Update(d)
		case r.retiring: // replaced again meanwhile: it delivers until its successor connects
			d.StreamsChanged = false
			if !d.Empty() {
				b.Update(d)
			}
		}
	}
}

// Replace starts b beside the attached backend and hands over to it without
// a gap: Publish goes to b at once (b holds what it gets until connected),
// the attached backend keeps delivering until b reports StatusConnected,
// and is closed then. Until then b's messages and status changes are not
// used, so Lua sees no disconnect, and route changes go to both; a
// failure of b is logged. Messages
// published during the switch can arrive twice (once through each
// connection), never not at all.
func (r *Router) Replace(b Backend) {
	r.mu.Lock()
	old := r.backend
	if old == nil {
		r.mu.Unlock()
		r.Attach(b)
		return
	}
	if r.retiring == nil {
		r.retiring, r.retiringSink = old, r.active
	} else {
		// A second Replace before the first connected: the first's
		// backend never delivered; the one delivering stays.
		defer func() { _ = old.Close() }()
	}
	r.backend = b
	s := r.newSinkLocked(b)
	plan := r.plan
	r.starting = b
	r.mu.Unlock()
	r.start(b, s, plan)
}

// newSinkLocked returns a sink for a new backend; pending is the backend
// of a Replace (nil for Attach).
func (r *Router) newSinkLocked(pending Backend) *sink {
	return &sink{r: r, gen: r.sinks.Add(1), pending: pending, refused: map[string]string{}}
}

// activateLocked makes s the sink whose messages, statuses and refused
// subscriptions count.
func (r *Router) activateLocked(s *sink) {
	r.active = s
	r.fence.Lock()
	r.gen.Store(s.gen)
	r.fence.Unlock()
	r.refused = s.refused
	r.markRefusedLocked()
}

// stopDrainingLocked makes every draining sink's late messages ignored.
func (r *Router) stopDrainingLocked() {
	r.fence.Lock()
	defer r.fence.Unlock()
	for s := range r.draining {
		s.draining.Store(false)
	}
	r.draining = nil
}

// Drainer is a Backend that can be retired without losing what it has
// read: Drain calls done once everything its server sent before the call
// has been delivered. Router.Replace uses it when the old backend has it.
type Drainer interface {
	Drain(done func())
}

// promote makes s's backend, connected now, the one whose events count.
// The one it replaces still delivers what it had read until it has
// drained, and is closed then: a message published before the new
// subscriptions were in place comes through the old connection. It
// reports false when s's backend is no longer the router's (replaced
// again, or closed).
func (r *Router) promote(s *sink) bool {
	r.mu.Lock()
	if r.backend != s.pending {
		r.mu.Unlock()
		return false
	}
	old, oldSink := r.retiring, r.retiringSink
	r.retiring, r.retiringSink = nil, nil
	if old != nil && oldSink != nil {
		// Set before s takes over, so that no message of old's falls
		// between (Deliver checks the active sink first).
		oldSink.draining.Store(true)
		if r.draining == nil {
			r.draining = map[*sink]bool{}
		}
		r.draining[oldSink] = true
	}
	r.activateLocked(s)
	s.pending = nil
	r.mu.Unlock()
	if old == nil {
		return true
	}
	retire := func() {
		r.mu.Lock()
		if oldSink != nil && r.draining[oldSink] {
			r.fence.Lock()
			oldSink.draining.Store(false)
			r.fence.Unlock()
			delete(r.draining, oldSink)
		}
		r.mu.Unlock()
		_ = old.Close()
	}
	if d, ok := old.(Drainer); ok {
		d.Drain(retire)
	} else {
		retire()
	}
	return true
}

// sink is what one attached backend delivers to. After Close (or a newer
// Attach) its late calls are ignored, so a closing backend cannot report a
// status or a message after its successor.
type sink struct {
	r   *Router
	gen uint64
	// pending is the backend of a Replace until it connects: its
	// messages and statuses wait for promote, its publish reports count
	// at once.
	pending Backend
	// draining is set while s's backend is replaced and drains.
	draining atomic.Bool
	// refused are the subscriptions s's server refused (under r.mu):
	// the routes' marks once s is active.
	refused map[string]string
}

// delivering reports whether s's messages count: it is the active sink,
// or a replaced one draining.
func (s *sink) delivering() bool {
	return s.r.gen.Load() == s.gen || s.draining.Load()
}

// current reports whether s's reports about its own publishes and
// subscriptions count: it is the active sink, or the pending one.
func (s *sink) current() bool {
	if s.r.gen.Load() == s.gen {
		return true
	}
	s.r.mu.Lock()
	defer s.r.mu.Unlock()
	return s.pending != nil && s.r.backend == s.pending
}

func (s *sink) Deliver(channel, payload string) {
	if s.delivering() {
		s.r.Deliver(channel, payload)
	}
}

func (s *sink) Drop(reason string) {
	if s.delivering() {
		s.r.Stats.Drop(reason)
		s.r.Logf("warn", "dropped a message (%s): routing is not keeping up with Redis", reason)
	}
}

func (s *sink) PublishFailed(channel, reason string) {
	if s.current() {
		s.r.publishFailed(channel, reason, s.r.now())
	}
}

func (s *sink) SubscribeRefused(name string, isPattern bool, reason string) {
	if s.current() {
		s.r.subscribeRefused(s, name, isPattern, reason)
	}
}

func (s *sink) Discarded(n int) {
	s.r.Stats.PublishFails.Add(uint64(n))
	s.r.Logf("warn", "discarded %d published messages that were waiting for Redis: the connection was closed before they could be sent", n)
}

func (s *sink) SetStatus(st Status, reason string) {
	if s.r.gen.Load() != s.gen {
		if !s.current() {
			return
		}
		switch st {
		case StatusConnected:
		case StatusDisconnected:
			// The new settings do not connect: the old connection is not
			// kept on behind Lua's back (publishes go to the new one),
			// so the router reports the truth and the new one retries.
			s.r.Logf("warn", "the new connection (replacing the current one) failed: %s; the old connection is closed", reason)
		default:
			return
		}
		if !s.r.promote(s) {
			return
		}
	}
	s.r.SetStatus(st, reason)
}

// Apply replaces the config routes and limits with cfg's (a validated
// config). Routes keep their rate-limit bucket and counters across the
// change when their name stays; dynamic routes are untouched. On error
// nothing changes.
func (r *Router) Apply(cfg *config.Config) (Summary, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := r.now()
	old := r.table.Load()
	var sum Summary
	routes := make([]*Route, 0, len(cfg.Routes)+len(r.dynamic))
	seen := map[string]bool{}
	for _, def := range cfg.Routes {
		name := def.RouteName()
		prev := old.Route(name)
		if prev != nil && prev.Dynamic {
			return Summary{}, fmt.Errorf("route %q: a realtime.On registration has that name; rename the config route", name)
		}
		if seen[name] {
			return Summary{}, fmt.Errorf("route %q: defined twice", name)
		}
		seen[name] = true
		rt, err := compileRoute(def, prev, now, cfg.Server.ID)
		if err != nil {
			return Summary{}, err
		}
		switch {
		case prev == nil:
			sum.Added = append(sum.Added, name)
		case !sameDef(prev.def, def):
			sum.Changed = append(sum.Changed, name)
		}
		routes = append(routes, rt)
	}
	for _, rt := range old.Routes() {
		if !rt.Dynamic && !seen[rt.Name] {
			sum.Removed = append(sum.Removed, rt.Name)
		}
	}
	dynamic, err := r.regroupLocked(cfg.Server.ID, now)
	if err != nil {
		return Summary{}, err
	}
	for _, d := range dynamic {
		if err := streamConflict(d, append(routes[:len(routes):len(routes)], dynamic...)); err != nil {
			return Summary{}, err
		}
	}
	r.dynamic = dynamic
	r.queue.SetLimits(cfg.Queue.MaxEvents, int64(cfg.Queue.MaxBytes), cfg.Queue.Overflow != config.OverflowDropNewest)
	r.lim.Store(&limits{maxBytes: int64(cfg.Queue.MaxBytes), maxEvents: cfg.Queue.MaxEvents, maxPayload: int(cfg.Queue.MaxPayload),
		jsonDepth: cfg.Queue.JSONMaxDepth, maxSubs: cfg.Redis.MaxSubscriptions, serverID: cfg.Server.ID})
	r.logMu.Lock()
	r.logLimit = rate.NewLimiter(rate.Limit(max(cfg.Log.Rate.PerSecond, 0)), max(cfg.Log.Rate.DefaultBurst(), 1))
	if cfg.Log.Rate.Unlimited() {
		r.logLimit = rate.NewLimiter(rate.Inf, 1)
	}
	r.logLevel = r.logLevels[cfg.Log.Level]
	r.logMu.Unlock()
	sum.Plan = r.swapLocked(append(routes, r.dynamic...))
	for _, rt := range r.table.Load().Routes() {
		if rt.Stats.Refused() != "" {
			sum.Refused = append(sum.Refused, rt.Name)
		}
	}
	return sum, nil
}

// swapLocked installs routes and sends the plan change to the backend.
func (r *Router) swapLocked(routes []*Route) PlanDiff {
	r.fence.Lock()
	r.table.Store(newTable(routes))
	r.fence.Unlock()
	diff := r.replanLocked()
	r.markRefusedLocked() // by the new plan: which subscription carries which route
	return diff
}

// replanLocked rebuilds the plan for the current table and sends the
// change to the backend.
func (r *Router) replanLocked() PlanDiff {
	maxSubs := r.lim.Load().maxSubs
	routes := r.table.Load().Routes()
	plan := buildPlan(routes, maxSubs, r.uncovered)
	if plan.Streams = streamPlan(routes); plan.Streams != nil {
		plan.Consumer = r.lim.Load().serverID
	}
	if plan.Len() > max(maxSubs, 1) && plan.Len() > r.plan.Len() {
		r.Logf("warn", "%d subscriptions for redis.max_subscriptions = %d: routes whose patterns start with a wildcard, or whose covering pattern Redis refused, keep their own subscriptions (covering them would subscribe to every channel on the server, or be refused)", plan.Len(), maxSubs)
	}
	diff := Diff(r.plan, plan)
	r.plan = plan
	if r.backend != nil && !diff.Empty() {
		if r.backend != r.starting {
			r.backend.Update(diff)
		}
		// A Replace's old backend delivers until the new one is connected:
		// it follows the plan too, or a route added meanwhile would get
		// nothing from either.
		if r.retiring != nil && r.retiring != r.backend {
			subs := diff
			subs.StreamsChanged = false // the streams are the new backend's to read
			if !subs.Empty() {
				r.retiring.Update(subs)
			}
		}
	}
	return diff
}

// On adds or replaces the dynamic route def.Name (a realtime.On
// registration). A route of the same name is replaced, keeping its counters.
func (r *Router) On(def config.Route) (*Route, error) {
	if def.Name == "" {
		return nil, errors.New("router: dynamic route needs a name")
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	old := r.table.Load()
	prev := old.Route(def.Name)
	if prev != nil && !prev.Dynamic {
		return nil, fmt.Errorf("route %q is defined in the config file", def.Name)
	}
	rt, err := compileRoute(def, prev, r.now(), r.lim.Load().serverID)
	if err != nil {
		return nil, err
	}
	rt.Dynamic = true
	if err := streamConflict(rt, old.Routes()); err != nil {
		return nil, err
	}
	replaced := false
	for i, d := range r.dynamic {
		if d.Name == def.Name {
			r.dynamic[i], replaced = rt, true
		}
	}
	if !replaced {
		r.dynamic = append(r.dynamic, rt)
	}
	r.swapLocked(r.withDynamic(old))
	return rt, nil
}

// streamConflict reports an error when stream route rt would read the
// stream and consumer group that another of routes reads: each entry would
// reach only one of them.
func streamConflict(rt *Route, routes []*Route) error {
	if rt.def.Stream == "" {
		return nil
	}
	for _, o := range routes {
		if o.Name == rt.Name || o.def.Stream != rt.def.Stream || o.group != rt.group {
			continue
		}
		kind := func(r *Route) string {
			if r.Dynamic {
				return "realtime.Stream registration"
			}
			return "config route"
		}
		return fmt.Errorf("stream %s: group %s is read by the %s %q and the %s %q, so each entry would reach only one of them (give one of them another group)",
			strconv.Quote(rt.def.Stream), strconv.Quote(rt.group), kind(o), o.Name, kind(rt), rt.Name)
	}
	return nil
}

// regroupLocked returns the dynamic routes for server id: the stream
// routes whose group names the server ({server}) compiled again for its
// group, the others as they are. r.dynamic is not changed.
func (r *Router) regroupLocked(serverID string, now time.Time) ([]*Route, error) {
	out := slices.Clone(r.dynamic)
	for i, d := range out {
		if d.def.Stream == "" || d.group == d.def.GroupName(serverID) {
			continue
		}
		rt, err := compileRoute(d.def, d, now, serverID)
		if err != nil {
			return nil, err
		}
		rt.Dynamic = true
		out[i] = rt
	}
	return out, nil
}

// Off removes the dynamic routes names, with one rebuild of the table; it
// reports whether any of them was there.
func (r *Router) Off(names ...string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	drop := make(map[string]bool, len(names))
	for _, name := range names {
		drop[name] = true
	}
	kept := r.dynamic[:0:0]
	for _, d := range r.dynamic {
		if !drop[d.Name] {
			kept = append(kept, d)
		}
	}
	if len(kept) == len(r.dynamic) {
		return false
	}
	r.dynamic = kept
	r.swapLocked(r.withDynamic(r.table.Load())) // once, however many went
	return true
}

// withDynamic returns old's config routes followed by the current dynamic
// routes.
func (r *Router) withDynamic(old *Table) []*Route {
	routes := make([]*Route, 0, len(old.Routes())+len(r.dynamic))
	for _, rt := range old.Routes() {
		if !rt.Dynamic {
			routes = append(routes, rt)
		}
	}
	return append(routes, r.dynamic...)
}

// Deliver routes one message: every matching route that has a token left
// gets one event in the queue. It never blocks on the main thread.
//
// Received is counted last, once the message's events are queued and its
// drops counted, so whoever sees Received reach n sees all that n messages
// did.
func (r *Router) Deliver(channel, payload string) {
	defer r.Stats.Received.Add(1)
	now := r.now()
	lim := r.lim.Load()
	if len(payload) > lim.maxPayload || int64(len(payload)+len(channel)) > lim.maxBytes {
		r.Stats.Drop(DropTooBig)
		r.Logf("warn", "dropped a %d-byte message on %s: larger than queue.max_payload (%d bytes), or with its channel name than queue.max_bytes", len(payload), quoteName(channel), lim.maxPayload)
		return
	}
	var (
		doc     *Doc
		docErr  string
		parsed  bool
		matched bool
		copies  *Copies // the events of this message share its bytes
		first   *Event  // the first route's event, pushed with the second's or last
	)
	r.table.Load().Match(channel, func(rt *Route) {
		matched = true
		rt.Stats.Matched.Add(1)
		if !rt.allow(now) {
			rt.Stats.RateLimited.Add(1)
			r.Stats.Drop(DropRateLimited)
			// One line per route per rateLogEvery, not one per dropped event.
			if last := rt.Stats.rateLogged.Load(); now.UnixNano()-last >= int64(rateLogEvery) &&
				rt.Stats.rateLogged.CompareAndSwap(last, now.UnixNano()) {
				r.Logf("info", "route %q: rate limit %s reached, dropping events over it (%d so far)", rt.Name, rt.def.Rate, rt.Stats.RateLimited.Load())
			}
			return
		}
		e := &Event{Kind: KindMessage, Channel: channel, Payload: payload, Route: rt, Received: now.UnixNano(), copies: copies}
		if rt.Decode == config.DecodeJSON {
			if !parsed {
				d, err := ParseJSON(payload, lim.jsonDepth)
				doc, parsed = d, true
				if err != nil {
					docErr = err.Error()
				}
			}
			e.JSON, e.Note = doc, docErr
			if docErr != "" {
				rt.Stats.DecodeErrors.Add(1)
				r.Stats.DecodeErrors.Add(1)
				r.Logf("warn", "route %q: payload on %s delivered raw: %s", rt.Name, quoteName(channel), docErr)
			}
		}
		// The first event waits for a second: only the events of a message
		// for several routes need a Copies to share its bytes.
		switch {
		case first == nil:
			first = e
			return
		case copies == nil:
			copies = &Copies{}
			first.copies, e.copies = copies, copies
			r.push(first)
		}
		r.push(e)
	})
	if first != nil && copies == nil {
		r.push(first)
	}
	if !matched {
		r.Stats.Drop(DropNoRoute)
	}
}

// push queues e. Queued is counted last, once e is in the queue and any
// event it pushed out is counted as dropped, so a reader who sees Queued
// reach n can take those n events and sees their drops.
func (r *Router) push(e *Event) {
	r.pushed(r.pushOnly(e))
}

// pushOnly queues e and returns the events it pushed out, for pushed.
func (r *Router) pushOnly(e *Event) []*Event {
	if e.Kind == KindMessage {
		e.Queued = r.now().UnixNano()
		r.Stats.Own.Observe(time.Duration(e.Queued - e.Received))
	}
	return r.queue.Push(e)
}

// pushed handles the events a push pushed out of the queue, then counts
// the push.
func (r *Router) pushed(out []*Event) {
	for _, dropped := range out {
		if dropped.Entry != nil { // pushed out of the queue: pending, not lost
			r.Release(dropped)
			continue
		}
		r.Stats.Drop(DropQueueFull)
		if dropped.Route != nil {
			dropped.Route.Stats.Dropped.Add(1)
		}
		r.Logf("warn", "event queue full (%d events waiting): dropped an event on %s; the main thread is not keeping up", r.queue.Pending(), quoteName(dropped.Channel))
	}
	if r.queued != nil {
		r.queued()
	}
	r.Stats.Queued.Add(1)
}

// SetStatus records a backend status change and queues it for Lua's
// RealtimeConnected / RealtimeDisconnected hooks.
func (r *Router) SetStatus(s Status, reason string) {
	if Status(r.status.Swap(int32(s))) == s && s != StatusDisconnected {
		return
	}
	r.queue.Push(&Event{Kind: KindStatus, Status: s, Note: reason, Received: r.now().UnixNano()})
	if r.queued != nil {
		r.queued()
	}
}

// Status is the backend's last reported status.
func (r *Router) Status() Status { return Status(r.status.Load()) }

// Publish hands a message to the backend's outbox without blocking.
func (r *Router) Publish(channel, payload string) error {
	r.mu.Lock()
	b := r.backend
	r.mu.Unlock()
	if b == nil {
		return ErrNoBackend
	}
	if err := b.Publish(channel, payload); err != nil {
		r.Stats.PublishFails.Add(1)
		return err
	}
	r.Stats.Published.Add(1)
	return nil
}

// Append hands a stream entry to the backend without blocking and returns
// its rt_id.
func (r *Router) Append(stream, payload string) (string, error) {
	r.mu.Lock()
	b := r.backend
	r.mu.Unlock()
	if b == nil {
		return "", ErrNoBackend
	}
	id, err := b.Append(stream, payload)
	if err != nil {
		r.Stats.AppendFails.Add(1)
		return "", err
	}
	r.Stats.Appended.Add(1)
	return id, nil
}

// subscribeRefused records a subscription the server refused (or, with
// reason "", no longer refuses), marks the routes it serves and logs them.
//
// The refusals of a Replace's backend that is still connecting are kept
// apart: they mark the routes when it takes over, and so do the old
// backend's no longer.
func (r *Router) subscribeRefused(s *sink, name string, isPattern bool, reason string) {
	key := "c:" + name
	if isPattern {
		key = "p:" + name
	}
	r.mu.Lock()
	if reason == "" {
		delete(s.refused, key)
	} else {
		s.refused[key] = reason
	}
	if s == r.active {
		r.markRefusedLocked()
	}
	var names []string
	for _, rt := range r.table.Load().Routes() {
		if r.servesLocked(key, rt) {
			names = append(names, rt.Name)
		}
	}
	if reason != "" && isPattern && r.coveringLocked(name) {
		// Redis refused a pattern that only covers routes: they
		// subscribe on their own instead, each allowed or refused alone.
		p, _ := pattern.Compile(name)
		if r.uncovered == nil {
			r.uncovered = map[string]bool{}
		}
		r.uncovered[p.Prefix()] = true
		r.replanLocked()
		r.mu.Unlock()
		r.Logf("warn", "Redis refused the covering pattern %s: %s; routes %q subscribe on their own instead", quoteName(name), reason, names)
		return
	}
	r.mu.Unlock()
	kind := "channel"
	if isPattern {
		kind = "pattern"
	}
	if reason == "" {
		r.Logf("info", "subscribed to %s %s, which Redis refused before", kind, quoteName(name))
		return
	}
	r.Logf("error", "Redis refused the subscription to %s %s: %s; routes %q get no events, the others work", kind, quoteName(name), reason, names)
}

// coveringLocked reports whether pattern name is a covering pattern of the
// plan ("prefix*" for several routes), not any route's own.
func (r *Router) coveringLocked(name string) bool {
	if _, ok := slices.BinarySearch(r.plan.Patterns, name); !ok {
		return false
	}
	p, err := pattern.Compile(name)
	if err != nil || name != pattern.Quote(p.Prefix())+"*" {
		return false
	}
	for _, rt := range r.table.Load().Routes() {
		if !rt.match.IsLiteral() && rt.match.String() == name {
			return false
		}
	}
	return true
}

// markRefusedLocked sets each route's Refused from the refused
// subscriptions that serve it.
func (r *Router) markRefusedLocked() {
	for _, rt := range r.table.Load().Routes() {
		why := ""
		for key, reason := range r.refused {
			if r.servesLocked(key, rt) {
				why = reason
				break
			}
		}
		if rt.Stats.Refused() != why {
			rt.Stats.refused.Store(&why)
		}
	}
}

// servesLocked reports whether subscription key ("c:channel" or
// "p:pattern", as BuildPlan makes them) carries rt's events: its own
// channel or pattern, or, when the plan has not that, a covering
// "prefix*" pattern.
func (r *Router) servesLocked(key string, rt *Route) bool {
	if rt.def.Stream != "" {
		return false
	}
	name := key[2:]
	own, list := "p:"+rt.match.String(), r.plan.Patterns
	if rt.match.IsLiteral() {
		own, list = "c:"+rt.match.Literal(), r.plan.Channels
	}
	if key == own {
		return true
	}
	if _, subscribed := slices.BinarySearch(list, own[2:]); subscribed || key[0] == 'c' {
		return false
	}
	p, err := pattern.Compile(name)
	if err != nil || name != pattern.Quote(p.Prefix())+"*" {
		return false
	}
	return strings.HasPrefix(rt.match.Prefix(), p.Prefix())
}

// publishFailed counts a message the backend's server refused, with one log
// line per rateLogEvery, so that a flood of refusals neither hides nor
// crowds out the other lines.
func (r *Router) publishFailed(channel, reason string, now time.Time) {
	n := r.Stats.PublishFails.Add(1)
	r.Stats.Refused.Add(1)
	if last := r.refusedLogged.Load(); now.UnixNano()-last >= int64(rateLogEvery) &&
		r.refusedLogged.CompareAndSwap(last, now.UnixNano()) {
		r.Logf("error", "publish to %s %s; message dropped (%d publishes failed so far)", quoteName(channel), reason, n)
	}
}

// Next removes the oldest queued event, or returns nil. The caller counts a
// message it hands to a handler with Dispatched, or drops it.
func (r *Router) Next() *Event { return r.queue.Pop() }

// Dispatched counts message e as handed to its handler at now (unix
// nanoseconds), with its queueing latency.
func (r *Router) Dispatched(e *Event, now int64) {
	r.Stats.Dispatched.Add(1)
	e.Route.Stats.Dispatched.Add(1)
	r.Stats.Latency.Observe(time.Duration(now - e.Received))
	r.Stats.Wait.Observe(time.Duration(now - e.Queued))
}

// Undispatched takes back the dispatch count of e, taken for the main
// thread and then not handed to a handler (it was removed meanwhile).
func (r *Router) Undispatched(e *Event) {
	r.Stats.Dispatched.Add(^uint64(0))
	e.Route.Stats.Dispatched.Add(^uint64(0))
}

// Drain passes queued events to fn, at most max of them and for at most
// budget (see Queue.Drain), counting each message as dispatched.
func (r *Router) Drain(max int, budget time.Duration, fn func(*Event)) int {
	return r.queue.Drain(max, budget, func(e *Event) {
		if e.Kind == KindMessage {
			r.Dispatched(e, time.Now().UnixNano())
		}
		fn(e)
	})
}

// Backend returns the attached backend, or nil.
func (r *Router) Backend() Backend {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.backend
}

// Close stops the backend. It does not wait on the network.
func (r *Router) Close() error {
	r.mu.Lock()
	b, retiring := r.backend, r.retiring
	r.backend, r.retiring, r.retiringSink, r.active = nil, nil, nil, nil
	r.fence.Lock()
	r.gen.Store(r.sinks.Add(1))
	r.fence.Unlock()
	r.stopDrainingLocked()
	r.mu.Unlock()
	if retiring != nil {
		_ = retiring.Close()
	}
	if b == nil {
		return nil
	}
	return b.Close()
}

// nameInLog is how much of a channel name a log line shows.
const nameInLog = 96

// quoteName quotes a channel name from the network for a log line:
// escaped (control bytes, invalid UTF-8) and cut to nameInLog bytes.
func quoteName(name string) string {
	if len(name) <= nameInLog {
		return strconv.Quote(name)
	}
	return strconv.Quote(name[:nameInLog]) + fmt.Sprintf("... (%d bytes)", len(name))
}

// Logf emits a line through WithLog, at most log.rate lines per second
// (shared by every caller); lines over the limit are counted and reported
// with the next one. Safe for concurrent use.
func (r *Router) Logf(level, format string, args ...any) {
	if r.logf == nil {
		return
	}
	r.logMu.Lock()
	if r.logLevels[level] < r.logLevel {
		r.logMu.Unlock()
		return
	}
	if !r.logLimit.Allow() {
		r.logMuted++
		r.logMu.Unlock()
		return
	}
	muted := r.logMuted
	r.logMuted = 0
	r.logMu.Unlock()
	line := fmt.Sprintf(format, args...)
	if muted > 0 {
		line += fmt.Sprintf(" (%d more lines suppressed)", muted)
	}
	r.logf(level, line)
}

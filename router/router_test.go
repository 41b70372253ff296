package router

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gmod-realtime/realtime/config"
)

func parseConfig(t testing.TB, toml string) *config.Config {
	t.Helper()
	cfg, err := config.Parse("test.toml", []byte(toml))
	require.NoError(t, err)
	return cfg
}

// clock is a settable time source for rate-limit tests.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// drainAll returns the queued message events as "route<-channel" strings.
func drainAll(r *Router) []string {
	var got []string
	r.Drain(1<<30, 0, func(e *Event) {
		if e.Kind == KindMessage {
			got = append(got, e.Route.Name+"<-"+e.Channel)
		}
	})
	return got
}

func TestOverlappingRoutesEachGetAnEventOnce(t *testing.T) {
	r, err := New(parseConfig(t, `
[[routes]]
name = "all-players"
pattern = "player:*"
handler = "h"
[[routes]]
name = "spawns"
channel = "player:spawn"
handler = "h"
[[routes]]
name = "any-spawn"
pattern = "*:spawn"
handler = "h"
[[routes]]
name = "not-debug"
pattern = "player:*"
exclude = ["player:spawn", "player:debug:*"]
handler = "h"
`))
	require.NoError(t, err)
	r.Deliver("player:spawn", "x")
	r.Deliver("player:debug:1", "x")
	r.Deliver("chat:message", "x")
	// One event per matching route, in the config's order.
	assert.Equal(t, []string{
		"all-players<-player:spawn", "spawns<-player:spawn", "any-spawn<-player:spawn",
		"all-players<-player:debug:1",
	}, drainAll(r))
	assert.Equal(t, uint64(1), r.Stats.Dropped()[DropNoRoute])
	assert.Equal(t, uint64(3), r.Stats.Received.Load())
}

// TestActiveOwnsExactlyOneCopy: Redis sends a message once per matching
// subscription; Active picks one copy however subscriptions come and go.
func TestActiveOwnsExactlyOneCopy(t *testing.T) {
	a := NewActive()
	a.AddChannel("player:spawn")
	a.AddPattern("player:*")
	a.AddPattern("*:spawn")
	owners := 0
	for _, via := range []string{"", "player:*", "*:spawn"} {
		if a.Owns(via, "player:spawn") {
			owners++
		}
	}
	assert.Equal(t, 1, owners)

	a.RemoveChannel("player:spawn")
	assert.False(t, a.Owns("", "player:spawn"), "late message for a removed channel")
	assert.True(t, a.Owns("*:spawn", "player:spawn"), "first pattern in order owns it")
	assert.False(t, a.Owns("player:*", "player:spawn"))
	a.RemovePattern("*:spawn")
	assert.True(t, a.Owns("player:*", "player:spawn"))
	assert.False(t, a.Owns("*:spawn", "player:spawn"), "late pmessage for a removed pattern")
}

func TestRateLimitSteps(t *testing.T) {
	clk := &clock{t: time.Unix(1000, 0)}
	r, err := New(parseConfig(t, `
[[routes]]
name = "limited"
pattern = "x:*"
handler = "h"
rate = "2/s"
burst = 2
`), WithClock(clk.now))
	require.NoError(t, err)
	rt := r.Table().Route("limited")
	steps := []struct {
		advance time.Duration
		sends   int
		queued  int
	}{
		{0, 3, 2},                      // burst of 2, third limited
		{250 * time.Millisecond, 1, 0}, // half a token
		{250 * time.Millisecond, 2, 1}, // one token back
		{10 * time.Second, 5, 2},       // bucket refills only to burst
		{500 * time.Millisecond, 1, 1},
	}
	limited := 0
	for i, s := range steps {
		clk.add(s.advance)
		for j := 0; j < s.sends; j++ {
			r.Deliver("x:1", "p")
		}
		limited += s.sends - s.queued
		assert.Len(t, drainAll(r), s.queued, "step %d", i)
		assert.Equal(t, uint64(limited), rt.Stats.RateLimited.Load(), "step %d", i)
	}
	assert.Equal(t, uint64(limited), r.Stats.Dropped()[DropRateLimited])
}

func TestReloadKeepsBucketsAndReportsChanges(t *testing.T) {
	clk := &clock{t: time.Unix(1000, 0)}
	base := `
[[routes]]
name = "a"
pattern = "a:*"
handler = "h"
rate = "1/s"
burst = 1
[[routes]]
name = "b"
channel = "b"
handler = "h"
`
	r, err := New(parseConfig(t, base), WithClock(clk.now))
	require.NoError(t, err)
	r.Deliver("a:1", "p")
	require.Len(t, drainAll(r), 1)

	sum, err := r.Apply(parseConfig(t, base))
	require.NoError(t, err)
	assert.Empty(t, sum.Added)
	assert.Empty(t, sum.Changed)
	assert.Empty(t, sum.Removed)
	assert.True(t, sum.Plan.Empty())
	r.Deliver("a:1", "p")
	assert.Empty(t, drainAll(r), "an unchanged route keeps its empty bucket")

	sum, err = r.Apply(parseConfig(t, `
[[routes]]
name = "a"
pattern = "a:*"
handler = "h"
rate = "10/s"
burst = 1
[[routes]]
name = "c"
pattern = "c:*"
handler = "h"
`))
	require.NoError(t, err)
	assert.Equal(t, []string{"c"}, sum.Added)
	assert.Equal(t, []string{"a"}, sum.Changed)
	assert.Equal(t, []string{"b"}, sum.Removed)
	assert.Equal(t, []string{"b"}, sum.Plan.Unsubscribe)
	assert.Equal(t, []string{"c:*"}, sum.Plan.PSubscribe)
	r.Deliver("a:1", "p")
	assert.Empty(t, drainAll(r), "a changed rate keeps the bucket's tokens")
	clk.add(100 * time.Millisecond)
	r.Deliver("a:1", "p")
	assert.Len(t, drainAll(r), 1, "and refills at the new rate")
	assert.Equal(t, uint64(4), r.Table().Route("a").Stats.Matched.Load(), "counters survive reloads")
}

func TestDynamicRoutesReplaceByName(t *testing.T) {
	r, err := New(parseConfig(t, ""))
	require.NoError(t, err)
	_, err = r.On(config.Route{Name: "lua:1", Pattern: "p:*", Handler: "lua:1"})
	require.NoError(t, err)
	_, err = r.On(config.Route{Name: "lua:1", Pattern: "q:*", Handler: "lua:1"})
	require.NoError(t, err)
	assert.Len(t, r.Table().Routes(), 1)
	assert.Equal(t, Plan{Patterns: []string{"q:*"}}, r.Plan())
	r.Deliver("p:x", "")
	r.Deliver("q:x", "")
	assert.Equal(t, []string{"lua:1<-q:x"}, drainAll(r))

	_, err = r.On(config.Route{Name: "lua:2", Pattern: "[bad", Handler: "lua:2"})
	assert.ErrorContains(t, err, "unterminated")

	// A reload keeps dynamic routes.
	_, err = r.Apply(parseConfig(t, "[[routes]]\nchannel = \"c\"\nhandler = \"h\"\n"))
	require.NoError(t, err)
	assert.Len(t, r.Table().Routes(), 2)
	assert.True(t, r.Off("lua:1"))
	assert.False(t, r.Off("lua:1"))
	assert.Equal(t, Plan{Channels: []string{"c"}}, r.Plan())
}

func TestPayloadLimitsAndJSON(t *testing.T) {
	r, err := New(parseConfig(t, `
[queue]
max_payload = "64B"
json_max_depth = 3
[[routes]]
pattern = "j:*"
handler = "h"
decode = "json"
`))
	require.NoError(t, err)
	r.Deliver("j:big", string(make([]byte, 65)))
	r.Deliver("j:ok", `{"a":[1,2,{"b":null}]}`)
	r.Deliver("j:bad", `{"a":`)
	r.Deliver("j:deep", `[[[[1]]]]`)
	var events []*Event
	r.Drain(100, 0, func(e *Event) { events = append(events, e) })
	require.Len(t, events, 3)
	assert.Equal(t, uint64(1), r.Stats.Dropped()[DropTooBig])
	assert.NotNil(t, events[0].JSON)
	assert.Empty(t, events[0].Note)
	assert.Nil(t, events[1].JSON)
	assert.Equal(t, `{"a":`, events[1].Payload, "invalid JSON is delivered raw")
	assert.Contains(t, events[1].Note, "invalid JSON")
	assert.Contains(t, events[2].Note, "nested too deeply")
	assert.Equal(t, uint64(2), r.Stats.DecodeErrors.Load())
}

func TestLogIsRateLimited(t *testing.T) {
	var lines []string
	r, err := New(parseConfig(t, "[log]\nrate = \"1/h\"\n[[routes]]\npattern = \"x:*\"\nhandler = \"h\"\ndecode = \"json\"\n"),
		WithLog(func(level, line string) { lines = append(lines, level+": "+line) }))
	require.NoError(t, err)
	for i := 0; i < 100; i++ {
		r.Deliver("x:1", "not json")
	}
	require.Len(t, lines, 1)
	assert.Contains(t, lines[0], `warn: route "x:*": payload on "x:1" delivered raw: invalid JSON`)
	assert.Equal(t, uint64(100), r.Stats.DecodeErrors.Load(), "every event is still counted")
}

func TestStatusEvents(t *testing.T) {
	r, err := New(parseConfig(t, ""))
	require.NoError(t, err)
	r.SetStatus(StatusConnecting, "")
	r.SetStatus(StatusConnected, "")
	r.SetStatus(StatusConnected, "") // no change: no event
	r.SetStatus(StatusDisconnected, "connection reset")
	var got []string
	r.Drain(10, 0, func(e *Event) { got = append(got, fmt.Sprint(e.Status, e.Note)) })
	assert.Equal(t, []string{"connecting", "connected", "disconnectedconnection reset"}, got)
	assert.Equal(t, StatusDisconnected, r.Status())
}

func BenchmarkMatch(b *testing.B) {
	for _, n := range []int{10, 100, 1000} {
		var routes []*Route
		for i := 0; i < n; i++ {
			def := config.Route{Name: fmt.Sprint(i), Pattern: fmt.Sprintf("game%d:*:event", i), Handler: "h"}
			if i%2 == 0 {
				def = config.Route{Name: fmt.Sprint(i), Channel: fmt.Sprintf("chan:%d", i), Handler: "h"}
			}
			rt, err := compileRoute(def, nil, time.Now(), "")
			require.NoError(b, err)
			routes = append(routes, rt)
		}
		tab := newTable(routes)
		b.Run(fmt.Sprintf("routes=%d", n), func(b *testing.B) {
			hits := 0
			for b.Loop() {
				tab.Match("game7:player:event", func(*Route) { hits++ })
			}
		})
	}
}

// BenchmarkDeliverDrain is one event through the router: match, queue, drain.
func BenchmarkDeliverDrain(b *testing.B) {
	for _, decode := range []string{"raw", "json"} {
		r, err := New(parseConfig(b, fmt.Sprintf("[[routes]]\npattern = \"player:*\"\nhandler = \"h\"\ndecode = %q\n", decode)))
		require.NoError(b, err)
		payload := `{"victim":"STEAM_0:1:1","attacker":"STEAM_0:1:2","weapon":"weapon_crowbar","ts":1700000000000,"server":"ttt-1","pos":{"x":1.5,"y":2,"z":-3},"hs":true,"dmg":100,"team":2,"round":7}`
		b.Run(decode, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				r.Deliver("player:death", payload)
				r.Drain(1, 0, func(*Event) {})
			}
		})
	}
}

// TestRateLimitLoggedPerRoute: a route over its limit gets one log line per
// 10 s, whatever the log rate allows, with the running count.
func TestRateLimitLoggedPerRoute(t *testing.T) {
	clk := &clock{t: time.Unix(1000, 0)}
	var lines []string
	r, err := New(parseConfig(t, "[log]\nrate = \"unlimited\"\n[[routes]]\nname = \"r\"\npattern = \"x:*\"\nhandler = \"h\"\nrate = \"1/s\"\nburst = 1\n"),
		WithClock(clk.now), WithLog(func(level, line string) { lines = append(lines, line) }))
	require.NoError(t, err)
	for i := 0; i < 50; i++ {
		r.Deliver("x:1", "p")
	}
	clk.add(10 * time.Second)
	for i := 0; i < 50; i++ {
		r.Deliver("x:1", "p")
	}
	assert.Equal(t, []string{
		`route "r": rate limit 1/s reached, dropping events over it (1 so far)`,
		`route "r": rate limit 1/s reached, dropping events over it (50 so far)`,
	}, lines)
}

// TestMatchIndexAgreesWithEveryRoute: the prefix index finds exactly the
// routes that testing each route one by one finds, in route order.
func TestMatchIndexAgreesWithEveryRoute(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	parts := []string{"", "a", "ab", "a:", "b", "ab:c", "*", "?", "[ab]", "\\*"}
	pick := func() string {
		var s string
		for range rng.IntN(4) {
			s += parts[rng.IntN(len(parts))]
		}
		return s
	}
	var routes []*Route
	for i := 0; i < 300; i++ {
		def := config.Route{Name: fmt.Sprint(i), Pattern: pick() + "x", Handler: "h"}
		if i%3 == 0 {
			def = config.Route{Name: fmt.Sprint(i), Channel: strings.NewReplacer("*", "", "?", "", "[", "", "]", "", "\\", "").Replace(pick()) + "x", Handler: "h"}
		}
		rt, err := compileRoute(def, nil, time.Now(), "")
		if err != nil {
			continue
		}
		routes = append(routes, rt)
	}
	tab := newTable(routes)
	for i := 0; i < 20000; i++ {
		ch := strings.NewReplacer("*", "q", "?", "r", "[ab]", "a", "\\*", "*").Replace(pick()) + "x"
		var want, got []string
		for _, r := range routes {
			if r.Matches(ch) {
				want = append(want, r.Name)
			}
		}
		tab.Match(ch, func(r *Route) { got = append(got, r.Name) })
		require.Equal(t, want, got, "channel %q", ch)
	}
}

package api

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gmod-realtime/realtime/config"
	"github.com/gmod-realtime/realtime/internal/redistest"
	"github.com/gmod-realtime/realtime/router"
)

// start runs a Module on toml (local mode unless it names Redis) in a
// temporary server directory.
func start(t *testing.T, toml string) (*Module, string) {
	t.Helper()
	dir := t.TempDir()
	file := filepath.Join(dir, "realtime.toml")
	require.NoError(t, os.WriteFile(file, []byte(toml), 0o644))
	m := Start(Options{Config: config.Options{File: file, Dir: dir, Environ: []string{}}, Pending: new(atomic.Int64), Logs: new(atomic.Int64), Root: dir})
	t.Cleanup(m.Stop)
	return m, file
}

// waitQueued waits until n events are queued.
func waitQueued(t *testing.T, m *Module, n int) {
	t.Helper()
	require.Eventually(t, func() bool { return m.Router().Queue().Pending() >= n }, 5*time.Second, time.Millisecond)
}

// drain runs one ProcessEvents: the handler calls it would make.
func drain(m *Module) []Dispatch {
	var out []Dispatch
	m.BeginFrame()
	for d, ok := m.Next(); ok; d, ok = m.Next() {
		out = append(out, d)
	}
	return out
}

func logs(m *Module) []string {
	var out []string
	for {
		level, line, ok := m.TakeLog()
		if !ok {
			return out
		}
		out = append(out, level+": "+line)
	}
}

// handlerNames returns the names the Lua state has a handler for.
func handlerNames(m *Module) []string {
	out := []string{}
	for name := range m.handlers {
		out = append(out, name)
	}
	return out
}

func TestHandlerNames(t *testing.T) {
	m, _ := start(t, "")
	require.NoError(t, m.Handler("h", true))
	assert.Equal(t, []string{"h"}, handlerNames(m))
	require.NoError(t, m.Handler("h", false))
	assert.ErrorContains(t, m.Handler("hook:X", true), "hook route")
	assert.ErrorContains(t, m.Handler("", true), "empty")
	assert.Empty(t, handlerNames(m))
}

func TestOnReplaceAndOff(t *testing.T) {
	m, _ := start(t, "")
	id, name, err := m.On("chat:*", "mine", OnOptions{})
	require.NoError(t, err)
	assert.Equal(t, "mine", id)
	assert.Equal(t, "mine (chat:*)", name)
	_, again, _ := m.On("chat:*", "mine", OnOptions{})
	assert.Equal(t, name, again, "same pattern and id is the same registration")
	_, other, _ := m.On("other:*", "mine", OnOptions{})
	assert.NotEqual(t, name, other, "another pattern is another registration")
	a, _, _ := m.On("x", "", OnOptions{})
	b, bname, _ := m.On("x", "", OnOptions{})
	assert.NotEqual(t, a, b, "generated ids are unique")

	assert.Equal(t, []string{name}, m.Off("mine", "chat:*"))
	assert.Empty(t, m.Off("mine", ""), "no registration has the pattern \"\"")
	assert.Equal(t, []string{other}, m.Off("mine"))
	assert.Empty(t, m.Off("mine"))
	assert.Len(t, m.Off(a), 1)
	assert.Contains(t, m.dynamic, bname)
	assert.Len(t, m.dynamic, 1)
	assert.Empty(t, handlerNames(m), "realtime.On names are not realtime.Handler names")

	_, _, err = m.On("[", "bad", OnOptions{})
	assert.ErrorContains(t, err, `pattern "[": unterminated`)
	var oe *OptionError
	_, _, err = m.On("a", "bad", OnOptions{Rate: "3/x"})
	require.ErrorAs(t, err, &oe)
	assert.Equal(t, "rate", oe.Name)
	for _, burst := range []float64{-1, 2.7, 1e10} {
		_, _, err = m.On("a", "bad", OnOptions{Burst: burst})
		require.ErrorAs(t, err, &oe, "burst %v", burst)
		assert.Equal(t, "burst", oe.Name)
		assert.Contains(t, err.Error(), "is not a whole number from 0 to 2147483647")
	}
	assert.Nil(t, m.Router().Table().Route(routeName("a", "bad")), "a refused registration adds no route")
}

// TestMapChange: events queued while the map changes reach the handler the
// new state registers under the same id; registrations the new state does
// not repeat are removed at its first ProcessEvents.
func TestMapChange(t *testing.T) {
	m, _ := start(t, "")
	_, _, _ = m.On("keep:*", "keep", OnOptions{})
	_, _, _ = m.On("drop:*", "drop", OnOptions{})
	m.Close()
	require.NoError(t, m.Publish("keep:a", "during the change"))
	waitQueued(t, m, 2) // and the local bus's status event
	m.Open()
	_, name, _ := m.On("keep:*", "keep", OnOptions{})
	var got []string
	for _, d := range drain(m) {
		if d.Event.Kind == router.KindMessage {
			assert.Equal(t, name, d.Handler)
			got = append(got, d.Event.Payload)
		}
	}
	assert.Equal(t, []string{"during the change"}, got)
	assert.Nil(t, m.Router().Table().Route(routeName("drop:*", "drop")), "stale registration swept")
	assert.NotNil(t, m.Router().Table().Route(routeName("keep:*", "keep")))
	assert.Contains(t, strings.Join(logs(m), "\n"), "removed 1 realtime.On registrations")
}

func TestNextHandlers(t *testing.T) {
	m, _ := start(t, `
[[routes]]
name = "named"
channel = "a"
handler = "OnA"

[[routes]]
name = "hooked"
channel = "b"
handler = "hook:GotB"
decode = "json"
`)
	drain(m) // the status event
	logs(m)
	for i := 0; i < 3; i++ {
		require.NoError(t, m.Publish("a", fmt.Sprint(i)))
	}
	require.NoError(t, m.Publish("b", `{"k":1}`))
	waitQueued(t, m, 4)
	ds := drain(m)
	require.Len(t, ds, 1, "the a events have no handler and are skipped")
	assert.Equal(t, "GotB", ds[0].Hook, "a hook route needs no realtime.Handler")
	st := m.Router().Table().Route("named").Stats
	assert.Equal(t, uint64(3), st.NoHandler.Load())
	assert.Equal(t, uint64(3), m.Router().Stats.Dropped()[router.DropNoHandler])
	lines := logs(m)
	assert.Len(t, lines, 1, "logged once per route, not per event: %v", lines)
	assert.Contains(t, lines[0], `route "named": no handler "OnA" is registered`)

	require.NoError(t, m.Handler("OnA", true))
	require.NoError(t, m.Publish("a", "x"))
	require.NoError(t, m.Publish("b", `{"k":2}`))
	waitQueued(t, m, 2)
	ds = drain(m)
	require.Len(t, ds, 2)
	assert.Equal(t, "OnA", ds[0].Handler)
	assert.Equal(t, "GotB", ds[1].Hook)
	require.NotNil(t, ds[1].Event.JSON)
	assert.Equal(t, uint64(3), m.Router().Stats.Dispatched.Load())
}

func TestNextStatusHooks(t *testing.T) {
	m, _ := start(t, "")
	waitQueued(t, m, 1)
	ds := drain(m)
	require.Len(t, ds, 1)
	assert.Equal(t, "RealtimeConnected", ds[0].Hook)
	m.Disconnect()
	ds = drain(m)
	require.Len(t, ds, 1)
	assert.Equal(t, "RealtimeDisconnected", ds[0].Hook)
	assert.Equal(t, "realtime.Disconnect()", ds[0].Event.Note)
	assert.Equal(t, "disconnected", m.Status())
	assert.ErrorContains(t, m.Publish("x", "y"), "not connected")
}

// TestNoHandlerAfterDispatch: an event taken for a batch whose handler is
// removed before its turn is counted as no_handler, not as dispatched.
func TestNoHandlerAfterDispatch(t *testing.T) {
	m, _ := start(t, "")
	drain(m)
	_, _, _ = m.On("x", "x", OnOptions{})
	require.NoError(t, m.Publish("x", "y"))
	waitQueued(t, m, 1)
	ds := drain(m)
	require.Len(t, ds, 1)
	assert.Equal(t, uint64(1), m.Router().Stats.Dispatched.Load())
	m.NoHandler(&ds[0])
	assert.Equal(t, uint64(0), m.Router().Stats.Dispatched.Load())
	assert.Equal(t, uint64(1), m.Router().Stats.Dropped()[router.DropNoHandler])
}

func TestConfigureAndConnect(t *testing.T) {
	m, _ := start(t, "")
	err := m.Configure(luaTape(map[any]any{"port": "x"}))
	assert.ErrorContains(t, err, `realtime.Config: port: "x" is not a whole number`)
	err = m.Configure(luaTape(map[any]any{"prot": 1}))
	assert.ErrorContains(t, err, `did you mean "port"`)
	huge := map[any]any{}
	for i := range 20000 {
		huge[fmt.Sprint("key", i)] = i
	}
	assert.EqualError(t, m.Configure(luaTape(huge)), "the table has 20000 keys; there are far fewer settings (at most 256 keys)")
	require.NoError(t, m.Configure(luaTape(map[any]any{"host": "127.0.0.1", "port": 1, "timeout": 0.5, "server.id": "srv-9"})))
	assert.Equal(t, "local", m.Config().Mode(), "Config takes effect at Connect")
	require.NoError(t, m.Connect(""))
	assert.Equal(t, "redis", m.Config().Mode())
	assert.Equal(t, 500*time.Millisecond, m.Config().Redis.ConnectTimeout.D())
	assert.Equal(t, "srv-9", m.Config().Server.ID)
	assert.ErrorContains(t, m.Connect("http://x"), "scheme")
	assert.Equal(t, 1, m.Config().Redis.Port, "a failed Connect changes nothing")
}

func TestReload(t *testing.T) {
	m, file := start(t, "[[routes]]\nname = \"a\"\nchannel = \"a\"\nhandler = \"A\"\n")
	require.NoError(t, os.WriteFile(file, []byte("[[routes]]\nname = \"b\"\nchannel = \"b\"\nhandler = \"B\"\n"), 0o644))
	res, err := m.Reload()
	require.NoError(t, err)
	assert.Equal(t, []string{"b"}, res.Added)
	assert.Equal(t, []string{"a"}, res.Removed)
	assert.False(t, res.Reconnected)
	require.NoError(t, os.WriteFile(file, []byte("[[routes]]\nname = \"c\"\nchanel = \"c\"\n"), 0o644))
	_, err = m.Reload()
	assert.ErrorContains(t, err, `routes[0].chanel: unknown key (did you mean "channel"?)`)
	assert.NotNil(t, m.Router().Table().Route("b"), "a failed reload changes nothing")
}

func TestBrokenConfigAtStart(t *testing.T) {
	m, file := start(t, "[redis]\nport = \"x\"\n")
	assert.Equal(t, "disconnected", m.Status())
	assert.ErrorContains(t, m.Publish("a", "b"), "the config has errors")
	assert.Contains(t, strings.Join(logs(m), "\n"), `redis.port: "x" is not a whole number`)
	require.NoError(t, os.WriteFile(file, nil, 0o644))
	res, err := m.Reload()
	require.NoError(t, err)
	assert.True(t, res.Reconnected)
	assert.Equal(t, "local", m.Status())
}

func TestGameEvent(t *testing.T) {
	m, _ := start(t, "[server]\nid = \"s1\"\n[events]\nprefix = \"p:\"\n")
	_, _, _ = m.On("p:player:death", "d", OnOptions{})
	require.NoError(t, m.GameEvent("PlayerDeath", luaTape(map[any]any{"victim": "bob", "attacker": nil})))
	require.Eventually(t, func() bool { return m.Router().Stats.Queued.Load() >= 1 }, 5*time.Second, time.Millisecond)
	var payload string
	for _, d := range drain(m) {
		if d.Event.Kind == router.KindMessage {
			payload = d.Event.Payload
		}
	}
	assert.Regexp(t, `^\{"attacker":null,"victim":"bob","ts":\d{13},"server":"s1"\}$`, payload)
}

func TestStatsDoc(t *testing.T) {
	m, _ := start(t, "[[routes]]\nname = \"a\"\npattern = \"a:*\"\nhandler = \"A\"\nrate = \"5/s\"\n")
	doc := m.Stats()
	keys := map[string]bool{}
	for i, n := 1, doc.Nodes; i < len(n); {
		// walk the top-level keys
		keys[n[i].Str] = true
		i = skip(n, i+1)
	}
	for _, k := range []string{"status", "received", "published", "dispatched", "dropped", "rate_limited", "queue", "latency_us", "redis", "routes", "events", "goroutines"} {
		assert.True(t, keys[k], "GetStats has %q", k)
	}
}

// skip returns the index after the JSON-shaped subtree at i.
func skip(n []router.Node, i int) int {
	k := n[i]
	i++
	switch k.Kind {
	case router.KindArray:
		for range int(k.Len) {
			i = skip(n, i)
		}
	case router.KindObject:
		for range int(k.Len) {
			i = skip(n, skip(n, i))
		}
	}
	return i
}

func TestLogQueueBound(t *testing.T) {
	var q logQueue
	q.counter = new(atomic.Int64)
	for i := 0; i < maxLogLines+10; i++ {
		q.add("info", fmt.Sprint(i))
	}
	assert.Equal(t, int64(maxLogLines+1), q.counter.Load(), "lines plus the lost-lines note")
	n := 0
	var last string
	for {
		_, line, ok := q.take()
		if !ok {
			break
		}
		n++
		last = line
	}
	assert.Equal(t, maxLogLines+1, n)
	assert.Equal(t, "10 log lines were dropped while nothing printed them", last)
	assert.Zero(t, q.counter.Load())
}

// TestStatsFrames: GetStats().frames reports the pump's figures that the
// shim recorded since the last GetStats.
func TestStatsFrames(t *testing.T) {
	dir := t.TempDir()
	calls := 0
	m := Start(Options{Root: dir, Config: config.Options{Dir: dir, Environ: []string{}}, Frames: func() Frames {
		calls++
		recent := make([]time.Duration, 100)
		for i := range recent {
			recent[i] = time.Duration(i+1) * time.Microsecond
		}
		return Frames{Count: 150, OverBudget: 3, Max: 9 * time.Millisecond, Recent: recent}
	}})
	t.Cleanup(m.Stop)
	doc := m.Stats()
	got := map[string]float64{}
	n := doc.Nodes
	for i := 1; i < len(n); i = skip(n, i+1) {
		if n[i].Str == "frames" {
			for j, k := i+2, 0; k < int(n[i+1].Len); k++ {
				got[n[j].Str] = n[j+1].Num
				j += 2
			}
		}
	}
	assert.Equal(t, map[string]float64{"count": 150, "over_budget": 3, "p50_us": 51, "p99_us": 100, "max_us": 9000}, got)
	assert.Equal(t, 1, calls)
}

// TestReloadRedisKeys: a Reload that changes [redis] keys applies what it
// can on the live connection, and otherwise moves to a new connection
// without a gap: Lua sees no RealtimeDisconnected, and events keep coming.
func TestReloadRedisKeys(t *testing.T) {
	srv := redistest.Start(t)
	base := "[redis]\nurl = \"" + srv.URL() + "\"\n"
	m, file := start(t, base)
	require.Eventually(t, func() bool { return m.Status() == "connected" }, 10*time.Second, time.Millisecond)
	_, _, err := m.On("r", "r", OnOptions{})
	require.NoError(t, err)

	require.NoError(t, os.WriteFile(file, []byte(base+"outbox_events = 500\n"), 0o644))
	res, err := m.Reload()
	require.NoError(t, err)
	assert.False(t, res.Reconnected, "the outbox bound changes on the live connection")

	require.NoError(t, os.WriteFile(file, []byte(base+"outbox_events = 500\nread_timeout = \"7s\"\n"), 0o644))
	res, err = m.Reload()
	require.NoError(t, err)
	assert.True(t, res.Reconnected, "a new read timeout needs a new connection")

	// The new connection delivers; the status never went to disconnected.
	require.NoError(t, m.Publish("r", "after"))
	var got []string
	require.Eventually(t, func() bool {
		for _, d := range drain(m) {
			if d.Event.Kind == router.KindStatus {
				assert.NotEqual(t, "RealtimeDisconnected", d.Hook, "a Reload's reconnect is not an outage: %q", d.Event.Note)
				continue
			}
			got = append(got, d.Event.Payload)
		}
		return len(got) > 0
	}, 10*time.Second, 5*time.Millisecond)
	assert.Contains(t, got, "after")
}

// TestReloadToUnreachableRedis: a Reload whose new [redis] settings do not
// connect does not leave the old connection reporting "connected" while
// publishes wait for the new one: the status says so, and Lua hears it.
func TestReloadToUnreachableRedis(t *testing.T) {
	srv := redistest.Start(t)
	m, file := start(t, "[redis]\nurl = \""+srv.URL()+"\"\n")
	require.Eventually(t, func() bool { return m.Status() == "connected" }, 10*time.Second, time.Millisecond)
	drain(m)
	dead, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := dead.Addr().String()
	require.NoError(t, dead.Close()) // nothing listens there now
	require.NoError(t, os.WriteFile(file, []byte("[redis]\nurl = \"redis://"+addr+"\"\nconnect_timeout = \"200ms\"\n"), 0o644))
	res, err := m.Reload()
	require.NoError(t, err)
	assert.True(t, res.Reconnected)
	var hooks []string
	require.Eventually(t, func() bool {
		for _, d := range drain(m) {
			hooks = append(hooks, d.Hook)
		}
		return m.Status() != "connected" && slices.Contains(hooks, "RealtimeDisconnected")
	}, 15*time.Second, 5*time.Millisecond, "status %s, hooks %v", m.Status(), hooks)
}

// TestOnRouteNamesDoNotCollide: two registrations whose names would be the
// same ("a (b) (c)") are refused, not merged.
func TestOnRouteNamesDoNotCollide(t *testing.T) {
	m, _ := start(t, "")
	_, name, err := m.On("b) (c", "a", OnOptions{})
	require.NoError(t, err)
	assert.Equal(t, "a (b) (c)", name)
	_, _, err = m.On("c", "a (b)", OnOptions{})
	assert.ErrorContains(t, err, `the route name "a (b) (c)" is already that of the registration with id "a" for "b) (c"`)
	assert.Equal(t, "b) (c", m.dynamic[name].pattern, "the first registration stands")

	// The same id and text as a pattern and as a channel: one name, two
	// registrations that match differently.
	_, name, err = m.On("a*", "x", OnOptions{})
	require.NoError(t, err)
	_, _, err = m.On("a*", "x", OnOptions{Exact: true})
	assert.ErrorContains(t, err, `the route name "x (a*)" is already that of the registration with id "x" for "a*"`)
	assert.False(t, m.dynamic[name].exact, "the pattern registration stands")
	_, _, err = m.On("a*", "x", OnOptions{})
	assert.NoError(t, err, "the same registration again replaces it")
}

package api

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gmod-realtime/realtime/router"
)

// docValue turns a tape built for Lua (GetStats, Reload's summary) into Go
// values: objects become maps, arrays slices.
func docValue(n []router.Node, i int) (any, int) {
	k := n[i]
	i++
	switch k.Kind {
	case router.KindArray:
		out := []any{}
		for range int(k.Len) {
			var v any
			v, i = docValue(n, i)
			out = append(out, v)
		}
		return out, i
	case router.KindObject:
		out := map[string]any{}
		for range int(k.Len) {
			var key, v any
			key, i = docValue(n, i)
			v, i = docValue(n, i)
			out[fmt.Sprint(key)] = v
		}
		return out, i
	case router.KindString:
		return k.Str, i
	case router.KindNumber:
		return k.Num, i
	case router.KindTrue:
		return true, i
	case router.KindFalse:
		return false, i
	}
	return nil, i
}

func docMap(t *testing.T, d *router.Doc) map[string]any {
	t.Helper()
	v, end := docValue(d.Nodes, 0)
	require.Equal(t, len(d.Nodes), end, "the tape is one value")
	return v.(map[string]any)
}

// messages drains one ProcessEvents and returns its message dispatches.
func messages(m *Module) []Dispatch {
	var out []Dispatch
	for _, d := range drain(m) {
		if d.Event.Kind == router.KindMessage {
			out = append(out, d)
		}
	}
	return out
}

// publishAndTake publishes n events to channel (local mode) and returns
// their dispatches.
func publishAndTake(t *testing.T, m *Module, channel string, n int) []Dispatch {
	t.Helper()
	before := m.Router().Stats.Dispatched.Load()
	for i := range n {
		require.NoError(t, m.Publish(channel, fmt.Sprint(i)))
	}
	var got []Dispatch
	require.Eventually(t, func() bool {
		got = append(got, messages(m)...)
		return len(got) >= n
	}, 10e9, 1e6)
	require.Len(t, got, n)
	assert.Equal(t, before+uint64(n), m.Router().Stats.Dispatched.Load())
	return got
}

func logsWith(m *Module, sub string) []string {
	var out []string
	for _, l := range logs(m) {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return out
}

// TestHandlerErrorsAreCountedAndLogged: docs/API.md "A handler that errors is
// reported with a traceback (through ErrorNoHalt, rate-limited) and
// counted; the other handlers and the pump go on", and an error raised
// while the pump built an event's call "is reported like a handler error
// and counted".
func TestHandlerErrorsAreCountedAndLogged(t *testing.T) {
	m, _ := start(t, "[log]\nrate = \"unlimited\"\n[[routes]]\nname = \"r\"\nchannel = \"a\"\nhandler = \"H\"\n")
	require.NoError(t, m.Handler("H", true))
	drain(m)
	logs(m)
	ds := publishAndTake(t, m, "a", 3)
	m.HandlerError(&ds[0], false, "boom\nstack traceback:\n\t[C]: in function 'error'")
	m.HandlerError(&ds[1], true, "__gc raised")
	st := m.Router().Table().Route("r").Stats
	assert.Equal(t, uint64(2), st.HandlerErrors.Load())
	assert.Equal(t, uint64(2), m.Router().Stats.Dropped()[router.DropHandlerError])
	assert.Equal(t, uint64(3), m.Router().Stats.Dispatched.Load(), "the failed calls were made: still dispatched")
	lines := logs(m)
	require.Len(t, lines, 2, "%q", lines)
	assert.Equal(t, "error: handler of route \"r\" failed on \"a\": boom\nstack traceback:\n\t[C]: in function 'error'", lines[0], "with the traceback")
	assert.Equal(t, `error: an error was raised outside the handler of route "r", while its call was prepared (event on "a" dropped): __gc raised`, lines[1])

	// A status hook's error is logged, not counted as a dropped event.
	m.Disconnect()
	var status Dispatch
	for _, d := range drain(m) {
		status = d
	}
	require.Equal(t, "RealtimeDisconnected", status.Hook)
	m.HandlerError(&status, false, "hook failed")
	assert.Equal(t, uint64(2), m.Router().Stats.Dropped()[router.DropHandlerError])
	assert.Equal(t, []string{`error: handler of hook "RealtimeDisconnected" failed on "": hook failed`}, logs(m))

	// An error outside any event.
	m.HandlerError(nil, true, "out of memory")
	assert.Equal(t, []string{"error: ProcessEvents: out of memory"}, logs(m))
	stats := docMap(t, m.Stats())
	assert.Equal(t, 2.0, stats["dropped"].(map[string]any)["handler_error"])
	assert.Equal(t, 2.0, stats["routes"].(map[string]any)["r"].(map[string]any)["handler_errors"])
}

// TestHandlerErrorLogIsRateLimited: a handler that fails on every event
// does not flood the console: past [log] rate, errors are counted but not
// printed, and the next printed line says how many were left out.
func TestHandlerErrorLogIsRateLimited(t *testing.T) {
	toml := "[[routes]]\nname = \"r\"\nchannel = \"a\"\nhandler = \"H\"\n"
	m, file := start(t, "[log]\nrate = \"1/h\"\n"+toml) // a bucket of one line that cannot refill during the test
	require.NoError(t, m.Handler("H", true))
	drain(m)
	logs(m)
	ds := publishAndTake(t, m, "a", 50)
	for i := range ds {
		m.HandlerError(&ds[i], false, "boom")
	}
	assert.Equal(t, uint64(50), m.Router().Stats.Dropped()[router.DropHandlerError], "every error counted")
	assert.Len(t, logsWith(m, "boom"), 1, "one error printed of 50")

	require.NoError(t, os.WriteFile(file, []byte("[log]\nrate = \"unlimited\"\n"+toml), 0o644))
	_, err := m.Reload()
	require.NoError(t, err)
	ds = publishAndTake(t, m, "a", 1)
	m.HandlerError(&ds[0], false, "boom")
	assert.Equal(t, []string{`error: handler of route "r" failed on "a": boom (49 more lines suppressed)`}, logsWith(m, "boom"))
}

// TestLogLevelHidesTheModulesOwnLines: with [log] level = "error" the
// console gets no info or warn line of the module, its own (the config
// summary at start, "no handler", "reloaded") included; errors still show.
func TestLogLevelHidesTheModulesOwnLines(t *testing.T) {
	toml := "[log]\nlevel = \"error\"\n[[routes]]\nname = \"r\"\nchannel = \"a\"\nhandler = \"Missing\"\n"
	m, file := start(t, toml)
	drain(m)
	ds := messages(m)
	require.Empty(t, ds)
	require.NoError(t, m.Publish("a", "x"))
	require.Eventually(t, func() bool { return m.Router().Stats.Dropped()[router.DropNoHandler] == 1 || len(messages(m)) > 0 }, 10e9, 1e6)
	require.NoError(t, os.WriteFile(file, []byte(toml+"[queue]\nmax_events = 5\n"), 0o644))
	_, err := m.Reload()
	require.NoError(t, err)
	require.NoError(t, m.Connect(""))
	m.HandlerError(nil, false, "shown")
	assert.Equal(t, []string{"error: ProcessEvents: shown"}, logs(m), "only the error")

	// The default level, info, shows them.
	m2, _ := start(t, "[[routes]]\nname = \"r\"\nchannel = \"a\"\nhandler = \"Missing\"\n")
	require.NoError(t, m2.Publish("a", "x"))
	require.Eventually(t, func() bool { drain(m2); return m2.Router().Stats.Dropped()[router.DropNoHandler] == 1 }, 10e9, 1e6)
	all := strings.Join(logs(m2), "\n")
	assert.Contains(t, all, "info: config ")
	assert.Contains(t, all, `warn: route "r": no handler "Missing" is registered`)
}

// TestPublishTable: realtime.Publish(channel, table) sends the table as
// JSON; a table that cannot be encoded is refused with the path of the
// culprit and publishes nothing.
func TestPublishTable(t *testing.T) {
	m, _ := start(t, "")
	_, name, err := m.On("t", "t", OnOptions{})
	require.NoError(t, err)
	drain(m)
	require.NoError(t, m.PublishTable("t", luaTape(map[any]any{"killer": "bob", "pos": map[any]any{"x": 1, "y": 2, "z": 3.5}, "tags": []any{"a"}})))
	var ds []Dispatch
	require.Eventually(t, func() bool { ds = append(ds, messages(m)...); return len(ds) == 1 }, 10e9, 1e6)
	assert.Equal(t, name, ds[0].Handler)
	assert.Equal(t, `{"killer":"bob","pos":{"x":1,"y":2,"z":3.5},"tags":["a"]}`, ds[0].Event.Payload)

	published := m.Router().Stats.Published.Load()
	err = m.PublishTable("t", luaTape(map[any]any{"players": []any{"a", map[any]any{"cb": invalid("a function")}}}))
	assert.EqualError(t, err, "payload.players[2].cb: cannot encode a function")
	assert.Equal(t, published, m.Router().Stats.Published.Load(), "nothing published")

	m.Disconnect()
	assert.ErrorContains(t, m.PublishTable("t", luaTape(map[any]any{"a": 1})), "not connected (realtime.Disconnect() was called")
}

// TestGameEventErrors: a game event with a field JSON cannot carry is
// refused naming it; an unknown event is an error.
func TestGameEventErrors(t *testing.T) {
	m, _ := start(t, "")
	assert.EqualError(t, m.GameEvent("RoundEnd", luaTape(map[any]any{"winner_team": 1, "score": map[any]any{"f": invalid("a function")}})),
		"event.score.f: cannot encode a function")
	assert.EqualError(t, m.GameEvent("PlayerJump", luaTape(map[any]any{})), `no game event "PlayerJump"`)
}

// TestBatchFailed: events taken for the shim's ring that could not reach
// it (an internal error) are counted as dropped.internal, not as
// dispatched, and logged once with their number.
func TestBatchFailed(t *testing.T) {
	m, _ := start(t, "[[routes]]\nname = \"r\"\nchannel = \"a\"\nhandler = \"H\"\n")
	require.NoError(t, m.Handler("H", true))
	drain(m)
	logs(m)
	for i := range 3 {
		require.NoError(t, m.Publish("a", fmt.Sprint(i)))
	}
	var ds []Dispatch
	require.Eventually(t, func() bool {
		for d, ok := m.Take(); ok; d, ok = m.Take() {
			ds = append(ds, d)
		}
		return len(ds) >= 3
	}, 10e9, 1e6)
	m.Disconnect()
	ds = append(ds, drain(m)...) // and a status event, which is not counted
	require.Len(t, ds, 4)
	m.BatchFailed(ds, "no memory for the batch")
	assert.Equal(t, uint64(3), m.Router().Stats.Dropped()[router.DropInternal])
	assert.Equal(t, uint64(0), m.Router().Stats.Dispatched.Load())
	assert.Equal(t, uint64(3), m.Router().Table().Route("r").Stats.Dropped.Load())
	assert.Equal(t, []string{"error: internal error in ProcessEvents (3 events dropped, counted as dropped.internal): no memory for the batch"}, logs(m))
}

// TestReloadSummaryDoc: realtime.Reload()'s second result, as Lua gets it.
func TestReloadSummaryDoc(t *testing.T) {
	m, file := start(t, "[[routes]]\nname = \"a\"\nchannel = \"a\"\nhandler = \"A\"\n[[routes]]\nname = \"c\"\npattern = \"c:*\"\nhandler = \"C\"\n")
	require.NoError(t, os.WriteFile(file, []byte("[[routes]]\nname = \"b\"\npattern = \"b:*\"\nhandler = \"B\"\n[[routes]]\nname = \"c\"\npattern = \"c:*\"\nhandler = \"C\"\nrate = \"5/s\"\n"), 0o644))
	res, err := m.Reload()
	require.NoError(t, err)
	got := docMap(t, res.Doc())
	assert.Equal(t, []any{"b"}, got["added"])
	assert.Equal(t, []any{"a"}, got["removed"])
	assert.Equal(t, []any{"c"}, got["changed"])
	assert.Equal(t, []any{}, got["refused"])
	assert.Equal(t, 1.0, got["subscribed"])
	assert.Equal(t, 1.0, got["unsubscribed"])
	assert.Equal(t, false, got["reconnected"])
	assert.Equal(t, res.String(), got["summary"])
	assert.Contains(t, got["summary"], "b")
}

// TestConfigureValues: realtime.Config{...}'s value types and their
// errors; nil clears an earlier value.
func TestConfigureValues(t *testing.T) {
	m, _ := start(t, "")
	assert.EqualError(t, m.Configure(luaTape("x")), "want a table")
	assert.EqualError(t, m.Configure(luaTape([]any{"x"})), "key 1: want a string key such as host, port or password")
	assert.EqualError(t, m.Configure(luaTape(map[any]any{invalid("a boolean key"): 1})), "a boolean key: want a string key such as host, port or password")
	assert.EqualError(t, m.Configure(luaTape(map[any]any{"host": map[any]any{"a": 1}})), "host: want a string, number or boolean")
	assert.EqualError(t, m.Configure(luaTape(map[any]any{"db": 1.5})), "realtime.Config: db: 1.5 is not a whole number")

	require.NoError(t, m.Configure(luaTape(map[any]any{"host": "127.0.0.1", "tls": false, "db": 2, "read_timeout": 1.5})))
	require.NoError(t, m.Connect(""))
	m.Disconnect()
	assert.Equal(t, 2, m.Config().Redis.DB)
	assert.Equal(t, "1.5s", m.Config().Redis.ReadTimeout.String())
	require.NoError(t, m.Configure(luaTape(map[any]any{"host": nil, "db": nil, "read_timeout": nil, "tls": nil})))
	require.NoError(t, m.Connect(""))
	assert.Equal(t, "local", m.Config().Mode(), "nil cleared every Redis setting: local mode again")
	assert.Equal(t, "local", m.Status())
}

// TestRedisClientLogsReachTheConsole: go-redis's own log lines go to the
// main thread's log, not to the server's stderr.
func TestRedisClientLogsReachTheConsole(t *testing.T) {
	m, _ := start(t, "")
	logs(m)
	redisLogger{m}.Printf(context.Background(), "pool: %s", "retrying")
	assert.Equal(t, []string{"warn: redis: pool: retrying"}, logs(m))
}

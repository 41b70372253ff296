package tests

import (
	"encoding/json"
	"strconv"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gmod-realtime/realtime/internal/redistest"
)

// TestAPI runs tests/lua/api.lua on every host: argument errors, On/Off and
// replacement by id, 200,000 registrations (20,000 under Wine) with the registry unchanged,
// Publish's JSON shapes, the six game events, failing handlers, GetStats.
func TestAPI(t *testing.T) {
	for _, h := range hosts(luajit64, luajit64.TimersFirst(), lua51, luajit32, win64, win32) {
		t.Run(h.Name, func(t *testing.T) {
			t.Parallel()
			srv := redistest.Start(t)
			sub := Subscribe(t, srv, "*")
			// A generous budget: under qemu a handler call takes far longer.
			s := NewServer(t, h, redisConfig(srv, "[dispatch]\nbudget = \"100ms\"\n"))
			env := []string{"TEST_REDIS_PORT=" + strconv.Itoa(srv.Port)}
			if isWine(h) {
				// A call into the module costs 0.1 to 1.6 ms under Wine (0.02 ms
				// on Linux): 200,000 would take minutes.
				env = append(env, "API_CYCLES=10000")
			}
			out := s.RunScript("api.lua", env...)
			assert.Contains(t, out, "api: ok")

			// Bytes reach Redis exactly, NUL and 0xff included. The
			// script's handlers got these back from Redis, so Redis had
			// accepted them before the marker.
			sub.Sync(t)
			assert.Equal(t, []string{"a\x00b\xff"}, sub.Messages("shape:binary"))
			chat := sub.Messages("chat:message")
			require.Len(t, chat, 1)
			var ev map[string]any
			require.NoError(t, json.Unmarshal([]byte(chat[0]), &ev), chat[0])
			assert.Equal(t, "hi \x00 there", ev["message"])
			assert.Equal(t, true, ev["team"])
			assert.Equal(t, "test-1", ev["server"])

			// Handler errors are reported with the prefix and a traceback.
			assert.Contains(t, out, `[realtime] handler of route "bad (err:*)" failed on "err:x": `)
			assert.Contains(t, out, "boom")
			assert.Contains(t, out, "stack traceback")
		})
	}
}

// TestBoundary runs tests/lua/boundary.lua on every host, in local mode:
// the defects of issue 11 (cycles, refs, errors while an event is built,
// numbers, JSON, argument messages), each once a freeze, a crash or a
// misrouted event.
func TestBoundary(t *testing.T) {
	for _, h := range hosts(luajit64, lua51, luajit32, win64, win32) {
		t.Run(h.Name, func(t *testing.T) {
			t.Parallel()
			s := NewServer(t, h, "")
			out := s.RunScript("boundary.lua")
			assert.Contains(t, out, "boundary: ok")
			assert.Contains(t, out, `an error was raised outside the handler of hook "RealtimeDisconnected", while its call was prepared`)
			assert.Contains(t, out, "hostile __index")
		})
	}
}

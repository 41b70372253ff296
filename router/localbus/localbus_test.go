package localbus_test

import (
	"bytes"
	"runtime"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gmod-realtime/realtime/config"
	"github.com/gmod-realtime/realtime/router"
	"github.com/gmod-realtime/realtime/router/localbus"
)

func TestLocalRoundTrip(t *testing.T) {
	cfg, err := config.Parse("t.toml", []byte("[[routes]]\npattern = \"player:*\"\nhandler = \"h\"\n"))
	require.NoError(t, err)
	r, err := router.New(cfg)
	require.NoError(t, err)
	require.Zero(t, projectGoroutines(), "no goroutine of ours runs before Attach")
	bus := localbus.New(4)
	r.Attach(bus)
	assert.Equal(t, router.StatusLocal, r.Status())
	assert.Equal(t, 1, projectGoroutines(), "the bus delivers from one goroutine")

	require.NoError(t, r.Publish("player:spawn", "a\x00b"))
	require.NoError(t, r.Publish("chat:message", "unrouted"))
	var got []string
	require.Eventually(t, func() bool {
		r.Drain(10, 0, func(e *router.Event) {
			if e.Kind == router.KindMessage {
				got = append(got, e.Channel+"="+e.Payload)
			}
		})
		return r.Stats.Received.Load() == 2
	}, 5*time.Second, time.Millisecond)
	r.Drain(10, 0, func(e *router.Event) { got = append(got, e.Channel+"="+e.Payload) })
	assert.Equal(t, []string{"player:spawn=a\x00b"}, got, "NUL bytes survive; unrouted channels are filtered")
	assert.Equal(t, uint64(1), r.Stats.Dropped()[router.DropNoRoute])

	require.NoError(t, r.Close())
	bus.Wait()
	assert.ErrorIs(t, bus.Publish("x", "y"), localbus.ErrClosed)
	require.NoError(t, bus.Close(), "Close is idempotent")
	// Wait returns once the goroutine has left its loop; it is gone from the
	// runtime a moment later.
	require.Eventually(t, func() bool { return projectGoroutines() == 0 }, 5*time.Second, time.Millisecond,
		"a goroutine of the router or the bus outlives Close")
}

// projectGoroutines counts the goroutines running the router's or the bus's
// code, not counting tests' own (this test's, testify's).
func projectGoroutines() int {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	n := 0
	for _, g := range bytes.Split(buf, []byte("\n\n")) {
		if bytes.Contains(g, []byte("gmod-realtime/realtime/")) && !bytes.Contains(g, []byte("_test.")) {
			n++
		}
	}
	return n
}

func TestLocalOutboxFull(t *testing.T) {
	bus := localbus.New(2) // not started: nothing drains the outbox
	require.NoError(t, bus.Publish("a", "1"))
	require.NoError(t, bus.Publish("a", "2"))
	assert.ErrorIs(t, bus.Publish("a", "3"), localbus.ErrFull)
}

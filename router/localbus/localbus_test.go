package localbus_test

import (
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
	before := runtime.NumGoroutine()
	bus := localbus.New(4)
	r.Attach(bus)
	assert.Equal(t, router.StatusLocal, r.Status())

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
	assert.LessOrEqual(t, runtime.NumGoroutine(), before)
}

func TestLocalOutboxFull(t *testing.T) {
	bus := localbus.New(2) // not started: nothing drains the outbox
	require.NoError(t, bus.Publish("a", "1"))
	require.NoError(t, bus.Publish("a", "2"))
	assert.ErrorIs(t, bus.Publish("a", "3"), localbus.ErrFull)
}

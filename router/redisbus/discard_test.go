package redisbus

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gmod-realtime/realtime/internal/redistest"
)

// TestDisconnectCountsTheDiscardedOutbox (found by an attacker of issue
// 12): realtime.Disconnect while Redis is unreachable discards what
// Publish accepted and the outbox still holds; that loss was counted
// nowhere (GetStats showed every message as published and none failed).
// The discarded messages count as publish_failed, with a log line, also
// those of a connection a Reload was replacing.
func TestDisconnectCountsTheDiscardedOutbox(t *testing.T) {
	srv := redistest.Start(t)
	h, logs := startLogged(t, fmt.Sprintf("[redis]\nurl = %q\nread_timeout = \"300ms\"\nreconnect_min = \"50ms\"\nreconnect_max = \"500ms\"\n", srv.URL()))
	h.waitStatus("connected")
	srv.Kill()
	h.waitStatus("disconnected")
	for i := range 5 {
		require.NoError(t, h.r.Publish("x", fmt.Sprint(i)))
	}
	// A Reload replaces the connection, with 3 more published after it.
	next, err := New(redisConfig(t, fmt.Sprintf("[redis]\nurl = %q\nread_timeout = \"301ms\"\nreconnect_min = \"50ms\"\n", srv.URL())))
	require.NoError(t, err)
	h.bus.HandOver(next)
	h.r.Replace(next)
	for i := range 3 {
		require.NoError(t, h.r.Publish("x", fmt.Sprint(10+i)))
	}
	require.NoError(t, h.r.Close()) // Disconnect
	for _, b := range []*Bus{h.bus, next} {
		done := make(chan struct{})
		go func() { b.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatal("a bus did not stop")
		}
	}
	require.Eventually(t, func() bool { return h.r.Stats.PublishFails.Load() == 8 }, 5*time.Second, 5*time.Millisecond,
		"publish_failed %d, want the 8 discarded", h.r.Stats.PublishFails.Load())
	assert.Equal(t, uint64(8), h.bus.Stats.Discarded.Load()+next.Stats.Discarded.Load())
	assert.True(t, logs.contains("discarded"), "logged: %v", logs.all())
}

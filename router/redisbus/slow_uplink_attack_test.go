package redisbus

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gmod-realtime/realtime/internal/redistest"
)

// TestBigMessageWaitsOutClientPause: CLIENT PAUSE WRITE (an operator's
// maintenance, or Redis's own FAILOVER) holds every PUBLISH while Redis
// still answers PING. A big message sent meanwhile is written whole and
// waits for its reply: the uplink is not too slow for it, and it must
// not be given up, but published once the pause ends.
func TestBigMessageWaitsOutClientPause(t *testing.T) {
	srv := redistest.Start(t)
	c := client(t, srv)
	got := collect(t, c, "big:*")
	h, logs := startLogged(t, slowUplinkConfig(srv.Addr(), "200ms", "200ms"))
	h.waitFor("connected", 10*time.Second, func() bool { return h.bus.live.Load() })
	ctx := context.Background()
	big := strings.Repeat("p", bigMessage)
	require.NoError(t, c.Do(ctx, "CLIENT", "PAUSE", "4000", "WRITE").Err())
	require.NoError(t, h.r.Publish("big:paused", big))
	require.NoError(t, h.r.Publish("big:after", "1"))
	h.waitFor("the messages published after the pause", 30*time.Second, func() bool {
		return got.get("big:after=1") > 0 || h.r.Stats.PublishFails.Load() > 0
	})
	assert.Positive(t, got.get("big:paused="+big), "the big message published")
	assert.Zero(t, h.r.Stats.PublishFails.Load(), "not given up: %v", logs.all())
}

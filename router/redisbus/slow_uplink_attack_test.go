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

// TestHugeMessageGivenUpWithoutScripting: the probe that tells a slow
// uplink from a pause is a script; an ACL user who may not run scripts
// gets NOPERM for it, which is an answer all the same: the huge message
// over a slow uplink is given up as before, and the messages behind it
// go out.
func TestHugeMessageGivenUpWithoutScripting(t *testing.T) {
	srv, admin := aclServer(t, "-@scripting")
	got := collect(t, admin, "game:*")
	proxy := slowUplinkProxy(t, srv.Addr(), 1<<20)
	h, logs := startLogged(t, slowUplinkConfig("game:pw@"+proxy, "300ms", "300ms"))
	huge := strings.Repeat("x", 2<<20)
	require.NoError(t, h.r.Publish("game:huge", huge))
	require.NoError(t, h.r.Publish("game:after", "1"))
	h.waitFor("the message behind it", 60*time.Second, func() bool { return got.get("game:after=1") > 0 })
	assert.Equal(t, uint64(1), h.r.Stats.PublishFails.Load(), "given up: %v", logs.all())
}

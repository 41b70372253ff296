package redisbus

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gmod-realtime/realtime/config"
	"github.com/gmod-realtime/realtime/internal/redistest"
)

func redisConfig(t *testing.T, toml string) config.Redis {
	t.Helper()
	cfg, err := config.Parse("test.toml", []byte(toml))
	require.NoError(t, err)
	return cfg.Redis
}

// TestReconfigureLive: a Reload that changes only the outbox bounds, the
// backoff or max_subscriptions is applied on the live connection; one that
// changes a timeout or the address needs a new connection.
func TestReconfigureLive(t *testing.T) {
	srv := redistest.Start(t)
	base := fmt.Sprintf("[redis]\nurl = %q\nread_timeout = \"300ms\"\nreconnect_min = \"50ms\"\n", srv.URL())
	h := newHarness(t, srv, routes)
	h.waitStatus("connected")
	assert.True(t, h.bus.Reconfigure(redisConfig(t, base+"outbox_events = 2\nreconnect_max = \"1s\"\nmax_subscriptions = 5\n")))
	assert.True(t, h.bus.Reconfigure(redisConfig(t, base+"outbox_events = 2\n")))
	assert.False(t, h.bus.Reconfigure(redisConfig(t, base+"outbox_events = 2\nwrite_timeout = \"9s\"\n")))
	assert.False(t, h.bus.Reconfigure(redisConfig(t, strings.Replace(base, srv.URL(), "redis://127.0.0.1:1", 1))))
	assert.Equal(t, []string{"connecting", "connected"}, h.statuses, "no reconnect")

	srv.Kill()
	h.waitStatus("disconnected")
	require.NoError(t, h.r.Publish("x", "1"))
	require.NoError(t, h.r.Publish("x", "2"))
	assert.ErrorIs(t, h.r.Publish("x", "3"), ErrOutboxFull, "the new outbox bound is in force")
}

// (a wrong password, say) goes to the bus for the fixed settings.
func TestReplaceABrokenConnection(t *testing.T) {
	srv := redistest.Start(t, "--requirepass", "right")
	h := newHarness(t, srv, "[[routes]]\nname = \"own\"\nchannel = \"own\"\nhandler = \"h\"\n", `password = "wrong"`)
	h.waitStatus("disconnected")
	for i := 0; i < 10; i++ {
		require.NoError(t, h.r.Publish("own", fmt.Sprint(i)))
	}
	next, err := New(redisConfig(t, fmt.Sprintf("[redis]\nurl = %q\npassword = \"right\"\n", srv.URL())))
	require.NoError(t, err)
	h.bus.HandOver(next)
	h.r.Replace(next)
	h.waitFor("the held messages", 15*time.Second, func() bool { return len(h.msgs) >= 10 })
	for i := 0; i < 10; i++ {
		assert.Equal(t, fmt.Sprintf("own<-own=%d", i), h.msgs[i], "in order")
	}
	assert.Equal(t, "connected", h.lastStatus())
}

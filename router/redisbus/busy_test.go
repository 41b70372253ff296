package redisbus

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gmod-realtime/realtime/config"
	"github.com/gmod-realtime/realtime/internal/redistest"
)

// busyServer starts a redis-server that answers BUSY to other clients as
// soon as a script has run for 20ms.
func busyServer(t *testing.T) (*redistest.Server, *redis.Client) {
	t.Helper()
	srv := redistest.Start(t, "--busy-reply-threshold", "20")
	return srv, client(t, srv)
}

// runBusyScript starts a script that never ends on its own and returns
// once Redis answers BUSY; stop kills it and returns once Redis answers
// again.
func runBusyScript(t *testing.T, srv *redistest.Server) (stop func()) {
	t.Helper()
	ctx := context.Background()
	script := redis.NewClient(&redis.Options{Addr: srv.Addr(), Protocol: 2, ReadTimeout: -1})
	ended := make(chan error, 1)
	go func() { ended <- script.Eval(ctx, "while true do end", nil).Err() }()
	probe := redis.NewClient(&redis.Options{Addr: srv.Addr(), Protocol: 2})
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := probe.Ping(ctx).Err()
		if err != nil && strings.HasPrefix(err.Error(), "BUSY") {
			break
		}
		require.True(t, time.Now().Before(deadline), "Redis never answered BUSY (last: %v)", err)
		time.Sleep(time.Millisecond)
	}
	return func() {
		require.NoError(t, probe.Do(ctx, "SCRIPT", "KILL").Err())
		<-ended
		require.NoError(t, probe.Ping(ctx).Err())
		_ = probe.Close()
		_ = script.Close()
	}
}

// TestPublishDuringBusyScriptIsNotDropped (found by an attacker of issue
// 12): while a script runs past busy-reply-threshold Redis answers every
// PUBLISH with BUSY, a reply that says "try again later", not "never".
// The writer took it for a refusal: the message was dropped (counted as
// publish_failed) although sending it once the script ended would work.
func TestPublishDuringBusyScriptIsNotDropped(t *testing.T) {
	srv, c := busyServer(t)
	got := collect(t, c, "game:*")
	h := newHarness(t, srv, "[[routes]]\nname = \"g\"\npattern = \"game:*\"\nhandler = \"h\"\n")
	h.waitSubscribed()
	stop := runBusyScript(t, srv)
	for i := range 3 {
		require.NoError(t, h.r.Publish("game:x", fmt.Sprint(i)))
	}
	h.waitFor("the writer to meet BUSY", 10*time.Second, func() bool {
		return h.bus.Stats.Refused.Load()+h.bus.Stats.PublishRetry.Load() > 0
	})
	stop()
	// A message Redis answered BUSY is sent again after the ones of its
	// batch that got through: wait for all three, or for a refusal.
	h.waitFor("the messages at Redis", 10*time.Second, func() bool {
		all := true
		for i := range 3 {
			all = all && got.get(fmt.Sprintf("game:x=%d", i)) > 0
		}
		return all || h.bus.Stats.Refused.Load() > 0 && h.bus.OutboxLen() == 0
	})
	for i := range 3 {
		assert.Equal(t, 1, got.get(fmt.Sprintf("game:x=%d", i)), "message %d", i)
	}
	assert.Zero(t, h.bus.Stats.Refused.Load(), "publishes taken for refused")
	assert.Zero(t, h.r.Stats.PublishFails.Load())
}

// TestSubscribeDuringBusyScriptIsNotARefusal (found by an attacker of
// issue 12): a route added while a script keeps Redis BUSY got BUSY for
// its PSUBSCRIBE, which was recorded as an ACL-style refusal: the route
// stayed without its subscription (and marked refused) on a healthy
// connection long after the script ended.
func TestSubscribeDuringBusyScriptIsNotARefusal(t *testing.T) {
	srv, c := busyServer(t)
	h := newHarness(t, srv, "[[routes]]\nname = \"g\"\npattern = \"game:*\"\nhandler = \"h\"\n")
	h.waitSubscribed()
	stop := runBusyScript(t, srv)
	_, err := h.r.On(config.Route{Name: "late", Pattern: "late:*", Handler: "H"})
	require.NoError(t, err)
	// The PSUBSCRIBE went out and was answered (BUSY), or the connection
	// was given up for it.
	h.waitFor("Redis to answer the PSUBSCRIBE", 10*time.Second, func() bool {
		return h.bus.doneGen.Load() >= h.bus.wantGen.Load() || !h.bus.live.Load()
	})
	stop()
	ctx := context.Background()
	h.waitFor("the late route's message", 15*time.Second, func() bool {
		c.Publish(ctx, "late:x", "1")
		return slicesContains(h.msgs, "late<-late:x=1")
	})
	assert.Empty(t, h.r.Table().Route("late").Stats.Refused())
}

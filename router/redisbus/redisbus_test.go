package redisbus

import (
	"context"
	"fmt"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gmod-realtime/realtime/config"
	"github.com/gmod-realtime/realtime/internal/redistest"
	"github.com/gmod-realtime/realtime/router"
)

// harness is a router with a Redis bus, and what the main thread drained.
type harness struct {
	t        *testing.T
	r        *router.Router
	bus      *Bus
	mu       sync.Mutex
	msgs     []string // "route<-channel=payload"
	statuses []string
	reasons  []string // of the disconnected statuses
}

func newHarness(t *testing.T, srv *redistest.Server, toml string, extra ...string) *harness {
	t.Helper()
	base := fmt.Sprintf("[redis]\nurl = %q\nread_timeout = \"300ms\"\nreconnect_min = \"50ms\"\nreconnect_max = \"500ms\"\n%s\n", srv.URL(), strings.Join(extra, "\n"))
	return startHarness(t, base+toml)
}

// startHarness attaches a Redis bus configured by toml to a new router.
func startHarness(t *testing.T, toml string) *harness {
	t.Helper()
	cfg, err := config.Parse("test.toml", []byte(toml))
	require.NoError(t, err)
	r, err := router.New(cfg)
	require.NoError(t, err)
	bus, err := New(cfg.Redis)
	require.NoError(t, err)
	h := &harness{t: t, r: r, bus: bus}
	r.Attach(bus)
	t.Cleanup(func() { _ = r.Close() })
	return h
}

func (h *harness) drain() {
	h.r.Drain(1<<30, 0, func(e *router.Event) {
		h.mu.Lock()
		defer h.mu.Unlock()
		if e.Kind == router.KindStatus {
			h.statuses = append(h.statuses, e.Status.String())
			if e.Status == router.StatusDisconnected {
				h.reasons = append(h.reasons, e.Note)
			}
			return
		}
		h.msgs = append(h.msgs, e.Route.Name+"<-"+e.Channel+"="+e.Payload)
	})
}

// waitFor drains until cond holds, failing after timeout.
func (h *harness) waitFor(what string, timeout time.Duration, cond func() bool) {
	h.t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		h.drain()
		h.mu.Lock()
		ok := cond()
		h.mu.Unlock()
		if ok {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
	h.t.Fatalf("timed out waiting for %s; statuses %v, %d messages", what, h.statuses, len(h.msgs))
}

func (h *harness) lastStatus() string {
	if len(h.statuses) == 0 {
		return ""
	}
	return h.statuses[len(h.statuses)-1]
}

func (h *harness) waitStatus(s string) {
	h.t.Helper()
	h.waitFor("status "+s, 15*time.Second, func() bool { return h.lastStatus() == s })
}

func client(t *testing.T, srv *redistest.Server) *redis.Client {
	c := redis.NewClient(&redis.Options{Addr: srv.Addr(), Protocol: 2})
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// waitSubscribed waits until Redis has confirmed the bus's subscriptions:
// the connection is live and every plan change made so far is in place, so a
// message published now reaches every route that matches it.
func (h *harness) waitSubscribed() {
	h.t.Helper()
	h.waitFor("the subscriptions confirmed", 10*time.Second, func() bool {
		return h.bus.live.Load() && h.bus.doneGen.Load() >= h.bus.wantGen.Load()
	})
}

// publish publishes channel=payload once with c, once the subscriptions are
// in place, and waits until the harness has n messages.
func (h *harness) publish(c *redis.Client, channel, payload string, n int) {
	h.t.Helper()
	h.waitSubscribed()
	require.NoError(h.t, c.Publish(context.Background(), channel, payload).Err())
	h.waitFor(fmt.Sprintf("%d messages", n), 10*time.Second, func() bool { return len(h.msgs) >= n })
}

const routes = `
[[routes]]
name = "players"
pattern = "player:*"
handler = "h"
[[routes]]
name = "spawns"
channel = "player:spawn"
handler = "h"
[[routes]]
name = "any-spawn"
pattern = "*:spawn"
handler = "h"
`

func TestRoundTripPatternsAndOverlap(t *testing.T) {
	srv := redistest.Start(t)
	h := newHarness(t, srv, routes)
	h.waitStatus("connected")
	assert.Equal(t, []string{"connecting", "connected"}, h.statuses)

	c := client(t, srv)
	ctx := context.Background()
	require.NoError(t, c.Publish(ctx, "player:spawn", "a\x00b").Err())
	require.NoError(t, c.Publish(ctx, "player:death", "d").Err())
	require.NoError(t, c.Publish(ctx, "npc:spawn", "n").Err())
	require.NoError(t, c.Publish(ctx, "chat:message", "ignored").Err())
	// Redis hands one client's messages to a subscriber in order: once
	// this last one is routed, every copy of the others has been seen.
	require.NoError(t, c.Publish(ctx, "end:spawn", "").Err())
	h.waitFor("the last event", 5*time.Second, func() bool { return slices.Contains(h.msgs, "any-spawn<-end:spawn=") })
	assert.ElementsMatch(t, []string{
		"players<-player:spawn=a\x00b", "spawns<-player:spawn=a\x00b", "any-spawn<-player:spawn=a\x00b",
		"players<-player:death=d", "any-spawn<-npc:spawn=n", "any-spawn<-end:spawn=",
	}, h.msgs, "each route gets each event exactly once, bytes intact")
	assert.Equal(t, uint64(2), h.bus.Stats.Late.Load(), "Redis's extra copies of player:spawn were ignored")

	// Publish from Lua's side reaches another subscriber.
	sub := c.Subscribe(ctx, "out:chan")
	defer sub.Close()
	_, err := sub.Receive(ctx)
	require.NoError(t, err)
	require.NoError(t, h.r.Publish("out:chan", "hello\x00world"))
	m, err := sub.ReceiveMessage(ctx)
	require.NoError(t, err)
	assert.Equal(t, "hello\x00world", m.Payload)
}

func TestLiveDiffOnReload(t *testing.T) {
	srv := redistest.Start(t)
	h := newHarness(t, srv, routes)
	h.waitStatus("connected")
	c := client(t, srv)

	cfg, err := config.Parse("test.toml", []byte(fmt.Sprintf("[redis]\nurl = %q\n[[routes]]\nname = \"chat\"\nchannel = \"chat:message\"\nhandler = \"h\"\n", srv.URL())))
	require.NoError(t, err)
	sum, err := h.r.Apply(cfg)
	require.NoError(t, err)
	assert.Equal(t, []string{"chat"}, sum.Added)
	h.publish(c, "chat:message", "hi", 1)
	assert.Equal(t, "chat<-chat:message=hi", h.msgs[0])

	// The removed patterns are gone from Redis, on the same connection.
	require.Eventually(t, func() bool { return c.PubSubNumPat(context.Background()).Val() == 0 }, 5*time.Second, 10*time.Millisecond)
	require.NoError(t, c.Publish(context.Background(), "player:spawn", "x").Err())
	h.publish(c, "chat:message", "again", 2)
	assert.Len(t, h.msgs, 2)
	assert.Equal(t, []string{"connecting", "connected"}, h.statuses, "no reconnect")
}

func TestKillAndRestart(t *testing.T) {
	before := runtime.NumGoroutine()
	srv := redistest.Start(t)
	h := newHarness(t, srv, routes)
	h.waitStatus("connected")
	c := client(t, srv)
	h.publish(c, "player:death", "before", 1)

	srv.Kill()
	h.waitStatus("disconnected")
	require.NoError(t, h.r.Publish("player:death", "queued while down")) // kept in the outbox
	srv.Restart()
	h.waitStatus("connected")
	assert.Equal(t, uint64(1), h.bus.Stats.Reconnects.Load())
	assert.Equal(t, uint64(1), h.bus.Stats.Outages.Load())
	assert.Greater(t, h.bus.Stats.LastOutage.Load(), int64(0))

	// The writer flushes the outbox once the subscriptions are back, so
	// this server's own route gets what it published while down.
	h.waitFor("the message published while down", 10*time.Second, func() bool {
		return slices.Contains(h.msgs, "players<-player:death=queued while down")
	})
	n := len(h.msgs)
	h.publish(c, "player:death", "after", n+1)
	assert.Equal(t, []string{"players<-player:death=after"}, h.msgs[n:], "resubscribed after the restart")

	require.NoError(t, h.r.Close())
	h.bus.Wait()
	require.Eventually(t, func() bool { return runtime.NumGoroutine() <= before+2 }, 5*time.Second, 20*time.Millisecond,
		"goroutines: %d before, %d after", before, runtime.NumGoroutine())
}

func TestPublishWhileDownIsFlushedInOrder(t *testing.T) {
	srv := redistest.Start(t)
	// The bus's own route receives the flush: the writer waits for the
	// subscriptions after the reconnect, so a subscriber of this server
	// misses nothing.
	h := newHarness(t, srv, "[[routes]]\nname = \"log\"\nchannel = \"log\"\nhandler = \"h\"\n")
	h.waitStatus("connected")
	srv.Kill()
	h.waitStatus("disconnected")
	for i := 0; i < 500; i++ {
		require.NoError(t, h.r.Publish("log", fmt.Sprint(i)))
	}
	srv.Restart()
	h.waitFor("the outbox flushed", 20*time.Second, func() bool { return len(h.msgs) >= 500 })
	for i, m := range h.msgs {
		require.Equal(t, fmt.Sprintf("log<-log=%d", i), m, "in order, none lost")
	}
	assert.Len(t, h.msgs, 500)
}

func TestOutboxBound(t *testing.T) {
	srv := redistest.Start(t)
	h := newHarness(t, srv, "", "outbox_events = 3")
	srv.Kill()
	h.waitStatus("disconnected")
	for i := 0; i < 3; i++ {
		require.NoError(t, h.r.Publish("x", "y"))
	}
	assert.ErrorIs(t, h.r.Publish("x", "y"), ErrOutboxFull)
	assert.Equal(t, uint64(1), h.r.Stats.PublishFails.Load())
}

func TestPausedServer(t *testing.T) {
	srv := redistest.Start(t)
	h := newHarness(t, srv, routes)
	h.waitStatus("connected")
	srv.Pause() // longer than 2 x read_timeout (300ms)
	h.waitStatus("disconnected")
	srv.Resume()
	h.waitStatus("connected")
	c := client(t, srv)
	h.publish(c, "player:death", "x", 1)
}

// TestSlowConsumer: the main thread stops draining while 500k messages
// arrive. The connection survives (Redis would kill a client that stopped
// reading) and the drops are counted here.
func TestSlowConsumer(t *testing.T) {
	srv := redistest.Start(t) // Redis's default pubsub output limit: 32mb hard, 8mb for 60s
	h := newHarness(t, srv, "[queue]\nmax_events = 1000\n[[routes]]\nname = \"flood\"\npattern = \"flood:*\"\nhandler = \"h\"\n")
	h.waitStatus("connected")
	c := client(t, srv)
	ctx := context.Background()
	const total = 500_000
	payload := strings.Repeat("x", 64)
	for sent := 0; sent < total; sent += 10_000 {
		// Keep at most 100k in flight: under -race the reader is ~10x
		// slower than Redis can publish, and this test is about the game
		// thread not draining, not about out-running Redis's own limit.
		require.Eventually(t, func() bool { return int(h.r.Stats.Received.Load()) >= sent-100_000 }, 30*time.Second, time.Millisecond)
		pipe := c.Pipeline()
		for i := 0; i < 10_000; i++ {
			pipe.Publish(ctx, "flood:1", payload)
		}
		_, err := pipe.Exec(ctx)
		require.NoError(t, err)
	}
	require.Eventually(t, func() bool { return h.r.Stats.Received.Load() == total }, 60*time.Second, 10*time.Millisecond,
		"received %d of %d", h.r.Stats.Received.Load(), total)
	assert.Equal(t, uint64(total-1000), h.r.Stats.Dropped()[router.DropQueueFull])
	h.drain()
	assert.Equal(t, []string{"connecting", "connected"}, h.statuses, "never disconnected")
	assert.Len(t, h.msgs, 1000)
}

func TestAuth(t *testing.T) {
	srv := redistest.Start(t, "--requirepass", "s3cret")
	admin := redis.NewClient(&redis.Options{Addr: srv.Addr(), Password: "s3cret", Protocol: 2})
	defer admin.Close()
	require.NoError(t, admin.Do(context.Background(), "ACL", "SETUSER", "gmod", "on", ">gmodpass", "&*", "+@pubsub", "+ping").Err())

	for _, tc := range []struct{ name, extra string }{
		{"requirepass", `password = "s3cret"`},
		{"acl user", "username = \"gmod\"\npassword = \"gmodpass\""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, srv, routes, tc.extra)
			h.waitStatus("connected")
			h.publish(admin, "player:x", "y", 1)
			assert.Equal(t, []string{"players<-player:x=y"}, h.msgs)
		})
	}

	h := newHarness(t, srv, routes, `password = "wrong"`)
	h.waitFor("an auth failure", 10*time.Second, func() bool {
		return h.lastStatus() == "disconnected"
	})
}

// TestPublishWhileConnectingReachesOwnRoutes: what the server publishes
// before its subscriptions are confirmed, including to a route added while
// connecting or just before publishing, waits in the outbox until Redis has
// confirmed the subscription, and comes back to it.
func TestPublishWhileConnectingReachesOwnRoutes(t *testing.T) {
	srv := redistest.Start(t)
	for i := 0; i < 20; i++ {
		h := newHarness(t, srv, "[[routes]]\nname = \"early\"\nchannel = \"self\"\nhandler = \"H\"\n")
		require.NoError(t, h.r.Publish("self", "first"))
		_, err := h.r.On(config.Route{Name: "late", Channel: "late", Handler: "H"})
		require.NoError(t, err)
		require.NoError(t, h.r.Publish("late", "second"))
		h.waitFor("both messages", 5*time.Second, func() bool { return len(h.msgs) == 2 })
		// Connected now: a route added and published to at once.
		_, err = h.r.On(config.Route{Name: "later", Pattern: "later:*", Handler: "H"})
		require.NoError(t, err)
		require.NoError(t, h.r.Publish("later:x", "third"))
		h.waitFor("the third message", 5*time.Second, func() bool { return len(h.msgs) == 3 })
		assert.Equal(t, []string{"early<-self=first", "late<-late=second", "later<-later:x=third"}, h.msgs, "round %d", i)
		_ = h.r.Close()
	}
}

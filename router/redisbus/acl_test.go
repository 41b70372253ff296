package redisbus

import (
	"context"
	"fmt"
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

// logLines collects a router's log lines.
type logLines struct {
	mu    sync.Mutex
	lines []string
}

func (l *logLines) add(level, line string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lines = append(l.lines, level+": "+line)
}

func (l *logLines) all() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.lines...)
}

func (l *logLines) contains(sub string) bool {
	for _, line := range l.all() {
		if strings.Contains(line, sub) {
			return true
		}
	}
	return false
}

// startLogged is startHarness with the router's log lines kept.
func startLogged(t *testing.T, toml string) (*harness, *logLines) {
	t.Helper()
	cfg, err := config.Parse("test.toml", []byte(toml))
	require.NoError(t, err)
	logs := &logLines{}
	r, err := router.New(cfg, router.WithLog(logs.add))
	require.NoError(t, err)
	bus, err := New(cfg.Redis)
	require.NoError(t, err)
	h := &harness{t: t, r: r, bus: bus}
	r.Attach(bus)
	t.Cleanup(func() { _ = r.Close() })
	return h, logs
}

// aclServer starts a redis-server with an admin password and the user
// game, who may use only the channels matching game:*: the shared-Redis
// setup of a careful operator.
func aclServer(t *testing.T, extra ...any) (*redistest.Server, *redis.Client) {
	t.Helper()
	srv := redistest.Start(t, "--requirepass", "adminpw")
	admin := redis.NewClient(&redis.Options{Addr: srv.Addr(), Password: "adminpw", Protocol: 2})
	t.Cleanup(func() { _ = admin.Close() })
	require.NoError(t, admin.Do(context.Background(), append([]any{"ACL", "SETUSER", "game", "on", ">pw", "resetchannels", "&game:*", "~*", "+@all"}, extra...)...).Err())
	return srv, admin
}

func gameConfig(srv *redistest.Server, toml string) string {
	return fmt.Sprintf("[redis]\nurl = \"redis://game:pw@%s\"\nread_timeout = \"300ms\"\nreconnect_min = \"50ms\"\nreconnect_max = \"500ms\"\n%s", srv.Addr(), toml)
}

// collect subscribes c to pattern and counts the payloads it receives.
type collected struct {
	mu     sync.Mutex
	counts map[string]int
}

func collect(t *testing.T, c *redis.Client, pattern string) *collected {
	t.Helper()
	ctx := context.Background()
	sub := c.PSubscribe(ctx, pattern)
	t.Cleanup(func() { _ = sub.Close() })
	_, err := sub.Receive(ctx)
	require.NoError(t, err)
	col := &collected{counts: map[string]int{}}
	go func() {
		for m := range sub.Channel() {
			col.mu.Lock()
			col.counts[m.Channel+"="+m.Payload]++
			col.mu.Unlock()
		}
	}()
	return col
}

func (c *collected) get(key string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.counts[key]
}

// TestRefusedPublishIsDroppedNotRetried: a batch [allowed, denied, allowed]
// publishes each allowed message exactly once, drops and counts the denied
// one with a log line naming Redis's reason, and publishing goes on.
func TestRefusedPublishIsDroppedNotRetried(t *testing.T) {
	srv, admin := aclServer(t, "&__realtime:control:*")
	got := collect(t, admin, "*")
	h, logs := startLogged(t, gameConfig(srv, ""))
	// Queued before the connection is up, so that the writer sends the
	// three in one pipeline.
	require.NoError(t, h.r.Publish("game:a", "1"))
	require.NoError(t, h.r.Publish("other:b", "2"))
	require.NoError(t, h.r.Publish("game:c", "3"))
	h.waitStatus("connected")
	h.waitFor("game:c", 10*time.Second, func() bool { return got.get("game:c=3") > 0 })
	for i := 0; i < 20; i++ { // later publishes are not stuck behind the refused one
		require.NoError(t, h.r.Publish("game:after", fmt.Sprint(i)))
	}
	h.waitFor("the later publishes", 10*time.Second, func() bool { return got.get("game:after=19") > 0 })

	assert.Equal(t, 1, got.get("game:a=1"), "sent once")
	assert.Equal(t, 1, got.get("game:c=3"), "sent once, not again after the refusal")
	assert.Equal(t, 0, got.get("other:b=2"))
	assert.Equal(t, uint64(1), h.r.Stats.PublishFails.Load(), "the refused message counts as publish_failed")
	assert.Equal(t, uint64(1), h.bus.Stats.Refused.Load())
	assert.Equal(t, uint64(22), h.bus.Stats.Published.Load())
	assert.Zero(t, h.bus.OutboxLen())
	assert.True(t, logs.contains(`publish to "other:b" refused`), "logged: %v", logs.all())
	assert.True(t, logs.contains("NOPERM"), "the log names Redis's reason: %v", logs.all())
}

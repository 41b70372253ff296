package redisbus

import (
	"context"
	"fmt"
	"strconv"
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
	order  []string // every copy, as it came
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
			col.order = append(col.order, m.Channel+"="+m.Payload)
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

// payloads returns the payloads received on channel so far, in order.
func (c *collected) payloads(channel string) []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []string
	for _, k := range c.order {
		if p, ok := strings.CutPrefix(k, channel+"="); ok {
			out = append(out, p)
		}
	}
	return out
}

// counting returns "0" to n-1, as strings.
func counting(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = strconv.Itoa(i)
	}
	return out
}

// TestRefusedPublishIsDroppedNotRetried: a batch [allowed, denied, allowed]
// publishes each allowed message exactly once, drops and counts the denied
// one with a log line naming Redis's reason, and publishing goes on.
func TestRefusedPublishIsDroppedNotRetried(t *testing.T) {
	srv, admin := aclServer(t)
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
	// Redis's replies are counted after subscribers may have the messages.
	h.waitFor("the later publishes", 10*time.Second, func() bool {
		return got.get("game:after=19") > 0 && h.bus.Stats.Published.Load()+h.bus.Stats.Refused.Load() == 23
	})

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

// TestACLUserWithOnlyItsChannels: a user allowed exactly game:* gets its
// routes' events. A route on a channel it may not use is reported (log,
// route stats) and the other routes keep working, on the same connection,
// also when the denied route comes with a Reload.
func TestACLUserWithOnlyItsChannels(t *testing.T) {
	srv, admin := aclServer(t)
	h, logs := startLogged(t, gameConfig(srv, `
[[routes]]
name = "kills"
channel = "game:kill"
handler = "h"
[[routes]]
name = "all-game"
pattern = "game:*"
handler = "h"
[[routes]]
name = "secret"
channel = "admin:secret"
handler = "h"
`))
	h.waitStatus("connected")
	h.waitFor("the game events", 10*time.Second, func() bool {
		admin.Publish(context.Background(), "game:kill", "k")
		return len(h.msgs) >= 2
	})
	assert.Contains(t, h.msgs, "kills<-game:kill=k")
	assert.Contains(t, h.msgs, "all-game<-game:kill=k")
	assert.Eventually(t, func() bool { return logs.contains(`"admin:secret"`) && logs.contains("NOPERM") }, 5*time.Second, 10*time.Millisecond,
		"the refusal is logged: %v", logs.all())
	assert.Contains(t, h.r.Table().Route("secret").Stats.Refused(), "NOPERM")
	assert.Empty(t, h.r.Table().Route("kills").Stats.Refused())
	assert.Empty(t, h.r.Table().Route("all-game").Stats.Refused())

	// A Reload adding a pattern route the user may not use: reported, and
	// the others still work, without a reconnect.
	cfg, err := config.Parse("test.toml", []byte(gameConfig(srv, `
[[routes]]
name = "kills"
channel = "game:kill"
handler = "h"
[[routes]]
name = "admin"
pattern = "admin:*"
handler = "h"
`)))
	require.NoError(t, err)
	_, err = h.r.Apply(cfg)
	require.NoError(t, err)
	require.Eventually(t, func() bool { return h.r.Table().Route("admin").Stats.Refused() != "" }, 5*time.Second, 10*time.Millisecond)
	h.waitFor("a game event after the reload", 10*time.Second, func() bool {
		admin.Publish(context.Background(), "game:kill", "again")
		return slicesContains(h.msgs, "kills<-game:kill=again")
	})
	assert.Equal(t, []string{"connecting", "connected"}, h.statuses, "never reconnected")

	// The ACL allows admin:* now: the next connection subscribes it and
	// the route is no longer marked.
	require.NoError(t, admin.Do(context.Background(), "ACL", "SETUSER", "game", "&admin:*").Err())
	require.NoError(t, admin.Do(context.Background(), "CLIENT", "KILL", "USER", "game").Err())
	h.waitFor("admin events", 15*time.Second, func() bool {
		admin.Publish(context.Background(), "admin:x", "y")
		return h.r.Table().Route("admin").Stats.Refused() == "" && slicesContains(h.msgs, "admin<-admin:x=y")
	})
}

// TestACLMatrix: users with various pub/sub rights. Each case ends with a
// clear status, and the allowed routes work.
func TestACLMatrix(t *testing.T) {
	srv := redistest.Start(t, "--requirepass", "adminpw")
	admin := redis.NewClient(&redis.Options{Addr: srv.Addr(), Password: "adminpw", Protocol: 2})
	defer admin.Close()
	ctx := context.Background()
	const routes = `
[[routes]]
name = "chan"
channel = "game:chan"
handler = "h"
[[routes]]
name = "pat"
pattern = "game:p:*"
handler = "h"
`
	for i, tc := range []struct {
		name    string
		acl     []any
		works   []string // routes that get their event
		refused []string // routes reported refused
	}{
		{"all channels", []any{"allchannels", "+@all"}, []string{"chan", "pat"}, nil},
		{"exactly the routes' names", []any{"resetchannels", "&game:chan", "&game:p:*", "+@all"}, []string{"chan", "pat"}, nil},
		{"channels but not the pattern", []any{"resetchannels", "&game:chan", "+@all"}, []string{"chan"}, []string{"pat"}},
		{"only pub/sub commands, no PING", []any{"resetchannels", "&game:*", "+@pubsub"}, []string{"chan"}, []string{"pat"}},
		{"no channels at all", []any{"resetchannels", "+@all"}, nil, []string{"chan", "pat"}},
		{"no pub/sub commands", []any{"allchannels", "+@all", "-@pubsub"}, nil, []string{"chan", "pat"}},
	} {
		user := fmt.Sprintf("user%d", i)
		t.Run(tc.name, func(t *testing.T) {
			require.NoError(t, admin.Do(ctx, append([]any{"ACL", "SETUSER", user, "on", ">pw"}, tc.acl...)...).Err())
			h, _ := startLogged(t, fmt.Sprintf("[redis]\nurl = \"redis://%s:pw@%s\"\nread_timeout = \"300ms\"\nreconnect_min = \"50ms\"\n%s", user, srv.Addr(), routes))
			h.waitStatus("connected")
			for _, name := range tc.refused {
				require.Eventually(t, func() bool { return h.r.Table().Route(name).Stats.Refused() != "" }, 5*time.Second, 10*time.Millisecond, name)
			}
			for _, name := range tc.works {
				ch := map[string]string{"chan": "game:chan", "pat": "game:p:1"}[name]
				h.waitFor(name+"'s event", 10*time.Second, func() bool {
					admin.Publish(ctx, ch, "x")
					return slicesContains(h.msgs, name+"<-"+ch+"=x")
				})
				assert.Empty(t, h.r.Table().Route(name).Stats.Refused())
			}
			assert.Equal(t, []string{"connecting", "connected"}, h.statuses)
		})
	}
}

func slicesContains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

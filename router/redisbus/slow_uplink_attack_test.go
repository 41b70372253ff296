package redisbus

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
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

// TestSlowUplinkMixedSizes: random sizes, from a few bytes to 3 MiB, over
// a 1 MiB/s uplink with 300 ms timeouts (seed printed). Whatever the
// writer gives up or halves, the outbox drains; a message never
// published is a big one counted in publish_failed; publish_failed counts
// no more than the big ones; and the first copies of the small messages
// are in the order they were published.
func TestSlowUplinkMixedSizes(t *testing.T) {
	seed := time.Now().UnixNano()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(uint64(seed), 0))
	srv := redistest.Start(t)
	c := client(t, srv)
	got := collect(t, c, "mix:*")
	h := startHarness(t, slowUplinkConfig(slowUplinkProxy(t, srv.Addr(), 1<<20), "300ms", "300ms"))
	const n = 60
	var want []string
	sizes := map[string]int{}
	nBig := 0
	for i := range n {
		size := 1 + rng.IntN(4<<10)
		switch rng.IntN(12) {
		case 0:
			size = bigMessage + rng.IntN(3<<20)
		case 1:
			size = bigMessage/2 + rng.IntN(bigMessage)
		}
		if size+len("mix:x") >= bigMessage {
			nBig++
		}
		p := fmt.Sprintf("%d|", i)
		p += strings.Repeat("y", max(size-len(p), 0))
		key := "mix:x=" + p
		want = append(want, key)
		sizes[key] = len(p)
		require.NoError(t, h.bus.Publish("mix:x", p))
	}
	// a small message after them all: once it is in, every message
	// before it that was not given up is in too
	require.NoError(t, h.bus.Publish("mix:end", "1"))
	h.waitFor("the outbox sent", 120*time.Second, func() bool {
		return h.bus.OutboxLen() == 0 && got.get("mix:end=1") > 0
	})
	// A copy of a message given up may still be on its way from a
	// connection closed meanwhile, which the order below does not look at.
	fails := int(h.r.Stats.PublishFails.Load())
	missing := 0
	for _, w := range want {
		if got.get(w) == 0 {
			missing++
			assert.GreaterOrEqual(t, sizes[w]+len("mix:x"), bigMessage, "a message of %d bytes never published (seed %d)", sizes[w], seed)
		}
	}
	assert.LessOrEqual(t, missing, fails, "every message not published is counted (seed %d)", seed)
	assert.LessOrEqual(t, fails, nBig, "only big messages given up (seed %d)", seed)
	got.mu.Lock()
	seen := map[string]bool{}
	var order []string
	for _, k := range got.order {
		if !seen[k] {
			seen[k] = true
			order = append(order, k)
		}
	}
	got.mu.Unlock()
	// A message given up may still arrive, from a connection closed with
	// it in its socket buffer, after later ones: only the messages that
	// cannot be given up are held to their order.
	small := func(k string) bool { _, ok := sizes[k]; return ok && sizes[k]+len("mix:x") < bigMessage }
	var wantOrder []string
	for _, w := range want {
		if seen[w] && small(w) {
			wantOrder = append(wantOrder, w)
		}
	}
	order = slices.DeleteFunc(order, func(k string) bool { return !small(k) })
	short := func(s []string) []string {
		out := make([]string, len(s))
		for i, k := range s {
			out[i], _, _ = strings.Cut(strings.TrimPrefix(k, "mix:x="), "|")
		}
		return out
	}
	assert.Equal(t, short(wantOrder), short(order), "first copies in order (seed %d); %d given up, %d retried batches", seed, fails, h.bus.Stats.PublishRetry.Load())
}

// TestTooSlowAdviceNamesReadTimeout: with write_timeout raised to 5 s, a
// 2 MiB message over a 1 MiB/s uplink is written in 2 s at most (the
// system's socket buffer takes much of it at once), and it is its answer
// that does not come within read_timeout (300 ms): the log line must
// not tell the operator to raise the write_timeout they already raised,
// nor say the message could not be written within it.
func TestTooSlowAdviceNamesReadTimeout(t *testing.T) {
	srv := redistest.Start(t)
	c := client(t, srv)
	got := collect(t, c, "big:*")
	h, logs := startLogged(t, slowUplinkConfig(slowUplinkProxy(t, srv.Addr(), 1<<20), "300ms", "5s"))
	require.NoError(t, h.r.Publish("big:huge", strings.Repeat("x", 2<<20)))
	require.NoError(t, h.r.Publish("big:after", "1"))
	h.waitFor("the message behind it", 60*time.Second, func() bool { return got.get("big:after=1") > 0 })
	require.Equal(t, uint64(1), h.r.Stats.PublishFails.Load(), "given up: %v", logs.all())
	assert.True(t, logs.contains(`publish to "big:huge" not sent: a 2097152-byte message was not answered within redis.read_timeout (300ms) after its write in 3 tries while Redis answered; the uplink is too slow for it: raise redis.read_timeout or send less`), "logged: %v", logs.all())
	assert.False(t, logs.contains("raise redis.write_timeout"), "logged: %v", logs.all())
}

// TestBigMessageWaitsOutClientPauseCluster: in a Cluster, the probe goes
// to the master the PUBLISHes go to: CLIENT PAUSE WRITE on that master
// alone holds the big message, which waits for the pause's end instead
// of being given up on another master's answer.
func TestBigMessageWaitsOutClientPauseCluster(t *testing.T) {
	addrs := redistest.StartCluster(t, 3)
	ctx := context.Background()
	c := redis.NewClient(&redis.Options{Addr: addrs[0], Protocol: 2})
	t.Cleanup(func() { _ = c.Close() })
	got := collect(t, c, "big:*")
	h, logs := startLogged(t, fmt.Sprintf("[redis]\naddrs = [%q, %q, %q]\nread_timeout = \"200ms\"\nwrite_timeout = \"200ms\"\nreconnect_min = \"10ms\"\nreconnect_max = \"50ms\"\n", addrs[0], addrs[1], addrs[2]))
	require.NoError(t, h.r.Publish("big:first", "1"))
	h.waitFor("the first message", 20*time.Second, func() bool { return got.get("big:first=1") > 0 })
	var node *redis.Client // the master that took the PUBLISH
	for _, a := range addrs {
		n := redis.NewClient(&redis.Options{Addr: a, Protocol: 2})
		t.Cleanup(func() { _ = n.Close() })
		if strings.Contains(n.Info(ctx, "commandstats").Val(), "cmdstat_publish:") {
			require.Nil(t, node, "PUBLISH went to one master")
			node = n
		}
	}
	require.NotNil(t, node)
	big := strings.Repeat("p", bigMessage)
	require.NoError(t, node.Do(ctx, "CLIENT", "PAUSE", "4000", "WRITE").Err())
	require.NoError(t, h.r.Publish("big:paused", big))
	require.NoError(t, h.r.Publish("big:after", "1"))
	h.waitFor("the messages published after the pause", 30*time.Second, func() bool {
		return got.get("big:after=1") > 0 || h.r.Stats.PublishFails.Load() > 0
	})
	assert.Positive(t, got.get("big:paused="+big), "the big message published")
	assert.Zero(t, h.r.Stats.PublishFails.Load(), "not given up: %v", logs.all())
}

// TestHugeMessageReloadedOffSlowUplink: a Reload onto a fast connection
// while a huge message is retried on the slow one: the message moves to
// the new connection with its retries' count left behind, and goes out
// there, the messages behind it once each, in order; a message given up
// by the old writer before the switch is counted once.
func TestHugeMessageReloadedOffSlowUplink(t *testing.T) {
	srv := redistest.Start(t)
	c := client(t, srv)
	got := collect(t, c, "big:*")
	h, logs := startLogged(t, slowUplinkConfig(slowUplinkProxy(t, srv.Addr(), 1<<20), "300ms", "300ms"))
	huge := strings.Repeat("x", 2<<20)
	require.NoError(t, h.r.Publish("big:huge", huge))
	const n = 20
	for i := range n {
		require.NoError(t, h.r.Publish("big:after", fmt.Sprint(i)))
	}
	h.waitFor("the huge message retried", 20*time.Second, func() bool { return h.bus.Stats.PublishRetry.Load() > 0 })
	next, err := New(redisConfig(t, slowUplinkConfig(srv.Addr(), "1s", "1s")))
	require.NoError(t, err)
	h.bus.HandOver(next)
	h.r.Replace(next)
	h.waitFor("the messages behind it", 30*time.Second, func() bool { return got.get(fmt.Sprintf("big:after=%d", n-1)) > 0 })
	fails := h.r.Stats.PublishFails.Load()
	t.Logf("publish_failed %d, huge copies %d", fails, got.get("big:huge="+huge))
	assert.LessOrEqual(t, fails, uint64(1), "counted once at most: %v", logs.all())
	if fails == 0 {
		h.waitFor("the huge message", 10*time.Second, func() bool { return got.get("big:huge="+huge) > 0 })
	}
	assert.Equal(t, counting(n), got.payloads("big:after"), "the messages behind it, once each, in order")
}

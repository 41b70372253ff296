package redisbus

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gmod-realtime/realtime/internal/redistest"
)

// TestStrayConfirmationIsNotACrash: a PubSub that re-establishes its
// connection by itself resubscribes, so its reader sees every
// subscription confirmed twice. That must end the connection cleanly (the
// supervisor reconnects), never crash the process (a double close of a
// channel in a goroutine no recover covers kills srcds).
func TestStrayConfirmationIsNotACrash(t *testing.T) {
	srv := redistest.Start(t)
	p := startProxy(t, srv.Addr(), func(n int) faults {
		return faults{dupSubscribe: n < 3}
	})
	h := startHarness(t, fmt.Sprintf("[redis]\nurl = \"redis://%s\"\nread_timeout = \"300ms\"\nreconnect_min = \"20ms\"\nreconnect_max = \"100ms\"\n%s", p.Addr(), routes))
	c := client(t, srv)
	// An event can come through a faulty connection before its second
	// confirmation ends it: wait for events and a connection that is up,
	// not for the first event alone.
	h.waitFor("an event, connected", 15*time.Second, func() bool {
		c.Publish(context.Background(), "player:spawn", "x")
		return len(h.msgs) > 0 && h.lastStatus() == "connected"
	})
	assert.Equal(t, "connected", h.lastStatus())
	assert.GreaterOrEqual(t, p.Conns(), 2, "the duplicated confirmations ended the first connections")
}

// faultSeeds returns the seeds of this run's rounds: REDISBUS_FAULT_SEED
// replays one, otherwise n new ones.
func faultSeeds(t *testing.T, n int) []uint64 {
	if s := os.Getenv("REDISBUS_FAULT_SEED"); s != "" {
		seed, err := strconv.ParseUint(s, 10, 64)
		require.NoError(t, err)
		return []uint64{seed}
	}
	seeds := make([]uint64, n)
	for i := range seeds {
		seeds[i] = rand.Uint64()
	}
	return seeds
}

// randomFaults is what a round does to one connection: the first ones are
// cut, stalled or split at random, the later ones are sound (or only
// split), so that every round must end connected.
func randomFaults(rng *rand.Rand, faulty int) func(n int) faults {
	var mu sync.Mutex
	return func(n int) faults {
		mu.Lock()
		defer mu.Unlock()
		f := faults{split: []int{0, 0, 1, 3, 7}[rng.IntN(5)]}
		if n >= faulty {
			return f
		}
		switch rng.IntN(4) {
		case 0:
			f.cutDown = 1 + rng.Int64N(2000)
		case 1:
			f.cutUp = 1 + rng.Int64N(2000)
		case 2:
			f.stallAfter, f.stall = rng.IntN(8), 300*time.Millisecond
		case 3:
			f.dupSubscribe = true
		}
		return f
	}
}

// TestFaultProxyRounds puts a fault-injecting proxy between the bus and
// redis-server and checks, for random seeds (printed; replay one with
// REDISBUS_FAULT_SEED=n):
//   - every message this server publishes reaches Redis at least once,
//     first copies in order, and more than once only when a batch was
//     retried after a lost connection (never after an acknowledgement);
//   - once the faults stop (the proxy resets the connections that had
//     some) the bus reconnects and every route gets each message exactly
//     once.
func TestFaultProxyRounds(t *testing.T) {
	srv := redistest.Start(t)
	c := client(t, srv)
	ctx := context.Background()
	for _, seed := range faultSeeds(t, 12) {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			t.Logf("seed %d (replay: REDISBUS_FAULT_SEED=%d)", seed, seed)
			rng := rand.New(rand.NewPCG(seed, seed))
			p := startProxy(t, srv.Addr(), randomFaults(rand.New(rand.NewPCG(seed, 1)), 1+rng.IntN(5)))
			tag := fmt.Sprintf("f%d:", seed)
			got := collect(t, c, tag+"*") // straight to Redis, past the proxy
			h := startHarness(t, fmt.Sprintf(`[redis]
url = "redis://%s"
read_timeout = "100ms"
write_timeout = "100ms"
reconnect_min = "10ms"
reconnect_max = "50ms"
[[routes]]
name = "exact"
channel = "%slog"
handler = "h"
[[routes]]
name = "glob"
pattern = "%s*"
handler = "h"
`, p.Addr(), tag, tag))

			const n = 40
			for i := 0; i < n; i++ {
				require.NoError(t, h.r.Publish(tag+"log", fmt.Sprint(i)))
				if rng.IntN(4) == 0 {
					time.Sleep(time.Duration(rng.IntN(20)) * time.Millisecond) // spread over the faults
				}
			}
			h.waitFor("the outbox published", 30*time.Second, func() bool {
				return h.bus.OutboxLen() == 0 && got.get(tag+"log="+fmt.Sprint(n-1)) > 0
			})
			retries := int(h.bus.Stats.PublishRetry.Load())
			for i := 0; i < n; i++ {
				k := got.get(tag + "log=" + fmt.Sprint(i))
				assert.GreaterOrEqual(t, k, 1, "message %d published", i)
				assert.LessOrEqual(t, k, 1+retries, "message %d: copies beyond the %d retried batches", i, retries)
			}
			got.mu.Lock()
			order := got.order
			got.mu.Unlock()
			assert.True(t, firstsInOrder(order, tag+"log=", n), "first copies in order: %v", order)

			// Past the faults: connected, and exactly once per route.
			p.heal()
			h.waitFor("the subscriptions", 30*time.Second, func() bool {
				c.Publish(ctx, tag+"probe", "p")
				return slicesContains(h.msgs, "glob<-"+tag+"probe=p")
			})
			h.mu.Lock()
			h.msgs = nil
			h.mu.Unlock()
			require.NoError(t, c.Publish(ctx, tag+"log", "final").Err())
			require.NoError(t, c.Publish(ctx, tag+"log", "sentinel").Err())
			h.waitFor("the sentinel", 10*time.Second, func() bool {
				return slicesContains(h.msgs, "exact<-"+tag+"log=sentinel") && slicesContains(h.msgs, "glob<-"+tag+"log=sentinel")
			})
			assert.Equal(t, 1, countOf(h.msgs, "exact<-"+tag+"log=final"), "%v", h.msgs)
			assert.Equal(t, 1, countOf(h.msgs, "glob<-"+tag+"log=final"), "%v", h.msgs)
			_ = h.r.Close()
		})
	}
}

// firstsInOrder reports whether the first copies of prefix+0 .. prefix+n-1
// appear in order in seen.
func firstsInOrder(seen []string, prefix string, n int) bool {
	next := 0
	done := map[string]bool{}
	for _, s := range seen {
		if done[s] || !strings.HasPrefix(s, prefix) {
			continue
		}
		done[s] = true
		if s != prefix+fmt.Sprint(next) {
			return false
		}
		next++
	}
	return next == n
}

func countOf(s []string, v string) int {
	n := 0
	for _, x := range s {
		if x == v {
			n++
		}
	}
	return n
}

// TestOneDisconnectPerOutage: while Redis stays unreachable the bus keeps
// trying, and Lua hears of the outage once, not once per attempt.
func TestOneDisconnectPerOutage(t *testing.T) {
	srv := redistest.Start(t)
	var mu sync.Mutex
	down := false
	attempts := 0
	p := startProxy(t, srv.Addr(), func(int) faults {
		mu.Lock()
		defer mu.Unlock()
		if down {
			attempts++
			return faults{cutDown: 1} // the connection dies at once
		}
		return faults{}
	})
	h := startHarness(t, fmt.Sprintf("[redis]\nurl = \"redis://%s\"\nread_timeout = \"300ms\"\nreconnect_min = \"10ms\"\nreconnect_max = \"20ms\"\n%s", p.Addr(), routes))
	h.waitStatus("connected")
	mu.Lock()
	down = true
	mu.Unlock()
	p.cut() // new connections die at once
	h.waitFor("several failed attempts", 15*time.Second, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return attempts >= 5
	})
	mu.Lock()
	down = false
	mu.Unlock()
	h.waitStatus("connected")
	assert.Equal(t, []string{"connecting", "connected", "disconnected", "connected"}, h.statuses)
}

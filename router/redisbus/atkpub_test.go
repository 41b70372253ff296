package redisbus

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gmod-realtime/realtime/config"
	"github.com/gmod-realtime/realtime/internal/redistest"
	"github.com/gmod-realtime/realtime/router"
	"github.com/gmod-realtime/realtime/router/spool"
)

// TestPublishBatchModel runs random mixes of PUBLISHes (to channels of
// one length and of several, some refused by an ACL), heartbeats and
// Appends through the writer's batches, over a proxy that cuts, stalls
// and splits the first connections, and checks against a model (seeds
// printed; replay one with REDISBUS_FAULT_SEED=n):
//   - every allowed message reaches Redis on its own channel with its own
//     payload (the payload names its channel and number), at least once,
//     first copies in order, more copies only after retried batches;
//   - refused messages never reach Redis and are counted once each;
//   - Published counts each allowed message once, Heartbeats each
//     heartbeat once;
//   - every Append is in its stream.
func TestPublishBatchModel(t *testing.T) {
	srv, admin := aclServer(t)
	ctx := context.Background()
	for _, seed := range faultSeeds(t, 6) {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			t.Logf("seed %d (replay: REDISBUS_FAULT_SEED=%d)", seed, seed)
			rng := rand.New(rand.NewPCG(seed, 7))
			tag := fmt.Sprintf("game:m%d:", seed)
			got := collect(t, admin, "*")
			faulty := rng.IntN(12)
			frng := rand.New(rand.NewPCG(seed, 1))
			base := randomFaults(frng, faulty)
			p := startProxy(t, srv.Addr(), func(n int) faults {
				f := base(n) // cuts anywhere in a batch of up to 1,024
				if f.cutDown > 0 {
					f.cutDown *= 1 + int64(n%4)*50
				}
				if f.cutUp > 0 {
					f.cutUp *= 1 + int64(n%4)*50
				}
				return f
			})
			sp, err := spool.Open(filepath.Join(t.TempDir(), "spool.db"), spool.Options{ServerID: "srv", Logf: t.Logf})
			require.NoError(t, err)
			t.Cleanup(func() { _ = sp.Close() })
			cfg, err := config.Parse("test.toml", []byte(fmt.Sprintf(`[redis]
url = "redis://game:pw@%s"
read_timeout = "150ms"
write_timeout = "150ms"
reconnect_min = "10ms"
reconnect_max = "50ms"
outbox_events = 100000
outbox_bytes = "64MiB"
[[routes]]
name = "g"
pattern = "%s*"
handler = "h"
`, p.Addr(), tag)))
			require.NoError(t, err)
			r, err := router.New(cfg)
			require.NoError(t, err)
			bus, err := New(cfg.Redis)
			require.NoError(t, err)
			bus.SetDurable(NewDurable("srv", sp, nil))
			h := &harness{t: t, r: r, bus: bus}
			r.Attach(bus)
			t.Cleanup(func() { _ = r.Close() })

			// Channels of one length that differ in one byte, and others.
			allowed := []string{tag + "aa", tag + "ab", tag + "ba", tag + "a", tag + "aaa", tag + "b\x00"}
			refused := []string{"other:aa", "other:ab"}
			var want []string // allowed channel=payload, in order
			nRefused, nBeats, nAppends := 0, 0, 0
			lastBeat := map[string]string{}
			var appendIDs []string
			n := 500 + rng.IntN(3000)
			for i := range n {
				pad := strings.Repeat(string(rune('a'+rng.IntN(26))), rng.IntN(200))
				switch k := rng.IntN(20); {
				case k == 0:
					key := fmt.Sprintf("%shb%d", tag, rng.IntN(3))
					v := fmt.Sprint(i)
					require.True(t, bus.Heartbeat(key, []string{"n", v}, time.Minute))
					lastBeat[key] = v
					nBeats++
				case k == 1:
					id, err := bus.Append(tag+"stream", fmt.Sprintf("%d|%s", i, pad))
					require.NoError(t, err)
					appendIDs = append(appendIDs, id)
					nAppends++
				case k == 2:
					require.NoError(t, bus.Publish(refused[rng.IntN(len(refused))], fmt.Sprintf("%d|%s", i, pad)))
					nRefused++
				default:
					ch := allowed[rng.IntN(len(allowed))]
					if rng.IntN(3) == 0 && len(want) > 0 { // runs of one channel
						ch = want[len(want)-1][:strings.IndexByte(want[len(want)-1], '=')]
					}
					payload := fmt.Sprintf("%s|%d|%s", ch, i, pad)
					require.NoError(t, bus.Publish(ch, payload))
					want = append(want, ch+"="+payload)
				}
				if rng.IntN(300) == 0 {
					time.Sleep(time.Duration(rng.IntN(30)) * time.Millisecond)
				}
				if rng.IntN(700) == 0 {
					p.cut() // mid-batch, or between
				}
			}
			h.waitFor("the outbox sent", 60*time.Second, func() bool {
				return bus.OutboxLen() == 0 && got.get(want[len(want)-1]) > 0 &&
					bus.Stats.Published.Load() >= uint64(len(want))
			})
			p.heal()
			waitLen(t, admin, tag+"stream", int64(nAppends))

			retries := int(bus.Stats.PublishRetry.Load())
			t.Logf("%d messages, %d refused, %d heartbeats, %d appends, %d retried batches, %d connections", len(want), nRefused, nBeats, nAppends, retries, p.Conns())
			got.mu.Lock()
			counts := map[string]int{}
			var order []string
			for _, s := range got.order {
				ch, payload, _ := strings.Cut(s, "=")
				if !strings.HasPrefix(ch, tag) && !strings.HasPrefix(ch, "other:") {
					continue
				}
				require.True(t, strings.HasPrefix(payload, ch+"|"), "message %q on channel %q", payload, ch)
				if counts[s] == 0 {
					order = append(order, s)
				}
				counts[s]++
			}
			got.mu.Unlock()
			for _, w := range want {
				assert.GreaterOrEqual(t, counts[w], 1, "%q published", w)
				assert.LessOrEqual(t, counts[w], 1+retries, "%q: copies beyond the %d retried batches", w, retries)
			}
			require.Equal(t, want, order, "first copies, in order (seed %d)", seed)
			assert.Equal(t, uint64(len(want)), bus.Stats.Published.Load(), "published")
			assert.Equal(t, uint64(nRefused), bus.Stats.Refused.Load(), "refused")
			assert.Equal(t, uint64(nRefused), r.Stats.PublishFails.Load(), "publish fails")
			assert.Equal(t, uint64(nBeats), bus.Stats.Heartbeats.Load(), "heartbeats")
			for key, v := range lastBeat {
				assert.Equal(t, v, admin.HGet(ctx, key, "n").Val(), key)
			}
			ids, _, _ := entries(t, admin, tag+"stream")
			assert.Equal(t, appendIDs, ids, "appended")
		})
	}
}

// slowUplinkProxy forwards TCP connections to target, the client's
// commands at about rate bytes a second (a server's uplink to a distant
// Redis), the replies at once.
func slowUplinkProxy(t *testing.T, target string, rate int) string {
	return pipeProxy(t, target, func(cl, sv net.Conn) {
		_ = cl.(*net.TCPConn).SetReadBuffer(16 << 10)
		done := make(chan struct{})
		go func() { defer close(done); _, _ = io.Copy(cl, sv); _ = cl.Close() }()
		defer func() { <-done }()
		defer sv.Close()
		const piece = 4 << 10
		buf := make([]byte, piece)
		start, sent := time.Now(), 0
		for {
			n, err := cl.Read(buf)
			if n > 0 {
				if _, werr := sv.Write(buf[:n]); werr != nil {
					return
				}
				sent += n
				time.Sleep(time.Until(start.Add(time.Duration(sent) * time.Second / time.Duration(rate))))
			}
			if err != nil {
				return
			}
		}
	})
}

// TestBigBatchOnSlowUplink: a batch is as many messages as wait, up to
// 1,024, whatever their bytes. Over an uplink on which a batch takes
// longer to send than write_timeout, the write times out every time: the
// writer sends the same batch again and again, Redis publishes its first
// messages at every attempt, and nothing after it is ever published.
// Here 1,024 messages of 4 KiB (4 MiB) over about 4 MiB/s with a 300 ms
// write timeout.
func TestBigBatchOnSlowUplink(t *testing.T) {
	srv := redistest.Start(t)
	c := client(t, srv)
	got := collect(t, c, "big:*")
	addr := slowUplinkProxy(t, srv.Addr(), 4<<20)
	h := startHarness(t, fmt.Sprintf(`[redis]
url = "redis://%s"
read_timeout = "300ms"
write_timeout = "300ms"
reconnect_min = "10ms"
reconnect_max = "50ms"
outbox_events = 100000
outbox_bytes = "64MiB"
`, addr))
	body := strings.Repeat("x", 4<<10)
	const n = 1024
	for i := range n {
		require.NoError(t, h.bus.Publish("big:x", fmt.Sprintf("%d|%s", i, body)))
	}
	h.waitFor("the outbox sent", 60*time.Second, func() bool {
		last := got.get(fmt.Sprintf("big:x=%d|%s", n-1, body)) > 0 // the copies before it are in
		return h.bus.OutboxLen() == 0 && last || h.bus.Stats.PublishRetry.Load() > 20
	})
	retries := h.bus.Stats.PublishRetry.Load()
	assert.Zero(t, h.bus.OutboxLen(), "messages never sent (%d retried batches)", retries)
	most := 0
	for i := range n {
		k := got.get(fmt.Sprintf("big:x=%d|%s", i, body))
		assert.Positive(t, k, "message %d published", i)
		most = max(most, k)
	}
	t.Logf("%d retried batches, a message published up to %d times", retries, most)
}

// TestPeekBatchBytes: a batch stops before the message that would take it
// past its bytes, takes one message however big, and is what remove and
// Persist count as in flight.
func TestPeekBatchBytes(t *testing.T) {
	q := newFIFO(1000, 1<<30)
	for i := range 300 {
		require.True(t, q.put("c", strings.Repeat("x", 99+i%2))) // 100 or 101 bytes
	}
	b := q.peekBatch(nil, 1024, 1000)
	require.Equal(t, 9, len(b)) // 100+101+... : 9 make 904, 10 make 1005
	assert.Equal(t, 9, q.inflight)
	q.remove(len(b))
	assert.Equal(t, 5, len(q.peekBatch(nil, 5, 1<<20)), "the count bounds it too")
	q.remove(5)
	require.True(t, q.put("c", strings.Repeat("y", 5000)))
	assert.Equal(t, 287, len(q.peekBatch(nil, 1024, 1<<20)), "the big one last")
	q.remove(286)
	b = q.peekBatch(nil, 1024, 1000)
	assert.Equal(t, 1, len(b), "one too big for a batch goes alone")
	assert.Equal(t, 5001, int(msgSize(&b[0])))
}

// TestClusterPublishOrder: messages this server publishes reach a
// subscriber of a Redis Cluster in the order they were published. A
// PUBLISH has no key, so go-redis's cluster pipeline sends each one of a
// batch to a node of its choice, the nodes' parts of the batch running
// side by side.
func TestClusterPublishOrder(t *testing.T) {
	addrs := redistest.StartCluster(t, 3)
	ctx := context.Background()
	sub := redis.NewClient(&redis.Options{Addr: addrs[0], Protocol: 2})
	t.Cleanup(func() { _ = sub.Close() })
	got := collect(t, sub, "order:*")
	// Cluster-bus links come up after the cluster forms: wait until each
	// node's PUBLISH reaches the subscriber.
	for i, a := range addrs {
		c := redis.NewClient(&redis.Options{Addr: a, Protocol: 2})
		waitUntil(t, "node's link", 10*time.Second, func() bool {
			c.Publish(ctx, "order:probe", fmt.Sprint(i))
			return got.get("order:probe="+fmt.Sprint(i)) > 0
		})
		c.Close()
	}
	h := startHarness(t, fmt.Sprintf("[redis]\naddrs = [%q, %q, %q]\nread_timeout = \"1s\"\n", addrs[0], addrs[1], addrs[2]))
	h.waitStatus("connected")
	const n = 3000
	for i := range n {
		require.NoError(t, h.bus.Publish("order:x", fmt.Sprint(i)))
	}
	waitUntil(t, "every message", 30*time.Second, func() bool {
		for i := range n {
			if got.get(fmt.Sprintf("order:x=%d", i)) == 0 {
				return false
			}
		}
		return true
	})
	got.mu.Lock()
	order := got.order
	got.mu.Unlock()
	var first []string
	for _, s := range order {
		if strings.HasPrefix(s, "order:x=") && !slices.Contains(first, s) {
			first = append(first, s)
		}
	}
	misplaced := 0
	for i, s := range first {
		if s != fmt.Sprintf("order:x=%d", i) {
			misplaced++
		}
	}
	assert.Zero(t, misplaced, "messages out of place, of %d: %v", n, first[:min(len(first), 40)])
}

// TestInboxChunkReuseConcurrent: a producer puts numbered messages while a
// consumer takes them a few at a time and hands its emptied chunks back;
// every message is read once, in order, with its own payload (under -race
// a put into a chunk the consumer still reads is a reported race too).
func TestInboxChunkReuseConcurrent(t *testing.T) {
	q := newFIFO(3*chunkLen, 1<<30)
	const n = 100000
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; i < n; {
			if q.put(strconv.Itoa(i), strings.Repeat("p", i%7)+strconv.Itoa(i)) {
				i++
			} else {
				runtime.Gosched()
			}
		}
	}()
	var d deque
	next := 0
	for next < n {
		q.take(&d)
		for d.n > 0 {
			m := d.popFront()
			require.Equal(t, strconv.Itoa(next), m.channel)
			require.Equal(t, strings.Repeat("p", next%7)+strconv.Itoa(next), m.payload)
			q.release(&m)
			next++
		}
		if next%3 == 0 {
			runtime.Gosched()
		}
	}
	<-done
	assert.Zero(t, q.len())
}

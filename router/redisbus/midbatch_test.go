package redisbus

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gmod-realtime/realtime/internal/redistest"
)

// onceInOrder compares what a subscriber got (order, every copy as it
// came) with what Publish accepted (want, in call order) and describes
// the differences briefly: copies, messages missing, and the first
// message out of place. "" when order is want.
func onceInOrder(want, order []string) string {
	pos := make(map[string]int, len(want))
	for i, s := range want {
		pos[s] = i
	}
	seen := make(map[string]int, len(order))
	var dups, missing []int
	for _, s := range order {
		if seen[s]++; seen[s] == 2 {
			dups = append(dups, pos[s])
		}
	}
	for i, s := range want {
		if seen[s] == 0 {
			missing = append(missing, i)
		}
	}
	var out []string
	if len(dups) > 0 {
		out = append(out, fmt.Sprintf("%d published twice or more (first: %v)", len(dups), dups[:min(len(dups), 8)]))
	}
	if len(missing) > 0 {
		out = append(out, fmt.Sprintf("%d never published (first: %v)", len(missing), missing[:min(len(missing), 8)]))
	}
	last := -1
	for i, s := range order {
		p, ok := pos[s]
		if !ok {
			out = append(out, fmt.Sprintf("copy %d is no message published: %q", i, s))
			break
		}
		if p < last {
			out = append(out, fmt.Sprintf("out of order: message %d arrived after message %d (copy %d of %d)", p, last, i, len(order)))
			break
		}
		last = max(last, p)
	}
	return strings.Join(out, "; ")
}

// TestHandOverMidBatch: Reloads that replace the bus while its writer has
// batches of up to 1,024 in flight (seeds printed; replay one with
// REDISBUS_FAULT_SEED=n; the timing matters as much): every message
// reaches Redis once, on its channel, in order, and the buses' Published
// counts add up to them. The router closes the replaced bus once the new
// one is connected; Close closed the go-redis client under the writer's
// batch in flight, which failed, stayed in the outbox and was passed on:
// Redis had published all or part of it, and the next bus published it
// again (a whole batch twice in about one run in five, no fault at all).
func TestHandOverMidBatch(t *testing.T) {
	srv := redistest.Start(t)
	c := client(t, srv)
	for _, seed := range faultSeeds(t, 3) {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			t.Logf("seed %d (replay: REDISBUS_FAULT_SEED=%d)", seed, seed)
			rng := rand.New(rand.NewPCG(seed, 3))
			tag := fmt.Sprintf("ho%d:", seed)
			got := collect(t, c, tag+"*")
			toml := fmt.Sprintf("[redis]\nurl = %q\nread_timeout = \"10s\"\nwrite_timeout = \"10s\"\noutbox_events = 100000\noutbox_bytes = \"64MiB\"\n[[routes]]\nname = \"g\"\npattern = %q\nhandler = \"h\"\n", srv.URL(), tag+"*")
			h := startHarness(t, toml)
			buses := []*Bus{h.bus}
			chans := []string{tag + "aa", tag + "ab", tag + "b"}
			var want []string
			n := 3000 + rng.IntN(3000)
			for i := range n {
				ch := chans[rng.IntN(len(chans))]
				p := fmt.Sprintf("%s|%d", ch, i)
				require.NoError(t, h.r.Publish(ch, p))
				want = append(want, ch+"="+p)
				if rng.IntN(700) == 0 {
					next, err := New(redisConfig(t, toml))
					require.NoError(t, err)
					buses[len(buses)-1].HandOver(next)
					h.r.Replace(next)
					buses = append(buses, next)
				}
				if rng.IntN(500) == 0 {
					h.drain()
				}
			}
			checkOnceInOrder(t, h, got, tag, want, buses)
		})
	}
}

// checkOnceInOrder waits until the subscriber got the last of want, then
// asserts every message of want came once and in order, and that the
// buses counted each as published once and discarded none.
func checkOnceInOrder(t *testing.T, h *harness, got *collected, tag string, want []string, buses []*Bus) {
	t.Helper()
	h.waitFor("every message", 60*time.Second, func() bool {
		return got.get(want[len(want)-1]) > 0
	})
	// A message out of place would come after the last: wait for the
	// count too, a little, so that the report says which.
	deadline := time.Now().Add(2 * time.Second)
	var order []string
	for {
		got.mu.Lock()
		order = order[:0]
		for _, s := range got.order {
			if strings.HasPrefix(s, tag) {
				order = append(order, s)
			}
		}
		got.mu.Unlock()
		if len(order) >= len(want) || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	// The writer counts a batch once Redis's answers are in, which can be
	// after the subscriber got the messages (over a slow link).
	counted := func() (n uint64) {
		for _, b := range buses {
			n += b.Stats.Published.Load()
		}
		return n
	}
	for deadline := time.Now().Add(10 * time.Second); counted() < uint64(len(want)) && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	var published, discarded, retried uint64
	var per []string
	for _, b := range buses {
		published += b.Stats.Published.Load()
		discarded += b.Stats.Discarded.Load()
		retried += b.Stats.PublishRetry.Load()
		per = append(per, fmt.Sprintf("%d/%d/%d/%d", b.Stats.Published.Load(), b.Stats.Discarded.Load(), b.Stats.PublishRetry.Load(), b.OutboxLen()))
	}
	t.Logf("per bus published/discarded/retried/outbox: %v", per)
	require.Empty(t, onceInOrder(want, order), "%d messages over %d buses (%d batches retried)", len(want), len(buses), retried)
	assert.Equal(t, uint64(len(want)), published, "published, over %d buses", len(buses))
	assert.Zero(t, discarded, "discarded")
	t.Logf("%d messages over %d buses", len(want), len(buses))
}

// TestReloadWhileABatchCrawlsUp: a Reload while the old bus's writer is
// sending its first batch, 1 MiB (1,023 messages of 1 KiB published
// while it connected), over a slow uplink (1 MiB/s), the new bus on a
// fast one. The new bus connects and the router closes the old one
// long before the batch is written: the batch must still be published
// once, then the rest of the old outbox, then what was published after
// the Reload, each once, in order; Published counts each once, nothing
// is discarded, and the old bus's goroutines stop. Close cut the batch:
// what Redis had of it was published, and the new bus sent it again.
func TestReloadWhileABatchCrawlsUp(t *testing.T) {
	srv := redistest.Start(t)
	c := client(t, srv)
	got := collect(t, c, "crawl:*")
	slow := slowUplinkProxy(t, srv.Addr(), 1<<20)
	cfg := func(addr string) string {
		return fmt.Sprintf("[redis]\nurl = \"redis://%s\"\nread_timeout = \"10s\"\nwrite_timeout = \"10s\"\noutbox_events = 100000\noutbox_bytes = \"64MiB\"\n", addr)
	}
	srv.Pause() // until the messages below wait: the first batch is 1 MiB
	resumed := false
	defer func() {
		if !resumed {
			srv.Resume()
		}
	}()
	h := startHarness(t, cfg(slow)+"[[routes]]\nname = \"g\"\npattern = \"crawl:*\"\nhandler = \"h\"\n")
	body := strings.Repeat("x", 1<<10)
	var want []string
	pub := func(i int) {
		p := fmt.Sprintf("%d|%s", i, body)
		require.NoError(t, h.r.Publish("crawl:m", p))
		want = append(want, "crawl:m="+p)
	}
	for i := range 1500 {
		pub(i)
	}
	srv.Resume()
	resumed = true
	h.waitFor("the writer sending its batch", 10*time.Second, writerInBatch)
	old := h.bus
	next, err := New(redisConfig(t, cfg(srv.Addr())))
	require.NoError(t, err)
	old.HandOver(next)
	h.r.Replace(next)
	for i := 1500; i < 2000; i++ {
		pub(i)
	}
	checkOnceInOrder(t, h, got, "crawl:", want, []*Bus{old, next})
	waitStopped(t, old)
}

// waitStopped fails unless b's goroutines stop (after Close) within a
// generous bound: a hang, not a speed.
func waitStopped(t *testing.T, b *Bus) {
	t.Helper()
	stopped := make(chan struct{})
	go func() { b.Wait(); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(30 * time.Second):
		t.Fatal("the bus's goroutines still run 30s after Close")
	}
}

// TestReloadsMidBatchRandom: random schedules of Publish (payloads of a
// few bytes to 4 KiB) and Reloads that replace the bus (HandOver +
// Replace), one at a time or several in a row, at random moments: while a
// writer has a batch on the wire, or not; each bus reaching Redis
// directly, over a slow uplink or over a high-latency link (seeds
// printed; replay one with REDISBUS_FAULT_SEED=n). No fault: every
// message is published once, in the order of the Publish calls, counted
// once as published and never as discarded; every replaced bus stops.
func TestReloadsMidBatchRandom(t *testing.T) {
	srv := redistest.Start(t)
	c := client(t, srv)
	addrs := []string{srv.Addr(), slowUplinkProxy(t, srv.Addr(), 2<<20), latencyProxy(t, srv.Addr(), 20*time.Millisecond)}
	for _, seed := range faultSeeds(t, 3) {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			t.Logf("seed %d (replay: REDISBUS_FAULT_SEED=%d)", seed, seed)
			rng := rand.New(rand.NewPCG(seed, 17))
			tag := fmt.Sprintf("mr%d:", seed)
			got := collect(t, c, tag+"*")
			cfg := func() string {
				return fmt.Sprintf("[redis]\nurl = \"redis://%s\"\nread_timeout = \"10s\"\nwrite_timeout = \"10s\"\noutbox_events = 100000\noutbox_bytes = \"64MiB\"\n", addrs[rng.IntN(len(addrs))])
			}
			h := startHarness(t, cfg()+fmt.Sprintf("[[routes]]\nname = \"g\"\npattern = %q\nhandler = \"h\"\n", tag+"*"))
			buses := []*Bus{h.bus}
			chans := []string{tag + "a", tag + "b"}
			bodies := []string{"", strings.Repeat("y", 100), strings.Repeat("z", 4<<10)}
			var want []string
			n := 2000 + rng.IntN(3000)
			var ops []string
			for i := range n {
				ch := chans[rng.IntN(len(chans))]
				p := fmt.Sprintf("%d|%s", i, bodies[rng.IntN(len(bodies))])
				require.NoError(t, h.r.Publish(ch, p))
				want = append(want, ch+"="+p)
				if rng.IntN(400) != 0 {
					continue
				}
				switch rng.IntN(3) {
				case 0: // once a writer has a batch on the wire
					deadline := time.Now().Add(2 * time.Second)
					for !writerInBatch() && time.Now().Before(deadline) {
						time.Sleep(time.Millisecond)
					}
					ops = append(ops, fmt.Sprintf("%d:in-batch", i))
				case 1:
					time.Sleep(time.Duration(rng.IntN(20)) * time.Millisecond)
					ops = append(ops, fmt.Sprintf("%d:slept", i))
				}
				for k := 1 + rng.IntN(3); k > 0; k-- {
					next, err := New(redisConfig(t, cfg()))
					require.NoError(t, err)
					buses[len(buses)-1].HandOver(next)
					h.r.Replace(next)
					buses = append(buses, next)
				}
				if rng.IntN(2) == 0 {
					h.drain()
				}
			}
			t.Logf("reloads after: %v", ops)
			checkOnceInOrder(t, h, got, tag, want, buses)
			for _, b := range buses[:len(buses)-1] {
				waitStopped(t, b)
			}
		})
	}
}

// TestDisconnectWhileRedisStallsMidBatch: Disconnect (Close with no
// HandOver) while the writer's batch waits on a Redis that answers
// nothing (stopped). Close returns at once, the bus's goroutines stop
// once the batch's answers are overdue (write_timeout + read_timeout),
// not when Redis comes back, and each message is counted once: published
// or discarded.
func TestDisconnectWhileRedisStallsMidBatch(t *testing.T) {
	srv := redistest.Start(t)
	h := newHarness(t, srv, "", `write_timeout = "300ms"`)
	h.waitStatus("connected")
	h.waitSubscribed()
	srv.Pause()
	defer srv.Resume()
	const n = 100
	for i := range n {
		require.NoError(t, h.r.Publish("stall", fmt.Sprint(i)))
	}
	h.waitFor("the writer sending its batch", 10*time.Second, writerInBatch)
	require.NoError(t, h.r.Close())
	waitStopped(t, h.bus)
	assert.Equal(t, uint64(n), h.bus.Stats.Published.Load()+h.bus.Stats.Discarded.Load(),
		"published %d + discarded %d", h.bus.Stats.Published.Load(), h.bus.Stats.Discarded.Load())
	assert.Equal(t, h.bus.Stats.Discarded.Load(), h.r.Stats.PublishFails.Load(), "publish_failed")
}

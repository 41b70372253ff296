package redisbus

import (
	"context"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gmod-realtime/realtime/config"
	"github.com/gmod-realtime/realtime/internal/redistest"
	"github.com/gmod-realtime/realtime/router"
	"github.com/gmod-realtime/realtime/router/spool"
)

// TestHostileReloadSchedules drives a router as module/api does over
// random seeds (printed; replay one with REDISBUS_FAULT_SEED=n): bursts
// of Publish, chains of one to four Reloads in a row (HandOver + Replace),
// some once a writer has a batch on the wire, Connect (HandOver, Close,
// Attach), Disconnect then Connect, and Redis stopped for a moment
// (shorter than the timeouts: no answer is lost), each bus reaching
// Redis directly, over a slow uplink or over a distant link. No fault:
// no message reaches Redis twice (unless a batch's answers were overdue
// and it was retried: at-least-once), and each is counted once,
// published or discarded; those accepted since the last Disconnect all
// arrive, their first copies in the order of the Publish calls; every append reaches the stream and
// none is counted lost; every bus stops once the router is closed.
func TestHostileReloadSchedules(t *testing.T) {
	srv := redistest.Start(t)
	c := client(t, srv)
	addrs := []string{srv.Addr(), slowUplinkProxy(t, srv.Addr(), 2<<20), latencyProxy(t, srv.Addr(), 15*time.Millisecond)}
	for _, seed := range faultSeeds(t, 4) {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			t.Logf("seed %d (replay: REDISBUS_FAULT_SEED=%d)", seed, seed)
			rng := rand.New(rand.NewPCG(seed, 29))
			tag := fmt.Sprintf("hx%d:", seed)
			got := collect(t, c, tag+"*")
			cfg := func() string {
				return fmt.Sprintf("[redis]\nurl = \"redis://%s\"\nread_timeout = \"5s\"\nwrite_timeout = \"5s\"\nreconnect_min = \"10ms\"\nreconnect_max = \"100ms\"\noutbox_events = 100000\noutbox_bytes = \"64MiB\"\n",
					addrs[rng.IntN(len(addrs))])
			}
			sp, err := spool.Open(filepath.Join(t.TempDir(), "spool.db"), spool.Options{ServerID: "srv", Logf: t.Logf})
			require.NoError(t, err)
			t.Cleanup(func() { _ = sp.Close() })
			d := NewDurable("srv", sp, nil)
			var buses []*Bus
			newBus := func() *Bus {
				nb, err := New(redisConfig(t, cfg()))
				require.NoError(t, err)
				nb.SetDurable(d)
				buses = append(buses, nb)
				return nb
			}
			rcfg, err := config.Parse("test.toml", []byte(cfg()+fmt.Sprintf("[[routes]]\nname = \"g\"\npattern = %q\nhandler = \"h\"\n", tag+"*")))
			require.NoError(t, err)
			r, err := router.New(rcfg)
			require.NoError(t, err)
			cur := newBus()
			h := &harness{t: t, r: r, bus: cur}
			r.Attach(cur)
			t.Cleanup(func() { _ = r.Close() })
			appended := map[string]bool{}
			beats := 0
			// What GetStats, the heartbeat and gmod13_close do from other
			// goroutines meanwhile: the outbox length, Persist.
			stopPoll := make(chan struct{})
			var poll sync.WaitGroup
			poll.Add(1)
			go func() {
				defer poll.Done()
				for i := 0; ; i++ {
					select {
					case <-stopPoll:
						return
					case <-time.After(time.Millisecond):
					}
					if b, ok := r.Backend().(*Bus); ok {
						_ = b.OutboxLen()
						if i%50 == 0 {
							b.Persist()
						}
					}
				}
			}()
			defer func() { close(stopPoll); poll.Wait() }()
			var pauses sync.WaitGroup
			var pauseMu sync.Mutex
			paused := false
			defer func() { pauses.Wait() }()
			accepted := 0    // messages 0..accepted-1 were accepted
			since := 0       // the first accepted after the last Disconnect
			var epochs []int // the first message of each Disconnect's epoch
			bodies := []string{"", strings.Repeat("y", 200), strings.Repeat("z", 2<<10)}
			var ops []string
			for step := 0; step < 40; step++ {
				switch op := rng.IntN(16); {
				case op >= 14:
					for k := 1 + rng.IntN(100); k > 0; k-- {
						id, err := h.r.Append(tag+"s", fmt.Sprint(k))
						require.NoError(t, err)
						appended[id] = true
						if rng.IntN(10) == 0 {
							beats++
							cur.Heartbeat(tag+"hb", []string{"n", fmt.Sprint(beats)}, time.Minute)
						}
					}
					ops = append(ops, "append")
				case op < 5:
					for k := 1 + rng.IntN(600); k > 0; k-- {
						p := fmt.Sprintf("%d|%s", accepted, bodies[rng.IntN(len(bodies))])
						require.NoError(t, h.r.Publish(tag+"m", p))
						accepted++
					}
					ops = append(ops, "pub")
				case op < 8:
					if rng.IntN(2) == 0 {
						deadline := time.Now().Add(time.Second)
						for !writerInBatch() && time.Now().Before(deadline) {
							time.Sleep(time.Millisecond)
						}
					}
					k := 1 + rng.IntN(4)
					for range k {
						nb := newBus()
						cur.HandOver(nb)
						h.r.Replace(nb)
						cur = nb
					}
					ops = append(ops, fmt.Sprintf("reload*%d", k))
				case op == 8: // Connect: the outbox moves
					nb := newBus()
					cur.HandOver(nb)
					_ = h.r.Close()
					h.r.Attach(nb)
					cur = nb
					ops = append(ops, "connect")
				case op == 9: // Disconnect (as module/api: Persist first), then Connect
					cur.Persist()
					require.NoError(t, sp.Sync())
					_ = h.r.Close()
					since = accepted
					epochs = append(epochs, accepted)
					nb := newBus()
					h.r.Attach(nb)
					cur = nb
					ops = append(ops, "disconnect+connect")
				case op == 10:
					pauseMu.Lock()
					if !paused {
						paused = true
						d := time.Duration(50+rng.IntN(500)) * time.Millisecond
						srv.Pause()
						pauses.Add(1)
						time.AfterFunc(d, func() {
							defer pauses.Done()
							pauseMu.Lock()
							srv.Resume()
							paused = false
							pauseMu.Unlock()
						})
						ops = append(ops, fmt.Sprintf("pause(%v)", d))
					}
					pauseMu.Unlock()
				case op == 11:
					h.drain()
					ops = append(ops, "drain")
				default:
					d := time.Duration(rng.IntN(50)) * time.Millisecond
					time.Sleep(d)
					ops = append(ops, fmt.Sprintf("sleep(%v)", d))
				}
			}
			t.Logf("schedule: %v", ops)
			pauses.Wait()
			if accepted > since {
				last := fmt.Sprintf("%d|", accepted-1)
				h.waitFor("the last message", 60*time.Second, func() bool {
					got.mu.Lock()
					defer got.mu.Unlock()
					for i := len(got.order) - 1; i >= 0 && i >= len(got.order)-2000; i-- {
						if strings.HasPrefix(got.order[i], tag+"m="+last) {
							return true
						}
					}
					return false
				})
			}
			flushed := func() bool { // every append in the stream (copies aside)
				xs, err := c.XRange(context.Background(), tag+"s", "-", "+").Result()
				if err != nil {
					return false
				}
				in := map[string]bool{}
				for _, x := range xs {
					if id, _ := x.Values["rt_id"].(string); appended[id] {
						in[id] = true
					}
				}
				return len(in) == len(appended) && sp.Stats().Depth == 0
			}
			for deadline := time.Now().Add(20 * time.Second); !flushed() && time.Now().Before(deadline); {
				h.drain()
				time.Sleep(10 * time.Millisecond)
			}
			if !flushed() {
				d.mu.Lock()
				queued, spooling := d.queued, d.spooling
				d.mu.Unlock()
				var per []string
				for _, b := range buses {
					per = append(per, fmt.Sprintf("%d/%d/%v", b.OutboxLen(), b.Stats.Appended.Load(), b.closed()))
				}
				t.Fatalf("appends not all in Redis: %d appended, %d in the stream, spool %+v, queued %d, spooling %v, lost %d; outbox/appended/closed per bus %v; schedule %v",
					len(appended), c.XLen(context.Background(), tag+"s").Val(), sp.Stats(), queued, spooling, d.Lost(), per, ops)
			}
			_ = h.r.Close()
			for _, b := range buses {
				waitStopped(t, b)
			}
			xs, err := c.XRange(context.Background(), tag+"s", "-", "+").Result()
			require.NoError(t, err)
			inStream := map[string]int{}
			for _, x := range xs {
				id, _ := x.Values["rt_id"].(string)
				inStream[id]++
			}
			var lostIDs, dupIDs []string
			for id := range appended {
				if inStream[id] == 0 {
					lostIDs = append(lostIDs, id)
				}
				if inStream[id] > 1 {
					dupIDs = append(dupIDs, id)
				}
			}
			var durableLost uint64
			for _, b := range buses {
				durableLost += b.Stats.DurableLost.Load()
			}
			t.Logf("%d appended, %d entries, spool depth %d", len(appended), len(xs), sp.Stats().Depth)
			assert.Empty(t, lostIDs, "appended, not in the stream; schedule %v", ops)
			// Persist copies a batch in flight to the spool: a copy that
			// reached Redis too is sent again (the consumer drops it).
			t.Logf("%d appends in the stream twice (copies of a batch in flight at a Disconnect)", len(dupIDs))
			assert.Zero(t, durableLost, "durable lost")
			// Everything Redis published has reached the subscriber once
			// the copies stop coming (publishes of stopped buses).
			var published, discarded, retried uint64
			for _, b := range buses {
				published += b.Stats.Published.Load()
				discarded += b.Stats.Discarded.Load()
				retried += b.Stats.PublishRetry.Load()
			}
			t.Logf("%d batches retried (answers lost or overdue: at-least-once)", retried)
			h.waitFor("the copies counted as published", 20*time.Second, func() bool {
				got.mu.Lock()
				defer got.mu.Unlock()
				return uint64(len(got.order)) >= published
			})
			got.mu.Lock()
			order := append([]string(nil), got.order...)
			got.mu.Unlock()
			seen := make(map[int]int)
			var dups, missing []int
			// In order within what was published between two Disconnects;
			// across one, a batch of the closed bus may still be finishing.
			last, reordered, across := map[int]int{}, "", ""
			for i, s := range order {
				s = strings.TrimPrefix(s, tag+"m=")
				n, err := strconv.Atoi(s[:strings.IndexByte(s, '|')])
				require.NoError(t, err)
				if seen[n]++; seen[n] == 2 {
					dups = append(dups, n)
				}
				if seen[n] > 1 {
					continue // the first copies are in order
				}
				e := sort.SearchInts(epochs, n+1)
				if l, ok := last[e]; ok && n < l && reordered == "" {
					reordered = fmt.Sprintf("message %d arrived after message %d (copy %d of %d)", n, l, i, len(order))
				}
				last[e] = max(last[e], n)
				for later := e + 1; later <= len(epochs); later++ {
					if _, ok := last[later]; ok && across == "" {
						across = fmt.Sprintf("message %d (epoch %d) arrived after message %d of epoch %d, published after a Disconnect and Connect", n, e, last[later], later)
					}
				}
			}
			if across != "" {
				t.Logf("across a Disconnect: %s", across)
			}
			for i := since; i < accepted; i++ {
				if seen[i] == 0 {
					missing = append(missing, i)
				}
			}
			t.Logf("%d accepted (%d since the last Disconnect), %d copies, %d buses, published %d, discarded %d, publish_failed %d",
				accepted, accepted-since, len(order), len(buses), published, discarded, h.r.Stats.PublishFails.Load())
			if retried == 0 { // else an answer was lost or overdue: at-least-once
				assert.Empty(t, dups, "published twice; schedule %v", ops)
			} else {
				t.Logf("%d messages published twice after %d batches retried", len(dups), retried)
			}
			assert.Empty(t, missing, "accepted since the last Disconnect, never published; schedule %v", ops)
			assert.Empty(t, reordered, "out of order; schedule %v", ops)
			assert.Equal(t, uint64(accepted), published+discarded, "published %d + discarded %d; schedule %v", published, discarded, ops)
			if retried == 0 {
				assert.Equal(t, uint64(len(seen)), published, "distinct messages at Redis vs counted published; schedule %v", ops)
			} else {
				// a retried batch's first try may have reached Redis, and
				// the batch then been discarded (the bus closed): counted
				// discarded, yet published
				assert.LessOrEqual(t, published, uint64(len(seen)), "counted published, never at Redis; schedule %v", ops)
				assert.LessOrEqual(t, uint64(len(seen)), published+discarded, "at Redis, counted neither published nor discarded; schedule %v", ops)
			}
			assert.Equal(t, discarded, h.r.Stats.PublishFails.Load(), "publish_failed")
		})
	}
}

// TestDisconnectDuringHandOverKeepsAppends: a Reload while the old bus's
// batch waits on a stopped Redis, with appends (realtime.Append) queued
// behind that batch, then a Disconnect as module/api does it (Persist on
// the bus in use, then Close). Persist reached only the new bus and its
// successors: the appends still in the old bus's outbox were passed on,
// once its batch was answered, to the new bus, closed by then, and
// dropped (durable lost) instead of spooled.
func TestDisconnectDuringHandOverKeepsAppends(t *testing.T) {
	srv := redistest.Start(t)
	c := client(t, srv)
	sp, err := spool.Open(filepath.Join(t.TempDir(), "spool.db"), spool.Options{ServerID: "srv", Logf: t.Logf})
	require.NoError(t, err)
	t.Cleanup(func() { _ = sp.Close() })
	d := NewDurable("srv", sp, nil)
	toml := fmt.Sprintf("[redis]\nurl = %q\nread_timeout = \"5s\"\nwrite_timeout = \"5s\"\nreconnect_min = \"10ms\"\nreconnect_max = \"100ms\"\n", srv.URL())
	cfg, err := config.Parse("test.toml", []byte(toml))
	require.NoError(t, err)
	r, err := router.New(cfg)
	require.NoError(t, err)
	newBus := func() *Bus {
		b, err := New(cfg.Redis)
		require.NoError(t, err)
		b.SetDurable(d)
		return b
	}
	old := newBus()
	h := &harness{t: t, r: r, bus: old}
	r.Attach(old)
	t.Cleanup(func() { _ = r.Close() })
	h.waitStatus("connected")
	h.waitSubscribed()

	srv.Pause()
	resumed := false
	defer func() {
		if !resumed {
			srv.Resume()
		}
	}()
	for i := range 100 {
		require.NoError(t, r.Publish("hand", fmt.Sprint(i)))
	}
	h.waitFor("the writer sending its batch", 10*time.Second, writerInBatch)
	var ids []string
	for i := range 20 {
		id, err := r.Append("hands", fmt.Sprint(i))
		require.NoError(t, err)
		ids = append(ids, id)
	}
	next := newBus()
	old.HandOver(next)
	r.Replace(next)
	// Disconnect, as module/api does it.
	r.Backend().(*Bus).Persist()
	require.NoError(t, sp.Sync())
	require.NoError(t, r.Close())
	srv.Resume()
	resumed = true
	waitStopped(t, old)
	waitStopped(t, next)
	// Connect: the spool is flushed.
	r.Attach(newBus())
	h.waitFor("the appends", 20*time.Second, func() bool {
		_, _, _ = entries(t, c, "hands")
		got, _, _ := entries(t, c, "hands")
		return len(got) >= len(ids) || d.Lost() > 0
	})
	got, _, _ := entries(t, c, "hands")
	assert.Zero(t, d.Lost(), "durable lost")
	assert.Equal(t, ids, got, "appended before the Disconnect")
}

// TestOutboxCountsWhatWaitsOnTheOldBus: after a Reload while the old
// bus's batch waits on a stopped Redis, the messages behind that batch
// wait for the new connection (docs: counted in redis.outbox while
// waiting), but the bus in use reported only its own outbox: they were
// not counted anywhere GetStats looks until the old batch was answered
// (up to write_timeout + read_timeout).
func TestOutboxCountsWhatWaitsOnTheOldBus(t *testing.T) {
	srv := redistest.Start(t)
	toml := fmt.Sprintf("[redis]\nurl = %q\nread_timeout = \"5s\"\nwrite_timeout = \"5s\"\nreconnect_min = \"10ms\"\nreconnect_max = \"100ms\"\n", srv.URL())
	h := startHarness(t, toml)
	h.waitStatus("connected")
	h.waitSubscribed()
	srv.Pause()
	resumed := false
	defer func() {
		if !resumed {
			srv.Resume()
		}
	}()
	require.NoError(t, h.r.Publish("wait", "first"))
	h.waitFor("the writer sending its batch", 10*time.Second, writerInBatch)
	for i := range 500 {
		require.NoError(t, h.r.Publish("wait", fmt.Sprint(i)))
	}
	old := h.bus
	require.Equal(t, 501, old.OutboxLen())
	next, err := New(redisConfig(t, toml))
	require.NoError(t, err)
	old.HandOver(next)
	h.r.Replace(next)
	require.NoError(t, h.r.Publish("wait", "after"))
	assert.Equal(t, 502, next.OutboxLen(), "the outbox of the bus in use, while the old one's batch waits")
	srv.Resume()
	resumed = true
	h.waitFor("the outbox sent", 20*time.Second, func() bool { return next.OutboxLen() == 0 })
}

// TestReloadsWhileRedisStallsPastTheTimeouts: Reloads (one to three in a
// row) while Redis is stopped for longer than write_timeout +
// read_timeout, with the old bus's batch waiting on it (seeds printed;
// replay with REDISBUS_FAULT_SEED=n). The batch's answers are overdue:
// at-least-once, so copies may come twice, but every message arrives,
// the first copies in the order of the Publish calls, each is counted
// once as published and none discarded, and the replaced buses stop.
func TestReloadsWhileRedisStallsPastTheTimeouts(t *testing.T) {
	srv := redistest.Start(t)
	c := client(t, srv)
	for _, seed := range faultSeeds(t, 2) {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			t.Logf("seed %d (replay: REDISBUS_FAULT_SEED=%d)", seed, seed)
			rng := rand.New(rand.NewPCG(seed, 31))
			tag := fmt.Sprintf("st%d:", seed)
			got := collect(t, c, tag+"*")
			toml := fmt.Sprintf("[redis]\nurl = %q\nread_timeout = \"300ms\"\nwrite_timeout = \"300ms\"\nreconnect_min = \"10ms\"\nreconnect_max = \"100ms\"\noutbox_events = 100000\noutbox_bytes = \"64MiB\"\n", srv.URL())
			h := startHarness(t, toml+fmt.Sprintf("[[routes]]\nname = \"g\"\npattern = %q\nhandler = \"h\"\n", tag+"*"))
			h.waitStatus("connected")
			h.waitSubscribed()
			buses := []*Bus{h.bus}
			var want []string
			pub := func(n int) {
				for range n {
					p := fmt.Sprint(len(want))
					require.NoError(t, h.r.Publish(tag+"m", p))
					want = append(want, tag+"m="+p)
				}
			}
			pub(rng.IntN(200))
			srv.Pause()
			resumed := false
			defer func() {
				if !resumed {
					srv.Resume()
				}
			}()
			pub(1 + rng.IntN(2000))
			h.waitFor("the writer sending its batch", 10*time.Second, writerInBatch)
			stall := time.Duration(700+rng.IntN(1300)) * time.Millisecond
			resume := time.Now().Add(stall)
			for k := 1 + rng.IntN(3); k > 0; k-- {
				pub(rng.IntN(300))
				next, err := New(redisConfig(t, toml))
				require.NoError(t, err)
				buses[len(buses)-1].HandOver(next)
				h.r.Replace(next)
				buses = append(buses, next)
				time.Sleep(time.Duration(rng.IntN(300)) * time.Millisecond)
			}
			pub(rng.IntN(300))
			time.Sleep(time.Until(resume)) // the stall is the schedule's
			srv.Resume()
			resumed = true
			pub(1 + rng.IntN(300))
			h.waitFor("every message", 60*time.Second, func() bool {
				got.mu.Lock()
				defer got.mu.Unlock()
				return got.counts[want[len(want)-1]] > 0
			})
			counted := func() (n uint64) {
				for _, b := range buses {
					n += b.Stats.Published.Load()
				}
				return n
			}
			h.waitFor("the answers counted", 20*time.Second, func() bool { return counted() >= uint64(len(want)) })
			for _, b := range buses[:len(buses)-1] {
				waitStopped(t, b)
			}
			got.mu.Lock()
			order := append([]string(nil), got.order...)
			got.mu.Unlock()
			firsts := make([]string, 0, len(want))
			seen := map[string]bool{}
			for _, s := range order {
				if !seen[s] {
					seen[s] = true
					firsts = append(firsts, s)
				}
			}
			var discarded uint64
			for _, b := range buses {
				discarded += b.Stats.Discarded.Load()
			}
			t.Logf("%d messages, %d copies, stall %v, %d buses", len(want), len(order), stall, len(buses))
			assert.Equal(t, want, firsts, "first copies")
			assert.Equal(t, uint64(len(want)), counted(), "published")
			assert.Zero(t, discarded, "discarded")
		})
	}
}

package redisbus

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
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
)

// chanSink hands entries to a bounded channel and refuses when it is full,
// as the router's queue does.
type chanSink struct {
	ch     chan Entry
	mu     sync.Mutex
	events []string // "kind stream detail"
}

func newChanSink(n int) *chanSink { return &chanSink{ch: make(chan Entry, n)} }

func (s *chanSink) Entry(e Entry) bool {
	select {
	case s.ch <- e:
		return true
	default:
		return false
	}
}

func (s *chanSink) StreamEvent(stream, kind, detail string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.events = append(s.events, kind+" "+stream+" "+detail)
}

func (s *chanSink) hasEvent(prefix string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, e := range s.events {
		if strings.HasPrefix(e, prefix) {
			return true
		}
	}
	return false
}

// recv takes the next entry, failing the test if none comes within d.
func recv(t testing.TB, s *chanSink, d time.Duration) Entry {
	t.Helper()
	select {
	case e := <-s.ch:
		return e
	case <-time.After(d):
		t.Fatalf("no entry within %v", d)
		return Entry{}
	}
}

func streamConfig(addr string) config.Redis {
	return config.Redis{
		URL:            "redis://" + addr,
		ConnectTimeout: config.Duration(2 * time.Second),
		ReadTimeout:    config.Duration(time.Second),
		WriteTimeout:   config.Duration(time.Second),
		ReconnectMin:   config.Duration(20 * time.Millisecond),
		ReconnectMax:   config.Duration(200 * time.Millisecond),
	}
}

// startReader starts a reader for the test with short timings: Block
// 200ms, RetryDelay 50ms unless o says otherwise.
func startReader(t testing.TB, addr, consumer string, specs []StreamSpec, sink StreamSink, o StreamOptions) *StreamReader {
	t.Helper()
	o.Consumer = consumer
	if o.Block == 0 {
		o.Block = 200 * time.Millisecond
	}
	if o.RetryDelay == 0 {
		o.RetryDelay = 50 * time.Millisecond
	}
	o.Logf = t.Logf
	r, err := NewStreamReader(streamConfig(addr), o, specs, sink)
	require.NoError(t, err)
	t.Cleanup(func() { r.Close(); r.Wait() })
	return r
}

// waitUntil polls cond until it holds, failing after timeout.
func waitUntil(t testing.TB, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func pendingCount(c *redis.Client, stream, group string) int64 {
	p, err := c.XPending(context.Background(), stream, group).Result()
	if err != nil {
		return -1
	}
	return p.Count
}

func xadd(t testing.TB, c *redis.Client, stream string, fields ...string) string {
	t.Helper()
	id, err := c.XAdd(context.Background(), &redis.XAddArgs{Stream: stream, Values: fields}).Result()
	require.NoError(t, err)
	return id
}

// deadEntries reads "<stream>:dead" with its fields in order.
func deadEntries(t testing.TB, c *redis.Client, stream string) []rawEntry {
	t.Helper()
	v, err := c.Do(context.Background(), "xrange", stream+":dead", "-", "+").Result()
	if err == redis.Nil {
		return nil
	}
	require.NoError(t, err)
	return parseEntries(v)
}

// TestStreamRetryThenAck: a handler that fails twice then succeeds gets
// the entry three times, counted by Redis, and the entry ends acknowledged.
func TestStreamRetryThenAck(t *testing.T) {
	srv := redistest.Start(t)
	c := client(t, srv)
	sink := newChanSink(16)
	r := startReader(t, srv.Addr(), "srv1", []StreamSpec{{Stream: "cmds", Group: "g", Start: "0", MaxDeliveries: 5}}, sink, StreamOptions{})
	id := xadd(t, c, "cmds", "b", "1", "a", "2")

	var deliveries []int64
	for i := 0; i < 3; i++ {
		e := recv(t, sink, 10*time.Second)
		require.Equal(t, id, e.ID)
		require.Equal(t, []string{"b", "1", "a", "2"}, e.Fields, "fields in the entry's order")
		require.Equal(t, "cmds", e.Stream)
		require.Equal(t, "g", e.Group)
		deliveries = append(deliveries, e.Deliveries)
		if i < 2 {
			r.Nack(e.Stream, e.Group, e.ID)
		} else {
			r.Ack(e.Stream, e.Group, e.ID)
		}
	}
	assert.Equal(t, []int64{1, 2, 3}, deliveries)
	waitUntil(t, "the entry acknowledged", 10*time.Second, func() bool {
		return pendingCount(c, "cmds", "g") == 0 && r.Stats()["cmds"].Acked == 1
	})
	st := r.Stats()["cmds"]
	assert.Equal(t, uint64(2), st.Retried)
	assert.Equal(t, uint64(3), st.Delivered)
	assert.Equal(t, 0, st.InFlight)
	assert.Empty(t, deadEntries(t, c, "cmds"))
}

// TestStreamDeadLetter: an entry whose handler always fails is copied to
// "<stream>:dead" with its delivery count after MaxDeliveries, and
// acknowledged; Dead dead-letters a malformed entry at once.
func TestStreamDeadLetter(t *testing.T) {
	srv := redistest.Start(t)
	c := client(t, srv)
	sink := newChanSink(16)
	r := startReader(t, srv.Addr(), "srv1", []StreamSpec{{Stream: "cmds", Group: "g", Start: "0", MaxDeliveries: 3}}, sink, StreamOptions{})
	id := xadd(t, c, "cmds", "b", "1", "a", "2")

	var deliveries []int64
	for i := 0; i < 3; i++ {
		e := recv(t, sink, 10*time.Second)
		require.Equal(t, id, e.ID)
		deliveries = append(deliveries, e.Deliveries)
		r.Nack(e.Stream, e.Group, e.ID)
	}
	assert.Equal(t, []int64{1, 2, 3}, deliveries)
	waitUntil(t, "the dead letter", 10*time.Second, func() bool { return len(deadEntries(t, c, "cmds")) == 1 })
	dead := deadEntries(t, c, "cmds")[0]
	assert.Equal(t, []string{"b", "1", "a", "2", "rt_source_id", id, "rt_deliveries", "3"}, dead.fields)
	waitUntil(t, "the entry acknowledged", 10*time.Second, func() bool { return pendingCount(c, "cmds", "g") == 0 })
	assert.True(t, sink.hasEvent("dead cmds "+id+" deliveries=3"), "events: %v", sink.events)

	bad := xadd(t, c, "cmds", "data", "{not json")
	e := recv(t, sink, 10*time.Second)
	require.Equal(t, bad, e.ID)
	r.Dead(e.Stream, e.Group, e.ID, "data: invalid JSON")
	waitUntil(t, "the second dead letter", 10*time.Second, func() bool {
		return len(deadEntries(t, c, "cmds")) == 2 && pendingCount(c, "cmds", "g") == 0
	})
	assert.Equal(t, []string{"data", "{not json", "rt_source_id", bad, "rt_deliveries", "1", "rt_reason", "data: invalid JSON"},
		deadEntries(t, c, "cmds")[1].fields)
	st := r.Stats()["cmds"]
	assert.Equal(t, uint64(2), st.Dead)
	assert.Equal(t, uint64(4), st.Delivered, "a dead-lettered entry is not delivered again")
}

// TestStreamRestartPendingFirst: a reader restarted with the same consumer
// name gets the entries it was handed but did not acknowledge first, then
// new ones; acknowledged ones do not come back.
func TestStreamRestartPendingFirst(t *testing.T) {
	srv := redistest.Start(t)
	c := client(t, srv)
	spec := []StreamSpec{{Stream: "s", Group: "g", Start: "0"}}
	sink := newChanSink(64)
	r := startReader(t, srv.Addr(), "srv1", spec, sink, StreamOptions{})
	var old []string
	for i := 0; i < 5; i++ {
		old = append(old, xadd(t, c, "s", "n", strconv.Itoa(i)))
	}
	for i := 0; i < 5; i++ {
		e := recv(t, sink, 10*time.Second)
		require.Equal(t, old[i], e.ID)
		if i < 2 {
			r.Ack(e.Stream, e.Group, e.ID)
		}
	}
	waitUntil(t, "two acks", 10*time.Second, func() bool { return r.Stats()["s"].Acked == 2 })
	r.Close()
	r.Wait()
	require.Equal(t, int64(3), pendingCount(c, "s", "g"))
	var fresh []string
	for i := 5; i < 8; i++ {
		fresh = append(fresh, xadd(t, c, "s", "n", strconv.Itoa(i)))
	}

	sink2 := newChanSink(64)
	r2 := startReader(t, srv.Addr(), "srv1", spec, sink2, StreamOptions{})
	var got []string
	var counts []int64
	for i := 0; i < 6; i++ {
		e := recv(t, sink2, 10*time.Second)
		got, counts = append(got, e.ID), append(counts, e.Deliveries)
		r2.Ack(e.Stream, e.Group, e.ID)
	}
	assert.Equal(t, append(old[2:], fresh...), got, "pending entries first, then new ones")
	assert.Equal(t, []int64{2, 2, 2, 1, 1, 1}, counts)
	waitUntil(t, "all acknowledged", 10*time.Second, func() bool { return pendingCount(c, "s", "g") == 0 })
}

// TestStreamSharedGroup: two servers in one shared group each get a
// different share of the entries; entries one of them holds unacknowledged
// are not claimed by the other while it lives (their idle time is reset),
// and after it closes the other claims them after ClaimAfter.
func TestStreamSharedGroup(t *testing.T) {
	srv := redistest.Start(t)
	c := client(t, srv)
	spec := []StreamSpec{{Stream: "work", Group: "shared", Start: "0", ClaimAfter: 500 * time.Millisecond}}

	sinkA := newChanSink(1024)
	a := startReader(t, srv.Addr(), "a", spec, sinkA, StreamOptions{})
	var held []string
	for i := 0; i < 10; i++ {
		held = append(held, xadd(t, c, "work", "held", strconv.Itoa(i)))
	}
	for i := 0; i < 10; i++ {
		require.Equal(t, held[i], recv(t, sinkA, 10*time.Second).ID) // held by a, not acknowledged
	}

	sinkB := newChanSink(1024)
	b := startReader(t, srv.Addr(), "b", spec, sinkB, StreamOptions{})
	var mu sync.Mutex
	seen := map[string][]string{} // id -> consumers that got it
	var wg sync.WaitGroup
	stop := make(chan struct{})
	handle := func(name string, r *StreamReader, s *chanSink) {
		defer wg.Done()
		for {
			select {
			case e := <-s.ch:
				mu.Lock()
				seen[e.ID] = append(seen[e.ID], name)
				mu.Unlock()
				r.Ack(e.Stream, e.Group, e.ID)
			case <-stop:
				return
			}
		}
	}
	wg.Add(1)
	go handle("b", b, sinkB)
	var work []string
	for i := 0; i < 200; i++ {
		work = append(work, xadd(t, c, "work", "job", strconv.Itoa(i)))
	}
	// a's handler runs now, for the new entries only: its ten stay held.
	wg.Add(1)
	go handle("a", a, sinkA)
	waitUntil(t, "the 200 entries handled", 20*time.Second, func() bool {
		mu.Lock()
		defer mu.Unlock()
		for _, id := range work {
			if len(seen[id]) == 0 {
				return false
			}
		}
		return true
	})
	// b claims what was idle over ClaimAfter at each pass, passes at least
	// ClaimAfter/2 apart: after five of them a's held entries would have
	// been idle for a second, had a not kept them alive.
	passes := b.lookup("work", "shared").claimPasses.Load()
	waitUntil(t, "five claim passes of b", 20*time.Second, func() bool {
		return b.lookup("work", "shared").claimPasses.Load() >= passes+5
	})
	mu.Lock()
	for _, id := range work {
		assert.Len(t, seen[id], 1, "entry %s handled once while both live: %v", id, seen[id])
	}
	for _, id := range held {
		assert.Empty(t, seen[id], "a's held entry %s taken by b", id)
	}
	mu.Unlock()
	assert.Equal(t, 10, a.Stats()["work"].InFlight)

	a.Close() // without acknowledging its ten
	waitUntil(t, "b claims a's entries", 20*time.Second, func() bool {
		mu.Lock()
		defer mu.Unlock()
		for _, id := range held {
			if !slices.Equal(seen[id], []string{"b"}) {
				return false
			}
		}
		return true
	})
	waitUntil(t, "nothing pending", 10*time.Second, func() bool { return pendingCount(c, "work", "shared") == 0 })
	close(stop)
	wg.Wait()
	assert.Equal(t, uint64(10), b.Stats()["work"].Claimed)
}

// TestStreamNoGroup: the stream deleted under the live group is
// recreated with the group, counted and reported, and entries added after
// the deletion arrive.
func TestStreamNoGroup(t *testing.T) {
	srv := redistest.Start(t)
	c := client(t, srv)
	sink := newChanSink(16)
	r := startReader(t, srv.Addr(), "srv1", []StreamSpec{{Stream: "ng", Group: "g", Start: "0"}}, sink, StreamOptions{})
	first := xadd(t, c, "ng", "n", "1")
	e := recv(t, sink, 10*time.Second)
	require.Equal(t, first, e.ID)
	r.Ack(e.Stream, e.Group, e.ID)
	waitUntil(t, "the ack", 10*time.Second, func() bool { return pendingCount(c, "ng", "g") == 0 })

	require.NoError(t, c.Del(context.Background(), "ng").Err())
	x2, x3 := xadd(t, c, "ng", "n", "2"), xadd(t, c, "ng", "n", "3")
	for _, want := range []string{x2, x3} {
		e := recv(t, sink, 10*time.Second)
		require.Equal(t, want, e.ID)
		r.Ack(e.Stream, e.Group, e.ID)
	}
	waitUntil(t, "the recreation counted", 10*time.Second, func() bool { return r.Stats()["ng"].NoGroup >= 1 })
	assert.True(t, sink.hasEvent("nogroup ng "), "events: %v", sink.events)
	waitUntil(t, "the acks", 10*time.Second, func() bool { return pendingCount(c, "ng", "g") == 0 })
}

// TestStreamRedisRestart: Redis killed and restarted (with an fsync'd AOF)
// while the reader works through 3000 entries: every entry arrives, and
// an entry arrives again only if Redis had it pending (its delivery
// counter says so).
func TestStreamRedisRestart(t *testing.T) {
	srv := redistest.Start(t, "--appendonly", "yes", "--appendfsync", "always")
	c := client(t, srv)
	ctx := context.Background()
	const n = 3000
	var ids []string
	for i := 0; i < n; i += 500 {
		pipe := c.Pipeline()
		var cmds []*redis.StringCmd
		for j := i; j < i+500; j++ {
			cmds = append(cmds, pipe.XAdd(ctx, &redis.XAddArgs{Stream: "r", Values: []string{"n", strconv.Itoa(j)}}))
		}
		_, err := pipe.Exec(ctx)
		require.NoError(t, err)
		for _, cmd := range cmds {
			ids = append(ids, cmd.Val())
		}
	}
	sink := newChanSink(256)
	r := startReader(t, srv.Addr(), "srv1", []StreamSpec{{Stream: "r", Group: "g", Start: "0"}}, sink, StreamOptions{Count: 50})
	var mu sync.Mutex
	got := map[string]int{}
	var bad []string
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case e := <-sink.ch:
				mu.Lock()
				if got[e.ID] > 0 && e.Deliveries < 2 {
					bad = append(bad, fmt.Sprintf("%s again with deliveries=%d", e.ID, e.Deliveries))
				}
				got[e.ID]++
				mu.Unlock()
				r.Ack(e.Stream, e.Group, e.ID)
			case <-stop:
				return
			}
		}
	}()
	distinct := func() int { mu.Lock(); defer mu.Unlock(); return len(got) }
	waitUntil(t, "a third of the entries", 30*time.Second, func() bool { return distinct() >= n/3 })
	srv.Restart()
	waitUntil(t, "every entry", 60*time.Second, func() bool { return distinct() == n })
	waitUntil(t, "nothing pending", 30*time.Second, func() bool { return pendingCount(c, "r", "g") == 0 })
	close(stop)
	<-done
	mu.Lock()
	defer mu.Unlock()
	assert.Empty(t, bad)
	dups := 0
	for _, id := range ids {
		require.Positive(t, got[id], "entry %s lost", id)
		dups += got[id] - 1
	}
	t.Logf("%d entries, %d delivered again after the restart (handed out or acknowledged but not yet acknowledged on Redis)", n, dups)
}

// TestStreamSinkRefuses: a full queue refuses entries; they wait and come
// in order, each once, with no delivery counted for a refusal.
func TestStreamSinkRefuses(t *testing.T) {
	srv := redistest.Start(t)
	c := client(t, srv)
	sink := newChanSink(5)
	r := startReader(t, srv.Addr(), "srv1", []StreamSpec{{Stream: "q", Group: "g", Start: "0", MaxDeliveries: 2}}, sink, StreamOptions{Count: 20})
	var want []string
	for i := 0; i < 300; i++ {
		want = append(want, xadd(t, c, "q", "n", strconv.Itoa(i)))
	}
	waitUntil(t, "a refusal", 10*time.Second, func() bool { return r.Stats()["q"].Refused > 0 })
	var got []string
	for len(got) < len(want) {
		e := recv(t, sink, 10*time.Second)
		require.Equal(t, int64(1), e.Deliveries, "a refusal is not a delivery")
		got = append(got, e.ID)
		r.Ack(e.Stream, e.Group, e.ID)
	}
	assert.Equal(t, want, got, "every entry once, in order")
	waitUntil(t, "all acknowledged", 10*time.Second, func() bool { return pendingCount(c, "q", "g") == 0 })
	assert.Empty(t, deadEntries(t, c, "q"))
}

// TestStreamUpdate: a stream added by Update is read; a removed one stops,
// but what its handler still holds is acknowledged.
func TestStreamUpdate(t *testing.T) {
	srv := redistest.Start(t)
	c := client(t, srv)
	sink := newChanSink(16)
	one := StreamSpec{Stream: "one", Group: "g", Start: "0"}
	two := StreamSpec{Stream: "two", Group: "g", Start: "0"}
	r := startReader(t, srv.Addr(), "srv1", []StreamSpec{one}, sink, StreamOptions{})
	id1 := xadd(t, c, "one", "n", "1")
	e1 := recv(t, sink, 10*time.Second)
	require.Equal(t, id1, e1.ID)

	require.NoError(t, r.Update([]StreamSpec{one, two}))
	id2 := xadd(t, c, "two", "n", "2")
	e2 := recv(t, sink, 10*time.Second)
	require.Equal(t, id2, e2.ID)
	r.Ack(e2.Stream, e2.Group, e2.ID)

	require.Error(t, r.Update([]StreamSpec{two, two}), "a stream given twice")
	require.NoError(t, r.Update([]StreamSpec{two}))
	_, listed := r.Stats()["one"]
	assert.False(t, listed)
	r.Ack(e1.Stream, e1.Group, e1.ID)
	waitUntil(t, "both acknowledged", 10*time.Second, func() bool {
		return pendingCount(c, "one", "g") == 0 && pendingCount(c, "two", "g") == 0
	})
	waitUntil(t, "the removed stream forgotten", 10*time.Second, func() bool {
		return r.lookup("one", "g") == nil
	})
}

// modelEntry is what the random schedule's handler knows of one entry.
type modelEntry struct {
	held      bool  // with the handler, not yet answered
	acked     bool  // the handler acknowledged it
	deadAt    int64 // the handler Nacked it at MaxDeliveries or called Dead: deliveries then
	deadWhy   string
	settled   int   // the reader generation that was told (acked or dead)
	last      int64 // the last delivery count seen
	delivered int
}

// TestStreamRandomSchedule mixes appends, acks, nacks, dead letters, a
// queue that refuses, cut connections and restarts of the reader (Close
// and a new one with the same consumer: a map change, whose queue is
// lost), against a model: an entry is never handed out while the handler
// holds it, nor after it was acknowledged or dead-lettered unless the
// reader told of it was restarted since (its last flush can lose the
// ack); every appended entry ends acknowledged or dead-lettered, none
// lost; nothing stays pending. REDISBUS_STREAM_SEED replays a seed.
func TestStreamRandomSchedule(t *testing.T) {
	seed := rand.Uint64()
	if s := os.Getenv("REDISBUS_STREAM_SEED"); s != "" {
		var err error
		seed, err = strconv.ParseUint(s, 10, 64)
		require.NoError(t, err)
	}
	t.Logf("seed %d (REDISBUS_STREAM_SEED=%d replays it)", seed, seed)
	rng := rand.New(rand.NewPCG(seed, seed^0x5eed))

	srv := redistest.Start(t)
	c := client(t, srv)
	p := startProxy(t, srv.Addr(), func(int) faults { return faults{} })
	const maxDel = 4
	spec := []StreamSpec{{Stream: "rnd", Group: "g", Start: "0", MaxDeliveries: maxDel}}
	opts := StreamOptions{Count: int64(1 + rng.IntN(20)), MaxInFlight: 5 + rng.IntN(40), RetryDelay: 20 * time.Millisecond}
	queue := 1 + rng.IntN(16)
	sink := newChanSink(queue)
	r := startReader(t, p.Addr(), "srv1", spec, sink, opts)
	gen, restarts, comeBack := 0, 0, 0
	var dead uint64 // dead letters counted by the readers closed

	model := map[string]*modelEntry{}
	var order []string
	var holding []string
	take := func(e Entry) *modelEntry {
		m := model[e.ID]
		require.NotNil(t, m, "entry %s was never appended", e.ID)
		require.False(t, m.held, "entry %s handed out again while the handler holds it", e.ID)
		if (m.acked || m.deadAt > 0) && m.settled < gen {
			// The restarted reader's last flush lost it.
			m.acked, m.deadAt, m.deadWhy = false, 0, ""
			comeBack++
		}
		require.False(t, m.acked, "entry %s handed out again after its ack", e.ID)
		require.Zero(t, m.deadAt, "entry %s handed out again after it was dead-lettered", e.ID)
		require.Greater(t, e.Deliveries, m.last, "entry %s: the delivery count grows", e.ID)
		m.last = e.Deliveries
		m.delivered++
		return m
	}
	answer := func(id string, m *modelEntry, ack bool) {
		m.held, m.settled = false, gen
		switch {
		case ack:
			m.acked = true
			r.Ack("rnd", "g", id)
		default:
			if m.last >= maxDel {
				m.deadAt = m.last
			}
			r.Nack("rnd", "g", id)
		}
	}
	for step := 0; step < 600; step++ {
		switch x := rng.IntN(100); {
		case x < 15:
			for k := 1 + rng.IntN(10); k > 0; k-- {
				id := xadd(t, c, "rnd", "n", strconv.Itoa(len(order)))
				model[id] = &modelEntry{}
				order = append(order, id)
			}
		case x < 19:
			p.cut()
		case x < 20:
			// A map change: the queue and what the handler holds are lost.
			st := r.lookup("rnd", "g") // Stats lists no closed stream
			r.Close()
			r.Wait()
			dead += st.dead.Load()
			for _, id := range holding {
				model[id].held = false
			}
			holding = nil
			sink = newChanSink(queue)
			r = startReader(t, p.Addr(), "srv1", spec, sink, opts)
			gen++
			restarts++
		case x < 70:
			var e Entry
			select {
			case e = <-sink.ch:
			case <-time.After(20 * time.Millisecond):
				continue
			}
			m := take(e)
			switch y := rng.IntN(100); {
			case y < 45:
				answer(e.ID, m, true)
			case y < 70:
				answer(e.ID, m, false)
			case y < 73:
				m.deadAt, m.deadWhy, m.settled = m.last, "malformed", gen
				r.Dead("rnd", "g", e.ID, "malformed")
			default:
				m.held = true
				holding = append(holding, e.ID)
			}
		case x < 90:
			if len(holding) == 0 {
				continue
			}
			i := rng.IntN(len(holding))
			id := holding[i]
			holding = slices.Delete(holding, i, i+1)
			answer(id, model[id], rng.IntN(3) > 0)
		}
	}
	// The end: acknowledge everything until nothing is pending.
	for _, id := range holding {
		answer(id, model[id], true)
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		select {
		case e := <-sink.ch:
			answer(e.ID, take(e), true)
			continue
		case <-time.After(20 * time.Millisecond):
		}
		if pendingCount(c, "rnd", "g") == 0 && r.Stats()["rnd"].InFlight == 0 {
			break
		}
		require.True(t, time.Now().Before(deadline), "entries still pending after 60s")
	}
	deads := map[string][]string{}
	for _, d := range deadEntries(t, c, "rnd") {
		id := fieldValue(d.fields, "rt_source_id")
		require.NotContains(t, deads, id, "entry %s dead-lettered twice", id)
		deads[id] = d.fields
	}
	assert.Equal(t, uint64(len(deads)), dead+r.Stats()["rnd"].Dead, "dead letters counted")
	var acked, redelivered int
	for i, id := range order {
		m := model[id]
		d, isDead := deads[id]
		switch {
		case m.acked:
			acked++
			assert.False(t, isDead, "entry %s acknowledged and dead-lettered", id)
		case isDead:
			assert.Equal(t, []string{"n", strconv.Itoa(i)}, d[:2], "dead entry %s keeps its fields", id)
			n, _ := strconv.ParseInt(fieldValue(d, "rt_deliveries"), 10, 64)
			if m.deadWhy != "" {
				assert.Equal(t, m.deadWhy, fieldValue(d, "rt_reason"))
				assert.Equal(t, m.deadAt, n)
			} else {
				// Nacked at MaxDeliveries, or found pending with that
				// many (a read whose reply a cut lost counts too).
				assert.GreaterOrEqual(t, n, int64(maxDel), "entry %s dead-lettered early", id)
				if m.deadAt > 0 {
					assert.Equal(t, m.deadAt, n)
				}
			}
		default:
			t.Errorf("entry %s lost: neither acknowledged nor dead-lettered (%+v)", id, *m)
		}
		if m.deadAt > 0 && m.deadWhy == "" {
			assert.True(t, isDead, "entry %s nacked at %d deliveries is not dead-lettered", id, m.deadAt)
		}
		if m.delivered > 1 {
			redelivered++
		}
	}
	t.Logf("%d entries: %d acknowledged, %d dead-lettered, %d delivered more than once; %d connections; %d restarts, %d entries settled before one came back; stats %+v",
		len(order), acked, len(deads), redelivered, p.Conns(), restarts, comeBack, r.Stats()["rnd"])
}

// BenchmarkStreamReader is entries/s through the reader with a handler
// that acknowledges each at once, beside BenchmarkStreamPlainLoop, a bare
// go-redis XREADGROUP + XACK loop on the same kind of stream.
func BenchmarkStreamReader(b *testing.B) {
	srv := redistest.Start(b)
	c := client2(b, srv)
	fillStream(b, c, "bench", b.N)
	sink := newChanSink(4096)
	var r *StreamReader
	done := make(chan struct{})
	b.ResetTimer()
	r = startReader(b, srv.Addr(), "srv1", []StreamSpec{{Stream: "bench", Group: "g", Start: "0"}}, sink, StreamOptions{})
	go func() {
		defer close(done)
		for i := 0; i < b.N; i++ {
			e := <-sink.ch
			r.Ack(e.Stream, e.Group, e.ID)
		}
	}()
	<-done
	waitUntil(b, "every ack", time.Minute, func() bool { return r.Stats()["bench"].Acked == uint64(b.N) })
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "entries/s")
	reportCalls(b, c)
}

// reportCalls reports the XREADGROUP and XACK calls Redis served per 1000
// entries.
func reportCalls(b *testing.B, c *redis.Client) {
	info, err := c.Info(context.Background(), "commandstats").Result()
	require.NoError(b, err)
	for _, line := range strings.Split(info, "\r\n") {
		for _, name := range []string{"xreadgroup", "xack"} {
			if rest, ok := strings.CutPrefix(line, "cmdstat_"+name+":calls="); ok {
				n, _ := strconv.Atoi(rest[:strings.IndexByte(rest, ',')])
				b.ReportMetric(float64(n)*1000/float64(b.N), name+"/1000")
			}
		}
	}
}

// BenchmarkStreamPlainLoop is the baseline: XREADGROUP COUNT 100, then one
// XACK of what it read, in a loop.
func BenchmarkStreamPlainLoop(b *testing.B) {
	srv := redistest.Start(b)
	c := client2(b, srv)
	fillStream(b, c, "bench", b.N)
	ctx := context.Background()
	b.ResetTimer()
	require.NoError(b, c.XGroupCreateMkStream(ctx, "bench", "g", "0").Err())
	for n := 0; n < b.N; {
		res, err := c.XReadGroup(ctx, &redis.XReadGroupArgs{Group: "g", Consumer: "c", Streams: []string{"bench", ">"}, Count: 100, Block: time.Second}).Result()
		require.NoError(b, err)
		var ids []string
		for _, m := range res[0].Messages {
			ids = append(ids, m.ID)
		}
		require.NoError(b, c.XAck(ctx, "bench", "g", ids...).Err())
		n += len(ids)
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "entries/s")
	reportCalls(b, c)
}

func client2(b testing.TB, srv *redistest.Server) *redis.Client {
	c := redis.NewClient(&redis.Options{Addr: srv.Addr(), Protocol: 2})
	b.Cleanup(func() { _ = c.Close() })
	return c
}

func fillStream(b testing.TB, c *redis.Client, stream string, n int) {
	ctx := context.Background()
	for i := 0; i < n; i += 1000 {
		pipe := c.Pipeline()
		for j := i; j < min(i+1000, n); j++ {
			pipe.XAdd(ctx, &redis.XAddArgs{Stream: stream, Values: []string{"data", `{"n":` + strconv.Itoa(j) + `}`}})
		}
		_, err := pipe.Exec(ctx)
		require.NoError(b, err)
	}
}

// TestStreamCluster: streams on several nodes of a Redis Cluster are read,
// acknowledged and dead-lettered (the dead-letter stream may sit on
// another node than its stream).
func TestStreamCluster(t *testing.T) {
	addrs := redistest.StartCluster(t, 3)
	ctx := context.Background()
	cc := redis.NewClusterClient(&redis.ClusterOptions{Addrs: addrs, Protocol: 2})
	t.Cleanup(func() { _ = cc.Close() })
	names := []string{"alpha", "beta", "gamma", "delta"}
	nodes := map[string]bool{}
	var specs []StreamSpec
	for _, n := range names {
		specs = append(specs, StreamSpec{Stream: n, Group: "g", Start: "0", MaxDeliveries: 1})
		node, err := cc.MasterForKey(ctx, n)
		require.NoError(t, err)
		nodes[node.Options().Addr] = true
	}
	require.Greater(t, len(nodes), 1, "the streams sit on several nodes")

	cfg := streamConfig(addrs[0])
	cfg.URL, cfg.Addrs = "", addrs
	sink := newChanSink(64)
	r, err := NewStreamReader(cfg, StreamOptions{Consumer: "srv1", Block: 200 * time.Millisecond, RetryDelay: 50 * time.Millisecond, Logf: t.Logf}, specs, sink)
	require.NoError(t, err)
	t.Cleanup(func() { r.Close(); r.Wait() })
	want := map[string]string{} // id -> stream
	waitUntil(t, "the entries added", 20*time.Second, func() bool {
		for _, n := range names {
			if id, err := cc.XAdd(ctx, &redis.XAddArgs{Stream: n, Values: []string{"n", n}}).Result(); err == nil {
				want[id+" "+n] = n
			}
		}
		return len(want) == 2*len(names)
	})
	got := map[string]bool{}
	for len(got) < len(want) {
		e := recv(t, sink, 20*time.Second)
		require.Equal(t, []string{"n", e.Stream}, e.Fields)
		got[e.ID+" "+e.Stream] = true
		if e.Stream == "alpha" {
			r.Nack(e.Stream, e.Group, e.ID) // MaxDeliveries 1: dead-lettered
		} else {
			r.Ack(e.Stream, e.Group, e.ID)
		}
	}
	waitUntil(t, "everything acknowledged", 20*time.Second, func() bool {
		for _, n := range names {
			p, err := cc.XPending(ctx, n, "g").Result()
			if err != nil || p.Count != 0 {
				return false
			}
		}
		return cc.XLen(ctx, "alpha:dead").Val() == 2
	})
}

// TestStreamRelease: entries the sink discarded (the queue cleared at a
// map change) come back after Release, in order, without a Nack.
func TestStreamRelease(t *testing.T) {
	srv := redistest.Start(t)
	c := client(t, srv)
	sink := newChanSink(16)
	r := startReader(t, srv.Addr(), "srv1", []StreamSpec{{Stream: "rel", Group: "g", Start: "0"}}, sink, StreamOptions{})
	var ids []string
	for i := 0; i < 3; i++ {
		ids = append(ids, xadd(t, c, "rel", "n", strconv.Itoa(i)))
	}
	for i := 0; i < 3; i++ {
		require.Equal(t, ids[i], recv(t, sink, 10*time.Second).ID) // then discarded
	}
	r.Release()
	for i := 0; i < 3; i++ {
		e := recv(t, sink, 10*time.Second)
		require.Equal(t, ids[i], e.ID)
		require.Equal(t, int64(2), e.Deliveries)
		r.Ack(e.Stream, e.Group, e.ID)
	}
	waitUntil(t, "all acknowledged", 10*time.Second, func() bool { return pendingCount(c, "rel", "g") == 0 })
}

// TestStreamDuplicateCheck: a second entry with the same rt_id (the
// spool's copy after a crash between XADD and its delete) is acknowledged
// without being handed out; the same entry delivered again is not a copy.
func TestStreamDuplicateCheck(t *testing.T) {
	srv := redistest.Start(t)
	c := client(t, srv)
	sink := newChanSink(16)
	r := startReader(t, srv.Addr(), "srv1", []StreamSpec{{Stream: "dup", Group: "g", Start: "0"}}, sink, StreamOptions{})
	a := xadd(t, c, "dup", "data", "x", "rt_id", "srv-1")
	xadd(t, c, "dup", "data", "x", "rt_id", "srv-1")
	b := xadd(t, c, "dup", "data", "y", "rt_id", "srv-2")
	plain := xadd(t, c, "dup", "data", "z")
	e := recv(t, sink, 10*time.Second)
	require.Equal(t, a, e.ID)
	r.Nack(e.Stream, e.Group, e.ID)
	var got []string
	for len(got) < 3 {
		e := recv(t, sink, 10*time.Second)
		got = append(got, e.ID)
		r.Ack(e.Stream, e.Group, e.ID)
	}
	assert.ElementsMatch(t, []string{a, b, plain}, got, "the copy is not handed out; the retried entry is")
	waitUntil(t, "all acknowledged", 10*time.Second, func() bool { return pendingCount(c, "dup", "g") == 0 })
	assert.Equal(t, uint64(1), r.Stats()["dup"].Duplicates)
}

// TestStreamStatsFigures: Pending and Lag are Redis's (XPENDING, XINFO
// GROUPS), and MaxInFlight bounds what is read ahead of the handler.
func TestStreamStatsFigures(t *testing.T) {
	srv := redistest.Start(t)
	c := client(t, srv)
	sink := newChanSink(16)
	r := startReader(t, srv.Addr(), "srv1", []StreamSpec{{Stream: "st", Group: "g", Start: "0"}}, sink, StreamOptions{MaxInFlight: 2})
	for i := 0; i < 5; i++ {
		xadd(t, c, "st", "n", strconv.Itoa(i))
	}
	waitUntil(t, "two in flight, three unread", 10*time.Second, func() bool {
		st := r.Stats()["st"]
		return st.InFlight == 2 && st.Pending == 2 && st.Lag == 3
	})
	for i := 0; i < 5; i++ {
		e := recv(t, sink, 10*time.Second)
		r.Ack(e.Stream, e.Group, e.ID)
	}
	waitUntil(t, "all read and acknowledged", 10*time.Second, func() bool {
		st := r.Stats()["st"]
		return st.InFlight == 0 && st.Pending == 0 && st.Lag == 0 && st.Acked == 5 && st.Delivered == 5
	})
}

// TestStreamACLCommands: a user allowed exactly the commands the
// StreamReader's comment lists, on its streams only, can read, retry,
// claim and dead-letter.
func TestStreamACLCommands(t *testing.T) {
	srv := redistest.Start(t)
	c := client(t, srv)
	require.NoError(t, c.Do(context.Background(), "ACL", "SETUSER", "game", "on", ">pw", "resetkeys", "~jobs", "~jobs:dead",
		"-@all", "+xgroup|create", "+xreadgroup", "+xpending", "+xclaim", "+xautoclaim", "+xack", "+xrange",
		"+xadd", "+multi", "+exec", "+xinfo|groups").Err())
	cfg := streamConfig(srv.Addr())
	cfg.URL = "redis://game:pw@" + srv.Addr()
	sink := newChanSink(16)
	r, err := NewStreamReader(cfg, StreamOptions{Consumer: "srv1", Block: 200 * time.Millisecond, RetryDelay: 50 * time.Millisecond, Logf: t.Logf},
		[]StreamSpec{{Stream: "jobs", Group: "g", Start: "0", MaxDeliveries: 2, ClaimAfter: 500 * time.Millisecond}}, sink)
	require.NoError(t, err)
	t.Cleanup(func() { r.Close(); r.Wait() })
	id := xadd(t, c, "jobs", "n", "1")
	for i := 1; i <= 2; i++ {
		e := recv(t, sink, 10*time.Second)
		require.Equal(t, id, e.ID)
		require.Equal(t, int64(i), e.Deliveries)
		r.Nack(e.Stream, e.Group, e.ID)
	}
	waitUntil(t, "the dead letter and the figures", 10*time.Second, func() bool {
		st := r.Stats()["jobs"]
		return len(deadEntries(t, c, "jobs")) == 1 && pendingCount(c, "jobs", "g") == 0 && st.Pending == 0 && st.Lag == 0
	})
	waitUntil(t, "a claim pass", 10*time.Second, func() bool { return r.lookup("jobs", "g").claimPasses.Load() > 0 })
	assert.False(t, sink.hasEvent("error"), "events: %v", sink.events)
}

// TestStreamRefusedClaimIsReported: a user without XAUTOCLAIM still reads,
// and the refusal is reported once, not silently skipped.
func TestStreamRefusedClaimIsReported(t *testing.T) {
	srv := redistest.Start(t)
	c := client(t, srv)
	require.NoError(t, c.Do(context.Background(), "ACL", "SETUSER", "game", "on", ">pw", "~*", "+@all", "-xautoclaim").Err())
	cfg := streamConfig(srv.Addr())
	cfg.URL = "redis://game:pw@" + srv.Addr()
	sink := newChanSink(16)
	r, err := NewStreamReader(cfg, StreamOptions{Consumer: "srv1", Block: 200 * time.Millisecond, Logf: t.Logf},
		[]StreamSpec{{Stream: "jobs", Group: "g", Start: "0", ClaimAfter: 200 * time.Millisecond}}, sink)
	require.NoError(t, err)
	t.Cleanup(func() { r.Close(); r.Wait() })
	id := xadd(t, c, "jobs", "n", "1")
	e := recv(t, sink, 10*time.Second)
	require.Equal(t, id, e.ID)
	r.Ack(e.Stream, e.Group, e.ID)
	waitUntil(t, "the refusal reported", 10*time.Second, func() bool { return sink.hasEvent("error jobs claiming: NOPERM") })
	waitUntil(t, "three refused claims", 10*time.Second, func() bool {
		v, _ := c.Do(context.Background(), "ACL", "LOG").Result()
		entries, _ := v.([]any)
		for _, e := range entries {
			kv, _ := e.([]any)
			var count int64
			var object string
			for i := 0; i+1 < len(kv); i += 2 {
				switch kv[i] {
				case "count":
					count, _ = kv[i+1].(int64)
				case "object":
					object, _ = kv[i+1].(string)
				}
			}
			if object == "xautoclaim" && count >= 3 {
				return true
			}
		}
		return false
	})
	sink.mu.Lock()
	defer sink.mu.Unlock()
	assert.Len(t, sink.events, 1, "reported once: %v", sink.events)
}

// TestStreamAckAfterClose: a handler that returns after the reader was
// closed (Disconnect, a map change) still has its entry acknowledged, in
// the background: it is not delivered again later.
func TestStreamAckAfterClose(t *testing.T) {
	srv := redistest.Start(t)
	c := client(t, srv)
	sink := newChanSink(16)
	r := startReader(t, srv.Addr(), "srv1", []StreamSpec{{Stream: "late", Group: "g", Start: "0"}}, sink, StreamOptions{})
	for i := 0; i < 3; i++ {
		xadd(t, c, "late", "n", strconv.Itoa(i))
	}
	var got []Entry
	for len(got) < 3 {
		got = append(got, recv(t, sink, 10*time.Second))
	}
	r.Close()
	r.Wait() // its worker has sent its last acks and stopped
	for _, e := range got {
		r.Ack(e.Stream, e.Group, e.ID) // the handlers return after Close
	}
	waitUntil(t, "the late acks", 10*time.Second, func() bool { return pendingCount(c, "late", "g") == 0 })
	r.Wait()
}

// TestStreamDeadLetterTrimmed: the dead-letter stream is trimmed as the
// durable appends are (StreamOptions.Trim: [streams] max_len), so poison
// entries cannot grow it without bound.
func TestStreamDeadLetterTrimmed(t *testing.T) {
	srv := redistest.Start(t)
	c := client(t, srv)
	sink := newChanSink(1024)
	const n = 600
	r := startReader(t, srv.Addr(), "srv1", []StreamSpec{{Stream: "cmds", Group: "g", Start: "0"}}, sink,
		StreamOptions{Trim: func() (int64, string) { return 10, "" }})
	for range n {
		xadd(t, c, "cmds", "data", "{not json")
	}
	for range n {
		e := recv(t, sink, 10*time.Second)
		r.Dead(e.Stream, e.Group, e.ID, "bad")
	}
	waitUntil(t, "every entry dead-lettered", 20*time.Second, func() bool { return r.Stats()["cmds"].Dead == n })
	left, err := c.XLen(context.Background(), "cmds:dead").Result()
	require.NoError(t, err)
	require.Less(t, left, int64(n), "MAXLEN ~ 10 did not trim the dead letters")
	require.Greater(t, left, int64(0))
}

package redisbus

import (
	"context"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/gmod-realtime/realtime/config"
	"github.com/gmod-realtime/realtime/internal/redistest"
	"github.com/gmod-realtime/realtime/router"
	"github.com/gmod-realtime/realtime/router/spool"
)

// durableHarness is a harness whose bus has durable sends, with a spool
// at path ("" none).
func durableHarness(t *testing.T, srv *redistest.Server, path string, extra ...string) (*harness, *Durable) {
	t.Helper()
	return durableHarnessAt(t, srv.Addr(), path, extra...)
}

// durableHarnessAt is durableHarness with the bus connecting to addr (a
// proxy, say).
func durableHarnessAt(t *testing.T, addr, path string, extra ...string) (*harness, *Durable) {
	t.Helper()
	var sp *spool.Spool
	if path != "" {
		var err error
		sp, err = spool.Open(path, spool.Options{ServerID: "srv", Logf: t.Logf})
		require.NoError(t, err)
		t.Cleanup(func() { _ = sp.Close() })
	}
	d := NewDurable("srv", sp, nil)
	base := fmt.Sprintf("[redis]\nurl = \"redis://%s\"\nreconnect_min = \"50ms\"\nreconnect_max = \"300ms\"\n", addr)
	rt := "read_timeout = \"300ms\"\n"
	for _, e := range extra {
		if strings.HasPrefix(e, "read_timeout") {
			rt = ""
		}
		base += e + "\n"
	}
	base += rt
	cfg, err := config.Parse("test.toml", []byte(base))
	require.NoError(t, err)
	r, err := router.New(cfg)
	require.NoError(t, err)
	bus, err := New(cfg.Redis)
	require.NoError(t, err)
	bus.SetDurable(d)
	h := &harness{t: t, r: r, bus: bus}
	r.Attach(bus)
	t.Cleanup(func() { _ = r.Close() })
	return h, d
}

// entries reads stream's entries as their rt_id, after dropping the
// copies a consumer drops (a sequence not above the highest seen).
func entries(t *testing.T, c *redis.Client, stream string) (ids []string, data []string, dups int) {
	t.Helper()
	xs, err := c.XRange(context.Background(), stream, "-", "+").Result()
	require.NoError(t, err)
	var high int64
	for _, x := range xs {
		id, _ := x.Values["rt_id"].(string)
		_, seq, ok := spool.ParseID(id)
		require.True(t, ok, "entry %v has no rt_id", x)
		if seq <= high {
			dups++
			continue
		}
		high = seq
		ids = append(ids, id)
		data = append(data, x.Values["data"].(string))
	}
	return ids, data, dups
}

func waitLen(t *testing.T, c *redis.Client, stream string, n int64) {
	t.Helper()
	waitUntil(t, fmt.Sprintf("%d entries in %s", n, stream), 20*time.Second, func() bool {
		l, _ := c.XLen(context.Background(), stream).Result()
		return l >= n
	})
}

// TestAppendConnected: entries arrive with their rt_id, in order; the
// router counts them.
func TestAppendConnected(t *testing.T) {
	srv := redistest.Start(t)
	h, _ := durableHarness(t, srv, "")
	h.waitStatus("connected")
	var want []string
	for i := range 50 {
		id, err := h.r.Append("s", "p"+strconv.Itoa(i))
		require.NoError(t, err)
		want = append(want, id)
	}
	c := client(t, srv)
	waitLen(t, c, "s", 50)
	ids, data, dups := entries(t, c, "s")
	require.Equal(t, want, ids)
	require.Equal(t, "p0", data[0])
	require.Zero(t, dups)
	require.Equal(t, uint64(50), h.r.Stats.Appended.Load())
	waitUntil(t, "acknowledged", 5*time.Second, func() bool { return h.bus.Stats.Appended.Load() == 50 })
}

// TestAppendWhileDownIsSpooledAndFlushedInOrder: appends before, during
// and after an outage reach the stream once each, in order; the middle
// ones went through the spool, which ends empty.
func TestAppendWhileDownIsSpooledAndFlushedInOrder(t *testing.T) {
	srv := redistest.Start(t)
	path := filepath.Join(t.TempDir(), "spool.db")
	h, d := durableHarness(t, srv, path)
	h.waitStatus("connected")
	var want []string
	add := func(n int) {
		for range n {
			id, err := h.r.Append("s", strconv.Itoa(len(want)))
			require.NoError(t, err)
			want = append(want, id)
		}
	}
	add(100)
	srv.Kill()
	h.waitStatus("disconnected")
	add(300)
	require.True(t, d.Spooling())
	require.NoError(t, d.Spool().Sync())
	require.GreaterOrEqual(t, d.Spool().Stats().Depth, int64(300))
	srv.Restart()
	add(100) // while reconnecting: behind the spooled ones
	c := client(t, srv)
	// The server restarted without persistence: what was sent before the
	// kill is gone, the rest arrives.
	waitUntil(t, "the spool flushed and the outbox sent", 20*time.Second, func() bool {
		ids, _, _ := entries(t, c, "s")
		return len(ids) > 0 && ids[len(ids)-1] == want[len(want)-1] && d.Spool().Stats().Depth == 0
	})
	ids, data, _ := entries(t, c, "s")
	require.Equal(t, want[len(want)-len(ids):], ids, "in order, none missing after the restart")
	require.GreaterOrEqual(t, len(ids), 400)
	require.Equal(t, strconv.Itoa(len(want)-len(ids)), data[0])
	waitUntil(t, "spooling ends", 5*time.Second, func() bool { return !d.Spooling() })
	require.Zero(t, d.Spool().Stats().Dropped())
}

// TestAppendOutboxFullSpillsToSpool: with a small outbox and Redis
// paused, appends past the outbox go to the spool; once Redis answers,
// every entry arrives once, in order (the outbox first).
func TestAppendOutboxFullSpillsToSpool(t *testing.T) {
	srv := redistest.Start(t)
	h, d := durableHarness(t, srv, filepath.Join(t.TempDir(), "spool.db"), "outbox_events = 5", `read_timeout = "30s"`)
	h.waitStatus("connected")
	srv.Pause()
	var want []string
	for i := range 200 {
		id, err := h.r.Append("s", strconv.Itoa(i))
		require.NoError(t, err)
		want = append(want, id)
	}
	require.True(t, d.Spooling(), "the outbox filled up")
	srv.Resume()
	c := client(t, srv)
	waitLen(t, c, "s", 200)
	ids, _, dups := entries(t, c, "s")
	require.Equal(t, want, ids)
	require.Zero(t, dups)
	waitUntil(t, "spooling ends", 10*time.Second, func() bool { return !d.Spooling() })
}

// TestAppendNoSpoolWaitsInOutbox: with no spool, entries wait in the
// outbox like publishes; past its bound Append fails and is counted.
func TestAppendNoSpoolWaitsInOutbox(t *testing.T) {
	srv := redistest.Start(t)
	h, _ := durableHarness(t, srv, "", "outbox_events = 3")
	h.waitStatus("connected")
	srv.Kill()
	h.waitStatus("disconnected")
	for range 3 {
		_, err := h.r.Append("s", "x")
		require.NoError(t, err)
	}
	_, err := h.r.Append("s", "x")
	require.ErrorIs(t, err, ErrOutboxFull)
	require.Equal(t, uint64(1), h.r.Stats.AppendFails.Load())
	srv.Restart()
	waitLen(t, client(t, srv), "s", 3)
}

// TestPersistThenNextOpenSends: entries waiting in the outbox at close go
// to the spool file (Persist, then the spool closed), and the next
// process's spool sends them.
func TestPersistThenNextOpenSends(t *testing.T) {
	srv := redistest.Start(t)
	path := filepath.Join(t.TempDir(), "spool.db")
	sp, err := spool.Open(path, spool.Options{ServerID: "srv"})
	require.NoError(t, err)
	cfg, err := config.Parse("t.toml", []byte(fmt.Sprintf("[redis]\nurl = %q\n", srv.URL())))
	require.NoError(t, err)
	bus, err := New(cfg.Redis) // never started: what is appended waits in the outbox
	require.NoError(t, err)
	bus.SetDurable(NewDurable("srv", sp, nil))
	var want []string
	for i := range 20 {
		id, err := bus.Append("s", strconv.Itoa(i))
		require.NoError(t, err)
		want = append(want, id)
	}
	require.Equal(t, 20, bus.OutboxLen())
	require.Equal(t, 20, bus.Persist())
	require.Zero(t, bus.OutboxLen())
	require.NoError(t, bus.Close())
	require.NoError(t, sp.Close())

	h, d := durableHarness(t, srv, path)
	require.Equal(t, int64(20), d.Spool().Stats().Depth, "the file kept them")
	h.waitStatus("connected")
	id, err := h.r.Append("s", "after")
	require.NoError(t, err)
	want = append(want, id)
	c := client(t, srv)
	waitLen(t, c, "s", 21)
	ids, _, _ := entries(t, c, "s")
	require.Equal(t, want, ids, "the spooled ones first")
}

// TestAppendTrimming: max_len and retention trim the stream at XADD.
func TestAppendTrimming(t *testing.T) {
	srv := redistest.Start(t)
	h, d := durableHarness(t, srv, "")
	h.waitStatus("connected")
	c := client(t, srv)
	ctx := context.Background()
	d.SetTrim(10, 0)
	for range 1000 {
		_, err := h.r.Append("len", "x")
		require.NoError(t, err)
	}
	waitUntil(t, "acknowledged", 10*time.Second, func() bool { return h.bus.Stats.Appended.Load() == 1000 })
	n, err := c.XLen(ctx, "len").Result()
	require.NoError(t, err)
	require.Less(t, n, int64(1000), "MAXLEN ~ 10 trimmed")

	for i := 1; i <= 300; i++ { // old entries, from 1970
		require.NoError(t, c.XAdd(ctx, &redis.XAddArgs{Stream: "age", ID: fmt.Sprintf("%d-0", i), Values: []any{"data", "old"}}).Err())
	}
	d.SetTrim(0, time.Hour)
	_, err = h.r.Append("age", "new")
	require.NoError(t, err)
	waitUntil(t, "acknowledged", 10*time.Second, func() bool { return h.bus.Stats.Appended.Load() == 1001 })
	n, err = c.XLen(ctx, "age").Result()
	require.NoError(t, err)
	require.Less(t, n, int64(301), "MINID ~ now-1h trimmed the old entries")
}

// TestAppendRetentionRedisClock: retention trims by Redis's clock (the ids
// it gives), not the game server's, which is not read at all (it may be
// hours off, or step while running): entries 90 minutes old by Redis's
// clock go with a retention of 1 hour, and the fresh ones stay.
func TestAppendRetentionRedisClock(t *testing.T) {
	srv := redistest.Start(t)
	h, d := durableHarness(t, srv, "")
	h.waitStatus("connected")
	c := client(t, srv)
	ctx := context.Background()
	redisNow, err := c.Time(ctx).Result()
	require.NoError(t, err)
	old := redisNow.Add(-90 * time.Minute).UnixMilli()
	for i := range 300 {
		require.NoError(t, c.XAdd(ctx, &redis.XAddArgs{Stream: "s", ID: fmt.Sprintf("%d-%d", old, i+1), Values: []any{"data", "old"}}).Err())
	}
	d.SetTrim(0, time.Hour)
	const n = 1000
	for i := range n {
		_, err := h.r.Append("s", "new")
		require.NoError(t, err)
		if i == 0 { // the first one tells Redis's clock
			waitUntil(t, "the first acknowledged", 10*time.Second, func() bool { return h.bus.Stats.Appended.Load() == 1 })
		}
	}
	waitUntil(t, "acknowledged", 10*time.Second, func() bool { return h.bus.Stats.Appended.Load() == n })
	fresh, err := c.XRange(ctx, "s", strconv.FormatInt(old+1, 10), "+").Result()
	require.NoError(t, err)
	require.Len(t, fresh, n, "fresh entries trimmed")
	left, err := c.XLen(ctx, "s").Result()
	require.NoError(t, err)
	require.Less(t, left, int64(n+300), "the entries 90 minutes old were not trimmed")
}

// TestAppendRetentionStreamAhead: a stream whose last id was set ahead of
// Redis's clock (XADD with an explicit id) answers XADD * with ids past it;
// those must not be taken for Redis's clock, or the next append elsewhere
// trims that stream's fresh entries (MINID ~ far ahead). The appends go
// to the streams in a random order (seed logged), one batch each.
func TestAppendRetentionStreamAhead(t *testing.T) {
	seed := time.Now().UnixNano()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(uint64(seed), 0))
	srv := redistest.Start(t)
	h, d := durableHarness(t, srv, "")
	h.waitStatus("connected")
	c := client(t, srv)
	ctx := context.Background()
	redisNow, err := c.Time(ctx).Result()
	require.NoError(t, err)
	ahead := redisNow.Add(time.Duration(1+rng.IntN(1000)) * time.Hour).UnixMilli()
	require.NoError(t, c.XAdd(ctx, &redis.XAddArgs{Stream: "ahead", ID: fmt.Sprintf("%d-%d", ahead, rng.IntN(5)), Values: []any{"data", "set"}}).Err())
	d.SetTrim(0, time.Hour)
	streams := []string{"ahead", "s1", "s2", "s3"}
	sent := map[string]int{}
	const n = 150
	for i := range n {
		s := streams[rng.IntN(len(streams))]
		if i == 0 {
			s = "s1" // Redis's clock known first
		}
		_, err := h.r.Append(s, "new")
		require.NoError(t, err)
		sent[s]++
		waitUntil(t, "acknowledged", 10*time.Second, func() bool { return h.bus.Stats.Appended.Load() == uint64(i+1) })
	}
	for _, s := range streams[1:] {
		left, err := c.XLen(ctx, s).Result()
		require.NoError(t, err)
		require.Equal(t, int64(sent[s]), left, "fresh entries of %s trimmed (seed %d)", s, seed)
	}
}

// TestDeadLetterRetentionWithoutAppends: a server that reads a stream and
// dead-letters its entries but appends nothing still trims the dead
// letters by retention (by Redis's clock): entries 90 minutes old go with
// a retention of 1 hour.
func TestDeadLetterRetentionWithoutAppends(t *testing.T) {
	srv := redistest.Start(t)
	c := client(t, srv)
	ctx := context.Background()
	redisNow, err := c.Time(ctx).Result()
	require.NoError(t, err)
	old := redisNow.Add(-90 * time.Minute).UnixMilli()
	for i := range 300 {
		require.NoError(t, c.XAdd(ctx, &redis.XAddArgs{Stream: "cmds:dead", ID: fmt.Sprintf("%d-%d", old, i+1), Values: []any{"data", "old"}}).Err())
	}
	h, d := durableHarness(t, srv, "", "read_timeout = \"300ms\"", "[[routes]]\nstream = \"cmds\"\nhandler = \"OnCmd\"\nstart = \"0\"")
	d.SetTrim(0, time.Hour)
	h.waitStatus("connected")
	const n = 200
	ids := make([]string, n)
	for i := range n {
		ids[i], err = c.XAdd(ctx, &redis.XAddArgs{Stream: "cmds", Values: []any{"data", "bad"}}).Result()
		require.NoError(t, err)
	}
	var group string
	waitUntil(t, "the entries read", 10*time.Second, func() bool {
		gs, err := c.XInfoGroups(ctx, "cmds").Result()
		if err != nil || len(gs) == 0 {
			return false
		}
		group = gs[0].Name
		return gs[0].Pending == n
	})
	for _, id := range ids {
		h.bus.Dead("cmds", group, id, "bad")
	}
	waitUntil(t, "every entry dead-lettered", 20*time.Second, func() bool { return h.bus.StreamStats()["cmds"].Dead == n })
	left, err := c.XLen(ctx, "cmds:dead").Result()
	require.NoError(t, err)
	require.Less(t, left, int64(300+n), "the dead letters 90 minutes old were not trimmed")
	fresh, err := c.XRange(ctx, "cmds:dead", strconv.FormatInt(old+1, 10), "+").Result()
	require.NoError(t, err)
	require.Len(t, fresh, n, "fresh dead letters trimmed")
}

// TestSpoolFlushRetentionAtStart: the entries a new process flushes from
// the spool the last one left are trimmed by retention as appends are,
// though nothing was appended yet to tell Redis's clock.
func TestSpoolFlushRetentionAtStart(t *testing.T) {
	srv := redistest.Start(t)
	c := client(t, srv)
	ctx := context.Background()
	redisNow, err := c.Time(ctx).Result()
	require.NoError(t, err)
	old := redisNow.Add(-90 * time.Minute).UnixMilli()
	for i := range 300 {
		require.NoError(t, c.XAdd(ctx, &redis.XAddArgs{Stream: "s", ID: fmt.Sprintf("%d-%d", old, i+1), Values: []any{"data", "old"}}).Err())
	}
	path := filepath.Join(t.TempDir(), "spool.db")
	sp, err := spool.Open(path, spool.Options{ServerID: "srv"})
	require.NoError(t, err)
	cfg, err := config.Parse("t.toml", []byte(fmt.Sprintf("[redis]\nurl = %q\nreconnect_min = \"50ms\"\n", srv.URL())))
	require.NoError(t, err)
	bus, err := New(cfg.Redis) // never started: the appends go to the spool
	require.NoError(t, err)
	bus.SetDurable(NewDurable("srv", sp, nil))
	const n = 200
	for i := range n {
		_, err := bus.Append("s", strconv.Itoa(i))
		require.NoError(t, err)
	}
	require.Equal(t, n, bus.Persist())
	require.NoError(t, bus.Close())
	require.NoError(t, sp.Close())

	sp, err = spool.Open(path, spool.Options{ServerID: "srv"})
	require.NoError(t, err)
	t.Cleanup(func() { _ = sp.Close() })
	d := NewDurable("srv", sp, nil)
	d.SetTrim(0, time.Hour)
	r, err := router.New(cfg)
	require.NoError(t, err)
	bus, err = New(cfg.Redis)
	require.NoError(t, err)
	bus.SetDurable(d)
	r.Attach(bus)
	t.Cleanup(func() { _ = r.Close() })
	waitUntil(t, "the spool flushed", 10*time.Second, func() bool { return bus.Stats.Flushed.Load() == n })
	left, err := c.XLen(ctx, "s").Result()
	require.NoError(t, err)
	require.Less(t, left, int64(300+n), "the entries 90 minutes old were not trimmed")
	fresh, err := c.XRange(ctx, "s", strconv.FormatInt(old+1, 10), "+").Result()
	require.NoError(t, err)
	require.Len(t, fresh, n, "fresh entries trimmed")
}

// TestAppendRetentionLongerThanTheEpoch: a retention reaching before 1970
// (a "keep everything" figure) trims nothing, and the appends arrive: a
// MINID below 0 is not a stream id and Redis refused every XADD.
func TestAppendRetentionLongerThanTheEpoch(t *testing.T) {
	srv := redistest.Start(t)
	h, d := durableHarness(t, srv, "")
	h.waitStatus("connected")
	d.SetTrim(0, 1_000_000*time.Hour)
	const n = 20
	for i := range n {
		_, err := h.r.Append("s", strconv.Itoa(i))
		require.NoError(t, err)
		if i == 0 { // the first one tells Redis's clock
			waitUntil(t, "the first acknowledged", 10*time.Second, func() bool { return h.bus.Stats.Appended.Load() == 1 })
		}
	}
	waitUntil(t, "acknowledged", 10*time.Second, func() bool { return h.bus.Stats.Appended.Load() == n })
	waitLen(t, client(t, srv), "s", n)
}

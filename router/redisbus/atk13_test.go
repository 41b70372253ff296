package redisbus

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gmod-realtime/realtime/internal/redistest"
	"github.com/gmod-realtime/realtime/router/spool"
)

// TestSpoolFlushOnSlowUplink: a spool left by the last run (an outage)
// holds 512 entries of 16 KiB (8 MiB). Over a 1 MiB/s uplink with 500 ms
// timeouts, a flush pipeline of spool.DefaultFlushBatch entries (4 MiB)
// can never be written in time, whatever the number of tries: each try
// XADDs again the entries whose bytes Redis got whole (copies), and the
// spool is never emptied, so every later Append waits behind it for ever.
// The outbox's batches shrink on a slow uplink (TestBatchShrinksOnSlowUplink);
// the spool's flush should get through as they do.
func TestSpoolFlushOnSlowUplink(t *testing.T) {
	srv := redistest.Start(t)
	c := client(t, srv)
	path := filepath.Join(t.TempDir(), "spool.db")
	body := strings.Repeat("x", 16<<10)
	const n = 512
	{
		sp, err := spool.Open(path, spool.Options{ServerID: "srv"})
		require.NoError(t, err)
		for i := range n {
			_, err := sp.Add("s", []byte(fmt.Sprintf("%d|%s", i, body)))
			require.NoError(t, err)
		}
		require.NoError(t, sp.Close())
	}
	proxy := slowUplinkProxy(t, srv.Addr(), 1<<20)
	h, d := durableHarnessAt(t, proxy, path, `read_timeout = "500ms"`, `write_timeout = "500ms"`)
	deadline := time.Now().Add(40 * time.Second)
	for time.Now().Before(deadline) && d.Spool().Stats().Depth > 0 {
		time.Sleep(100 * time.Millisecond)
	}
	l, _ := c.XLen(context.Background(), "s").Result()
	st := d.Spool().Stats()
	t.Logf("after 40s: spool depth %d, stream length %d (%d entries), flush retries %d", st.Depth, l, n, h.bus.Stats.PublishRetry.Load())
	require.Zero(t, st.Depth, "the spool flushed within 40 s (8 MiB at 1 MiB/s takes 8 s)")
	_, _, dups := entries(t, c, "s")
	t.Logf("%d copies", dups)
}

// TestPersistInFlightLeavesNoCopy: gmod13_close (every map change) calls
// Persist, which copies the durable entries of a batch in flight to the
// spool in case the process dies. When the process does not die and Redis
// answers the batch, those copies are sent all the same by the next flush:
// every entry of the batch reaches the stream twice, with no crash and no
// connection lost, which the docs give as the only sources of copies (a
// consumer other than the module's stream routes sees each twice).
func TestPersistInFlightLeavesNoCopy(t *testing.T) {
	srv := redistest.Start(t)
	c := client(t, srv)
	path := filepath.Join(t.TempDir(), "spool.db")
	h, d := durableHarness(t, srv, path, `read_timeout = "3s"`, `write_timeout = "3s"`)
	h.waitStatus("connected")
	ctx := context.Background()
	// Redis holds every write: the batch stays in flight.
	require.NoError(t, c.Do(ctx, "client", "pause", "4000", "write").Err())
	const n = 10
	for i := range n {
		_, err := h.r.Append("s", fmt.Sprint(i))
		require.NoError(t, err)
	}
	waitUntil(t, "a batch in flight", 5*time.Second, func() bool {
		h.bus.outbox.mu.Lock()
		defer h.bus.outbox.mu.Unlock()
		return h.bus.outbox.inflight > 0
	})
	h.bus.Persist() // gmod13_close: a map change, the process lives on
	require.NoError(t, d.Spool().Sync())
	require.NoError(t, c.Do(ctx, "client", "unpause").Err())
	waitUntil(t, "batch answered, spool empty", 10*time.Second, func() bool {
		return h.bus.OutboxLen() == 0 && d.Spool().Stats().Depth == 0 && !d.Spooling()
	})
	waitLen(t, c, "s", n) // a flush, had it sent copies, did before the spool was empty
	l, err := c.XLen(ctx, "s").Result()
	require.NoError(t, err)
	_, data, dups := entries(t, c, "s")
	require.Len(t, data, n)
	require.Zero(t, dups, "copies in the stream (length %d for %d appends)", l, n)
}

// TestDisconnectDuringFlushLeavesNoCopy: realtime.Disconnect while a
// spool flush waits for Redis's answer (Persist, the bus closed, the
// spool closed, as module/api does it). Redis then takes the flush's
// XADDs, but the spool, closed meanwhile, cannot delete them: the next
// Connect sends them again, copies with no crash and no connection lost.
// Not fixed (Close may not wait for the network, and a spool kept open
// past it would hold the file's lock against the next Connect's Open):
// skipped unless REDISBUS_ATK13_UNFIXED=1.
func TestDisconnectDuringFlushLeavesNoCopy(t *testing.T) {
	if os.Getenv("REDISBUS_ATK13_UNFIXED") == "" {
		t.Skip("known, not fixed: REDISBUS_ATK13_UNFIXED=1 runs it (fails: 20 entries left in the spool)")
	}
	srv := redistest.Start(t)
	c := client(t, srv)
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "spool.db")
	const n = 20
	{
		sp, err := spool.Open(path, spool.Options{ServerID: "srv"})
		require.NoError(t, err)
		for i := range n {
			_, err := sp.Add("s", []byte(fmt.Sprint(i)))
			require.NoError(t, err)
		}
		require.NoError(t, sp.Close())
	}
	// Redis holds every write: the flush waits for its answer.
	require.NoError(t, c.Do(ctx, "client", "pause", "1500", "write").Err())
	h, d := durableHarnessAt(t, srv.Addr(), path, `read_timeout = "3s"`, `write_timeout = "3s"`)
	h.waitStatus("connected")
	time.Sleep(300 * time.Millisecond) // the flush is sent
	h.bus.Persist()
	require.NoError(t, d.Spool().Sync())
	_ = h.r.Close()
	require.NoError(t, d.Spool().Close())
	waitLen(t, c, "s", n) // the pause ends: Redis takes the flush
	sp, err := spool.Open(path, spool.Options{ServerID: "srv"})
	require.NoError(t, err)
	defer sp.Close()
	l, _ := c.XLen(ctx, "s").Result()
	require.Zero(t, sp.Stats().Depth, "entries left in the spool, sent again at the next Connect, though the stream has them (length %d)", l)
}

// TestSameServerIDCollides: two game servers on one machine, server.id
// left to the hostname (the default): both append to one stream at
// once. Their rt_ids are "<host>-<sequence>", each sequence the Unix
// time in microseconds (or one more than the last), so the two hand out
// the same rt_ids, and every stream route drops the second entry of each
// pair as a copy of the first: entries lost without a word. Not fixed
// (server.id must differ between servers; the default makes it the same
// for every server of a machine); skipped unless REDISBUS_ATK13_UNFIXED=1.
func TestSameServerIDCollides(t *testing.T) {
	if os.Getenv("REDISBUS_ATK13_UNFIXED") == "" {
		t.Skip("known, not fixed: REDISBUS_ATK13_UNFIXED=1 runs it")
	}
	srv := redistest.Start(t)
	c := client(t, srv)
	a, _ := durableHarness(t, srv, "")
	b, _ := durableHarness(t, srv, "")
	a.waitStatus("connected")
	b.waitStatus("connected")
	const n = 5000
	done := make(chan struct{})
	for _, h := range []*harness{a, b} {
		go func() {
			defer func() { done <- struct{}{} }()
			for i := range n {
				if _, err := h.r.Append("s", fmt.Sprint(i)); err != nil {
					time.Sleep(time.Millisecond)
				}
			}
		}()
	}
	<-done
	<-done
	waitLen(t, c, "s", 2*n-100)
	time.Sleep(200 * time.Millisecond)
	xs, err := c.XRange(context.Background(), "s", "-", "+").Result()
	require.NoError(t, err)
	seen := map[string]bool{}
	for _, x := range xs {
		seen[x.Values["rt_id"].(string)] = true
	}
	require.Equal(t, len(xs), len(seen), "entries sharing an rt_id (a stream route hands out one of each)")
}

// TestSeedReadsBoundedBytes: the duplicate check's seed reads the
// stream's last 2,000 entries (XREVRANGE ... COUNT 2000) in one reply,
// payloads and all, only to keep their rt_ids: with 64 KiB entries that
// is one 128 MiB reply at every start of a reader (Connect, a reconnecting
// Reload), 2 GiB with 1 MiB entries, past what a 32-bit game server can
// allocate. The seed reads in pages and stops past a byte budget.
func TestSeedReadsBoundedBytes(t *testing.T) {
	srv := redistest.Start(t)
	c := client(t, srv)
	ctx := context.Background()
	body := strings.Repeat("x", 64<<10)
	const n = 2000
	for from := 0; from < n; from += 200 {
		_, err := c.Pipelined(ctx, func(p redis.Pipeliner) error {
			for i := from; i < from+200; i++ {
				p.XAdd(ctx, &redis.XAddArgs{Stream: "big", Values: []any{"data", body, "rt_id", fmt.Sprintf("o-%d", i+1)}})
			}
			return nil
		})
		require.NoError(t, err)
	}
	runtime.GC()
	var m0, m1 runtime.MemStats
	runtime.ReadMemStats(&m0)
	sink := newChanSink(64)
	var reading atomic.Bool // the seed is done before the first XREADGROUP
	addr := editProxy(t, srv.Addr(), func(args []string) []string {
		if strings.EqualFold(args[0], "xreadgroup") {
			reading.Store(true)
		}
		return nil
	})
	r, err := NewStreamReader(streamConfig(addr), StreamOptions{Consumer: "srv1", Block: 200 * time.Millisecond, Logf: t.Logf},
		[]StreamSpec{{Stream: "big", Group: "g", Start: "$"}}, sink)
	require.NoError(t, err)
	t.Cleanup(func() { r.Close(); r.Wait() })
	waitUntil(t, "the seed read", 10*time.Second, reading.Load)
	runtime.ReadMemStats(&m1)
	alloc := (m1.TotalAlloc - m0.TotalAlloc) >> 20
	t.Logf("allocated %d MiB during the reader's start", alloc)
	// the seed still works: a copy of the newest entry is dropped, a new one handed out
	for _, id := range []string{fmt.Sprintf("o-%d", n), "o-new"} {
		require.NoError(t, c.XAdd(ctx, &redis.XAddArgs{Stream: "big", Values: []any{"data", "d", "rt_id", id}}).Err())
	}
	var e Entry
	select {
	case e = <-sink.ch:
	case <-time.After(5 * time.Second):
		t.Fatal("no entry handed out")
	}
	require.Equal(t, "o-new", fieldValue(e.Fields, "rt_id"), "the copy of a seeded entry is dropped")
	require.Less(t, alloc, uint64(64), "MiB allocated to seed the duplicate check")
}

// TestSeedScansTheLastEntriesOnly: the paged seed reads the stream's last
// 2,000 entries whether or not they carry an rt_id, in a few pages: it
// counted only those with one, so a long stream of entries without
// (XADDed by a web panel) was read back up to the byte budget, 16 MiB in
// hundreds of round trips at every start of a reader.
func TestSeedScansTheLastEntriesOnly(t *testing.T) {
	srv := redistest.Start(t)
	c := client(t, srv)
	ctx := t.Context()
	for from := 0; from < 20000; from += 1000 {
		_, err := c.Pipelined(ctx, func(p redis.Pipeliner) error {
			for i := from; i < from+1000; i++ {
				p.XAdd(ctx, &redis.XAddArgs{Stream: "panel", Values: []any{"data", "cmd " + strconv.Itoa(i)}})
			}
			return nil
		})
		require.NoError(t, err)
	}
	var pages atomic.Int32
	var reading atomic.Bool
	addr := editProxy(t, srv.Addr(), func(args []string) []string {
		switch strings.ToLower(args[0]) {
		case "xrevrange":
			pages.Add(1)
		case "xreadgroup":
			reading.Store(true)
		}
		return nil
	})
	startReader(t, addr, "srv1", []StreamSpec{{Stream: "panel", Group: "g", Start: "$"}}, newChanSink(1), StreamOptions{})
	waitUntil(t, "the seed read", 10*time.Second, reading.Load)
	assert.LessOrEqual(t, pages.Load(), int32(20), "XREVRANGE pages to seed the last 2,000 entries")
}

package redisbus

import (
	"context"
	"io"
	"net"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/gmod-realtime/realtime/internal/redistest"
	"github.com/gmod-realtime/realtime/router/spool"
)

// TestSpoolCopyAfterRestartIsDropped: the server dies (kill -9) between
// Redis taking a flushed entry and the spool deleting it; before it died,
// its own stream route handled and acknowledged that entry. Its next start
// flushes the spool again: the copy (same rt_id) must not reach the
// handler a second time. docs/API.md: "both copies have the same rt_id, and
// a consumer drops the second: the module's stream routes do (for each
// stream and server, an rt_id whose sequence is not above the highest seen
// is a copy)".
func TestSpoolCopyAfterRestartIsDropped(t *testing.T) {
	srv := redistest.Start(t)
	c := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	t.Cleanup(func() { _ = c.Close() })
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "spool.db")
	spec := []StreamSpec{{Stream: "bans", Group: "realtime:srv", Start: "0", MaxDeliveries: 5}}

	// First run: the entry is spooled (Redis was down), then flushed;
	// the process dies before the delete commits. What Flush sent is what
	// XADD below sends: the same fields, the same rt_id.
	sp, err := spool.Open(path, spool.Options{ServerID: "srv"})
	require.NoError(t, err)
	id, err := sp.Add("bans", []byte("ban STEAM_0:1:1234"))
	require.NoError(t, err)
	require.NoError(t, sp.Sync())
	require.NoError(t, c.XAdd(ctx, &redis.XAddArgs{Stream: "bans", Values: []any{spool.FieldData, "ban STEAM_0:1:1234", spool.FieldID, id}}).Err())

	sink1 := newChanSink(10)
	r1 := startReader(t, srv.Addr(), "srv", spec, sink1, StreamOptions{})
	e := recv(t, sink1, 10*time.Second)
	require.Equal(t, id, fieldValue(e.Fields, spool.FieldID))
	r1.Ack(e.Stream, e.Group, e.ID)
	waitUntil(t, "the ack", 10*time.Second, func() bool { return pendingCount(c, "bans", "realtime:srv") == 0 })
	r1.Close()
	r1.Wait()
	require.NoError(t, sp.Close()) // kill -9: the spool still holds the entry

	// Next start: the same consumer reads again, the spool is flushed.
	sink2 := newChanSink(10)
	startReader(t, srv.Addr(), "srv", spec, sink2, StreamOptions{})
	sp2, err := spool.Open(path, spool.Options{ServerID: "srv"})
	require.NoError(t, err)
	t.Cleanup(func() { _ = sp2.Close() })
	n, err := sp2.Flush(ctx, c, 0)
	require.NoError(t, err)
	require.Equal(t, 1, n, "the spool held the entry")
	after, err := sp2.Add("bans", []byte("marker"))
	require.NoError(t, err)
	_, err = sp2.Flush(ctx, c, 0)
	require.NoError(t, err)

	for {
		e := recv(t, sink2, 10*time.Second)
		got := fieldValue(e.Fields, spool.FieldID)
		if got == after {
			break
		}
		require.NotEqual(t, id, got, "the copy of an entry handled before the restart was handed out again (stream id %s)", e.ID)
	}
}

// TestAppendKeptThroughOOM: Redis over maxmemory (noeviction) answers
// XADD with "OOM command not allowed", a "not now" reply: the spool keeps
// its entries through it (spool.Refused), and an appended entry must not
// be dropped either. Once memory is freed, every entry arrives, in order.
func TestAppendKeptThroughOOM(t *testing.T) {
	srv := redistest.Start(t)
	path := filepath.Join(t.TempDir(), "spool.db")
	h, _ := durableHarness(t, srv, path)
	h.waitStatus("connected")
	c := client(t, srv)
	ctx := context.Background()
	big := make([]byte, 6<<20)
	require.NoError(t, c.Set(ctx, "ballast", big, 0).Err())
	require.NoError(t, c.ConfigSet(ctx, "maxmemory-policy", "noeviction").Err())
	require.NoError(t, c.ConfigSet(ctx, "maxmemory", "4mb").Err())
	require.ErrorContains(t, c.XAdd(ctx, &redis.XAddArgs{Stream: "probe", Values: []any{"a", "b"}}).Err(), "OOM")

	var want []string
	for i := range 20 {
		id, err := h.r.Append("s", strconv.Itoa(i))
		require.NoError(t, err)
		want = append(want, id)
	}
	// The writer has tried them (a retry or a refusal is counted).
	waitUntil(t, "the writer tried the entries", 10*time.Second, func() bool {
		return h.bus.Stats.PublishRetry.Load() > 0 || h.bus.Stats.Refused.Load() > 0
	})
	require.NoError(t, c.Del(ctx, "ballast").Err())
	require.NoError(t, c.ConfigSet(ctx, "maxmemory", "0").Err())
	// A marker behind them: once it is there, the others had their turn.
	id, err := h.r.Append("s", "marker")
	require.NoError(t, err)
	want = append(want, id)
	waitUntil(t, "the marker", 20*time.Second, func() bool {
		ids, _, _ := entries(t, c, "s")
		return len(ids) > 0 && ids[len(ids)-1] == id
	})
	ids, _, _ := entries(t, c, "s")
	require.Equal(t, want, ids, "entries appended while Redis was out of memory were dropped (refused %d, durable lost %d)", h.bus.Stats.Refused.Load(), h.bus.Stats.DurableLost.Load())
}

// pipeProxy forwards TCP connections to target through pipe, which runs
// on a goroutine per connection and copies both ways between the client
// cl and the server sv as it likes, closing each side it is done writing
// to; the connections are closed at the test's end.
func pipeProxy(t *testing.T, target string, pipe func(cl, sv net.Conn)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	t.Cleanup(func() {
		_ = ln.Close()
		mu.Lock()
		for _, c := range conns {
			_ = c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			cl, err := ln.Accept()
			if err != nil {
				return
			}
			sv, err := net.Dial("tcp", target)
			if err != nil {
				_ = cl.Close()
				continue
			}
			mu.Lock()
			conns = append(conns, cl, sv)
			mu.Unlock()
			wg.Add(1)
			go func() { defer wg.Done(); pipe(cl, sv) }()
		}
	}()
	return ln.Addr().String()
}

// latencyProxy forwards TCP connections to target, holding every chunk
// of the server's replies for delay (a Redis across a WAN).
func latencyProxy(t *testing.T, target string, delay time.Duration) string {
	return pipeProxy(t, target, func(cl, sv net.Conn) {
		type chunk struct {
			at time.Time
			b  []byte
		}
		q := make(chan chunk, 1024)
		var wg sync.WaitGroup
		wg.Add(2)
		go func() { defer wg.Done(); _, _ = io.Copy(sv, cl); _ = sv.Close() }()
		go func() {
			defer wg.Done()
			defer close(q)
			for {
				buf := make([]byte, 64<<10)
				n, err := sv.Read(buf)
				if n > 0 {
					q <- chunk{time.Now().Add(delay), buf[:n]}
				}
				if err != nil {
					return
				}
			}
		}()
		defer wg.Wait()
		defer cl.Close()
		for c := range q {
			time.Sleep(time.Until(c.at))
			if _, err := cl.Write(c.b); err != nil {
				return
			}
		}
	})
}

// TestSpoolFlushedWhilePublishing: once appends went to the spool (the
// outbox was full for a moment), a steady flow of plain publishes (a few
// per round trip to a distant Redis: the outbox is never empty when the
// writer looks) must not keep the spool from being flushed: the spooled
// entries, and every append after them, would wait for a quiet moment
// that a busy server never has, until the spool is full.
func TestSpoolFlushedWhilePublishing(t *testing.T) {
	srv := redistest.Start(t)
	addr := latencyProxy(t, srv.Addr(), 20*time.Millisecond)
	h, d := durableHarnessAt(t, addr, filepath.Join(t.TempDir(), "spool.db"), `read_timeout = "5s"`, "outbox_events = 50")
	h.waitStatus("connected")

	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // a few publishes per round trip, far below what Redis takes
		defer wg.Done()
		tk := time.NewTicker(2 * time.Millisecond)
		defer tk.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tk.C:
				_ = h.r.Publish("chat", "hello")
			}
		}
	}()
	defer func() { close(stop); wg.Wait() }()

	var want []string
	for i := range 200 { // past the outbox: the rest is spooled
		id, err := h.r.Append("s", strconv.Itoa(i))
		require.NoError(t, err)
		want = append(want, id)
	}
	require.True(t, d.Spooling(), "the outbox filled up")
	c := client(t, srv)
	waitUntil(t, "the spooled appends sent while publishes flow", 20*time.Second, func() bool {
		l, _ := c.XLen(context.Background(), "s").Result()
		return l >= int64(len(want))
	})
	ids, _, _ := entries(t, c, "s")
	require.Equal(t, want, ids)
}

// TestAppendWrongTypeDoesNotBlock: the stream key holds a string
// (WRONGTYPE): its entries are refused, counted and reported, from the
// outbox and from the spool alike, and the entries of another stream
// behind them arrive, in order.
func TestAppendWrongTypeDoesNotBlock(t *testing.T) {
	srv := redistest.Start(t)
	h, d := durableHarness(t, srv, filepath.Join(t.TempDir(), "spool.db"))
	h.waitStatus("connected")
	c := client(t, srv)
	ctx := context.Background()
	require.NoError(t, c.Set(ctx, "bad", "a string", 0).Err())
	var want []string
	for i := range 10 {
		_, err := h.r.Append("bad", strconv.Itoa(i))
		require.NoError(t, err)
		id, err := h.r.Append("good", strconv.Itoa(i))
		require.NoError(t, err)
		want = append(want, id)
	}
	waitLen(t, c, "good", 10)
	srv.Pause()
	t.Cleanup(srv.Resume)
	h.waitStatus("disconnected")
	for i := range 10 { // spooled
		_, err := h.r.Append("bad", strconv.Itoa(i))
		require.NoError(t, err)
		id, err := h.r.Append("good", strconv.Itoa(i))
		require.NoError(t, err)
		want = append(want, id)
	}
	require.True(t, d.Spooling())
	srv.Resume()
	waitUntil(t, "the spool flushed", 20*time.Second, func() bool {
		return d.Spool().Stats().Depth == 0 && !d.Spooling()
	})
	ids, _, _ := entries(t, c, "good")
	require.Equal(t, want, ids)
	require.EqualValues(t, 10, h.bus.Stats.Refused.Load())
	require.EqualValues(t, 10, d.Spool().Stats().DroppedRefused)
}

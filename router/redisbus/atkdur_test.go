package redisbus

import (
	"context"
	"path/filepath"
	"strconv"
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

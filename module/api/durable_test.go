package api

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/gmod-realtime/realtime/config"
	"github.com/gmod-realtime/realtime/internal/redistest"
	"github.com/gmod-realtime/realtime/router/spool"
)

// startIn runs a Module on toml in the server directory dir.
func startIn(t *testing.T, dir, toml string) *Module {
	t.Helper()
	file := filepath.Join(dir, "realtime.toml")
	require.NoError(t, os.WriteFile(file, []byte(toml), 0o644))
	m := Start(Options{Config: config.Options{File: file, Dir: dir, Environ: []string{}}, Pending: new(atomic.Int64), Logs: new(atomic.Int64), Root: dir})
	t.Cleanup(m.Stop)
	return m
}

// rtIDs reads stream as a consumer does (copies dropped by rt_id) and
// returns the rt_ids in order.
func rtIDs(t *testing.T, c *redis.Client, stream string) []string {
	t.Helper()
	xs, err := c.XRange(context.Background(), stream, "-", "+").Result()
	require.NoError(t, err)
	var out []string
	var high int64
	for _, x := range xs {
		id := fmt.Sprint(x.Values["rt_id"])
		if _, seq, ok := spool.ParseID(id); ok && seq > high {
			high = seq
			out = append(out, id)
		}
	}
	return out
}

// TestCloseSpoolsDurableEntries: entries appended while Redis hangs wait
// in the outbox (one batch of them in flight); gmod13_close (Close) puts
// every one in the spool file, on disk; the process goes; the next start
// in the same game folder sends them once Redis answers: each once after
// dropping copies, in order.
func TestCloseSpoolsDurableEntries(t *testing.T) {
	srv := redistest.Start(t)
	c := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	defer c.Close()
	dir := t.TempDir()
	toml := fmt.Sprintf("[server]\nid = \"s1\"\n[redis]\nurl = %q\nread_timeout = \"30s\"\nwrite_timeout = \"30s\"\n", srv.URL())
	m := startIn(t, dir, toml)
	require.Eventually(t, func() bool { return m.Status() == "connected" }, 10*time.Second, time.Millisecond)
	srv.Pause()
	t.Cleanup(srv.Resume)
	var want []string
	for i := range 50 {
		id, err := m.Append("s", strconv.Itoa(i))
		require.NoError(t, err)
		want = append(want, id)
	}
	m.Close() // gmod13_close
	st, _, spooling, ok := spoolStats(m.r)
	require.True(t, ok)
	require.True(t, spooling)
	require.Equal(t, int64(50), st.Depth, "every entry in the spool, the batch in flight too")
	m.Stop()
	require.FileExists(t, filepath.Join(dir, config.DefaultSpoolPath))
	// The file is free again: the next process can open it.
	sp, err := spool.Open(filepath.Join(dir, config.DefaultSpoolPath), spool.Options{ServerID: "s1"})
	require.NoError(t, err)
	require.Equal(t, int64(50), sp.Stats().Depth)
	require.NoError(t, sp.Close())

	srv.Resume()
	m2 := startIn(t, dir, toml)
	require.Eventually(t, func() bool {
		st, _, _, _ := spoolStats(m2.r)
		return len(rtIDs(t, c, "s")) == 50 && st.Depth == 0
	}, 20*time.Second, 5*time.Millisecond, func() string {
		st, lost, spooling, _ := spoolStats(m2.r)
		xl, _ := c.XLen(context.Background(), "s").Result()
		var logs []string
		for l, line, ok := m2.TakeLog(); ok; l, line, ok = m2.TakeLog() {
			logs = append(logs, l+": "+line)
		}
		return fmt.Sprintf("status %s, stream %d entries (%d after dedupe), spool %+v lost %d spooling %v, log %q", m2.Status(), xl, len(rtIDs(t, c, "s")), st, lost, spooling, logs)
	}())
	require.Equal(t, want, rtIDs(t, c, "s"))
}

// TestEventsStream: with [events] stream = true a game event is an entry
// of the stream named like its channel, with an rt_id.
func TestEventsStream(t *testing.T) {
	srv := redistest.Start(t)
	c := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	defer c.Close()
	m := startIn(t, t.TempDir(), fmt.Sprintf("[server]\nid = \"s1\"\n[redis]\nurl = %q\n[events]\nstream = true\nprefix = \"g:\"\n", srv.URL()))
	require.Eventually(t, func() bool { return m.Status() == "connected" }, 10*time.Second, time.Millisecond)
	require.NoError(t, m.GameEvent("PlayerDeath", luaTape(map[any]any{"victim": "bob"})))
	require.Eventually(t, func() bool { return len(rtIDs(t, c, "g:player:death")) == 1 }, 10*time.Second, 5*time.Millisecond)
	xs, err := c.XRange(context.Background(), "g:player:death", "-", "+").Result()
	require.NoError(t, err)
	require.Contains(t, xs[0].Values["data"], `"victim":"bob"`)
	require.Equal(t, uint64(1), m.r.Stats.Appended.Load())
	require.Zero(t, m.r.Stats.Published.Load(), "not published")
}

package api

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/gmod-realtime/realtime/internal/redistest"
)

func openFDs(t *testing.T) int {
	t.Helper()
	es, err := os.ReadDir("/proc/self/fd")
	require.NoError(t, err)
	return len(es)
}

// TestAppendAcrossConnectCycles: appends around many Disconnect/Connect
// and Connect-while-connected cycles, some while Redis hangs, all arrive,
// each once after dropping copies, in order; the spool ends empty; the
// file descriptors and goroutines come back to where they were.
func TestAppendAcrossConnectCycles(t *testing.T) {
	srv := redistest.Start(t)
	c := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	defer c.Close()
	dir := t.TempDir()
	toml := fmt.Sprintf("[server]\nid = \"s1\"\n[redis]\nurl = %q\nread_timeout = \"300ms\"\nwrite_timeout = \"300ms\"\nreconnect_min = \"20ms\"\nreconnect_max = \"100ms\"\n", srv.URL())
	m := startIn(t, dir, toml)
	connected := func() {
		t.Helper()
		require.Eventually(t, func() bool { return m.Status() == "connected" }, 10*time.Second, time.Millisecond)
	}
	connected()
	var want []string
	add := func(n int) {
		for range n {
			id, err := m.Append("s", strconv.Itoa(len(want)))
			require.NoError(t, err)
			want = append(want, id)
		}
	}
	sent := func() {
		t.Helper()
		require.Eventually(t, func() bool {
			st, _, _, _ := spoolStats(m.r)
			return len(rtIDs(t, c, "s")) == len(want) && st.Depth == 0
		}, 20*time.Second, 5*time.Millisecond, "stream %d of %d", len(rtIDs(t, c, "s")), len(want))
	}
	add(10)
	sent()
	fds, gs := openFDs(t), runtime.NumGoroutine()
	for round := range 12 {
		add(20)
		paused := round%3 == 1
		if paused {
			srv.Pause()
		}
		add(20)
		if round%2 == 0 {
			m.Disconnect()
			_, err := m.Append("s", "x")
			require.Error(t, err, "appending while disconnected")
		}
		require.NoError(t, m.Connect(""))
		add(20)
		if paused {
			srv.Resume()
		}
		connected()
		add(5)
		sent()
	}
	require.Equal(t, want, rtIDs(t, c, "s"))
	st, lost, _, _ := spoolStats(m.r)
	require.Zero(t, lost)
	require.Zero(t, st.Dropped())
	require.Eventually(t, func() bool {
		return openFDs(t) <= fds+2 && runtime.NumGoroutine() <= gs+5
	}, 10*time.Second, 10*time.Millisecond, "fds %d -> %d, goroutines %d -> %d", fds, openFDs(t), gs, runtime.NumGoroutine())
}

// TestAppendStormWhileDown: 100,000 appends while Redis is down, into a
// spool of 1MiB: each either returns an rt_id or fails with "full"; every
// refusal is counted; once Redis is back, exactly the accepted ones
// arrive, in order, and the spool ends empty.
func TestAppendStormWhileDown(t *testing.T) {
	srv := redistest.Start(t)
	c := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	defer c.Close()
	dir := t.TempDir()
	toml := fmt.Sprintf("[server]\nid = \"s1\"\n[redis]\nurl = %q\nread_timeout = \"300ms\"\nreconnect_min = \"20ms\"\nreconnect_max = \"100ms\"\n[spool]\nmax_bytes = \"1MiB\"\n", srv.URL())
	m := startIn(t, dir, toml)
	require.Eventually(t, func() bool { return m.Status() == "connected" }, 10*time.Second, time.Millisecond)
	srv.Kill()
	require.Eventually(t, func() bool { return m.Status() == "disconnected" }, 10*time.Second, time.Millisecond)
	var want []string
	failed := 0
	for i := range 100000 {
		id, err := m.Append("s", strconv.Itoa(i))
		if err != nil {
			require.ErrorContains(t, err, "full")
			failed++
			continue
		}
		want = append(want, id)
	}
	require.NotZero(t, failed, "1MiB holds fewer than 100,000 entries")
	st, lost, _, ok := spoolStats(m.r)
	require.True(t, ok)
	require.EqualValues(t, failed, st.DroppedFull)
	require.Zero(t, lost)
	srv.Restart()
	require.Eventually(t, func() bool {
		st, _, _, _ := spoolStats(m.r)
		return st.Depth == 0 && len(rtIDs(t, c, "s")) == len(want)
	}, 30*time.Second, 10*time.Millisecond)
	require.Equal(t, want, rtIDs(t, c, "s"))
}

// TestAppendIDFollowsServerID: docs/API.md and OPERATIONS.md say an
// entry's rt_id is "<server.id>-<sequence>"; after a Reload that changes
// server.id, Append's rt_id must carry the new one.
func TestAppendIDFollowsServerID(t *testing.T) {
	srv := redistest.Start(t)
	dir := t.TempDir()
	toml := "[server]\nid = \"%s\"\n[redis]\nurl = %q\n"
	m := startIn(t, dir, fmt.Sprintf(toml, "s1", srv.URL()))
	require.Eventually(t, func() bool { return m.Status() == "connected" }, 10*time.Second, time.Millisecond)
	id, err := m.Append("s", "x")
	require.NoError(t, err)
	require.True(t, strings.HasPrefix(id, "s1-"), id)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "realtime.toml"), []byte(fmt.Sprintf(toml, "s2", srv.URL())), 0o644))
	_, err = m.Reload()
	require.NoError(t, err)
	require.Equal(t, "s2", m.Config().Server.ID)
	id, err = m.Append("s", "x")
	require.NoError(t, err)
	require.True(t, strings.HasPrefix(id, "s2-"), "after server.id became s2, Append returned %s", id)
}

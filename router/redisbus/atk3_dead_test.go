package redisbus

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gmod-realtime/realtime/internal/redistest"
)

// TestStreamDeadLetterDuringMisconf: while Redis cannot save its snapshot
// (a full disk) it refuses every write MISCONF, the dead-letter
// transaction's XADD and XACK as they are queued (EXECABORT: nothing
// ran). writeDead took that for a refusal of each copy (as for an ACL
// without the dead-letter stream): an "error" event and a log line per
// entry, every second while it lasted, instead of a try again after the
// worker's backoff.
func TestStreamDeadLetterDuringMisconf(t *testing.T) {
	dir := t.TempDir()
	srv := redistest.Start(t, "--dir", dir, "--save", "3600 1", "--dbfilename", "dump.rdb")
	c := client(t, srv)
	ctx := t.Context()
	sink := newChanSink(16)
	var mu sync.Mutex
	var lines []string
	o := StreamOptions{Consumer: "srv1", Block: 200 * time.Millisecond, RetryDelay: 50 * time.Millisecond}
	o.Logf = func(f string, a ...any) {
		line := fmt.Sprintf(f, a...)
		t.Log(line)
		mu.Lock()
		lines = append(lines, line)
		mu.Unlock()
	}
	r, err := NewStreamReader(streamConfig(srv.Addr()), o, []StreamSpec{{Stream: "s", Group: "g", Start: "0"}}, sink)
	require.NoError(t, err)
	t.Cleanup(func() { r.Close(); r.Wait() })
	const n = 3
	for i := range n {
		xadd(t, c, "s", "n", strconv.Itoa(i))
	}
	var got []Entry
	for range n {
		got = append(got, recv(t, sink, 10*time.Second))
	}
	snapshot := filepath.Join(dir, "dump.rdb")
	require.NoError(t, os.Mkdir(snapshot, 0o755)) // the save fails
	saved := func(ok bool) func() bool {
		return func() bool {
			_ = c.BgSave(ctx).Err()
			err := c.Ping(ctx).Err()
			return ok == (err == nil) && (ok || strings.HasPrefix(err.Error(), "MISCONF"))
		}
	}
	waitUntil(t, "Redis to refuse writes (MISCONF)", 10*time.Second, saved(false))
	for _, e := range got {
		r.Dead(e.Stream, e.Group, e.ID, "malformed")
	}
	waitUntil(t, "the dead letters to meet MISCONF", 10*time.Second, func() bool {
		mu.Lock()
		defer mu.Unlock()
		for _, l := range lines {
			if strings.Contains(l, "dead-lettering") && strings.Contains(l, "MISCONF") {
				return true
			}
		}
		return false
	})
	require.NoError(t, os.Remove(snapshot))
	waitUntil(t, "Redis to save again", 10*time.Second, saved(true))
	waitUntil(t, "the entries dead-lettered and counted", 10*time.Second, func() bool {
		return len(deadEntries(t, c, "s")) == n && pendingCount(c, "s", "g") == 0 && r.Stats()["s"].Dead == n
	})
	assert.False(t, sink.hasEvent("error s dead-lettering"), "MISCONF reported as a refused copy: %v", sink.events)
}

// TestStreamNoDeadCountWhenNothingRan: a dead-letter transaction that
// Redis answered BUSY (discarded whole, EXECABORT: nothing ran) marked its
// entries as written by a transaction whose reply was lost. When the next
// try found them no longer pending (their group destroyed and created
// again meanwhile), they were counted and reported as dead-lettered
// (Dead, a "dead" event each) although no dead letter was ever written.
func TestStreamNoDeadCountWhenNothingRan(t *testing.T) {
	srv, c := busyServer(t)
	ctx := t.Context()
	multi, busy, regrouped := newGate(), newGate(), newGate()
	var types atomic.Int32
	addr := editProxy(t, srv.Addr(), func(args []string) []string {
		switch strings.ToLower(args[0]) {
		case "multi":
			multi.open()
			busy.wait() // sent once Redis answers BUSY
		case "type":
			if types.Add(1) == 2 { // the next try's look-up
				regrouped.wait()
			}
		}
		return nil
	})
	sink := newChanSink(16)
	var worker atomic.Bool
	o := StreamOptions{Consumer: "srv1", Block: 200 * time.Millisecond, RetryDelay: 50 * time.Millisecond}
	o.Logf = func(f string, a ...any) {
		line := fmt.Sprintf(f, a...)
		t.Log(line)
		if strings.Contains(line, "stream worker") && strings.Contains(line, "BUSY") {
			worker.Store(true)
		}
	}
	r, err := NewStreamReader(streamConfig(addr), o, []StreamSpec{{Stream: "s", Group: "g", Start: "0"}}, sink)
	require.NoError(t, err)
	t.Cleanup(func() { r.Close(); r.Wait() })
	t.Cleanup(regrouped.open)
	const n = 3
	for i := range n {
		xadd(t, c, "s", "n", strconv.Itoa(i))
	}
	for range n {
		e := recv(t, sink, 10*time.Second)
		r.Dead(e.Stream, e.Group, e.ID, "malformed")
	}
	require.True(t, multi.wait(), "no dead-letter transaction")
	stop := runBusyScript(t, srv)
	busy.open()
	waitUntil(t, "the transaction answered BUSY", 10*time.Second, worker.Load)
	stop()
	require.NoError(t, c.XGroupDestroy(ctx, "s", "g").Err())
	require.NoError(t, c.XGroupCreate(ctx, "s", "g", "$").Err())
	regrouped.open()
	waitUntil(t, "the entries out of the in-flight set", 10*time.Second, func() bool { return r.Stats()["s"].InFlight == 0 })
	assert.Empty(t, deadEntries(t, c, "s"))
	assert.Zero(t, r.Stats()["s"].Dead, "counted as dead-lettered, none written")
	assert.False(t, sink.hasEvent("dead s"), "reported as dead-lettered, none written: %v", sink.events)
}

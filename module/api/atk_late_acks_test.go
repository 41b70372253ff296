package api

import (
	"context"
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gmod-realtime/realtime/internal/redistest"
)

// Attack: a handler that returned after realtime.Disconnect (a handler
// calling Disconnect, the rest of its batch handled after it) has its
// entry acknowledged late (StreamReader.lateAcks), "so that their entries
// are not delivered again". 100 cycles of: entries taken for Lua,
// Disconnect, their handlers return, Connect. Every handler returns, so
// no entry may end in cmds:dead (max_deliveries 5), and repeats are only
// the few read but not yet queued at a Disconnect. Before: the router
// sent the acks to the current backend, none after Disconnect, so they
// were dropped: 1484 repeats of 501 entries, 480 dead-lettered.
func TestAttackAcksAfterDisconnect(t *testing.T) {
	srv := redistest.Start(t)
	rc := redis.NewClient(&redis.Options{Addr: srv.Addr(), Protocol: 2})
	t.Cleanup(func() { _ = rc.Close() })
	ctx := context.Background()
	m, _ := start(t, "[server]\nid = \"s1\"\n[redis]\nurl = \""+srv.URL()+"\"\nreconnect_min = \"50ms\"\nreconnect_max = \"200ms\"\n")
	require.Eventually(t, func() bool { return m.Status() == "connected" }, 10*time.Second, time.Millisecond)
	o := StreamOptions{Start: "0"}
	_, name, err := m.Stream("cmds", "x", o)
	require.NoError(t, err)
	has := func(route string) bool { return route == name }
	handled := map[string]int{}
	handle := func(d Dispatch) bool { handled[d.Event.Payload]++; return true }
	clients := func() int {
		s, _ := rc.ClientList(ctx).Result()
		return strings.Count(s, "\n")
	}
	require.NoError(t, rc.XAdd(ctx, &redis.XAddArgs{Stream: "cmds", Values: []any{"data", "warm"}}).Err())
	require.Eventually(t, func() bool { pumpLocal(m, has, handle); return len(handled) == 1 }, 10*time.Second, time.Millisecond)
	gBefore, cBefore := runtime.NumGoroutine(), clients()
	n := 1
	for i := range 100 {
		for range 5 {
			require.NoError(t, rc.XAdd(ctx, &redis.XAddArgs{Stream: "cmds", Values: []any{"data", fmt.Sprint("e", n)}}).Err())
			n++
		}
		time.Sleep(time.Millisecond)
		// take now, finish after Disconnect: late acks
		m.BeginFrame()
		var ds []Dispatch
		for d, ok := m.Take(); ok; d, ok = m.Take() {
			ds = append(ds, d)
		}
		m.Disconnect()
		for _, d := range ds {
			if d.Event.Entry != nil {
				handle(d)
			}
			m.Finish(&d, false, time.Now().UnixNano(), 0, "")
		}
		require.NoError(t, m.Connect(""), "cycle %d", i)
	}
	deadline := time.Now().Add(30 * time.Second)
	for (len(handled) < n || pendingOf(t, rc, "realtime:s1") != 0) && time.Now().Before(deadline) {
		if pumpLocal(m, has, handle) == 0 {
			time.Sleep(5 * time.Millisecond)
		}
	}
	dup := 0
	for _, c := range handled {
		dup += c - 1
	}
	dead, _ := rc.XLen(ctx, "cmds:dead").Result()
	t.Logf("handled %d of %d, %d repeats, %d dead, pending %d", len(handled), n, dup, dead, pendingOf(t, rc, "realtime:s1"))
	require.Len(t, handled, n)
	assert.Zero(t, dead, "entries whose handler returned were dead-lettered")
	assert.Less(t, dup, n/2, "entries whose handler returned were delivered again") // 5-78 seen: read but not queued at a Disconnect, or re-read before the late ack
	assert.EventuallyWithT(t, func(c *assert.CollectT) {
		assert.LessOrEqual(c, runtime.NumGoroutine(), gBefore+2, "goroutines (before %d)", gBefore)
		assert.LessOrEqual(c, clients(), cBefore+2, "clients (before %d)", cBefore)
	}, 20*time.Second, 20*time.Millisecond)
	if t.Failed() {
		cl, _ := rc.ClientList(ctx).Result()
		t.Logf("clients:\n%s", cl)
	}
}

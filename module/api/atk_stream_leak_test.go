package api

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gmod-realtime/realtime/internal/redistest"
)

// Attack: realtime.Stream / Off storms, map changes and Disconnect/Connect
// with entries coming all along (max_deliveries = 1: any delivery counted
// twice sends an entry to cmds:dead). At the end every entry was handled
// exactly once, none is pending or dead, and the process has no more
// goroutines nor Redis connections than after the first registration: one
// left behind per cycle would grow without bound over a server's life.
func TestAttackStreamCyclesLeakNothing(t *testing.T) { streamCycles(t, 0, 1) }

// Attack: as TestAttackStreamCyclesLeakNothing, with Disconnect/Connect
// (Off first, then the connection replaced with entries queued). The
// docs: entries waiting in the queue when the server loses Redis "stay
// pending in Redis and are delivered again when it comes back". With
// max_deliveries = 1 they are dead-lettered instead: the new reader's
// pending re-read sees Redis's delivery count (1, counted by the read no
// handler saw) and copies them to cmds:dead unhandled.
func TestAttackStreamDisconnectMaxDeliveriesOne(t *testing.T) { streamCycles(t, 2) }

func streamCycles(t *testing.T, ops ...int) {
	seed := time.Now().UnixNano()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(uint64(seed), 7))
	srv := redistest.Start(t)
	rc := redis.NewClient(&redis.Options{Addr: srv.Addr(), Protocol: 2})
	t.Cleanup(func() { _ = rc.Close() })
	ctx := context.Background()
	m, _ := start(t, "[server]\nid = \"s1\"\n[redis]\nurl = \""+srv.URL()+"\"\nreconnect_min = \"50ms\"\nreconnect_max = \"200ms\"\n")
	require.Eventually(t, func() bool { return m.Status() == "connected" }, 10*time.Second, time.Millisecond)
	o := StreamOptions{Start: "0", MaxDeliveries: 1, HasMaxDeliveries: true}
	_, name, err := m.Stream("cmds", "x", o)
	require.NoError(t, err)
	registered := true
	has := func(route string) bool { return registered && route == name }
	handled := map[string]int{}
	handle := func(d Dispatch) bool { handled[d.Event.Payload]++; return true }
	clients := func() int {
		s, err := rc.ClientList(ctx).Result()
		require.NoError(t, err)
		return strings.Count(s, "\n")
	}
	// settle: the reader running, one entry through
	require.NoError(t, rc.XAdd(ctx, &redis.XAddArgs{Stream: "cmds", Values: []any{"data", "warm"}}).Err())
	n := 1
	require.Eventually(t, func() bool { pumpLocal(m, has, handle); return len(handled) == 1 }, 10*time.Second, time.Millisecond)
	gBefore, cBefore := runtime.NumGoroutine(), clients()

	cycles := 60
	if c := os.Getenv("ATK_CYCLES"); c != "" {
		fmt.Sscan(c, &cycles)
	}
	for i := range cycles {
		for range rng.IntN(5) {
			require.NoError(t, rc.XAdd(ctx, &redis.XAddArgs{Stream: "cmds", Values: []any{"data", fmt.Sprint("e", n)}}).Err())
			n++
		}
		if rng.IntN(2) == 0 {
			pumpLocal(m, has, handle)
		}
		switch ops[rng.IntN(len(ops))] {
		case 0:
			require.NotEmpty(t, m.Off("x"), "cycle %d", i)
		case 1:
			m.Close()
			m.Open() // a map change; the new state makes it again below
		case 2:
			m.Off("x")
			m.Disconnect()
			pumpLocal(m, func(string) bool { return false }, handle)
			require.NoError(t, m.Connect(""))
		}
		registered = false
		pumpLocal(m, has, handle)
		_, _, err = m.Stream("cmds", "x", o)
		require.NoError(t, err, "cycle %d", i)
		registered = true
	}
	deadline := time.Now().Add(30 * time.Second)
	for (len(handled) < n || pendingOf(t, rc, "realtime:s1") != 0) && time.Now().Before(deadline) {
		if pumpLocal(m, has, handle) == 0 {
			time.Sleep(5 * time.Millisecond)
		}
	}
	dead, _ := rc.XLen(ctx, "cmds:dead").Result()
	if dl, _ := rc.XRange(ctx, "cmds:dead", "-", "+").Result(); len(dl) > 0 {
		t.Logf("dead: %v", dl)
	}
	require.Len(t, handled, n, "seed %d: entries never handled (%d in cmds:dead, %d pending)", seed, dead, pendingOf(t, rc, "realtime:s1"))
	for k, c := range handled {
		assert.Equal(t, 1, c, "seed %d: entry %s handled %d times", seed, k, c)
	}
	assert.Zero(t, dead, "seed %d: entries in cmds:dead", seed)
	assert.EventuallyWithT(t, func(c *assert.CollectT) {
		assert.LessOrEqual(c, runtime.NumGoroutine(), gBefore+2, "seed %d: goroutines after %d cycles (before %d)", seed, cycles, gBefore)
		// +3: the bus's and the stream worker's pools may each open a
		// second connection after "before" was taken (3 then, 6 after 10
		// and after 200 cycles); one left per cycle would be +60
		assert.LessOrEqual(c, clients(), cBefore+3, "seed %d: Redis connections after %d cycles (before %d)", seed, cycles, cBefore)
	}, 20*time.Second, 20*time.Millisecond)
	if t.Failed() {
		cl, _ := rc.ClientList(ctx).Result()
		t.Logf("clients:\n%s", cl)
	}
}

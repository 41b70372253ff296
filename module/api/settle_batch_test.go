package api

import (
	"context"
	"fmt"
	"os"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gmod-realtime/realtime/internal/redistest"
)

// Attack on batched settlement: the entries of three stream routes (two
// config routes on two streams, and a realtime.Stream route in a group of
// its own on the second stream) are taken for Lua together, then settled
// in batches that mix handled, failed and no-handler outcomes of every
// route, one batch before a Reload that replaces the connection, one
// after it and after the realtime.Stream route was removed and the
// module disconnected. What the one-by-one path does must hold: the
// removed route's failed and unhandled entries stay pending (released,
// no delivery counted), its handled one is acknowledged late (lateAcks);
// the config routes' entries all end acknowledged, a failure or a missing
// handler counting a delivery; nothing is dead-lettered.
func TestStreamBatchSpansReloadAndDisconnect(t *testing.T) {
	srv := redistest.Start(t)
	rc := redis.NewClient(&redis.Options{Addr: srv.Addr(), Protocol: 2})
	t.Cleanup(func() { _ = rc.Close() })
	ctx := context.Background()
	conf := func(readTimeout string) string {
		return "[server]\nid = \"s1\"\n[redis]\nurl = \"" + srv.URL() + "\"\nreconnect_min = \"50ms\"\nreconnect_max = \"200ms\"\n" +
			"read_timeout = \"" + readTimeout + "\"\n" +
			"[[routes]]\nname = \"a\"\nstream = \"s1\"\nhandler = \"H\"\nstart = \"0\"\nmax_deliveries = 10\n" +
			"[[routes]]\nname = \"b\"\nstream = \"s2\"\nhandler = \"H\"\nstart = \"0\"\nmax_deliveries = 10\n"
	}
	m, file := start(t, conf("3s"))
	require.NoError(t, m.Handler("H", true))
	require.Eventually(t, func() bool { return m.Status() == "connected" }, 10*time.Second, time.Millisecond)
	_, dyn, err := m.Stream("s2", "x", StreamOptions{Group: "dyn", Start: "0"})
	require.NoError(t, err)
	for _, st := range []string{"s1", "s2"} {
		for i := range 4 {
			require.NoError(t, rc.XAdd(ctx, &redis.XAddArgs{Stream: st, Values: []any{"data", fmt.Sprintf("%s-%d", st, i)}}).Err())
		}
	}
	// every route's four entries, taken for Lua
	var ds []*Dispatch
	require.Eventually(t, func() bool {
		m.BeginFrame()
		for d, ok := m.Take(); ok; d, ok = m.Take() {
			if d.Event.Entry != nil {
				ds = append(ds, &d)
			} else {
				m.Finish(&d, false, time.Now().UnixNano(), 0, "")
			}
		}
		return len(ds) == 12
	}, 10*time.Second, time.Millisecond)
	sort.Slice(ds, func(i, j int) bool {
		a, b := ds[i].Event, ds[j].Event
		return a.Route.Name+a.Payload < b.Route.Name+b.Payload
	})
	// index 0 and 3: handled; 1: failed; 2: no handler
	outcome := func(d *Dispatch) Outcome {
		i := int(d.Event.Payload[len(d.Event.Payload)-1] - '0')
		return Outcome{D: d, NoHandler: i == 2, Failed: map[bool]int{true: 1}[i == 1]}
	}
	settle := func(pick func(i int) bool) {
		var outs []Outcome
		for _, d := range ds {
			if i := int(d.Event.Payload[len(d.Event.Payload)-1] - '0'); pick(i) {
				outs = append(outs, outcome(d))
			}
		}
		m.Settle(outs)
		for _, o := range outs {
			m.Count(o.D, o.NoHandler, time.Now().UnixNano(), o.Failed, "failing on purpose")
		}
	}
	settle(func(i int) bool { return i == 0 })
	require.NoError(t, os.WriteFile(file, []byte(conf("4s")), 0o644))
	res, err := m.Reload()
	require.NoError(t, err)
	require.True(t, res.Reconnected, "the [redis] change replaces the connection")
	require.NotEmpty(t, m.Off("x", "s2"))
	m.Disconnect()
	settle(func(i int) bool { return i != 0 })

	dynPending := func() int64 {
		p, err := rc.XPending(ctx, "s2", "dyn").Result()
		if err != nil {
			return -1
		}
		return p.Count
	}
	require.Eventually(t, func() bool { return dynPending() == 2 }, 10*time.Second, time.Millisecond,
		"the removed route's failed and unhandled entries stay pending, its handled ones are acknowledged (late)")
	p, err := rc.XPendingExt(ctx, &redis.XPendingExtArgs{Stream: "s2", Group: "dyn", Start: "-", End: "+", Count: 10}).Result()
	require.NoError(t, err)
	for _, e := range p {
		assert.Equal(t, int64(1), e.RetryCount, "released: no delivery counted for %s", e.ID)
	}

	require.NoError(t, m.Connect(""))
	handled := map[string][]int64{}
	has := func(route string) bool { return route != dyn }
	handle := func(d Dispatch) bool {
		handled[d.Event.Route.Name+" "+d.Event.Payload] = append(handled[d.Event.Route.Name+" "+d.Event.Payload], d.Event.Entry.Deliveries)
		return true
	}
	pending := func(st, g string) int64 {
		p, err := rc.XPending(ctx, st, g).Result()
		if err != nil {
			return -1
		}
		return p.Count
	}
	deadline := time.Now().Add(30 * time.Second)
	for (pending("s1", "realtime:s1") != 0 || pending("s2", "realtime:s1") != 0) && time.Now().Before(deadline) {
		if pumpLocal(m, has, handle) == 0 {
			time.Sleep(5 * time.Millisecond)
		}
	}
	require.Zero(t, pending("s1", "realtime:s1"), "handled: %v", handled)
	require.Zero(t, pending("s2", "realtime:s1"), "handled: %v", handled)
	for _, k := range []string{"a s1-1", "a s1-2", "b s2-1", "b s2-2"} {
		require.NotEmpty(t, handled[k], "%s (failed or no handler) came again: %v", k, handled)
		assert.GreaterOrEqual(t, handled[k][0], int64(2), "%s: its failed delivery counted", k)
	}
	for k := range handled {
		assert.False(t, strings.HasPrefix(k, "x "), "the removed route's entry %s was handled again", k)
	}
	assert.Equal(t, int64(2), dynPending())
	for _, st := range []string{"s1", "s2"} {
		n, _ := rc.XLen(ctx, st+":dead").Result()
		assert.Zero(t, n, "%s: dead letters", st)
	}
}

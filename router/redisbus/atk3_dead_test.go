package redisbus

import (
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

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
	r, worker := loggedReader(t, streamConfig(addr), sink, "stream worker", "BUSY")
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

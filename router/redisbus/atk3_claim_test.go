package redisbus

import (
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gmod-realtime/realtime/internal/redistest"
)

// gate is a one-shot signal a proxy's edit function can wait on, bounded.
type gate struct {
	once sync.Once
	ch   chan struct{}
}

func newGate() *gate { return &gate{ch: make(chan struct{})} }

func (g *gate) open() { g.once.Do(func() { close(g.ch) }) }

func (g *gate) wait() bool {
	select {
	case <-g.ch:
		return true
	case <-time.After(10 * time.Second):
		return false
	}
}

// TestStreamClaimRacesPendingReread: at start, the reader goroutine
// re-reads the consumer's own pending entries (XPENDING ... consumer,
// XCLAIM) while the worker's claim loop takes over entries idle past
// claim_after (XAUTOCLAIM, XPENDING, XCLAIM), the consumer's own ones
// included. An entry left pending by this server's previous run was
// claimed by both: Redis counted two deliveries for one hand-out, so the
// handler got one try fewer than max_deliveries (its Nack dead-lettered
// the entry at the second try of three), and the second claim's offer
// was dropped only because the first was still in flight.
func TestStreamClaimRacesPendingReread(t *testing.T) {
	srv := redistest.Start(t)
	c := client(t, srv)
	ctx := t.Context()
	require.NoError(t, c.XGroupCreateMkStream(ctx, "s", "g", "0").Err())
	id := xadd(t, c, "s", "n", "left")
	// delivered once to this server before it restarted, idle since
	require.NoError(t, c.XReadGroup(ctx, &redis.XReadGroupArgs{Group: "g", Consumer: "srv1", Streams: []string{"s", ">"}}).Err())
	const claimAfter = 300 * time.Millisecond
	idlePast(t, c, id, claimAfter)
	// The reader's re-read (XPENDING ... consumer) waits for the worker's
	// counting XCLAIM (after its XAUTOCLAIM took the entry), which waits
	// for the reader to go on to new entries (XREADGROUP).
	workerClaims, readerReads := newGate(), newGate()
	var claims sync.Map
	addr := editProxy(t, srv.Addr(), func(args []string) []string {
		switch cmd := strings.ToLower(args[0]); {
		case cmd == "xpending" && len(args) == 7: // the re-read's page
			workerClaims.wait()
		case cmd == "xclaim" && len(args) == 6: // a claim counting a delivery
			if _, again := claims.LoadOrStore("first", true); !again {
				workerClaims.open()
				readerReads.wait()
			}
		case cmd == "xreadgroup":
			readerReads.open()
		}
		return nil
	})
	sink := newChanSink(16)
	r := startReader(t, addr, "srv1", []StreamSpec{{Stream: "s", Group: "g", MaxDeliveries: 3, ClaimAfter: claimAfter}}, sink, StreamOptions{})
	e := recv(t, sink, 10*time.Second)
	require.Equal(t, id, e.ID)
	assert.Equal(t, int64(2), e.Deliveries)
	r.Nack(e.Stream, e.Group, e.ID) // the second try of three failed: a third comes
	select {
	case e := <-sink.ch:
		assert.Equal(t, id, e.ID)
		assert.Equal(t, int64(3), e.Deliveries)
		r.Ack(e.Stream, e.Group, e.ID)
	case <-time.After(10 * time.Second):
		t.Fatalf("no third try; dead letters: %v", deadEntries(t, c, "s"))
	}
	waitUntil(t, "the entry acknowledged and counted", 10*time.Second, func() bool {
		return pendingCount(c, "s", "g") == 0 && r.Stats()["s"].Acked == 1
	})
	assert.Empty(t, deadEntries(t, c, "s"))
	assert.Empty(t, sink.ch, "handed out again")
}

// TestStreamAckHandedOverDuringClaim: an Ack that arrives for an entry
// while the claim loop is taking it over (the handler of the reader this
// one replaced at a Reload returning, its Ack handed over) is carried
// out: the entry is acknowledged, neither handed out again nor
// dead-lettered when the claim finds it past max_deliveries. (With
// entries being claimed kept in the in-flight set, so that the pending
// re-read does not take them too, such an Ack was ignored: the entry was
// dead-lettered although its handler had succeeded.)
func TestStreamAckHandedOverDuringClaim(t *testing.T) {
	srv := redistest.Start(t)
	c := client(t, srv)
	ctx := t.Context()
	require.NoError(t, c.XGroupCreateMkStream(ctx, "s", "g", "0").Err())
	id := xadd(t, c, "s", "n", "slow")
	require.NoError(t, c.XReadGroup(ctx, &redis.XReadGroupArgs{Group: "g", Consumer: "srv1", Streams: []string{"s", ">"}}).Err())
	require.NoError(t, c.XClaim(ctx, &redis.XClaimArgs{Stream: "s", Group: "g", Consumer: "srv1", Messages: []string{id}}).Err())
	const claimAfter = 300 * time.Millisecond
	idlePast(t, c, id, claimAfter)
	// The pending re-read waits till the end; the claim loop's counting
	// XCLAIM waits for the Ack.
	reread, claiming, acked := newGate(), newGate(), newGate()
	addr := editProxy(t, srv.Addr(), func(args []string) []string {
		switch cmd := strings.ToLower(args[0]); {
		case cmd == "xpending" && len(args) == 7:
			reread.wait()
		case cmd == "xclaim" && len(args) == 6:
			claiming.open()
			acked.wait()
		}
		return nil
	})
	sink := newChanSink(16)
	r := startReader(t, addr, "srv1", []StreamSpec{{Stream: "s", Group: "g", MaxDeliveries: 2, ClaimAfter: claimAfter}}, sink, StreamOptions{})
	t.Cleanup(reread.open) // before the reader's Close
	require.True(t, claiming.wait(), "no claim")
	r.Ack("s", "g", id)
	acked.open()
	waitUntil(t, "the entry acknowledged or dead-lettered", 10*time.Second, func() bool {
		st := r.Stats()["s"]
		return pendingCount(c, "s", "g") == 0 && st.Acked+st.Dead > 0
	})
	st := r.Stats()["s"]
	assert.Equal(t, uint64(1), st.Acked)
	assert.Zero(t, st.Dead)
	assert.Empty(t, deadEntries(t, c, "s"), "acknowledged by its handler, dead-lettered")
	assert.Empty(t, sink.ch, "handed out again")
}

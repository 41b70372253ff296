package redisbus

import (
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gmod-realtime/realtime/internal/redistest"
)

// keptAndIdle starts a reader on a full sink that holds entry b (read,
// refused: no handler saw it), acknowledges entry a, and closes it: b is
// given back to kept uncounted (its delivery count 1 in Redis). It returns
// b's id once b has been idle past claimAfter.
func keptAndIdle(t *testing.T, c *redis.Client, addr string, kept *Kept, claimAfter time.Duration) string {
	t.Helper()
	a := xadd(t, c, "s", "n", "a")
	b := xadd(t, c, "s", "n", "b")
	sink := newChanSink(1) // a stays in it: b is refused
	r := startReader(t, addr, "srv1", []StreamSpec{{Stream: "s", Group: "g", Start: "0"}}, sink, StreamOptions{Kept: kept})
	waitUntil(t, "b refused by the full sink", 10*time.Second, func() bool { return r.Stats()["s"].Refused > 0 })
	r.Ack("s", "g", a)
	waitUntil(t, "a acknowledged", 10*time.Second, func() bool { return pendingCount(c, "s", "g") == 1 && r.Stats()["s"].Acked == 1 })
	r.Close()
	r.Wait()
	require.Equal(t, int64(1), deliveryCount(t, c, "s", "g", b))
	idlePast(t, c, b, claimAfter)
	return b
}

// idlePast waits until entry id of stream "s", group "g", has been idle
// longer than d (and 100ms more), so that a claim_after of d takes it.
func idlePast(t *testing.T, c *redis.Client, id string, d time.Duration) {
	t.Helper()
	waitUntil(t, id+" idle past claim_after", 10*time.Second, func() bool {
		p, err := c.XPendingExt(t.Context(), &redis.XPendingExtArgs{Stream: "s", Group: "g", Start: id, End: id, Count: 1}).Result()
		return err == nil && len(p) == 1 && p[0].Idle > d+100*time.Millisecond
	})
}

// claimFirst is a proxy in front of srv on which the reader's re-read of
// its pending entries (XPENDING ... consumer) waits for the claim loop's
// first XCLAIM: the claim loop takes the idle entries first.
func claimFirst(t *testing.T, srv *redistest.Server) string {
	claimed := newGate()
	return editProxy(t, srv.Addr(), func(args []string) []string {
		switch cmd := strings.ToLower(args[0]); {
		case cmd == "xpending" && len(args) == 7:
			claimed.wait()
		case cmd == "xclaim" && !strings.EqualFold(args[len(args)-1], "justid"):
			claimed.open()
		}
		return nil
	})
}

// TestStreamAutoClaimHonoursKept: an entry a reader read but no handler
// saw (refused by the full sink as the reader closed: a Disconnect, a
// Reload) is kept uncounted for the next reader of the module, whose
// re-read claims it with its count (RETRYCOUNT). The claim loop took such
// an entry over (idle past claim_after, the consumer's own) counting a
// delivery: at max_deliveries = 1 it was dead-lettered without any
// handler having seen it.
func TestStreamAutoClaimHonoursKept(t *testing.T) {
	srv := redistest.Start(t)
	c := client(t, srv)
	const claimAfter = 300 * time.Millisecond
	kept := NewKept()
	b := keptAndIdle(t, c, srv.Addr(), kept, claimAfter)
	sink := newChanSink(16)
	startReader(t, claimFirst(t, srv), "srv1", []StreamSpec{{Stream: "s", Group: "g", MaxDeliveries: 1, ClaimAfter: claimAfter}}, sink, StreamOptions{Kept: kept})
	waitUntil(t, "b handed out or dead-lettered", 10*time.Second, func() bool {
		return len(deadEntries(t, c, "s")) > 0 || len(sink.ch) > 0
	})
	require.Empty(t, deadEntries(t, c, "s"), "dead-lettered, no handler having seen it")
	e := recv(t, sink, time.Second)
	assert.Equal(t, b, e.ID)
	assert.Equal(t, int64(1), e.Deliveries)
	assert.Equal(t, int64(1), deliveryCount(t, c, "s", "g", b))
}

// TestStreamStaleKeptCountNotSetBack: a kept count is the entry's count
// when it was given back; delivered since (another server claimed it, its
// handler failed, the server died), its count is higher, and claiming it
// with the kept count (XCLAIM ... RETRYCOUNT) set Redis's delivery counter
// back: an entry past max_deliveries was handed out again, with
// deliveries=1, instead of dead-lettered, and never would be.
func TestStreamStaleKeptCountNotSetBack(t *testing.T) {
	srv := redistest.Start(t)
	c := client(t, srv)
	ctx := t.Context()
	const claimAfter = 300 * time.Millisecond
	kept := NewKept()
	b := keptAndIdle(t, c, srv.Addr(), kept, claimAfter)
	// srv2 took it over and handed it out twice, then died
	for range 2 {
		require.NoError(t, c.XClaim(ctx, &redis.XClaimArgs{Stream: "s", Group: "g", Consumer: "srv2", Messages: []string{b}}).Err())
	}
	require.Equal(t, int64(3), deliveryCount(t, c, "s", "g", b))
	idlePast(t, c, b, claimAfter)
	sink := newChanSink(16)
	r := startReader(t, claimFirst(t, srv), "srv1", []StreamSpec{{Stream: "s", Group: "g", MaxDeliveries: 3, ClaimAfter: claimAfter}}, sink, StreamOptions{Kept: kept})
	waitUntil(t, "b dead-lettered or handed out", 10*time.Second, func() bool {
		return len(deadEntries(t, c, "s")) > 0 || len(sink.ch) > 0
	})
	select {
	case e := <-sink.ch:
		t.Fatalf("b handed out again (deliveries=%d, Redis's count %d) instead of dead-lettered", e.Deliveries, deliveryCount(t, c, "s", "g", b))
	default:
	}
	dead := deadEntries(t, c, "s")
	require.Len(t, dead, 1)
	assert.Equal(t, []string{"n", "b", "rt_source_id", b, "rt_deliveries", "3"}, dead[0].fields)
	waitUntil(t, "nothing pending, the dead letter counted", 10*time.Second, func() bool {
		return pendingCount(c, "s", "g") == 0 && r.Stats()["s"].Dead == 1
	})
}

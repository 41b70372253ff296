package redisbus

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gmod-realtime/realtime/internal/redistest"
)

// TestStreamDeadHandedOverDuringClaim: a Dead that arrives for an entry
// while a claim takes it over (the handler of the reader this one
// replaced at a Reload dead-lettering it, its Dead handed over) writes a
// dead letter whose rt_deliveries is the entry's delivery count (the
// handler's, 2, or Redis's after the claim counted one more, 3): it was 0,
// the count of the in-flight record the claim had made. Cases: the claim
// loop's claim offering the entry (max_deliveries above its count), the
// claim loop's claim finding it past max_deliveries, the pending
// re-read's claim; and, with no claim yet (the pending re-read held
// back), a Dead handed over for an entry not in the in-flight set.
func TestStreamDeadHandedOverDuringClaim(t *testing.T) {
	for _, tc := range []struct {
		name    string
		max     int64
		reread  bool // the pending re-read claims it, not the claim loop
		noClaim bool // settled before any claim (the re-read held back)
	}{
		{name: "claim loop, offered", max: 5},
		{name: "claim loop, past max_deliveries", max: 2},
		{name: "pending re-read", max: 5, reread: true},
		{name: "not claimed yet", max: 5, noClaim: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := redistest.Start(t)
			c := client(t, srv)
			ctx := t.Context()
			require.NoError(t, c.XGroupCreateMkStream(ctx, "s", "g", "0").Err())
			id := xadd(t, c, "s", "n", "bad")
			// two deliveries to the reader being replaced: its handler saw 2
			require.NoError(t, c.XReadGroup(ctx, &redis.XReadGroupArgs{Group: "g", Consumer: "srv1", Streams: []string{"s", ">"}}).Err())
			require.NoError(t, c.XClaim(ctx, &redis.XClaimArgs{Stream: "s", Group: "g", Consumer: "srv1", Messages: []string{id}}).Err())
			claimAfter := time.Duration(0)
			if !tc.reread && !tc.noClaim {
				claimAfter = 300 * time.Millisecond
				idlePast(t, c, id, claimAfter)
			}
			// The claim that counts a delivery (XCLAIM id, no options)
			// waits for the Dead; in the claim-loop cases the pending
			// re-read waits till the end.
			reread, claiming, settled := newGate(), newGate(), newGate()
			addr := editProxy(t, srv.Addr(), func(args []string) []string {
				switch cmd := strings.ToLower(args[0]); {
				case cmd == "xpending" && len(args) == 7 && !tc.reread:
					reread.wait()
				case cmd == "xclaim" && len(args) == 6:
					claiming.open()
					settled.wait()
				}
				return nil
			})
			sink := newChanSink(16)
			r := startReader(t, addr, "srv1", []StreamSpec{{Stream: "s", Group: "g", MaxDeliveries: tc.max, ClaimAfter: claimAfter}}, sink, StreamOptions{})
			t.Cleanup(reread.open) // before the reader's Close
			if !tc.noClaim {
				require.True(t, claiming.wait(), "no claim")
			}
			r.Dead("s", "g", id, "malformed")
			settled.open()
			reread.open() // not claimed yet: the re-read finds it in flight
			waitUntil(t, "the entry dead-lettered", 10*time.Second, func() bool {
				return pendingCount(c, "s", "g") == 0 && r.Stats()["s"].Dead == 1
			})
			dead := deadEntries(t, c, "s")
			require.Len(t, dead, 1)
			n, err := strconv.ParseInt(fieldValue(dead[0].fields, "rt_deliveries"), 10, 64)
			require.NoError(t, err)
			assert.Contains(t, []int64{2, 3}, n, "rt_deliveries: %v", dead[0].fields)
			if tc.noClaim {
				assert.Equal(t, int64(2), n, "no claim counted a delivery")
			}
			assert.True(t, sink.hasEvent("dead s "+id+" deliveries="+strconv.FormatInt(n, 10)+" "), "no dead event with the count")
			assert.Equal(t, id, fieldValue(dead[0].fields, "rt_source_id"))
			assert.Empty(t, sink.ch, "handed out again")
		})
	}
}

// TestStreamRequeueHandedOverKeepsCount: a Requeue handed over by the
// reader this one replaced (the entry given back unhandled when the Lua
// state closed, say) for an entry not in this reader's in-flight set
// keeps the delivery no handler saw uncounted, as a Requeue of its own
// does: the retry claimed it with a counting XCLAIM, so with
// max_deliveries = 1 it was dead-lettered although no handler ever saw
// it.
func TestStreamRequeueHandedOverKeepsCount(t *testing.T) {
	srv := redistest.Start(t)
	c := client(t, srv)
	ctx := t.Context()
	require.NoError(t, c.XGroupCreateMkStream(ctx, "s", "g", "0").Err())
	id := xadd(t, c, "s", "n", "unseen")
	// delivered once, to the reader being replaced
	require.NoError(t, c.XReadGroup(ctx, &redis.XReadGroupArgs{Group: "g", Consumer: "srv1", Streams: []string{"s", ">"}}).Err())
	reread := newGate() // this reader's pending re-read held back
	addr := editProxy(t, srv.Addr(), func(args []string) []string {
		if strings.EqualFold(args[0], "xpending") && len(args) == 7 {
			reread.wait()
		}
		return nil
	})
	sink := newChanSink(16)
	r := startReader(t, addr, "srv1", []StreamSpec{{Stream: "s", Group: "g", MaxDeliveries: 1}}, sink, StreamOptions{})
	t.Cleanup(reread.open) // before the reader's Close
	r.Requeue("s", "g", id)
	reread.open() // it finds the entry in flight, being retried
	e := recv(t, sink, 10*time.Second)
	require.Equal(t, id, e.ID)
	assert.Equal(t, int64(1), e.Deliveries, "the unseen delivery counted")
	assert.Equal(t, int64(1), deliveryCount(t, c, "s", "g", id))
	r.Ack(e.Stream, e.Group, e.ID)
	waitUntil(t, "the entry acknowledged", 10*time.Second, func() bool {
		return pendingCount(c, "s", "g") == 0 && r.Stats()["s"].Acked == 1
	})
	assert.Empty(t, deadEntries(t, c, "s"))
	assert.Zero(t, r.Stats()["s"].Dead)
}

package redisbus

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/gmod-realtime/realtime/internal/redistest"
	"github.com/gmod-realtime/realtime/router"
)

// settleOneByOne settles a batch through Ack, Nack and Requeue, the
// reference for SettleMany.
func settleOneByOne(r *StreamReader, batch []router.Settlement) {
	for _, x := range batch {
		switch x.Outcome {
		case router.OutcomeAck:
			r.Ack(x.Stream, x.Group, x.ID)
		case router.OutcomeRelease:
			r.Requeue(x.Stream, x.Group, x.ID)
		default:
			r.Nack(x.Stream, x.Group, x.ID)
		}
	}
}

// TestStreamSettleManyMatchesOneByOne: two readers on one redis-server,
// each on its own pair of streams (the first stream read by two groups, so
// the same ids come in both), their entries settled with the same mixed
// outcomes (acknowledged, failed until dead-lettered, released, one
// acknowledged twice in one batch), one through SettleMany in a shuffled
// batch per wave, the other one by one: the same deliveries (counts
// included), the same figures, nothing left pending, the same dead
// letters.
func TestStreamSettleManyMatchesOneByOne(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	srv := redistest.Start(t)
	c := client(t, srv)

	type side struct {
		prefix string
		sink   *chanSink
		r      *StreamReader
		settle func([]router.Settlement)
		got    []string // "stream group idx deliveries", sorted per wave
	}
	const perStream = 4
	ids := map[string]int{} // prefix+stream+id -> index of the entry
	sides := []*side{{prefix: "batch-"}, {prefix: "ref-"}}
	for _, sd := range sides {
		sd.sink = newChanSink(64)
		a, b := sd.prefix+"a", sd.prefix+"b"
		for _, st := range []string{a, b} {
			for i := range perStream {
				ids[st+" "+xadd(t, c, st, "data", strconv.Itoa(i))] = i
			}
		}
		specs := []StreamSpec{
			{Stream: a, Group: "g1", Start: "0", MaxDeliveries: 2},
			{Stream: a, Group: "g2", Start: "0", MaxDeliveries: 2},
			{Stream: b, Group: "g1", Start: "0", MaxDeliveries: 2},
		}
		sd.r = startReader(t, srv.Addr(), "srv1", specs, sd.sink, StreamOptions{})
	}
	sides[0].settle = sides[0].r.SettleMany
	sides[1].settle = func(b []router.Settlement) { settleOneByOne(sides[1].r, b) }

	// The plan per entry index: 0 acknowledged; 1 failed every time (dead
	// after 2 deliveries); 2 released, then acknowledged; 3 acknowledged
	// twice in one batch.
	outcome := func(i, wave int) []router.Outcome {
		switch {
		case i == 0:
			return []router.Outcome{router.OutcomeAck}
		case i == 1:
			return []router.Outcome{router.OutcomeNack}
		case i == 2 && wave == 0:
			return []router.Outcome{router.OutcomeRelease}
		default:
			return []router.Outcome{router.OutcomeAck, router.OutcomeAck}[:1+i/3]
		}
	}
	for wave, want := range []int{3 * perStream, 3 * 2} { // first deliveries; then index 1's second and index 2's
		for _, sd := range sides {
			var batch []router.Settlement
			var got []string
			for range want {
				e := recv(t, sd.sink, 10*time.Second)
				st := strings.TrimPrefix(e.Stream, sd.prefix)
				i := ids[e.Stream+" "+e.ID]
				got = append(got, fmt.Sprintf("%s %s %d %d", st, e.Group, i, e.Deliveries))
				for _, o := range outcome(i, wave) {
					batch = append(batch, router.Settlement{Stream: e.Stream, Group: e.Group, ID: e.ID, Outcome: o})
				}
			}
			// the same shuffle for both sides: entries of both streams and
			// groups interleaved
			perm := rand.New(rand.NewPCG(seed, uint64(wave))).Perm(len(batch))
			shuffled := make([]router.Settlement, len(batch))
			for k, p := range perm {
				shuffled[k] = batch[p]
			}
			sd.settle(shuffled)
			slices.Sort(got)
			sd.got = append(sd.got, got...)
		}
	}
	require.Equal(t, sides[1].got, sides[0].got, "the same deliveries, counts included")

	figures := func(sd *side) string {
		var out []string
		for k, s := range sd.r.Stats() {
			out = append(out, fmt.Sprintf("%s delivered=%d acked=%d retried=%d dead=%d inflight=%d",
				strings.TrimPrefix(k, sd.prefix), s.Delivered, s.Acked, s.Retried, s.Dead, s.InFlight))
		}
		slices.Sort(out)
		return strings.Join(out, "\n")
	}
	for _, sd := range sides {
		for _, g := range []string{"a g1", "a g2", "b g1"} {
			st, group, _ := strings.Cut(g, " ")
			waitUntil(t, sd.prefix+g+" settled", 10*time.Second, func() bool { return pendingCount(c, sd.prefix+st, group) == 0 })
		}
		waitUntil(t, sd.prefix+" dead letters", 10*time.Second, func() bool {
			return len(deadEntries(t, c, sd.prefix+"a")) == 2 && len(deadEntries(t, c, sd.prefix+"b")) == 1
		})
	}
	waitUntil(t, "the same figures", 10*time.Second, func() bool { return figures(sides[0]) == figures(sides[1]) })
	f := figures(sides[0])
	require.Contains(t, f, "a@g1 delivered=6 acked=3 retried=2 dead=1 inflight=0", f)
	require.Contains(t, f, "b delivered=6 acked=3 retried=2 dead=1 inflight=0", f)
}

// TestStreamSettleManyAfterClose: a batch settled after the reader closed
// (the handlers returned after Disconnect or a hand-over): its acks are
// sent late, its failed and released entries stay pending.
func TestStreamSettleManyAfterClose(t *testing.T) {
	srv := redistest.Start(t)
	c := client(t, srv)
	sink := newChanSink(16)
	r := startReader(t, srv.Addr(), "srv1", []StreamSpec{{Stream: "x", Group: "g", Start: "0"}, {Stream: "y", Group: "g", Start: "0"}}, sink, StreamOptions{})
	for i := range 3 {
		xadd(t, c, "x", "n", strconv.Itoa(i))
		xadd(t, c, "y", "n", strconv.Itoa(i))
	}
	var batch []router.Settlement
	for i := range 6 {
		e := recv(t, sink, 10*time.Second)
		o := []router.Outcome{router.OutcomeAck, router.OutcomeNack, router.OutcomeRelease}[i%3]
		batch = append(batch, router.Settlement{Stream: e.Stream, Group: e.Group, ID: e.ID, Outcome: o})
	}
	r.Close()
	r.Wait()
	r.SettleMany(batch)
	waitUntil(t, "the late acks", 10*time.Second, func() bool {
		return pendingCount(c, "x", "g")+pendingCount(c, "y", "g") == 4
	})
	r.Wait()
	require.Equal(t, int64(4), pendingCount(c, "x", "g")+pendingCount(c, "y", "g"), "only the acknowledged left the pending list")
}

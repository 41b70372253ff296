package router

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// settleLog records, in order, every outcome any recording settler got.
type settleLog struct {
	calls   []string
	batches map[string][]int // settler name -> the sizes of its SettleMany calls
}

func (l *settleLog) add(who, kind, stream, group, id string) {
	l.calls = append(l.calls, fmt.Sprintf("%s %s %s/%s/%s", who, kind, stream, group, id))
}

// recSettler is a backend that settles one by one.
type recSettler struct {
	name string
	log  *settleLog
}

func (s *recSettler) Start(Sink, Plan)                      {}
func (s *recSettler) Update(PlanDiff)                       {}
func (s *recSettler) Publish(string, string) error          { return nil }
func (s *recSettler) Append(string, string) (string, error) { return "", nil }
func (s *recSettler) Close() error                          { return nil }
func (s *recSettler) Ack(st, g, id string)                  { s.log.add(s.name, "ack", st, g, id) }
func (s *recSettler) Nack(st, g, id string)                 { s.log.add(s.name, "nack", st, g, id) }
func (s *recSettler) Release(st, g, id string)              { s.log.add(s.name, "release", st, g, id) }
func (s *recSettler) Dead(st, g, id, _ string)              { s.log.add(s.name, "dead", st, g, id) }

// recBatch is a backend that takes batches (BatchSettler).
type recBatch struct{ recSettler }

func (s *recBatch) SettleMany(batch []Settlement) {
	s.log.batches[s.name] = append(s.log.batches[s.name], len(batch))
	for _, x := range batch {
		kind := map[Outcome]string{OutcomeAck: "ack", OutcomeNack: "nack", OutcomeRelease: "release"}[x.Outcome]
		s.log.add(s.name, kind, x.Stream, x.Group, x.ID)
	}
}

const settleManyConfig = `[server]
id = "s"
[[routes]]
name = "a"
stream = "s1"
handler = "h"
[[routes]]
name = "b"
stream = "s1"
group = "shared"
handler = "h"
[[routes]]
name = "c"
stream = "s2"
handler = "h"
`

// TestSettleManyMatchesOneByOne is a property test of batched settlement:
// entries of two streams (one read by two groups, the same ids in every
// group), delivered by two backends (the attached one, and one it replaced
// or that was closed), settled with random outcomes (handled, failed, no
// handler) in random batches, with the router closed (Disconnect) between
// two batches at a random point. Each outcome must reach the settler the
// one-by-one path picks (the attached backend, or after Close the one that
// delivered the entry), with the same kind, in the same order, a
// BatchSettler in one call per run of its entries; and each entry must be
// free to be delivered again once settled.
func TestSettleManyMatchesOneByOne(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	for round := range 40 {
		rnd := rand.New(rand.NewPCG(seed, uint64(round)))
		settleManyRound(t, rnd, fmt.Sprintf("seed %d round %d", seed, round))
	}
}

func settleManyRound(t *testing.T, rnd *rand.Rand, where string) {
	log := &settleLog{batches: map[string][]int{}}
	newSettler := func(name string) Settler {
		if rnd.IntN(2) == 0 {
			return &recBatch{recSettler{name, log}}
		}
		return &recSettler{name, log}
	}
	attached, other := newSettler("A"), newSettler("B")
	r, err := New(parseConfig(t, settleManyConfig))
	require.NoError(t, err)
	defer r.Close()
	r.Attach(attached.(Backend))

	type src struct{ stream, group string }
	srcs := []src{{"s1", "realtime:s"}, {"s1", "shared"}, {"s2", "realtime:s"}}
	n := 5 + rnd.IntN(60)
	for i := range n {
		s := srcs[rnd.IntN(len(srcs))]
		by := attached
		if rnd.IntN(4) == 0 {
			by = other
		}
		id := fmt.Sprintf("%d-0", rnd.IntN(n/2+1)) // the same id in several groups
		e := StreamEntry{Stream: s.stream, Group: s.group, ID: id, Fields: []string{"data", fmt.Sprint(i)}, Deliveries: 1}
		require.True(t, r.DeliverEntry(e, by), where)
	}
	var evs []*Event
	for e := r.Next(); e != nil; e = r.Next() {
		evs = append(evs, e)
	}
	rnd.Shuffle(len(evs), func(i, j int) { evs[i], evs[j] = evs[j], evs[i] })

	// The reference: each outcome goes, one by one, to the attached
	// backend, or once the router is closed to the entry's own.
	closeAt := rnd.IntN(len(evs) + 1)
	var want []string
	outs := make([]Settled, len(evs))
	name := func(s Settler) string {
		if b, ok := s.(*recBatch); ok {
			return b.name
		}
		return s.(*recSettler).name
	}
	settlerOf := map[*Event]Settler{}
	for _, e := range evs {
		settlerOf[e] = e.Entry.settler
	}
	for i, e := range evs {
		o := Settled{Event: e}
		kind := "nack"
		switch rnd.IntN(3) {
		case 0:
			o.OK, kind = true, "ack"
		case 1:
			o.Release, kind = true, "release"
		}
		outs[i] = o
		to := attached
		if i >= closeAt {
			to = settlerOf[e]
		}
		want = append(want, fmt.Sprintf("%s %s %s/%s/%s", name(to), kind, e.Channel, e.Entry.Group, e.Entry.ID))
	}
	// Batched: random cuts, one of them at closeAt. A non-entry event
	// (a status) in a batch is skipped.
	status := &Event{Kind: KindStatus}
	wantRuns := map[string][]int{}
	for i := 0; i < len(outs); {
		j := min(i+1+rnd.IntN(8), len(outs))
		if i < closeAt && closeAt < j {
			j = closeAt
		}
		if i == closeAt {
			require.NoError(t, r.Close())
		}
		for k := i; k < j; {
			who := want[k][:1]
			m := k + 1
			for m < j && want[m][:1] == who {
				m++
			}
			if _, ok := map[string]Settler{"A": attached, "B": other}[who].(*recBatch); ok {
				wantRuns[who] = append(wantRuns[who], m-k)
			}
			k = m
		}
		batch := append([]Settled{{Event: status, OK: true}}, outs[i:j]...)
		r.SettleMany(batch)
		i = j
	}
	if closeAt == len(outs) {
		require.NoError(t, r.Close())
	}
	require.Equal(t, want, log.calls, where)

	// A BatchSettler got each run of its own outcomes within a batch in
	// one call.
	require.Equal(t, wantRuns, log.batches, where)

	// Settled, every entry may come again (none left marked in flight).
	r.entriesMu.Lock()
	left := len(r.entries)
	r.entriesMu.Unlock()
	require.Zero(t, left, "%s: entries still marked in flight", where)
}

// TestSettleManyNothingToSettle: a batch with no entry (status events, a
// nil event) settles nothing and does not look for a settler.
func TestSettleManyNothingToSettle(t *testing.T) {
	r, err := New(parseConfig(t, settleManyConfig))
	require.NoError(t, err)
	defer r.Close()
	log := &settleLog{batches: map[string][]int{}}
	r.Attach(&recBatch{recSettler{"A", log}})
	r.SettleMany([]Settled{{Event: &Event{Kind: KindStatus}, OK: true}, {}})
	r.SettleMany(nil)
	require.Empty(t, log.calls)
	require.Empty(t, log.batches)
}

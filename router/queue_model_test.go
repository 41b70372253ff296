package router

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// modelQueue is the reference the Queue is checked against: a plain slice,
// its bytes recounted from scratch, eviction by search and copy.
type modelQueue struct {
	evs        []*Event
	maxEvents  int
	maxBytes   int64
	dropOldest bool
	drops      int
}

// bytesOf counts each message's bytes, and its parsed JSON, once however
// many of its copies are in evs.
func bytesOf(evs []*Event) int64 {
	seen, seenDoc := map[*Copies]bool{}, map[*Doc]bool{}
	var b int64
	for _, e := range evs {
		if e.copies == nil {
			b += e.size()
			continue
		}
		if !seen[e.copies] {
			seen[e.copies] = true
			b += int64(len(e.Payload) + len(e.Channel))
		}
		if e.JSON != nil && !seenDoc[e.JSON] {
			seenDoc[e.JSON] = true
			b += e.JSON.Bytes
		}
	}
	return b
}

func (m *modelQueue) push(e *Event) []*Event {
	if e.Kind == KindStatus {
		m.evs = append(m.evs, e)
		return nil
	}
	status := 0
	for _, x := range m.evs {
		if x.Kind == KindStatus {
			status++
		}
	}
	if e.size() > m.maxBytes || status+1 > m.maxEvents {
		m.drops++
		return []*Event{e}
	}
	var dropped []*Event
	for {
		with := append(slices.Clone(m.evs), e)
		if len(with) <= m.maxEvents && bytesOf(with) <= m.maxBytes {
			m.evs = with
			m.drops += len(dropped)
			return dropped
		}
		if !m.dropOldest {
			m.drops++
			return []*Event{e}
		}
		i := slices.IndexFunc(m.evs, func(x *Event) bool { return x.Kind == KindMessage })
		dropped = append(dropped, m.evs[i])
		m.evs = slices.Delete(m.evs, i, i+1)
	}
}

func (m *modelQueue) pop() *Event {
	if len(m.evs) == 0 {
		return nil
	}
	e := m.evs[0]
	m.evs = m.evs[1:]
	return e
}

// TestQueueAgainstModel: random pushes (messages of random sizes, some
// the copies of one message for several routes, and status events), pops
// and limit changes under both policies; after every step the Queue and
// the model agree on what was dropped, what is popped, the counts and the
// bytes, and a message that got in left the queue within its bounds.
func TestQueueAgainstModel(t *testing.T) {
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 0))
	for run := 0; run < 200; run++ {
		maxE, maxB, oldest := 1+rng.IntN(8), int64(1+rng.IntN(40)), rng.IntN(2) == 0
		q := NewQueue(maxE, maxB, oldest)
		m := &modelQueue{maxEvents: maxE, maxBytes: maxB, dropOldest: oldest}
		var last *Event
		var lastDoc *Doc
		var log []string
		for step := 0; step < 200; step++ {
			switch op := rng.IntN(10); {
			case op < 5: // a message, or another route's copy of the last one
				var e *Event
				if last != nil && last.copies != nil && rng.IntN(3) == 0 {
					// another route's copy: raw, or with the message's JSON
					e = &Event{Kind: KindMessage, Channel: last.Channel, Payload: last.Payload, copies: last.copies}
					if rng.IntN(2) == 0 {
						e.JSON = lastDoc
					}
				} else {
					e = &Event{Kind: KindMessage, Channel: fmt.Sprint("c", rng.IntN(10)), Payload: strings.Repeat("x", rng.IntN(14))}
					lastDoc = &Doc{Bytes: int64(rng.IntN(12))}
					if rng.IntN(4) != 0 {
						e.copies = &Copies{}
					}
					if rng.IntN(2) == 0 {
						e.JSON = lastDoc
					}
					last = e
				}
				log = append(log, fmt.Sprintf("push %d+%d bytes (copy of %p)", len(e.Channel), len(e.Payload), e.copies))
				want := m.push(e)
				got := q.Push(e)
				require.Equal(t, want, got, "seed %d run %d: dropped, after %v", seed, run, log)
				if !slices.Contains(got, e) {
					assert.LessOrEqual(t, q.Pending(), q.maxEvents, "seed %d run %d: %v", seed, run, log)
					assert.LessOrEqual(t, q.Bytes(), q.maxBytes, "seed %d run %d: %v", seed, run, log)
				}
			case op < 6:
				log = append(log, "status")
				require.Empty(t, q.Push(&Event{Kind: KindStatus}))
				m.push(&Event{Kind: KindStatus})
			case op < 9:
				log = append(log, "pop")
				want, got := m.pop(), q.Pop()
				if want == nil || got == nil || want.Kind == KindStatus {
					require.Equal(t, want == nil, got == nil, "seed %d run %d: %v", seed, run, log)
					if want != nil {
						require.Equal(t, want.Kind, got.Kind)
					}
				} else {
					require.Same(t, want, got, "seed %d run %d: popped, after %v", seed, run, log)
				}
			default:
				maxE, maxB, oldest = 1+rng.IntN(8), int64(1+rng.IntN(40)), rng.IntN(2) == 0
				log = append(log, fmt.Sprintf("limits %d %d %v", maxE, maxB, oldest))
				q.SetLimits(maxE, maxB, oldest)
				m.maxEvents, m.maxBytes, m.dropOldest = maxE, maxB, oldest
			}
			require.Equal(t, len(m.evs), q.Pending(), "seed %d run %d: pending, after %v", seed, run, log)
			require.Equal(t, bytesOf(m.evs), q.Bytes(), "seed %d run %d: bytes, after %v", seed, run, log)
			require.Equal(t, uint64(m.drops), q.Dropped(), "seed %d run %d: drops, after %v", seed, run, log)
		}
	}
}

// TestOneMessageForManyRoutesCountsOnce: a message matching three routes
// is queued three times but its bytes count once, so under drop_oldest
// it does not evict its own copies.
func TestOneMessageForManyRoutesCountsOnce(t *testing.T) {
	r, err := New(parseConfig(t, `
[queue]
max_bytes = "1KiB"
max_payload = "600B"
[[routes]]
name = "a"
pattern = "m:*"
handler = "h"
[[routes]]
name = "b"
channel = "m:x"
handler = "h"
[[routes]]
name = "c"
pattern = "*"
handler = "h"
`))
	require.NoError(t, err)
	r.Deliver("m:x", strings.Repeat("p", 600))
	assert.Equal(t, []string{"a<-m:x", "b<-m:x", "c<-m:x"}, drainAll(r))
	assert.Zero(t, r.Stats.Dropped()[DropQueueFull])
}

// TestEvictionsAreAllCounted: one big event that evicts ten small ones
// counts ten queue_full drops, each on its route.
func TestEvictionsAreAllCounted(t *testing.T) {
	r, err := New(parseConfig(t, `
[queue]
max_bytes = "1KiB"
max_payload = "1000B"
[[routes]]
name = "a"
pattern = "*"
handler = "h"
`))
	require.NoError(t, err)
	for i := 0; i < 10; i++ {
		r.Deliver("s", strings.Repeat("p", 90))
	}
	r.Deliver("b", strings.Repeat("p", 1000))
	assert.Equal(t, uint64(10), r.Stats.Dropped()[DropQueueFull])
	assert.Equal(t, uint64(10), r.Table().Route("a").Stats.Dropped.Load())
	assert.Equal(t, []string{"a<-b"}, drainAll(r))
}

// TestPayloadAsBigAsTheQueue: with max_payload = max_bytes, a payload of
// max_payload bytes does not fit with its channel name: it is dropped as
// too_big, and the queue keeps what it held.
func TestPayloadAsBigAsTheQueue(t *testing.T) {
	r, err := New(parseConfig(t, `
[queue]
max_bytes = "1KiB"
max_payload = "1KiB"
[[routes]]
name = "a"
pattern = "*"
handler = "h"
`))
	require.NoError(t, err)
	r.Deliver("small", "x")
	r.Deliver("big", strings.Repeat("p", 1024))
	assert.Equal(t, uint64(1), r.Stats.Dropped()[DropTooBig])
	assert.Zero(t, r.Stats.Dropped()[DropQueueFull])
	assert.Equal(t, []string{"a<-small"}, drainAll(r))
}

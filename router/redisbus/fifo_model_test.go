package redisbus

import (
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// refFIFO is the reference model of fifo: a plain slice, head at index
// 0, with the operations' meaning written the simplest way.
type refFIFO struct {
	msgs            []outMsg
	taken, inflight int
	bytes           int64
	maxMsgs         int
	maxBytes        int64
}

func (r *refFIFO) put(m outMsg) bool {
	if len(r.msgs)+r.taken >= r.maxMsgs || r.bytes+msgSize(&m) > r.maxBytes {
		return false
	}
	r.msgs = append(r.msgs, m)
	r.bytes += msgSize(&m)
	return true
}

func (r *refFIFO) force(m outMsg) {
	r.msgs = append(r.msgs, m)
	r.bytes += msgSize(&m)
}

func (r *refFIFO) prepend(msgs []outMsg) {
	for i := range msgs {
		r.bytes += msgSize(&msgs[i])
	}
	r.msgs = slices.Concat(r.msgs[:r.inflight], msgs, r.msgs[r.inflight:])
}

func (r *refFIFO) peek(n int) []outMsg {
	r.inflight = min(n, len(r.msgs))
	return slices.Clone(r.msgs[:r.inflight])
}

func (r *refFIFO) replaceHead(n int, keep []outMsg) {
	for i := range n {
		r.bytes -= msgSize(&r.msgs[i])
	}
	for i := range keep {
		r.bytes += msgSize(&keep[i])
	}
	r.msgs = slices.Concat(keep, r.msgs[n:])
	r.inflight = 0
}

func (r *refFIFO) take() []outMsg {
	out := r.msgs
	r.msgs = nil
	r.taken += len(out)
	return out
}

func (r *refFIFO) release(m outMsg) {
	r.taken--
	r.bytes -= msgSize(&m)
}

func (r *refFIFO) takeAll() []outMsg {
	out := r.msgs
	r.msgs, r.bytes, r.inflight = nil, 0, 0
	return out
}

func (r *refFIFO) takeDurable(all bool) []outMsg {
	from := r.inflight
	if all {
		from = 0
	}
	var out, keep []outMsg
	keep = append(keep, r.msgs[:from]...)
	for _, m := range r.msgs[from:] {
		if m.durableID() != "" {
			out = append(out, m)
			r.bytes -= msgSize(&m)
		} else {
			keep = append(keep, m)
		}
	}
	r.msgs = keep
	return out
}

func (r *refFIFO) inflightDurable() []outMsg {
	var out []outMsg
	for _, m := range r.msgs[:r.inflight] {
		if m.durableID() != "" {
			out = append(out, m)
		}
	}
	return out
}

// fifoSeeds: REDISBUS_FIFO_SEED=n replays one seed; else n fresh ones.
func fifoSeeds(t *testing.T, n int) []uint64 {
	if s := os.Getenv("REDISBUS_FIFO_SEED"); s != "" {
		seed, err := strconv.ParseUint(s, 10, 64)
		require.NoError(t, err)
		return []uint64{seed}
	}
	base := uint64(time.Now().UnixNano())
	seeds := make([]uint64, n)
	for i := range seeds {
		seeds[i] = base + uint64(i)
	}
	return seeds
}

// TestFIFOModel runs random sequences of every fifo operation (seeds
// printed on failure; replay one with REDISBUS_FIFO_SEED=n) against the
// plain-slice model, with bounds small enough to be hit at their edges
// and backlogs of several chunks, and compares after each step what the
// operation returned, the whole queue in order, and the counts the
// bounds are checked against.
func TestFIFOModel(t *testing.T) {
	for _, seed := range fifoSeeds(t, 8) {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			t.Logf("seed %d (replay: REDISBUS_FIFO_SEED=%d)", seed, seed)
			rng := rand.New(rand.NewPCG(seed, seed^0xf1f0))
			maxMsgs := rng.IntN(4 * chunkLen)
			maxBytes := int64(rng.IntN(40 * chunkLen))
			q := newFIFO(maxMsgs, maxBytes)
			ref := &refFIFO{maxMsgs: maxMsgs, maxBytes: maxBytes}
			serial := 0
			msg := func() outMsg {
				serial++
				m := outMsg{channel: strings.Repeat("c", rng.IntN(12)), payload: strconv.Itoa(serial) + strings.Repeat("p", rng.IntN(30))}
				switch rng.IntN(4) {
				case 0:
					m.x = &outExtra{id: "srv-" + strconv.Itoa(serial)}
				case 1:
					m.x = &outExtra{ttl: time.Second}
				}
				return m
			}
			msgs := func(n int) []outMsg {
				out := make([]outMsg, n)
				for i := range out {
					out[i] = msg()
				}
				return out
			}
			var peeked []outMsg // the writer's batch in flight
			var held deque      // the inbox consumer's backlog
			var heldRef []outMsg
			for step := range 1500 {
				op := rng.IntN(13)
				what := ""
				switch op {
				case 0, 1, 2: // a burst of puts, often up to a bound
					n := 1 + rng.IntN(2*chunkLen)
					what = fmt.Sprintf("put x%d", n)
					for range n {
						m := msg()
						require.Equal(t, ref.put(m), q.putMsg(m), "step %d: %s: accepted", step, what)
					}
				case 3:
					what = "force"
					m := msg()
					ref.force(m)
					q.force(m)
				case 4:
					ms := msgs(rng.IntN(3 * chunkLen))
					what = fmt.Sprintf("prepend x%d with %d in flight", len(ms), ref.inflight)
					ref.prepend(ms)
					q.prepend(ms)
				case 5:
					if heldRef != nil {
						continue
					}
					n := rng.IntN(3 * chunkLen)
					what = fmt.Sprintf("peek %d", n)
					peeked = ref.peek(n)
					requireSameMsgs(t, peeked, q.peek(n), "step %d: %s", step, what)
				case 6, 7: // the writer's answer: n answered, again of them kept
					if peeked == nil {
						continue
					}
					n := rng.IntN(len(peeked) + 1)
					var again []outMsg
					for _, m := range peeked[:n] {
						if rng.IntN(8) == 0 {
							again = append(again, m)
						}
					}
					what = fmt.Sprintf("replaceHead %d of %d, %d again", n, len(peeked), len(again))
					ref.replaceHead(n, again)
					if len(again) == 0 && rng.IntN(2) == 0 {
						q.remove(n)
					} else {
						q.replaceHead(n, again)
					}
					peeked = nil
				case 8:
					if peeked != nil || heldRef != nil {
						continue
					}
					what = "take"
					heldRef = ref.take()
					q.take(&held)
					require.Equal(t, len(heldRef), held.n, "step %d: %s", step, what)
				case 9:
					if heldRef == nil {
						continue
					}
					n := rng.IntN(len(heldRef) + 1)
					what = fmt.Sprintf("release %d of %d", n, len(heldRef))
					for range n {
						m := held.popFront()
						require.Equal(t, heldRef[0], m, "step %d: %s", step, what)
						ref.release(heldRef[0])
						q.release(&m)
						heldRef = heldRef[1:]
					}
					if len(heldRef) == 0 {
						heldRef = nil
						require.Zero(t, held.n)
					}
				case 10:
					if peeked != nil || heldRef != nil {
						continue
					}
					what = "takeAll"
					requireSameMsgs(t, ref.takeAll(), q.takeAll(), "step %d: %s", step, what)
				case 11:
					all := peeked == nil && rng.IntN(2) == 0
					what = fmt.Sprintf("takeDurable(%v), inflightDurable, %d in flight", all, ref.inflight)
					requireSameMsgs(t, ref.inflightDurable(), q.inflightDurable(), "step %d: %s", step, what)
					requireSameMsgs(t, ref.takeDurable(all), q.takeDurable(all), "step %d: %s", step, what)
				case 12:
					maxMsgs, maxBytes = rng.IntN(4*chunkLen), int64(rng.IntN(40*chunkLen))
					what = fmt.Sprintf("setBounds %d %d", maxMsgs, maxBytes)
					ref.maxMsgs, ref.maxBytes = maxMsgs, maxBytes
					q.setBounds(maxMsgs, maxBytes)
				}
				// The counts after every step; the whole queue after the reordering
				// operations and every 8th step.
				require.Equal(t, len(ref.msgs), q.len(), "step %d: after %s: length", step, what)
				require.Equal(t, ref.bytes, q.bytes, "step %d: after %s: bytes", step, what)
				require.Equal(t, ref.taken, q.taken, "step %d: after %s: taken", step, what)
				require.Equal(t, ref.inflight, q.inflight, "step %d: after %s: in flight", step, what)
				if step%8 != 0 && op != 4 && op != 6 && op != 7 && op != 11 {
					continue
				}
				requireSameMsgs(t, ref.msgs, q.q.appendTo(nil, q.q.n), "step %d: after %s: the queue", step, what)
				var walked []outMsg
				for i, m := range q.q.all() {
					if i != len(walked) {
						t.Fatalf("step %d: all yielded index %d for message %d", step, i, len(walked))
					}
					walked = append(walked, *m)
				}
				requireSameMsgs(t, ref.msgs, walked, "step %d: after %s: the queue walked", step, what)
			}
		})
	}
}

// TestFIFOBoundsExactAtTheEdges: a message that fills the count or the
// bytes to the bound exactly is taken; one more message, or one byte
// more, is refused; whatever leaves the queue makes room for exactly
// that much again.
func TestFIFOBoundsExactAtTheEdges(t *testing.T) {
	const n = 3*chunkLen + 1
	q := newFIFO(n, 1<<30)
	for i := range n {
		require.True(t, q.put("c", strconv.Itoa(i)), "message %d of %d", i+1, n)
	}
	require.False(t, q.put("c", "x"), "one more than the count bound")
	require.Len(t, q.peek(2), 2)
	q.remove(1)
	require.True(t, q.put("c", "x"), "the room one message left")
	require.False(t, q.put("c", "y"))

	q = newFIFO(1<<20, 100)
	require.True(t, q.put("ch", strings.Repeat("x", 98)), "exactly the byte bound")
	require.False(t, q.put("", "x"), "one byte more than the byte bound")
	require.True(t, q.put("", ""), "an empty message adds no bytes")
	var held deque
	q.take(&held)
	require.False(t, q.put("", "x"), "the taken messages still hold their bytes")
	m := held.popFront()
	q.release(&m)
	require.True(t, q.put("c", strings.Repeat("x", 99)), "the room the released message left, to the byte")
	require.False(t, q.put("", "x"))
}

// requireSameMsgs compares messages by what a test sets in them
// (require.Equal on thousands of them per step is too slow under -race).
func requireSameMsgs(t *testing.T, want, got []outMsg, format string, args ...any) {
	t.Helper()
	same := len(want) == len(got)
	for i := 0; same && i < len(want); i++ {
		w, g := want[i], got[i]
		same = w.channel == g.channel && w.payload == g.payload && w.durableID() == g.durableID() && w.heartbeat() == g.heartbeat()
	}
	if !same {
		require.Equal(t, want, got, append([]any{format}, args...)...)
	}
}

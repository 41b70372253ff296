package redisbus

import (
	"fmt"
	"math/rand/v2"
	"strconv"
	"testing"
)

// TestFIFONoLostWakeUp interleaves, at random (seeds printed; replay with
// REDISBUS_FIFO_SEED), the producers' operations on a fifo with the steps
// of its consumer as the bus runs them: the writer (wait on sig, then peek
// and answer batches until peek finds nothing, a failed batch kept at the
// head and sent again) and the deliverer (wait on sig, then take the
// backlog and release it message by message, then wait again without
// looking: deliver). Since
// put signals only when the queue goes from empty to not empty, after
// every step a consumer that sleeps must have a wake-up waiting whenever
// a message waits: else that message sits in the queue until the next
// put that finds it empty, which may never come.
func TestFIFONoLostWakeUp(t *testing.T) {
	for _, seed := range fifoSeeds(t, 8) {
		for _, inbox := range []bool{false, true} {
			t.Run(fmt.Sprint(seed, "/inbox=", inbox), func(t *testing.T) {
				t.Logf("seed %d (replay: REDISBUS_FIFO_SEED=%d)", seed, seed)
				rng := rand.New(rand.NewPCG(seed, seed^0x3a3a))
				q := newFIFO(1+rng.IntN(3*chunkLen), int64(1+rng.IntN(30*chunkLen)))
				serial := 0
				msg := func() outMsg {
					serial++
					m := outMsg{channel: "c", payload: strconv.Itoa(serial)}
					if rng.IntN(3) == 0 {
						m.x = &outExtra{id: "srv-" + strconv.Itoa(serial)}
					}
					return m
				}
				asleep := true
				var batch []outMsg // the writer's batch in flight
				var held deque     // the deliverer's backlog
				for step := range 3000 {
					what := ""
					switch op := rng.IntN(10); {
					case op < 3:
						n := 1 + rng.IntN(chunkLen)
						what = fmt.Sprintf("put x%d", n)
						for range n {
							q.putMsg(msg())
						}
					case op == 3:
						what = "force"
						q.force(msg())
					case op == 4 && !inbox:
						n := rng.IntN(2 * chunkLen)
						what = fmt.Sprintf("prepend x%d", n)
						ms := make([]outMsg, n)
						for i := range ms {
							ms[i] = msg()
						}
						q.prepend(ms)
					case op == 5 && !inbox:
						what = "takeDurable(false) (Persist)"
						q.takeDurable(false)
					case op == 5:
						what = "setBounds"
						q.setBounds(1+rng.IntN(3*chunkLen), int64(1+rng.IntN(30*chunkLen)))
					default: // a step of the consumer
						switch {
						case asleep:
							what = "consumer wakes if signalled"
							select {
							case <-q.sig:
								asleep = false
							default:
							}
							if !asleep && inbox { // deliver takes at once
								if q.take(&held); held.n == 0 {
									asleep = true
								}
							}
						case inbox && held.n > 0:
							n := 1 + rng.IntN(held.n)
							what = fmt.Sprintf("release %d of %d", n, held.n)
							for range n {
								m := held.popFront()
								q.release(&m)
							}
							asleep = held.n == 0 // back to waiting on sig
						case batch != nil:
							answered := rng.IntN(len(batch) + 1)
							if rng.IntN(3) != 0 {
								answered = len(batch)
							}
							what = fmt.Sprintf("answer %d of %d", answered, len(batch))
							q.replaceHead(answered, nil)
							batch = nil
						default:
							what = "peek"
							if batch = q.peek(1 + rng.IntN(2*chunkLen)); len(batch) == 0 {
								batch, asleep = nil, true
							}
						}
					}
					if asleep && q.len() > 0 && len(q.sig) == 0 {
						t.Fatalf("step %d: after %s: %d messages wait and the consumer sleeps without a wake-up", step, what, q.len())
					}
				}
			})
		}
	}
}

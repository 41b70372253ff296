package router

import (
	"fmt"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func msg(payload string) *Event { return &Event{Kind: KindMessage, Payload: payload} }

func payloads(q *Queue) []string {
	var out []string
	q.Drain(1<<30, 0, func(e *Event) { out = append(out, e.Payload) })
	return out
}

func TestQueueOverflowPolicies(t *testing.T) {
	q := NewQueue(3, 1<<20, true)
	for _, p := range []string{"1", "2", "3", "4", "5"} {
		q.Push(msg(p))
	}
	assert.Equal(t, []string{"3", "4", "5"}, payloads(q), "drop_oldest keeps the newest")
	assert.Equal(t, uint64(2), q.Dropped())

	q = NewQueue(3, 1<<20, false)
	for _, p := range []string{"1", "2", "3", "4", "5"} {
		q.Push(msg(p))
	}
	assert.Equal(t, []string{"1", "2", "3"}, payloads(q), "drop_newest keeps the oldest")
	assert.Equal(t, uint64(2), q.Dropped())
}

func TestQueueByteBudget(t *testing.T) {
	q := NewQueue(100, 10, true)
	q.Push(msg("aaaa"))
	q.Push(msg("bbbb"))
	q.Push(msg("cccc")) // 12 bytes > 10: the oldest goes
	assert.Equal(t, int64(8), q.Bytes())
	assert.Equal(t, []string{"bbbb", "cccc"}, payloads(q))
	assert.Equal(t, int64(0), q.Bytes())

	big := msg(strings.Repeat("x", 20)) // larger than the whole budget: dropped, evicting nothing
	q.Push(msg("a"))
	assert.Equal(t, []*Event{big}, q.Push(big))
	assert.Equal(t, []string{"a"}, payloads(q))
}

func TestQueueStatusEventsAreNeverDropped(t *testing.T) {
	q := NewQueue(2, 1<<20, true)
	q.Push(&Event{Kind: KindStatus, Status: StatusConnected})
	q.Push(msg("1"))
	q.Push(msg("2")) // full: the oldest message goes, not the status event before it
	q.Push(&Event{Kind: KindStatus, Status: StatusDisconnected})
	var kinds []string
	q.Drain(10, 0, func(e *Event) { kinds = append(kinds, fmt.Sprint(e.Kind, e.Payload)) })
	assert.Equal(t, []string{"1", "02", "1"}, kinds)
}

func TestQueueDrainBounds(t *testing.T) {
	q := NewQueue(100, 1<<20, true)
	for i := 0; i < 10; i++ {
		q.Push(msg("x"))
	}
	assert.Equal(t, 3, q.Drain(3, 0, func(*Event) {}))
	assert.Equal(t, 7, q.Pending())
	n := q.Drain(100, time.Millisecond, func(*Event) { time.Sleep(2 * time.Millisecond) })
	assert.Equal(t, 1, n, "the budget stops the drain after the event that overran it")
	assert.Equal(t, 6, q.Drain(100, 0, func(*Event) {}))
	assert.Nil(t, q.Pop())
}

// TestQueueManyProducers: under -race, many producers and one consumer lose
// nothing but what the policy drops, and every drop is counted.
func TestQueueManyProducers(t *testing.T) {
	for _, dropOldest := range []bool{true, false} {
		q := NewQueue(1000, 1<<20, dropOldest)
		const producers, each = 8, 5000
		var wg sync.WaitGroup
		for p := 0; p < producers; p++ {
			wg.Add(1)
			go func(p int) {
				defer wg.Done()
				for i := 0; i < each; i++ {
					q.Push(&Event{Kind: KindMessage, Channel: fmt.Sprint(p), Payload: fmt.Sprint(i)})
				}
			}(p)
		}
		done, produced := make(chan struct{}), make(chan struct{})
		consumed := 0
		last := map[string]int{}
		ordered := true
		go func() {
			defer close(done)
			for {
				n := q.Drain(100, 0, func(e *Event) {
					consumed++
					var i int
					fmt.Sscan(e.Payload, &i)
					if prev, ok := last[e.Channel]; ok && i <= prev {
						ordered = false
					}
					last[e.Channel] = i
				})
				if n == 0 {
					select {
					case <-produced:
						if q.Pending() == 0 {
							return
						}
					default:
						runtime.Gosched()
					}
				}
			}
		}()
		wg.Wait()
		close(produced)
		<-done
		require.Equal(t, producers*each, consumed+int(q.Dropped()), "dropOldest=%v", dropOldest)
		assert.True(t, ordered, "each producer's events stay in order")
	}
}

func BenchmarkQueuePushDrain(b *testing.B) {
	q := NewQueue(10000, 8<<20, true)
	e := msg("payload")
	b.ReportAllocs()
	for b.Loop() {
		q.Push(e)
		q.Pop()
	}
}

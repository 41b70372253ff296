package redisbus

import (
	"math/rand"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/gmod-realtime/realtime/internal/redistest"
)

// pipeSink refuses at random (seeded) and counts the entries it holds
// unacked, so a test can see the in-flight bound, the order and copies
// while a read's batch is offered beside the next read.
type pipeSink struct {
	mu      sync.Mutex
	rng     *rand.Rand
	ch      chan Entry
	out     int // accepted, not acked yet
	maxOut  int
	order   []string
	refuses int
}

func (s *pipeSink) Entry(e Entry) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.rng.Intn(8) == 0 {
		s.refuses++
		return false
	}
	select {
	case s.ch <- e:
	default:
		return false
	}
	s.out++
	s.maxOut = max(s.maxOut, s.out)
	s.order = append(s.order, e.ID)
	return true
}

func (s *pipeSink) StreamEvent(stream, kind, detail string) {}

// TestStreamPipelinedBatchSchedules: entries added in bursts while the
// handler acks at a random pace and the sink refuses at random are each
// handed out once, in the stream's order, never more than MaxInFlight at
// a time, and Close returns with some still unacked.
func TestStreamPipelinedBatchSchedules(t *testing.T) {
	for round := 0; round < 4; round++ {
		seed := time.Now().UnixNano() + int64(round)
		t.Logf("seed %d", seed)
		rng := rand.New(rand.NewSource(seed))
		srv := redistest.Start(t)
		c := client(t, srv)
		const maxIn = 7
		sink := &pipeSink{rng: rand.New(rand.NewSource(seed + 1)), ch: make(chan Entry, 64)}
		r := startReader(t, srv.Addr(), "srv1", []StreamSpec{{Stream: "s", Group: "g", Start: "0"}}, sink,
			StreamOptions{Count: 2, MaxCount: 16, MaxInFlight: maxIn, Block: 50 * time.Millisecond})
		var ids []string
		n := 150 + rng.Intn(100)
		acked := make(chan struct{})
		go func() {
			defer close(acked)
			lrng := rand.New(rand.NewSource(seed + 2))
			for got := 0; got < n-5; got++ {
				var e Entry
				select {
				case e = <-sink.ch:
				case <-time.After(20 * time.Second):
					return
				}
				if lrng.Intn(4) == 0 {
					time.Sleep(time.Duration(lrng.Intn(500)) * time.Microsecond) // a handler's pace
				}
				sink.mu.Lock()
				sink.out--
				sink.mu.Unlock()
				r.Ack(e.Stream, e.Group, e.ID)
			}
		}()
		for len(ids) < n {
			for k := 1 + rng.Intn(20); k > 0 && len(ids) < n; k-- {
				ids = append(ids, xadd(t, c, "s", "i", "x"))
			}
			if rng.Intn(3) == 0 {
				time.Sleep(time.Duration(rng.Intn(3)) * time.Millisecond)
			}
		}
		<-acked
		waitUntil(t, "all but the last entries handed out", 20*time.Second, func() bool {
			sink.mu.Lock()
			defer sink.mu.Unlock()
			return len(sink.order) >= n-5
		})
		r.Close()
		r.Wait()
		sink.mu.Lock()
		got := append([]string(nil), sink.order...)
		maxOut := sink.maxOut
		sink.mu.Unlock()
		require.LessOrEqual(t, maxOut, maxIn, "seed %d: in flight past MaxInFlight", seed)
		require.Equal(t, ids[:len(got)], got, "seed %d: each once, in order", seed)
	}
}

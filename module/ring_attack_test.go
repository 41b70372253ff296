package main

import (
	"fmt"
	"testing"
	"time"

	"github.com/gmod-realtime/realtime/config"
	"github.com/gmod-realtime/realtime/module/api"
)

// TestRingNoLostWakeUpWithInFlight: an event queued while the main thread
// reads inFlight (GetStats' queue.depth) reaches the ring. fill gives up
// when another goroutine holds the ring's lock and leaves a mark for it;
// inFlight took the lock without looking at the mark, so the event stayed
// in the queue, with the feeder asleep until the pump made room: nothing
// moved it until the next event arrived.
func TestRingNoLostWakeUpWithInFlight(t *testing.T) {
	m := api.Start(api.Options{Config: config.Options{Dir: t.TempDir(), Environ: []string{}}, Queued: fill})
	saved := mod
	mod = m
	t.Cleanup(func() { feed.mod.Store(nil); m.Stop(); mod = saved })
	if _, _, err := m.On("lost", "lost", api.OnOptions{}); err != nil {
		t.Fatal(err)
	}
	startFeeder(m)
	q := m.Router().Queue()
	// The ring takes a quarter of the queue (2,500 events) and nothing here
	// dispatches: stay well below.
	deadline := time.Now().Add(10 * time.Second)
	for i := range 1500 {
		if time.Now().After(deadline) {
			break
		}
		stop, done, running := make(chan struct{}), make(chan struct{}), make(chan struct{})
		go func() {
			defer close(done)
			inFlight()
			close(running)
			for {
				select {
				case <-stop:
					return
				default:
					inFlight()
				}
			}
		}()
		<-running
		m.Router().Deliver("lost", fmt.Sprint(i))
		close(stop)
		<-done
		// Deliver returned after fill; the reader of inFlight has stopped
		// and the feeder sleeps until the pump consumes: nobody else will
		// move this event.
		if n := q.Pending(); n != 0 {
			t.Fatalf("event %d: %d events left in the queue, stuck: the feeder sleeps (the ring holds %d events with the status event)", i, n, inFlight())
		}
	}
}

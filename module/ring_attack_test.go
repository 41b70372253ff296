package main

import (
	"fmt"
	"testing"
	"time"
	"unsafe"

	"github.com/gmod-realtime/realtime/config"
	"github.com/gmod-realtime/realtime/module/api"
	"github.com/gmod-realtime/realtime/router"
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
	emptyRing()
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

// TestRingDropIsNotUndispatched: an event that cannot be put in the ring
// (a panic: out of memory) is counted as dropped.internal and leaves the
// dispatched count alone. It was never counted as dispatched (the ring
// counts an event once the pump has run it), yet BatchFailed took one off:
// GetStats' dispatched went below the events handled, and from 0 wrapped
// to 18446744073709551615.
func TestRingDropIsNotUndispatched(t *testing.T) {
	m := api.Start(api.Options{Config: config.Options{Dir: t.TempDir(), Environ: []string{}}})
	savedTake, savedMod := take, mod
	mod = m
	t.Cleanup(func() { m.Stop(); mod, take = savedMod, savedTake })
	emptyRing()
	if _, _, err := m.On("x", "x", api.OnOptions{}); err != nil {
		t.Fatal(err)
	}
	// A payload past the most a tape holds (1 GiB; only its length is
	// read, and it points at C memory, which checkptr leaves alone): put
	// panics on it as on a failed allocation.
	e := &router.Event{Kind: router.KindMessage, Channel: "x", Route: m.Router().Table().Routes()[0],
		Payload: unsafe.String((*byte)(unsafe.Pointer(slot(0))), 1<<30+1)}
	calls := 0
	take = func(*api.Module) (api.Dispatch, bool) {
		if calls++; calls > 1 {
			return api.Dispatch{}, false
		}
		return api.Dispatch{Event: e, Handler: "x"}, true
	}
	setAhead(m)
	feed.mu.Lock()
	fillLocked(m)
	feed.mu.Unlock()
	s := &m.Router().Stats
	if got := s.Dropped()[router.DropInternal]; got != 1 {
		t.Fatalf("dropped.internal = %d, want 1", got)
	}
	if got := s.Dispatched.Load(); got != 0 {
		t.Fatalf("dispatched = %d after an event was dropped before the pump saw it, want 0", got)
	}
}

// TestRingFinishPanicReleasesLock: a panic while finish counts outcomes
// (a bug; the guard turns it into an error) leaves the ring's lock free.
// finish held it without defer: the next GetStats or failing handler
// blocked the main thread for good, and the feeder with it.
func TestRingFinishPanicReleasesLock(t *testing.T) {
	m := api.Start(api.Options{Config: config.Options{Dir: t.TempDir(), Environ: []string{}}})
	savedTake, savedMod := take, mod
	mod = m
	t.Cleanup(func() { feed.mod.Store(nil); m.Stop(); mod, take = savedMod, savedTake })
	if _, _, err := m.On("x", "x", api.OnOptions{}); err != nil {
		t.Fatal(err)
	}
	emptyRing()
	e := &router.Event{Kind: router.KindMessage, Channel: "x", Route: m.Router().Table().Routes()[0]}
	calls := 0
	take = func(*api.Module) (api.Dispatch, bool) {
		if calls++; calls > 1 {
			return api.Dispatch{}, false
		}
		return api.Dispatch{Event: e, Handler: "x"}, true
	}
	setAhead(m)
	feed.mu.Lock()
	fillLocked(m)
	var b *_Ctype_struct_rt_batch
	for i := range feed.calls {
		for k := range feed.calls[i] {
			if feed.calls[i][k].Event == e {
				b = slot(uint32(i))
			}
		}
	}
	feed.mu.Unlock()
	if b == nil {
		t.Fatal("the event is not in the ring")
	}
	// The pump has run the slot and given it back; counting the event
	// panics (a route without stats stands for the bug).
	e.Route = &router.Route{}
	b.cur = b.n
	state(b).Store(3) // RT_SLOT_USED
	feed.mod.Store(m)
	rtgo_finish()
	if !feed.mu.TryLock() {
		t.Fatal("the ring's lock is still held after a panic in finish: the main thread would block on the next GetStats")
	}
	feed.mu.Unlock()
}

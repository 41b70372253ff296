package main

/*
#include <stdlib.h>
#include "shim.h"
*/
import "C"

import (
	"fmt"
	"sync"
	"sync/atomic"
	"unsafe"

	"github.com/gmod-realtime/realtime/module/api"
	"github.com/gmod-realtime/realtime/router"
)

// The feeder fills the ring in C memory (shim.h, rt_ring) from the queue,
// off the main thread, so that ProcessEvents never waits for the Go
// runtime: a C thread entering Go needs a P, and while the reader and
// router goroutines hold both of a small machine's, it waited up to 12 ms
// (make bench, frames). fill runs on whichever goroutine queued an event
// (Options.Queued) and on the feeder goroutine, which the pump wakes when
// it has used a slot. The main thread enters Go only to count outcomes
// that need a log line before ProcessEvents returns (finish), and for
// GetStats.

// take is api.Module.Take; a test replaces it.
var take = (*api.Module).Take

// slotKeep is the most tape bytes a slot keeps between uses.
const slotKeep = 256 << 10

var feed struct {
	mu    sync.Mutex
	dirty atomic.Bool // an event was queued while another goroutine filled
	mod   atomic.Pointer[api.Module]
	tail  uint32                     // the next slot to fill
	calls [C.RT_SLOTS][]api.Dispatch // each slot's handler calls
	done  [C.RT_SLOTS]int            // of those, the ones whose outcome was counted
	ahead atomic.Int64               // the most events the ring holds ahead of the pump
	held  atomic.Int64               // events in ready slots
	limit atomic.Int64               // the most payload bytes the ring holds
	size  [C.RT_SLOTS]atomic.Int64   // events of each ready slot, for held
}

func slot(i uint32) *C.rt_batch { return &C.rt_events.slots[i%C.RT_SLOTS] }

func state(b *C.rt_batch) *atomic.Int32 { return (*atomic.Int32)(unsafe.Pointer(&b.state)) }

// startFeeder starts the feeder goroutine for m, once.
func startFeeder(m *api.Module) {
	if C.rt_ring_init(0) == 0 {
		panic("cannot make the event ring's semaphore")
	}
	setAhead(m)
	feed.mod.Store(m)
	go func() {
		for {
			C.rt_ring_wait(0)
			fill()
		}
	}()
	fill()
}

// setAhead bounds what the ring holds by the queue's limits: an eighth of
// them (at most RT_SLOTS*RT_SLOT_EVENTS events), so that the overflow
// policy still has the rest to choose from while the pump is stopped.
func setAhead(m *api.Module) {
	q := m.Config().Queue
	feed.ahead.Store(int64(min(max(q.MaxEvents/8, 1), C.RT_SLOTS*C.RT_SLOT_EVENTS)))
	feed.limit.Store(max(int64(q.MaxBytes)/8, 1))
}

// fill moves queued events into free slots, and counts the outcomes of
// used ones. Any goroutine may call it; one fills at a time, and an event
// queued meanwhile makes that one look again.
func fill() {
	feed.dirty.Store(true)
	for feed.mod.Load() != nil && feed.mu.TryLock() {
		feed.dirty.Store(false)
		fillLocked(feed.mod.Load())
		feed.mu.Unlock()
		if !feed.dirty.Load() {
			return
		}
	}
}

// fillMain fills the ring on the main thread, for a pump that found it
// dry with events queued: it waits for a feeder that is filling.
func fillMain() C.int {
	if m := feed.mod.Load(); m != nil {
		feed.mu.Lock()
		fillLocked(m)
		feed.mu.Unlock()
		fill() // an event queued meanwhile
	}
	return C.RT_OK
}

// finish counts the outcomes of the events dispatched so far, those of
// the slot the pump is in included; on the main thread only.
func finish() C.int {
	m := feed.mod.Load()
	if m == nil {
		return C.RT_OK
	}
	feed.mu.Lock()
	reap(m)
	if b := slot(uint32(C.rt_events.head)); state(b).Load() == C.RT_SLOT_READY {
		count(m, uint32(C.rt_events.head)%C.RT_SLOTS, int(b.cur))
	}
	feed.mu.Unlock()
	fill() // slots were freed, and the feeder may have found the lock taken
	return C.RT_OK
}

// inFlight is the number of events in the ring not yet dispatched; on the
// main thread only.
func inFlight() int {
	n := 0
	for i := range uint32(C.RT_SLOTS) {
		if b := slot(i); state(b).Load() == C.RT_SLOT_READY {
			n += int(b.n - b.cur)
		}
	}
	return n
}

// reap counts the outcomes of used slots and frees them.
func reap(m *api.Module) {
	for i := range uint32(C.RT_SLOTS) {
		b := slot(i)
		if state(b).Load() != C.RT_SLOT_USED {
			continue
		}
		count(m, i, int(b.n))
		clear(feed.calls[i])
		feed.calls[i] = feed.calls[i][:0]
		feed.done[i] = 0
		feed.held.Add(-feed.size[i].Swap(0))
		b.n, b.cur, b.started, b.tape.n, b.tape.nbytes = 0, 0, 0, 0, 0
		if b.tape.bcap > slotKeep || b.tape.cap > slotKeep/32 { // give back a burst of big payloads
			C.free(unsafe.Pointer(b.tape.bytes))
			C.free(unsafe.Pointer(b.tape.nodes))
			b.tape = C.rt_tape{}
		}
		state(b).Store(C.RT_SLOT_FREE)
	}
}

// count counts the outcomes of slot i's events up to upto.
func count(m *api.Module, i uint32, upto int) {
	b := slot(i)
	events := unsafe.Slice(b.events, b.cap)
	for k := feed.done[i]; k < upto; k++ {
		ev := &events[k]
		var msg string
		if ev.err != nil {
			msg = C.GoStringN(ev.err, C.int(ev.errlen))
			C.free(unsafe.Pointer(ev.err))
			ev.err = nil
		}
		m.Finish(&feed.calls[i][k], ev.outcome == C.RT_EV_NO_HANDLER, int64(b.started), int(ev.failed), msg)
	}
	feed.done[i] = max(feed.done[i], upto)
}

func fillLocked(m *api.Module) {
	reap(m)
	for feed.held.Load() < feed.ahead.Load() {
		i := feed.tail % C.RT_SLOTS
		b := slot(i)
		if state(b).Load() != C.RT_SLOT_FREE {
			return // the pump has not used it yet: it wakes the feeder when it has
		}
		if !fillSlot(m, i, b) {
			return
		}
		feed.tail++
	}
}

// fillSlot fills free slot i and hands it to the pump; false when the
// queue had nothing. A panic drops the slot's events, counted.
func fillSlot(m *api.Module, i uint32, b *C.rt_batch) (ok bool) {
	calls := feed.calls[i][:0]
	defer func() {
		if p := recover(); p != nil {
			m.BatchFailed(calls, fmt.Sprint(p))
			clear(calls)
			feed.calls[i] = calls[:0]
			b.n, b.tape.n, b.tape.nbytes = 0, 0, 0
			ok = false
		}
	}()
	if C.rt_reserve_events(b, C.RT_SLOT_EVENTS) == 0 {
		panic("out of memory")
	}
	events := unsafe.Slice(b.events, b.cap)
	room := min(int64(C.RT_SLOT_EVENTS), feed.ahead.Load()-feed.held.Load())
	limit := feed.limit.Load()
	var bytes int64
	for int64(len(calls)) < room && (len(calls) == 0 || bytes < limit/C.RT_SLOTS) {
		d, ok := take(m)
		if !ok {
			break
		}
		calls = append(calls, d)
		ev := &events[b.n]
		b.n++
		*ev = C.rt_event{hook: putStrIn(&b.tape, d.Hook)}
		e := d.Event
		bytes += int64(len(e.Payload) + len(e.Channel))
		if e.Kind == router.KindStatus {
			ev.status = 1
			ev.reason = putStrIn(&b.tape, e.Note)
			continue
		}
		ev.channel = putStrIn(&b.tape, e.Channel)
		ev.pattern = putStrIn(&b.tape, e.Route.Pattern())
		ev.route = putStrIn(&b.tape, e.Route.Name)
		switch {
		case d.Hook != "":
		case e.Route.Dynamic:
			ev.handler, ev.dynamic = ev.route, 1
		default:
			ev.handler = putStrIn(&b.tape, d.Handler)
		}
		ev.received = C.double(float64(e.Received) / 1e6)
		if e.JSON != nil {
			ev.json, ev.node = 1, putDocIn(&b.tape, e.JSON)
		} else {
			ev.payload = putStrIn(&b.tape, e.Payload)
		}
	}
	feed.calls[i] = calls
	if len(calls) == 0 {
		return false
	}
	feed.size[i].Store(int64(len(calls)))
	feed.held.Add(int64(len(calls)))
	state(b).Store(C.RT_SLOT_READY)
	return true
}

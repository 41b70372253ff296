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

// The ring (shim.h, rt_ring) takes queued events to the main thread in C
// memory, so that ProcessEvents never waits for the Go runtime: a C thread
// entering Go needs a P, and while the reader and router goroutines held
// both of a small machine's, the pump waited up to 12 ms for one (make
// bench, frames). fill runs on the goroutine that queued an event
// (Options.Queued) and on the feeder goroutine, which sleeps (ringWait) until
// the pump has made room. The main thread enters Go only to count the
// outcomes that must be logged before ProcessEvents returns (finish), and
// for GetStats.

// take is api.Module.Take; a test replaces it.
var take = (*api.Module).Take

const (
	slotBytes = 64 << 10 // a slot's tape: its events' strings, unless one event needs more
	slotNodes = 1024     // and JSON nodes
)

var feed struct {
	mu    sync.Mutex
	dirty atomic.Bool // an event was queued while another goroutine filled
	mod   atomic.Pointer[api.Module]
	ahead atomic.Int64 // the most events in the ring
	limit atomic.Int64 // the most payload bytes in the ring (but one event)

	// Guarded by mu.
	tail  uint32 // the slot Go appends to
	calls [C.RT_SLOTS][C.RT_SLOT_EVENTS]api.Dispatch
	done  [C.RT_SLOTS]uint32 // events of the slot whose outcome was counted
	// events of the slot whose stream entries were settled
	settled [C.RT_SLOTS]uint32
	bytes   [C.RT_SLOTS]int64 // payload bytes of the slot's events
	last    [C.RT_SLOTS]strs  // the slot's last event's strings
	held    int64             // payload bytes in the ring
	carry   *api.Dispatch     // taken from the queue, waiting for room
	outs    []api.Outcome     // count's stream entries, reused

	// carried: an event has left the queue and is not in the ring yet (the
	// carry, or one being put), for inFlight: the main thread must not take
	// mu there, or a goroutine's fill that finds mu taken leaves its event
	// in the queue with nobody to look at dirty.
	carried atomic.Bool

	published atomic.Uint64 // events put in the ring, ever (written under mu)
}

func slot(i uint32) *C.rt_batch { return &C.rt_events.slots[i%C.RT_SLOTS] }

func state(b *C.rt_batch) *atomic.Int32 { return (*atomic.Int32)(unsafe.Pointer(&b.state)) }

func published(b *C.rt_batch) *atomic.Uint32 { return (*atomic.Uint32)(unsafe.Pointer(&b.n)) }

func consumed() uint64 { return (*atomic.Uint64)(unsafe.Pointer(&C.rt_events.consumed)).Load() }

func filling() *atomic.Int32 { return (*atomic.Int32)(unsafe.Pointer(&C.rt_events.filling)) }

var feeder sync.Once

// startFeeder makes m the module the ring is filled from, and starts the
// feeder goroutine once.
func startFeeder(m *api.Module) {
	feeder.Do(func() {
		if C.rt_ring_init(0) == 0 {
			panic("cannot make the event ring's wake-up (eventfd or semaphore)")
		}
		ringWaitInit()
		go feedLoop()
	})
	setAhead(m)
	feed.mod.Store(m)
	fill()
}

// feedLoop fills the ring whenever the pump has made room.
func feedLoop() {
	for {
		until := consumed() + 1
		if m := feed.mod.Load(); m != nil {
			feed.mu.Lock()
			full := fillLocked(m)
			until = feed.published.Load() // all consumed: used slots to free
			if full {
				until = min(consumed()+uint64(half()), feed.published.Load())
			}
			feed.mu.Unlock()
			fill() // an event queued while the lock was held
		}
		ringWait(uint64(max(until, consumed()+1)))
	}
}

// setAhead bounds what the ring holds by the queue's limits: a quarter of
// them (at most RT_SLOTS*RT_SLOT_EVENTS, 8,192 events: more than a 2 ms
// budget dispatches), so that the overflow policy still has the rest to
// choose from while the pump is stopped.
func setAhead(m *api.Module) {
	q := m.Config().Queue
	feed.ahead.Store(int64(min(max(q.MaxEvents/4, 1), C.RT_SLOTS*C.RT_SLOT_EVENTS)))
	feed.limit.Store(max(int64(q.MaxBytes)/4, 1))
}

func half() int64 { return max(feed.ahead.Load()/2, 1) }

// queued is Options.Queued. The goroutine that queued an event fills the
// ring itself while the ring holds less than half its share (no hand-off
// at ordinary rates); past that, the feeder does, woken by the pump, and
// in a flood the router goroutine keeps to reading and routing.
func queued() {
	if int64(feed.published.Load()-consumed()) < half() {
		fill()
	}
}

// fill moves queued events into the ring. Any goroutine may call it; one
// fills at a time, and an event queued meanwhile makes that one look again.
func fill() {
	feed.dirty.Store(true)
	for m := feed.mod.Load(); m != nil && feed.mu.TryLock(); {
		feed.dirty.Store(false)
		fillLocked(m)
		feed.mu.Unlock()
		if !feed.dirty.Load() {
			return
		}
	}
}

// finish counts the outcomes of the events dispatched so far; on the main
// thread.
func finish() C.int {
	m := feed.mod.Load()
	if m == nil {
		return C.RT_OK
	}
	func() {
		feed.mu.Lock()
		defer feed.mu.Unlock() // a panic (guarded) must not leave the main thread blocked on the next call
		reap(m)
		head := uint32(C.rt_events.head)
		if b := slot(head); state(b).Load() != C.RT_SLOT_FREE {
			// a handler calling GetStats: its own event's outcome is not known yet
			count(m, head%C.RT_SLOTS, uint32(b.cur)-uint32(C.rt_events.busy))
		}
	}()
	fill() // room was made, and a goroutine may have found the lock taken
	return C.RT_OK
}

// inFlight is the number of events taken from the queue and not yet
// dispatched; on the main thread.
func inFlight() int {
	n := 0
	for i := range uint32(C.RT_SLOTS) {
		if b := slot(i); state(b).Load() != C.RT_SLOT_FREE {
			n += int(published(b).Load() - uint32(b.cur))
		}
	}
	if feed.carried.Load() {
		n++
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
		count(m, i, uint32(b.n))
		clear(feed.calls[i][:b.n])
		feed.done[i], feed.settled[i] = 0, 0
		feed.held -= feed.bytes[i]
		feed.bytes[i] = 0
		b.n, b.cur, b.tape.n, b.tape.nbytes = 0, 0, 0, 0
		if b.tape.bcap > slotBytes || b.tape.cap > slotNodes { // give back a big event's memory
			C.free(unsafe.Pointer(b.tape.bytes))
			C.free(unsafe.Pointer(b.tape.nodes))
			b.tape = C.rt_tape{}
		}
		state(b).Store(C.RT_SLOT_FREE)
	}
}

// count counts the outcomes of slot i's events up to upto.
func count(m *api.Module, i, upto uint32) {
	b := slot(i)
	if upto == 0 {
		return
	}
	events := unsafe.Slice(b.events, b.cap)
	// The stream entries' outcomes first, in one batch, settled once even
	// if settling them panics
	outs := feed.outs[:0]
	from := max(feed.done[i], feed.settled[i])
	feed.settled[i] = max(from, upto)
	for k := from; k < upto; k++ {
		if d := &feed.calls[i][k]; d.Event != nil && d.Event.Entry != nil {
			ev := &events[k]
			outs = append(outs, api.Outcome{D: d, NoHandler: ev.outcome == C.RT_EV_NO_HANDLER, Failed: int(ev.failed)})
		}
	}
	if len(outs) > 0 {
		m.Settle(outs)
		clear(outs)
	}
	feed.outs = outs[:0]
	for k := feed.done[i]; k < upto; k++ {
		feed.done[i] = k + 1 // counted once, even if counting it panics
		ev := &events[k]
		var msg string
		if ev.err != nil {
			msg = C.GoStringN(ev.err, C.int(ev.errlen))
			C.free(unsafe.Pointer(ev.err))
			ev.err = nil
		}
		m.Count(&feed.calls[i][k], ev.outcome == C.RT_EV_NO_HANDLER, int64(ev.at), int(ev.failed), msg)
	}
	feed.done[i] = max(feed.done[i], upto)
}

// fillLocked frees used slots and moves queued events into the ring until
// the queue is empty (false) or the ring is full (true).
func fillLocked(m *api.Module) (full bool) {
	filling().Store(1)
	defer func() {
		filling().Store(0)
		if p := recover(); p != nil { // a bug: logged, never a crash of a goroutine
			m.BatchFailed(nil, fmt.Sprint(p))
			feed.carried.Store(feed.carry != nil)
			full = false
		}
	}()
	reap(m)
	// consumed as last read: the pump writes it once per event, and a
	// read on every put would take its cache line from the pump each
	// time; it only grows, so an old value only makes the ring look fuller
	seen := consumed()
	for {
		b := slot(feed.tail)
		if feed.held >= feed.limit.Load() && state(b).Load() == C.RT_SLOT_OPEN {
			// its bytes come back once it is used: seal it
			state(b).Store(C.RT_SLOT_SEALED)
			feed.tail++
			return true
		}
		if int64(feed.published.Load()-seen) >= feed.ahead.Load() {
			if seen = consumed(); int64(feed.published.Load()-seen) >= feed.ahead.Load() {
				return true
			}
		}
		if feed.held >= feed.limit.Load() {
			return true
		}
		switch state(b).Load() {
		case C.RT_SLOT_SEALED, C.RT_SLOT_USED:
			return true // the pump has not finished it (or Go has not freed it yet)
		case C.RT_SLOT_FREE:
			b.n, b.cur = 0, 0
		}
		var next api.Dispatch // on the stack: the heap has a copy only while carried
		if feed.carry != nil {
			next = *feed.carry
		} else {
			if m.Router().Queue().Pending() == 0 {
				return false
			}
			// counted by inFlight from before it leaves the queue until
			// it is in the ring (a moment counted twice, never missed)
			feed.carried.Store(true)
			var ok bool
			if next, ok = take(m); !ok {
				feed.carried.Store(false)
				return false
			}
		}
		feed.carry = nil
		if put(m, b, &next) {
			feed.carried.Store(false)
		} else { // no room left in the slot: seal it, the event goes in the next
			carry := next
			feed.carry = &carry
			state(b).Store(C.RT_SLOT_SEALED)
			feed.tail++
		}
	}
}

// need is what event d takes of a slot's tape.
func need(d *api.Dispatch) (bytes, nodes int) {
	e := d.Event
	bytes = len(d.Hook) + len(d.Handler) + len(e.Note) + len(e.Channel) + len(e.Payload)
	if e.Entry != nil {
		bytes += len(e.Entry.ID)
	}
	if e.Route != nil {
		bytes += len(e.Route.Name) + len(e.Route.Pattern())
	}
	if e.JSON != nil {
		nodes = len(e.JSON.Nodes)
		for i := range e.JSON.Nodes {
			bytes += len(e.JSON.Nodes[i].Str)
		}
	}
	return bytes, nodes
}

// strs are the last event's channel, pattern and route name in a slot's
// tape. An event whose string equals the previous event's shares its
// bytes: the pump then pushes the Lua string it made for that one
// (push_last in shim.c) instead of making it again.
type strs struct{ channel, pattern, route lastStr }

type lastStr struct {
	s  string
	at C.rt_str
}

// put returns s in t: where the last one put is, when it is the same.
func (l *lastStr) put(t *C.rt_tape, s string) C.rt_str {
	if s != l.s {
		l.s, l.at = s, putStrIn(t, s)
	}
	return l.at
}

// put appends d to slot b (free or open) and publishes it; false when b
// has events and no room for d. A panic drops d, counted.
func put(m *api.Module, b *C.rt_batch, d *api.Dispatch) (ok bool) {
	defer func() {
		if p := recover(); p != nil {
			m.BatchFailed([]api.Dispatch{*d}, fmt.Sprint(p))
			ok = true // dropped: not carried
		}
	}()
	bytes, nodes := need(d)
	t := &b.tape
	i := uint32(uintptr(unsafe.Pointer(b))-uintptr(unsafe.Pointer(&C.rt_events.slots[0]))) / uint32(unsafe.Sizeof(*b))
	if b.n > 0 && (b.n >= C.RT_SLOT_EVENTS || int(t.nbytes)+bytes > int(t.bcap) || int(t.n)+nodes > int(t.cap)) {
		return false
	}
	if b.n == 0 { // the pump reads nothing of a slot with no event: its memory may move
		t.n, t.nbytes = 0, 0
		feed.last[i] = strs{}
		if C.rt_reserve_events(b, C.RT_SLOT_EVENTS) == 0 {
			panic("out of memory")
		}
		reserve(t, max(nodes, slotNodes), max(bytes, slotBytes))
	}
	ev := &unsafe.Slice(b.events, b.cap)[b.n]
	e := d.Event
	*ev = C.rt_event{hook: putStrIn(t, d.Hook)}
	if e.Kind == router.KindStatus {
		ev.status = 1
		ev.reason = putStrIn(t, e.Note)
	} else {
		l := &feed.last[i]
		ev.channel = l.channel.put(t, e.Channel)
		ev.pattern = l.pattern.put(t, e.Route.Pattern())
		ev.route = l.route.put(t, e.Route.Name)
		switch {
		case d.Hook != "":
		case e.Route.Dynamic:
			ev.handler, ev.dynamic = ev.route, 1
		default:
			ev.handler = putStrIn(t, d.Handler)
		}
		ev.received = C.double(float64(e.Received) / 1e6)
		if e.Entry != nil {
			ev.id = putStrIn(t, e.Entry.ID)
			ev.deliveries = C.double(e.Entry.Deliveries)
		}
		if e.JSON != nil {
			ev.json, ev.node = 1, putDocIn(t, e.JSON)
		} else {
			ev.payload = putStrIn(t, e.Payload)
		}
	}
	if staleRoute(m.Router().Table(), e) { // removed while it waited in the queue
		ev.removed = 1
	}
	feed.calls[i][b.n] = *d
	size := int64(len(e.Payload) + len(e.Channel))
	feed.bytes[i] += size
	feed.held += size
	// The tape holds the payload now; the outcome's counting needs neither
	// copy's bytes: the Go heap lets go of them while the event waits.
	e.Payload, e.JSON = "", nil
	feed.published.Add(1)
	published(b).Store(uint32(b.n) + 1)
	if state(b).Load() == C.RT_SLOT_FREE {
		state(b).Store(C.RT_SLOT_OPEN)
	}
	return true
}

// staleRoute reports whether e's realtime.On or realtime.Stream
// registration is no longer the one in the router's table t: removed (Off,
// a map change's sweep), and maybe made again since under the same route
// name, which is all the pump looks handlers up by. A registration
// replaced without being removed (On again, the same pattern and id) keeps
// its events: its route keeps its stats.
func staleRoute(t *router.Table, e *router.Event) bool {
	if e == nil || e.Route == nil || !e.Route.Dynamic {
		return false
	}
	cur := t.Route(e.Route.Name)
	return cur == nil || cur.Stats != e.Route.Stats
}

// markRemoved marks the events in the ring whose registration was removed
// (staleRoute), for the pump to count as no_handler whatever is registered
// under their route's name by then; on the main thread, after realtime.Off
// and the sweep of a map change. Events still in the queue are marked as
// they are put in the ring.
func markRemoved(m *api.Module) {
	func() {
		feed.mu.Lock()
		defer feed.mu.Unlock()
		t := m.Router().Table()
		for i := range uint32(C.RT_SLOTS) {
			b := slot(i)
			if s := state(b).Load(); s != C.RT_SLOT_OPEN && s != C.RT_SLOT_SEALED {
				continue
			}
			events := unsafe.Slice(b.events, b.cap)
			for k := uint32(b.cur); k < published(b).Load(); k++ {
				if staleRoute(t, feed.calls[i][k].Event) {
					events[k].removed = 1
				}
			}
		}
	}()
	fill() // a goroutine may have found the lock taken
}

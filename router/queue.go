package router

import (
	"sync"
	"sync/atomic"
	"time"
)

// EventKind tells a message from a status change.
type EventKind uint8

// Event kinds.
const (
	KindMessage EventKind = iota
	KindStatus
)

// Event is one message for one route, or a connection status change,
// waiting for the main thread.
type Event struct {
	Kind     EventKind
	Status   Status // KindStatus: the new status
	Channel  string
	Payload  string
	Route    *Route
	JSON     *Doc  // the parsed payload for a JSON route; nil if raw or invalid
	Received int64 // unix nanoseconds when the backend handed it over
	Queued   int64 // unix nanoseconds when it was queued (routed, decoded)
	// Note says why: for StatusDisconnected, why the connection was lost;
	// for a JSON route's message, why its payload was delivered raw. (One
	// field for both keeps a queued event small.)
	Note string
	// Entry is set for a stream route's entry: settle it (Router.Settle)
	// once its handler ran, or it is delivered again.
	Entry *Entry
	// copies is shared by the events of one message for several routes
	// (see Copies): their channel and payload are one memory, counted
	// once against the byte budget while any of them is queued.
	copies *Copies
}

// Entry identifies a stream entry in flight: Channel is its stream.
type Entry struct {
	ID, Group  string
	Deliveries int64 // this delivery included
	// settler is the backend that delivered it: it settles the entry when
	// no backend is attached any more (realtime.Disconnect), its reader
	// acknowledging late.
	settler Settler
}

// Copies ties together the events of one message, one per matching route,
// which share its channel, payload and parsed JSON. The queue's lock
// guards it.
type Copies struct {
	queued int // copies in the queue
	parsed int // of those, the ones holding the parsed JSON
}

// ShareWith makes e one of the copies c ties together; call it before
// pushing e.
func (e *Event) ShareWith(c *Copies) { e.copies = c }

// size is what an event's message counts against the byte budget: its
// payload, channel name and parsed JSON (tape and decoded strings).
func (e *Event) size() int64 {
	n := int64(len(e.Payload)) + int64(len(e.Channel))
	if e.JSON != nil {
		n += e.JSON.Bytes
	}
	return n
}

// cost is what queuing e adds to the queue's bytes (and removing it takes
// away, once uncounted from its Copies): what no other queued copy of its
// message already counts.
func (e *Event) cost() int64 {
	if e.copies == nil {
		return e.size()
	}
	var n int64
	if e.copies.queued == 0 {
		n += int64(len(e.Payload)) + int64(len(e.Channel))
	}
	if e.JSON != nil && e.copies.parsed == 0 {
		n += e.JSON.Bytes
	}
	return n
}

// Queue is a bounded multi-producer, single-consumer FIFO of events, bounded
// by count and by bytes. Push never blocks: when full, the overflow policy
// drops the oldest or the newest event and the drop is counted. Safe for
// concurrent use; Pending is one atomic load.
type Queue struct {
	mu         sync.Mutex
	buf        []*Event // ring
	head, n    int
	bytes      int64
	maxEvents  int
	maxBytes   int64
	dropOldest bool
	status     int // status events queued

	pending *atomic.Int64 // shared with the C shim's empty-queue check; see SharePending
	ownPend atomic.Int64
	drops   atomic.Uint64
}

// NewQueue returns a queue holding at most maxEvents events and maxBytes
// bytes of payload and channel names (those of a message queued for
// several routes count once).
func NewQueue(maxEvents int, maxBytes int64, dropOldest bool) *Queue {
	q := &Queue{buf: make([]*Event, 16), maxEvents: maxEvents, maxBytes: maxBytes, dropOldest: dropOldest}
	q.pending = &q.ownPend
	return q
}

// SharePending makes the queue keep its pending count in *p, so that code
// outside Go (the C shim) can skip an empty queue with one atomic load. Call
// it before the queue is used.
func (q *Queue) SharePending(p *atomic.Int64) {
	q.mu.Lock()
	p.Store(q.pending.Load())
	q.pending = p
	q.mu.Unlock()
}

// SetLimits changes the bounds; events beyond the new bounds are kept until
// drained.
func (q *Queue) SetLimits(maxEvents int, maxBytes int64, dropOldest bool) {
	q.mu.Lock()
	q.maxEvents, q.maxBytes, q.dropOldest = maxEvents, maxBytes, dropOldest
	q.mu.Unlock()
}

// Pending is the number of events waiting.
func (q *Queue) Pending() int { return int(q.pending.Load()) }

// Bytes is the number of bytes waiting.
func (q *Queue) Bytes() int64 {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.bytes
}

// Dropped is the number of events the overflow policy has dropped.
func (q *Queue) Dropped() uint64 { return q.drops.Load() }

// Push adds e. It returns the events dropped to make room, oldest first,
// or e itself (under drop_newest, or when e can never fit: larger than
// the whole byte budget, or no room left by status events). drop_oldest
// evicts the oldest messages, never a status event, and evicts nothing
// for an event that cannot fit anyway. Status events are never dropped
// and never make room: they are rare and Lua must see every one.
func (q *Queue) Push(e *Event) (dropped []*Event) {
	q.mu.Lock()
	if e.Kind == KindMessage {
		if e.size() > q.maxBytes || q.status+1 > q.maxEvents {
			q.mu.Unlock()
			q.drops.Add(1)
			return []*Event{e}
		}
		for q.n >= q.maxEvents || q.bytes+e.cost() > q.maxBytes {
			if !q.dropOldest {
				q.mu.Unlock()
				q.drops.Add(uint64(len(dropped)) + 1)
				return []*Event{e}
			}
			dropped = append(dropped, q.evictOldestLocked())
		}
	}
	if q.n == len(q.buf) {
		q.grow()
	}
	q.buf[(q.head+q.n)%len(q.buf)] = e
	q.n++
	q.addLocked(e)
	q.pending.Add(1)
	q.mu.Unlock()
	q.drops.Add(uint64(len(dropped)))
	return dropped
}

// addLocked counts e in the queue's bytes and kinds.
func (q *Queue) addLocked(e *Event) {
	q.bytes += e.cost()
	if e.copies != nil {
		e.copies.queued++
		if e.JSON != nil {
			e.copies.parsed++
		}
	}
	if e.Kind == KindStatus {
		q.status++
	}
}

// removeLocked uncounts e, which just left the queue.
func (q *Queue) removeLocked(e *Event) {
	if e.copies != nil {
		e.copies.queued--
		if e.JSON != nil {
			e.copies.parsed--
		}
	}
	q.bytes -= e.cost()
	if e.Kind == KindStatus {
		q.status--
	}
	q.pending.Add(-1)
}

// evictOldestLocked removes the oldest message, moving the status events
// before it up by one; the caller knows there is a message.
func (q *Queue) evictOldestLocked() *Event {
	i := 0
	for q.buf[(q.head+i)%len(q.buf)].Kind == KindStatus {
		i++
	}
	e := q.buf[(q.head+i)%len(q.buf)]
	for ; i > 0; i-- {
		q.buf[(q.head+i)%len(q.buf)] = q.buf[(q.head+i-1)%len(q.buf)]
	}
	q.buf[q.head] = nil
	q.head = (q.head + 1) % len(q.buf)
	q.n--
	q.removeLocked(e)
	return e
}

func (q *Queue) grow() {
	nb := make([]*Event, 2*len(q.buf))
	for i := 0; i < q.n; i++ {
		nb[i] = q.buf[(q.head+i)%len(q.buf)]
	}
	q.buf, q.head = nb, 0
}

func (q *Queue) popLocked() *Event {
	e := q.buf[q.head]
	q.buf[q.head] = nil
	q.head = (q.head + 1) % len(q.buf)
	q.n--
	q.removeLocked(e)
	return e
}

// Pop removes and returns the oldest event, or nil.
func (q *Queue) Pop() *Event {
	if q.pending.Load() == 0 {
		return nil
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.n == 0 {
		return nil
	}
	e := q.popLocked()
	if q.n == 0 && len(q.buf) > 1024 { // give back a burst's memory
		q.buf, q.head = make([]*Event, 16), 0
	}
	return e
}

// Drain pops events and calls fn for each, stopping after max events, when
// budget has passed since start, or when the queue is empty. It returns
// the number of events passed to fn. The budget is checked after each
// event, so one slow handler can overrun it by its own duration.
func (q *Queue) Drain(max int, budget time.Duration, fn func(*Event)) int {
	start := time.Now()
	n := 0
	for n < max {
		e := q.Pop()
		if e == nil {
			break
		}
		fn(e)
		n++
		if budget > 0 && time.Since(start) >= budget {
			break
		}
	}
	return n
}

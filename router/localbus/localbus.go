// Package localbus is the in-process router.Backend: the embedded default
// when no Redis is configured. Publish hands the message to a goroutine that
// delivers it back to the router, so realtime.On and realtime.Publish work
// on one server with no Redis, with the same asynchronous behaviour.
//
// Stream routes work locally too: Append adds an entry to a stream held in
// memory, which each stream route reading it (each consumer group, once)
// gets with an id like Redis's ("<ms>-<seq>") and a delivery count. An
// entry stays held until its handler returned (Ack); a failed handler
// (Nack) gets it again after a delay (SetRetryDelay), until the route's max_deliveries,
// then it is discarded and counted as dead-lettered: there is no
// "<stream>:dead" stream in memory. Held entries are bounded (the bus's
// capacity, shared by all streams); an Append over it fails and is
// counted. Held entries are lost when the process exits.
package localbus

import (
	"cmp"
	"errors"
	"maps"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gmod-realtime/realtime/router"
)

// ErrFull is returned by Publish when the outbox is full, and by Append
// when the bus holds as many stream entries as it may.
var ErrFull = errors.New("localbus: outbox full")

// ErrClosed is returned by Publish after Close.
var ErrClosed = errors.New("localbus: closed")

type message struct{ channel, payload string }

// Bus is an in-process backend. Safe for concurrent use.
type Bus struct {
	outbox    chan message
	done      chan struct{}
	stopped   chan struct{}
	closeOnce sync.Once

	retryDelay atomic.Int64 // SetRetryDelay
	// Stats count the stream entries.
	Stats Stats

	capacity int
	wake     chan struct{}
	mu       sync.Mutex
	sink     router.Sink
	groups   map[groupKey]*group // every group the plan ever had
	byStream map[string][]*group // the plan's groups, by stream
	held     int                 // entries held in all groups
	lastMS   int64               // the last id's parts
	lastSeq  uint64
	deadOnce bool // the first discarded entry was logged
}

// Stats are the bus's stream figures. Safe for concurrent use.
type Stats struct {
	Appended  atomic.Uint64 // entries Append took, once per stream (not per group)
	Unread    atomic.Uint64 // entries appended to a stream no route reads: kept by none
	Overflow  atomic.Uint64 // Appends refused: the bus held its capacity of entries
	Delivered atomic.Uint64 // entries handed to the router, redeliveries included
	Acked     atomic.Uint64
	Retried   atomic.Uint64 // Nacks that led to a redelivery
	Dead      atomic.Uint64 // entries discarded after max_deliveries, or undecodable
}

// StreamStats are one local consumer group's figures.
type StreamStats struct {
	Group                           string
	Delivered, Acked, Retried, Dead uint64
	Pending                         int64 // entries held: waiting, or with the router and not settled
	Reading                         bool  // a route of the plan reads it
}

type groupKey struct{ stream, group string }

type group struct {
	key     groupKey
	max     int64 // max_deliveries; 0: no limit
	planned bool
	entries map[string]*entry // held: waiting, or with the sink
	waiting []*entry          // to offer, by id
	stats   StreamStats
}

type entry struct {
	id, payload string
	deliveries  int64 // offers that reached a handler's queue
	withSink    bool
	at          time.Time // not offered again before
}

// SetRetryDelay sets the wait before a Nacked entry is offered again: 1s
// by default, as the Redis reader's.
func (b *Bus) SetRetryDelay(d time.Duration) { b.retryDelay.Store(int64(d)) }

// New returns a bus whose outbox holds at most capacity messages, and
// which holds at most capacity stream entries.
func New(capacity int) *Bus {
	b := &Bus{
		outbox:   make(chan message, max(capacity, 1)),
		done:     make(chan struct{}),
		stopped:  make(chan struct{}),
		wake:     make(chan struct{}, 1),
		capacity: max(capacity, 1),
		groups:   map[groupKey]*group{},
		byStream: map[string][]*group{},
	}
	b.SetRetryDelay(time.Second)
	return b
}

// Start reports StatusLocal and starts delivering published messages and
// appended entries to sink. Messages go to the router, which matches; the
// plan's streams say which groups get the entries.
func (b *Bus) Start(sink router.Sink, plan router.Plan) {
	b.mu.Lock()
	b.sink = sink
	b.planLocked(plan.Streams)
	b.mu.Unlock()
	sink.SetStatus(router.StatusLocal, "")
	go func() {
		defer close(b.stopped)
		timer := time.NewTimer(time.Hour)
		defer timer.Stop()
		for {
			select {
			case m := <-b.outbox:
				sink.Deliver(m.channel, m.payload)
				continue
			case <-b.wake:
			case <-timer.C:
			case <-b.done:
				return
			}
			next := b.offer()
			timer.Stop()
			if !next.IsZero() {
				timer.Reset(max(time.Until(next), 0))
			}
		}
	}()
}

// Update applies the plan's stream changes; the local bus has no
// subscriptions. A group the plan no longer has keeps the entries it
// holds (a route Off and On again gets them), but gets no new ones.
func (b *Bus) Update(d router.PlanDiff) {
	if !d.StreamsChanged {
		return
	}
	b.mu.Lock()
	b.planLocked(d.Streams)
	b.mu.Unlock()
	b.signal()
}

func (b *Bus) planLocked(streams []router.StreamPlan) {
	for _, g := range b.groups {
		g.planned = false
	}
	clear(b.byStream)
	for _, p := range streams {
		k := groupKey{p.Stream, p.Group}
		g := b.groups[k]
		if g == nil {
			g = &group{key: k, entries: map[string]*entry{}}
			g.stats.Group = p.Group
			b.groups[k] = g
		}
		g.max, g.planned = p.MaxDeliveries, true
		b.byStream[p.Stream] = append(b.byStream[p.Stream], g)
	}
	// A group with nothing held and no route is forgotten: the map stays
	// as small as the plan and the entries.
	for k, g := range b.groups {
		if !g.planned && len(g.entries) == 0 {
			delete(b.groups, k)
		}
	}
}

func (b *Bus) signal() {
	select {
	case b.wake <- struct{}{}:
	default:
	}
}

// Publish queues a message for delivery; it never blocks.
func (b *Bus) Publish(channel, payload string) error {
	select {
	case <-b.done:
		return ErrClosed
	default:
	}
	select {
	case b.outbox <- message{channel, payload}:
		return nil
	default:
		return ErrFull
	}
}

// Append adds an entry (field "data" = payload) to stream and returns its
// id; each stream route reading stream gets it once per group. It never
// blocks. It fails when the bus is closed, or holds its capacity of
// entries (counted in Stats.Overflow). An entry no route reads is kept by
// none (Redis would keep it in the stream): counted in Stats.Unread.
func (b *Bus) Append(stream, payload string) (string, error) {
	select {
	case <-b.done:
		return "", ErrClosed
	default:
	}
	b.mu.Lock()
	gs := b.byStream[stream]
	sink := b.sink
	if b.held+len(gs) > b.capacity {
		b.mu.Unlock()
		b.Stats.Overflow.Add(1)
		return "", ErrFull
	}
	ms := time.Now().UnixMilli()
	if ms > b.lastMS {
		b.lastMS, b.lastSeq = ms, 0
	} else {
		b.lastSeq++
	}
	id := strconv.FormatInt(b.lastMS, 10) + "-" + strconv.FormatUint(b.lastSeq, 10)
	for _, g := range gs {
		e := &entry{id: id, payload: payload}
		g.entries[id] = e
		g.waiting = append(g.waiting, e) // ids only grow: still in order
	}
	b.held += len(gs)
	b.mu.Unlock()
	b.Stats.Appended.Add(1)
	if len(gs) == 0 {
		if b.Stats.Unread.Add(1) == 1 {
			if es, ok := sink.(router.EntrySink); ok {
				es.StreamEvent(stream, "log", "stream "+strconv.Quote(stream)+": an entry was appended that no stream route reads; "+
					"in local mode no entry is kept for a route added later (GetStats().redis.append_unread counts them; logged once)")
			}
		}
		return id, nil
	}
	b.signal()
	return id, nil
}

// offerBatch is how many entries of a group are offered in one pass.
const offerBatch = 256

// retryRefused is the wait before an entry the router refused (its queue
// full, its route's rate reached) is offered again.
const retryRefused = 10 * time.Millisecond

// offer hands the ready entries of every planned group to the sink, in id
// order per group, and returns when to look again (zero: when woken).
func (b *Bus) offer() time.Time {
	es, ok := b.sink.(router.EntrySink)
	if !ok {
		return time.Time{}
	}
	var next time.Time
	later := func(t time.Time) {
		if next.IsZero() || t.Before(next) {
			next = t
		}
	}
	b.mu.Lock()
	groups := make([]*group, 0, len(b.groups))
	for _, g := range b.groups {
		if g.planned && len(g.waiting) > 0 {
			groups = append(groups, g)
		}
	}
	b.mu.Unlock()
	for _, g := range groups {
		for {
			now := time.Now()
			b.mu.Lock()
			var batch []*entry
			kept := g.waiting[:0]
			for _, e := range g.waiting {
				if len(batch) < offerBatch && !e.at.After(now) && g.planned {
					e.withSink = true
					e.deliveries++
					batch = append(batch, e)
					continue
				}
				if e.at.After(now) {
					later(e.at)
				}
				kept = append(kept, e)
			}
			clear(g.waiting[len(kept):])
			g.waiting = kept
			b.mu.Unlock()
			if len(batch) == 0 {
				break
			}
			refused := -1
			for i, e := range batch {
				if !es.DeliverEntry(router.StreamEntry{Stream: g.key.stream, Group: g.key.group, ID: e.id,
					Fields: []string{"data", e.payload}, Deliveries: e.deliveries}, b) {
					refused = i
					break
				}
				b.mu.Lock()
				g.stats.Delivered++
				b.mu.Unlock()
				b.Stats.Delivered.Add(1)
			}
			if refused < 0 {
				continue
			}
			// The router took none from here on: they wait again, their
			// delivery not counted.
			b.mu.Lock()
			for _, e := range batch[refused:] {
				if e.withSink && g.entries[e.id] == e {
					e.withSink = false
					e.deliveries--
					b.waitLocked(g, e)
				}
			}
			b.mu.Unlock()
			later(time.Now().Add(retryRefused))
			break
		}
	}
	return next
}

// waitLocked puts e back among g's waiting entries, in id order.
func (b *Bus) waitLocked(g *group, e *entry) {
	i, _ := slices.BinarySearchFunc(g.waiting, e, func(a, b *entry) int { return compareIDs(a.id, b.id) })
	g.waiting = slices.Insert(g.waiting, i, e)
}

func compareIDs(a, b string) int {
	am, as := splitID(a)
	bm, bs := splitID(b)
	if am != bm {
		if am < bm {
			return -1
		}
		return 1
	}
	switch {
	case as < bs:
		return -1
	case as > bs:
		return 1
	}
	return 0
}

func splitID(id string) (uint64, uint64) {
	for i := 0; i < len(id); i++ {
		if id[i] == '-' {
			ms, _ := strconv.ParseUint(id[:i], 10, 64)
			seq, _ := strconv.ParseUint(id[i+1:], 10, 64)
			return ms, seq
		}
	}
	return 0, 0
}

// take returns the held entry id of stream and group that is with the
// sink, or nil.
func (b *Bus) takeLocked(stream, groupName, id string) (*group, *entry) {
	g := b.groups[groupKey{stream, groupName}]
	if g == nil {
		return nil, nil
	}
	e := g.entries[id]
	if e == nil || !e.withSink {
		return nil, nil
	}
	e.withSink = false
	return g, e
}

func (b *Bus) dropLocked(g *group, e *entry) {
	delete(g.entries, e.id)
	b.held--
	if !g.planned && len(g.entries) == 0 {
		delete(b.groups, g.key)
	}
}

// Ack forgets the entry: its handler returned (router.Settler).
func (b *Bus) Ack(stream, groupName, id string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	g, e := b.takeLocked(stream, groupName, id)
	if e == nil {
		return
	}
	b.dropLocked(g, e)
	g.stats.Acked++
	b.Stats.Acked.Add(1)
}

// Nack offers the entry again after the retry delay, or, once it had its
// route's max_deliveries, discards it and counts it as dead-lettered
// (router.Settler).
func (b *Bus) Nack(stream, groupName, id string) {
	b.mu.Lock()
	g, e := b.takeLocked(stream, groupName, id)
	if e == nil {
		b.mu.Unlock()
		return
	}
	if g.max > 0 && e.deliveries >= g.max {
		b.deadLocked(g, e, "deliveries="+strconv.FormatInt(e.deliveries, 10)) // unlocks
		return
	}
	e.at = time.Now().Add(time.Duration(b.retryDelay.Load()))
	b.waitLocked(g, e)
	g.stats.Retried++
	b.mu.Unlock()
	b.Stats.Retried.Add(1)
	b.signal()
}

// Release offers the entry again, its delivery not counted: no handler
// saw it (router.Settler).
func (b *Bus) Release(stream, groupName, id string) {
	b.mu.Lock()
	g, e := b.takeLocked(stream, groupName, id)
	if e == nil {
		b.mu.Unlock()
		return
	}
	e.deliveries--
	e.at = time.Time{}
	b.waitLocked(g, e)
	b.mu.Unlock()
	b.signal()
}

// Dead discards the entry (it cannot be decoded) and counts it as
// dead-lettered (router.Settler).
func (b *Bus) Dead(stream, groupName, id, reason string) {
	b.mu.Lock()
	g, e := b.takeLocked(stream, groupName, id)
	if e == nil {
		b.mu.Unlock()
		return
	}
	b.deadLocked(g, e, reason)
}

// deadLocked discards e and reports it to the sink, logged the first time
// only; it unlocks b.mu.
func (b *Bus) deadLocked(g *group, e *entry, why string) {
	b.dropLocked(g, e)
	g.stats.Dead++
	first := !b.deadOnce
	b.deadOnce = true
	sink := b.sink
	b.mu.Unlock()
	b.Stats.Dead.Add(1)
	es, ok := sink.(router.EntrySink)
	if !ok {
		return
	}
	detail := ""
	if first {
		detail = e.id + " " + why
	}
	es.StreamEvent(g.key.stream, "discarded", detail)
}

// StreamStats returns the figures of each group, by stream name (a group
// other than the stream's first is listed as "<stream> (<group>)").
func (b *Bus) StreamStats() map[string]StreamStats {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := make(map[string]StreamStats, len(b.groups))
	keys := slices.SortedFunc(maps.Keys(b.groups), func(a, b groupKey) int {
		return cmp.Or(cmp.Compare(a.stream, b.stream), cmp.Compare(a.group, b.group))
	})
	for _, k := range keys {
		g := b.groups[k]
		s := g.stats
		s.Pending, s.Reading = int64(len(g.entries)), g.planned
		name := g.key.stream
		if _, dup := out[name]; dup {
			name += " (" + g.key.group + ")"
		}
		out[name] = s
	}
	return out
}

// Ready is how many held entries wait to be offered now: their route
// reads their stream, and a retry delay is not running.
func (b *Bus) Ready() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	now, n := time.Now(), 0
	for _, g := range b.groups {
		for _, e := range g.waiting {
			if g.planned && !e.at.After(now) {
				n++
			}
		}
	}
	return n
}

// Held is how many stream entries the bus holds, for all groups.
func (b *Bus) Held() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.held
}

// Close stops the delivering goroutine; queued messages and held stream
// entries are discarded. It is idempotent.
func (b *Bus) Close() error {
	b.closeOnce.Do(func() { close(b.done) })
	return nil
}

// Wait blocks until the goroutine started by Start has exited; for tests.
func (b *Bus) Wait() { <-b.stopped }

// Package redisbus is the Redis router.Backend, on go-redis v9.
//
// One pub/sub connection carries the plan's SUBSCRIBE and PSUBSCRIBE sets,
// one name per command: Redis's replies confirm each subscription (or
// refuse it, for an ACL user without that channel, and only that one), so
// a user allowed exactly its routes' channels is enough. A reader
// goroutine reads the socket continuously and hands every message to the
// router, which queues or drops (and counts) without blocking, so a slow
// game thread never makes Redis kill the connection for its output-buffer
// limit. A supervisor goroutine alone owns the connection: it connects,
// subscribes, applies plan diffs on the live connection, and after any
// error starts over on a new one (exponential backoff with jitter). A
// writer goroutine pipelines PUBLISH from a bounded outbox, kept in order
// across outages.
//
// Redis pub/sub does not store messages: what is published while this
// server is disconnected is lost. Outages are counted (Stats).
package redisbus

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"reflect"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/gmod-realtime/realtime/config"
	"github.com/gmod-realtime/realtime/router"
)

// ErrOutboxFull is returned by Publish when the outbox bounds are reached.
var ErrOutboxFull = errors.New("redisbus: outbox full (Redis unreachable or too slow)")

// ErrClosed is returned by Publish after Close.
var ErrClosed = errors.New("redisbus: closed")

// Stats are the backend's counters. Safe for concurrent use.
type Stats struct {
	Reconnects   atomic.Uint64          // connections made after the first
	Outages      atomic.Uint64          // times the connection was lost
	OutageNanos  atomic.Int64           // total time disconnected, finished outages only
	LastOutage   atomic.Int64           // nanoseconds of the last finished outage
	Published    atomic.Uint64          // PUBLISH commands Redis acknowledged
	Refused      atomic.Uint64          // PUBLISH commands Redis refused (dropped, not retried)
	PublishRetry atomic.Uint64          // batches retried after a connection error
	Late         atomic.Uint64          // copies ignored: duplicate or for a removed subscription
	Resubscribed atomic.Uint64          // refused subscriptions sent again on the live connection
	Discarded    atomic.Uint64          // published messages dropped at Close, with no HandOver to take them
	InboxDropped atomic.Uint64          // messages dropped because routing fell behind the socket
	Heartbeats   atomic.Uint64          // heartbeat hashes Redis acknowledged
	HeartbeatErr atomic.Pointer[string] // why Redis refused the last heartbeat ("" once one is accepted)
	// HeartbeatOwner: what the heartbeat hash's "instance" field held
	// just before this bus's last accepted heartbeat wrote it.
	HeartbeatOwner atomic.Pointer[HeartbeatOwner]
	Appended       atomic.Uint64 // XADDs of Append Redis acknowledged from the outbox
	Flushed        atomic.Uint64 // spooled entries Redis acknowledged (spool flushes)
	DurableLost    atomic.Uint64 // durable entries neither sent nor spooled (the spool refused them)
}

// HeartbeatOwner is what a heartbeat key's "instance" field held just
// before the N-th heartbeat a bus wrote to Key (N counts from 1, and again
// after the key changes): another process's instance at N >= 2 means
// that process wrote the key since this one's heartbeat before (at N = 1,
// it may be this server's own run before a restart).
type HeartbeatOwner struct {
	Key, Instance string
	N             int64
}

// Bus is the Redis backend. Safe for concurrent use.
type Bus struct {
	client redis.UniversalClient
	cfg    config.Redis
	Stats  Stats

	sink router.Sink

	mu     sync.Mutex
	want   router.Plan
	outbox *fifo // Publish -> write
	kept   *Kept // the stream reader's uncounted deliveries (SetKept)
	inbox  *fifo // read -> deliver

	update chan struct{} // plan changed
	// live is set while the subscriptions are confirmed. The writer waits
	// for it, so that what this server publishes while (re)connecting
	// reaches its own subscriptions too. liveSig wakes the writer when live
	// or doneGen changes.
	live    atomic.Bool
	liveSig chan struct{}
	// Plan changes are numbered; the reply to a change's last command
	// confirms it. The writer waits until the changes made before a batch
	// are confirmed, so that a route added and published to at once gets
	// its own message.
	wantGen atomic.Uint64
	doneGen atomic.Uint64
	done    chan struct{}
	closing sync.Once
	// closeClient closes the go-redis client, once: at Close, or, if the
	// writer ran then, when the writer stops (see Close).
	closeClient func()

	refusedMu sync.Mutex
	refusals  map[string]bool // "c:channel" or "p:pattern" that Redis refused

	// cur is the subscriber connection while it is live, for Drain.
	cur atomic.Pointer[subConn]
	// drainReq is Drain's request until its callback has run.
	drainReq atomic.Pointer[drainReq]

	// The settings Reconfigure changes live; the others are fixed.
	reconnectMin, reconnectMax atomic.Int64

	// HandOver sets next, then closes handed: the writer passes the outbox
	// to next and stops. handMu orders the handover against Publish and
	// against outboxes that predecessors pass on: once passed, whatever
	// reaches b goes on to next. preds counts the predecessors (buses that
	// handed over to b, directly or through a chain) whose outbox has not
	// arrived yet; the writer publishes nothing until it is 0, so that
	// their older messages go first and a batch in flight is never
	// disturbed by one arriving.
	handMu sync.Mutex
	next   *Bus
	passed bool
	// discarding is set once the writer has stopped after Close with no
	// HandOver: what reaches b is dropped and counted (Stats.Discarded).
	discarding bool
	preds      atomic.Int64 // changed under handMu
	// prev are the buses that handed over to b, kept (under handMu) while
	// they or their own predecessors have not passed their outbox on:
	// Persist reaches their durable entries (a Disconnect during a
	// hand-over, the old writer's batch in flight).
	prev    []*Bus
	handed  chan struct{}
	writing atomic.Bool // the writer runs: it passes the outbox itself

	streams busStreams // the stream routes' reader (bus_streams.go)

	durable *Durable    // durable sends (durable.go); nil: Append fails
	down    atomic.Bool // an outage is reported: appends go to the spool

	wg sync.WaitGroup
}

type outMsg struct {
	channel, payload string
	drain            *drainReq // Drain's marker, not a message
	// x is a heartbeat's or a durable entry's, nil for a message: a
	// message queued in the outbox is 48 bytes, not the 120 that every
	// field inline took (less for the collector to scan and the heap to
	// grow when Lua publishes ahead of the writer).
	x *outExtra
}

// outExtra is what an outbox entry that is not a plain message carries.
type outExtra struct {
	// A heartbeat: HSET channel hash..., PEXPIRE channel ttl.
	hash []string
	ttl  time.Duration
	// A durable entry (Append): XADD channel with the fields
	// data=payload and rt_id=id; seq is id's sequence.
	id  string
	seq int64
	at  time.Time
	// copied: Persist put a copy in the spool while the entry was in
	// flight; once Redis has taken it, the copy is deleted (forgetCopies)
	// before the spool may be flushed.
	copied atomic.Bool
}

// heartbeat reports whether m is a heartbeat.
func (m *outMsg) heartbeat() bool { return m.x != nil && m.x.ttl > 0 }

// durableID is a durable entry's rt_id, "" for anything else.
func (m *outMsg) durableID() string {
	if m.x == nil {
		return ""
	}
	return m.x.id
}

// drainReq is one Drain call: its marker in the inbox runs done.
type drainReq struct{ done func() }

// New returns a backend for a validated config; it connects on Start.
func New(c config.Redis) (*Bus, error) {
	client, err := NewClient(c)
	if err != nil {
		return nil, err
	}
	b := &Bus{
		client:   client,
		cfg:      c,
		handed:   make(chan struct{}),
		refusals: map[string]bool{},
		outbox:   newFIFO(c.OutboxEvents, int64(c.OutboxBytes)),
		// Past these bounds the reader drops (and counts) rather than
		// fall behind the socket.
		inbox:   newFIFO(65536, 32<<20),
		update:  make(chan struct{}, 1),
		liveSig: make(chan struct{}, 1),
		done:    make(chan struct{}),
	}
	b.closeClient = sync.OnceFunc(func() {
		go client.Close() // may wait on a dial in progress
	})
	b.reconnectMin.Store(int64(c.ReconnectMin.D()))
	b.reconnectMax.Store(int64(c.ReconnectMax.D()))
	return b, nil
}

// Reconfigure applies c, the bus's settings after a Reload, if what changed
// can change on the live connection: the outbox bounds and the reconnect
// backoff (max_subscriptions is the router's). It reports false, changing
// nothing, when c needs a new connection; see HandOver for that.
func (b *Bus) Reconfigure(c config.Redis) bool {
	live := func(r config.Redis) config.Redis {
		r.OutboxEvents, r.OutboxBytes, r.ReconnectMin, r.ReconnectMax, r.MaxSubscriptions = 0, 0, 0, 0, 0
		return r
	}
	if !reflect.DeepEqual(live(b.cfg), live(c)) {
		return false
	}
	b.outbox.setBounds(c.OutboxEvents, int64(c.OutboxBytes))
	b.reconnectMin.Store(int64(c.ReconnectMin.D()))
	b.reconnectMax.Store(int64(c.ReconnectMax.D()))
	return true
}

// HandOver makes next, a bus for new settings, take over b's publishing
// (Router.Replace takes over the subscriptions): once b's writer is done
// with the batch it is sending, the messages left in b's outbox go to the
// head of next's, and b publishes nothing more. Publish on b forwards to
// next from now on. Call it before next starts.
//
// HandOver may be called again on next before b's outbox has moved (two
// Reloads in a row): what b passes then goes on to whoever next handed
// over to, ahead of next's own messages. Nothing Publish accepted is lost
// on the way, unless the last bus of the chain is closed without a
// handover (Disconnect).
func (b *Bus) HandOver(next *Bus) {
	if next == b {
		return
	}
	next.addPreds(1) // before anything of b can reach next
	b.handMu.Lock()
	if b.next != nil {
		b.handMu.Unlock()
		next.addPreds(-1)
		return
	}
	b.next = next
	b.handMu.Unlock()
	b.predecessors() // forget those that have passed
	next.handMu.Lock()
	next.prev = append(next.prev, b)
	next.handMu.Unlock()
	close(b.handed)
	if !b.writing.Load() { // not started, or stopped by Close
		b.passOutbox()
	}
}

// predecessors returns the buses that handed over to b, directly or
// through a chain, whose outbox has not been passed on yet, and forgets
// those that have passed with no such predecessor of their own.
func (b *Bus) predecessors() []*Bus {
	b.handMu.Lock()
	prev := slices.Clone(b.prev)
	b.handMu.Unlock()
	var out []*Bus
	gone := map[*Bus]bool{}
	for _, p := range prev {
		older := p.predecessors()
		p.handMu.Lock()
		passed := p.passed
		p.handMu.Unlock()
		if !passed {
			out = append(out, p)
		} else if len(older) == 0 {
			gone[p] = true
		}
		out = append(out, older...)
	}
	if len(gone) > 0 {
		b.handMu.Lock()
		b.prev = slices.DeleteFunc(b.prev, func(p *Bus) bool { return gone[p] })
		b.handMu.Unlock()
	}
	return out
}

// addPreds changes the count of predecessors whose outbox is awaited.
func (b *Bus) addPreds(n int64) {
	b.handMu.Lock()
	b.preds.Add(n)
	b.handMu.Unlock()
	signal(b.liveSig)
}

// Drain calls done once every message Redis sent this bus before the call
// has been handed to the sink (or at once when not connected); the router
// uses it to retire a replaced bus without dropping what it still holds. A
// PING sent now is answered after every message Redis pushed before it, so
// its reply marks the point. done runs on a goroutine of the bus, once;
// close the bus from it, not before.
//
// Without a live connection (it has just dropped, or not come up yet) the
// point is now: done runs once the messages already read into the inbox
// have been handed to the sink, never before.
func (b *Bus) Drain(done func()) {
	req := &drainReq{done: done}
	b.drainReq.Store(req)
	c := b.cur.Load()
	if c == nil {
		b.inbox.force(outMsg{drain: req})
		return
	}
	go func() { // a write may wait on the network
		if c.send(context.Background(), reply{kind: "ping", drain: req}) != nil {
			c.seal() // what the reader read before is in the inbox
			b.inbox.force(outMsg{drain: req})
		}
	}()
}

// discard drops, counting them, the messages left in the outbox of a bus
// closed without a HandOver (realtime.Disconnect), and those that reach
// it later. Only the writer calls it, once it has stopped.
func (b *Bus) discard() {
	b.handMu.Lock()
	if b.next != nil || !b.closed() {
		b.handMu.Unlock()
		return
	}
	b.discarding = true
	msgs := b.outbox.takeAll() // Publish checks closed under handMu: nothing comes after
	b.handMu.Unlock()
	b.countDiscarded(msgs)
}

// countDiscarded counts the published messages of msgs as discarded
// (heartbeats are not counted: the next server's beat replaces them).
func (b *Bus) countDiscarded(msgs []outMsg) {
	n, durable := 0, 0
	for _, m := range msgs {
		if !m.heartbeat() && m.drain == nil {
			n++
		}
		if m.durableID() != "" {
			durable++
		}
	}
	if durable > 0 {
		b.durable.answered(durable)
		b.durable.lost.Add(uint64(durable))
		b.Stats.DurableLost.Add(uint64(durable))
	}
	if n > 0 {
		b.Stats.Discarded.Add(uint64(n))
		if b.sink != nil {
			b.sink.Discarded(n)
		}
	}
}

// finishDrain runs the callback of Drain request req, if it is the
// current one and has not run.
func (b *Bus) finishDrain(req *drainReq) {
	if b.drainReq.CompareAndSwap(req, nil) {
		req.done()
	}
}

// passOutbox gives the outbox to the bus HandOver named, if any, once.
// Only the writer calls it, or HandOver when the writer does not run.
//
// b's messages land where they go with b.handMu held: an outbox of a
// predecessor passed to b from now on goes on past b (passed), and must
// land after b's own, so that it is put ahead of them. With the lock let
// go first, an older outbox forwarded meanwhile landed first and b's own,
// newer messages were put ahead of it: published before it, out of order.
func (b *Bus) passOutbox() {
	b.handMu.Lock()
	if b.next == nil || b.passed {
		b.handMu.Unlock()
		return
	}
	b.passed = true
	msgs := b.outbox.takeAll()
	waiting := b.preds.Swap(0) // they will reach next now
	// Lock order: handMu along the chain (arrive takes next's).
	at := b.next.arrive(msgs, waiting-1)
	b.handMu.Unlock()
	if at != nil {
		at.countDiscarded(msgs)
	}
}

// arrive puts msgs, an outbox handed over to b, ahead of b's own messages,
// or passes them on if b has passed its outbox already; preds changes by
// delta where they land. When they reach a bus that discards (closed with
// no HandOver), it returns that bus, for the caller to count them there.
func (b *Bus) arrive(msgs []outMsg, delta int64) (discardedAt *Bus) {
	for d := b; ; {
		d.handMu.Lock()
		if !d.passed && d.discarding {
			d.handMu.Unlock()
			return d
		}
		if !d.passed {
			d.outbox.prepend(msgs)
			if d.preds.Add(delta) == 0 {
				d.prev = nil // every predecessor's outbox is in
			}
			d.handMu.Unlock()
			signal(d.liveSig)
			return nil
		}
		next := d.next
		d.handMu.Unlock()
		d = next
	}
}

// Start connects in the background and subscribes to plan.
func (b *Bus) Start(sink router.Sink, plan router.Plan) {
	b.sink = sink
	b.mu.Lock()
	b.want = plan
	b.mu.Unlock()
	// Before Start returns: the status a previous backend left (say
	// "local", which is connected) is no longer true.
	sink.SetStatus(router.StatusConnecting, "")
	b.writing.Store(true)
	if b.durable != nil && b.durable.Spooling() {
		signal(b.durable.wake) // flush what the last run spooled
	}
	b.wg.Add(3)
	go b.supervise()
	go b.write()
	go b.deliver()
	if len(plan.Streams) > 0 {
		b.applyStreams(plan.Streams, plan.Consumer)
	}
}

// deliver routes what the reader put in the inbox, so that routing (matching,
// rate limits, JSON) never slows reading the socket: a reader that falls
// behind makes Redis close the connection at its output-buffer limit, and
// everything in that buffer is lost.
func (b *Bus) deliver() {
	defer b.wg.Done()
	var batch deque
	for {
		select {
		case <-b.inbox.sig:
		case <-b.done:
			return
		}
		b.inbox.take(&batch)
		for batch.n > 0 {
			m := batch.popFront()
			if m.drain != nil {
				b.finishDrain(m.drain)
			} else {
				b.sink.Deliver(m.channel, m.payload)
			}
			b.inbox.release(&m)
		}
	}
}

// Update applies a plan diff on the live connection (or at the next one).
func (b *Bus) Update(d router.PlanDiff) {
	b.mu.Lock()
	b.want = b.want.Apply(d)
	b.wantGen.Add(1)
	b.mu.Unlock()
	signal(b.update)
	if d.StreamsChanged {
		b.applyStreams(d.Streams, d.Consumer)
	}
}

// Publish appends to the outbox; it never blocks. After HandOver it
// publishes through the next bus.
func (b *Bus) Publish(channel, payload string) error {
	b.handMu.Lock()
	next := b.next
	if next == nil {
		var err error
		switch {
		case b.closed():
			err = ErrClosed
		case !b.outbox.put(channel, payload):
			err = ErrOutboxFull
		}
		b.handMu.Unlock()
		return err
	}
	b.handMu.Unlock()
	return next.Publish(channel, payload)
}

// Heartbeat queues a write of the hash key (fields: name, value, ...)
// with a time to live, through the outbox behind the messages published
// before it; it never blocks. False when the outbox is full or closed: the
// heartbeat is skipped, the next one will do.
func (b *Bus) Heartbeat(key string, fields []string, ttl time.Duration) bool {
	b.handMu.Lock()
	next := b.next
	if next == nil {
		ok := !b.closed() && b.outbox.putMsg(outMsg{channel: key, x: &outExtra{hash: fields, ttl: ttl}})
		b.handMu.Unlock()
		return ok
	}
	b.handMu.Unlock()
	return next.Heartbeat(key, fields, ttl)
}

// handedOver reports whether HandOver named a successor.
func (b *Bus) handedOver() bool {
	b.handMu.Lock()
	defer b.handMu.Unlock()
	return b.next != nil
}

// OutboxLen is the number of messages waiting to be published: in b's
// outbox and in those of the buses that handed over to b and have not
// passed theirs on yet (a Reload while a batch of theirs is in flight:
// what waits behind it comes to b next).
func (b *Bus) OutboxLen() int {
	n := 0
	for _, p := range b.predecessors() { // first: one passing meanwhile is counted twice, not missed
		n += p.outbox.len()
	}
	return n + b.outbox.len()
}

// Close stops the goroutines and closes the connections without waiting
// for them: a hung network must not hang a map change. Queued publishes
// are discarded, unless HandOver gave them to a successor, and counted
// (Stats.Discarded and the sink's Discarded). Idempotent.
//
// A batch the writer has sent is not cut: its answers are awaited (at
// most write_timeout + read_timeout, in the background), and the writer
// closes the client once it stops. Cut, the batch stayed in the outbox as
// unanswered although Redis had published all or part of it: at a Reload
// the next bus published it a second time (a Replace closes the old bus
// once the new one is connected, whatever its writer does), and at a
// Disconnect it was counted as discarded.
func (b *Bus) Close() error {
	b.closing.Do(func() {
		close(b.done)
		if !b.writing.Load() { // else the writer closes it when it stops
			b.closeClient()
		}
		b.closeStreams()
	})
	return nil
}

// Wait blocks until the goroutines have exited after Close; for tests.
func (b *Bus) Wait() {
	b.wg.Wait()
	if r := b.reader(); r != nil {
		r.Wait()
	}
}

func signal(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

func (b *Bus) closed() bool {
	select {
	case <-b.done:
		return true
	default:
		return false
	}
}

// sleep waits d or until Close; it reports false on Close.
func (b *Bus) sleep(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-b.done:
		return false
	}
}

// backoff returns the wait before attempt n (0-based): doubling from
// reconnect_min up to reconnect_max, with jitter over its upper half.
func (b *Bus) backoff(n int) time.Duration {
	d, top := time.Duration(b.reconnectMin.Load()), time.Duration(b.reconnectMax.Load())
	for i := 0; i < n && d < top; i++ {
		d *= 2
	}
	d = min(d, top)
	return d/2 + rand.N(d/2+1)
}

// supervise owns the pub/sub connection's lifecycle, alone: connect,
// subscribe, apply diffs, and after any error start over on a new
// connection. go-redis's PubSub would reconnect and resubscribe by itself
// after an error; a PubSub here serves one connection and is closed at its
// first error (see subConn).
func (b *Bus) supervise() {
	defer b.wg.Done()
	ctx := context.Background()
	failures := 0
	var downSince time.Time
	everConnected := false
	// down is set once an outage is reported: its further failed attempts
	// report nothing, so Lua's RealtimeDisconnected fires once per outage.
	down := false
	for !b.closed() {
		if !down {
			b.sink.SetStatus(router.StatusConnecting, "")
		}
		c := b.newSubConn()
		err := b.serve(ctx, c, func() {
			if !downSince.IsZero() {
				d := time.Since(downSince)
				b.Stats.OutageNanos.Add(int64(d))
				b.Stats.LastOutage.Store(int64(d))
				downSince = time.Time{}
			}
			if everConnected {
				b.Stats.Reconnects.Add(1)
			}
			everConnected = true
			down = false
			failures = 0
			// The status first: a Replace's backend takes over in it
			// (Router.promote), and its sink ignores messages until then.
			// The writer waits for live, so what this server published
			// while connecting is read back only once it counts; with
			// live first, the new connection could read it back before
			// the takeover and drop it, and an old connection that was
			// down would not have it either.
			b.sink.SetStatus(router.StatusConnected, "")
			b.down.Store(false)
			b.live.Store(true)
			signal(b.liveSig)
		})
		b.live.Store(false)
		b.cur.Store(nil)
		c.dead.Store(true)
		c.seal()
		if req := b.drainReq.Load(); req != nil {
			// The connection is gone, and its Drain PING with it: what it
			// read is in the inbox, ahead of this marker.
			b.inbox.force(outMsg{drain: req})
		}
		go c.ps.Close() // may wait on a dial in progress; never block here
		if b.closed() {
			return
		}
		if downSince.IsZero() {
			downSince = time.Now()
			if everConnected {
				b.Stats.Outages.Add(1)
			}
		}
		if !down {
			b.sink.SetStatus(router.StatusDisconnected, reason(err))
			down = true
			b.down.Store(true)
			signal(b.liveSig) // the writer spools its durable entries
		}
		if !b.sleep(b.backoff(failures)) {
			return
		}
		failures++
	}
}

// serve subscribes c to the plan, then applies plan diffs until the
// connection fails or the bus closes.
func (b *Bus) serve(ctx context.Context, c *subConn, onConnected func()) error {
	b.mu.Lock()
	sent, gen := b.want, b.wantGen.Load()
	b.mu.Unlock()
	go c.read()
	d := router.PlanDiff{Subscribe: sent.Channels, PSubscribe: sent.Patterns}
	if err := c.apply(ctx, d, gen, true); err != nil {
		return err
	}
	// Redis keeps a connection when an ACL grants it more: what it
	// refused is asked again now and then, on the live connection.
	retry := time.NewTicker(max(time.Duration(b.reconnectMax.Load()), 100*time.Millisecond))
	defer retry.Stop()
	for {
		select {
		case <-retry.C:
			if err := c.retryRefused(ctx, sent); err != nil {
				return err
			}
		case <-c.live:
			b.cur.Store(c)
			onConnected()
		case err := <-c.errc:
			return err
		case <-b.update:
			b.mu.Lock()
			want, gen := b.want, b.wantGen.Load()
			b.mu.Unlock()
			d := router.Diff(sent, want)
			sent = want
			if err := c.apply(ctx, d, gen, false); err != nil {
				return err
			}
		case <-b.done:
			return nil
		}
	}
}

// reply is what the subscriber connection waits for after one command:
// Redis answers the commands of a connection in the order they were sent.
type reply struct {
	kind string // "subscribe", "psubscribe", "unsubscribe", "punsubscribe" or "ping"
	name string // the channel or pattern; "" for a ping
	// gen is the plan change this reply completes (0: none); first marks
	// the reply that completes the connection's initial subscriptions.
	gen   uint64
	first bool
	// drain marks the PING of a Drain: every message Redis sent before its
	// reply has been read, and is routed once the marker is.
	drain *drainReq
}

// subConn is one pub/sub connection, from its first command to its first
// error. Each (P)(UN)SUBSCRIBE carries one name, so that a refusal (an ACL
// NOPERM) names the one subscription refused and the others stand; the
// replies confirm the subscriptions, so no private channel is needed (an
// ACL user may be allowed exactly its routes' channels).
type subConn struct {
	b  *Bus
	ps *redis.PubSub

	sendMu  sync.Mutex // a command and its expected reply are queued together
	replyMu sync.Mutex
	replies []reply // expected, oldest first

	active *router.Active // the reader's only
	dead   atomic.Bool    // after the first error: nothing more is sent or read
	// sealed (under readMu) stops the reader putting messages in the
	// inbox: a Drain marker forced after seal comes after all it read.
	readMu sync.Mutex
	sealed bool
	// chans and lastChan intern channel names (intern); the reader's only.
	chans    map[string]string
	lastChan string
	live     chan struct{} // one value once the initial subscriptions are answered
	errc     chan error    // the first error
}

func (b *Bus) newSubConn() *subConn {
	return &subConn{b: b, ps: b.client.Subscribe(context.Background()), active: router.NewActive(),
		live: make(chan struct{}, 1), errc: make(chan error, 1)}
}

// seal stops the reader handing messages to the inbox; once it returns,
// every message the reader handed over is in the inbox.
func (c *subConn) seal() {
	c.readMu.Lock()
	c.sealed = true
	c.readMu.Unlock()
}

// put hands a message read to the inbox, unless sealed.
func (c *subConn) put(m *redis.Message) {
	c.readMu.Lock()
	defer c.readMu.Unlock()
	switch {
	case c.sealed: // read after the connection was given up: not routed
		c.b.Stats.Late.Add(1)
	case !c.b.inbox.put(c.intern(m.Channel), m.Payload):
		c.b.Stats.InboxDropped.Add(1)
		c.b.sink.Drop(router.DropQueueFull)
	}
}

// maxInterned is the longest channel name intern keeps.
const maxInterned = 256

// intern returns the first copy read of a channel's name, so that the
// queued events of one channel share one string where go-redis makes one
// per message (16 bytes each of a queue's 10,000 events); the reader's
// only, at most 256 names kept, none longer than maxInterned (a name is
// the publisher's choice: a long one is not kept past its messages).
func (c *subConn) intern(s string) string {
	if len(s) > maxInterned {
		return s
	}
	if s == c.lastChan {
		return c.lastChan
	}
	v, ok := c.chans[s]
	if !ok {
		if len(c.chans) >= 256 || c.chans == nil {
			c.chans = make(map[string]string)
		}
		c.chans[s], v = s, s
	}
	c.lastChan = v
	return v
}

// fail records the connection's first error; the supervisor takes it.
func (c *subConn) fail(err error) {
	if c.dead.CompareAndSwap(false, true) {
		c.errc <- err
	}
}

// send writes one command whose reply will be r.
func (c *subConn) send(ctx context.Context, r reply) error {
	c.sendMu.Lock()
	defer c.sendMu.Unlock()
	if c.dead.Load() {
		return errors.New("connection closed")
	}
	c.replyMu.Lock()
	c.replies = append(c.replies, r)
	c.replyMu.Unlock()
	var err error
	switch r.kind {
	case "subscribe":
		err = c.ps.Subscribe(ctx, r.name)
	case "psubscribe":
		err = c.ps.PSubscribe(ctx, r.name)
	case "unsubscribe":
		err = c.ps.Unsubscribe(ctx, r.name)
	case "punsubscribe":
		err = c.ps.PUnsubscribe(ctx, r.name)
	default:
		err = c.ps.Ping(ctx)
	}
	if err != nil {
		c.fail(err)
	}
	return err
}

// apply sends d's commands; the last one's reply completes plan change gen
// (a PING when d is empty).
func (c *subConn) apply(ctx context.Context, d router.PlanDiff, gen uint64, first bool) error {
	var rs []reply
	for _, op := range []struct {
		kind  string
		names []string
	}{
		{"psubscribe", d.PSubscribe}, {"subscribe", d.Subscribe},
		{"unsubscribe", d.Unsubscribe}, {"punsubscribe", d.PUnsubscribe},
	} {
		for _, name := range op.names {
			rs = append(rs, reply{kind: op.kind, name: name})
		}
	}
	if len(rs) == 0 {
		rs = append(rs, reply{kind: "ping"})
	}
	rs[len(rs)-1].gen, rs[len(rs)-1].first = gen, first
	for _, r := range rs {
		if err := c.send(ctx, r); err != nil {
			return err
		}
	}
	return nil
}

// retryRefused sends again the subscriptions of plan that Redis refused.
func (c *subConn) retryRefused(ctx context.Context, plan router.Plan) error {
	c.b.refusedMu.Lock()
	var rs []reply
	for key := range c.b.refusals {
		kind, list := "subscribe", plan.Channels
		if key[0] == 'p' {
			kind, list = "psubscribe", plan.Patterns
		}
		if _, ok := slices.BinarySearch(list, key[2:]); ok {
			rs = append(rs, reply{kind: kind, name: key[2:]})
		}
	}
	c.b.refusedMu.Unlock()
	for _, r := range rs {
		if err := c.send(ctx, r); err != nil {
			return err
		}
		c.b.Stats.Resubscribed.Add(1)
	}
	return nil
}

// confirm records that the plan changes up to gen are in place.
func (b *Bus) confirm(gen uint64) {
	for {
		done := b.doneGen.Load()
		if gen <= done || b.doneGen.CompareAndSwap(done, gen) {
			break
		}
	}
	signal(b.liveSig)
}

// read reads the socket continuously until the connection fails. Idle
// connections are checked with PING every read_timeout; two silent
// intervals end it.
func (c *subConn) read() {
	ctx := context.Background()
	interval := max(c.b.cfg.ReadTimeout.D(), 100*time.Millisecond)
	pinged := false
	for {
		msg, err := c.ps.ReceiveTimeout(ctx, interval)
		if c.dead.Load() {
			return
		}
		var ne net.Error
		switch {
		case err == nil:
		case isReply(err): // a command refused: the connection is fine
			if err := c.answer("", "", err); err != nil {
				c.fail(err)
				return
			}
			pinged = false
			continue
		case errors.As(err, &ne) && ne.Timeout() && !c.b.closed():
			if pinged {
				c.fail(fmt.Errorf("no reply from Redis within %s", 2*interval))
				return
			}
			if c.send(ctx, reply{kind: "ping"}) != nil {
				return
			}
			pinged = true
			continue
		default:
			c.fail(err)
			return
		}
		pinged = false
		switch m := msg.(type) {
		case *redis.Message:
			if !c.active.Owns(m.Pattern, m.Channel) {
				c.b.Stats.Late.Add(1)
			} else {
				c.put(m)
			}
		case *redis.Subscription:
			err = c.answer(m.Kind, m.Channel, nil)
		case *redis.Pong:
			err = c.answer("ping", "", nil)
		default:
			err = fmt.Errorf("unexpected %T from Redis", msg)
		}
		if err != nil {
			c.fail(err)
			return
		}
	}
}

// answer matches a reply (or refusal) to the oldest command waiting for
// one. A reply that no command waits for means the connection is not the
// one these commands went to: go-redis re-established it behind the
// supervisor's back, which is an error here.
func (c *subConn) answer(kind, name string, refused error) error {
	c.replyMu.Lock()
	if len(c.replies) == 0 {
		c.replyMu.Unlock()
		return fmt.Errorf("unexpected reply from Redis (%s %q)", kind, name)
	}
	r := c.replies[0]
	c.replies = c.replies[1:]
	c.replyMu.Unlock()
	if refused == nil && (r.kind != kind || r.name != name) {
		return fmt.Errorf("reply %s %q from Redis where %s %q was due", kind, name, r.kind, r.name)
	}
	if transient(refused) && (r.kind != "ping" || r.gen > 0 || r.first) {
		// Not a refusal: Redis cannot take the command now (BUSY, say).
		// The subscriptions are not what the plan says, so the connection
		// starts over, and subscribes once Redis can. A keepalive or
		// Drain PING is answered all the same: Redis is there.
		return fmt.Errorf("%s not taken now: %w", r.kind, refused)
	}
	switch r.kind {
	case "subscribe":
		if refused == nil {
			c.active.AddChannel(r.name)
		}
		c.b.refused(false, r.name, refused)
	case "psubscribe":
		if refused == nil {
			c.active.AddPattern(r.name)
		}
		c.b.refused(true, r.name, refused)
	case "unsubscribe":
		c.active.RemoveChannel(r.name)
		c.b.refused(false, r.name, nil)
	case "punsubscribe":
		c.active.RemovePattern(r.name)
		c.b.refused(true, r.name, nil)
	}
	if r.gen > 0 {
		c.b.confirm(r.gen)
	}
	if r.first {
		c.live <- struct{}{}
	}
	if r.drain != nil {
		c.b.inbox.force(outMsg{drain: r.drain})
	}
	return nil
}

// refused reports a subscription Redis refused (err) to the sink, and one
// it no longer refuses (nil) if it had.
func (b *Bus) refused(isPattern bool, name string, err error) {
	key := "c:" + name
	if isPattern {
		key = "p:" + name
	}
	b.refusedMu.Lock()
	_, was := b.refusals[key]
	if err != nil {
		b.refusals[key] = true
	} else {
		delete(b.refusals, key)
	}
	b.refusedMu.Unlock()
	if err != nil && !was { // reported once, not at every retry
		b.sink.SubscribeRefused(name, isPattern, err.Error())
	} else if err == nil && was {
		b.sink.SubscribeRefused(name, isPattern, "")
	}
}

func reason(err error) string {
	if err == nil {
		return "closed"
	}
	return err.Error()
}

// batchSize is the most messages the writer sends in one pipeline: each
// pipeline is a round trip to Redis, so with a backlog a larger batch
// means fewer of them (go-redis pipelining 1,000 at a time is the bench's
// reference).
const batchSize = 1024

// batchBytes bounds a batch's channels and payloads (a batch is at least
// one message, whatever its size): the whole pipeline must be written
// within write_timeout, else the writer sends it again, and its first
// messages, which Redis did get, are published once more at every
// attempt. 1,024 messages of a few KiB are megabytes, more than a slow
// uplink carries in the 3 s default; 1 MiB is what 256 of 4 KiB were.
const batchBytes = 1 << 20

// A lone message of at least bigMessage bytes whose write timed out
// tooSlowTries times in a row, while Redis answered a probe each time, is
// given up (see tooSlow). Smaller ones are not: a socket buffer takes them
// whole, so a write of one times out only when Redis is not reading.
const (
	bigMessage   = 64 << 10
	tooSlowTries = 3
)

// debugSend, set by tests, sees every pipeline of durable entries sent.
// An atomic: a writer of an earlier test may still finish its batch
// (Close leaves it to) when a test sets it.
var debugSend atomic.Pointer[func(b *Bus, path string, ids []string)]

// write pipelines the outbox to Redis in order. A message leaves the outbox
// once Redis answered it: acknowledged, or refused (an ACL denial, a
// command error), which is dropped and counted, since sending it again
// would be refused again; a reply that says "not now" (BUSY from a long
// script, say: see transient) keeps the message, to send again after a
// backoff. A connection error is retried, from the first message without
// an answer, after a backoff: a message whose answer was lost may have
// been published, so such a message can arrive twice, and an
// acknowledged one is never sent again.
func (b *Bus) write() {
	defer b.wg.Done()
	defer func() { // after a HandOver, whatever ended the loop
		b.writing.Store(false)
		if b.closed() { // Close left the client to this writer
			b.closeClient()
		}
		if d := b.durable; d != nil {
			signal(d.wake) // a wake this writer took goes to the next one
		}
		b.passOutbox()
		if b.closed() && !b.handedOver() {
			b.spoolOutbox(true) // closed: durable entries to disk, not discarded
		}
		b.discard()
	}()
	failures := 0
	// limit is the batches' bytes: halved at every failed batch (its write
	// may have timed out on a slow uplink, and a smaller one gets through),
	// doubled again after 8 answered in a row (okRun), up to batchBytes:
	// snapped back at once, every other batch on a steady slow uplink
	// failed and had its bytes published again.
	limit, slow, okRun := int64(batchBytes), 0, 0
	wake := b.wakeChan()
	batch := make([]outMsg, 0, batchSize) // reused: peek copies into it
	bufs := newBatchBufs()
	for {
		select {
		case <-b.outbox.sig:
		case <-wake:
		case <-b.done:
			return
		case <-b.handed:
			return
		}
		for !b.closed() {
			for !b.live.Load() || b.doneGen.Load() < b.wantGen.Load() || b.preds.Load() > 0 {
				if b.down.Load() {
					b.spoolOutbox(true) // Redis unreachable: durable entries to disk
				}
				select {
				case <-b.liveSig:
				case <-b.done:
					return
				case <-b.handed:
					return
				}
			}
			select {
			case <-b.handed:
				return
			default:
			}
			// The spool first when its turn has come (no durable entry
			// waits in an outbox), whatever publishes wait: a steady flow
			// of them must not keep it waiting for an empty outbox.
			flushErr := b.flushSpool()
			batch = batch[:0]
			if flushErr == nil {
				if batch = b.outbox.peekBatch(batch, batchSize, limit); len(batch) == 0 {
					break
				}
			}
			answered, again := 0, []outMsg(nil)
			if flushErr == nil {
				answered, again = b.publishBatch(batch, bufs)
				switch {
				case answered == len(batch):
					slow = 0
					if okRun++; okRun >= 8 {
						limit, okRun = min(limit*2, batchBytes), 0
					}
				case answered > 0:
					limit, slow, okRun = max(limit/2, 1), 0, 0
				case b.tooSlow(batch, bufs.cmds[0].Err(), &slow):
					answered = 1 // given up: counted, and out of the outbox
				default:
					limit, okRun = max(limit/2, 1), 0
				}
				b.outbox.replaceHead(answered, again)
				clear(batch) // let its strings go
				bufs.clear()
				if answered < len(batch) {
					b.spoolOutbox(true) // connection lost: durable entries to disk
				}
			}
			if flushErr != nil || answered < len(batch) || len(again) > 0 {
				b.Stats.PublishRetry.Add(1)
				t := time.NewTimer(b.backoff(failures))
				select {
				case <-t.C:
				case <-b.done:
					t.Stop()
					return
				case <-b.handed:
					t.Stop()
					return
				}
				failures++
				continue
			}
			failures = 0
		}
	}
}

// tooSlow reports whether the writer gives up batch, which Redis did not
// answer: a lone plain message of at least bigMessage bytes that failed
// for the tooSlowTries-th time in a row (counted in *slow) while Redis
// answered a probe within write_timeout after each failure. Its write times out on an uplink too
// slow to carry it within write_timeout, and sent again it would block
// every message behind it for ever, and be published again at each try
// whose bytes Redis got whole. Redis away or stalled answers no probe, and
// the message waits for it as any other.
//
// The probe is a script that does nothing, not a PING: CLIENT PAUSE WRITE
// (an operator's, or FAILOVER's) holds every PUBLISH, and scripts, while
// Redis answers PING, and a big message it holds is not too slow for the
// uplink. A script refused (an ACL without EVAL) is an answer all the
// same: Redis is reading, though a pause is not told apart then; one it
// cannot run now (BUSY, LOADING: see transient) is not.
//
// err is the message's error at this try. The log line names the timeout
// it ran into: write_timeout while the message was written, or, once the
// system's socket buffer took the rest of it (megabytes, on a fast local
// link), read_timeout while the rest crossed the uplink and the answer
// was awaited; raising the other would not help.
func (b *Bus) tooSlow(batch []outMsg, err error, slow *int) bool {
	m := &batch[0]
	if len(batch) != 1 || m.heartbeat() || m.durableID() != "" || msgSize(m) < bigMessage {
		*slow = 0
		return false
	}
	ctx, cancel := context.WithTimeout(context.Background(), b.cfg.WriteTimeout.D())
	defer cancel()
	if perr := b.client.Eval(ctx, "return 1", nil).Err(); notNow(perr) {
		*slow = 0
		return false
	}
	if *slow++; *slow < tooSlowTries {
		return false
	}
	*slow = 0
	why, raise := fmt.Sprintf("could not be written within redis.write_timeout (%s)", b.cfg.WriteTimeout.D()), "redis.write_timeout"
	if op := (*net.OpError)(nil); errors.As(err, &op) && op.Op == "read" {
		why, raise = fmt.Sprintf("was not answered within redis.read_timeout (%s) after its write", b.cfg.ReadTimeout.D()), "redis.read_timeout"
	}
	b.sink.PublishFailed(m.channel, fmt.Sprintf("not sent: a %d-byte message %s in %d tries while Redis answered; the uplink is too slow for it: raise %s or send less",
		len(m.payload), why, tooSlowTries, raise))
	return true
}

// publishBatch sends batch in one pipeline and returns how many leading
// messages Redis answered; it counts them, acknowledged or refused. again
// are those of them Redis could not take now (see transient), to send
// again ahead of the rest: the messages between them were published, and
// are not sent twice.
// bufs is the caller's to reuse.
func (b *Bus) publishBatch(batch []outMsg, bufs *batchBufs) (answered int, again []outMsg) {
	ctx, cancel := context.WithTimeout(context.Background(), b.cfg.WriteTimeout.D()+b.cfg.ReadTimeout.D())
	defer cancel()
	pipe := b.client.Pipeline()
	var side redis.Pipeliner // builds the heartbeats' and XADDs' commands; never run itself
	cmds := bufs.cmds[:len(batch)]
	var hset []*redis.IntCmd     // of the heartbeats, in order
	var owner []*redis.StringCmd // their HGET instance, before the HSET
	var channel string           // of the last PUBLISH, and boxed:
	var chanArg any              // a run of messages to one channel boxes it once
	args := bufs.args[:0]
	for i := range batch {
		m := &batch[i]
		switch {
		case m.heartbeat():
			if side == nil {
				side = b.client.Pipeline()
			}
			g := side.HGet(ctx, m.channel, "instance")
			h := side.HSet(ctx, m.channel, m.x.hash)
			hset, owner = append(hset, h), append(owner, g)
			bufs.sent = append(bufs.sent, g, h)
			cmds[i] = side.PExpire(ctx, m.channel, m.x.ttl)
		case m.durableID() != "":
			if side == nil {
				side = b.client.Pipeline()
			}
			cmds[i] = side.XAdd(ctx, b.durable.xaddArgs(m))
		default:
			// What pipe.Publish builds, without its two allocations per
			// message for the arguments (a slice of three, the channel
			// boxed): the arguments are slices of one reused array.
			if chanArg == nil || m.channel != channel {
				channel, chanArg = m.channel, m.channel
			}
			n := len(args)
			args = append(args, "publish", chanArg, m.payload)
			cmds[i] = redis.NewIntCmd(ctx, args[n:n+3:n+3]...)
		}
		bufs.sent = append(bufs.sent, cmds[i])
	}
	bufs.args = args
	_ = pipe.BatchProcess(ctx, bufs.sent...)
	_, _ = pipe.Exec(ctx)
	if debugSend := debugSend.Load(); debugSend != nil {
		var ids []string
		for i, m := range batch {
			if id := m.durableID(); id != "" {
				ids = append(ids, fmt.Sprintf("%s:%v", id, cmds[i].Err()))
			}
		}
		if len(ids) > 0 {
			(*debugSend)(b, "outbox", ids)
		}
	}
	var xids []string // the answered XADDs' ids: Redis's clock for retention
	defer func() { b.durable.sawIDs(xids) }()
	// Entries Redis took whose copy Persist spooled: their copies are
	// deleted before they are uncounted from the outboxes (which lets the
	// spool be flushed), or the flush would send them again.
	var copies []int64
	defer func() {
		if len(copies) > 0 {
			b.durable.forgetCopies(copies)
			b.durable.answered(len(copies))
		}
	}()
	// Published messages are counted in one add per batch (or before a
	// refusal is reported, which keeps the counts' order as seen from
	// outside), not one atomic add each.
	published := 0
	defer func() { b.Stats.Published.Add(uint64(published)) }()
	for i, c := range cmds {
		if batch[i].heartbeat() {
			h, g := hset[0], owner[0]
			hset, owner = hset[1:], owner[1:]
			err := cmp.Or(h.Err(), c.Err())
			if err != nil && !isReply(err) {
				return i, again
			}
			if err == nil {
				b.sawOwner(batch[i].channel, g.Val()) // "" (redis.Nil) when there was none
			}
			// Refused, or not now (LOADING, say): the next one will do.
			b.heartbeatDone(err)
			continue
		}
		switch err := c.Err(); {
		case err == nil && batch[i].durableID() != "":
			b.Stats.Appended.Add(1)
			if batch[i].x.copied.Load() {
				copies = append(copies, batch[i].x.seq)
			} else {
				b.durable.answered(1)
			}
			if sc, ok := c.(*redis.StringCmd); ok {
				xids = append(xids, sc.Val())
			}
		case err == nil:
			published++
		case transient(err) || durableAgain(&batch[i], err):
			again = append(again, batch[i])
		case isReply(err):
			if batch[i].durableID() != "" {
				b.durable.answered(1)
			}
			b.Stats.Published.Add(uint64(published))
			published = 0
			b.Stats.Refused.Add(1)
			b.sink.PublishFailed(batch[i].channel, "refused by the server: "+err.Error())
		default:
			return i, again
		}
	}
	return len(batch), again
}

// batchBufs are the writer's buffers for publishBatch, reused from one
// batch to the next.
type batchBufs struct {
	cmds []redis.Cmder // one per message of the batch, in order
	sent []redis.Cmder // the pipeline's commands (a heartbeat is two)
	args []any         // the PUBLISHes' arguments, three each
}

func newBatchBufs() *batchBufs {
	return &batchBufs{
		cmds: make([]redis.Cmder, batchSize),
		sent: make([]redis.Cmder, 0, 2*batchSize),
		args: make([]any, 0, 3*batchSize),
	}
}

// clear lets the last batch's commands and strings go.
func (w *batchBufs) clear() {
	clear(w.cmds)
	clear(w.sent)
	w.sent = w.sent[:0]
	clear(w.args)
	w.args = w.args[:0]
}

// heartbeatDone counts a heartbeat Redis answered: written, or refused
// (an ACL without HSET, say), which is not retried.
// sawOwner records what key's "instance" field held before a heartbeat
// wrote it (on the writer goroutine).
func (b *Bus) sawOwner(key, instance string) {
	n := int64(1)
	if p := b.Stats.HeartbeatOwner.Load(); p != nil && p.Key == key {
		n = p.N + 1
	}
	b.Stats.HeartbeatOwner.Store(&HeartbeatOwner{Key: key, Instance: instance, N: n})
}

func (b *Bus) heartbeatDone(err error) {
	msg := ""
	if err != nil {
		msg = err.Error()
	} else {
		b.Stats.Heartbeats.Add(1)
	}
	if p := b.Stats.HeartbeatErr.Load(); p == nil || *p != msg {
		b.Stats.HeartbeatErr.Store(&msg)
	}
}

// transient reports whether err is an error reply by which Redis says it
// cannot serve the command now, and will later: a script or function run
// past busy-reply-threshold (BUSY), a dataset loading, no free client
// slot, a Cluster or master failing over. Such a command is not refused:
// it is sent again.
func transient(err error) bool {
	if !isReply(err) {
		return false
	}
	msg := err.Error()
	for _, p := range []string{"BUSY ", "LOADING ", "TRYAGAIN ", "CLUSTERDOWN ", "MASTERDOWN ", "ERR max number of clients reached"} {
		if strings.HasPrefix(msg, p) {
			return true
		}
	}
	return false
}

// notNow reports whether err says a command did not run and is to be sent
// again: a connection error, a transient reply, or a write refused until
// Redis can write again (MISCONF: its last save failed, a full disk say;
// READONLY: a replica, a failover under way; NOREPLICAS). Not in transient:
// Redis answers a PING MISCONF too.
func notNow(err error) bool {
	if err == nil {
		return false
	}
	if !isReply(err) || transient(err) {
		return true
	}
	msg := err.Error()
	return strings.HasPrefix(msg, "MISCONF ") || strings.HasPrefix(msg, "READONLY ") || strings.HasPrefix(msg, "NOREPLICAS ")
}

// isReply reports whether err is an error reply from Redis (NOPERM,
// WRONGTYPE, ERR ...) rather than a connection error: the command reached
// the server and was refused.
func isReply(err error) bool {
	var re redis.Error
	return errors.As(err, &re)
}

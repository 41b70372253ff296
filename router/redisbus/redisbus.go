// Package redisbus is the Redis router.Backend, on go-redis v9.
//
// One pub/sub connection carries the plan's SUBSCRIBE and PSUBSCRIBE sets,
// plus one private control channel whose confirmation says the connection
// is live. A reader goroutine reads the socket continuously and hands every
// message to the router, which queues or drops (and counts) without
// blocking, so a slow game thread never makes Redis kill the connection for
// its output-buffer limit. A supervisor goroutine connects, resubscribes
// after a reconnect (exponential backoff with jitter), and applies plan
// diffs on the live connection. A writer goroutine pipelines PUBLISH from a
// bounded outbox, kept in order across outages.
//
// Redis pub/sub does not store messages: what is published while this
// server is disconnected is lost. Outages are counted (Stats).
package redisbus

import (
	"context"
	crand "crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"strconv"
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
	Reconnects   atomic.Uint64 // connections made after the first
	Outages      atomic.Uint64 // times the connection was lost
	OutageNanos  atomic.Int64  // total time disconnected, finished outages only
	LastOutage   atomic.Int64  // nanoseconds of the last finished outage
	Published    atomic.Uint64 // PUBLISH commands Redis acknowledged
	Refused      atomic.Uint64 // PUBLISH commands Redis refused (dropped, not retried)
	PublishRetry atomic.Uint64 // batches retried after a connection error
	Late         atomic.Uint64 // copies ignored: duplicate or for a removed subscription
	InboxDropped atomic.Uint64 // messages dropped because routing fell behind the socket
}

// Bus is the Redis backend. Safe for concurrent use.
type Bus struct {
	client  redis.UniversalClient
	cfg     config.Redis
	control string // private channel that proves the connection is live
	Stats   Stats

	sink router.Sink

	mu     sync.Mutex
	want   router.Plan
	outbox *fifo // Publish -> write
	inbox  *fifo // read -> deliver

	update chan struct{} // plan changed
	// live is set while the subscriptions are confirmed. The writer waits
	// for it, so that what this server publishes while (re)connecting
	// reaches its own subscriptions too. liveSig wakes the writer when live
	// or doneGen changes.
	live    atomic.Bool
	liveSig chan struct{}
	// Plan changes are numbered; a PING after each change's commands
	// confirms it. The writer waits until the changes made before a batch
	// are confirmed, so that a route added and published to at once gets
	// its own message.
	wantGen atomic.Uint64
	doneGen atomic.Uint64
	done    chan struct{}
	closing sync.Once
	wg      sync.WaitGroup
}

type outMsg struct{ channel, payload string }

// New returns a backend for a validated config; it connects on Start.
func New(c config.Redis) (*Bus, error) {
	client, err := NewClient(c)
	if err != nil {
		return nil, err
	}
	var id [8]byte
	_, _ = crand.Read(id[:])
	return &Bus{
		client:  client,
		cfg:     c,
		control: "__realtime:control:" + hex.EncodeToString(id[:]),
		outbox:  newFIFO(c.OutboxEvents, int64(c.OutboxBytes)),
		// Past these bounds the reader drops (and counts) rather than
		// fall behind the socket.
		inbox:   newFIFO(65536, 32<<20),
		update:  make(chan struct{}, 1),
		liveSig: make(chan struct{}, 1),
		done:    make(chan struct{}),
	}, nil
}

// Start connects in the background and subscribes to plan.
func (b *Bus) Start(sink router.Sink, plan router.Plan) {
	b.sink = sink
	b.mu.Lock()
	b.want = plan
	b.mu.Unlock()
	b.wg.Add(3)
	go b.supervise()
	go b.write()
	go b.deliver()
}

// deliver routes what the reader put in the inbox, so that routing (matching,
// rate limits, JSON) never slows reading the socket: a reader that falls
// behind makes Redis close the connection at its output-buffer limit, and
// everything in that buffer is lost.
func (b *Bus) deliver() {
	defer b.wg.Done()
	var batch []outMsg
	for {
		select {
		case <-b.inbox.sig:
		case <-b.done:
			return
		}
		batch = b.inbox.take(batch)
		for i, m := range batch {
			b.sink.Deliver(m.channel, m.payload)
			batch[i] = outMsg{}
		}
		if cap(batch) > 4096 { // let a burst's memory go
			batch = nil
		}
	}
}

// fifo is a queue of messages bounded by count and bytes: the outbox
// (Publish to the writer) and the inbox (the reader to deliver). Safe for
// concurrent use.
type fifo struct {
	mu       sync.Mutex
	msgs     []outMsg // head at index 0
	bytes    int64
	maxMsgs  int
	maxBytes int64
	sig      chan struct{} // not empty
}

func newFIFO(maxMsgs int, maxBytes int64) *fifo {
	return &fifo{maxMsgs: maxMsgs, maxBytes: maxBytes, sig: make(chan struct{}, 1)}
}

// put appends a message; false when the bounds are reached.
func (q *fifo) put(channel, payload string) bool {
	size := int64(len(channel) + len(payload))
	q.mu.Lock()
	if len(q.msgs) >= q.maxMsgs || q.bytes+size > q.maxBytes {
		q.mu.Unlock()
		return false
	}
	q.msgs = append(q.msgs, outMsg{channel, payload})
	q.bytes += size
	q.mu.Unlock()
	signal(q.sig)
	return true
}

// take swaps all waiting messages for spare (emptied) and returns them.
func (q *fifo) take(spare []outMsg) []outMsg {
	q.mu.Lock()
	msgs := q.msgs
	q.msgs, q.bytes = spare[:0], 0
	q.mu.Unlock()
	return msgs
}

// peek copies up to n messages from the head.
func (q *fifo) peek(n int) []outMsg {
	q.mu.Lock()
	defer q.mu.Unlock()
	return append([]outMsg(nil), q.msgs[:min(len(q.msgs), n)]...)
}

// remove drops the first n messages.
func (q *fifo) remove(n int) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for _, m := range q.msgs[:n] {
		q.bytes -= int64(len(m.channel) + len(m.payload))
	}
	q.msgs = q.msgs[n:]
	if len(q.msgs) == 0 {
		q.msgs = nil // let a burst's memory go
	}
}

func (q *fifo) len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.msgs)
}

// Update applies a plan diff on the live connection (or at the next one).
func (b *Bus) Update(d router.PlanDiff) {
	b.mu.Lock()
	b.want = b.want.Apply(d)
	b.wantGen.Add(1)
	b.mu.Unlock()
	signal(b.update)
}

// Publish appends to the outbox; it never blocks.
func (b *Bus) Publish(channel, payload string) error {
	select {
	case <-b.done:
		return ErrClosed
	default:
	}
	if !b.outbox.put(channel, payload) {
		return ErrOutboxFull
	}
	return nil
}

// OutboxLen is the number of messages waiting to be published.
func (b *Bus) OutboxLen() int { return b.outbox.len() }

// Close stops the goroutines and closes the connections without waiting
// for them: a hung network must not hang a map change. Queued publishes
// are discarded. Idempotent.
func (b *Bus) Close() error {
	b.closing.Do(func() {
		close(b.done)
		go b.client.Close() // may wait on a dial in progress
	})
	return nil
}

// Wait blocks until the goroutines have exited after Close; for tests.
func (b *Bus) Wait() { b.wg.Wait() }

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
	d := b.cfg.ReconnectMin.D()
	for i := 0; i < n && d < b.cfg.ReconnectMax.D(); i++ {
		d *= 2
	}
	d = min(d, b.cfg.ReconnectMax.D())
	return d/2 + rand.N(d/2+1)
}

// supervise owns the pub/sub connection: connect, subscribe, apply diffs,
// and reconnect when the reader reports the connection dead.
func (b *Bus) supervise() {
	defer b.wg.Done()
	ctx := context.Background()
	failures := 0
	var downSince time.Time
	everConnected := false
	for !b.closed() {
		b.sink.SetStatus(router.StatusConnecting, "")
		connected := make(chan struct{})
		readErr := make(chan error, 1)
		ps := b.client.Subscribe(ctx)
		sent, err := b.subscribeAll(ctx, ps)
		if err == nil {
			go b.read(ps, connected, readErr)
			err = b.serve(ctx, ps, &sent, connected, readErr, func() {
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
				failures = 0
				b.live.Store(true)
				signal(b.liveSig)
				b.sink.SetStatus(router.StatusConnected, "")
			})
		}
		b.live.Store(false)
		go ps.Close() // may wait on go-redis's own redial; never block here
		if b.closed() {
			return
		}
		if downSince.IsZero() {
			downSince = time.Now()
			if everConnected {
				b.Stats.Outages.Add(1)
			}
		}
		b.sink.SetStatus(router.StatusDisconnected, reason(err))
		if !b.sleep(b.backoff(failures)) {
			return
		}
		failures++
	}
}

// serve applies plan diffs until the connection fails or the bus closes.
func (b *Bus) serve(ctx context.Context, ps *redis.PubSub, sent *router.Plan, connected <-chan struct{}, readErr <-chan error, onConnected func()) error {
	apply := func() error {
		b.mu.Lock()
		want, gen := b.want, b.wantGen.Load()
		b.mu.Unlock()
		if err := applyDiff(ctx, ps, router.Diff(*sent, want)); err != nil {
			return err
		}
		*sent = want
		return ps.Ping(ctx, planPing+strconv.FormatUint(gen, 10))
	}
	for {
		select {
		case <-connected:
			connected = nil
			// Routes added while connecting are subscribed before the
			// writer starts.
			select {
			case <-b.update:
				if err := apply(); err != nil {
					return err
				}
			default:
			}
			onConnected()
		case err := <-readErr:
			return err
		case <-b.update:
			if err := apply(); err != nil {
				return err
			}
		case <-b.done:
			return nil
		}
	}
}

func (b *Bus) subscribeAll(ctx context.Context, ps *redis.PubSub) (router.Plan, error) {
	b.mu.Lock()
	want, gen := b.want, b.wantGen.Load()
	b.mu.Unlock()
	b.confirm(gen) // once the control channel is confirmed: see read
	// The control channel goes last: its confirmation means every
	// subscription before it is in place.
	d := router.PlanDiff{Subscribe: want.Channels, PSubscribe: want.Patterns}
	if err := applyDiff(ctx, ps, d); err != nil {
		return want, err
	}
	return want, ps.Subscribe(ctx, b.control)
}

const chunk = 1000 // arguments per (P)(UN)SUBSCRIBE command

// planPing prefixes the PING payload that confirms a plan change.
const planPing = "realtime:plan:"

// confirm records that the plan changes up to gen are in place (or will
// be, before the connection is reported live).
func (b *Bus) confirm(gen uint64) {
	for {
		done := b.doneGen.Load()
		if gen <= done || b.doneGen.CompareAndSwap(done, gen) {
			break
		}
	}
	signal(b.liveSig)
}

func applyDiff(ctx context.Context, ps *redis.PubSub, d router.PlanDiff) error {
	for _, op := range []struct {
		names []string
		fn    func(context.Context, ...string) error
	}{
		{d.PSubscribe, ps.PSubscribe}, {d.Subscribe, ps.Subscribe},
		{d.Unsubscribe, ps.Unsubscribe}, {d.PUnsubscribe, ps.PUnsubscribe},
	} {
		for i := 0; i < len(op.names); i += chunk {
			if err := op.fn(ctx, op.names[i:min(i+chunk, len(op.names))]...); err != nil {
				return err
			}
		}
	}
	return nil
}

// read reads the socket continuously until it fails. Idle connections are
// checked with PING every read_timeout; two silent intervals end it.
func (b *Bus) read(ps *redis.PubSub, connected chan<- struct{}, errc chan<- error) {
	ctx := context.Background()
	active := router.NewActive()
	interval := max(b.cfg.ReadTimeout.D(), 100*time.Millisecond)
	pinged := false
	for {
		msg, err := ps.ReceiveTimeout(ctx, interval)
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() && !b.closed() {
				if pinged {
					errc <- fmt.Errorf("no reply from Redis within %s", 2*interval)
					return
				}
				if err := ps.Ping(ctx); err != nil {
					errc <- err
					return
				}
				pinged = true
				continue
			}
			errc <- err
			return
		}
		pinged = false
		switch m := msg.(type) {
		case *redis.Pong:
			if g, ok := strings.CutPrefix(m.Payload, planPing); ok {
				if gen, err := strconv.ParseUint(g, 10, 64); err == nil {
					b.confirm(gen)
				}
			}
		case *redis.Message:
			if !active.Owns(m.Pattern, m.Channel) {
				b.Stats.Late.Add(1)
			} else if !b.inbox.put(m.Channel, m.Payload) {
				b.Stats.InboxDropped.Add(1)
				b.sink.Drop(router.DropQueueFull)
			}
		case *redis.Subscription:
			switch m.Kind {
			case "subscribe":
				if m.Channel == b.control {
					close(connected)
				} else {
					active.AddChannel(m.Channel)
				}
			case "unsubscribe":
				active.RemoveChannel(m.Channel)
			case "psubscribe":
				active.AddPattern(m.Channel)
			case "punsubscribe":
				active.RemovePattern(m.Channel)
			}
		}
	}
}

func reason(err error) string {
	if err == nil {
		return "closed"
	}
	return err.Error()
}

const batchSize = 256

// write pipelines the outbox to Redis in order. A message leaves the outbox
// once Redis answered it: acknowledged, or refused (an ACL denial, a
// command error), which is dropped and counted, since sending it again
// would be refused again. Only a connection error is retried, from the
// first message without an answer, after a backoff: a message whose
// answer was lost may have been published, so such a message can arrive
// twice, and an acknowledged one is never sent again.
func (b *Bus) write() {
	defer b.wg.Done()
	failures := 0
	for {
		select {
		case <-b.outbox.sig:
		case <-b.done:
			return
		}
		for !b.closed() {
			for !b.live.Load() || b.doneGen.Load() < b.wantGen.Load() {
				select {
				case <-b.liveSig:
				case <-b.done:
					return
				}
			}
			batch := b.outbox.peek(batchSize)
			if len(batch) == 0 {
				break
			}
			answered := b.publishBatch(batch)
			b.outbox.remove(answered)
			if answered < len(batch) {
				b.Stats.PublishRetry.Add(1)
				if !b.sleep(b.backoff(failures)) {
					return
				}
				failures++
				continue
			}
			failures = 0
		}
	}
}

// publishBatch sends batch in one pipeline and returns how many leading
// messages Redis answered; it counts them, acknowledged or refused.
func (b *Bus) publishBatch(batch []outMsg) int {
	ctx, cancel := context.WithTimeout(context.Background(), b.cfg.WriteTimeout.D()+b.cfg.ReadTimeout.D())
	defer cancel()
	pipe := b.client.Pipeline()
	cmds := make([]*redis.IntCmd, len(batch))
	for i, m := range batch {
		cmds[i] = pipe.Publish(ctx, m.channel, m.payload)
	}
	_, _ = pipe.Exec(ctx)
	for i, c := range cmds {
		switch err := c.Err(); {
		case err == nil:
			b.Stats.Published.Add(1)
		case isReply(err):
			b.Stats.Refused.Add(1)
			b.sink.PublishFailed(batch[i].channel, err.Error())
		default:
			return i
		}
	}
	return len(batch)
}

// isReply reports whether err is an error reply from Redis (NOPERM,
// WRONGTYPE, ERR ...) rather than a connection error: the command reached
// the server and was refused.
func isReply(err error) bool {
	var re redis.Error
	return errors.As(err, &re)
}

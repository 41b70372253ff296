package redisbus

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/gmod-realtime/realtime/router/spool"
)

// Durable sends (Append): each entry gets its rt_id "<server id>-<seq>"
// when it is appended, from one Sequence shared with the spool, and goes
// through the outbox like a Publish, as an XADD with the fields "data"
// and "rt_id". While Redis is unreachable, or the outbox is full, entries
// go to the spool instead (spool.AddID: memory first, committed by the
// spool's own goroutine, so Append never waits on the disk).
//
// Order. A stream consumer drops an entry whose sequence is not above the
// highest it has seen from this server, so entries of a stream must reach
// Redis in sequence order. Two rules keep it:
//   - Once anything is spooled (spooling), every later Append goes to the
//     spool too, until the spool has been flushed empty: the flag, the
//     sequence and the choice between outbox and spool are taken under
//     Durable.mu, so a producer and a writer never race on it. So every
//     durable entry waiting in an outbox is older than every spooled one.
//   - The spool is flushed only when no durable entry waits in any outbox
//     of the buses sharing it (queued == 0): the older entries first. A
//     writer that holds durable entries while Redis is unreachable moves
//     them into the spool (older sequences added late; the spool keeps
//     sequence order) only while nothing is being flushed, which the
//     same count guarantees.
//
// Durable is shared by the buses of one module (HandOver passes outboxes
// on, the spool stays), and outlives them.
type Durable struct {
	serverID string
	spool    *spool.Spool // nil: no spool, entries wait in the outbox
	seq      *spool.Sequence

	maxLen    atomic.Int64 // XADD MAXLEN ~ (0: none)
	retention atomic.Int64 // XADD MINID ~ now-retention (0: none); maxLen wins
	// skew is Redis's clock minus ms(), in ms, as the ids of the last
	// answered XADDs tell it (skewKnown); retention trims by Redis's
	// clock, which gave the stream's ids: a game server's clock hours
	// ahead would have trimmed fresh entries. ms is our monotonic clock,
	// not the wall clock, which may step (NTP at boot, a VM resumed) and
	// make the next XADD trim by a stale skew.
	skew      atomic.Int64
	skewKnown atomic.Bool
	timeTried atomic.Int64 // ms() when learnClock last asked, plus 1
	start     time.Time    // ms() counts from it

	mu       sync.Mutex
	spooling bool  // entries are spooled until the spool is flushed empty
	queued   int64 // durable entries waiting in an outbox (or in flight)

	lost atomic.Uint64 // durable entries dropped: outbox gone with no spool to take them

	// wake tells the live writer that the spool may be ready to flush
	// (entries spooled, or the last durable entry of the outboxes gone):
	// the writer of whichever bus sends now, not the one that changed it.
	wake chan struct{}
}

// NewDurable returns the durable-send state for server id serverID; sp may
// be nil (no spool). The sequence is raised above sp's Floor.
func NewDurable(serverID string, sp *spool.Spool, seq *spool.Sequence) *Durable {
	if seq == nil {
		seq = &spool.Sequence{}
	}
	if sp != nil {
		seq.Raise(sp.Floor())
	}
	// Entries left by the last run are older than any appended now.
	return &Durable{serverID: serverID, spool: sp, seq: seq, spooling: sp != nil && sp.Stats().Depth > 0, wake: make(chan struct{}, 1), start: time.Now()}
}

// SetServerID makes the rt_ids of the entries appended from now on
// "<id>-<seq>" (server.id changed by a Reload); entries appended before
// keep theirs, in the outbox and in the spool.
func (d *Durable) SetServerID(id string) {
	d.mu.Lock()
	d.serverID = id
	d.mu.Unlock()
}

// SetTrim sets the trimming of every XADD: MAXLEN ~ maxLen when maxLen >
// 0, else MINID ~ (now - retention) when retention > 0, else none.
func (d *Durable) SetTrim(maxLen int64, retention time.Duration) {
	d.maxLen.Store(maxLen)
	d.retention.Store(int64(retention))
}

// Spool is the spool, nil when none.
func (d *Durable) Spool() *spool.Spool { return d.spool }

// Lost counts durable entries dropped because they could be neither sent
// nor spooled (closed with no spool, or the spool refused them).
func (d *Durable) Lost() uint64 { return d.lost.Load() }

// Spooling reports whether appends currently go to the spool.
func (d *Durable) Spooling() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.spooling
}

// ms is our monotonic clock in ms (since the Durable was made).
func (d *Durable) ms() int64 { return time.Since(d.start).Milliseconds() }

func (d *Durable) trim() (int64, string) {
	if d == nil {
		return 0, ""
	}
	if n := d.maxLen.Load(); n > 0 {
		return n, ""
	}
	if r := time.Duration(d.retention.Load()); r > 0 && d.skewKnown.Load() {
		// before 1970 nothing is older: a negative MINID is no stream id,
		// and Redis would refuse the XADD
		if ms := d.ms() - r.Milliseconds() + d.skew.Load(); ms > 0 {
			return 0, strconv.FormatInt(ms, 10) + "-0"
		}
	}
	return 0, ""
}

// sawIDs learns Redis's clock from the ids XADD answered with ("<ms>-<seq>").
// An id "<ms>-0" is Redis's time: a stream whose last id was ahead of it
// (set explicitly, by another writer or Redis) answers past that last id,
// "<its ms>-<its seq+1>", which could be hours ahead and would trim every
// other stream's fresh entries. So only ids with seq 0 set the skew (the
// smallest of them); the others, at or after Redis's time, can only lower
// it.
func (d *Durable) sawIDs(ids []string) {
	if d == nil || len(ids) == 0 {
		return
	}
	now := d.ms()
	exact, bound, haveExact, haveBound := int64(0), int64(0), false, false
	for _, id := range ids {
		ms, seq, _ := strings.Cut(id, "-")
		t, err := strconv.ParseInt(ms, 10, 64)
		if err != nil {
			continue
		}
		if seq == "0" {
			if !haveExact || t-now < exact {
				exact, haveExact = t-now, true
			}
		} else if !haveBound || t-now < bound {
			bound, haveBound = t-now, true
		}
	}
	switch {
	case haveExact:
		if haveBound {
			exact = min(exact, bound)
		}
		d.skew.Store(exact)
		d.skewKnown.Store(true)
	case haveBound && d.skewKnown.Load() && bound < d.skew.Load():
		d.skew.Store(bound)
	}
}

// learnClock asks Redis's clock (TIME) when retention needs it and no
// XADD answer told it yet: a new process flushing its spool, or a server
// that only dead-letters, would otherwise give no MINID at all. At most
// one try a second (an ACL may refuse TIME); an XADD's answer wins.
func (d *Durable) learnClock(ctx context.Context, c redis.UniversalClient) {
	if d == nil || c == nil || d.skewKnown.Load() || d.retention.Load() <= 0 {
		return
	}
	now := d.ms() + 1
	last := d.timeTried.Load()
	if (last != 0 && now-last < time.Second.Milliseconds()) || !d.timeTried.CompareAndSwap(last, now) {
		return
	}
	t, err := c.Time(ctx).Result()
	if err != nil {
		return
	}
	// read after the answer: the skew comes out a little low, trimming
	// a little less, never fresh entries
	skew := t.UnixMilli() - d.ms()
	if !d.skewKnown.Load() {
		d.skew.Store(skew)
		d.skewKnown.Store(true)
	}
}

func (d *Durable) xaddArgs(m *outMsg) *redis.XAddArgs {
	maxLen, minID := d.trim()
	return &redis.XAddArgs{
		Stream: m.channel, MaxLen: maxLen, MinID: minID, Approx: maxLen > 0 || minID != "",
		Values: []any{spool.FieldData, m.payload, spool.FieldID, m.x.id},
	}
}

// toSpool spools m (under d.mu); false when the spool refused it.
func (d *Durable) toSpool(m *outMsg) error {
	_, err := d.spool.AddWithID(m.x.id, m.x.seq, m.channel, []byte(m.payload), m.x.at)
	return err
}

// durableAgain reports whether m is a durable entry Redis answered with
// a "not now" reply that the spool keeps its own entries through (OOM,
// READONLY, MISCONF, NOAUTH ...: see spool.Refused): it is sent again,
// not dropped as refused.
func durableAgain(m *outMsg, err error) bool {
	return m.durableID() != "" && isReply(err) && !spool.Refused(err)
}

// ErrNoDurable is returned by Append on a bus given no Durable.
var ErrNoDurable = errors.New("redisbus: no durable-send settings (SetDurable)")

// SetDurable gives b the durable-send state; call it before Start.
func (b *Bus) SetDurable(d *Durable) { b.durable = d }

// Append queues payload as a new entry of stream and returns its rt_id; it
// never blocks (see Durable). After HandOver it appends through the next
// bus.
func (b *Bus) Append(stream, payload string) (string, error) {
	b.handMu.Lock()
	next := b.next
	if next == nil {
		defer b.handMu.Unlock()
		if b.closed() {
			return "", ErrClosed
		}
		return b.appendLocked(stream, payload)
	}
	b.handMu.Unlock()
	return next.Append(stream, payload)
}

func (b *Bus) appendLocked(stream, payload string) (string, error) {
	d := b.durable
	if d == nil {
		return "", ErrNoDurable
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	seq := d.seq.Next()
	m := outMsg{channel: stream, payload: payload, x: &outExtra{seq: seq, id: d.serverID + "-" + strconv.FormatInt(seq, 10), at: time.Now()}}
	if d.spool == nil || (!d.spooling && !b.down.Load()) {
		if b.outbox.putMsg(m) {
			d.queued++
			return m.x.id, nil
		}
		if d.spool == nil {
			return "", ErrOutboxFull
		}
	}
	if err := d.toSpool(&m); err != nil {
		return "", fmt.Errorf("redisbus: Redis unreachable or outbox full, and the spool refused the entry: %w", err)
	}
	d.spooling = true
	signal(d.wake) // the writer flushes once Redis is there
	return m.x.id, nil
}

// Persist moves the durable entries waiting in b's outbox, in the
// outboxes b handed over to, and in those of the buses that handed over
// to b and have not passed them on yet, into the spool, and reports how
// many; with no spool it does nothing. Those of a batch in flight are
// copied: the writer still sends them, and if the process dies first, the
// spool has them (a copy that also reached Redis is dropped by the
// consumer, by rt_id; one the writer moves to the spool later is ignored
// there). It never waits on the network or the disk (Spool.Sync does
// that): gmod13_close, Disconnect.
func (b *Bus) Persist() int {
	n := 0
	// The buses that handed over to b and have not passed their outbox
	// on (a batch of theirs in flight): what they pass arrives after a
	// Close, where it is dropped, or once the spool is closed.
	for _, p := range b.predecessors() {
		n += p.spoolOutbox(false)
	}
	for c := b; c != nil; {
		n += c.spoolOutbox(false)
		c.handMu.Lock()
		next := c.next
		c.handMu.Unlock()
		c = next
	}
	return n
}

// spoolOutbox moves the durable entries of the outbox into the spool,
// under d.mu. With all (the writer, between batches: nothing in flight)
// it moves those of the buses b handed over to as well: they are newer,
// and must not be sent before what b spools now. Their writers send
// nothing until b has passed its outbox on, so none has a batch in
// flight. Without all (Persist, from another goroutine) a batch in flight
// is copied, not moved: the writer still sends it.
func (b *Bus) spoolOutbox(all bool) int {
	d := b.durable
	if d == nil || d.spool == nil {
		return 0
	}
	var chain []*Bus // b's successors, handMu held: no HandOver meanwhile
	if all {
		// Lock order: handMu along the chain, then d.mu (Append takes
		// one bus's handMu, then d.mu).
		b.handMu.Lock()
		for c := b; c.next != nil; c = c.next {
			c.next.handMu.Lock()
			chain = append(chain, c.next)
		}
		defer func() {
			for i := len(chain) - 1; i >= 0; i-- {
				chain[i].handMu.Unlock()
			}
			b.handMu.Unlock()
		}()
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if !all {
		for _, m := range b.outbox.inflightDurable() {
			if d.toSpool(&m) == nil {
				m.x.copied.Store(true)
				d.spooling = true
			}
		}
	}
	msgs := b.outbox.takeDurable(all)
	for _, c := range chain {
		msgs = append(msgs, c.outbox.takeDurable(true)...)
	}
	for i := range msgs {
		if err := d.toSpool(&msgs[i]); err != nil {
			d.lost.Add(1)
			b.Stats.DurableLost.Add(1)
		}
	}
	d.queued -= int64(len(msgs))
	if len(msgs) > 0 {
		d.spooling = true
	}
	if d.spooling {
		signal(d.wake)
	}
	return len(msgs)
}

// forgetCopies deletes from the spool the copies Persist made of entries
// then in flight, which Redis has taken since (sequences seqs). It waits
// for the spool's disk (the writer's goroutine, never the main thread's).
// A copy it cannot delete (the spool closed by a Disconnect meanwhile, a
// disk failing) stays, and is sent again: a copy the consumer drops.
func (d *Durable) forgetCopies(seqs []int64) {
	if d == nil || d.spool == nil {
		return
	}
	_ = d.spool.Forget(seqs)
}

// answered uncounts n durable entries that left the outboxes (sent,
// refused or discarded).
func (d *Durable) answered(n int) {
	if d == nil || n == 0 {
		return
	}
	d.mu.Lock()
	d.queued -= int64(n)
	if d.queued == 0 && d.spooling {
		signal(d.wake) // the spool's turn
	}
	d.mu.Unlock()
}

// wakeChan is what the writer waits on besides its outbox: nil (never)
// without durable sends.
func (b *Bus) wakeChan() chan struct{} {
	if b.durable == nil {
		return nil
	}
	return b.durable.wake
}

// flushSpool sends the spool to Redis if appends are being spooled and no
// older entry waits in an outbox, then ends spooling once the spool is
// empty. Only a live writer calls it.
func (b *Bus) flushSpool() error {
	d := b.durable
	if d == nil || d.spool == nil {
		return nil
	}
	d.mu.Lock()
	ready := d.spooling && d.queued == 0
	d.mu.Unlock()
	if !ready {
		return nil
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-b.done:
		case <-b.handed:
		case <-ctx.Done():
		}
		cancel()
	}()
	d.learnClock(ctx, b.client)
	n, err := d.spool.FlushWith(ctx, b.client, func(e *spool.Entry) (int64, string) {
		if debugSend := debugSend.Load(); debugSend != nil {
			(*debugSend)(b, "flush", []string{e.ID})
		}
		return d.trim()
	})
	b.Stats.Flushed.Add(uint64(n))
	if err != nil {
		return err
	}
	d.mu.Lock()
	if d.queued == 0 && d.spool.Stats().Depth == 0 {
		d.spooling = false
	}
	again := d.spooling
	d.mu.Unlock()
	if again {
		signal(d.wake)
	}
	return nil
}

// inflightDurable copies the durable entries of the batch in flight.
func (q *fifo) inflightDurable() []outMsg {
	q.mu.Lock()
	defer q.mu.Unlock()
	var out []outMsg
	for i, m := range q.q.all() {
		if i >= q.inflight {
			break
		}
		if m.durableID() != "" {
			out = append(out, *m)
		}
	}
	return out
}

// takeDurable removes and returns the durable entries, skipping a batch
// in flight unless all.
func (q *fifo) takeDurable(all bool) []outMsg {
	q.mu.Lock()
	defer q.mu.Unlock()
	from := q.inflight
	if all {
		from = 0
	}
	found := false
	for i, m := range q.q.all() {
		if i >= from && m.durableID() != "" {
			found = true
			break
		}
	}
	if !found {
		return nil
	}
	msgs := q.q.appendTo(nil, q.q.n)
	q.q.reset()
	var out []outMsg
	for i := range msgs {
		m := &msgs[i]
		if i >= from && m.durableID() != "" {
			out = append(out, *m)
			q.bytes -= msgSize(m)
		} else {
			q.q.pushBack(m)
		}
	}
	return out
}

// Durable is b's durable-send state, nil when none.
func (b *Bus) Durable() *Durable { return b.durable }

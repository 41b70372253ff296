package redisbus

import (
	"iter"
	"slices"
	"sync"
)

// fifo is a queue of messages bounded by count and bytes: the outbox
// (Publish to the writer) and the inbox (the reader to deliver). Safe for
// concurrent use.
//
// The messages sit in a deque of fixed-size chunks, so that a put never
// copies the backlog (a slice whose head is cut off copied all of it on
// every growth, under the lock the consumer also takes), and the inbox's
// consumer takes the whole backlog by moving the chain of chunks.
type fifo struct {
	mu       sync.Mutex
	q        deque
	taken    int   // messages handed out by take and not yet released
	inflight int   // messages at the head handed out by peek, until remove
	bytes    int64 // of q and the taken ones
	maxMsgs  int
	maxBytes int64
	// sig is signalled when the queue goes from empty to not empty (and on
	// prepend and force): a consumer that waits on it takes or peeks until
	// the queue is empty before waiting again.
	sig chan struct{}
}

func newFIFO(maxMsgs int, maxBytes int64) *fifo {
	return &fifo{maxMsgs: maxMsgs, maxBytes: maxBytes, sig: make(chan struct{}, 1)}
}

func msgSize(m *outMsg) int64 { return int64(len(m.channel) + len(m.payload)) }

// put appends a message; false when the bounds are reached.
func (q *fifo) put(channel, payload string) bool {
	return q.putMsg(outMsg{channel: channel, payload: payload})
}

func (q *fifo) putMsg(m outMsg) bool {
	size := msgSize(&m)
	q.mu.Lock()
	if q.q.n+q.taken >= q.maxMsgs || q.bytes+size > q.maxBytes {
		q.mu.Unlock()
		return false
	}
	wasEmpty := q.q.n == 0
	q.q.pushBack(&m)
	q.bytes += size
	q.mu.Unlock()
	if wasEmpty {
		signal(q.sig)
	}
	return true
}

// setBounds changes the bounds; messages beyond new ones stay.
func (q *fifo) setBounds(maxMsgs int, maxBytes int64) {
	q.mu.Lock()
	q.maxMsgs, q.maxBytes = maxMsgs, maxBytes
	q.mu.Unlock()
}

// takeAll removes and returns every waiting message (not for a fifo that
// uses take).
func (q *fifo) takeAll() []outMsg {
	q.mu.Lock()
	defer q.mu.Unlock()
	msgs := q.q.appendTo(nil, q.q.n)
	q.q.reset()
	q.bytes, q.inflight = 0, 0
	return msgs
}

// prepend puts msgs, already accepted elsewhere, ahead of the waiting
// messages, whatever the bounds; behind a batch peek handed out, which
// remove will take off the head.
func (q *fifo) prepend(msgs []outMsg) {
	if len(msgs) == 0 {
		return
	}
	q.mu.Lock()
	var batch []outMsg
	for range q.inflight {
		batch = append(batch, q.q.popFront())
	}
	for i := len(msgs) - 1; i >= 0; i-- {
		q.q.pushFront(&msgs[i])
		q.bytes += msgSize(&msgs[i])
	}
	for i := len(batch) - 1; i >= 0; i-- {
		q.q.pushFront(&batch[i])
	}
	q.mu.Unlock()
	signal(q.sig)
}

// force appends m whatever the bounds.
func (q *fifo) force(m outMsg) {
	q.mu.Lock()
	q.q.pushBack(&m)
	q.bytes += msgSize(&m)
	q.mu.Unlock()
	signal(q.sig)
}

// take moves all waiting messages into d, which must be empty, in one
// step whatever their number. They still count against the bounds until
// released one by one, so that a consumer's backlog and the queue
// together stay within them.
//
// d's spare chunk (the last one it emptied) goes to the queue, so that
// the next put after a take reuses it: a consumer that takes a few
// messages at a time otherwise left every put after a take to allocate a
// new 15 KiB chunk, thousands a second at 10,000 messages/s, and the
// garbage collections they cost showed as tail latency.
func (q *fifo) take(d *deque) {
	q.mu.Lock()
	d.head, d.tail, d.hi, d.ti, d.n = q.q.head, q.q.tail, q.q.hi, q.q.ti, q.q.n
	q.q.head, q.q.tail, q.q.hi, q.q.ti, q.q.n = nil, nil, 0, 0, 0
	if q.q.spare == nil {
		q.q.spare, d.spare = d.spare, nil
	}
	q.taken += d.n
	q.mu.Unlock()
}

// release uncounts a message from take, once it is dealt with.
func (q *fifo) release(m *outMsg) {
	size := msgSize(m)
	q.mu.Lock()
	q.taken--
	q.bytes -= size
	q.mu.Unlock()
}

// peek copies up to n messages from the head; they stay at the head
// until remove.
func (q *fifo) peek(n int) []outMsg { return q.peekBatch(nil, n, 0) }

// peekBatch is peek appending to dst[:0], of no more messages than fit in
// maxBytes (0: any number), and at least one.
func (q *fifo) peekBatch(dst []outMsg, n int, maxBytes int64) []outMsg {
	q.mu.Lock()
	defer q.mu.Unlock()
	n = min(q.q.n, n)
	if maxBytes <= 0 {
		q.inflight = n
		return q.q.appendTo(dst[:0], n)
	}
	dst = dst[:0]
	var size int64
	for i, m := range q.q.all() {
		if size += msgSize(m); i >= n || i > 0 && size > maxBytes {
			break
		}
		dst = append(dst, *m)
	}
	q.inflight = len(dst)
	return dst
}

// remove drops the first n messages (n at most what peek returned).
func (q *fifo) remove(n int) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.inflight = 0
	q.dropHead(n)
}

func (q *fifo) dropHead(n int) {
	for range n {
		m := q.q.popFront()
		q.bytes -= msgSize(&m)
	}
}

// replaceHead puts keep (copies of some of them, in order) in place of the
// first n messages (n at most what peek returned).
func (q *fifo) replaceHead(n int, keep []outMsg) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.inflight = 0
	q.dropHead(n)
	for i := len(keep) - 1; i >= 0; i-- {
		q.q.pushFront(&keep[i])
		q.bytes += msgSize(&keep[i])
	}
}

func (q *fifo) len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.q.n
}

// chunkLen is the number of messages in one chunk of a deque.
const chunkLen = 128

type chunk struct {
	msgs [chunkLen]outMsg
	next *chunk
}

// deque is a double-ended queue of messages in a singly linked list of
// chunks: pushBack and popFront at the ends, pushFront into free slots
// before the head (a chunk of its own when there are none), each O(1)
// without copying other messages. Not safe for concurrent use.
type deque struct {
	head, tail *chunk
	hi, ti     int // head's first used slot; tail's first free slot
	n          int
	spare      *chunk // an emptied chunk kept for the next one needed
}

func (d *deque) newChunk() *chunk {
	if c := d.spare; c != nil {
		d.spare = nil
		return c
	}
	return new(chunk)
}

// free keeps c, emptied (its slots zeroed as they were popped), for reuse.
func (d *deque) free(c *chunk) {
	c.next = nil
	d.spare = c
}

func (d *deque) pushBack(m *outMsg) {
	switch {
	case d.tail == nil:
		c := d.newChunk()
		d.head, d.tail, d.hi, d.ti = c, c, 0, 0
	case d.ti == chunkLen:
		c := d.newChunk()
		d.tail.next, d.tail, d.ti = c, c, 0
	}
	d.tail.msgs[d.ti] = *m
	d.ti++
	d.n++
}

func (d *deque) pushFront(m *outMsg) {
	switch {
	case d.head == nil:
		c := d.newChunk()
		d.head, d.tail, d.hi, d.ti = c, c, chunkLen, chunkLen
	case d.hi == 0:
		c := d.newChunk()
		c.next, d.head, d.hi = d.head, c, chunkLen
	}
	d.hi--
	d.head.msgs[d.hi] = *m
	d.n++
}

// popFront removes and returns the first message; d must not be empty.
func (d *deque) popFront() outMsg {
	c := d.head
	m := c.msgs[d.hi]
	c.msgs[d.hi] = outMsg{} // let its strings go
	d.hi++
	d.n--
	switch {
	case d.n == 0:
		d.head, d.tail, d.hi, d.ti = nil, nil, 0, 0
		d.free(c)
	case d.hi == chunkLen:
		d.head, d.hi = c.next, 0
		d.free(c)
	}
	return m
}

// reset empties d, leaving its chunks (and what they hold) to the GC.
func (d *deque) reset() {
	d.head, d.tail, d.hi, d.ti, d.n = nil, nil, 0, 0, 0
}

// appendTo appends copies of the first n messages (n at most d.n) to dst.
func (d *deque) appendTo(dst []outMsg, n int) []outMsg {
	dst = slices.Grow(dst, n)
	for c, i := d.head, d.hi; n > 0; c, i = c.next, 0 {
		end := chunkLen
		if c == d.tail {
			end = d.ti
		}
		k := min(end-i, n)
		dst = append(dst, c.msgs[i:i+k]...)
		n -= k
	}
	return dst
}

// all yields the messages in order with their index; the pointer is to
// the message in place.
func (d *deque) all() iter.Seq2[int, *outMsg] {
	return func(yield func(int, *outMsg) bool) {
		k := 0
		for c, i := d.head, d.hi; k < d.n; c, i = c.next, 0 {
			end := chunkLen
			if c == d.tail {
				end = d.ti
			}
			for ; i < end; i++ {
				if !yield(k, &c.msgs[i]) {
					return
				}
				k++
			}
		}
	}
}

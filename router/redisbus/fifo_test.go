package redisbus

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

// TestInboxBoundCoversTheTakenBacklog: messages the consumer took but has
// not dealt with still count, so the inbox and the backlog together stay
// within the bounds (before, taking them freed the whole bound again).
func TestInboxBoundCoversTheTakenBacklog(t *testing.T) {
	q := newFIFO(2, 100)
	assert.True(t, q.put("a", "1"))
	assert.True(t, q.put("b", "2"))
	assert.False(t, q.put("c", "3"), "full by count")
	var batch deque
	q.take(&batch)
	assert.Equal(t, 2, batch.n)
	assert.False(t, q.put("c", "3"), "the taken messages are still held")
	m := batch.popFront()
	q.release(&m)
	assert.True(t, q.put("c", "3"))
	assert.False(t, q.put("d", "4"))

	q = newFIFO(100, 10)
	assert.True(t, q.put("ch", "12345678"))
	q.take(&batch)
	assert.False(t, q.put("x", "y"), "full by bytes while the batch is held")
	m = batch.popFront()
	q.release(&m)
	assert.True(t, q.put("x", "y"))
}

// TestPrependKeepsTheBatchInFlight: the writer peeks a batch, sends it and
// removes what Redis answered; an outbox handed over meanwhile (HandOver
// from the previous bus) goes behind that batch, not in front of it,
// where remove would take it off unsent and leave the sent batch to be
// sent again. (This lost the old bus's own publishes in
// TestReplaceWithoutGap about one run in twenty on a loaded machine.)
func TestPrependKeepsTheBatchInFlight(t *testing.T) {
	q := newFIFO(100, 1000)
	assert.True(t, q.put("c", "new1"))
	assert.True(t, q.put("c", "new2"))
	batch := q.peek(10)
	assert.Len(t, batch, 2)
	q.prepend([]outMsg{{channel: "c", payload: "old1"}, {channel: "c", payload: "old2"}})
	q.remove(len(batch)) // both sent and answered
	var left []string
	for _, m := range q.takeAll() {
		left = append(left, m.payload)
	}
	assert.Equal(t, []string{"old1", "old2"}, left, "the handed-over messages wait; the sent ones are gone")

	// Without a batch in flight, the handed-over messages go first.
	assert.True(t, q.put("c", "new3"))
	q.prepend([]outMsg{{channel: "c", payload: "old3"}})
	assert.Equal(t, "old3", q.peek(1)[0].payload)
}

// TestInboxHandOffAllocatesNothing: a reader putting a few messages at a
// time and a consumer taking them (the inbox at a steady rate) reuse the
// same chunks; before, every put after a take allocated a new 15 KiB
// chunk, and at 10,000 messages/s the collections they caused showed as
// tail latency.
func TestInboxHandOffAllocatesNothing(t *testing.T) {
	q := newFIFO(65536, 32<<20)
	var batch deque
	for _, n := range []int{1, 3, chunkLen - 1} {
		allocs := testing.AllocsPerRun(200, func() {
			for range n {
				q.put("ch", "payload")
			}
			q.take(&batch)
			for batch.n > 0 {
				m := batch.popFront()
				q.release(&m)
			}
		})
		assert.Zero(t, allocs, "allocations per hand-off of %d messages", n)
		assert.Zero(t, q.len())
	}
}

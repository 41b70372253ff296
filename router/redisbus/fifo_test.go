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
	batch := q.take(nil)
	assert.Len(t, batch, 2)
	assert.False(t, q.put("c", "3"), "the taken messages are still held")
	q.release(batch[0])
	assert.True(t, q.put("c", "3"))
	assert.False(t, q.put("d", "4"))

	q = newFIFO(100, 10)
	assert.True(t, q.put("ch", "12345678"))
	batch = q.take(nil)
	assert.False(t, q.put("x", "y"), "full by bytes while the batch is held")
	q.release(batch[0])
	assert.True(t, q.put("x", "y"))
}

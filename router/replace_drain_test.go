package router

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// drainBackend is a Drainer that keeps Drain's callback until the test
// runs it: its connection still holds messages Redis sent it.
type drainBackend struct {
	sinkBackend
	drained func()
	closed  bool
}

func (b *drainBackend) Drain(done func()) { b.drained = done }
func (b *drainBackend) Close() error      { b.closed = true; return nil }

// TestSecondReplaceWhileTheFirstOldBackendDrains: Reload A -> B; B
// connects and A drains what Redis had sent it (messages published before
// B's subscriptions were in place, which only A has). A second Reload
// B -> C connects before A has drained: B drains too, and A's remaining
// messages are still delivered (promote(C) made B the one draining sink,
// so A's were thrown away, neither delivered nor counted as dropped).
func TestSecondReplaceWhileTheFirstOldBackendDrains(t *testing.T) {
	r, err := New(parseConfig(t, "[[routes]]\nname = \"seq\"\nchannel = \"seq\"\nhandler = \"h\"\n"))
	require.NoError(t, err)
	a, b, c := &drainBackend{}, &drainBackend{}, &drainBackend{}
	r.Attach(a)
	a.sink.SetStatus(StatusConnected, "")
	r.Replace(b)
	b.sink.SetStatus(StatusConnected, "")
	require.NotNil(t, a.drained, "A is draining")
	r.Replace(c)
	c.sink.SetStatus(StatusConnected, "")

	a.sink.Deliver("seq", "read by A before its drain ended")
	a.drained()
	assert.True(t, a.closed)
	assert.Equal(t, uint64(1), r.Stats.Received.Load(),
		"a message A read before its drain ended is neither delivered nor counted (drops: %v)", r.Stats.Dropped())
}

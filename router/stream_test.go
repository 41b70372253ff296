package router

import (
	"strconv"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// nopSettler settles nothing.
type nopSettler struct{}

func (nopSettler) Ack(string, string, string)          {}
func (nopSettler) Nack(string, string, string)         {}
func (nopSettler) Dead(string, string, string, string) {}
func (nopSettler) Release(string, string, string)      {}

// TestDeliverEntryOnceWhenOfferedTogether: two readers of one consumer (a
// connection and the one replacing it) offering the same entry at the same
// moment queue it once; once settled, it may be queued again.
func TestDeliverEntryOnceWhenOfferedTogether(t *testing.T) {
	r, err := New(parseConfig(t, "[server]\nid = \"s\"\n[[routes]]\nstream = \"cmds\"\nhandler = \"h\"\n"))
	require.NoError(t, err)
	defer r.Close()
	const n = 200
	for i := range n {
		e := StreamEntry{Stream: "cmds", Group: "realtime:s", ID: "1-" + strconv.Itoa(i), Fields: []string{"data", "x"}, Deliveries: 1}
		var wg sync.WaitGroup
		for range 2 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				assert.True(t, r.DeliverEntry(e, nopSettler{}))
			}()
		}
		wg.Wait()
	}
	require.Equal(t, n, r.Queue().Pending(), "each entry queued once")
	ev := r.Next()
	r.Settle(ev, true)
	assert.True(t, r.DeliverEntry(StreamEntry{Stream: "cmds", Group: "realtime:s", ID: ev.Entry.ID, Fields: []string{"data", "x"}}, nopSettler{}))
	assert.Equal(t, n, r.Queue().Pending(), "settled, it can come again")
}

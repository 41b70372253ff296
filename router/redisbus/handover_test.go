package redisbus

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gmod-realtime/realtime/internal/redistest"
)

// TestReplaceWithoutGap: a reload that needs a new connection subscribes
// on it before the old one is dropped: a publisher running through the
// switch loses no message (some may arrive twice), Lua sees no
// disconnect, and what this server published is all sent. (About one run
// in twenty under load lost some of the old bus's own publishes: its
// outbox, passed to the new bus while the new writer had a batch in
// flight, went in front of that batch, and the writer's remove took it
// off unsent; see TestPrependKeepsTheBatchInFlight.)
func TestReplaceWithoutGap(t *testing.T) {
	srv := redistest.Start(t)
	// Keepalive intervals of seconds: with the harness's 300ms, a loaded
	// machine (load average 20 on 2 cores) stalled both connections past
	// two intervals about one run in a hundred, a real outage to the bus,
	// which loses what is published meanwhile; this test is about the
	// handover.
	h := startHarness(t, fmt.Sprintf("[redis]\nurl = %q\nread_timeout = \"3s\"\nreconnect_min = \"50ms\"\nreconnect_max = \"500ms\"\n", srv.URL())+
		"[[routes]]\nname = \"seq\"\nchannel = \"seq\"\nhandler = \"h\"\n[[routes]]\nname = \"own\"\nchannel = \"own\"\nhandler = \"h\"\n")
	h.waitStatus("connected")
	c := client(t, srv)
	h.publish(c, "seq", "warmup", 1)

	const n = 1500
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; i < n; i++ {
			c.Publish(context.Background(), "seq", fmt.Sprint(i))
			if i%50 == 0 {
				time.Sleep(time.Millisecond)
			}
		}
	}()
	for i := 0; i < 100; i++ {
		require.NoError(t, h.r.Publish("own", fmt.Sprint(i)))
	}
	next, err := New(redisConfig(t, fmt.Sprintf("[redis]\nurl = %q\nread_timeout = \"4s\"\n", srv.URL())))
	require.NoError(t, err)
	old := h.bus
	old.HandOver(next)
	h.r.Replace(next)
	for i := 100; i < 200; i++ {
		require.NoError(t, h.r.Publish("own", fmt.Sprint(i)))
	}
	wg.Wait()
	require.NoError(t, c.Publish(context.Background(), "seq", "end").Err())
	h.waitFor("everything", 20*time.Second, func() bool {
		return slicesContains(h.msgs, "seq<-seq=end") && slicesContains(h.msgs, "own<-own=199")
	})
	old.Wait() // the old bus was closed once the new one was connected
	got := map[string]bool{}
	for _, m := range h.msgs {
		got[m] = true
	}
	var lost []int
	for i := 0; i < n; i++ {
		if !got[fmt.Sprintf("seq<-seq=%d", i)] {
			lost = append(lost, i)
		}
	}
	assert.Empty(t, lost, "messages lost in the switch")
	var unsent []int
	for i := 0; i < 200; i++ {
		if !got[fmt.Sprintf("own<-own=%d", i)] {
			unsent = append(unsent, i)
		}
	}
	assert.Empty(t, unsent, "own publishes lost in the switch")
	assert.Equal(t, []string{"connecting", "connected"}, h.statuses, "no disconnect reached Lua (reasons: %q)", h.reasons)
	assert.Same(t, next, h.r.Backend())
}

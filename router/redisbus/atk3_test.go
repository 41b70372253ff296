package redisbus

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gmod-realtime/realtime/internal/redistest"
)

// TestStreamCloseAcksGoPastABusyStream: the acks sent at Close
// (lastFlush) and after it (lateAcks) stopped at the first stream whose
// XACK Redis answered "not now" and began again from the first stream
// after the backoff: each stream's acks waited for every stream before
// it to get through. With ten streams whose XACKs meet a few BUSY replies
// each (a Cluster's nodes loading one after another), the streams at the
// end of the list were never reached within the pass's bound
// (write_timeout + read_timeout): their entries, acknowledged by their
// handlers, stayed pending and were handed out again to the next reader.
func TestStreamCloseAcksGoPastABusyStream(t *testing.T) {
	for _, late := range []bool{false, true} {
		t.Run(map[bool]string{false: "at Close", true: "after Close"}[late], func(t *testing.T) {
			srv := redistest.Start(t)
			c := client(t, srv)
			const streams, busyEach = 10, 5
			var mu sync.Mutex
			armed := false
			busy := map[string]int{} // XACKs answered BUSY, by stream
			addr := editProxy(t, srv.Addr(), func(args []string) []string {
				if !strings.EqualFold(args[0], "xack") {
					return nil
				}
				mu.Lock()
				defer mu.Unlock()
				if armed && busy[args[1]] < busyEach {
					busy[args[1]]++
					return busyInstead
				}
				return nil
			})
			var specs []StreamSpec
			for i := range streams {
				specs = append(specs, StreamSpec{Stream: fmt.Sprintf("s%d", i), Group: "g", Start: "0"})
			}
			sink := newChanSink(2 * streams)
			o := StreamOptions{Consumer: "srv1", Block: 200 * time.Millisecond, Logf: t.Logf}
			r, err := NewStreamReader(streamConfig(addr), o, specs, sink)
			require.NoError(t, err)
			t.Cleanup(func() { r.Close(); r.Wait() })
			for _, s := range specs {
				xadd(t, c, s.Stream, "n", "1")
			}
			var got []Entry
			for range streams {
				got = append(got, recv(t, sink, 10*time.Second))
			}
			mu.Lock()
			armed = true
			mu.Unlock()
			if late {
				r.Close()
				r.wg.Wait() // the worker's last pass done: only lateAcks sends them
			}
			for _, e := range got {
				r.Ack(e.Stream, e.Group, e.ID)
			}
			if !late {
				r.Close()
			}
			r.Wait()
			var left []string
			for _, s := range specs {
				if n := pendingCount(c, s.Stream, s.Group); n != 0 {
					left = append(left, fmt.Sprintf("%s: %d", s.Stream, n))
				}
			}
			assert.Empty(t, left, "acknowledged entries left pending")
		})
	}
}

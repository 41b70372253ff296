package redisbus

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestStreamSettleDuringBusyScript: an XACK, XCLAIM or dead-letter
// transaction that Redis answers "not now" (BUSY while a script runs,
// LOADING after a restart) is sent again once Redis serves again. It was
// taken for a refusal: the entries stayed pending until the next reconnect
// or restart, so a handled entry came again then, a failed one was not
// retried and a dead one was not dead-lettered (CI failure of
// TestStreamRedisRestart at eeadccd: "XACK refused ... LOADING").
func TestStreamSettleDuringBusyScript(t *testing.T) {
	for _, tc := range []struct {
		name   string
		settle func(r *StreamReader, e Entry)
		op     string // in the log line of the settling command's BUSY
	}{
		{"ack", func(r *StreamReader, e Entry) { r.Ack(e.Stream, e.Group, e.ID) }, "XACK"},
		{"nack", func(r *StreamReader, e Entry) { r.Nack(e.Stream, e.Group, e.ID) }, "retrying"},
		{"dead", func(r *StreamReader, e Entry) { r.Dead(e.Stream, e.Group, e.ID, "malformed") }, "dead-lettering"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv, c := busyServer(t)
			sink := newChanSink(16)
			var sawBusy atomic.Bool
			o := StreamOptions{Consumer: "srv1", Block: 200 * time.Millisecond, RetryDelay: 50 * time.Millisecond, Count: 10}
			o.Logf = func(f string, a ...any) {
				line := fmt.Sprintf(f, a...)
				t.Log(line)
				if strings.Contains(line, tc.op) && strings.Contains(line, "BUSY") {
					sawBusy.Store(true)
				}
			}
			r, err := NewStreamReader(streamConfig(srv.Addr()), o, []StreamSpec{{Stream: "s", Group: "g", Start: "0", MaxDeliveries: 5}}, sink)
			require.NoError(t, err)
			t.Cleanup(func() { r.Close(); r.Wait() })
			const n = 3
			for i := range n {
				xadd(t, c, "s", "n", strconv.Itoa(i))
			}
			var first []Entry
			for range n {
				first = append(first, recv(t, sink, 10*time.Second))
			}
			stop := runBusyScript(t, srv)
			for _, e := range first {
				tc.settle(r, e)
			}
			waitUntil(t, "the reader to meet BUSY", 10*time.Second, sawBusy.Load)
			stop()
			switch tc.name {
			case "ack":
				waitUntil(t, "the entries acknowledged and counted", 10*time.Second, func() bool {
					return pendingCount(c, "s", "g") == 0 && r.Stats()["s"].Acked == uint64(n)
				})
			case "nack":
				for range n {
					e := recv(t, sink, 10*time.Second)
					assert.Equal(t, int64(2), e.Deliveries, "%s retried", e.ID)
					r.Ack(e.Stream, e.Group, e.ID)
				}
				waitUntil(t, "the entries acknowledged", 10*time.Second, func() bool { return pendingCount(c, "s", "g") == 0 })
			case "dead":
				waitUntil(t, "the entries dead-lettered and counted", 10*time.Second, func() bool {
					return c.XLen(context.Background(), "s:dead").Val() == n && pendingCount(c, "s", "g") == 0 &&
						r.Stats()["s"].Dead == uint64(n)
				})
			}
		})
	}
}

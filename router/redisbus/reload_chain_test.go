package redisbus

import (
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gmod-realtime/realtime/internal/redistest"
)

// writerInBatch reports whether some bus's writer is inside publishBatch,
// waiting on Redis's answers.
func writerInBatch() bool {
	buf := make([]byte, 1<<20)
	return strings.Contains(string(buf[:runtime.Stack(buf, true)]), "redisbus.(*Bus).publishBatch")
}

// TestTwoReloadsWhileABatchIsOnTheWire: two Reloads that each need a new
// connection (bus0 -> n1 -> n2) while bus0's writer waits on Redis for a
// batch. bus0's writer passes the rest of its outbox on when its batch is
// answered, by which time n1 has already handed over to n2 and been closed
// by the second Replace: the messages must go on to n2 (they landed in
// the closed n1's outbox and were never published, with Publish having
// returned nil and no counter moved).
func TestTwoReloadsWhileABatchIsOnTheWire(t *testing.T) {
	srv := redistest.Start(t)
	got := collect(t, client(t, srv), "own")
	toml := fmt.Sprintf("[redis]\nurl = %q\nread_timeout = \"3s\"\nwrite_timeout = \"3s\"\nreconnect_min = \"50ms\"\nreconnect_max = \"500ms\"\n", srv.URL())
	h := startHarness(t, toml+"[[routes]]\nname = \"own\"\nchannel = \"own\"\nhandler = \"h\"\n")
	h.waitStatus("connected")
	h.waitSubscribed()

	srv.Pause()
	resumed := false
	defer func() {
		if !resumed {
			srv.Resume()
		}
	}()
	require.NoError(t, h.r.Publish("own", "0"))
	h.waitFor("the writer sending its batch", 10*time.Second, writerInBatch)
	const n = 300
	for i := 1; i < n; i++ {
		require.NoError(t, h.r.Publish("own", fmt.Sprint(i)))
	}

	bus0 := h.bus
	n1, err := New(redisConfig(t, strings.Replace(toml, `read_timeout = "3s"`, `read_timeout = "2s"`, 1)))
	require.NoError(t, err)
	bus0.HandOver(n1)
	h.r.Replace(n1)
	n2, err := New(redisConfig(t, strings.Replace(toml, `read_timeout = "3s"`, `read_timeout = "1s"`, 1)))
	require.NoError(t, err)
	n1.HandOver(n2)
	h.r.Replace(n2)
	srv.Resume()
	resumed = true

	deadline := time.Now().Add(20 * time.Second)
	var missing []int
	for time.Now().Before(deadline) {
		h.drain()
		missing = missing[:0]
		for i := 0; i < n; i++ {
			if got.get(fmt.Sprintf("own=%d", i)) == 0 {
				missing = append(missing, i)
			}
		}
		if len(missing) == 0 {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	assert.Empty(t, len(missing), "messages published (Publish returned nil) that never reached Redis (first: %v); publish_failed=%d, outbox of the closed n1=%d, of n2=%d",
		missing[:min(len(missing), 5)], h.r.Stats.PublishFails.Load(), n1.OutboxLen(), n2.OutboxLen())
}

// TestTwoReloadsInARowWhileDown: a bus that cannot connect (wrong
// password) holds 10 publishes; two Reloads run back to back on the main
// thread (the first still wrong, the second right), as a script fixing
// its config in two steps does. The first bus's writer passes its outbox
// on whenever the scheduler runs it, which can be after the middle bus
// handed over and stopped: the messages must still reach the last bus.
// Rounds repeat the race.
func TestTwoReloadsInARowWhileDown(t *testing.T) {
	srv := redistest.Start(t, "--requirepass", "right")
	for round := 0; round < 20; round++ {
		tag := fmt.Sprintf("own%d", round)
		h := newHarness(t, srv, fmt.Sprintf("[[routes]]\nname = \"own\"\nchannel = %q\nhandler = \"h\"\n", tag), `password = "wrong"`)
		h.waitStatus("disconnected")
		for i := 0; i < 10; i++ {
			require.NoError(t, h.r.Publish(tag, fmt.Sprint(i)))
		}
		n1, err := New(redisConfig(t, fmt.Sprintf("[redis]\nurl = %q\npassword = \"still-wrong\"\n", srv.URL())))
		require.NoError(t, err)
		h.bus.HandOver(n1)
		h.r.Replace(n1)
		n2, err := New(redisConfig(t, fmt.Sprintf("[redis]\nurl = %q\npassword = \"right\"\n", srv.URL())))
		require.NoError(t, err)
		n1.HandOver(n2)
		h.r.Replace(n2)
		deadline := time.Now().Add(10 * time.Second)
		for time.Now().Before(deadline) && len(h.msgs) < 10 {
			h.drain()
			time.Sleep(5 * time.Millisecond)
		}
		require.Len(t, h.msgs, 10, "round %d: the held publishes; the first bus's outbox holds %d, the stopped middle one's %d; the last one published %d", round, h.bus.OutboxLen(), n1.OutboxLen(), n2.Stats.Published.Load())
		_ = h.r.Close()
	}
}

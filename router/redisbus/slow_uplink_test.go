package redisbus

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gmod-realtime/realtime/internal/redistest"
)

func slowUplinkConfig(addr, readTimeout, writeTimeout string) string {
	return fmt.Sprintf("[redis]\nurl = \"redis://%s\"\nread_timeout = %q\nwrite_timeout = %q\nreconnect_min = \"10ms\"\nreconnect_max = \"50ms\"\noutbox_events = 100000\noutbox_bytes = \"64MiB\"\n", addr, readTimeout, writeTimeout)
}

// TestHugeMessageOnSlowUplink: a 2 MiB message over a 1 MiB/s uplink with
// a 300 ms write timeout can never be written in time. It was sent again
// for ever: published again at each try whose bytes Redis got whole, and
// every message behind it waited for ever. Now, since Redis answers a probe
// meanwhile, it is given up after tooSlowTries tries, counted as
// publish_failed and logged with its size, and the messages behind it go
// out, once each, in order.
func TestHugeMessageOnSlowUplink(t *testing.T) {
	srv := redistest.Start(t)
	c := client(t, srv)
	got := collect(t, c, "big:*")
	h, logs := startLogged(t, slowUplinkConfig(slowUplinkProxy(t, srv.Addr(), 1<<20), "300ms", "300ms"))
	huge := strings.Repeat("x", 2<<20)
	require.NoError(t, h.r.Publish("big:huge", huge))
	const n = 20
	for i := range n {
		require.NoError(t, h.r.Publish("big:after", fmt.Sprint(i)))
	}
	h.waitFor("the messages behind it", 60*time.Second, func() bool { return got.get(fmt.Sprintf("big:after=%d", n-1)) > 0 })

	assert.LessOrEqual(t, got.get("big:huge="+huge), tooSlowTries, "published at most once per try")
	assert.Equal(t, uint64(1), h.r.Stats.PublishFails.Load(), "given up and counted as publish_failed")
	assert.True(t, logs.contains(`publish to "big:huge" not sent: a 2097152-byte message `), "logged: %v", logs.all())
	assert.Equal(t, counting(n), got.payloads("big:after"), "the messages behind it, once each, in order")
}

// TestBatchShrinksOnSlowUplink: 512 messages of 4 KiB (2 MiB) over a
// 1 MiB/s uplink with a 500 ms write timeout. A full batch (1 MiB) times
// out every time; the writer halves its batches until they get through,
// so every message is published, none given up.
func TestBatchShrinksOnSlowUplink(t *testing.T) {
	srv := redistest.Start(t)
	c := client(t, srv)
	got := collect(t, c, "big:*")
	h := startHarness(t, slowUplinkConfig(slowUplinkProxy(t, srv.Addr(), 1<<20), "500ms", "500ms"))
	body := strings.Repeat("x", 4<<10)
	const n = 512
	for i := range n {
		require.NoError(t, h.bus.Publish("big:x", fmt.Sprintf("%d|%s", i, body)))
	}
	h.waitFor("the outbox sent", 90*time.Second, func() bool {
		return h.bus.OutboxLen() == 0 && got.get(fmt.Sprintf("big:x=%d|%s", n-1, body)) > 0
	})
	for i := range n {
		assert.Positive(t, got.get(fmt.Sprintf("big:x=%d|%s", i, body)), "message %d published", i)
	}
	assert.Zero(t, h.r.Stats.PublishFails.Load(), "none given up")
	t.Logf("%d retried batches", h.bus.Stats.PublishRetry.Load())
}

// TestTooSlowAsksRedis: the writer gives up a lone big message only while
// Redis answers a probe. Stopped (SIGSTOP), Redis answers none, however many
// times the message fails: the message waits for Redis as any other. Then,
// Redis answering, the third failure in a row gives it up, counted and
// logged. Small messages, heartbeats, durable entries and batches of
// several are never given up.
func TestTooSlowAsksRedis(t *testing.T) {
	srv := redistest.Start(t)
	h, logs := startLogged(t, slowUplinkConfig(srv.Addr(), "1s", "200ms"))
	h.waitFor("connected", 10*time.Second, func() bool { return h.bus.live.Load() })
	big := []outMsg{{channel: "big:x", payload: strings.Repeat("z", bigMessage)}}
	slow := 0
	srv.Pause()
	for range 2 * tooSlowTries {
		assert.False(t, h.bus.tooSlow(big, nil, &slow), "Redis stopped: not given up")
	}
	srv.Resume()
	for _, batch := range [][]outMsg{
		{{channel: "big:x", payload: strings.Repeat("z", bigMessage-len("big:x")-1)}},
		{big[0], big[0]},
		{{channel: "big:x", payload: big[0].payload, x: &outExtra{id: "s1-1"}}},
	} {
		for range 2 * tooSlowTries {
			assert.False(t, h.bus.tooSlow(batch, nil, &slow), "never given up: %d message(s) of %d bytes", len(batch), msgSize(&batch[0]))
		}
	}
	for range tooSlowTries - 1 {
		assert.False(t, h.bus.tooSlow(big, nil, &slow))
	}
	assert.True(t, h.bus.tooSlow(big, nil, &slow), "the third failure in a row with Redis answering")
	assert.Equal(t, uint64(1), h.r.Stats.PublishFails.Load())
	assert.True(t, logs.contains(fmt.Sprintf(`publish to "big:x" not sent: a %d-byte message could not be written within redis.write_timeout (200ms) in 3 tries`, bigMessage)), "logged: %v", logs.all())
}

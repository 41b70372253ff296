package redisbus

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gmod-realtime/realtime/config"
	"github.com/gmod-realtime/realtime/internal/redistest"
	"github.com/gmod-realtime/realtime/router"
)

// stalledSink is a router.Sink whose first Deliver waits until released:
// routing that fell behind the socket.
type stalledSink struct {
	entered, release chan struct{}
	once             sync.Once
	mu               sync.Mutex
	delivered        int
	drops            map[string]int
	statuses         []router.Status
}

func (s *stalledSink) Deliver(string, string) {
	s.once.Do(func() { close(s.entered); <-s.release })
	s.mu.Lock()
	s.delivered++
	s.mu.Unlock()
}

func (s *stalledSink) SetStatus(st router.Status, _ string) {
	s.mu.Lock()
	s.statuses = append(s.statuses, st)
	s.mu.Unlock()
}

func (s *stalledSink) Drop(reason string) {
	s.mu.Lock()
	s.drops[reason]++
	s.mu.Unlock()
}

func (s *stalledSink) PublishFailed(string, string)          {}
func (s *stalledSink) SubscribeRefused(string, bool, string) {}
func (s *stalledSink) Discarded(int)                         {}

func (s *stalledSink) count() (delivered, dropped int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.delivered, s.drops[router.DropQueueFull]
}

// TestInboxOverflow: while routing is stuck, the reader keeps reading the
// socket into the inbox (65,536 messages) and drops what does not fit,
// counted as redis.inbox_dropped and queue_full, instead of falling behind
// until Redis cuts the connection; everything that fitted is delivered once
// routing resumes.
func TestInboxOverflow(t *testing.T) {
	srv := redistest.Start(t)
	cfg, err := config.Parse("test.toml", []byte("[redis]\nurl = \""+srv.URL()+"\"\n"))
	require.NoError(t, err)
	bus, err := New(cfg.Redis)
	require.NoError(t, err)
	sink := &stalledSink{entered: make(chan struct{}), release: make(chan struct{}), drops: map[string]int{}}
	bus.Start(sink, router.Plan{Channels: []string{"flood"}})
	t.Cleanup(func() { _ = bus.Close(); bus.Wait() })
	t.Cleanup(func() {
		select {
		case <-sink.release:
		default:
			close(sink.release)
		}
	})

	c := redis.NewClient(&redis.Options{Addr: srv.Addr(), Protocol: 2})
	t.Cleanup(func() { _ = c.Close() })
	ctx := context.Background()
	// One message reaches the sink and stalls it (PUBLISH says 0 until the
	// subscription is live).
	require.Eventually(t, func() bool { return c.Publish(ctx, "flood", "first").Val() == 1 }, 15*time.Second, 5*time.Millisecond)
	select {
	case <-sink.entered:
	case <-time.After(15 * time.Second):
		t.Fatal("the first message never reached the sink")
	}

	const inbox, over = 65536, 5000
	for sent := 0; sent < inbox+over; {
		pipe := c.Pipeline()
		for i := 0; i < 10_000 && sent < inbox+over; i++ {
			pipe.Publish(ctx, "flood", "x")
			sent++
		}
		_, err := pipe.Exec(ctx)
		require.NoError(t, err)
	}
	// The bound counts the batch being delivered (the stalled message):
	// the inbox holds inbox-1 more, the rest is dropped and counted.
	require.Eventually(t, func() bool { return bus.Stats.InboxDropped.Load() >= over+1 }, 60*time.Second, time.Millisecond,
		"inbox_dropped %d", bus.Stats.InboxDropped.Load())
	close(sink.release)
	require.Eventually(t, func() bool { d, _ := sink.count(); return d == inbox }, 60*time.Second, time.Millisecond)

	delivered, dropped := sink.count()
	assert.Equal(t, inbox, delivered, "delivered: the stalled one and a full inbox")
	assert.Equal(t, uint64(over+1), bus.Stats.InboxDropped.Load(), "redis.inbox_dropped")
	assert.Equal(t, over+1, dropped, "queue_full drops reported to the router")
	assert.Equal(t, 1+inbox+over, delivered+dropped, "every message delivered or counted")
	sink.mu.Lock()
	defer sink.mu.Unlock()
	assert.NotContains(t, sink.statuses, router.StatusDisconnected, "the connection never dropped")
}

// gateSink records what it is handed, in order; a payload named in stall
// blocks its Deliver until the test closes its channel.
type gateSink struct {
	stalledSink
	stall   map[string]chan struct{}
	entered chan string
	mu2     sync.Mutex
	got     []string
}

func (s *gateSink) Deliver(_ string, payload string) {
	if release := s.stall[payload]; release != nil {
		s.entered <- payload
		<-release
	}
	s.mu2.Lock()
	s.got = append(s.got, payload)
	s.mu2.Unlock()
}

func (s *gateSink) delivered() []string {
	s.mu2.Lock()
	defer s.mu2.Unlock()
	return append([]string(nil), s.got...)
}

// TestReaderRoutingKeepsOrder: a message that comes alone is routed by the
// reader itself; when that routing stalls, another goroutine goes on
// reading the socket into the inbox, and what it read is routed after the
// stalled message, never before; a Redis cut meanwhile is reported at
// once. Messages that come alone, in bursts and behind stalls all arrive,
// each once, in the order they were published.
func TestReaderRoutingKeepsOrder(t *testing.T) {
	srv := redistest.Start(t)
	cfg, err := config.Parse("test.toml", []byte("[redis]\nurl = \""+srv.URL()+"\"\n"))
	require.NoError(t, err)
	bus, err := New(cfg.Redis)
	require.NoError(t, err)
	sink := &gateSink{stalledSink: stalledSink{drops: map[string]int{}},
		stall: map[string]chan struct{}{"s0": make(chan struct{}), "s1": make(chan struct{})}, entered: make(chan string)}
	bus.Start(sink, router.Plan{Channels: []string{"c"}})
	t.Cleanup(func() { _ = bus.Close(); bus.Wait() })
	released := map[string]bool{}
	t.Cleanup(func() { // a failed test leaves no Deliver stalled
		for p, release := range sink.stall {
			if !released[p] {
				close(release)
			}
		}
	})

	c := redis.NewClient(&redis.Options{Addr: srv.Addr(), Protocol: 2})
	t.Cleanup(func() { _ = c.Close() })
	ctx := context.Background()
	require.Eventually(t, func() bool { return bus.live.Load() }, 15*time.Second, time.Millisecond)
	var want []string
	publish := func(p string) {
		require.NoError(t, c.Publish(ctx, "c", p).Err())
		want = append(want, p)
	}
	settled := func() {
		require.Eventually(t, func() bool { return len(sink.delivered()) == len(want) }, 15*time.Second, time.Millisecond,
			"delivered %d of %d", len(sink.delivered()), len(want))
	}
	burst := func(tag string, n int) {
		pipe := c.Pipeline()
		for i := range n {
			p := fmt.Sprintf("%s%d", tag, i)
			pipe.Publish(ctx, "c", p)
			want = append(want, p)
		}
		_, err := pipe.Exec(ctx)
		require.NoError(t, err)
	}
	for i := range 20 { // alone: each waits for the one before
		publish(fmt.Sprint("a", i))
		settled()
	}
	for round, stalled := range []string{"s0", "s1"} {
		publish(stalled) // alone, routed by the reader, which stalls
		require.Equal(t, stalled, <-sink.entered)
		burst(fmt.Sprint("b", round, "-"), 100)
		require.Eventually(t, func() bool { return bus.inbox.len() == 100 }, 15*time.Second, time.Millisecond,
			"the burst read into the inbox while routing is stalled")
		if round == 1 {
			// Redis restarts while routing is stalled: the outage is
			// reported, the messages read before it are kept.
			srv.Restart()
			require.Eventually(t, func() bool {
				sink.mu.Lock()
				defer sink.mu.Unlock()
				return len(sink.statuses) > 0 && sink.statuses[len(sink.statuses)-1] == router.StatusDisconnected
			}, 15*time.Second, time.Millisecond, "the cut reported while routing is stalled")
		}
		close(sink.stall[stalled])
		released[stalled] = true
		settled()
		require.Eventually(t, func() bool { return bus.live.Load() }, 15*time.Second, time.Millisecond)
		for i := range 5 {
			publish(fmt.Sprint("c", round, "-", i))
			settled()
		}
		burst(fmt.Sprint("d", round, "-"), 300)
		settled()
	}
	assert.Equal(t, want, sink.delivered(), "every message once, in order")
	assert.Zero(t, bus.Stats.InboxDropped.Load())
}

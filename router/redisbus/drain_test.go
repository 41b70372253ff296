package redisbus

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gmod-realtime/realtime/config"
	"github.com/gmod-realtime/realtime/internal/redistest"
	"github.com/gmod-realtime/realtime/router"
)

// TestDrainAfterTheConnectionDroppedKeepsTheInbox: Drain's contract is
// "done once every message Redis sent this bus before the call has been
// handed to the sink", and Router.promote closes the bus from done. When
// the old connection has just dropped while routing is behind, done must
// still wait for the messages already read into the inbox (it ran at
// once, and the Close that followed discarded them, delivered to no one
// and counted nowhere: Router.Replace after an outage of the old
// connection, under load).
func TestDrainAfterTheConnectionDroppedKeepsTheInbox(t *testing.T) {
	srv := redistest.Start(t)
	p := startProxy(t, srv.Addr(), func(int) faults { return faults{} })
	cfg, err := config.Parse("test.toml", []byte(fmt.Sprintf("[redis]\nurl = \"redis://%s\"\nreconnect_min = \"5s\"\nreconnect_max = \"5s\"\n", p.Addr())))
	require.NoError(t, err)
	bus, err := New(cfg.Redis)
	require.NoError(t, err)
	sink := &stalledSink{entered: make(chan struct{}), release: make(chan struct{}), drops: map[string]int{}}
	bus.Start(sink, router.Plan{Channels: []string{"c"}})
	released := false
	defer func() {
		if !released {
			close(sink.release)
		}
		_ = bus.Close()
		bus.Wait()
	}()

	c := redis.NewClient(&redis.Options{Addr: srv.Addr(), Protocol: 2})
	defer c.Close()
	ctx := context.Background()
	require.Eventually(t, func() bool { return c.Publish(ctx, "c", "first").Val() == 1 }, 15*time.Second, 5*time.Millisecond)
	select {
	case <-sink.entered: // routing is stuck on "first"
	case <-time.After(15 * time.Second):
		t.Fatal("the first message never reached the sink")
	}
	const n = 100
	for i := 0; i < n; i++ {
		require.NoError(t, c.Publish(ctx, "c", fmt.Sprint(i)).Err())
	}
	require.Eventually(t, func() bool { return bus.inbox.len() == n }, 15*time.Second, time.Millisecond, "read into the inbox")

	p.cut() // the old connection drops; its reconnect waits 5s
	require.Eventually(t, func() bool {
		sink.mu.Lock()
		defer sink.mu.Unlock()
		return len(sink.statuses) > 0 && sink.statuses[len(sink.statuses)-1] == router.StatusDisconnected
	}, 15*time.Second, time.Millisecond)

	drained := make(chan int, 1)
	bus.Drain(func() { // what Router.promote's retire does
		d, _ := sink.count()
		drained <- d
		_ = bus.Close()
	})
	close(sink.release)
	released = true
	bus.Wait()
	atDone := <-drained
	// After done, Router.promote's retire stops the sink delivering
	// (draining = 0) and closes the bus: what is not handed over by then
	// is lost.
	assert.Equal(t, 1+n, atDone, "messages read before Drain and handed to the sink when done ran")
}

package api

import (
	"context"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gmod-realtime/realtime/internal/redistest"
)

// heldPublishes starts a module whose configured Redis address is
// unreachable and publishes "0".."4" on "held", which wait in its outbox;
// ps is subscribed to "held" on srv, the Redis to Connect to.
func heldPublishes(t *testing.T) (*redistest.Server, *redis.PubSub, *Module) {
	t.Helper()
	srv := redistest.Start(t)
	sub := redis.NewClient(&redis.Options{Addr: srv.Addr(), Protocol: 2})
	t.Cleanup(func() { _ = sub.Close() })
	ps := sub.Subscribe(context.Background(), "held")
	t.Cleanup(func() { _ = ps.Close() })
	_, err := ps.Receive(context.Background())
	require.NoError(t, err)

	dead, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := dead.Addr().String()
	require.NoError(t, dead.Close())
	m, _ := start(t, "[redis]\nurl = \"redis://"+addr+"\"\nconnect_timeout = \"200ms\"\nreconnect_min = \"50ms\"\nreconnect_max = \"100ms\"\n")
	for i := 0; i < 5; i++ {
		require.NoError(t, m.Publish("held", fmt.Sprint(i)), "held in the outbox")
	}
	return srv, ps, m
}

// TestConnectKeepsTheHeldPublishes: Redis is unreachable at the configured
// address, so realtime.Publish holds 5 messages in the outbox (returning
// true: "sent again after the reconnect"). The admin calls
// realtime.Connect(url) with the right address: the held messages reach
// Redis, as with a Reload (they were thrown away with the old bus, which
// attach closes, reaching neither Redis nor any counter).
func TestConnectKeepsTheHeldPublishes(t *testing.T) {
	srv, ps, m := heldPublishes(t)
	require.NoError(t, m.Connect(srv.URL()))

	got := map[string]bool{}
	deadline := time.After(10 * time.Second)
	for len(got) < 5 {
		select {
		case msg := <-ps.Channel():
			got[msg.Payload] = true
		case <-deadline:
			s := &m.Router().Stats
			assert.Len(t, got, 5, "held publishes reached Redis after Connect; publish_failed %d", s.PublishFails.Load())
			return
		}
	}
}

// TestDisconnectDiscardsTheHeldPublishes: what realtime.Disconnect() finds
// in the outbox is discarded, as docs/API.md says; a Connect after it
// sends only what is published next. Redis receives a connection's
// messages in order, so the held ones, had they been kept, would arrive
// before "after".
func TestDisconnectDiscardsTheHeldPublishes(t *testing.T) {
	srv, ps, m := heldPublishes(t)
	m.Disconnect()
	require.NoError(t, m.Connect(srv.URL()))
	require.NoError(t, m.Publish("held", "after"))
	select {
	case msg := <-ps.Channel():
		assert.Equal(t, "after", msg.Payload, "the first message at Redis after the Disconnect")
	case <-time.After(10 * time.Second):
		t.Fatal("nothing reached Redis after Connect")
	}
}

package redisbus

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/gmod-realtime/realtime/internal/redistest"
)

// TestCluster: a 3-node Redis Cluster on loopback. A PSUBSCRIBE on one node
// receives what is published to any node (classic pub/sub is broadcast
// across the cluster).
func TestCluster(t *testing.T) {
	addrs := redistest.StartCluster(t, 3)
	ctx := context.Background()

	h := startHarness(t, fmt.Sprintf(`
[redis]
addrs = [%q, %q, %q]
read_timeout = "300ms"
[[routes]]
name = "players"
pattern = "player:*"
handler = "h"
`, addrs[0], addrs[1], addrs[2]))
	h.waitStatus("connected")

	h.waitSubscribed()
	for i, a := range addrs {
		// A node forwards a PUBLISH only over the cluster-bus links it has
		// up, and links are still being made just after the cluster forms:
		// publish again until this node's message has come through.
		c := redis.NewClient(&redis.Options{Addr: a, Protocol: 2})
		ch, want := fmt.Sprintf("player:%d", i), fmt.Sprintf("players<-player:%d=via node", i)
		h.waitFor(want, 10*time.Second, func() bool {
			if slices.Contains(h.msgs, want) {
				return true
			}
			c.Publish(ctx, ch, "via node")
			return false
		})
		c.Close()
	}
	// Publishing through the module reaches the cluster too.
	sub := redis.NewClient(&redis.Options{Addr: addrs[2], Protocol: 2}).Subscribe(ctx, "out")
	defer sub.Close()
	_, err := sub.Receive(ctx)
	require.NoError(t, err)
	require.NoError(t, h.r.Publish("out", "from module"))
	m, err := sub.ReceiveMessage(ctx)
	require.NoError(t, err)
	require.Equal(t, "from module", m.Payload)
}

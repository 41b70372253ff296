package redisbus

import (
	"context"
	"fmt"
	"os/exec"
	"slices"
	"strings"
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
	var nodes []*redistest.Server
	var addrs []string
	for i := 0; i < 3; i++ {
		s := redistest.Start(t, "--cluster-enabled", "yes", "--cluster-node-timeout", "2000")
		nodes = append(nodes, s)
		addrs = append(addrs, s.Addr())
	}
	out, err := exec.Command("redis-cli", append(append([]string{"--cluster", "create"}, addrs...), "--cluster-yes")...).CombinedOutput()
	require.NoError(t, err, "redis-cli --cluster create: %s", out)
	ctx := context.Background()
	for _, n := range nodes {
		c := redis.NewClient(&redis.Options{Addr: n.Addr(), Protocol: 2})
		require.Eventually(t, func() bool {
			info, _ := c.ClusterInfo(ctx).Result()
			return strings.Contains(info, "cluster_state:ok")
		}, 30*time.Second, 50*time.Millisecond)
		c.Close()
	}

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
	for i, n := range nodes {
		// A node forwards a PUBLISH only over the cluster-bus links it has
		// up, and links are still being made just after the cluster forms:
		// publish again until this node's message has come through.
		c := redis.NewClient(&redis.Options{Addr: n.Addr(), Protocol: 2})
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
	_, err = sub.Receive(ctx)
	require.NoError(t, err)
	require.NoError(t, h.r.Publish("out", "from module"))
	m, err := sub.ReceiveMessage(ctx)
	require.NoError(t, err)
	require.Equal(t, "from module", m.Payload)
}

package main

import (
	"strconv"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gmod-realtime/realtime/internal/redistest"
)

// TestRequeueDeadCluster: on a Redis Cluster (STREAM, STREAM:dead and the
// claim in different slots) requeue-dead moves every dead letter once,
// and a second run meanwhile stops at the claim.
func TestRequeueDeadCluster(t *testing.T) {
	addrs := redistest.StartCluster(t, 3)
	ctx := ctxFor(t)
	rc := redis.NewClusterClient(&redis.ClusterOptions{Addrs: addrs})
	t.Cleanup(func() { _ = rc.Close() })
	waitFor(t, ctx, func() bool {
		for _, a := range addrs {
			c := redis.NewClient(&redis.Options{Addr: a})
			info, _ := c.ClusterInfo(ctx).Result()
			_ = c.Close()
			if !strings.Contains(info, "cluster_state:ok") {
				return false
			}
		}
		return rc.Ping(ctx).Err() == nil
	})
	const n = 1500
	for i := range n {
		require.NoError(t, rc.XAdd(ctx, &redis.XAddArgs{Stream: "cmds:dead", Values: []any{"data", strconv.Itoa(i), "rt_source_id", "1-1", "rt_deliveries", "5"}}).Err())
	}
	c := newCtl(t, "[redis]\naddrs = [\""+strings.Join(addrs, "\", \"")+"\"]\n")
	results := make(chan result, 2)
	for range 2 {
		go func() { results <- c.run(t, ctx, nil, "streams", "requeue-dead", "cmds") }()
	}
	ok := 0
	for range 2 {
		r := <-results
		if r.code == 0 {
			ok++
			continue
		}
		assert.True(t, strings.Contains(r.stderr, "another requeue-dead") || strings.Contains(r.stderr, "no dead letters"), r.stderr)
	}
	assert.Equal(t, 1, ok, "runs that moved entries")
	got, err := xrange(ctx, rc, "cmds", "+", 2*n)
	require.NoError(t, err)
	seen := map[string]bool{}
	for _, e := range got {
		require.False(t, seen[e.fields[1]], "entry %s added twice", e.fields[1])
		seen[e.fields[1]] = true
	}
	assert.Len(t, seen, n)
	claim, err := rc.Exists(ctx, "cmds:dead:requeue").Result()
	require.NoError(t, err)
	assert.Zero(t, claim, "the claim left")
}

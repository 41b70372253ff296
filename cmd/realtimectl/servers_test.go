package main

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gmod-realtime/realtime/internal/redistest"
)

// TestServersTable: servers reads every hash under the prefix (and nothing
// else: other keys, other types) and marks a server whose last heartbeat is
// older than two intervals as late.
func TestServersTable(t *testing.T) {
	srv := redistest.Start(t)
	rc := client(t, srv)
	ctx := ctxFor(t)
	now := time.UnixMilli(1_800_000_000_000)
	beat := func(key string, age time.Duration, extra ...string) {
		fields := []string{"ts", strconv.FormatInt(now.Add(-age).UnixMilli(), 10), "interval_ms", "5000"}
		require.NoError(t, rc.HSet(ctx, key, append(fields, extra...)).Err())
		require.NoError(t, rc.Expire(ctx, key, time.Minute).Err())
	}
	beat("realtime:server:ttt-1", 1200*time.Millisecond, "id", "ttt-1", "map", "ttt_minecraft_b5", "status", "connected",
		"version", "v1.2.0", "uptime_s", "7384", "in_per_s", "120.5", "out_per_s", "3.0", "queue_depth", "4",
		"dropped_rate_limited", "600", "dropped_queue_full", "0", "dropped_handler_error", "2", "latency_p99_us", "16400",
		"stream_lag", "14")
	beat("realtime:server:dm-2", 11*time.Second, "id", "dm-2", "map", "dm_lockdown", "status", "connected",
		"version", "v1.2.0", "uptime_s", "30", "in_per_s", "0.0", "out_per_s", "0.0", "queue_depth", "0", "latency_p99_us", "0",
		"stream_lag", "-1") // Redis cannot tell
	beat("realtime:server:bare", 0)
	require.NoError(t, rc.Set(ctx, "realtime:server:not-a-hash", "x", time.Minute).Err())
	require.NoError(t, rc.HSet(ctx, "other:server:x", "id", "x").Err())

	beats, err := readHeartbeats(ctx, rc, "realtime:server:")
	require.NoError(t, err)
	require.Len(t, beats, 3)
	assert.True(t, beats[0].ttl > 0 && beats[0].ttl <= time.Minute)
	var out strings.Builder
	printServers(&out, beats, "realtime:server:", now)
	assert.Equal(t, strings.Join([]string{
		"ID     MAP               STATUS            VERSION  UPTIME  IN/S   OUT/S  QUEUE  DROPS                             P99   STREAM LAG  LAST SEEN",
		"bare   -                 -                 -        ?       -      -      -      0                                 -     -           0µs ago",
		"dm-2   dm_lockdown       connected (late)  v1.2.0   30.0s   0.0    0.0    0      0                                 -     ?           11.0s ago",
		"ttt-1  ttt_minecraft_b5  connected         v1.2.0   2h03m   120.5  3.0    4      rate_limited=600,handler_error=2  16ms  14          1.2s ago",
		"",
	}, "\n"), out.String())
}

// TestServersNone: with no heartbeat, servers says where it looked.
func TestServersNone(t *testing.T) {
	srv := redistest.Start(t)
	c := newCtl(t, redisTOML(srv, "[metrics]\nprefix = \"fleet:\"\n"))
	res := c.run(t, ctxFor(t), nil, "servers")
	require.Equal(t, 0, res.code, res.stderr)
	assert.Equal(t, "no heartbeats under fleet:* (a server writes one every [metrics] heartbeat while connected to this Redis)\n", res.stdout)
}

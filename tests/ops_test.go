package tests

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gmod-realtime/realtime/internal/redistest"
)

// realtimectl runs build/realtimectl against srv, from an empty directory
// (no realtime.toml: REDIS_URL says where Redis is).
func realtimectl(t *testing.T, srv *redistest.Server, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(filepath.Join(repo, "build", "realtimectl"), args...)
	cmd.Dir = t.TempDir()
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "REDIS_URL=" + srv.URL()}
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// heartbeatServers starts two servers, hb-a and hb-b, beating every 200 ms
// (tests/lua/heartbeat.lua), and publishes three messages on hb:x, two of
// which hb-a drops over its route's rate. Publishing on "stop" ends both.
func heartbeatServers(t *testing.T, srv *redistest.Server, rc *redis.Client) (a, b *Run) {
	hbRoute := func(rate string) string {
		return "[metrics]\nheartbeat = \"200ms\"\n\n[[routes]]\nname = \"hb\"\npattern = \"hb:*\"\nhandler = \"OnHB\"\nrate = \"" + rate + "\"\nburst = 1\n\n[[routes]]\nchannel = \"stop\"\nhandler = \"OnHB\"\n"
	}
	sa := NewServer(t, luajit64, strings.Replace(redisConfig(srv, hbRoute("1/h")), `id = "test-1"`, `id = "hb-a"`, 1))
	sb := NewServer(t, luajit64, strings.Replace(redisConfig(srv, hbRoute("unlimited")), `id = "test-1"`, `id = "hb-b"`, 1))
	a = sa.Start("heartbeat.lua", 66, 90*time.Second)
	b = sb.Start("heartbeat.lua", 66, 90*time.Second)
	a.WaitLine(t, "heartbeat: ready", 30*time.Second)
	b.WaitLine(t, "heartbeat: ready", 30*time.Second)
	for range 3 { // hb-a passes one and drops two over its rate
		require.NoError(t, rc.Publish(context.Background(), "hb:x", "x").Err())
	}
	return a, b
}

// TestServersHeartbeat: two running servers write heartbeats that
// realtimectl servers lists, with the map the glue passed, their status and
// one server's rate-limit drops; a server that stops disappears once its
// hash expires.
func TestServersHeartbeat(t *testing.T) {
	srv := redistest.Start(t)
	rc := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	defer rc.Close()
	ctx := context.Background()
	ra, rb := heartbeatServers(t, srv, rc)

	var out string
	deadline := time.Now().Add(30 * time.Second)
	for {
		var err error
		out, err = realtimectl(t, srv, "servers")
		require.NoError(t, err, out)
		// a beat can go out before the connection is confirmed ("connecting")
		if strings.Contains(out, "rate_limited=2") && strings.Count(out, " connected ") == 2 || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	require.Len(t, lines, 3, out)
	assert.Regexp(t, `^ID +MAP +STATUS +VERSION +UPTIME +IN/S +OUT/S +QUEUE +DROPS +P99 +STREAM LAG +LAST SEEN$`, lines[0])
	assert.Regexp(t, `^hb-a +gm_construct +connected +\S+ +\S+ +[0-9.]+ +[0-9.]+ +\d+ +rate_limited=2 +\S+ +0 `, lines[1])
	assert.Regexp(t, `^hb-b +gm_construct +connected +\S+ +\S+ +[0-9.]+ +[0-9.]+ +\d+ +0 +\S+ +0 `, lines[2])
	assert.NotContains(t, out, "(late)")

	// The servers stop: their hashes expire three intervals after its last beat.
	require.NoError(t, rc.Publish(ctx, "stop", "").Err())
	ra.Wait(t)
	rb.Wait(t)
	deadline = time.Now().Add(30 * time.Second)
	for {
		n, err := rc.Exists(ctx, "realtime:server:hb-a", "realtime:server:hb-b").Result()
		require.NoError(t, err)
		if n == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	out, err := realtimectl(t, srv, "servers")
	require.NoError(t, err, out)
	assert.Equal(t, "no heartbeats under realtime:server:* (a server writes one every [metrics] heartbeat while connected to this Redis)\n", out)
}

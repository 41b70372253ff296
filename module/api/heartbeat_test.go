package api

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gmod-realtime/realtime/config"
	"github.com/gmod-realtime/realtime/internal/redistest"
	"github.com/gmod-realtime/realtime/router/redisbus"
)

// TestHeartbeat: a connected module writes its heartbeat hash, with every
// documented field and a TTL of three intervals, and updates it: the map
// from realtime.Config{map = ...}, the counters and rates as events flow,
// and the key after a Reload that changes the prefix.
func TestHeartbeat(t *testing.T) {
	srv := redistest.Start(t)
	rc := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	defer rc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	base := "[server]\nid = \"hb-1\"\n[redis]\nurl = \"" + srv.URL() + "\"\n"
	dir := t.TempDir()
	file := filepath.Join(dir, "realtime.toml")
	require.NoError(t, os.WriteFile(file, []byte(base+"[metrics]\nheartbeat = \"200ms\"\n[[routes]]\npattern = \"in:*\"\nhandler = \"H\"\nrate = \"1/h\"\nburst = 1\n"), 0o644))
	m := Start(Options{Config: config.Options{File: file, Dir: dir, Environ: []string{}}, Version: "v-test", Root: dir})
	t.Cleanup(m.Stop)

	require.NoError(t, m.Configure(luaTape(map[any]any{"map": "gm_flatgrass"})))
	require.Eventually(t, func() bool { return m.Status() == "connected" }, 10*time.Second, time.Millisecond)
	require.NoError(t, rc.Publish(ctx, "in:1", "a").Err())
	require.NoError(t, rc.Publish(ctx, "in:2", "b").Err()) // over the rate: dropped
	require.NoError(t, rc.Publish(ctx, "none", "c").Err()) // no route: not even subscribed
	require.NoError(t, m.Publish("out", "x"))

	var h map[string]string
	require.Eventually(t, func() bool {
		var err error
		h, err = rc.HGetAll(ctx, "realtime:server:hb-1").Result()
		require.NoError(t, err)
		return h["map"] == "gm_flatgrass" && h["received"] == "2" && h["published"] == "1"
	}, 10*time.Second, 10*time.Millisecond, "%v", h)
	keys := make([]string, 0, len(h))
	for k := range h {
		keys = append(keys, k)
	}
	assert.ElementsMatch(t, HeartbeatFields, keys)
	assert.Equal(t, "hb-1", h["id"])
	assert.Equal(t, "connected", h["status"])
	assert.Equal(t, "redis", h["mode"])
	assert.Equal(t, "200", h["interval_ms"])
	assert.Equal(t, "1", h["dropped_rate_limited"])
	assert.Equal(t, "1", h["dropped"])
	depth, err := strconv.Atoi(h["queue_depth"])
	require.NoError(t, err)
	assert.GreaterOrEqual(t, depth, 1, "the event that passed waits for the main thread")
	assert.Equal(t, "1", h["routes"])
	var ts int64
	ts, err = strconv.ParseInt(h["ts"], 10, 64)
	require.NoError(t, err)
	assert.WithinDuration(t, time.Now(), time.UnixMilli(ts), time.Minute)
	for _, f := range []string{"in_per_s", "out_per_s", "dispatched_per_s"} {
		_, err := strconv.ParseFloat(h[f], 64)
		assert.NoError(t, err, f)
	}
	ttl, err := rc.PTTL(ctx, "realtime:server:hb-1").Result()
	require.NoError(t, err)
	assert.True(t, ttl > 0 && ttl <= 600*time.Millisecond, "TTL %s: three intervals", ttl)

	// A Reload to another prefix writes there; the old key expires.
	require.NoError(t, os.WriteFile(file, []byte(base+"[metrics]\nheartbeat = \"200ms\"\nprefix = \"fleet:\"\n"), 0o644))
	_, err = m.Reload()
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		n, err := rc.Exists(ctx, "fleet:hb-1").Result()
		require.NoError(t, err)
		gone, err := rc.Exists(ctx, "realtime:server:hb-1").Result()
		require.NoError(t, err)
		return n == 1 && gone == 0
	}, 10*time.Second, 10*time.Millisecond)
	assert.Equal(t, "v-test", rc.HGet(ctx, "fleet:hb-1", "version").Val())
	assert.Equal(t, "gm_flatgrass", rc.HGet(ctx, "fleet:hb-1", "map").Val(), "the map stays across a Reload")

	// Stopped: the hash expires within three intervals.
	m.Stop()
	require.Eventually(t, func() bool {
		n, err := rc.Exists(ctx, "fleet:hb-1").Result()
		require.NoError(t, err)
		return n == 0
	}, 10*time.Second, 10*time.Millisecond)
}

// TestConfigureMapOnly: realtime.Config{map = ...} is not a setting: it is
// refused when not a string, and reads no file (a broken file does not
// make it fail).
func TestConfigureMapOnly(t *testing.T) {
	m, file := start(t, "")
	require.NoError(t, os.WriteFile(file, []byte("[queue]\nmax_events = 0\n"), 0o644))
	require.NoError(t, m.Configure(luaTape(map[any]any{"map": "ttt_67thway"})))
	assert.Equal(t, "ttt_67thway", *m.hb.mapName.Load())
	assert.EqualError(t, m.Configure(luaTape(map[any]any{"map": 3.0})), "map: want the map's name, a string (game.GetMap())")
	assert.Error(t, m.Configure(luaTape(map[any]any{"map": "x", "port": 1.0})), "with a setting, the file is read")
	assert.Equal(t, "ttt_67thway", *m.hb.mapName.Load(), "a failed Configure changes nothing")
}

// TestHeartbeatDocumented: docs/OPERATIONS.md's table of heartbeat fields
// names exactly the fields the module writes.
func TestHeartbeatDocumented(t *testing.T) {
	doc, err := os.ReadFile("../../docs/OPERATIONS.md")
	require.NoError(t, err)
	text := string(doc)
	i := strings.Index(text, "## Heartbeats")
	require.GreaterOrEqual(t, i, 0, "docs/OPERATIONS.md has no Heartbeats section")
	text = text[i:]
	j := strings.Index(text, "\n| field |")
	require.GreaterOrEqual(t, j, 0, "the Heartbeats section has no table of fields")
	text = text[j+1:]
	if end := strings.Index(text, "\n\n"); end >= 0 {
		text = text[:end]
	}
	var documented []string
	for _, line := range strings.Split(text, "\n") {
		cells := strings.Split(line, "|")
		if len(cells) < 3 || !strings.HasPrefix(line, "| `") {
			continue
		}
		for _, m := range regexp.MustCompile("`([a-z_0-9]+)`").FindAllStringSubmatch(cells[1], -1) {
			documented = append(documented, m[1])
		}
	}
	assert.ElementsMatch(t, HeartbeatFields, documented)
}

// TestStreamBacklogUnknown: the heartbeat's stream_pending and stream_lag
// are -1 when one stream's figure is not known, never a sum that reads as
// caught up.
func TestStreamBacklogUnknown(t *testing.T) {
	for _, tc := range []struct {
		stats        map[string]redisbus.StreamStats
		pending, lag int64
	}{
		{nil, 0, 0},
		{map[string]redisbus.StreamStats{"a": {Pending: 3, Lag: 4}, "b": {Pending: 5, Lag: 0}}, 8, 4},
		{map[string]redisbus.StreamStats{"a": {Pending: 3, Lag: 4}, "b": {Pending: 5, Lag: -1}}, 8, -1},
		{map[string]redisbus.StreamStats{"a": {Pending: -1, Lag: -1}, "b": {Pending: 5, Lag: 2}}, -1, -1},
	} {
		pending, lag := streamBacklog(tc.stats)
		assert.Equal(t, tc.pending, pending, "%v", tc.stats)
		assert.Equal(t, tc.lag, lag, "%v", tc.stats)
	}
}

// TestHeartbeatSharedServerID: two servers running with one server.id
// (two on one machine, with the hostname for both) each log an error
// naming the other's instance, once; a server started again under its
// id (the one before it stopped) logs none.
func TestHeartbeatSharedServerID(t *testing.T) {
	srv := redistest.Start(t)
	toml := "[server]\nid = \"dup\"\n[redis]\nurl = \"" + srv.URL() + "\"\n[metrics]\nheartbeat = \"100ms\"\n"
	shared := func(m *Module) []string {
		var out []string
		for _, l := range logs(m) {
			if strings.Contains(l, "another server uses server.id") {
				out = append(out, l)
			}
		}
		return out
	}
	beats := func(m *Module) int64 { // accepted heartbeats on the key, this bus
		rb, ok := m.Router().Backend().(*redisbus.Bus)
		if !ok {
			return 0
		}
		o := rb.Stats.HeartbeatOwner.Load()
		if o == nil || o.Key != "realtime:server:dup" {
			return 0
		}
		return o.N
	}
	first, _ := start(t, toml)
	require.Eventually(t, func() bool { return beats(first) >= 2 }, 10*time.Second, 10*time.Millisecond)
	first.Stop()
	// the same server started again: the hash still holds the first's instance
	again, _ := start(t, toml)
	require.Eventually(t, func() bool { return beats(again) >= 5 }, 10*time.Second, 10*time.Millisecond)
	assert.Empty(t, shared(again), "a restart taken for another server")

	other, _ := start(t, toml)
	var gotAgain, gotOther []string
	require.Eventually(t, func() bool {
		gotAgain, gotOther = append(gotAgain, shared(again)...), append(gotOther, shared(other)...)
		return len(gotAgain) > 0 && len(gotOther) > 0
	}, 10*time.Second, 10*time.Millisecond, "both servers log it")
	assert.Contains(t, gotAgain[0], "(instance "+other.hb.instance+")")
	assert.Contains(t, gotOther[0], "(instance "+again.hb.instance+")")
	assert.Contains(t, gotOther[0], `server.id "dup"`)
	n := beats(other)
	require.Eventually(t, func() bool { return beats(other) >= n+5 }, 10*time.Second, 10*time.Millisecond)
	assert.Empty(t, shared(other), "logged again within a minute")
}

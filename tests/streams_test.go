package tests

import (
	"context"
	"fmt"
	"math/rand/v2"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gmod-realtime/realtime/internal/redistest"
)

const streamRoute = "[[routes]]\nname = \"cmds\"\nstream = \"cmds\"\nhandler = \"OnCmd\"\ndecode = \"json\"\nmax_deliveries = 3\nstart = \"0\"\n"

// entryLine is tests/lua/streams.lua's line for one delivery.
var entryLine = regexp.MustCompile(`(?m)^entry (\S+) (\d+) (\S+) (\S+)$`)

// delivery is one handler call of streams.lua.
type delivery struct {
	id         string
	deliveries int
	n          string
	mapName    string
}

func deliveries(out string) []delivery {
	var ds []delivery
	for _, m := range entryLine.FindAllStringSubmatch(out, -1) {
		k, _ := strconv.Atoi(m[2])
		ds = append(ds, delivery{m[1], k, m[3], m[4]})
	}
	return ds
}

func xadd(t *testing.T, rc *redis.Client, values ...any) string {
	t.Helper()
	id, err := rc.XAdd(context.Background(), &redis.XAddArgs{Stream: "cmds", Values: values}).Result()
	require.NoError(t, err)
	return id
}

// pendingCount is how many entries of the server's group wait for an ack.
func pendingCount(t *testing.T, rc *redis.Client) int64 { return pendingOf(t, rc, "realtime:test-1") }

// pendingOf is how many entries of group wait for an ack.
func pendingOf(t *testing.T, rc *redis.Client, group string) int64 {
	t.Helper()
	p, err := rc.XPending(context.Background(), "cmds", group).Result()
	require.NoError(t, err)
	return p.Count
}

// TestStreamRoutes: a stream route hands each entry's JSON data to its
// handler with meta.id and meta.deliveries, and acknowledges it once the
// handler returned; a handler that fails twice gets the entry three
// times; one that always fails sees it max_deliveries times, then it is in
// cmds:dead with its delivery count; an entry whose data is not JSON, or
// that has no data field, goes to cmds:dead at once, its handler never
// called.
func TestStreamRoutes(t *testing.T) {
	srv := redistest.Start(t)
	rc := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	defer rc.Close()
	ctx := context.Background()
	s := NewServer(t, luajit64, redisConfig(srv, streamRoute+"\n[metrics]\nheartbeat = \"200ms\"\n"))
	r := s.Start("streams.lua", 66, 60*time.Second)
	r.WaitLine(t, "streams: ready", 30*time.Second)

	ok := xadd(t, rc, "data", `{"n":1}`)
	flaky := xadd(t, rc, "data", `{"n":2,"fail":2}`)
	broken := xadd(t, rc, "data", `{"n":3,"fail":99}`)
	notJSON := xadd(t, rc, "data", `{"n":`)
	noData := xadd(t, rc, "other", "x")

	deadline := time.Now().Add(30 * time.Second)
	var dead []redis.XMessage
	for time.Now().Before(deadline) {
		var err error
		dead, err = rc.XRange(ctx, "cmds:dead", "-", "+").Result()
		require.NoError(t, err)
		if len(dead) == 3 && pendingCount(t, rc) == 0 {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	require.Len(t, dead, 3, r.Output())
	assert.Zero(t, pendingCount(t, rc), "entries left pending")

	byID := map[string][]int{}
	for _, d := range deliveries(r.Output()) {
		byID[d.id] = append(byID[d.id], d.deliveries)
	}
	assert.Equal(t, []int{1}, byID[ok], "an entry whose handler returned: once")
	assert.Equal(t, []int{1, 2, 3}, byID[flaky], "a handler failing twice: three deliveries")
	assert.Equal(t, []int{1, 2, 3}, byID[broken], "a handler always failing: max_deliveries deliveries")
	assert.Empty(t, byID[notJSON], "an entry that is not JSON reached the handler")
	assert.Empty(t, byID[noData], "an entry without data reached the handler")

	src := map[string]map[string]any{}
	for _, m := range dead {
		src[fmt.Sprint(m.Values["rt_source_id"])] = m.Values
	}
	assert.Equal(t, "3", src[broken]["rt_deliveries"], "the dead letter's delivery count")
	assert.Equal(t, `{"n":3,"fail":99}`, src[broken]["data"])
	assert.Contains(t, src[notJSON]["rt_reason"], "JSON", "why it is dead")
	assert.Contains(t, src[noData]["rt_reason"], `no "data" field`)
	// the heartbeat says it too (pending as Redis said it, every 2 s)
	waitFor(t, "the heartbeat's dead_lettered 3 and stream_pending 0", func() bool {
		beat, err := rc.HGetAll(ctx, "realtime:server:test-1").Result()
		return err == nil && beat["dead_lettered"] == "3" && beat["stream_pending"] == "0"
	})

	xadd(t, rc, "data", `{"stop":true}`)
	out := r.Wait(t)
	assert.Contains(t, out, "streams: stopped, dead_lettered 3")
}

// TestStreamKillAndMapChange: 10,000 entries are added while the server
// handles them, 50 a frame; it is killed (SIGKILL) at a random point and
// started again, and the restarted server changes map at the 7,500th entry
// with entries waiting in its queue: every entry is handled
// at least once, the only ones handled twice are ones the killed server
// handled (and had not acknowledged yet), and none is left pending.
func TestStreamKillAndMapChange(t *testing.T) {
	seed := time.Now().UnixNano()
	rng := rand.New(rand.NewPCG(uint64(seed), 0))
	const n = 10000 // as issue 13 asks
	// Killed before it reaches the change (7,500th) entry, which a killed
	// server may handle without changing map: the restarted one changes.
	// (the kill lands a few hundred entries late: the margin is 2,400)
	killAt := 100 + rng.IntN(n/2)
	t.Logf("seed %d: kill after %d entries handled", seed, killAt)

	srv := redistest.Start(t)
	rc := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	defer rc.Close()
	ctx := context.Background()
	// 50 entries a frame: entries wait in the queue across the map change
	s := NewServer(t, luajit64, redisConfig(srv, streamRoute+"\n[dispatch]\nmax_per_frame = 50\n"))
	a := s.Start("streams.lua", 66, 120*time.Second)
	a.WaitLine(t, "streams: ready", 30*time.Second)

	added := make(chan error, 1)
	go func() {
		for i := 1; i <= n; i++ {
			values := []any{"data", fmt.Sprintf(`{"n":%d}`, i)}
			if i == n*3/4 {
				values = []any{"data", fmt.Sprintf(`{"n":%d,"change":"gm_map2"}`, i)}
			}
			if err := rc.XAdd(ctx, &redis.XAddArgs{Stream: "cmds", Values: values}).Err(); err != nil {
				added <- err
				return
			}
		}
		added <- nil
	}()
	deadline := time.Now().Add(60 * time.Second)
	for strings.Count(a.Output(), "\nentry ") < killAt && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	a.Kill()
	first := deliveries(a.Output())
	require.GreaterOrEqual(t, len(first), killAt, a.Output())

	b := s.Start("streams.lua", 66, 120*time.Second)
	require.NoError(t, <-added)
	seen := map[string]int{}
	for _, d := range first {
		seen[d.n]++
	}
	var second []delivery
	deadline = time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		second = deliveries(b.Output())
		all := len(seen)
		for _, d := range second {
			if seen[d.n] == 0 {
				all++
			}
		}
		if all == n && pendingCount(t, rc) == 0 {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	inB := map[string]int{}
	maps := map[string]bool{}
	for _, d := range second {
		inB[d.n]++
		maps[d.mapName] = true
	}
	for _, d := range first {
		maps[d.mapName] = true
	}
	var missing, twiceInB, dups []string
	for i := 1; i <= n; i++ {
		k := strconv.Itoa(i)
		switch {
		case seen[k]+inB[k] == 0:
			missing = append(missing, k)
		case inB[k] > 1:
			twiceInB = append(twiceInB, k)
		case seen[k] > 0 && inB[k] > 0:
			dups = append(dups, k)
		}
	}
	t.Logf("%d handled before the kill, %d after; %d handled again after the kill: %s", len(first), len(second), len(dups), strings.Join(dups, " "))
	assert.Empty(t, missing, "entries never handled (seed %d)", seed)
	assert.Empty(t, twiceInB, "entries handled twice by the restarted server (seed %d)", seed)
	if !assert.Zero(t, pendingCount(t, rc), "entries left pending (seed %d)", seed) {
		ps, err := rc.XPendingExt(ctx, &redis.XPendingExtArgs{Stream: "cmds", Group: "realtime:test-1", Start: "-", End: "+", Count: 20}).Result()
		require.NoError(t, err)
		for _, p := range ps {
			ms, _ := rc.XRange(ctx, "cmds", p.ID, p.ID).Result()
			t.Logf("pending %s deliveries %d idle %v: %v", p.ID, p.RetryCount, p.Idle, ms)
		}
		out := b.Output()
		t.Logf("restarted server's output, without entry lines:\n%s", regexp.MustCompile(`(?m)^entry .*\n`).ReplaceAllString(out, ""))
	}
	assert.True(t, maps["gm_map2"], "the map change happened")

	xadd(t, rc, "data", `{"stop":true}`)
	b.Wait(t)
}

// TestStreamSharedGroup: two servers read one stream in a shared group
// (group = "workers"): while both live, each entry is handled by one of
// them, once. Then the slow one (one entry a frame, so it holds entries in
// its queue) is killed (SIGKILL): the other takes over what it left
// pending once it was idle for claim_after, and nothing is left pending.
func TestStreamSharedGroup(t *testing.T) {
	srv := redistest.Start(t)
	rc := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	defer rc.Close()
	route := streamRoute + "group = \"workers\"\nclaim_after = \"2s\"\n"
	slowCfg := strings.Replace(redisConfig(srv, route+"\n[dispatch]\nmax_per_frame = 1\n"), `id = "test-1"`, `id = "slow"`, 1)
	fastCfg := strings.Replace(redisConfig(srv, route), `id = "test-1"`, `id = "fast"`, 1)
	slow := NewServer(t, luajit64, slowCfg).Start("streams.lua", 66, 120*time.Second)
	fast := NewServer(t, luajit64, fastCfg).Start("streams.lua", 66, 120*time.Second)
	slow.WaitLine(t, "streams: ready", 30*time.Second)
	fast.WaitLine(t, "streams: ready", 30*time.Second)

	const n = 400
	for i := 1; i <= n; i++ {
		xadd(t, rc, "data", fmt.Sprintf(`{"n":%d}`, i))
	}
	// Both take entries; the slow one holds most of what it read.
	deadline := time.Now().Add(30 * time.Second)
	for len(deliveries(slow.Output())) < 20 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	slow.Kill()
	before := deliveries(slow.Output())
	require.GreaterOrEqual(t, len(before), 20)

	handled := func() map[string]int {
		m := map[string]int{}
		for _, d := range before {
			m[d.n]++
		}
		for _, d := range deliveries(fast.Output()) {
			m[d.n]++
		}
		return m
	}
	deadline = time.Now().Add(60 * time.Second)
	for (len(handled()) < n || pendingOf(t, rc, "workers") > 0) && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	byFast := map[string]int{}
	for _, d := range deliveries(fast.Output()) {
		byFast[d.n]++
	}
	var missing, twice []string
	for i := 1; i <= n; i++ {
		k := strconv.Itoa(i)
		if handled()[k] == 0 {
			missing = append(missing, k)
		}
		if byFast[k] > 1 {
			twice = append(twice, k)
		}
	}
	t.Logf("slow handled %d before it was killed, fast %d", len(before), len(deliveries(fast.Output())))
	assert.Empty(t, missing, "entries never handled")
	assert.Empty(t, twice, "entries the live server handled twice")
	assert.Zero(t, pendingOf(t, rc, "workers"), "entries left pending")
	assert.Contains(t, fast.Output(), "claimed", "the live server took over the dead one's entries")

	xadd(t, rc, "data", `{"stop":true}`)
	fast.Wait(t)
}

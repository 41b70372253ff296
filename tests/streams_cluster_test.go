package tests

import (
	"context"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/gmod-realtime/realtime/internal/redistest"
)

// clusterEntry is tests/lua/streams_cluster.lua's line for one delivery.
var clusterEntry = regexp.MustCompile(`(?m)^entry (\S+) (\S+) (\d+) (\S+)$`)

// handled is how many times each "<stream> <n>" was handled, and its
// highest delivery count.
func handled(out string) (map[string]int, map[string]int) {
	times, deliveries := map[string]int{}, map[string]int{}
	for _, m := range clusterEntry.FindAllStringSubmatch(out, -1) {
		k := m[1] + " " + m[4]
		times[k]++
		d, _ := strconv.Atoi(m[3])
		deliveries[k] = max(deliveries[k], d)
	}
	return times, deliveries
}

// TestStreamRoutesCluster: a server configured with a Redis Cluster's
// addresses and four stream routes whose streams hash to slots on
// different nodes. Entries added through the cluster reach the handler
// and are acknowledged on their own node; after every connection of the
// server is killed on every node, it reads again; entries it held when it
// was killed (SIGKILL, its main thread stuck in a handler) are still
// pending and come back, delivered a second time, to the restarted server.
func TestStreamRoutesCluster(t *testing.T) {
	addrs := redistest.StartCluster(t, 3)
	ctx := context.Background()
	cc := redis.NewClusterClient(&redis.ClusterOptions{Addrs: addrs, Protocol: 2})
	defer cc.Close()

	streams := []string{"alpha", "beta", "gamma", "delta"}
	nodes := map[string]bool{}
	var routes strings.Builder
	for _, s := range streams {
		node, err := cc.MasterForKey(ctx, s)
		require.NoError(t, err)
		nodes[node.Options().Addr] = true
		fmt.Fprintf(&routes, "[[routes]]\nname = %q\nstream = %q\nhandler = \"OnCmd\"\ndecode = \"json\"\nstart = \"0\"\n\n", s, s)
	}
	require.Len(t, nodes, 3, "the streams sit on every node")
	toml := fmt.Sprintf("[server]\nid = \"test-1\"\n\n[redis]\naddrs = [%q, %q, %q]\nread_timeout = \"1s\"\nreconnect_max = \"500ms\"\n\n%s",
		addrs[0], addrs[1], addrs[2], routes.String())
	s := NewServer(t, luajit64, toml)

	add := func(stream string, data string) {
		t.Helper()
		require.NoError(t, cc.XAdd(ctx, &redis.XAddArgs{Stream: stream, Values: []any{"data", data}}).Err())
	}
	// pending counts the group's pending entries; -1 while a group is not
	// made yet (the reader makes them in the background).
	pending := func() int64 {
		var n int64
		for _, st := range streams {
			p, err := cc.XPending(ctx, st, "realtime:test-1").Result()
			if err != nil && strings.HasPrefix(err.Error(), "NOGROUP") {
				return -1
			}
			require.NoError(t, err)
			n += p.Count
		}
		return n
	}
	// waitHandled waits until every key of want was handled by r and
	// nothing is pending.
	waitHandled := func(r *Run, want []string) {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for {
			times, _ := handled(r.Output())
			var missing []string
			for _, k := range want {
				if times[k] == 0 {
					missing = append(missing, k)
				}
			}
			p := pending()
			if len(missing) == 0 && p == 0 {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("not handled: %v; %d pending; output:\n%s", missing, p, r.Output())
			}
			time.Sleep(20 * time.Millisecond)
		}
	}

	a := s.Start("streams_cluster.lua", 66, 120*time.Second)
	a.WaitLine(t, "streams: ready", 30*time.Second)
	var want []string
	for i := 1; i <= 5; i++ {
		for _, st := range streams {
			add(st, fmt.Sprintf(`{"n":"%s%d"}`, st, i))
			want = append(want, fmt.Sprintf("%s %s%d", st, st, i))
		}
	}
	waitHandled(a, want)

	// Every client connection on every node is killed (the test's own
	// excepted): the server reconnects and reads again.
	killed := int64(0)
	for _, addr := range addrs {
		c := redis.NewClient(&redis.Options{Addr: addr, Protocol: 2})
		n, err := c.ClientKillByFilter(ctx, "TYPE", "normal", "SKIPME", "yes").Result()
		_ = c.Close()
		require.NoError(t, err)
		killed += n
	}
	require.Positive(t, killed, "the server's connections were killed")
	for _, st := range streams {
		add(st, fmt.Sprintf(`{"n":"%s-after-reconnect"}`, st))
		want = append(want, st+" "+st+"-after-reconnect")
	}
	waitHandled(a, want)
	before, _ := handled(a.Output())

	// The main thread hangs in a handler; entries added meanwhile are read
	// (delivered to this server's consumer) but not handled.
	add("beta", `{"n":"hang","hang":true}`)
	a.WaitLine(t, "streams: hanging", 30*time.Second)
	held := []string{"beta hang"}
	for _, st := range streams {
		add(st, fmt.Sprintf(`{"n":"%s-held"}`, st))
		held = append(held, st+" "+st+"-held")
	}
	require.Eventually(t, func() bool { return pending() == int64(len(held)) }, 30*time.Second, 20*time.Millisecond,
		"the held entries delivered to the hung server")
	a.Kill()

	b := s.Start("streams_cluster.lua", 66, 120*time.Second)
	waitHandled(b, held)
	times, deliveries := handled(b.Output())
	for _, k := range held {
		require.Equal(t, 1, times[k], "%s handled once by the restarted server", k)
		require.GreaterOrEqual(t, deliveries[k], 2, "%s: delivered before the kill, again after", k)
	}
	for k := range before {
		require.Zero(t, times[k], "%s was acknowledged before the kill and not delivered again", k)
	}
	add("gamma", `{"n":"last","stop":true}`)
	b.Wait(t)
}

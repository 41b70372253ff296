package tests

import (
	"context"
	"encoding/json"
	"fmt"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gmod-realtime/realtime/internal/redistest"
	"github.com/gmod-realtime/realtime/router/spool"
)

// streamNs reads the stream cmds as a consumer does: copies (an rt_id
// whose sequence is not above the highest seen) dropped, and returns the
// "n" of each entry in order, and how many copies were dropped.
func streamNs(t *testing.T, rc *redis.Client) (ns []int, dups int, stopped bool) {
	t.Helper()
	xs, err := rc.XRange(context.Background(), "cmds", "-", "+").Result()
	require.NoError(t, err)
	var high int64
	for _, x := range xs {
		_, seq, ok := spool.ParseID(fmt.Sprint(x.Values["rt_id"]))
		require.True(t, ok, "entry without rt_id: %v", x.Values)
		if seq <= high {
			dups++
			continue
		}
		high = seq
		var v struct {
			N    int  `json:"n"`
			Stop bool `json:"stop"`
		}
		require.NoError(t, json.Unmarshal([]byte(fmt.Sprint(x.Values["data"])), &v))
		if v.Stop {
			stopped = true
			continue
		}
		ns = append(ns, v.N)
	}
	return ns, dups, stopped
}

func oneToN(n int) []int {
	out := make([]int, n)
	for i := range out {
		out[i] = i + 1
	}
	return out
}

// TestAppendFromLua: realtime.Append from a server's Lua reaches the
// stream with its rt_id, in order, and a stream route of another server
// handles every entry.
func TestAppendFromLua(t *testing.T) {
	srv := redistest.Start(t)
	rc := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	defer rc.Close()
	reader := NewServer(t, luajit64, redisConfig(srv, streamRoute))
	r := reader.Start("streams.lua", 66, 60*time.Second)
	r.WaitLine(t, "streams: ready", 30*time.Second)

	const n = 200
	writer := NewServer(t, luajit64, "[server]\nid = \"writer\"\n\n[redis]\nurl = \""+srv.URL()+"\"\n")
	out := writer.RunScript("append.lua", "MODE=connected", "N="+strconv.Itoa(n))
	require.Contains(t, out, "append: done, appended "+strconv.Itoa(n+1))
	ids := regexp.MustCompile(`(?m)^id (\S+)$`).FindAllStringSubmatch(out, -1)
	require.Len(t, ids, n)

	xs, err := rc.XRange(context.Background(), "cmds", "-", "+").Result()
	require.NoError(t, err)
	require.Len(t, xs, n+1)
	for i, m := range ids {
		require.Equal(t, m[1], xs[i].Values["rt_id"], "entry %d", i)
		require.Regexp(t, `^writer-\d+$`, m[1])
		require.Equal(t, fmt.Sprintf(`{"n":%d}`, i+1), xs[i].Values["data"])
	}
	routed := r.Wait(t) // streams.lua ends at {"stop":true}
	var got []int
	for _, d := range deliveries(routed) {
		if d.n == "nil" { // the stop entry
			continue
		}
		k, _ := strconv.Atoi(d.n)
		got = append(got, k)
	}
	assert.Equal(t, oneToN(n), got, "the other server's stream route handled each entry once, in order")
}

// TestAppendSpoolSurvivesKill (issue 13's test 4): with Redis down, a
// server appends 10,000 entries and a game event after every 100th (with
// events.stream, to the stream player:death), all to its spool, and
// changes map, then is killed (SIGKILL); it is started again while Redis
// is still down, then Redis comes back: every entry and every game event
// arrives once, in order per stream, and the spool ends empty.
func TestAppendSpoolSurvivesKill(t *testing.T) {
	srv := redistest.Start(t)
	rc := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	defer rc.Close()
	srv.Kill()
	const n = 10000
	s := NewServer(t, luajit64, redisConfig(srv, "[events]\nstream = true\n"))
	a := s.Start("append.lua", 66, 60*time.Second, "MODE=down", "N="+strconv.Itoa(n))
	a.WaitLine(t, "append: persisted", 30*time.Second)
	require.Contains(t, a.Output(), "append: persisted "+strconv.Itoa(n+n/100), "every entry and game event spooled")
	a.Kill()

	b := s.Start("append.lua", 66, 90*time.Second, "MODE=resume")
	b.WaitLine(t, "[realtime]", 30*time.Second) // up, with Redis still down
	srv.Restart()
	out := b.Wait(t)
	require.Contains(t, out, "append: flushed")
	ns, dups, stopped := streamNs(t, rc)
	assert.True(t, stopped)
	deaths, err := rc.XRange(context.Background(), "player:death", "-", "+").Result()
	require.NoError(t, err)
	var victims []string
	for _, x := range deaths {
		var v struct{ Victim string }
		require.NoError(t, json.Unmarshal([]byte(fmt.Sprint(x.Values["data"])), &v))
		victims = append(victims, v.Victim)
	}
	var want []string
	for i := 1; i <= n/100; i++ {
		want = append(want, "v"+strconv.Itoa(i))
	}
	assert.Equal(t, want, victims, "every game event, once, in order")
	assert.Equal(t, oneToN(n), ns, "every spooled entry, once, in order (%d copies dropped)", dups)
}

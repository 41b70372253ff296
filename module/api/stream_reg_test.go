package api

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gmod-realtime/realtime/config"
	"github.com/gmod-realtime/realtime/internal/redistest"
)

// realtime.Stream's options are checked as the config file's stream route
// keys: for random combinations of valid and invalid values, Stream
// accepts exactly what a [[routes]] entry with the same keys accepts, and
// its error names an option the file's error names.
func TestStreamOptionsAsConfig(t *testing.T) {
	seed := time.Now().UnixNano()
	rng := rand.New(rand.NewPCG(uint64(seed), 3))
	t.Logf("seed %d", seed)
	m, _ := start(t, "[server]\nid = \"s1\"\n")
	groups := []string{"", "g", " g", "realtime:{server}", "jobs:{server}:x", "g "}
	starts := []string{"", "$", "0", "1", "new", "$ "}
	decodes := []string{"", "raw", "json", "fields", "xml", "JSON"}
	maxes := []int{0, 1, 5, -1, 100000} // 0: not set
	claims := []string{"", "60s", "1s", "2m", "500ms", "abc", "0s", "1h30m"}
	dir := t.TempDir()
	took, refused := 0, 0
	for i := range 300 {
		g, st, dec := groups[rng.IntN(len(groups))], starts[rng.IntN(len(starts))], decodes[rng.IntN(len(decodes))]
		mx, cl := maxes[rng.IntN(len(maxes))], claims[rng.IntN(len(claims))]
		toml := "[[routes]]\nname = \"r\"\nstream = \"jobs\"\nhandler = \"h\"\n"
		for _, kv := range [][2]string{{"group", g}, {"start", st}, {"decode", dec}, {"claim_after", cl}} {
			if kv[1] != "" {
				toml += fmt.Sprintf("%s = %q\n", kv[0], kv[1])
			}
		}
		o := StreamOptions{Group: g, Start: st, Decode: dec, ClaimAfter: cl}
		if mx != 0 {
			toml += fmt.Sprintf("max_deliveries = %d\n", mx)
			o.MaxDeliveries, o.HasMaxDeliveries = float64(mx), true
		}
		file := fmt.Sprintf("%s/%d.toml", dir, i)
		require.NoError(t, os.WriteFile(file, []byte(toml), 0o644))
		_, cerr := config.Load(config.Options{File: file, Dir: dir, Environ: []string{}})
		id := fmt.Sprint("case", i)
		_, _, serr := m.Stream("jobs", id, o)
		if cerr == nil {
			require.NoError(t, serr, "seed %d: %+v: the file takes it, Stream does not", seed, o)
			require.NotEmpty(t, m.Off(id), "seed %d", seed)
			took++
			continue
		}
		refused++
		require.Error(t, serr, "seed %d: %+v: the file refuses it (%v), Stream takes it", seed, o, cerr)
		var oe *OptionError
		require.True(t, errors.As(serr, &oe), "seed %d: %+v: %v is not an option's error", seed, o, serr)
		assert.Contains(t, cerr.Error(), "routes[0]."+oe.Name+": ", "seed %d: %+v: Stream blames %s, the file does not", seed, o, oe.Name)
		assert.Contains(t, serr.Error(), oe.Name+": ", "the message names the option")
	}
	assert.Empty(t, m.Router().Table().Routes(), "a refused Stream left a route")
	t.Logf("%d taken, %d refused", took, refused)
	assert.Positive(t, took)
	assert.Positive(t, refused)
}

// What Lua can pass that a file cannot: a fractional or zero
// max_deliveries, claim_after as a number of seconds; and the stream
// name itself.
func TestStreamOptionsFromLua(t *testing.T) {
	m, _ := start(t, "[server]\nid = \"s1\"\n")
	for _, c := range []struct {
		o    StreamOptions
		name string // the option blamed; "" for none
		msg  string
	}{
		{StreamOptions{MaxDeliveries: 1.5, HasMaxDeliveries: true}, "max_deliveries", "1.5 is not a whole number"},
		{StreamOptions{MaxDeliveries: 0, HasMaxDeliveries: true}, "max_deliveries", "0 must be at least 1"},
		{StreamOptions{MaxDeliveries: 1e12, HasMaxDeliveries: true}, "max_deliveries", "is not a whole number"},
		{StreamOptions{ClaimAfter: "0.5"}, "claim_after", "too short"},
		{StreamOptions{ClaimAfter: "0"}, "claim_after", "too short"},
		{StreamOptions{ClaimAfter: "1e300"}, "claim_after", "is not a duration"},
		{StreamOptions{ClaimAfter: "90", Group: "workers"}, "", ""},
	} {
		_, _, err := m.Stream("jobs", "x", c.o)
		if c.name == "" {
			require.NoError(t, err, "%+v", c.o)
			require.Len(t, m.Router().Plan().Streams, 1)
			assert.Equal(t, 90*time.Second, m.Router().Plan().Streams[0].ClaimAfter, "a number is seconds")
			continue
		}
		var oe *OptionError
		require.True(t, errors.As(err, &oe), "%+v: %v", c.o, err)
		assert.Equal(t, c.name, oe.Name)
		assert.Contains(t, err.Error(), c.msg)
	}
	_, _, err := m.Stream("", "x", StreamOptions{})
	assert.EqualError(t, err, "stream is empty")
	_, _, err = m.Stream(" jobs", "x", StreamOptions{})
	var oe *OptionError
	require.Error(t, err)
	assert.False(t, errors.As(err, &oe), "the stream is an argument, not an option")
	assert.Contains(t, err.Error(), "spaces around the name")
}

// A Lua stream route and a config stream route reading one stream with
// one group: whichever comes second is refused with an error naming both
// (each entry would reach only one of them); another group is fine. A
// Reload that would add the config side fails and changes nothing.
func TestStreamGroupConflicts(t *testing.T) {
	m, file := start(t, "[server]\nid = \"s1\"\n[[routes]]\nname = \"cmds\"\nstream = \"jobs\"\nhandler = \"h\"\n")
	_, _, err := m.Stream("jobs", "x", StreamOptions{})
	require.Error(t, err)
	assert.Contains(t, err.Error(), `stream "jobs": group "realtime:s1" is read by the config route "cmds" and the realtime.Stream registration "x [jobs]"`)
	_, _, err = m.Stream("jobs", "x", StreamOptions{Group: "realtime:s1"}) // the same group, spelt out
	require.Error(t, err)
	_, name, err := m.Stream("jobs", "x", StreamOptions{Group: "workers"})
	require.NoError(t, err)
	assert.Equal(t, "x [jobs]", name)
	// two Lua routes, one group
	_, _, err = m.Stream("jobs", "y", StreamOptions{Group: "workers"})
	require.ErrorContains(t, err, `is read by the realtime.Stream registration "x [jobs]" and the realtime.Stream registration "y [jobs]"`)

	// Reload: a config route on the Lua route's group is refused
	require.NoError(t, os.WriteFile(file, []byte("[server]\nid = \"s1\"\n[[routes]]\nname = \"cmds\"\nstream = \"jobs\"\nhandler = \"h\"\n"+
		"[[routes]]\nname = \"w\"\nstream = \"jobs\"\ngroup = \"workers\"\nhandler = \"h\"\n"), 0o644))
	_, err = m.Reload()
	require.ErrorContains(t, err, `group "workers" is read by the config route "w" and the realtime.Stream registration "x [jobs]"`)
	assert.Nil(t, m.Router().Table().Route("w"), "a failed Reload added its route")
	assert.NotNil(t, m.Router().Table().Route("x [jobs]"))
}

// A Lua stream route's default group names the server ("{server}"): a
// Reload that changes server.id moves it to the new server's group, as it
// does a config route's, and the plan reads that group.
func TestStreamGroupFollowsServerID(t *testing.T) {
	m, file := start(t, "[server]\nid = \"s1\"\n")
	_, name, err := m.Stream("jobs", "x", StreamOptions{})
	require.NoError(t, err)
	require.NoError(t, m.Handler("h", true))
	require.NoError(t, os.WriteFile(file, []byte("[server]\nid = \"s2\"\n"), 0o644))
	_, err = m.Reload()
	require.NoError(t, err)
	plan := m.Router().Plan()
	require.Len(t, plan.Streams, 1)
	assert.Equal(t, "realtime:s2", plan.Streams[0].Group)
	assert.NotNil(t, m.Router().Table().Route(name), "Reload removed the Lua route")
	// the route is still Lua's: a config route may not take its name
	require.NoError(t, os.WriteFile(file, []byte("[server]\nid = \"s2\"\n[[routes]]\nname = \"x [jobs]\"\nchannel = \"c\"\nhandler = \"h\"\n"), 0o644))
	_, err = m.Reload()
	require.ErrorContains(t, err, "a realtime.On registration has that name")
}

// Entries queued for a realtime.Stream route that goes away before they
// are dispatched (realtime.Off, or a map change whose state does not make
// it again) reach no handler: they stay pending in Redis, their delivery
// not counted, and come when the route is registered again. With
// max_deliveries = 1 a counted delivery would send them to cmds:dead.
func TestStreamOffWithQueuedEntries(t *testing.T) {
	srv := redistest.Start(t)
	rc := redis.NewClient(&redis.Options{Addr: srv.Addr(), Protocol: 2})
	t.Cleanup(func() { _ = rc.Close() })
	m, _ := start(t, "[server]\nid = \"s1\"\n[redis]\nurl = \""+srv.URL()+"\"\nreconnect_min = \"50ms\"\nreconnect_max = \"200ms\"\n")
	o := StreamOptions{Start: "0", MaxDeliveries: 1, HasMaxDeliveries: true}
	_, name, err := m.Stream("cmds", "x", o)
	require.NoError(t, err)
	ctx := context.Background()
	registered := true
	has := func(route string) bool { return registered && route == name }
	handled := map[string]int{}
	handle := func(d Dispatch) bool { handled[d.Event.Payload]++; return true }
	const n = 30
	for round, leave := range []func(){
		func() { require.NotEmpty(t, m.Off("x")) },
		func() { m.Close(); m.Open() }, // a map change; the new state does not make it again
	} {
		for i := range n {
			require.NoError(t, rc.XAdd(ctx, &redis.XAddArgs{Stream: "cmds", Values: []any{"data", fmt.Sprint(round, "-", i)}}).Err())
		}
		waitQueued(t, m, n)
		leave()
		registered = false
		assert.Zero(t, pumpLocal(m, has, handle), "round %d: entries handled with no route", round)
		assert.Nil(t, m.Router().Table().Route(name), "round %d: the route is still there", round)
		_, _, err = m.Stream("cmds", "x", o)
		require.NoError(t, err)
		registered = true
		deadline := time.Now().Add(20 * time.Second)
		for (len(handled) < n*(round+1) || pendingOf(t, rc, "realtime:s1") != 0) && time.Now().Before(deadline) {
			if pumpLocal(m, has, handle) == 0 {
				time.Sleep(5 * time.Millisecond)
			}
		}
		dead, _ := rc.XLen(ctx, "cmds:dead").Result()
		require.Len(t, handled, n*(round+1), "round %d: entries never handled (%d in cmds:dead)", round, dead)
	}
	for k, c := range handled {
		assert.Equal(t, 1, c, "entry %s handled %d times", k, c)
	}
	dead, err := rc.XLen(ctx, "cmds:dead").Result()
	require.NoError(t, err)
	assert.Zero(t, dead, "entries no handler saw went to cmds:dead")
	assert.Zero(t, pendingOf(t, rc, "realtime:s1"), "entries left pending")
}

// A realtime.Stream read with a per-server group while server.id is left
// to the hostname is warned about once (as the config file's stream
// routes are): a new hostname makes a new group that starts at "$". A
// shared group, or a set server.id, is not.
func TestStreamHostGroupWarning(t *testing.T) {
	srv := redistest.Start(t)
	redisTOML := fmt.Sprintf("[redis]\nurl = \"redis://%s\"\n", srv.Addr())
	warnings := func(m *Module) []string {
		var out []string
		for _, l := range logs(m) {
			if strings.Contains(l, "server.id is not set") {
				out = append(out, l)
			}
		}
		return out
	}
	m, _ := start(t, redisTOML)
	_, _, err := m.Stream("jobs", "shared", StreamOptions{Group: "workers"})
	require.NoError(t, err)
	assert.Empty(t, warnings(m), "a shared group keeps its name under any hostname")
	_, _, err = m.Stream("cmds", "a", StreamOptions{})
	require.NoError(t, err)
	_, _, err = m.Stream("more", "b", StreamOptions{Group: "x:{server}"})
	require.NoError(t, err)
	w := warnings(m)
	require.Len(t, w, 1, "warned once")
	host, _ := os.Hostname()
	assert.Contains(t, w[0], `realtime.Stream("cmds") reads stream "cmds" with the group "realtime:`+host+`"`)

	m, _ = start(t, "[server]\nid = \"ttt-1\"\n"+redisTOML)
	_, _, err = m.Stream("cmds", "a", StreamOptions{})
	require.NoError(t, err)
	assert.Empty(t, warnings(m))
}

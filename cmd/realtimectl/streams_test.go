package main

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gmod-realtime/realtime/internal/redistest"
)

const streamRoutesTOML = "[[routes]]\nname = \"cmds\"\nstream = \"cmds\"\nhandler = \"OnCmd\"\n\n[[routes]]\nname = \"jobs\"\nstream = \"jobs\"\ngroup = \"workers\"\nhandler = \"OnJob\"\n"

// TestAppendBinaryStdin: append adds an entry whose data field is standard
// input byte for byte, or the argument.
func TestAppendBinaryStdin(t *testing.T) {
	srv := redistest.Start(t)
	c := newCtl(t, redisTOML(srv, ""))
	ctx := ctxFor(t)
	payload := []byte("a\x00b\xff{\"cmd\":\"say\"}\n")
	res := c.run(t, ctx, payload, "append", "cmds", "-")
	require.Equal(t, 0, res.code, res.stderr)
	assert.Regexp(t, `^appended 18 bytes to cmds as \d+-\d+\n$`, res.stdout)
	res = c.run(t, ctx, nil, "append", "cmds", `{"cmd":"kick"}`)
	require.Equal(t, 0, res.code, res.stderr)

	got, err := xrange(ctx, client(t, srv), "cmds", "+", 10)
	require.NoError(t, err)
	require.Len(t, got, 2)
	assert.Equal(t, []string{"data", string(payload)}, got[0].fields)
	assert.Equal(t, []string{"data", `{"cmd":"kick"}`}, got[1].fields)
	assert.Equal(t, strings.TrimSpace(strings.Fields(res.stdout)[6]), got[1].id, "the id printed")
}

// TestStreamsTable: streams lists each stream route's stream with every
// group Redis has on it (two servers' own groups here), pending, lag,
// consumers, length and dead letters; a stream not created yet shows its
// length 0 and no group.
func TestStreamsTable(t *testing.T) {
	srv := redistest.Start(t)
	c := newCtl(t, redisTOML(srv, streamRoutesTOML))
	ctx := ctxFor(t)
	rc := client(t, srv)
	for _, g := range []string{"realtime:a", "realtime:b"} {
		require.NoError(t, rc.XGroupCreateMkStream(ctx, "cmds", g, "0").Err())
	}
	for i := 0; i < 5; i++ {
		require.NoError(t, rc.XAdd(ctx, &redis.XAddArgs{Stream: "cmds", Values: []any{"data", "x"}}).Err())
	}
	// server a has read 3 and acknowledged none; b has read nothing
	require.NoError(t, rc.XReadGroup(ctx, &redis.XReadGroupArgs{Group: "realtime:a", Consumer: "a", Streams: []string{"cmds", ">"}, Count: 3}).Err())
	require.NoError(t, rc.XAdd(ctx, &redis.XAddArgs{Stream: "cmds:dead", Values: []any{"data", "y", "rt_source_id", "1-1", "rt_deliveries", "5"}}).Err())

	res := c.run(t, ctx, nil, "streams")
	require.Equal(t, 0, res.code, res.stderr)
	lines := strings.Split(strings.TrimSpace(res.stdout), "\n")
	require.Len(t, lines, 4, res.stdout)
	assert.Regexp(t, `^STREAM +LENGTH +DEAD +GROUP +PENDING +LAG +CONSUMERS$`, lines[0])
	assert.Regexp(t, `^cmds +5 +1 +realtime:a +3 +2 +1$`, lines[1])
	assert.Regexp(t, `^cmds +5 +1 +realtime:b +0 +5 +0$`, lines[2])
	assert.Regexp(t, `^jobs +0 +0 +- +- +- +-$`, lines[3])

	res = newCtl(t, redisTOML(srv, "")).run(t, ctx, nil, "streams")
	require.Equal(t, 0, res.code, res.stderr)
	assert.Contains(t, res.stdout, "no stream routes in ")
}

// TestRequeueDead: requeue-dead moves every dead letter back to its
// stream, oldest first, with its own fields in their order and without the
// rt_* fields the dead letter added; a second run finds none and fails.
func TestRequeueDead(t *testing.T) {
	srv := redistest.Start(t)
	c := newCtl(t, redisTOML(srv, streamRoutesTOML))
	ctx := ctxFor(t)
	rc := client(t, srv)
	for i, data := range []string{`{"n":1}`, `{"n":2}`, "\x00\xff"} {
		require.NoError(t, rc.XAdd(ctx, &redis.XAddArgs{Stream: "cmds:dead", Values: []any{
			"data", data, "z", "last", "rt_source_id", "1-" + string(rune('0'+i)), "rt_deliveries", "5", "rt_reason", "why",
		}}).Err())
	}
	res := c.run(t, ctx, nil, "streams", "requeue-dead", "cmds")
	require.Equal(t, 0, res.code, res.stderr)
	assert.Equal(t, "moved 3 entries from cmds:dead back to cmds\n", res.stdout)

	got, err := xrange(ctx, rc, "cmds", "+", 10)
	require.NoError(t, err)
	require.Len(t, got, 3)
	for i, data := range []string{`{"n":1}`, `{"n":2}`, "\x00\xff"} {
		assert.Equal(t, []string{"data", data, "z", "last"}, got[i].fields, "entry %d", i)
	}
	n, err := rc.XLen(ctx, "cmds:dead").Result()
	require.NoError(t, err)
	assert.Zero(t, n, "the dead letters are gone")

	res = c.run(t, ctx, nil, "streams", "requeue-dead", "cmds")
	assert.Equal(t, 1, res.code)
	assert.Equal(t, "realtimectl: no dead letters in cmds:dead\n", res.stderr)
}

// TestRequeueDeadOneAtATime: two requeue-dead runs of one stream at once
// do not add its dead letters twice: one moves them all and the other
// stops (or finds none left); a run while another holds the claim stops
// at once, naming it; the claim is given back at the end.
func TestRequeueDeadOneAtATime(t *testing.T) {
	srv := redistest.Start(t)
	c := newCtl(t, redisTOML(srv, streamRoutesTOML))
	ctx := ctxFor(t)
	rc := client(t, srv)
	const n = 2000
	pipe := rc.Pipeline()
	for i := range n {
		pipe.XAdd(ctx, &redis.XAddArgs{Stream: "cmds:dead", Values: []any{"data", strconv.Itoa(i), "rt_source_id", "1-1", "rt_deliveries", "5"}})
	}
	_, err := pipe.Exec(ctx)
	require.NoError(t, err)

	require.NoError(t, rc.Set(ctx, "cmds:dead:requeue", "ops-box pid 7", time.Minute).Err())
	res := c.run(t, ctx, nil, "streams", "requeue-dead", "cmds")
	assert.Equal(t, 1, res.code)
	assert.Contains(t, res.stderr, "another requeue-dead is moving cmds:dead (ops-box pid 7)")
	require.NoError(t, rc.Del(ctx, "cmds:dead:requeue").Err())

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
	exists, err := rc.Exists(ctx, "cmds:dead:requeue").Result()
	require.NoError(t, err)
	assert.Zero(t, exists, "the claim was not given back")
}

package main

import (
	"context"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gmod-realtime/realtime/internal/redistest"
)

// stallProxy forwards TCP to target; stall holds every byte until go.
type stallProxy struct {
	ln   net.Listener
	gate sync.RWMutex
}

func startStallProxy(t *testing.T, target string) *stallProxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	p := &stallProxy{ln: ln}
	var conns []net.Conn
	var mu sync.Mutex
	t.Cleanup(func() {
		_ = ln.Close()
		mu.Lock()
		for _, c := range conns {
			_ = c.Close()
		}
		mu.Unlock()
	})
	go func() {
		for {
			cc, err := ln.Accept()
			if err != nil {
				return
			}
			sc, err := net.Dial("tcp", target)
			if err != nil {
				_ = cc.Close()
				continue
			}
			mu.Lock()
			conns = append(conns, cc, sc)
			mu.Unlock()
			go p.pipe(sc, cc)
			go p.pipe(cc, sc)
		}
	}()
	return p
}

func (p *stallProxy) pipe(dst, src net.Conn) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			p.gate.RLock()
			_, werr := dst.Write(buf[:n])
			p.gate.RUnlock()
			if werr != nil {
				return
			}
		}
		if err != nil {
			if err != io.EOF {
				_ = dst.Close()
			}
			return
		}
	}
}

func (p *stallProxy) stall()  { p.gate.Lock() }
func (p *stallProxy) resume() { p.gate.Unlock() }

// TestRequeueDeadClaimLostInStall: a requeue-dead run whose connection
// stalls past its claim, while a second run takes the claim and moves the
// dead letters, does not go on adding the entries of its batch when the
// stall ends (each would be added twice): it stops, saying it lost the
// claim. At most the one entry in flight in the stall is added twice.
func TestRequeueDeadClaimLostInStall(t *testing.T) {
	defer func(d time.Duration) { requeueClaimFor = d }(requeueClaimFor)
	requeueClaimFor = 300 * time.Millisecond
	srv := redistest.Start(t)
	ctx := ctxFor(t)
	rc := client(t, srv)
	const n = 400
	pipe := rc.Pipeline()
	for i := range n {
		pipe.XAdd(ctx, &redis.XAddArgs{Stream: "cmds:dead", Values: []any{"data", strconv.Itoa(i), "rt_source_id", "1-1", "rt_deliveries", "5"}})
	}
	_, err := pipe.Exec(ctx)
	require.NoError(t, err)

	p := startStallProxy(t, srv.Addr())
	slow := newCtl(t, "[server]\nid = \"ctl-test\"\n[redis]\nurl = \"redis://"+p.ln.Addr().String()+"\"\nread_timeout = \"25s\"\nwrite_timeout = \"25s\"\n")
	direct := newCtl(t, redisTOML(srv, ""))
	first := make(chan result, 1)
	go func() { first <- slow.run(t, ctx, nil, "streams", "requeue-dead", "cmds") }()
	waitFor(t, ctx, func() bool { m, _ := rc.XLen(ctx, "cmds").Result(); return m >= 20 })
	p.stall()
	stalled := true
	defer func() {
		if stalled {
			p.resume()
		}
	}()
	waitFor(t, ctx, func() bool { m, _ := rc.Exists(ctx, "cmds:dead:requeue").Result(); return m == 0 })
	second := direct.run(t, ctx, nil, "streams", "requeue-dead", "cmds")
	require.Equal(t, 0, second.code, second.stderr)
	p.resume()
	stalled = false
	r := <-first
	t.Logf("first run: code %d, %s", r.code, r.stderr)

	got, err := xrange(ctx, rc, "cmds", "+", 2*n)
	require.NoError(t, err)
	seen := map[string]bool{}
	twice := 0
	for _, e := range got {
		if seen[e.fields[1]] {
			twice++
		}
		seen[e.fields[1]] = true
	}
	assert.Len(t, seen, n, "entries lost")
	assert.LessOrEqual(t, twice, 1, "entries added twice after the claim was lost")
}

func waitFor(t *testing.T, ctx context.Context, cond func() bool) {
	t.Helper()
	for !cond() {
		select {
		case <-ctx.Done():
			t.Fatal("condition not met in time")
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// TestRequeueDeadInterruptedThenRerun: a requeue-dead stopped midway
// (Ctrl-C) gives its claim back, so the next run starts at once and moves
// the rest; no entry is lost and at most the one in flight is added twice.
func TestRequeueDeadInterruptedThenRerun(t *testing.T) {
	srv := redistest.Start(t)
	ctx := ctxFor(t)
	rc := client(t, srv)
	const n = 1000
	pipe := rc.Pipeline()
	for i := range n {
		pipe.XAdd(ctx, &redis.XAddArgs{Stream: "cmds:dead", Values: []any{"data", strconv.Itoa(i), "rt_source_id", "1-1", "rt_deliveries", "5"}})
	}
	_, err := pipe.Exec(ctx)
	require.NoError(t, err)
	c := newCtl(t, redisTOML(srv, ""))
	runCtx, interrupt := context.WithCancel(ctx)
	first := make(chan result, 1)
	go func() { first <- c.run(t, runCtx, nil, "streams", "requeue-dead", "cmds") }()
	waitFor(t, ctx, func() bool { m, _ := rc.XLen(ctx, "cmds").Result(); return m >= 50 })
	interrupt()
	r := <-first
	t.Logf("interrupted run: code %d, %s%s", r.code, r.stdout, r.stderr)

	again := c.run(t, ctx, nil, "streams", "requeue-dead", "cmds")
	require.Equal(t, 0, again.code, again.stderr)
	got, err := xrange(ctx, rc, "cmds", "+", 2*n)
	require.NoError(t, err)
	seen := map[string]bool{}
	twice := 0
	for _, e := range got {
		if seen[e.fields[1]] {
			twice++
		}
		seen[e.fields[1]] = true
	}
	assert.Len(t, seen, n, "entries lost")
	assert.LessOrEqual(t, twice, 1, "entries added twice")
	left, err := rc.XLen(ctx, "cmds:dead").Result()
	require.NoError(t, err)
	assert.Zero(t, left, "dead letters left")
	claim, err := rc.Exists(ctx, "cmds:dead:requeue").Result()
	require.NoError(t, err)
	assert.Zero(t, claim, "the claim left")
}

// TestRequeueDeadClaimRefused: with an ACL that refuses the claim (no SET,
// or no EVALSHA/EVAL to renew it), requeue-dead moves nothing, says what
// Redis refused, does not show the password, and leaves no claim behind.
func TestRequeueDeadClaimRefused(t *testing.T) {
	for _, refuse := range []string{"-set", "-evalsha -eval"} {
		t.Run(refuse, func(t *testing.T) {
			srv := redistest.Start(t)
			ctx := ctxFor(t)
			rc := client(t, srv)
			args := []any{"acl", "setuser", "ops", "on", ">hunter2pw", "~*", "&*", "+@all"}
			for _, r := range strings.Fields(refuse) {
				args = append(args, r)
			}
			require.NoError(t, rc.Do(ctx, args...).Err())
			for i := range 3000 {
				require.NoError(t, rc.XAdd(ctx, &redis.XAddArgs{Stream: "cmds:dead", Values: []any{"data", strconv.Itoa(i), "rt_source_id", "1-1", "rt_deliveries", "5"}}).Err())
			}
			c := newCtl(t, "[redis]\nurl = \"redis://ops:hunter2pw@"+srv.Addr()+"\"\n")
			r := c.run(t, ctx, nil, "streams", "requeue-dead", "cmds")
			assert.Equal(t, 1, r.code)
			assert.Contains(t, r.stderr, "NOPERM")
			assert.NotContains(t, r.stdout+r.stderr, "hunter2pw")
			moved, err := rc.XLen(ctx, "cmds").Result()
			require.NoError(t, err)
			assert.Zero(t, moved, "entries moved with a claim that cannot be renewed")
			claim, err := rc.Exists(ctx, "cmds:dead:requeue").Result()
			require.NoError(t, err)
			assert.Zero(t, claim, "the claim left: a rerun would be refused")
		})
	}
}

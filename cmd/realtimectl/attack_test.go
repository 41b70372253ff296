package main

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gmod-realtime/realtime/config"
	"github.com/gmod-realtime/realtime/internal/redistest"
)

// TestRequeueDeadKeepsOwnRtFields: an entry whose own fields are named like
// the dead letter's (rt_reason, rt_source_id) gets them back; only the
// fields the dead letter appended are left out.
func TestRequeueDeadKeepsOwnRtFields(t *testing.T) {
	srv := redistest.Start(t)
	c := newCtl(t, redisTOML(srv, streamRoutesTOML))
	ctx := ctxFor(t)
	rc := client(t, srv)
	own := [][]string{
		{"rt_reason", "mine", "data", "x"},
		{"rt_source_id", "mine"}, // an entry with only an rt_* field of its own
	}
	for i, f := range own {
		vals := []any{}
		for _, s := range f {
			vals = append(vals, s)
		}
		vals = append(vals, "rt_source_id", "1-"+string(rune('0'+i)), "rt_deliveries", "5")
		if i == 0 {
			vals = append(vals, "rt_reason", "too many deliveries")
		}
		require.NoError(t, rc.XAdd(ctx, &redis.XAddArgs{Stream: "cmds:dead", Values: vals}).Err())
	}
	res := c.run(t, ctx, nil, "streams", "requeue-dead", "cmds")
	require.Equal(t, 0, res.code, res.stderr)
	got, err := xrange(ctx, rc, "cmds", "+", 10)
	require.NoError(t, err)
	require.Len(t, got, 2)
	for i, f := range own {
		assert.Equal(t, f, got[i].fields, "entry %d", i)
	}
}

// TestRequeueDeadWrongType: a STREAM that is not a stream is refused and
// no dead letter is lost.
func TestRequeueDeadWrongType(t *testing.T) {
	srv := redistest.Start(t)
	c := newCtl(t, redisTOML(srv, streamRoutesTOML))
	ctx := ctxFor(t)
	rc := client(t, srv)
	require.NoError(t, rc.Set(ctx, "cmds", "a string", 0).Err())
	require.NoError(t, rc.XAdd(ctx, &redis.XAddArgs{Stream: "cmds:dead", Values: []any{"data", "x", "rt_source_id", "1-1", "rt_deliveries", "5"}}).Err())
	res := c.run(t, ctx, nil, "streams", "requeue-dead", "cmds")
	assert.Equal(t, 1, res.code)
	assert.Contains(t, res.stderr, "WRONGTYPE")
	n, err := rc.XLen(ctx, "cmds:dead").Result()
	require.NoError(t, err)
	assert.EqualValues(t, 1, n, "the dead letter is kept")
}

// TestStreamsOddStates: streams copes with a stream without its dead
// stream, a group whose lag Redis cannot tell (an entry deleted in the
// middle), and reports a key of the wrong type.
func TestStreamsOddStates(t *testing.T) {
	srv := redistest.Start(t)
	c := newCtl(t, redisTOML(srv, streamRoutesTOML))
	ctx := ctxFor(t)
	rc := client(t, srv)
	require.NoError(t, rc.XGroupCreateMkStream(ctx, "cmds", "realtime:a", "0").Err())
	var ids []string
	for i := 0; i < 3; i++ {
		id, err := rc.XAdd(ctx, &redis.XAddArgs{Stream: "cmds", Values: []any{"data", "x"}}).Result()
		require.NoError(t, err)
		ids = append(ids, id)
	}
	require.NoError(t, rc.XDel(ctx, "cmds", ids[1]).Err()) // lag becomes unknown (nil)
	res := c.run(t, ctx, nil, "streams")
	require.Equal(t, 0, res.code, res.stderr)
	assert.Regexp(t, `(?m)^cmds +2 +0 +realtime:a +0 +\? +0$`, res.stdout)

	require.NoError(t, rc.Set(ctx, "jobs", "a string", 0).Err())
	res = c.run(t, ctx, nil, "streams")
	assert.Equal(t, 1, res.code)
	assert.Contains(t, res.stderr, "WRONGTYPE")
}

func webTest(t *testing.T, srv *redistest.Server) *httptest.Server {
	cfg, err := config.Parse("realtime.toml", []byte(redisTOML(srv, "")))
	require.NoError(t, err)
	rc := client(t, srv)
	hs := httptest.NewServer(webHandler(cfg, rc))
	t.Cleanup(hs.Close)
	return hs
}

// TestWebTailClientsGone: each /api/tail holds one subscription while its
// client is connected, and gives it back when the client goes (many
// clients, some with messages flowing); past maxTails at once, one more is
// refused (429) instead of holding another connection.
func TestWebTailClientsGone(t *testing.T) {
	srv := redistest.Start(t)
	hs := webTest(t, srv)
	ctx := ctxFor(t)
	rc := client(t, srv)
	const n = maxTails
	base := runtime.NumGoroutine()
	var cancels []context.CancelFunc
	for i := 0; i < n; i++ {
		rctx, cancel := context.WithCancel(ctx)
		cancels = append(cancels, cancel)
		req, err := http.NewRequestWithContext(rctx, "GET", hs.URL+"/api/tail?pattern=chan*", nil)
		require.NoError(t, err)
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		require.Equal(t, http.StatusOK, resp.StatusCode)
		line, err := bufio.NewReader(resp.Body).ReadString('\n')
		require.NoError(t, err)
		require.Equal(t, ": subscribed\n", line)
		t.Cleanup(func() { _ = resp.Body.Close() })
	}
	require.NoError(t, rc.Publish(ctx, "chan1", "hello").Err())
	clients := func() int {
		s, err := rc.ClientList(ctx).Result()
		require.NoError(t, err)
		return strings.Count(s, "cmd=psubscribe")
	}
	require.Equal(t, n, clients())
	over, err := http.Get(hs.URL + "/api/tail?pattern=chan*")
	require.NoError(t, err)
	body, _ := io.ReadAll(over.Body)
	_ = over.Body.Close()
	require.Equal(t, http.StatusTooManyRequests, over.StatusCode, string(body))
	assert.Contains(t, string(body), "close one first")
	require.Equal(t, n, clients())
	for _, cancel := range cancels {
		cancel()
	}
	require.Eventually(t, func() bool { return clients() == 0 }, 10*time.Second, 20*time.Millisecond, "subscriptions left: %d", clients())
	again, err := http.NewRequestWithContext(ctx, "GET", hs.URL+"/api/tail?pattern=chan*", nil)
	require.NoError(t, err)
	resp, err := http.DefaultClient.Do(again)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, resp.StatusCode, "a tail refused after the others went")
	_ = resp.Body.Close()
	require.Eventually(t, func() bool { return clients() == 0 }, 10*time.Second, 20*time.Millisecond, "subscriptions left: %d", clients())
	http.DefaultClient.CloseIdleConnections()
	hs.CloseClientConnections()
	require.Eventually(t, func() bool { return runtime.NumGoroutine() <= base+2 }, 10*time.Second, 20*time.Millisecond, "goroutines: %d, before the tails: %d", runtime.NumGoroutine(), base)
}

// TestWebErrorHidesPassword: when Redis refuses, /api/servers says so
// without the password from the URL.
func TestWebErrorHidesPassword(t *testing.T) {
	srv := redistest.Start(t)
	require.NoError(t, client(t, srv).ConfigSet(ctxFor(t), "requirepass", "other").Err())
	cfg, err := config.Parse("realtime.toml", []byte("[redis]\nurl = \"redis://:s3cretpw@"+srv.Addr()+"\"\n"))
	require.NoError(t, err)
	assert.NotContains(t, cfg.Redis.Target(), "s3cretpw")
	rc := redis.NewClient(&redis.Options{Addr: srv.Addr(), Password: "s3cretpw"})
	t.Cleanup(func() { _ = rc.Close() })
	hs := httptest.NewServer(webHandler(cfg, rc))
	t.Cleanup(hs.Close)
	for _, path := range []string{"/api/servers", "/api/tail?pattern=x"} {
		resp, err := http.Get(hs.URL + path)
		require.NoError(t, err)
		b := make([]byte, 4096)
		k, _ := resp.Body.Read(b)
		_ = resp.Body.Close()
		assert.Equal(t, http.StatusBadGateway, resp.StatusCode, path)
		assert.NotContains(t, string(b[:k]), "s3cretpw", path)
	}
}

// TestWebShutdownWithOpenTails: web returns on Ctrl-C (its context ends)
// while pages follow a tail, and their subscriptions end with it.
func TestWebShutdownWithOpenTails(t *testing.T) {
	srv := redistest.Start(t)
	c := newCtl(t, redisTOML(srv, ""))
	ctx := ctxFor(t)
	rc := client(t, srv)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close())
	wctx, stop := context.WithCancel(ctx)
	defer stop()
	done := make(chan result, 1)
	go func() { done <- c.run(t, wctx, nil, "web", "--listen", addr) }()
	var bodies []*http.Response
	require.Eventually(t, func() bool {
		resp, err := http.Get("http://" + addr + "/api/tail?pattern=x*")
		if err != nil {
			return false
		}
		bodies = append(bodies, resp)
		return resp.StatusCode == http.StatusOK
	}, 10*time.Second, 20*time.Millisecond)
	for i := 0; i < 3; i++ {
		resp, err := http.Get("http://" + addr + "/api/tail?pattern=y*")
		require.NoError(t, err)
		bodies = append(bodies, resp)
	}
	defer func() {
		for _, b := range bodies {
			_ = b.Body.Close()
		}
	}()
	psubs := func() int {
		s, err := rc.ClientList(ctx).Result()
		require.NoError(t, err)
		return strings.Count(s, "cmd=psubscribe")
	}
	require.Equal(t, 4, psubs())
	stop()
	select {
	case res := <-done:
		assert.Equal(t, 0, res.code, res.stderr)
	case <-ctx.Done():
		t.Fatal("web did not return after its context ended, with tails open")
	}
	require.Eventually(t, func() bool { return psubs() == 0 }, 10*time.Second, 20*time.Millisecond)
}

// TestWebRefusesRebinding: on loopback, web answers only requests for
// localhost or an address, not a page of another site whose name was made
// to resolve to 127.0.0.1 (DNS rebinding) reading /api/tail.
func TestWebRefusesRebinding(t *testing.T) {
	srv := redistest.Start(t)
	c := newCtl(t, redisTOML(srv, ""))
	ctx := ctxFor(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	_, port, _ := net.SplitHostPort(addr)
	require.NoError(t, ln.Close())
	wctx, stop := context.WithCancel(ctx)
	done := make(chan result, 1)
	go func() { done <- c.run(t, wctx, nil, "web", "--listen", addr) }()
	defer func() { stop(); <-done }()
	get := func(host string) int {
		req, err := http.NewRequestWithContext(ctx, "GET", "http://"+addr+"/api/servers", nil)
		require.NoError(t, err)
		req.Host = host
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return 0
		}
		_ = resp.Body.Close()
		return resp.StatusCode
	}
	require.Eventually(t, func() bool { return get(addr) == http.StatusOK }, 10*time.Second, 20*time.Millisecond)
	assert.Equal(t, http.StatusOK, get("localhost:"+port))
	assert.Equal(t, http.StatusOK, get("[::1]:"+port))
	assert.Equal(t, http.StatusMisdirectedRequest, get("evil.example:"+port))
	assert.Equal(t, http.StatusMisdirectedRequest, get("127.0.0.1.evil.example"))
}

// TestRequeueDeadPoisonEnds: requeue-dead moves the dead letters there when
// it starts; an entry that dies again at once (a consumer that fails every
// entry, here up to 500 times) waits for the next run instead of keeping
// requeue-dead going round.
func TestRequeueDeadPoisonEnds(t *testing.T) {
	srv := redistest.Start(t)
	c := newCtl(t, redisTOML(srv, streamRoutesTOML))
	ctx := ctxFor(t)
	rc := client(t, srv)
	for i := 0; i < 3; i++ {
		require.NoError(t, rc.XAdd(ctx, &redis.XAddArgs{Stream: "cmds:dead", Values: []any{"data", "poison", "rt_source_id", "1-1", "rt_deliveries", "5"}}).Err())
	}
	require.NoError(t, rc.XGroupCreateMkStream(ctx, "cmds", "g", "$").Err())
	cctx, stop := context.WithCancel(ctx)
	echoed := make(chan int, 1)
	go func() { // the failing consumer: every entry straight back to cmds:dead
		n := 0
		defer func() { echoed <- n }()
		for n < 500 {
			res, err := rc.XReadGroup(cctx, &redis.XReadGroupArgs{Group: "g", Consumer: "c", Streams: []string{"cmds", ">"}, Count: 10, Block: time.Second}).Result()
			if cctx.Err() != nil {
				return
			}
			if err != nil {
				continue
			}
			for _, m := range res[0].Messages {
				_ = rc.XAdd(cctx, &redis.XAddArgs{Stream: "cmds:dead", Values: []any{"data", m.Values["data"], "rt_source_id", m.ID, "rt_deliveries", "5"}}).Err()
				n++
			}
		}
	}()
	res := c.run(t, ctx, nil, "streams", "requeue-dead", "cmds")
	stop()
	<-echoed
	require.Equal(t, 0, res.code, res.stderr)
	assert.Equal(t, "moved 3 entries from cmds:dead back to cmds\n", res.stdout)
}

// TestWebPagePolicy: the page runs its own script only (the hash in the
// policy is the page's script's) and no other site may frame it.
func TestWebPagePolicy(t *testing.T) {
	srv := redistest.Start(t)
	hs := webTest(t, srv)
	resp, err := http.Get(hs.URL + "/")
	require.NoError(t, err)
	_ = resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	csp := resp.Header.Get("Content-Security-Policy")
	assert.Contains(t, csp, "frame-ancestors 'none'")
	assert.Regexp(t, `script-src 'sha256-[A-Za-z0-9+/]{43}='`, csp)
	assert.NotContains(t, csp, "unsafe-eval")
	assert.NotContains(t, csp, "script-src 'unsafe-inline'")
}

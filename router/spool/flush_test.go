package spool

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gmod-realtime/realtime/internal/redistest"
)

func client(t testing.TB, addr string, o *redis.Options) *redis.Client {
	t.Helper()
	if o == nil {
		o = &redis.Options{}
	}
	o.Addr, o.MaxRetries, o.Protocol, o.DisableIdentity = addr, -1, 2, true
	o.MaintNotificationsConfig = &maintnotifications.Config{Mode: maintnotifications.ModeDisabled}
	c := redis.NewClient(o)
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// streamIDs reads the rt_id and data fields of every entry of stream.
func streamIDs(t testing.TB, c *redis.Client, stream string) (ids, data []string) {
	t.Helper()
	msgs, err := c.XRange(context.Background(), stream, "-", "+").Result()
	require.NoError(t, err)
	for _, m := range msgs {
		ids = append(ids, m.Values[FieldID].(string))
		data = append(data, m.Values[FieldData].(string))
	}
	return ids, data
}

// reply is an error reply as go-redis returns it.
type reply string

func (e reply) Error() string { return string(e) }
func (reply) RedisError()     {}

func TestRefused(t *testing.T) {
	for _, c := range []struct {
		err     error
		refused bool
	}{
		{reply("WRONGTYPE Operation against a key holding the wrong kind of value"), true},
		{reply("NOPERM User u has no permissions to access the 'x' key"), true},
		{reply("ERR syntax error"), true},
		{reply("LOADING Redis is loading the dataset in memory"), false},
		{reply("OOM command not allowed when used memory > 'maxmemory'."), false},
		{reply("READONLY You can't write against a read only replica."), false},
		{reply("BUSY Redis is busy running a script."), false},
		{reply("BUSYGROUP Consumer Group name already exists"), true},
		{reply("NOAUTH Authentication required."), false},
		{reply("ERR max number of clients reached"), false},
		{reply("MISCONF Redis is configured to save RDB snapshots"), false},
		{&net.OpError{Op: "dial", Err: errors.New("connection refused")}, false},
		{context.DeadlineExceeded, false},
		{redis.ErrClosed, false},
		{fmt.Errorf("wrapped: %w", reply("WRONGTYPE x")), true},
	} {
		assert.Equal(t, c.refused, Refused(c.err), "%v", c.err)
	}
}

// TestFlush: entries reach their streams in order with their IDs, the
// ones Redis refuses (a key of another type, a key the ACL user may not
// write) are dropped and counted, and MAXLEN ~ trims.
func TestFlush(t *testing.T) {
	srv := redistest.Start(t)
	admin := client(t, srv.Addr(), nil)
	ctx := context.Background()
	require.NoError(t, admin.Set(ctx, "bad", "a string", 0).Err())
	require.NoError(t, admin.Do(ctx, "ACL", "SETUSER", "game", "on", ">pw", "~s1", "~s2", "~bad", "~trimmed", "+@all").Err())
	game := client(t, srv.Addr(), &redis.Options{Username: "game", Password: "pw"})

	var log logLines
	s := open(t, filepath.Join(t.TempDir(), "spool.db"), Options{FlushBatch: 7, Logf: log.logf})
	type sent struct{ id, stream, payload string }
	var want []sent
	for i := 0; i < 40; i++ {
		stream := []string{"s1", "s2", "bad", "secret", "s1"}[i%5]
		payload := fmt.Sprintf("entry %d\x00", i)
		want = append(want, sent{add(t, s, stream, payload), stream, payload})
	}
	n, err := s.Flush(ctx, game, 0)
	require.NoError(t, err)
	assert.Equal(t, 24, n)
	st := s.Stats()
	assert.EqualValues(t, 0, st.Depth)
	assert.EqualValues(t, 0, st.Bytes)
	assert.EqualValues(t, 24, st.Flushed)
	assert.EqualValues(t, 16, st.DroppedRefused)
	assert.Contains(t, log.String(), "WRONGTYPE")
	assert.Contains(t, log.String(), "NOPERM")
	for _, stream := range []string{"s1", "s2"} {
		ids, data := streamIDs(t, admin, stream)
		var wantIDs, wantData []string
		for _, w := range want {
			if w.stream == stream {
				wantIDs, wantData = append(wantIDs, w.id), append(wantData, w.payload)
			}
		}
		assert.Equal(t, wantIDs, ids, stream)
		assert.Equal(t, wantData, data, stream)
	}
	assert.EqualValues(t, 0, admin.Exists(ctx, "secret").Val())

	// MAXLEN ~: Redis trims whole nodes, so the stream ends up well
	// below what was sent but at least max_len long.
	for i := 0; i < 1000; i++ {
		add(t, s, "trimmed", strconv.Itoa(i))
	}
	n, err = s.Flush(ctx, game, 10)
	require.NoError(t, err)
	assert.Equal(t, 1000, n)
	l := admin.XLen(ctx, "trimmed").Val()
	assert.Less(t, l, int64(1000))
	assert.GreaterOrEqual(t, l, int64(10))
}

// TestFlushTransient: a reply that says "not now" (OOM) stops the flush
// and drops nothing; the entries go once Redis takes them again.
func TestFlushTransient(t *testing.T) {
	srv := redistest.Start(t, "--maxmemory-policy", "noeviction")
	c := client(t, srv.Addr(), nil)
	ctx := context.Background()
	s := open(t, filepath.Join(t.TempDir(), "spool.db"), Options{})
	for i := 0; i < 10; i++ {
		add(t, s, "s", strconv.Itoa(i))
	}
	require.NoError(t, c.ConfigSet(ctx, "maxmemory", "1").Err())
	n, err := s.Flush(ctx, c, 0)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "OOM")
	assert.Equal(t, 0, n)
	st := s.Stats()
	assert.EqualValues(t, 10, st.Depth)
	assert.EqualValues(t, 0, st.Dropped())
	require.NoError(t, c.ConfigSet(ctx, "maxmemory", "0").Err())
	n, err = s.Flush(ctx, c, 0)
	require.NoError(t, err)
	assert.Equal(t, 10, n)
	ids, _ := streamIDs(t, c, "s")
	assert.Len(t, ids, 10)
}

// cutProxy stands between a client and Redis and plays a crash of Redis
// in the middle of a pipeline: it forwards the client's commands whole,
// counting the XADDs; from XADD number muteAfter+1 on it holds back
// Redis's replies, and after XADD number cutAt it forwards nothing more
// and closes cut. The test then kills Redis and closes the proxy.
type cutProxy struct {
	ln               net.Listener
	upstream         string
	muteAfter, cutAt int
	cut              chan struct{}
	mu               sync.Mutex
	xadds            int
	muted            bool
	conns            []net.Conn
}

func startCutProxy(t *testing.T, upstream string, muteAfter, cutAt int) *cutProxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	p := &cutProxy{ln: ln, upstream: upstream, muteAfter: muteAfter, cutAt: cutAt, cut: make(chan struct{})}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			u, err := net.Dial("tcp", upstream)
			if err != nil {
				c.Close()
				continue
			}
			p.mu.Lock()
			p.conns = append(p.conns, c, u)
			p.mu.Unlock()
			go p.requests(c, u)
			go p.replies(u, c)
		}
	}()
	t.Cleanup(p.Close)
	return p
}

// requests forwards whole RESP commands from c to u.
func (p *cutProxy) requests(c, u net.Conn) {
	r := bufio.NewReader(c)
	for {
		cmd, name, err := readCommand(r)
		if err != nil {
			return
		}
		p.mu.Lock()
		if p.xadds >= p.cutAt {
			p.mu.Unlock()
			continue // Redis is about to die: it gets nothing more
		}
		if strings.EqualFold(name, "XADD") {
			p.xadds++
			if p.xadds > p.muteAfter {
				p.muted = true
			}
		}
		last := p.xadds == p.cutAt
		p.mu.Unlock()
		if _, err := u.Write(cmd); err != nil {
			return
		}
		if last {
			close(p.cut)
		}
	}
}

// replies copies Redis's replies to the client until muted.
func (p *cutProxy) replies(u, c net.Conn) {
	buf := make([]byte, 32<<10)
	for {
		n, err := u.Read(buf)
		if err != nil {
			c.Close()
			return
		}
		p.mu.Lock()
		muted := p.muted
		p.mu.Unlock()
		if !muted {
			if _, err := c.Write(buf[:n]); err != nil {
				return
			}
		}
	}
}

// readCommand reads one RESP array of bulk strings: its bytes and its first
// element.
func readCommand(r *bufio.Reader) (raw []byte, name string, err error) {
	line, err := r.ReadString('\n')
	if err != nil {
		return nil, "", err
	}
	if !strings.HasPrefix(line, "*") {
		return nil, "", fmt.Errorf("not a RESP array: %q", line)
	}
	n, err := strconv.Atoi(strings.TrimSpace(line[1:]))
	if err != nil {
		return nil, "", err
	}
	raw = append(raw, line...)
	for i := 0; i < n; i++ {
		head, err := r.ReadString('\n')
		if err != nil {
			return nil, "", err
		}
		l, err := strconv.Atoi(strings.TrimSpace(head[1:]))
		if err != nil {
			return nil, "", err
		}
		body := make([]byte, l+2)
		if _, err := io.ReadFull(r, body); err != nil {
			return nil, "", err
		}
		if i == 0 {
			name = string(body[:l])
		}
		raw = append(append(raw, head...), body...)
	}
	return raw, name, nil
}

// Close drops every connection through the proxy.
func (p *cutProxy) Close() {
	p.ln.Close()
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		c.Close()
	}
}

// TestFlushRedisDies: Redis (appendfsync always, so what it executed before
// the kill survives) dies in the middle of a pipeline, after executing part
// of it, and the replies to that part are lost. Flush stops with an error
// and keeps the unacknowledged entries; once Redis is back a second Flush
// sends them. Every entry arrives, in order of first arrival, and the
// duplicates are exactly the entries Redis executed without the spool
// hearing of it: the documented window, and only it.
func TestFlushRedisDies(t *testing.T) {
	srv := redistest.Start(t, "--appendonly", "yes", "--appendfsync", "always")
	admin := client(t, srv.Addr(), nil)
	ctx := context.Background()
	const batch, total = 64, 3000
	s := open(t, filepath.Join(t.TempDir(), "spool.db"), Options{FlushBatch: batch})
	streams := []string{"a", "b"}
	byStream := map[string][]string{}
	var firstSeq int64
	for i := 0; i < total; i++ {
		stream := streams[i%2]
		id := add(t, s, stream, "payload "+strconv.Itoa(i))
		byStream[stream] = append(byStream[stream], id)
		if i == 0 {
			_, firstSeq, _ = ParseID(id)
		}
	}
	require.NoError(t, s.Sync())

	seed := testSeed()
	rng := rand.New(rand.NewPCG(seed, 1))
	whole := 2 + rng.IntN(20)         // pipelines that complete
	executed := 1 + rng.IntN(batch-1) // entries of the next one Redis executes
	cutAt := whole*batch + executed
	t.Logf("seed %d (SPOOL_SEED replays it): Redis dies after XADD %d, in pipeline %d", seed, cutAt, whole+1)
	p := startCutProxy(t, srv.Addr(), whole*batch, cutAt)
	c := client(t, p.ln.Addr().String(), &redis.Options{PoolSize: 1})
	type result struct {
		n   int
		err error
	}
	done := make(chan result, 1)
	go func() {
		n, err := s.Flush(ctx, c, 0)
		done <- result{n, err}
	}()
	<-p.cut
	// Wait until Redis has executed what it was given, then kill it.
	deadline := time.Now().Add(10 * time.Second)
	for admin.XLen(ctx, "a").Val()+admin.XLen(ctx, "b").Val() < int64(cutAt) {
		require.True(t, time.Now().Before(deadline), "Redis did not execute the %d XADDs it was sent", cutAt)
		time.Sleep(time.Millisecond)
	}
	srv.Kill()
	p.Close()
	r := <-done
	require.Error(t, r.err, "Flush must report the lost connection")
	assert.Equal(t, whole*batch, r.n, "acknowledged: the whole pipelines")
	rest, err := s.Peek(1)
	require.NoError(t, err)
	require.Len(t, rest, 1)
	window := rest[0].Seq
	assert.Equal(t, firstSeq+int64(whole*batch), window, "the pipeline in flight stays spooled")
	assert.EqualValues(t, total-r.n, s.Stats().Depth)

	srv.Restart()
	c2 := client(t, srv.Addr(), nil)
	n2, err := s.Flush(ctx, c2, 0)
	require.NoError(t, err)
	assert.Equal(t, total, r.n+n2, "each entry acknowledged once")
	assert.EqualValues(t, 0, s.Stats().Depth)

	dups := 0
	for _, stream := range streams {
		ids, _ := streamIDs(t, c2, stream)
		seen := map[string]bool{}
		var first []string
		var last int64
		for _, id := range ids {
			server, seq, ok := ParseID(id)
			require.True(t, ok && server == "srv1", "rt_id %q", id)
			if seen[id] {
				dups++
				assert.True(t, seq >= window && seq < window+batch, "duplicate %s outside the pipeline in flight [%d, %d)", id, window, window+batch)
				continue
			}
			seen[id] = true
			first = append(first, id)
			assert.Greater(t, seq, last, "%s out of order", id)
			last = seq
		}
		assert.Equal(t, byStream[stream], first, "stream %s: every entry, in order of first arrival", stream)
	}
	assert.Equal(t, executed, dups, "duplicates: the entries Redis executed whose replies were lost")
}

// addHook runs add before the first pipeline it sees.
type addHook struct {
	add  func()
	done bool
}

func (h *addHook) DialHook(next redis.DialHook) redis.DialHook          { return next }
func (h *addHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook { return next }
func (h *addHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		if !h.done {
			h.done = true
			h.add()
		}
		return next(ctx, cmds)
	}
}

// TestFlushDrainsConcurrentAdds: entries Added while a Flush runs (here
// while its first pipeline is on its way) are sent by that Flush, after
// the older ones.
func TestFlushDrainsConcurrentAdds(t *testing.T) {
	srv := redistest.Start(t)
	c := client(t, srv.Addr(), nil)
	s := open(t, filepath.Join(t.TempDir(), "spool.db"), Options{FlushBatch: 16})
	var ids []string
	for i := 0; i < 200; i++ {
		ids = append(ids, add(t, s, "s", strconv.Itoa(i)))
	}
	require.NoError(t, s.Sync())
	c.AddHook(&addHook{add: func() {
		for i := 0; i < 200; i++ {
			ids = append(ids, add(t, s, "s", "late"))
		}
	}})
	n, err := s.Flush(context.Background(), c, 0)
	require.NoError(t, err)
	assert.Equal(t, 400, n)
	got, _ := streamIDs(t, c, "s")
	assert.Equal(t, ids, got)
	assert.EqualValues(t, 0, s.Stats().Depth)
}

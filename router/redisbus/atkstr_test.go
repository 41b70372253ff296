package redisbus

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gmod-realtime/realtime/internal/redistest"
)

// cannedServer answers every command a go-redis client sends on its
// in-memory connection with the next reply of replies (RESP bytes as
// given), or +OK for a command that is not an XREADGROUP.
type cannedServer struct {
	replies chan []byte
}

func (s cannedServer) serve(conn net.Conn) {
	defer conn.Close()
	rd := bufio.NewReader(conn)
	for {
		cmd, err := readCommand(rd)
		if err != nil {
			return
		}
		reply := []byte("+OK\r\n")
		switch {
		case strings.EqualFold(cmd, "hello"):
			reply = []byte("-ERR unknown command 'hello'\r\n")
		case strings.EqualFold(cmd, "xreadgroup"):
			reply = <-s.replies
		}
		if _, err := conn.Write(reply); err != nil {
			return
		}
	}
}

// readCommand reads one RESP array of bulk strings and returns its first.
func readCommand(rd *bufio.Reader) (string, error) {
	line, err := rd.ReadString('\n')
	if err != nil {
		return "", err
	}
	n, err := strconv.Atoi(strings.TrimSpace(line[1:]))
	if err != nil {
		return "", err
	}
	var first string
	for i := range n {
		h, err := rd.ReadString('\n')
		if err != nil {
			return "", err
		}
		l, err := strconv.Atoi(strings.TrimSpace(h[1:]))
		if err != nil {
			return "", err
		}
		b := make([]byte, l+2)
		if _, err := io.ReadFull(rd, b); err != nil {
			return "", err
		}
		if i == 0 {
			first = string(b[:l])
		}
	}
	return first, nil
}

// genReply writes a random RESP2 reply shaped mostly like an XREADGROUP
// reply ([[stream, [[id, [f, v, ...]], ...]], ...]), any node of which
// may be replaced by another RESP2 value (integer, status, error, nil
// bulk string, nil array, an array of the wrong length, binary bulk
// strings with CR LF in them).
func genReply(rng *rand.Rand, b *strings.Builder) {
	if rng.IntN(30) == 0 {
		genAny(rng, b, 2)
		return
	}
	n := rng.IntN(3)
	fmt.Fprintf(b, "*%d\r\n", n)
	for range n {
		if rng.IntN(12) == 0 {
			genAny(rng, b, 2)
			continue
		}
		b.WriteString("*2\r\n")
		genBulk(rng, b)
		if rng.IntN(12) == 0 {
			genAny(rng, b, 2)
			continue
		}
		k := rng.IntN(5)
		fmt.Fprintf(b, "*%d\r\n", k)
		for range k {
			if rng.IntN(10) == 0 {
				genAny(rng, b, 2)
				continue
			}
			b.WriteString("*2\r\n")
			if rng.IntN(10) == 0 {
				genAny(rng, b, 1)
			} else {
				fmt.Fprintf(b, "$%d\r\n%s\r\n", len("1-2"), "1-2")
			}
			switch rng.IntN(8) {
			case 0:
				b.WriteString("*-1\r\n") // deleted
			case 1:
				genAny(rng, b, 1)
			default:
				f := rng.IntN(5) * 2
				if rng.IntN(8) == 0 {
					f++
				}
				fmt.Fprintf(b, "*%d\r\n", f)
				for range f {
					if rng.IntN(10) == 0 {
						genAny(rng, b, 1)
					} else {
						genBulk(rng, b)
					}
				}
			}
		}
	}
}

func genBulk(rng *rand.Rand, b *strings.Builder) {
	s := randomBytes(rng, 20)
	fmt.Fprintf(b, "$%d\r\n%s\r\n", len(s), s)
}

// genAny writes any RESP2 value, arrays nested to depth.
func genAny(rng *rand.Rand, b *strings.Builder, depth int) {
	switch rng.IntN(8) {
	case 0:
		fmt.Fprintf(b, ":%d\r\n", rng.Int64()-rng.Int64())
	case 1:
		fmt.Fprintf(b, "+%s\r\n", strings.NewReplacer("\r", "", "\n", "").Replace(randomBytes(rng, 10)))
	case 2:
		b.WriteString("-ERR nested\r\n")
	case 3:
		b.WriteString("$-1\r\n")
	case 4:
		b.WriteString("*-1\r\n")
	case 5, 6:
		if depth > 0 {
			n := rng.IntN(4)
			fmt.Fprintf(b, "*%d\r\n", n)
			for range n {
				genAny(rng, b, depth-1)
			}
			return
		}
		fallthrough
	default:
		genBulk(rng, b)
	}
}

// TestParseReadReplyMatchesGoRedis: random RESP2 replies, most of the
// XREADGROUP shape and some nodes of any other RESP2 type, served on an
// in-memory connection, parse to the same entries (nil fields and empty
// fields told apart), the same nil and the same error-or-not with
// parseReadReply as through go-redis's generic reply and parseEntries
// (readGeneric). Seed printed; replay with REDISBUS_RAW_SEED=n.
func TestParseReadReplyMatchesGoRedis(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("REDISBUS_RAW_SEED"); s != "" {
		var err error
		seed, err = strconv.ParseUint(s, 10, 64)
		require.NoError(t, err)
	}
	rng := rand.New(rand.NewPCG(seed, 3))
	srv := cannedServer{replies: make(chan []byte, 1)}
	c := redis.NewClient(&redis.Options{
		Addr: "canned:0", Protocol: 2, DisableIdentity: true, MaxRetries: -1, PoolSize: 1,
		MaintNotificationsConfig: &maintnotifications.Config{Mode: maintnotifications.ModeDisabled},
		Dialer: func(context.Context, string, string) (net.Conn, error) {
			a, b := net.Pipe()
			go srv.serve(b)
			return a, nil
		},
	})
	defer c.Close()
	ctx := context.Background()
	for i := range 3000 {
		var b strings.Builder
		genReply(rng, &b)
		reply := b.String()
		raw, rerr := parseReadReply([]byte(reply))
		srv.replies <- []byte(reply)
		gen, gerr := readGeneric(ctx, c, "xreadgroup", "group", "g", "c", "streams", "s", ">")
		what := fmt.Sprintf("seed %d, reply %d %q (replay with REDISBUS_RAW_SEED=%d)", seed, i, reply, seed)
		if len(raw) == 0 && len(gen) == 0 {
			raw, gen = nil, nil // no entries either way
		}
		switch {
		case rerr == errMalformed && reply[0] != '*' && reply[0] != '-':
			// by design: a reply that is not an array is not understood
			// (go-redis's generic reply yields no entries from it, or nil)
			require.Empty(t, gen, what)
		case gerr == redis.Nil:
			require.Equal(t, redis.Nil, rerr, what)
		case gerr != nil:
			require.Equal(t, errRawReply, rerr, "%s: go-redis: %v", what, gerr)
		default:
			require.NoError(t, rerr, what)
			require.Equal(t, gen, raw, what)
		}
	}
}

// TestStreamIDsAcrossDigitLengths: explicit ids whose parts cross digit
// lengths (9 to 10, 99 to 100, ..., 20 digits, up to the greatest id
// Redis takes, 18446744073709551615-18446744073709551615), read, acked,
// then the group destroyed: it is recreated at the highest id read, so
// the entries added after it arrive, each once, and none read before
// arrives again (a string comparison of ids would recreate it at a lower
// id and deliver old ones again). Seed printed.
func TestStreamIDsAcrossDigitLengths(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	rng := rand.New(rand.NewPCG(seed, 4))
	t.Logf("seed %d", seed)
	srv := redistest.Start(t)
	c := client2(t, srv)
	ctx := context.Background()
	const stream = "digits"
	// increasing ids: each step either a new ms (jumping across a power
	// of ten now and then) or the next seq (crossing powers of ten too)
	var ids []string
	ms, seq := uint64(rng.IntN(9)+1), uint64(rng.IntN(9))
	for len(ids) < 60 {
		ids = append(ids, fmt.Sprintf("%d-%d", ms, seq))
		switch rng.IntN(3) {
		case 0:
			seq++
			if p := pow10Above(seq); rng.IntN(2) == 0 && p > seq {
				seq = p - 1 // next step crosses a length
			}
		default:
			next := ms + 1 + rng.Uint64N(3)
			if rng.IntN(2) == 0 && ms < 1e18 {
				next = pow10Above(ms+1) - 1 + rng.Uint64N(2)
			}
			ms, seq = next, uint64(rng.IntN(11))
		}
	}
	ids = append(ids, "18446744073709551615-0", "18446744073709551615-9", "18446744073709551615-10",
		"18446744073709551615-18446744073709551614", "18446744073709551615-18446744073709551615")
	half := len(ids) / 2
	for _, id := range ids[:half] {
		_, err := c.XAdd(ctx, &redis.XAddArgs{Stream: stream, ID: id, Values: []string{"id", id}}).Result()
		require.NoError(t, err, "seed %d: xadd %s", seed, id)
	}
	sink := newChanSink(len(ids))
	r := startReader(t, srv.Addr(), "srv1", []StreamSpec{{Stream: stream, Group: "g", Start: "0"}}, sink, StreamOptions{Count: int64(rng.IntN(7) + 1)})
	got := map[string]int{}
	take := func(n int) {
		for range n {
			e := recv(t, sink, 10*time.Second)
			require.Equal(t, e.ID, fieldValue(e.Fields, "id"), "seed %d", seed)
			got[e.ID]++
			r.Ack(e.Stream, e.Group, e.ID)
		}
	}
	take(half)
	waitUntil(t, "the acks", 10*time.Second, func() bool { return pendingCount(c, stream, "g") == 0 })
	require.NoError(t, c.XGroupDestroy(ctx, stream, "g").Err())
	for _, id := range ids[half:] {
		_, err := c.XAdd(ctx, &redis.XAddArgs{Stream: stream, ID: id, Values: []string{"id", id}}).Result()
		require.NoError(t, err, "seed %d: xadd %s", seed, id)
	}
	take(len(ids) - half)
	waitUntil(t, "the acks", 10*time.Second, func() bool { return pendingCount(c, stream, "g") == 0 })
	// nothing more: had the group been recreated below the last id read,
	// old entries would come again (they are all in the sink by now: the
	// group's last delivered id is the stream's last)
	info, err := c.XInfoGroups(ctx, stream).Result()
	require.NoError(t, err)
	require.Len(t, info, 1)
	assert.Equal(t, ids[len(ids)-1], info[0].LastDeliveredID, "seed %d", seed)
	select {
	case e := <-sink.ch:
		t.Fatalf("seed %d: %s delivered again (ids %v)", seed, e.ID, ids)
	default:
	}
	for _, id := range ids {
		assert.Equal(t, 1, got[id], "seed %d: %s", seed, id)
	}
}

// pow10Above is the least power of ten above n (n below 1e19).
func pow10Above(n uint64) uint64 {
	p := uint64(1)
	for p <= n && p < 1e19 {
		p *= 10
	}
	return p
}

// TestStreamClusterSlotMoved: the stream's slot is moved to another master
// while the reader waits on it (its XREADGROUP goes to the old master,
// which answers MOVED through the raw reply; the generic path follows
// it): the entries added before, during the reader's wait and after the
// move each arrive once and end acknowledged on the new master, with the
// group (moved with its key) intact.
func TestStreamClusterSlotMoved(t *testing.T) {
	addrs := redistest.StartCluster(t, 3)
	ctx := context.Background()
	cc := redis.NewClusterClient(&redis.ClusterOptions{Addrs: addrs, Protocol: 2})
	t.Cleanup(func() { _ = cc.Close() })
	const stream = "moving"
	cfg := streamConfig(addrs[0])
	cfg.URL, cfg.Addrs = "", addrs
	sink := newChanSink(64)
	r, err := NewStreamReader(cfg, StreamOptions{Consumer: "srv1", Block: 200 * time.Millisecond, RetryDelay: 50 * time.Millisecond, Logf: t.Logf},
		[]StreamSpec{{Stream: stream, Group: "g", Start: "0"}}, sink)
	require.NoError(t, err)
	t.Cleanup(func() { r.Close(); r.Wait() })
	got := map[string]int{}
	var want []string
	add := func(n int) {
		for range n {
			id, err := cc.XAdd(ctx, &redis.XAddArgs{Stream: stream, Values: []string{"n", strconv.Itoa(len(want))}}).Result()
			require.NoError(t, err)
			want = append(want, id)
		}
	}
	take := func(n int) {
		for range n {
			e := recv(t, sink, 20*time.Second)
			got[e.ID]++
			r.Ack(e.Stream, e.Group, e.ID)
		}
	}
	add(5)
	take(5)

	// move the slot: IMPORTING/MIGRATING, MIGRATE the key, then NODE
	slot, err := cc.ClusterKeySlot(ctx, stream).Result()
	require.NoError(t, err)
	src, err := cc.MasterForKey(ctx, stream)
	require.NoError(t, err)
	ids := map[string]string{} // addr -> node id
	nodes := map[string]*redis.Client{}
	for _, a := range addrs {
		c := redis.NewClient(&redis.Options{Addr: a, Protocol: 2})
		t.Cleanup(func() { _ = c.Close() })
		ids[a], err = c.Do(ctx, "cluster", "myid").Text()
		require.NoError(t, err)
		nodes[a] = c
	}
	from := src.Options().Addr
	to := ""
	for _, a := range addrs {
		if a != from {
			to = a
			break
		}
	}
	waitUntil(t, "the acks before the move", 20*time.Second, func() bool { return pendingCount(nodes[from], stream, "g") == 0 })
	host, port, _ := net.SplitHostPort(to)
	require.NoError(t, nodes[to].Do(ctx, "cluster", "setslot", slot, "importing", ids[from]).Err())
	require.NoError(t, nodes[from].Do(ctx, "cluster", "setslot", slot, "migrating", ids[to]).Err())
	require.NoError(t, nodes[from].Do(ctx, "migrate", host, port, "", 0, 5000, "keys", stream).Err())
	for _, a := range append([]string{to, from}, addrs...) {
		require.NoError(t, nodes[a].Do(ctx, "cluster", "setslot", slot, "node", ids[to]).Err())
	}
	n, err := nodes[to].XLen(ctx, stream).Result()
	require.NoError(t, err)
	require.Equal(t, int64(5), n, "the stream moved")

	add(5) // through cc: it follows MOVED itself
	take(5)
	add(3)
	take(3)
	waitUntil(t, "every entry acknowledged on the new master", 20*time.Second, func() bool {
		return pendingCount(nodes[to], stream, "g") == 0
	})
	for _, id := range want {
		assert.Equal(t, 1, got[id], "%s", id)
	}
	assert.Len(t, got, len(want))
	select {
	case e := <-sink.ch:
		t.Fatalf("%s delivered again", e.ID)
	default:
	}
}

// TestTrackTopCoversTheSet: offer skips the in-flight set's look-up for an
// id above s.top, so every id ever in the set must not be above it:
// random ids (zeros, leading zeros, 20 digits, the greatest id, a part
// missing, "", "$" and ">") tracked in random order, some deleted, the
// set read back in full after each step. Seed printed on failure.
func TestTrackTopCoversTheSet(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	rng := rand.New(rand.NewPCG(seed, 5))
	part := func() string {
		switch rng.IntN(6) {
		case 0:
			return "0"
		case 1:
			return strconv.FormatUint(rng.Uint64(), 10)
		case 2:
			return "18446744073709551615"
		case 3:
			return "0" + strconv.FormatUint(rng.Uint64N(100), 10)
		default:
			return strconv.FormatUint(rng.Uint64N(20), 10)
		}
	}
	id := func() string {
		switch rng.IntN(30) {
		case 0:
			return ""
		case 1:
			return "$"
		case 2:
			return ">"
		case 3:
			return part()
		}
		return part() + "-" + part()
	}
	for round := range 200 {
		s := &stream{tracked: map[string]*flight{}}
		for range 50 {
			x := id()
			if rng.IntN(4) == 0 && len(s.tracked) > 0 {
				for k := range s.tracked {
					delete(s.tracked, k)
					break
				}
			}
			s.track(x, &flight{state: stSink})
			for k := range s.tracked {
				if idLess(s.top, k) {
					t.Fatalf("seed %d, round %d: %q in the set is above top %q: offer would not look it up", seed, round, k, s.top)
				}
			}
		}
	}
}

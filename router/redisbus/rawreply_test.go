package redisbus

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gmod-realtime/realtime/internal/redistest"
)

// TestReadRawMatchesGeneric reads random entries (binary values, CR LF
// and NUL bytes in them, empty and long fields, a name given twice,
// deleted entries among pending ones) from a live redis-server with
// readRaw and with go-redis's generic reply (readGeneric), and compares
// the two, entry by entry, in order. Seeds are printed; replay one with
// REDISBUS_RAW_SEED=n.
func TestReadRawMatchesGeneric(t *testing.T) {
	srv := redistest.Start(t)
	c := client2(t, srv)
	ctx := context.Background()
	seeds := []uint64{uint64(time.Now().UnixNano())}
	if s := os.Getenv("REDISBUS_RAW_SEED"); s != "" {
		seed, err := strconv.ParseUint(s, 10, 64)
		require.NoError(t, err)
		seeds = []uint64{seed}
	}
	for _, seed := range seeds {
		rng := rand.New(rand.NewPCG(seed, 1))
		stream := fmt.Sprintf("raw:%d", seed)
		var want [][]string // the fields added, in order
		for range 300 {
			var fields []string
			for range rng.IntN(6) + 1 {
				fields = append(fields, randomBytes(rng, 12), randomBytes(rng, 300))
			}
			if rng.IntN(10) == 0 {
				fields = append(fields, fields[0], "again") // a name twice: kept twice, in order
			}
			xadd(t, c, stream, fields...)
			want = append(want, fields)
		}
		require.NoError(t, c.XGroupCreate(ctx, stream, "raw", "0").Err())
		require.NoError(t, c.XGroupCreate(ctx, stream, "gen", "0").Err())
		read := func(group, from string, count int, raw bool) []rawEntry {
			args := []any{"xreadgroup", "group", group, "c", "count", count, "streams", stream, from}
			var es []rawEntry
			var err error
			if raw {
				es, err = readRaw(ctx, c, args...)
			} else {
				es, err = readGeneric(ctx, c, args...)
			}
			require.NoError(t, err, "seed %d", seed)
			return es
		}
		var raws, gens []rawEntry
		for len(raws) < len(want) {
			n := rng.IntN(80) + 1
			raws = append(raws, read("raw", ">", n, true)...)
			gens = append(gens, read("gen", ">", n, false)...)
		}
		require.Equal(t, len(want), len(raws), "seed %d", seed)
		assert.Equal(t, gens, raws, "seed %d: raw and generic replies differ", seed)
		for i, e := range raws {
			assert.Equal(t, want[i], e.fields, "seed %d: entry %d", seed, i)
		}

		// Pending entries, some deleted from the stream: [id, nil].
		var deleted []string
		for _, e := range raws {
			if rng.IntN(4) == 0 {
				deleted = append(deleted, e.id)
			}
		}
		require.NoError(t, c.XDel(ctx, stream, deleted...).Err())
		raws = read("raw", "0", len(want), true)
		gens = read("gen", "0", len(want), false)
		assert.Equal(t, gens, raws, "seed %d: pending entries differ", seed)
		nils := 0
		for _, e := range raws {
			if e.fields == nil {
				nils++
			}
		}
		assert.Equal(t, len(deleted), nils, "seed %d: deleted entries have nil fields", seed)

		// Nothing new: a BLOCK that times out is redis.Nil.
		_, err := readRaw(ctx, c, "xreadgroup", "group", "raw", "c", "count", 10, "block", 1, "streams", stream, ">")
		assert.Equal(t, redis.Nil, err, "seed %d", seed)
		if t.Failed() {
			t.Logf("seed %d (replay with REDISBUS_RAW_SEED=%d)", seed, seed)
		}
	}
}

func randomBytes(rng *rand.Rand, max int) string {
	b := make([]byte, rng.IntN(max+1))
	for i := range b {
		switch rng.IntN(8) {
		case 0:
			b[i] = "\r\n\x00$*-+:"[rng.IntN(8)]
		default:
			b[i] = byte(rng.IntN(256))
		}
	}
	return string(b)
}

// TestReadRawErrors: an error reply is errRawReply (readNew then sends
// the command again through go-redis, which types the error), and
// readNew turns NOGROUP into the reader's NOGROUP.
func TestReadRawErrors(t *testing.T) {
	srv := redistest.Start(t)
	c := client2(t, srv)
	ctx := context.Background()
	_, err := readRaw(ctx, c, "xreadgroup", "group", "nope", "c", "count", 10, "streams", "none", ">")
	assert.Equal(t, errRawReply, err)
	_, err = readGeneric(ctx, c, "xreadgroup", "group", "nope", "c", "count", 10, "streams", "none", ">")
	assert.True(t, isNoGroup(err), "%v", err)
}

// TestParseReadReplyMalformed: replies cut short or not of the XREADGROUP
// shape are errMalformed or skipped as parseEntries skips them, never a
// panic.
func TestParseReadReplyMalformed(t *testing.T) {
	good := "*1\r\n*2\r\n$1\r\ns\r\n*2\r\n*2\r\n$3\r\n1-1\r\n*2\r\n$1\r\nf\r\n$1\r\nv\r\n*2\r\n$3\r\n1-2\r\n*-1\r\n"
	es, err := parseReadReply([]byte(good))
	require.NoError(t, err)
	assert.Equal(t, []rawEntry{{id: "1-1", fields: []string{"f", "v"}}, {id: "1-2"}}, es)
	for i := range len(good) {
		_, err := parseReadReply([]byte(good[:i]))
		assert.Error(t, err, "cut at %d", i)
	}
	for _, bad := range []string{"", "+OK\r\n", ":1\r\n", "*x\r\n", "*99999999999\r\n", "*1\r\n$99999999\r\nab\r\n", "*1\r\n*2\r\n$1\r\ns\r\n*1\r\n*2\r\n$3\r\n1-1\r\n*9999999999\r\n"} {
		_, err := parseReadReply([]byte(bad))
		assert.Equal(t, errMalformed, err, "%q", bad)
	}
	_, err = parseReadReply([]byte("-NOGROUP x\r\n"))
	assert.Equal(t, errRawReply, err)
	_, err = parseReadReply([]byte("*-1\r\n"))
	assert.Equal(t, redis.Nil, err)
	// shapes parseEntries skips: a stream that is not a pair, an item that
	// is not [id, fields]; an id that is not a string is ""
	es, err = parseReadReply([]byte("*2\r\n:1\r\n*2\r\n$1\r\ns\r\n*3\r\n:5\r\n*1\r\n$1\r\nx\r\n*2\r\n:7\r\n*0\r\n"))
	require.NoError(t, err)
	assert.Equal(t, []rawEntry{{id: "", fields: []string{}}}, es)
	var v any = []any{[]any{"s", []any{int64(5), []any{"x"}, []any{int64(7), []any{}}}}}
	gen := parseEntries(v.([]any)[0].([]any)[1])
	assert.Equal(t, []rawEntry{{id: "", fields: []string{}}}, gen)
}

// TestIDLessModel compares idLess with the numeric order of the ids'
// parsed parts on random ids (edges: equal parts, zeros, 20 digits,
// leading zeros, ""), seed printed on failure.
func TestIDLessModel(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	rng := rand.New(rand.NewPCG(seed, 2))
	part := func() string {
		switch rng.IntN(5) {
		case 0:
			return "0"
		case 1:
			return strconv.FormatUint(rng.Uint64(), 10) // up to 20 digits
		case 2:
			return "00" + strconv.FormatUint(rng.Uint64N(100), 10)
		default:
			return strconv.FormatUint(rng.Uint64N(1000), 10)
		}
	}
	id := func() string {
		if rng.IntN(20) == 0 {
			return ""
		}
		return part() + "-" + part()
	}
	parse := func(s string) (uint64, uint64) {
		ms, seq, _ := strings.Cut(s, "-")
		m, _ := strconv.ParseUint(ms, 10, 64)
		q, _ := strconv.ParseUint(seq, 10, 64)
		return m, q
	}
	model := func(a, b string) bool {
		if a == "" {
			return b != ""
		}
		am, as := parse(a)
		bm, bs := parse(b)
		return am < bm || am == bm && as < bs
	}
	for range 100000 {
		a, b := id(), id()
		if rng.IntN(4) == 0 {
			b = a
		}
		if got, want := idLess(a, b), model(a, b); got != want {
			t.Fatalf("seed %d: idLess(%q, %q) = %v, want %v", seed, a, b, got, want)
		}
	}
}

// FuzzParseReadReply: whatever bytes come back for an XREADGROUP (a
// corrupted or hostile reply), parsing neither panics nor sizes anything
// by a length the bytes do not hold (a "*9999999999" header was an
// allocation of hundreds of GB, and on a 32-bit server an int overflow),
// and what it returns comes from the bytes.
func FuzzParseReadReply(f *testing.F) {
	for _, s := range []string{
		"*1\r\n*2\r\n$1\r\ns\r\n*1\r\n*2\r\n$3\r\n1-1\r\n*2\r\n$4\r\ndata\r\n$2\r\nhi\r\n",
		"*1\r\n*2\r\n$1\r\ns\r\n*2\r\n*2\r\n$3\r\n1-1\r\n*-1\r\n*2\r\n+2-0\r\n*0\r\n",
		"*-1\r\n", "-NOGROUP x\r\n", "*9999999999\r\n", "*1\r\n*2\r\n$1\r\ns\r\n*2147483648\r\n",
		"*1\r\n*2\r\n$1\r\ns\r\n*1\r\n*2\r\n$3\r\n1-1\r\n*4294967297\r\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		entries, err := parseReadReply(raw)
		if err != nil {
			return
		}
		total := 0
		for _, e := range entries {
			total += len(e.id)
			for _, s := range e.fields {
				total += len(s)
			}
		}
		if total > len(raw) || len(entries) > len(raw)/3 {
			t.Fatalf("%d entries of %d bytes from a %d-byte reply", len(entries), total, len(raw))
		}
	})
}

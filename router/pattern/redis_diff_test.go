package pattern

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/gmod-realtime/realtime/internal/redistest"
)

// edgePatterns are hand-picked corners of Redis's glob dialect.
var edgePatterns = []string{
	"*", "?", "??", "a*", "*a", "*a*", "a?c", "a*b*c", "a**b", "[abc]", "[^abc]", "[a-c]",
	"[c-a]", "[a-c0-9]", "[^a-c0-9]", "[a-]]", `[\]]`, `[\^]`, "[^^]", `[\a-c]`,
	`\*`, `\?`, `\[`, `a\b`, `\\`, "{a,b}", "{a", "a,b", "}", "[{]", "[,}]", "player:*",
	"player:*:death", "chat:?", "*:*", "[\x01-\xff]", "[\x80-\xff]", "[\x7f-\x80]",
	"\xe9*", "?\xe9", "[\xe9]", "caf\xc3\xa9", "caf\xc3\xa9*", "[^\x00]", "*\x00*",
	"[!a]", "[-a]", "[a-a]", "[--/]", "*?", "?*?", "*[ab]*[cd]*", "a[^b]*",
}

var alphabet = []byte("abc-^[]\\*?{},:z09\x00\x7f\x80\xe9\xff")

func randString(r *rand.Rand, maxLen int) string {
	n := r.IntN(maxLen + 1)
	b := make([]byte, n)
	for i := range b {
		b[i] = alphabet[r.IntN(len(alphabet))]
	}
	return string(b)
}

// TestDifferentialRedis PSUBSCRIBEs to a few hundred patterns on a real
// redis-server, publishes thousands of channels, and checks that the local
// matcher agrees with what Redis delivered, case by case.
func TestDifferentialRedis(t *testing.T) {
	srv := redistest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	defer rdb.Close()

	r := rand.New(rand.NewPCG(1, 2))
	compiled := map[string]*Pattern{}
	for _, p := range edgePatterns {
		if c, err := Compile(p); err == nil { // rejected ones are in TestCompileErrors
			compiled[p] = c
		}
	}
	for len(compiled) < 400 {
		src := randString(r, 6)
		if p, err := Compile(src); err == nil {
			compiled[src] = p
		}
	}
	var patterns []string
	for p := range compiled {
		patterns = append(patterns, p)
	}

	channels := map[string]bool{"": true}
	for _, p := range patterns { // each pattern as a literal channel, and variations
		channels[p] = true
		channels[p+"x"] = true
	}
	for len(channels) < 5000 {
		channels[randString(r, 7)] = true
	}

	const sentinel = "\xffsentinel-done"
	ps := rdb.PSubscribe(ctx, patterns...)
	defer ps.Close()
	require.NoError(t, ps.Subscribe(ctx, sentinel))
	// Wait until every subscription is confirmed.
	for confirmed := 0; confirmed < len(patterns)+1; {
		msg, err := ps.Receive(ctx)
		require.NoError(t, err)
		if _, ok := msg.(*redis.Subscription); ok {
			confirmed++
		}
	}

	names := make([]string, 0, len(channels))
	for ch := range channels {
		names = append(names, ch)
	}
	pipe := rdb.Pipeline()
	for i, ch := range names {
		pipe.Publish(ctx, ch, strconv.Itoa(i))
	}
	pipe.Publish(ctx, sentinel, "end")
	_, err := pipe.Exec(ctx)
	require.NoError(t, err)

	got := map[[2]string]bool{}
	for {
		msg, err := ps.Receive(ctx)
		require.NoError(t, err)
		m, ok := msg.(*redis.Message)
		if !ok {
			continue
		}
		if m.Channel == sentinel && m.Pattern == "" {
			break
		}
		if m.Pattern != "" {
			got[[2]string{m.Pattern, m.Channel}] = true
		}
	}

	mismatches := 0
	checked := 0
	for _, p := range patterns {
		for _, ch := range names {
			if ch == sentinel {
				continue
			}
			checked++
			redisSays := got[[2]string{p, ch}]
			if redisMatch(p, ch) != redisSays { // the fuzz target's reference
				t.Fatalf("stringmatchlen port disagrees with Redis: %q %q", p, ch)
			}
			if compiled[p].Match(ch) != redisSays {
				mismatches++
				if mismatches <= 20 {
					t.Errorf("pattern %q channel %q: local %v, redis %v", p, ch, !redisSays, redisSays)
				}
			}
		}
	}
	t.Logf("%d patterns x %d channels = %d cases, %d deliveries by Redis, %d mismatches",
		len(patterns), len(names), checked, len(got), mismatches)
	require.Zero(t, mismatches, fmt.Sprintf("%d mismatches", mismatches))
	require.NotZero(t, len(got))
}

// TestNestedStarLimitAgreesWithRedis: Redis stops matching a pattern with
// more than MaxNestedStars `*` before its last; Compile accepts exactly the
// patterns Redis still matches, checked on a live server at the boundary.
func TestNestedStarLimitAgreesWithRedis(t *testing.T) {
	srv := redistest.Start(t)
	ctx := context.Background()
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	defer rdb.Close()
	for _, n := range []int{MaxNestedStars - 1, MaxNestedStars, MaxNestedStars + 1} {
		for _, tail := range []string{"", "*"} {
			src := strings.Repeat("*a", n) + tail
			key := strings.Repeat("a", n)
			require.NoError(t, rdb.Set(ctx, key, "1", 0).Err())
			keys, err := rdb.Keys(ctx, src).Result() // KEYS and PSUBSCRIBE share stringmatchlen
			require.NoError(t, err)
			redisMatches := len(keys) == 1
			p, err := Compile(src)
			require.Equal(t, redisMatches, err == nil, "%d stars + %q: Redis matches %v, Compile error %v", n, tail, redisMatches, err)
			if err == nil {
				require.True(t, p.Match(key))
			}
			require.NoError(t, rdb.Del(ctx, key).Err())
		}
	}
}

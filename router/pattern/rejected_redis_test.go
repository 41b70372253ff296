package pattern

import (
	"context"
	"slices"
	"testing"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gmod-realtime/realtime/internal/redistest"
)

// redisDeliveries PSUBSCRIBEs to src on a live Redis and returns the
// channels of candidates that Redis delivers to it: PUBLISH answers with
// the number of subscribers that received the message.
func redisDeliveries(t *testing.T, rdb *redis.Client, src string, candidates []string) []string {
	t.Helper()
	ctx := context.Background()
	ps := rdb.PSubscribe(ctx, src)
	defer ps.Close()
	_, err := ps.Receive(ctx) // the confirmation
	require.NoError(t, err)
	pipe := rdb.Pipeline()
	replies := make([]*redis.IntCmd, len(candidates))
	for i, ch := range candidates {
		replies[i] = pipe.Publish(ctx, ch, "x")
	}
	_, err = pipe.Exec(ctx)
	require.NoError(t, err)
	var got []string
	for i, r := range replies {
		if r.Val() > 0 {
			got = append(got, candidates[i])
		}
	}
	return got
}

// channelsAround returns channels a pattern could plausibly be meant for:
// every single byte, and every byte between and after the literal prefix
// and suffix, plus the pattern's text itself.
func channelsAround(src, prefix, suffix string) []string {
	out := []string{"", src, prefix, prefix + suffix}
	for b := range 256 {
		c := string([]byte{byte(b)})
		out = append(out, c, prefix+c, prefix+c+suffix, prefix+c+c+suffix)
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// TestRejectedPatternsInRedis: docs/CONFIG.md "Patterns Redis would accept but that
// can never match, or that Redis reads oddly, are rejected". On a live
// Redis: the ones rejected as never matching get no message whatever the
// channel; the ones rejected as read oddly match what Redis's reading
// gives, which is not what the text suggests.
func TestRejectedPatternsInRedis(t *testing.T) {
	srv := redistest.Start(t)
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr(), Protocol: 2})
	t.Cleanup(func() { _ = rdb.Close() })

	for _, tc := range []struct {
		src, prefix, suffix string
	}{
		{"[]", "", ""},
		{"x[]y", "x", "y"},
		{"player:[]", "player:", ""},
		{"[^\x00-\x7f\x80-\xff]", "", ""},
		{"a[^\x00-\x7f\x80-\xff]b", "a", "b"},
	} {
		_, err := Compile(tc.src)
		require.ErrorContains(t, err, "character class matches no byte, so the pattern can never match", "%q", tc.src)
		assert.Empty(t, redisDeliveries(t, rdb, tc.src, channelsAround(tc.src, tc.prefix, tc.suffix)),
			"Redis never matches %q either", tc.src)
	}

	for _, tc := range []struct {
		src, prefix, suffix, reason string
		redis                       []string // what Redis delivers of channelsAround
	}{
		// Redis reads an unterminated class to the end of the pattern:
		// "player:[ab" is "player:[ab]", never the text "player:[ab".
		{"player:[ab", "player:", "", "unterminated character class", []string{"player:a", "player:b"}},
		// "[a-]" is a range from 'a' to ']' (swapped: ']' to 'a').
		{"[a-]", "", "", "unterminated character class", []string{"]", "^", "_", "`", "a"}},
		// A trailing backslash matches a backslash.
		{`abc\`, "abc", "", "trailing backslash", []string{`abc\`}},
		// The empty pattern matches the empty channel only.
		{"", "", "", "empty pattern", []string{""}},
	} {
		_, err := Compile(tc.src)
		require.ErrorContains(t, err, tc.reason, "%q", tc.src)
		assert.Equal(t, tc.redis, redisDeliveries(t, rdb, tc.src, channelsAround(tc.src, tc.prefix, tc.suffix)),
			"what Redis makes of %q", tc.src)
	}
}

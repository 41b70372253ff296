package router

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/gmod-realtime/realtime/router/pattern"
)

// ownsReference is Owns without the cache: the channel subscription if
// there is one, else the first matching pattern in source order.
func ownsReference(channels map[string]bool, patterns []string, pat, channel string) bool {
	if pat == "" {
		return channels[channel]
	}
	if channels[channel] {
		return false
	}
	first := ""
	for _, src := range patterns {
		if pattern.MustCompile(src).Match(channel) && (first == "" || src < first) {
			first = src
		}
	}
	return first != "" && first == pat
}

// TestActiveOwnsAgainstReference: random subscription changes and copies;
// the cached Owns always picks what the uncached rule picks.
func TestActiveOwnsAgainstReference(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	pats := []string{"a*", "a:*", "*b", "a:?", "*", "[ab]*", "a:b"}
	chans := []string{"a:b", "a:c", "ab", "b", "a:", "xb"}
	a := NewActive()
	channels, patterns := map[string]bool{}, map[string]bool{}
	for step := 0; step < 5000; step++ {
		switch rng.IntN(6) {
		case 0:
			p := pats[rng.IntN(len(pats))]
			a.AddPattern(p)
			patterns[p] = true
		case 1:
			p := pats[rng.IntN(len(pats))]
			a.RemovePattern(p)
			delete(patterns, p)
		case 2:
			c := chans[rng.IntN(len(chans))]
			if rng.IntN(2) == 0 {
				a.AddChannel(c)
				channels[c] = true
			} else {
				a.RemoveChannel(c)
				delete(channels, c)
			}
		default:
			var live []string
			for p := range patterns {
				live = append(live, p)
			}
			c := chans[rng.IntN(len(chans))]
			for _, p := range append([]string{""}, pats...) {
				require.Equal(t, ownsReference(channels, live, p, c), a.Owns(p, c), "step %d: Owns(%q, %q) with %v %v", step, p, c, channels, live)
			}
		}
	}
}

// BenchmarkOwnsManyPatterns: one copy of a message, on a connection with
// 500 patterns that sort before the one that owns it.
func BenchmarkOwnsManyPatterns(b *testing.B) {
	a := NewActive()
	for i := 0; i < 500; i++ {
		a.AddPattern(fmt.Sprintf("game:%d:*", i))
	}
	a.AddPattern("zz*")
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		a.Owns("zz*", "zz:1")
	}
}

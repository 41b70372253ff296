package router

import (
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
	"time"
)

// coverModel is cover as it was first written: every d from the longest
// prefix down, the first that leaves at most limit groups.
func coverModel(items []planItem, limit int) []planItem {
	longest := 0
	for _, it := range items {
		longest = max(longest, len(it.prefix))
	}
	out := items
	for d := longest; d >= 1; d-- {
		if out = group(items, d); len(out) <= limit {
			break
		}
	}
	return out
}

// TestCoverMatchesModel: the bisecting cover gives exactly the model's
// plan for random route sets: prefixes from a small alphabet (so that
// they share beginnings), some empty, some kept, some prefixes of others.
func TestCoverMatchesModel(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 0))
	word := func() string {
		var b strings.Builder
		for range rng.IntN(12) {
			b.WriteByte("ab:x*"[rng.IntN(5)])
		}
		return b.String()
	}
	for round := range 5000 {
		var items []planItem
		for range rng.IntN(40) + 1 {
			p := word()
			if rng.IntN(6) == 0 && len(items) > 0 { // a prefix of an earlier one, or one longer
				q := items[rng.IntN(len(items))].prefix
				w := word()
				p = q[:rng.IntN(len(q)+1)] + w[:min(len(w), rng.IntN(2))]
			}
			it := planItem{sub: p + "*", prefix: p, keep: rng.IntN(10) == 0}
			if rng.IntN(4) == 0 {
				it = planItem{sub: p, prefix: p, exact: true, keep: it.keep}
			}
			items = append(items, it)
		}
		limit := rng.IntN(len(items)+2) + 1
		want := coverModel(items, limit)
		got := cover(items, limit)
		if len(want) == 0 {
			want = nil
		}
		if len(got) == 0 {
			got = nil
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("seed %d round %d, limit %d, items %+v:\ngot  %+v\nwant %+v", seed, round, limit, items, got, want)
		}
	}
}

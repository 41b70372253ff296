package router

import (
	"reflect"
	"testing"
)

// TestCoverEdgeCases: cover agrees with coverModel on every small set of
// prefixes over an alphabet with a 0 byte and a non-ASCII byte (prefixes
// equal, empty, prefixes of each other), kept or not, for every limit from
// 1 to past the number of items, and on an empty set.
func TestCoverEdgeCases(t *testing.T) {
	if got := cover(nil, 1); len(got) != 0 {
		t.Fatalf("cover(nil) = %+v", got)
	}
	var words []string
	for n := 0; n <= 3; n++ {
		var rec func(string, int)
		rec = func(s string, left int) {
			if left == 0 {
				words = append(words, s)
				return
			}
			for _, c := range []byte("a\x00\xff") {
				rec(s+string([]byte{c}), left-1)
			}
		}
		rec("", n)
	}
	check := func(items []planItem) {
		for limit := 1; limit <= len(items)+2; limit++ {
			want, got := coverModel(items, limit), cover(items, limit)
			if len(want) == 0 {
				want = nil
			}
			if len(got) == 0 {
				got = nil
			}
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("limit %d, items %+v:\ngot  %+v\nwant %+v", limit, items, got, want)
			}
		}
	}
	for i, a := range words {
		for j, b := range words {
			for k, c := range words[j:] {
				items := []planItem{
					{sub: a + "*", prefix: a, keep: (i+k)%7 == 0},
					{sub: b + "*", prefix: b},
					{sub: c, prefix: c, exact: true, keep: (j+k)%11 == 0},
				}
				check(items)
			}
		}
	}
}

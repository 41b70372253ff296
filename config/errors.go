package config

import (
	"fmt"
	"sort"
	"strings"
)

// FieldError is one configuration problem.
type FieldError struct {
	// Source is the file (with :line:column for syntax errors),
	// "environment" or "realtime.Config".
	Source string
	// Key is the key path ("routes[2].rate") or variable ("REDIS_PORT");
	// empty for problems with the whole source.
	Key string
	// Msg says what is wrong, quoting the value unless it is a secret.
	Msg string
}

func (e *FieldError) Error() string {
	var b strings.Builder
	if e.Source != "" {
		b.WriteString(e.Source)
		b.WriteString(": ")
	}
	if e.Key != "" {
		b.WriteString(e.Key)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// Errors is every problem Load found, one per line in Error.
type Errors []*FieldError

func (es Errors) Error() string {
	lines := make([]string, len(es))
	for i, e := range es {
		lines[i] = e.Error()
	}
	return strings.Join(lines, "\n")
}

// sort orders the problems by source, then by key as they read in a file
// (routes[2] before routes[10]).
func (es Errors) sort() {
	sortKey := func(e *FieldError) string {
		var b strings.Builder
		b.WriteString(e.Source + "\x00")
		digits := ""
		for _, r := range e.Key + "\x00" {
			if r >= '0' && r <= '9' {
				digits += string(r)
				continue
			}
			if digits != "" {
				b.WriteString(fmt.Sprintf("%010s", digits))
				digits = ""
			}
			b.WriteRune(r)
		}
		return b.String()
	}
	sort.SliceStable(es, func(i, j int) bool { return sortKey(es[i]) < sortKey(es[j]) })
}

// suggest returns ` (did you mean "x"?)` for the closest of known, or "".
func suggest(word string, known []string) string {
	best, bestDist := "", 3
	lw := strings.ToLower(word)
	for _, k := range known {
		if d := editDistance(lw, strings.ToLower(k)); d < bestDist {
			best, bestDist = k, d
		}
	}
	if best == "" {
		return ""
	}
	return ` (did you mean "` + best + `"?)`
}

// knownList formats the accepted words of a key for an error message.
func knownList(known []string) string {
	s := append([]string(nil), known...)
	sort.Strings(s)
	return `"` + strings.Join(s, `", "`) + `"`
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

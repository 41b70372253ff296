package tests

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gmod-realtime/realtime/internal/redistest"
)

// TestStatsDocumented: docs/API.md's list of GetStats() fields is exactly
// what GetStats() returns in Redis mode, two levels deep: nothing
// undocumented, nothing documented that is not there.
func TestStatsDocumented(t *testing.T) {
	t.Parallel()
	doc, err := os.ReadFile(filepath.Join(repo, "docs/API.md"))
	require.NoError(t, err)
	documented := documentedStatsKeys(t, string(doc))

	srv := redistest.Start(t)
	out := NewServer(t, luajit64, redisConfig(srv, "[[routes]]\nstream = \"stats:s\"\nhandler = \"OnS\"\n")).RunScript("stats.lua")
	var actual []string
	for _, line := range splitLines(out) {
		if k, ok := strings.CutPrefix(line, "stats: "); ok && k != "done" {
			actual = append(actual, k)
		}
	}
	sort.Strings(actual)
	actual = slices.Compact(actual) // a field of each route
	assert.Equal(t, documented, actual, "docs/API.md's GetStats() fields (left) and GetStats() (right)")
}

// documentedStatsKeys reads the paragraph that starts "`GetStats()` returns":
// `key` at the top level, and the `names` in the parentheses after a key as
// its fields (routes[name]'s fields as routes[].field).
func documentedStatsKeys(t *testing.T, doc string) []string {
	i := strings.Index(doc, "`GetStats()` returns ")
	require.GreaterOrEqual(t, i, 0, "docs/API.md has no paragraph starting \"`GetStats()` returns\"")
	para := doc[i+len("`GetStats()` returns "):]
	para = para[:strings.Index(para, "\n\n")]
	var keys []string
	depth, parent := 0, ""
	for _, tok := range regexp.MustCompile("`[^`]+`|[()]").FindAllString(para, -1) {
		switch tok {
		case "(":
			depth++
		case ")":
			depth--
		default:
			name := strings.Trim(tok, "`")
			if depth == 0 {
				parent = strings.TrimSuffix(name, "[name]")
				keys = append(keys, parent)
				if parent != name {
					parent += "[]"
				}
			} else {
				keys = append(keys, parent+"."+name)
			}
		}
	}
	sort.Strings(keys)
	return keys
}

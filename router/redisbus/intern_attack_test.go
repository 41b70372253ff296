package redisbus

import (
	"runtime"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
)

// Attack: the reader interns channel names (subConn.intern) so that the
// queued events of a channel share one string. A publisher on channels
// matching a pattern picks the names: 64 distinct names of 1 MiB each
// (Redis takes names up to 512 MiB; the router's bound applies after)
// must not stay in memory once their messages are gone. Before: the
// table kept up to 256 of them, 256 MiB pinned until enough other
// names came.
func TestAttackInternKeepsNoHugeNames(t *testing.T) {
	var c subConn
	heap := func() uint64 {
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return ms.HeapAlloc
	}
	before := heap()
	for i := range 64 {
		name := strings.Repeat(string(rune('a'+i%26)), 1<<20) + string(rune('A'+i/26))
		_ = c.intern(name)
	}
	c.intern("short") // the last name read is kept too
	after := heap()
	assert.Less(t, int64(after)-int64(before), int64(16<<20), "bytes kept by the intern table after 64 names of 1 MiB")
	assert.Equal(t, "x:y", c.intern(strings.Clone("x:y")), "a short name is still interned")
}

package router

import (
	"fmt"
	"runtime"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
)

// TestOwnerCacheDoesNotKeepLongChannelNames (found by an attacker of issue
// 12): the owner cache kept up to 4096 channel names whatever their
// length, so anyone who may publish on the Redis could make the game
// server hold gigabytes by publishing to long channel names under a
// subscribed pattern (Redis accepts names up to 512 MB). The messages
// themselves are dropped as too big, but the names stayed in the cache.
func TestOwnerCacheDoesNotKeepLongChannelNames(t *testing.T) {
	a := NewActive()
	a.AddPattern("player:*")
	heap := func() uint64 {
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return m.HeapAlloc
	}
	before := heap()
	long := strings.Repeat("x", 1<<20)
	for i := range 64 {
		ch := fmt.Sprintf("player:%d:%s", i, long) // a new string each time, as from the network
		assert.True(t, a.Owns("player:*", ch))
	}
	long = ""
	held := int64(heap()) - int64(before)
	assert.Less(t, held, int64(8<<20), "64 one-MiB channel names read once are still held: %d bytes", held)
	runtime.KeepAlive(a)
}

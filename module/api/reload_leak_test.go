package api

import (
	"fmt"
	"os"
	"runtime"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gmod-realtime/realtime/internal/redistest"
)

// TestReloadLeaksNoGoroutines: a server reloads on every config edit, for
// the life of the process (map changes keep the module). Reloads that
// change the routes, and Reloads that move to a new connection (a changed
// read_timeout), leave the process with no more goroutines than before once
// the old connections have closed: a goroutine left behind per Reload, or
// a replaced connection that never stops, grows without bound.
func TestReloadLeaksNoGoroutines(t *testing.T) {
	srv := redistest.Start(t)
	base := "[redis]\nurl = \"" + srv.URL() + "\"\n"
	m, file := start(t, base)
	require.Eventually(t, func() bool { return m.Status() == "connected" }, 10*time.Second, time.Millisecond)
	_, _, err := m.On("r", "r", OnOptions{})
	require.NoError(t, err)
	// The baseline once the first connection is settled: a Reload that
	// changes nothing of [redis] starts no goroutine.
	_, err = m.Reload()
	require.NoError(t, err)
	before := runtime.NumGoroutine()

	const reloads = 20
	reconnected := 0
	for i := range reloads {
		toml := base + fmt.Sprintf("read_timeout = \"%ds\"\n\n[[routes]]\nname = \"r%d\"\nchannel = \"c%d\"\nhandler = \"H\"\n", 5+i%2, i, i)
		require.NoError(t, os.WriteFile(file, []byte(toml), 0o644))
		res, err := m.Reload()
		require.NoError(t, err)
		if res.Reconnected {
			reconnected++
		}
	}
	require.Equal(t, reloads, reconnected, "each Reload changed read_timeout: a new connection")
	require.Eventually(t, func() bool { return m.Status() == "connected" }, 10*time.Second, time.Millisecond)
	// The replaced connections close on their own goroutines: wait for them,
	// and allow a couple of goroutines of the runtime or the test's Redis
	// client, far fewer than one per Reload.
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		assert.LessOrEqual(c, runtime.NumGoroutine(), before+2, "goroutines after %d Reloads (before: %d)", reloads, before)
	}, 20*time.Second, 10*time.Millisecond)
}

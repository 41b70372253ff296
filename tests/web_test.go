package tests

import (
	"bufio"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gmod-realtime/realtime/internal/redistest"
)

// chromium is Debian's headless browser (scripts/deps.sh test installs it).
const chromium = "/usr/bin/chromium"

// TestWebDashboard loads realtimectl web's page in a real headless
// Chromium against a real Redis and two running servers: both servers
// appear from their heartbeats with one's drop count, and a message
// published on the followed pattern appears in the live tail as text (a
// payload holding markup is shown, never run).
func TestWebDashboard(t *testing.T) {
	_, err := os.Stat(chromium)
	require.NoError(t, err, "the dashboard test needs Debian's chromium: scripts/deps.sh test installs it")
	srv := redistest.Start(t)
	rc := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	defer rc.Close()
	a, b := heartbeatServers(t, srv, rc)

	web := exec.Command(filepath.Join(repo, "build", "realtimectl"), "web", "--listen", "127.0.0.1:0")
	web.Dir = t.TempDir()
	web.Env = []string{"PATH=" + os.Getenv("PATH"), "REDIS_URL=" + srv.URL()}
	stdout, err := web.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, web.Start())
	defer func() { _ = web.Process.Kill(); _ = web.Wait() }()
	line, err := bufio.NewReader(stdout).ReadString('\n') // "dashboard on http://ADDR/ (Redis ...)"
	require.NoError(t, err)
	url := strings.Fields(line)[2]
	require.True(t, strings.HasPrefix(url, "http://127.0.0.1:"), line)

	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	actx, acancel := chromedp.NewExecAllocator(ctx, append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromium), chromedp.NoSandbox, chromedp.DisableGPU, chromedp.UserDataDir(t.TempDir()))...)
	defer acancel()
	bctx, bcancel := chromedp.NewContext(actx)
	defer bcancel()

	const hostile = `<img src=x onerror="document.title='ran'">web says hi`
	require.NoError(t, chromedp.Do(bctx,
		chromedp.Navigate(url+"?pattern=web:*"),
		chromedp.WaitVisible(chromedp.CSS(`#servers tr[data-id="hb-a"]`)),
		chromedp.WaitVisible(chromedp.CSS(`#servers tr[data-id="hb-b"]`)),
	))
	// The page's EventSource subscribes on its own time: publish until a
	// line arrives.
	var tail string
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(tail, "web says hi") && time.Now().Before(deadline) {
		require.NoError(t, rc.Publish(ctx, "web:chat", hostile).Err())
		require.NoError(t, chromedp.Do(bctx, chromedp.Sleep(100*time.Millisecond)))
		tail, err = chromedp.Run(bctx, chromedp.Text(chromedp.ID("tail")))
		require.NoError(t, err)
	}
	var servers, title string
	var imgs int
	deadline = time.Now().Add(30 * time.Second)
	for {
		servers, err = chromedp.Run(bctx, chromedp.Text(chromedp.ID("servers")))
		require.NoError(t, err)
		// a beat can go out before the connection is confirmed ("connecting")
		if strings.Count(servers, "connected") == 2 && strings.Contains(servers, "rate_limited=2") || time.Now().After(deadline) {
			break
		}
		require.NoError(t, chromedp.Do(bctx, chromedp.Sleep(100*time.Millisecond)))
	}
	title, err = chromedp.Run(bctx, chromedp.Title())
	require.NoError(t, err)
	imgs, err = chromedp.Run(bctx, chromedp.Evaluate[int](`document.querySelectorAll("#tail img").length`))
	require.NoError(t, err)
	assert.Contains(t, tail, "web:chat "+hostile, "the tail shows the channel and the payload as text")
	assert.Zero(t, imgs, "markup in a payload became an element")
	assert.Equal(t, "gmsv_realtime", title, "a payload's script ran")
	assert.Regexp(t, `hb-a\s+gm_construct\s+connected\s.*rate_limited=2`, servers)
	assert.Regexp(t, `hb-b\s+gm_construct\s+connected\s`, servers)

	require.NoError(t, rc.Publish(ctx, "stop", "").Err())
	a.Wait(t)
	b.Wait(t)
}

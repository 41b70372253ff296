// Package tests runs the module end to end: the real binary module loaded
// by the GMod-like host (tests/host) on LuaJIT 2.1 (64-bit, and 32-bit under
// qemu-i386) and PUC Lua 5.1, and the Windows DLLs in the host built with
// mingw against LuaJIT for Windows, under Wine (win64, win32), talking to a
// real redis-server. Each test
// writes a server directory (garrysmod/lua/bin, autorun, cfg), runs a Lua
// script from tests/lua in the host and checks its exit code, its output and
// what reached Redis.
package tests

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gmod-realtime/realtime/internal/gmodserver"
	"github.com/gmod-realtime/realtime/internal/redistest"
)

// repo is the repository root; build holds the module and hosts.
var repo, build string

func TestMain(m *testing.M) {
	_, file, _, _ := runtime.Caller(0)
	repo = filepath.Dir(filepath.Dir(file))
	build = gmodserver.BuildDir(repo)
	win64 = wineHost("win64", "gmsv_realtime_win64.dll")
	win32 = wineHost("win32", "gmsv_realtime_win32.dll")
	// The Makefile builds the module and hosts before the tests; a plain
	// `go test ./tests` builds them here.
	if os.Getenv("REALTIME_PREBUILT") == "" {
		cmd := exec.Command("make", "-s", "-C", repo, "module-all", "hosts", "wine-hosts", "build/realtimectl")
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		if err := cmd.Run(); err != nil {
			fmt.Fprintln(os.Stderr, "building the module and hosts:", err)
			os.Exit(1)
		}
	}
	os.Exit(m.Run())
}

var (
	luajit64 = gmodserver.LuaJIT64
	luajit32 = gmodserver.LuaJIT32
	lua51    = gmodserver.Lua51
	// The Windows DLLs under Wine (set in TestMain).
	win64, win32 Host
)

// wineHost runs build/wine/<name>/host.exe (make wine-hosts) under Wine in
// the private prefix build/wine/prefix, quiet (WINEDEBUG=-all). Wine is not
// Windows: it runs the DLL's Windows code (LoadLibrary, the Lua API from
// lua_shared.dll, FreeLibrary and the pin, Windows paths, Winsock), not
// Windows' own kernel and network stack.
func wineHost(name, module string) Host {
	return Host{Name: name, Binary: "wine/" + name + "/host.exe", Module: module, Prefix: []string{"wine"},
		Env: []string{"WINEPREFIX=" + filepath.Join(build, "wine/prefix"), "WINEDEBUG=-all"}}
}

// Host is one way of running the module.
type Host = gmodserver.Host

// hosts returns hs, less those whose runtime $REALTIME_RUNTIMES (a
// comma-separated list of host names, say "luajit64") leaves out: make
// sanitize runs the suite on the one runtime its sanitized host is built
// for.
func hosts(hs ...Host) []Host {
	only := os.Getenv("REALTIME_RUNTIMES")
	if only == "" {
		return hs
	}
	var out []Host
	for _, h := range hs {
		runtime, _, _ := strings.Cut(h.Name, "-") // "luajit64-timers-first" is luajit64
		if slices.Contains(strings.Split(only, ","), runtime) {
			out = append(out, h)
		}
	}
	return out
}

// bothOrders is h running each frame as GMod does (Think, then the timers)
// and with the timers first: nothing the module or the glue does may depend
// on the order, so the end-to-end tests run on both.
func bothOrders(h Host) []Host { return []Host{h, h.TimersFirst()} }

// isWine: h runs a Windows DLL under Wine.
func isWine(h Host) bool { return len(h.Prefix) > 0 && h.Prefix[0] == "wine" }

// eachRuntime runs test as a parallel subtest on both frame orders of
// luajit64 and on the Windows DLLs, win64 and win32, under Wine (those
// $REALTIME_RUNTIMES keeps).
func eachRuntime(t *testing.T, test func(t *testing.T, h Host)) {
	for _, h := range hosts(luajit64, luajit64.TimersFirst(), win64, win32) {
		t.Run(h.Name, func(t *testing.T) {
			t.Parallel()
			test(t, h)
		})
	}
}

// eachOrder runs test as a parallel subtest on both frame orders of h.
func eachOrder(t *testing.T, h Host, test func(t *testing.T, h Host)) {
	for _, h := range bothOrders(h) {
		t.Run(h.Name, func(t *testing.T) {
			t.Parallel()
			test(t, h)
		})
	}
}

// Server is a GMod server directory for one test.
type Server struct {
	*gmodserver.Server
	t *testing.T
}

// NewServer makes a server directory with the module, the glue and, unless
// toml is "", garrysmod/cfg/realtime.toml.
func NewServer(t *testing.T, h Host, toml string) *Server {
	t.Helper()
	gs, err := gmodserver.New(repo, t.TempDir(), h, nil)
	require.NoError(t, err)
	s := &Server{Server: gs, t: t}
	if toml != "" {
		require.NoError(t, s.WriteConfig(toml))
	}
	return s
}

// Run is a host process.
type Run struct {
	*gmodserver.Process
	script string
	slow   bool // an emulated host: WaitLine waits 4 times longer
}

// Start runs tests/lua/<script> in the host with the extra environment
// (KEY=value) and tick rate; it fails after timeout.
func (s *Server) Start(script string, tickrate int, timeout time.Duration, env ...string) *Run {
	s.t.Helper()
	if len(s.Host.Prefix) > 0 {
		// An emulated host (qemu) runs several times slower, slower still
		// on a loaded machine; the timeout is there to catch a hang.
		timeout *= 4
	}
	p, err := s.Server.Start(filepath.Join(repo, "tests/lua", script), tickrate, timeout, env...)
	if err != nil {
		s.t.Fatalf("start host: %v", err)
	}
	s.t.Cleanup(p.Kill)
	return &Run{Process: p, script: script, slow: len(s.Host.Prefix) > 0}
}

// WaitLine waits for a printed line starting with s.
func (r *Run) WaitLine(t *testing.T, s string, timeout time.Duration) {
	t.Helper()
	if r.slow {
		timeout *= 4
	}
	if _, err := r.Process.WaitLine(s, timeout); err != nil {
		t.Fatal(err)
	}
}

// Wait waits for the host to exit and fails the test unless it exited 0.
func (r *Run) Wait(t *testing.T) string {
	t.Helper()
	<-r.Done()
	out := r.Output()
	if r.Err() != nil {
		t.Fatalf("%s: host failed (%v):\n%s", r.script, r.Err(), out)
	}
	return out
}

// RunScript runs a script to completion and returns its output.
func (s *Server) RunScript(script string, env ...string) string {
	s.t.Helper()
	return s.Start(script, 66, 60*time.Second, env...).Wait(s.t)
}

// Subscriber records every message published on Redis, for byte-exact checks.
type Subscriber struct {
	mu     sync.Mutex
	msgs   []*redis.Message
	c      *redis.Client
	marker string // a channel only this subscriber listens to; see Sync
}

// Subscribe starts recording messages matching pattern.
func Subscribe(t *testing.T, srv *redistest.Server, pattern string) *Subscriber {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: srv.Addr(), Protocol: 2})
	s := &Subscriber{c: c}
	s.marker = fmt.Sprintf("test:sync:%p", s)
	ps := c.PSubscribe(context.Background(), pattern)
	if _, err := ps.Receive(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := ps.Subscribe(context.Background(), s.marker); err != nil {
		t.Fatal(err)
	}
	if _, err := ps.Receive(context.Background()); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			m, err := ps.ReceiveMessage(context.Background())
			if err != nil {
				return
			}
			s.mu.Lock()
			s.msgs = append(s.msgs, m)
			s.mu.Unlock()
		}
	}()
	t.Cleanup(func() { ps.Close(); <-done; c.Close() })
	return s
}

// Messages returns the messages received on channel so far.
func (s *Subscriber) Messages(channel string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for _, m := range s.msgs {
		if m.Channel == channel {
			out = append(out, m.Payload)
		}
	}
	return out
}

// Sync returns once every message Redis accepted before the call is
// recorded: Redis sends a subscriber its messages in the order it accepted
// them, so a marker published now arrives after all of them.
func (s *Subscriber) Sync(t *testing.T) {
	t.Helper()
	n := len(s.Messages(s.marker))
	require.NoError(t, s.c.Publish(context.Background(), s.marker, "").Err())
	s.WaitMessages(t, s.marker, n+1)
}

// WaitMessages waits until n messages arrived on channel.
func (s *Subscriber) WaitMessages(t *testing.T, channel string, n int) []string {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if m := s.Messages(channel); len(m) >= n {
			return m
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("channel %q: got %d messages, want %d", channel, len(s.Messages(channel)), n)
	return nil
}

// redisConfig is a realtime.toml connecting to srv, followed by extra.
func redisConfig(srv *redistest.Server, extra string) string {
	return fmt.Sprintf("[server]\nid = \"test-1\"\n\n[redis]\nurl = %q\nread_timeout = \"1s\"\nreconnect_max = \"500ms\"\n\n%s", srv.URL(), extra)
}

func splitLines(s string) []string { return strings.Split(strings.TrimSpace(s), "\n") }

// TestEmulation checks the GMod emulation the other tests run in against
// GMod's documented behaviour (tests/lua/emulation.lua).
func TestEmulation(t *testing.T) {
	eachOrder(t, luajit64, func(t *testing.T, h Host) {
		assert.Contains(t, NewServer(t, h, "").RunScript("emulation.lua"), "emulation: ok")
	})
	for _, h := range hosts(lua51, win64, win32) {
		t.Run(h.Name, func(t *testing.T) {
			t.Parallel()
			assert.Contains(t, NewServer(t, h, "").RunScript("emulation.lua"), "emulation: ok")
		})
	}
}

// TestFrameErrorsFailTheRun: an error in a hook or a timer during a frame
// fails the host's run unless the script announced it.
func TestFrameErrorsFailTheRun(t *testing.T) {
	for _, in := range []string{"Think", "Tick", "timer"} {
		t.Run(in, func(t *testing.T) {
			t.Parallel()
			s := NewServer(t, luajit64, "")
			r := s.Start("errors.lua", 0, 30*time.Second, "ERRORS_IN="+in)
			<-r.Done()
			require.Error(t, r.Err(), r.Output())
			assert.Contains(t, r.Output(), "host: FAIL: unexpected error (announce it with HOST.ExpectErrors): ["+map[bool]string{true: "timer.Simple", false: "hook " + in}[in == "timer"]+"]")

			out := s.Start("errors.lua", 0, 30*time.Second, "ERRORS_IN="+in, "ERRORS_EXPECTED=1").Wait(t)
			assert.Contains(t, out, "errors: done")
		})
	}
}

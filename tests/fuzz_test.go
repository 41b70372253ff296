package tests

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gmod-realtime/realtime/internal/redistest"
)

// fuzzTOML is the config of the Lua API fuzzer's server: local mode (no
// [redis]; TestLuaFuzzRedis adds it) with config routes for realtime.Handler names, overlapping
// patterns, a JSON route, a rate-limited route and a hook route.
// tests/lua/fuzz.lua reads the routes back from the file.
const fuzzTOML = "[server]\nid = \"fuzz\"\n\n" + fuzzRoutes

const fuzzRoutes = `[[routes]]
name = "named-a"
pattern = "a*"
handler = "fz_a"

[[routes]]
name = "named-json"
pattern = "[bc]:?*"
handler = "fz_b"
decode = "json"

[[routes]]
name = "limited"
pattern = "*x"
handler = "fz_a"
rate = "50/s"
burst = 20

[[routes]]
name = "hooked"
pattern = "h*"
handler = "hook:FuzzHook"
`

// TestLuaFuzz runs the seeded Lua API fuzzer (tests/lua/fuzz.lua) in the
// host on LuaJIT: random sequences of every realtime.* call with hostile
// values and handlers, checking after each call that nothing hangs,
// crashes or misroutes and, at the end, that the registry is back to its
// baseline and the pump works.
//
//	SEED=n           run that seed (default: a new one, printed); with
//	                 LUAFUZZ_TIME, the first of n, n+1, ...
//	LUAFUZZ_STEPS=n  steps per run (default 3000, about 20 s)
//	LUAFUZZ_TIME=d   keep running new seeds for d, or Nx: N runs
//	                 (make luafuzz FUZZTIME=d)
//	LUAFUZZ_SKIP=..  generators to leave out (see fuzz.lua), to look past
//	                 a known defect
//
// A failure names the seed and the command that reproduces it.
func TestLuaFuzz(t *testing.T) {
	t.Parallel()
	luaFuzz(t, 3000, nil)
}

// TestLuaFuzzRedis is TestLuaFuzz connected to a redis-server: events go
// through Redis, and Connect, Disconnect and Reload reconnect for real.
func TestLuaFuzzRedis(t *testing.T) {
	t.Parallel()
	luaFuzz(t, 1000, redistest.Start(t))
}

func luaFuzz(t *testing.T, steps int, srv *redistest.Server) {
	if s := os.Getenv("LUAFUZZ_STEPS"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil {
			t.Fatalf("LUAFUZZ_STEPS=%q: %v", s, err)
		}
		steps = n
	}
	// LUAFUZZ_TIME is a duration, or Nx for N runs, as go test's -fuzztime.
	var budget time.Duration
	maxRuns := 1
	if s := os.Getenv("LUAFUZZ_TIME"); s != "" {
		if n, err := strconv.Atoi(strings.TrimSuffix(s, "x")); err == nil && strings.HasSuffix(s, "x") {
			maxRuns = n
		} else if budget, err = time.ParseDuration(s); err != nil {
			t.Fatalf("LUAFUZZ_TIME=%q: want a duration or Nx", s)
		} else {
			maxRuns = 0
		}
	}
	seed := time.Now().UnixNano() % 1_000_000_007
	if s := os.Getenv("SEED"); s != "" {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			t.Fatalf("SEED=%q: %v", s, err)
		}
		seed = n
	}
	start := time.Now()
	for runs := 1; ; runs++ {
		runLuaFuzz(t, seed+int64(runs-1), steps, srv)
		if runs == maxRuns || maxRuns == 0 && time.Since(start) >= budget {
			t.Logf("%d run(s) of %d steps from seed %d", runs, steps, seed)
			return
		}
	}
}

func runLuaFuzz(t *testing.T, seed int64, steps int, srv *redistest.Server) {
	t.Helper()
	env := []string{"SEED=" + strconv.FormatInt(seed, 10), "FUZZ_STEPS=" + strconv.Itoa(steps), "FUZZ_TRACE=1"}
	toml, test := fuzzTOML, "TestLuaFuzz"
	if srv != nil {
		toml, test = redisConfig(srv, fuzzRoutes), "TestLuaFuzzRedis"
		env = append(env, "FUZZ_HOME=connected")
	}
	s := NewServer(t, luajit64, toml)
	if v := os.Getenv("LUAFUZZ_SKIP"); v != "" {
		env = append(env, "FUZZ_SKIP="+v)
	}
	// The limit on one call's CPU time (the best of three where the call
	// can be repeated, five times that where it cannot): a hang detector
	// for calls that grow faster than their input, not a speed check. It
	// counts the Lua collector's work that a call's allocations start, and
	// the VM's host can steal CPU time that counts as the thread's own:
	// with the machine's load at 15-20, calls of well under 1 ms took
	// 385-650 ms now and then, best of three included. make sanitize
	// raises it (ASan makes every call slower).
	stepMS := "1000"
	if v := os.Getenv("LUAFUZZ_STEP_MS"); v != "" {
		stepMS = v
	}
	env = append(env, "FUZZ_STEP_MS="+stepMS)
	// fuzz.lua ends a call that never returns with SIGALRM after 10 s; the
	// host's own timeout is the last resort.
	p := s.Start("fuzz.lua", 0, 10*time.Minute, env...)
	<-p.Done()
	out := p.Output()
	if p.Err() == nil && strings.Contains(out, "fuzz: ok seed=") {
		for _, l := range splitLines(out) {
			if strings.HasPrefix(l, "fuzz: slow call") {
				t.Logf("seed %d: %s", seed, l)
			}
		}
		return
	}
	lines := splitLines(out)
	if len(lines) > 80 {
		lines = append([]string{"..."}, lines[len(lines)-80:]...)
	}
	how := fmt.Sprint(p.Err())
	if strings.Contains(how, "alarm clock") {
		how += " (a realtime.* call did not return within 10 s: a hang)"
	}
	t.Fatalf("Lua API fuzzer failed with seed %d (%s):\n%s\nreproduce: REALTIME_PREBUILT=1 SEED=%d LUAFUZZ_STEPS=%d go test -run '^%s$' -v ./tests",
		seed, how, strings.Join(lines, "\n"), seed, steps, test)
}

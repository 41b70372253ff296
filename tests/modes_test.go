package tests

import (
	"encoding/json"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gmod-realtime/realtime/internal/redistest"
)

// TestHibernation: events still arrive while the server hibernates, and
// the pump comes back if something removes it then (tests/lua/hibernate.lua).
func TestHibernation(t *testing.T) {
	eachRuntime(t, func(t *testing.T, h Host) {
		srv := redistest.Start(t)
		s := NewServer(t, h, redisConfig(srv, ""))
		assert.Contains(t, s.RunScript("hibernate.lua", "TEST_REDIS_PORT="+strconv.Itoa(srv.Port)), "hibernate: ok")
	})
}

// TestOnePumpPerFrame: the glue calls ProcessEvents exactly once per frame
// in either frame order, while hibernating, and after its timer was removed
// (tests/lua/pump.lua), on every host.
func TestOnePumpPerFrame(t *testing.T) {
	for _, h := range hosts(luajit64, luajit64.TimersFirst(), lua51, luajit32, luajit32.TimersFirst(), win64, win32) {
		t.Run(h.Name, func(t *testing.T) {
			t.Parallel()
			s := NewServer(t, h, "")
			assert.Contains(t, s.RunScript("pump.lua"), "pump: ok")
		})
	}
}

// TestAutorefresh: running the glue's file again in the same state (GMod's
// Lua autorefresh) keeps it pumping once per frame and publishing game
// events, and does not wrap realtime.Reload again (tests/lua/refresh.lua).
func TestAutorefresh(t *testing.T) {
	eachRuntime(t, func(t *testing.T, h Host) {
		s := NewServer(t, h, "[events]\nauto = true\n")
		assert.Contains(t, s.RunScript("refresh.lua"), "refresh: ok")
	})
}

// TestLocalModeAndConnect: no config means local mode; realtime.Config,
// Connect and Disconnect move between modes (tests/lua/local.lua).
func TestLocalModeAndConnect(t *testing.T) {
	eachRuntime(t, func(t *testing.T, h Host) {
		srv := redistest.Start(t)
		// Takes connections (the kernel completes them) and never answers.
		silent, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		defer silent.Close()
		s := NewServer(t, h, "")
		out := s.RunScript("local.lua", "TEST_REDIS_PORT="+strconv.Itoa(srv.Port),
			"TEST_SILENT_PORT="+strconv.Itoa(silent.Addr().(*net.TCPAddr).Port))
		assert.Contains(t, out, "local: ok up local, down realtime.Disconnect(), up connected, down realtime.Disconnect(), up connected")
	})
}

// TestAutoEvents: with [events] auto = true the glue publishes the game
// events from GMod hooks, under the configured prefix: team chat marked,
// chat commands skipped, damage only once taken (tests/lua/autoevents.lua).
func TestAutoEvents(t *testing.T) {
	eachRuntime(t, func(t *testing.T, h Host) {
		srv := redistest.Start(t)
		sub := Subscribe(t, srv, "srv1:*")
		s := NewServer(t, h, redisConfig(srv, "[events]\nauto = true\nprefix = \"srv1:\"\n"))
		assert.Contains(t, s.RunScript("autoevents.lua"), "autoevents: published")

		decode := func(channel string, n int) []map[string]any {
			var out []map[string]any
			for _, m := range sub.WaitMessages(t, channel, n) {
				var v map[string]any
				require.NoError(t, json.Unmarshal([]byte(m), &v), m)
				assert.Equal(t, "test-1", v["server"], m)
				assert.NotZero(t, v["ts"], m)
				delete(v, "server")
				delete(v, "ts")
				out = append(out, v)
			}
			return out
		}
		assert.Equal(t, []map[string]any{{"name": "bob", "team": 2.0, "pos": map[string]any{"x": 1.0, "y": 2.0, "z": 3.0}}}, decode("srv1:player:spawn", 1))
		assert.Equal(t, []map[string]any{
			{"victim": "bob", "attacker": "alice", "weapon": "weapon_ak47"},
			{"victim": "alice", "attacker": nil, "weapon": "worldspawn"},
			{"victim": "bob", "attacker": "alice", "weapon": "weapon_pistol"},
		}, decode("srv1:player:death", 3))
		assert.Equal(t, []map[string]any{
			{"player": "bob", "message": "hello all", "team": false},
			{"player": "alice", "message": "push B", "team": true},
			{"player": "bob", "message": "!rtv", "team": false}, // after Reload: only # skipped
		}, decode("srv1:chat:message", 3))
		assert.Equal(t, []map[string]any{{"victim": "bob", "damage": 25.0, "attacker": "alice"}}, decode("srv1:player:damage", 1))
		assert.Equal(t, []map[string]any{{"gamemode": "sandbox", "map": "gm_construct"}}, decode("srv1:round:start", 1))
		assert.Equal(t, []map[string]any{{"winner_team": 2.0, "score": nil}}, decode("srv1:round:end", 1))
	})
}

// TestMissingBinary: without the .dll the glue names the file it expected
// (the 32-bit branch's is gmsv_realtime_linux.dll) and the server keeps
// running.
func TestMissingBinary(t *testing.T) {
	for _, h := range hosts(luajit64, luajit32) {
		t.Run(h.Name, func(t *testing.T) {
			t.Parallel()
			s := NewServer(t, h, "")
			require.NoError(t, os.Remove(filepath.Join(s.Root, "garrysmod/lua/bin", h.Module)))
			out := s.RunScript("missing.lua")
			assert.Contains(t, out, "[realtime] could not load the binary module")
			assert.Contains(t, out, "this server needs garrysmod/lua/bin/"+h.Module+"\n")
			assert.Contains(t, out, "missing: ok")
		})
	}
}

// TestExports checks every binary's export table: the GMod entry points
// are there, and on Linux nothing else of ours is, and no Lua symbol is
// linked (the API is resolved at open).
func TestExports(t *testing.T) {
	if os.Getenv("REALTIME_PREBUILT") == "" {
		cmd := exec.Command("make", "-s", "-C", repo, "module-all")
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		require.NoError(t, cmd.Run())
	}
	for _, f := range []string{"gmsv_realtime_linux64.dll", "gmsv_realtime_linux.dll"} {
		out, err := exec.Command("nm", "-D", "--defined-only", build+"/"+f).Output()
		require.NoError(t, err, f)
		var syms []string
		for _, l := range splitLines(string(out)) {
			if fs := strings.Fields(l); len(fs) == 3 {
				syms = append(syms, fs[2])
			}
		}
		assert.ElementsMatch(t, []string{"gmod13_open", "gmod13_close", "luaopen_realtime"}, syms, f)
		out, err = exec.Command("nm", "-D", "--undefined-only", build+"/"+f).Output()
		require.NoError(t, err, f)
		assert.NotContains(t, string(out), "lua", f)
	}
	for f, objdump := range map[string]string{
		"gmsv_realtime_win64.dll": "x86_64-w64-mingw32-objdump",
		"gmsv_realtime_win32.dll": "i686-w64-mingw32-objdump",
	} {
		out, err := exec.Command(objdump, "-p", build+"/"+f).Output()
		require.NoError(t, err, f)
		table := string(out)
		i := strings.Index(table, "[Ordinal/Name Pointer] Table")
		require.GreaterOrEqual(t, i, 0, f)
		for _, sym := range []string{"gmod13_open", "gmod13_close", "luaopen_realtime"} {
			assert.Contains(t, table[i:], "] "+sym+"\n", f)
		}
		// The Lua API comes from lua_shared.dll at run time, not the import table.
		assert.NotContains(t, table[:i], "lua_shared", f)
	}
}

// Stream routes in local mode (tests/lua/stream_local.lua): realtime.Append
// reaches each group's realtime.Stream handler once, in order; a failing
// handler gets max_deliveries tries, then the entry is counted as discarded.
func TestLocalStreams(t *testing.T) {
	eachRuntime(t, func(t *testing.T, h Host) {
		s := NewServer(t, h, "")
		assert.Contains(t, s.RunScript("stream_local.lua"), "stream_local: ok")
	})
}

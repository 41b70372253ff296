package tests

import (
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gmod-realtime/realtime/internal/redistest"
)

// TestWindows runs the Windows DLLs' own code paths under Wine
// (tests/lua/windows.lua): $REALTIME_CONFIG with backslashes and the .env
// beside it, system.IsWindows() in the glue, the DLL pinned across
// gmod13_close and FreeLibrary at a map change and opened again.
func TestWindows(t *testing.T) {
	for _, h := range hosts(win64, win32) {
		t.Run(h.Name, func(t *testing.T) {
			t.Parallel()
			srv := redistest.Start(t)
			s := NewServer(t, h, "")
			dir := filepath.Join(s.Root, "garrysmod/cfg/windows")
			require.NoError(t, os.MkdirAll(dir, 0o755))
			require.NoError(t, os.WriteFile(filepath.Join(dir, "realtime.toml"), []byte("[server]\nid = \"win-1\"\n"), 0o644))
			require.NoError(t, os.WriteFile(filepath.Join(dir, ".env"), []byte("REDIS_URL=redis://127.0.0.1:"+strconv.Itoa(srv.Port)+"\n"), 0o644))
			out := s.RunScript("windows.lua", `REALTIME_CONFIG=garrysmod\cfg\windows\realtime.toml`)
			assert.Contains(t, out, "windows: ok")
			// The path as the module read it, joined to the working
			// directory with Windows separators, and the URL from .env.
			assert.Contains(t, out, `\garrysmod\cfg\windows\realtime.toml: server "win-1", redis://127.0.0.1:`+strconv.Itoa(srv.Port)+", ")
		})
	}
}

// TestWindowsLuaNames: the DLL finds the Lua API in lua_shared.dll (GMod)
// and in lua51.dll (plain LuaJIT), and fails to open, naming the missing
// function, when the runtime is under neither name; the glue then names
// the file this server needs, which differs between win32 and win64
// (a glue that named gmsv_realtime_win64.dll on win32 passed before win32
// ran this case).
func TestWindowsLuaNames(t *testing.T) {
	for _, h := range hosts(win64, win32) {
		for _, c := range []struct{ path, want string }{
			{"bin/lua51.dll", "pump: ok"},
			{"bin/lua_runtime.dll", "[realtime] could not load the binary module"},
		} {
			t.Run(h.Name+"/"+filepath.Base(c.path), func(t *testing.T) {
				t.Parallel()
				s := NewServer(t, h, "")
				if c.want == "pump: ok" {
					assert.Contains(t, s.RunScript("pump.lua", "HOST_LUA_SHARED="+c.path), c.want)
					return
				}
				out := s.RunScript("missing.lua", "HOST_LUA_SHARED="+c.path)
				assert.Contains(t, out, c.want)
				assert.Contains(t, out, "lua_gettop", "the message names the function not found")
				assert.Contains(t, out, "this server needs garrysmod/lua/bin/gmsv_realtime_"+h.Name+".dll")
				assert.Contains(t, out, "(it loaded but did not open; its own line above says why)", "the glue's reason, not require's true")
			})
		}
	}
}

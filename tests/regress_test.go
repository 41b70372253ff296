package tests

import (
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestRegressions runs every tests/lua/regress_*.lua in the host on
// LuaJIT, in local mode: each reproduces one defect of issue 11 (its
// header says which) and prints "regress: ok" once the module behaves.
// A call that never returns is ended by the script's SIGALRM watchdog.
func TestRegressions(t *testing.T) {
	scripts, err := filepath.Glob(filepath.Join(repo, "tests/lua/regress_*.lua"))
	if err != nil || len(scripts) == 0 {
		t.Fatalf("no tests/lua/regress_*.lua (%v)", err)
	}
	for _, path := range scripts {
		script := filepath.Base(path)
		t.Run(strings.TrimSuffix(strings.TrimPrefix(script, "regress_"), ".lua"), func(t *testing.T) {
			t.Parallel()
			s := NewServer(t, luajit64, regressTOML)
			p := s.Start(script, 66, 2*time.Minute)
			<-p.Done()
			out := p.Output()
			if p.Err() != nil || !strings.Contains(out, "regress: ok") {
				t.Fatalf("%s: host exited with %v:\n%s", script, p.Err(), out)
			}
		})
	}
}

// regressTOML is local mode with the [events] the game-event scripts use.
const regressTOML = `[server]
id = "regress"

[events]
auto = true
`

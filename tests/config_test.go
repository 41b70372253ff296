package tests

import (
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/gmod-realtime/realtime/internal/redistest"
)

const routesTOML = `[[routes]]
name = "players"
pattern = "player:*"
exclude = ["player:debug:*"]
handler = "OnPlayer"
decode = "json"

[[routes]]
name = "admin"
channel = "admin:chat"
handler = "hook:RealtimeAdminChat"

[[routes]]
name = "limited"
pattern = "spam:*"
handler = "OnSpam"
rate = "5/s"
burst = 5

[[routes]]
name = "orphan"
channel = "nobody"
handler = "Missing"

`

// TestConfigRoutes runs tests/lua/config.lua: every kind of config route,
// then Reload adding and removing routes live and rejecting a broken file.
func TestConfigRoutes(t *testing.T) {
	eachRuntime(t, func(t *testing.T, h Host) {
		srv := redistest.Start(t)
		s := NewServer(t, h, redisConfig(srv, routesTOML))
		out := s.RunScript("config.lua", "TEST_REDIS_PORT="+strconv.Itoa(srv.Port))
		assert.Contains(t, out, "config: ok")
		// A route without its handler is reported once, not per event.
		assert.Equal(t, 1, strings.Count(out, `no handler "Missing" is registered`), out)
		assert.Contains(t, out, "[realtime] reloaded: 1 routes added, 1 removed, 0 changed")
	})
}

package config

import (
	"os"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestServerIDWarning: a stream route read with a per-server group while
// server.id is left to the hostname is warned about (a recreated
// container's new hostname starts a new group at "$", skipping what was
// sent while the server was down), once, naming the hostname, the route,
// the stream and the group; a set server.id, a shared group or local mode
// warn of nothing.
func TestServerIDWarning(t *testing.T) {
	host, err := os.Hostname()
	require.NoError(t, err)
	route := "[[routes]]\nstream = \"cmds\"\nhandler = \"H\"\n"
	redis := "[redis]\nhost = \"127.0.0.1\"\n"
	for _, tc := range []struct {
		name string
		toml string
		over map[string]any
		warn bool
	}{
		{"unset", redis + route + "[[routes]]\nstream = \"more\"\nhandler = \"H\"\n", nil, true},
		{"set in the file", "[server]\nid = \"ttt-1\"\n" + redis + route, nil, false},
		{"set from Lua", redis + route, map[string]any{"server.id": "ttt-1"}, false},
		{"shared group", redis + route + "group = \"workers\"\n", nil, false},
		{"local mode", route, nil, false},
		{"no stream route", redis + "[[routes]]\nchannel = \"c\"\nhandler = \"H\"\n", nil, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := load(t, map[string]string{"realtime.toml": tc.toml}, nil, tc.over)
			require.NoError(t, err)
			if !tc.warn {
				assert.Empty(t, cfg.Warnings)
				return
			}
			require.Len(t, cfg.Warnings, 1, "one warning, however many routes")
			w := cfg.Warnings[0]
			for _, want := range []string{"server.id is not set", `"` + host + `"`, "routes[0]", `"cmds"`, `"realtime:` + host + `"`, `starts at "$"`} {
				assert.Contains(t, w, want)
			}
			assert.Contains(t, cfg.String(), w, "in the startup log line")
		})
	}
}

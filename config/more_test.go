package config

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestMoreErrors: problems the user can make that TestErrors does not
// cover, each with the message the user reads.
func TestMoreErrors(t *testing.T) {
	tests := []struct{ name, toml, want string }{
		{"queue too small", "[queue]\nmax_bytes = 100\nmax_payload = 10\n",
			`realtime.toml: queue.max_bytes: "100B" is too small (want at least 1KiB)`},
		{"zero payload", "[queue]\nmax_payload = 0\n", `realtime.toml: queue.max_payload: "0B" must be at least 1B`},
		{"json depth", "[queue]\njson_max_depth = 1001\n", `realtime.toml: queue.json_max_depth: 1001 is out of range (want 1 to 1000)`},
		{"zero timeout", "[redis]\nread_timeout = \"0s\"\n", `realtime.toml: redis.read_timeout: "0s" must be greater than 0`},
		{"outbox", "[redis]\noutbox_events = 0\n", `realtime.toml: redis.outbox_events: 0 must be at least 1`},
		{"addrs and url", "[redis]\nurl = \"redis://h:1\"\naddrs = [\"a:1\"]\n", `realtime.toml: redis.addrs: set redis.url or redis.addrs, not both`},
		{"addrs not an array", "[redis]\naddrs = \"a:1\"\n", `realtime.toml: redis.addrs: "a:1" is not an array (write ["a", "b"])`},
		{"ca file without tls", "[redis]\nhost = \"h\"\ntls_ca_file = \"ca.pem\"\n",
			`realtime.toml: redis.tls_ca_file: is set but TLS is off: use a rediss:// URL, or tls = true with host/port or addrs`},
		{"missing ca file", "[redis]\nurl = \"rediss://h:1\"\ntls_ca_file = \"/nonexistent/ca.pem\"\n",
			`realtime.toml: redis.tls_ca_file: "/nonexistent/ca.pem": `},
		{"unix url without a path", "[redis]\nurl = \"unix://\"\n", `realtime.toml: redis.url: "unix://" has no socket path`},
		{"url database", "[redis]\nurl = \"redis://h:6379/abc\"\n", `realtime.toml: redis.url: "redis://h:6379/abc": database "abc" is not a number`},
		{"hook without a name", "[[routes]]\npattern = \"a*\"\nhandler = \"hook:\"\n", `realtime.toml: routes[0].handler: "hook:" needs a hook name after "hook:"`},
		{"handler with spaces", "[[routes]]\npattern = \"a*\"\nhandler = \" H\"\n", `realtime.toml: routes[0].handler: " H" has spaces around the name`},
		{"channel and pattern", "[[routes]]\npattern = \"a*\"\nchannel = \"a\"\nhandler = \"H\"\n",
			`realtime.toml: routes[0]: set channel or pattern, not both (channel "a", pattern "a*")`},
		{"port as a float", "[redis]\nport = 6379.5\n", `realtime.toml: redis.port: 6379.5 is not a whole number`},
		{"password shown as secret", "[redis]\nhost = \"h\"\npassword = 5\n", `realtime.toml: redis.password: (secret) is not a string`},
		{"a table for a string", "[server]\nid = { a = 1 }\n", `realtime.toml: server.id: a table is not a string`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse("realtime.toml", []byte(tt.toml))
			require.Error(t, err)
			assert.Contains(t, err.Error(), tt.want)
		})
	}
}

// TestModeAndTarget: GetStats' mode and redis.target, and the startup log
// line, say where the module connects, for each kind of configuration.
func TestModeAndTarget(t *testing.T) {
	tests := []struct{ toml, mode, target string }{
		{"", "local", "local"},
		{"[redis]\nurl = \"redis://u:pw@h:6380/2\"\n", "redis", "redis://u:***@h:6380/2"},
		{"[redis]\nhost = \"h\"\nport = 6380\ndb = 3\n", "redis", "redis://h:6380/3"},
		{"[redis]\nhost = \"h\"\ntls = true\n", "redis", "rediss://h:6379/0"},
		{"[redis]\nurl = \"unix:///run/redis.sock\"\n", "redis", "unix:///run/redis.sock"},
		{"[redis]\naddrs = [\"a:7000\", \"b:7000\"]\n", "cluster", "cluster a:7000,b:7000"},
		{"[redis]\naddrs = [\"a:26379\"]\nmaster_name = \"mymaster\"\nsentinel_password = \"pw\"\n", "sentinel", "sentinel mymaster via a:26379"},
	}
	for _, tt := range tests {
		cfg, err := Parse("realtime.toml", []byte(tt.toml))
		require.NoError(t, err, tt.toml)
		assert.Equal(t, tt.mode, cfg.Mode(), tt.toml)
		assert.Equal(t, tt.target, cfg.Redis.Target(), tt.toml)
		assert.Contains(t, cfg.String(), tt.target)
		assert.NotContains(t, cfg.String(), "pw@")
	}
	cfg, err := Parse("", nil)
	require.NoError(t, err)
	assert.Contains(t, cfg.String(), "config (no file)")
}

// TestFileLookup: without an explicit file, REALTIME_CONFIG names it, else
// garrysmod/cfg/realtime.toml, else ./realtime.toml; a named file that is
// missing is an error, not local mode.
func TestFileLookup(t *testing.T) {
	dir := writeFiles(t, map[string]string{
		"garrysmod/cfg/realtime.toml": "[server]\nid = \"from-cfg\"\n",
		"realtime.toml":               "[server]\nid = \"from-dir\"\n",
		"other.toml":                  "[server]\nid = \"from-env\"\n",
	})
	cfg, err := Load(Options{Dir: dir, Environ: []string{}})
	require.NoError(t, err)
	assert.Equal(t, "from-cfg", cfg.Server.ID)

	cfg, err = Load(Options{Dir: dir, Environ: []string{"REALTIME_CONFIG=other.toml"}})
	require.NoError(t, err)
	assert.Equal(t, "from-env", cfg.Server.ID)

	require.NoError(t, os.Remove(filepath.Join(dir, "garrysmod/cfg/realtime.toml")))
	cfg, err = Load(Options{Dir: dir, Environ: []string{}})
	require.NoError(t, err)
	assert.Equal(t, "from-dir", cfg.Server.ID)

	_, err = Load(Options{Dir: dir, Environ: []string{"REALTIME_CONFIG=missing.toml"}})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "missing.toml")

	// A directory where the file should be: unreadable, reported.
	require.NoError(t, os.Mkdir(filepath.Join(dir, "adir.toml"), 0o755))
	_, err = Load(Options{Dir: dir, File: "adir.toml", Environ: []string{}})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "adir.toml")
}

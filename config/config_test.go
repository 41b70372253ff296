package config

import (
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// writeFiles lays out files (path -> content) in a fresh directory.
func writeFiles(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, content := range files {
		p := filepath.Join(dir, name)
		require.NoError(t, os.MkdirAll(filepath.Dir(p), 0o755))
		require.NoError(t, os.WriteFile(p, []byte(content), 0o644))
	}
	return dir
}

func load(t *testing.T, files map[string]string, environ []string, over map[string]any) (*Config, error) {
	t.Helper()
	if environ == nil {
		environ = []string{}
	}
	return Load(Options{Dir: writeFiles(t, files), Environ: environ, Overrides: over})
}

func TestDefaultsAreLocalMode(t *testing.T) {
	cfg, err := load(t, nil, nil, nil)
	require.NoError(t, err)
	assert.True(t, cfg.Local())
	assert.Equal(t, "local", cfg.Mode())
	assert.Equal(t, "", cfg.File)
	assert.Equal(t, 10000, cfg.Queue.MaxEvents)
	assert.Equal(t, 8*MiB, cfg.Queue.MaxBytes)
	assert.Equal(t, OverflowDropOldest, cfg.Queue.Overflow)
	assert.Equal(t, 2*time.Millisecond, cfg.Dispatch.Budget.D())
	assert.NotEmpty(t, cfg.Server.ID)
	assert.Empty(t, cfg.Routes)
}

// TestChatSkipPrefixes: commands starting with ! or / are skipped by
// default; a file's list replaces the default, and [] publishes every line.
func TestChatSkipPrefixes(t *testing.T) {
	for _, tt := range []struct {
		name, toml string
		want       []string
	}{
		{"default", "", []string{"!", "/"}},
		{"replaced", "[events]\nchat_skip_prefixes = [\"#\"]\n", []string{"#"}},
		{"none", "[events]\nchat_skip_prefixes = []\n", []string{}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := Parse("realtime.toml", []byte(tt.toml))
			require.NoError(t, err)
			assert.Equal(t, tt.want, cfg.Events.ChatSkipPrefixes)
		})
	}
}

func TestPrecedence(t *testing.T) {
	toml := "[redis]\nhost = \"file-host\"\nport = 7001\npassword = \"file-pass\"\n"
	tests := []struct {
		name      string
		files     map[string]string
		environ   []string
		over      map[string]any
		wantHost  string
		wantPort  int
		wantPass  string
		wantURL   string
		wantLocal bool
	}{
		{name: "defaults", wantLocal: true, wantPort: 6379},
		{name: "file", files: map[string]string{"realtime.toml": toml},
			wantHost: "file-host", wantPort: 7001, wantPass: "file-pass"},
		{name: ".env over file", files: map[string]string{"realtime.toml": toml, ".env": "REDIS_PORT=7002\nREDIS_PASSWORD=env-file-pass\n"},
			wantHost: "file-host", wantPort: 7002, wantPass: "env-file-pass"},
		{name: "environment over .env", files: map[string]string{"realtime.toml": toml, ".env": "REDIS_PORT=7002\n"},
			environ:  []string{"REDIS_PORT=7003", "REDIS_HOST=env-host"},
			wantHost: "env-host", wantPort: 7003, wantPass: "file-pass"},
		{name: "overrides over environment", files: map[string]string{"realtime.toml": toml},
			environ: []string{"REDIS_PORT=7003"}, over: map[string]any{"redis.port": 7004, "redis.password": "lua-pass"},
			wantHost: "file-host", wantPort: 7004, wantPass: "lua-pass"},
		{name: "environment URL replaces file host/port", files: map[string]string{"realtime.toml": toml},
			environ: []string{"REDIS_URL=redis://url-host:7005/0"},
			wantURL: "redis://:file-pass@url-host:7005/0", wantPort: 6379, wantPass: "file-pass"},
		{name: "override host changes the environment URL's host only",
			environ: []string{"REDIS_URL=redis://url-host:7005/0"}, over: map[string]any{"redis.host": "lua-host"},
			wantHost: "lua-host", wantPort: 6379, wantURL: "redis://lua-host:7005/0"},
		{name: "password alone implies localhost", environ: []string{"REDIS_PASSWORD=p"},
			wantHost: "127.0.0.1", wantPort: 6379, wantPass: "p"},
		{name: "empty variables are unset", environ: []string{"REDIS_URL=", "REDIS_HOST="},
			wantLocal: true, wantPort: 6379},
		{name: "unknown REDIS_ variables in the environment are ignored", environ: []string{"REDIS_VERSION=7"},
			wantLocal: true, wantPort: 6379},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := load(t, tt.files, tt.environ, tt.over)
			require.NoError(t, err)
			assert.Equal(t, tt.wantHost, cfg.Redis.Host, "host")
			assert.Equal(t, tt.wantPort, cfg.Redis.Port, "port")
			assert.Equal(t, tt.wantPass, cfg.Redis.Password, "password")
			assert.Equal(t, tt.wantURL, cfg.Redis.URL, "url")
			assert.Equal(t, tt.wantLocal, cfg.Local(), "local")
		})
	}
}

func TestDotEnvSyntax(t *testing.T) {
	env := strings.Join([]string{
		"# a comment",
		"export REDIS_HOST=redis.internal",
		`REDIS_PASSWORD="p@ss word#1"`,
		"REDIS_USERNAME='game' # trailing comment",
		"REDIS_DB=3",
		"DATABASE_URL=postgres://x", // another program's
		"",
	}, "\n")
	cfg, err := load(t, map[string]string{".env": env}, nil, nil)
	require.NoError(t, err)
	assert.Equal(t, "redis.internal", cfg.Redis.Host)
	assert.Equal(t, "p@ss word#1", cfg.Redis.Password)
	assert.Equal(t, "game", cfg.Redis.Username)
	assert.Equal(t, 3, cfg.Redis.DB)
}

func TestDotEnvBesideFileWins(t *testing.T) {
	dir := writeFiles(t, map[string]string{
		"garrysmod/cfg/realtime.toml": "[server]\nid = \"a\"\n",
		"garrysmod/cfg/.env":          "REDIS_HOST=beside\n",
		".env":                        "REDIS_HOST=workdir\n",
	})
	cfg, err := Load(Options{Dir: dir, Environ: []string{}})
	require.NoError(t, err)
	assert.Equal(t, filepath.Join(dir, "garrysmod/cfg/realtime.toml"), cfg.File)
	assert.Equal(t, filepath.Join(dir, "garrysmod/cfg/.env"), cfg.EnvFile)
	assert.Equal(t, "beside", cfg.Redis.Host)
}

func TestFileSearch(t *testing.T) {
	dir := writeFiles(t, map[string]string{
		"garrysmod/cfg/realtime.toml": "[server]\nid = \"cfg\"\n",
		"realtime.toml":               "[server]\nid = \"cwd\"\n",
		"custom.toml":                 "[server]\nid = \"custom\"\n",
	})
	cfg, err := Load(Options{Dir: dir, Environ: []string{}})
	require.NoError(t, err)
	assert.Equal(t, "cfg", cfg.Server.ID)

	cfg, err = Load(Options{Dir: dir, Environ: []string{"REALTIME_CONFIG=custom.toml"}})
	require.NoError(t, err)
	assert.Equal(t, "custom", cfg.Server.ID)

	_, err = Load(Options{Dir: dir, Environ: []string{"REALTIME_CONFIG=missing.toml"}})
	require.EqualError(t, err, `environment: REALTIME_CONFIG: "missing.toml": file not found`)

	require.NoError(t, os.Remove(filepath.Join(dir, "garrysmod/cfg/realtime.toml")))
	cfg, err = Load(Options{Dir: dir, Environ: []string{}})
	require.NoError(t, err)
	assert.Equal(t, "cwd", cfg.Server.ID)
}

func TestRoutesAndDerivedDefaults(t *testing.T) {
	cfg, err := Parse("realtime.toml", []byte(`
[[routes]]
pattern = "player:*"
handler = "OnPlayer"
rate = "2.5/s"

[[routes]]
name = "chat"
channel = "chat:message"
handler = "hook:RealtimeChat"
decode = "json"
rate = "120/m"
burst = 10
`))
	require.NoError(t, err)
	require.Len(t, cfg.Routes, 2)
	r := cfg.Routes[0]
	assert.Equal(t, "player:*", r.Name, "name defaults to the pattern")
	assert.Equal(t, DecodeRaw, r.Decode)
	assert.Equal(t, 2.5, r.Rate.PerSecond)
	assert.Equal(t, 3, r.Burst, "burst defaults to a second of the rate, rounded up")
	r = cfg.Routes[1]
	assert.Equal(t, "chat", r.Name)
	assert.Equal(t, 2.0, r.Rate.PerSecond)
	assert.Equal(t, 10, r.Burst)
}

// TestValidationErrors: each broken input reports every problem, each naming
// the source, key and value.
func TestValidationErrors(t *testing.T) {
	tests := []struct {
		name string
		toml string
		want []string
	}{
		{"bad rate", "[[routes]]\nname=\"a\"\npattern=\"x:*\"\nhandler=\"h\"\n[[routes]]\nname=\"b\"\npattern=\"y:*\"\nhandler=\"h\"\n[[routes]]\nname=\"c\"\npattern=\"z:*\"\nhandler=\"h\"\nrate=\"100/x\"\n",
			[]string{`realtime.toml: routes[2].rate: "100/x" is not a rate (want N/s, N/m or N/h, or "unlimited")`}},
		{"unknown key with suggestion", "[[routes]]\npattern=\"x:*\"\nhandler=\"h\"\nratee=\"1/s\"\n",
			[]string{`realtime.toml: routes[0].ratee: unknown key (did you mean "rate"?)`}},
		{"unknown section", "[redsi]\nhost=\"x\"\n",
			[]string{`realtime.toml: redsi: unknown key (did you mean "redis"?)`}},
		{"duplicate names", "[[routes]]\nname=\"a\"\npattern=\"x:*\"\nhandler=\"h\"\n[[routes]]\nname=\"a\"\nchannel=\"y\"\nhandler=\"h\"\n",
			[]string{`realtime.toml: routes[1].name: "a" is also the name of routes[0]; route names must be unique`}},
		{"both channel and pattern", "[[routes]]\nchannel=\"a\"\npattern=\"b*\"\nhandler=\"h\"\n",
			[]string{`realtime.toml: routes[0]: set channel or pattern, not both (channel "a", pattern "b*")`}},
		{"neither channel nor pattern", "[[routes]]\nhandler=\"h\"\n",
			[]string{`realtime.toml: routes[0]: needs channel = "exact:name", pattern = "glob:*" or stream = "stream:key"`}},
		{"stream and channel", "[[routes]]\nstream=\"s\"\nchannel=\"a\"\nhandler=\"h\"\n",
			[]string{`realtime.toml: routes[0]: set stream, channel or pattern, only one (stream "s", channel "a", pattern "")`}},
		{"stream keys on a channel route", "[[routes]]\nchannel=\"a\"\nhandler=\"h\"\ngroup=\"g\"\nmax_deliveries=3\n",
			[]string{`realtime.toml: routes[0].group: is for stream routes only (this route reads a channel or pattern)`,
				`realtime.toml: routes[0].max_deliveries: is for stream routes only (this route reads a channel or pattern)`}},
		{"bad stream keys", "[[routes]]\nstream=\"s\"\nhandler=\"h\"\nexclude=[\"x\"]\nstart=\">\"\nmax_deliveries=-1\nclaim_after=\"10ms\"\ndecode=\"field\"\n",
			[]string{`realtime.toml: routes[0].exclude: is for channel and pattern routes only (a stream route reads one stream)`,
				`realtime.toml: routes[0].start: ">" is not "$" (new entries) or "0" (every entry kept)`,
				`realtime.toml: routes[0].max_deliveries: -1 must be at least 1`,
				`realtime.toml: routes[0].claim_after: "10ms" is too short (want at least 1s: an entry still waiting for its handler would be taken over)`,
				`realtime.toml: routes[0].decode: "field" is not one of "fields", "json", "raw" (did you mean "fields"?)`}},
		{"fields on a channel route", "[[routes]]\nchannel=\"a\"\nhandler=\"h\"\ndecode=\"fields\"\n",
			[]string{`realtime.toml: routes[0].decode: "fields" is not one of "json", "raw"`}},
		{"empty handler", "[[routes]]\npattern=\"a*\"\nhandler=\"\"\n",
			[]string{`realtime.toml: routes[0].handler: is missing (want a realtime.Handler name, or "hook:HookName")`}},
		{"bad pattern", "[[routes]]\npattern=\"player:[ab\"\nhandler=\"h\"\n",
			[]string{`realtime.toml: routes[0].pattern: "player:[ab": unterminated character class (missing ]) (at byte 7)`}},
		{"bad exclude", "[[routes]]\npattern=\"a*\"\nexclude=[\"ok\", \"bad\\\\\"]\nhandler=\"h\"\n",
			[]string{`realtime.toml: routes[0].exclude[1]: "bad\\": trailing backslash`}},
		{"bad decode", "[[routes]]\npattern=\"a*\"\nhandler=\"h\"\ndecode=\"jsno\"\n",
			[]string{`realtime.toml: routes[0].decode: "jsno" is not one of "json", "raw" (did you mean "json"?)`}},
		{"negative burst", "[[routes]]\npattern=\"a*\"\nhandler=\"h\"\nrate=\"1/s\"\nburst=-1\n",
			[]string{`realtime.toml: routes[0].burst: -1 must not be negative`}},
		{"zero rate", "[[routes]]\npattern=\"a*\"\nhandler=\"h\"\nrate=\"0/s\"\n",
			[]string{`realtime.toml: routes[0].rate: "0/s" must allow more than 0 events (use "unlimited" for no limit)`}},
		{"sizes and durations", "[queue]\nmax_bytes=\"8XB\"\n[dispatch]\nbudget=\"2 ms\"\n",
			[]string{`realtime.toml: queue.max_bytes: "8XB" is not a size`, `realtime.toml: dispatch.budget: "2 ms" is not a duration`}},
		{"limits", "[queue]\nmax_events=0\noverflow=\"drop_oldset\"\n[dispatch]\nbudget=\"1s\"\n",
			[]string{`realtime.toml: queue.max_events: 0 must be at least 1`,
				`realtime.toml: queue.overflow: "drop_oldset" is not one of "drop_newest", "drop_oldest" (did you mean "drop_oldest"?)`,
				`realtime.toml: dispatch.budget: "1s" is out of range`}},
		{"payload bigger than queue", "[queue]\nmax_bytes=\"64KiB\"\nmax_payload=\"1MiB\"\n",
			[]string{`realtime.toml: queue.max_payload: "1MiB" is larger than queue.max_bytes (64KiB)`}},
		{"wrong types", "[redis]\nport=\"x\"\ntls=\"maybe\"\n[server]\nid=5\n",
			[]string{`realtime.toml: redis.port: "x" is not a whole number`, `realtime.toml: redis.tls: "maybe" is not true or false`,
				`realtime.toml: server.id: 5 is not a string (put it in quotes)`}},
		{"port range", "[redis]\nport=70000\n", []string{`realtime.toml: redis.port: 70000 is not a TCP port (want 1 to 65535)`}},
		{"routes not an array of tables", "routes = 5\n", []string{`realtime.toml: routes: 5 is not an array of tables (write [[routes]])`}},
		{"bad url scheme", "[redis]\nurl=\"http://u:hunter2@x\"\n", []string{`realtime.toml: redis.url: "http://u:***@x": scheme "http" is not redis://, rediss:// or unix://`}},
		{"url contradicts host", "[redis]\nurl=\"redis://a:6379\"\nhost=\"b\"\n",
			[]string{`realtime.toml: redis.url: "redis://a:6379" contradicts redis.host = "b" (from realtime.toml); set one or make them agree`}},
		{"sentinel without addrs", "[redis]\nmaster_name=\"mymaster\"\n", []string{`realtime.toml: redis.master_name: "mymaster" needs redis.addrs`}},
		{"cluster db", "[redis]\naddrs=[\"127.0.0.1:7000\"]\ndb=2\n", []string{`realtime.toml: redis.db: 2: Redis Cluster has only database 0`}},
		{"bad addr", "[redis]\naddrs=[\"nohostport\"]\n", []string{`realtime.toml: redis.addrs[0]: "nohostport" is not host:port`}},
		{"backoff order", "[redis]\nreconnect_min=\"10s\"\nreconnect_max=\"1s\"\n", []string{`realtime.toml: redis.reconnect_max: "1s" is less than redis.reconnect_min (10s)`}},
		{"syntax error", "[redis]\nhost = \"x\"\nport = = 5\n", []string{`realtime.toml:3:8: TOML syntax error:`}},
		{"empty chat prefix", "[events]\nchat_skip_prefixes = [\"!\", \"\"]\n",
			[]string{`realtime.toml: events.chat_skip_prefixes[1]: is empty, which would skip every chat line (use [] to publish every line)`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse("realtime.toml", []byte(tt.toml))
			require.Error(t, err)
			errs, ok := err.(Errors)
			require.True(t, ok, "%T", err)
			assert.Len(t, errs, len(tt.want), err.Error())
			for _, w := range tt.want {
				assert.Contains(t, err.Error(), w)
			}
		})
	}
}

func TestErrorsNameEnvironmentVariables(t *testing.T) {
	_, err := load(t, map[string]string{".env": "REDIS_PASWORD=x\n"}, []string{"REDIS_PORT=abc"}, nil)
	require.Error(t, err)
	assert.Contains(t, err.Error(), `environment: REDIS_PORT: "abc" is not a whole number`)
	assert.Contains(t, err.Error(), `.env: REDIS_PASWORD: unknown variable (did you mean "REDIS_PASSWORD"?)`)
}

func TestURLContradictionInOneSource(t *testing.T) {
	_, err := load(t, nil, []string{"REDIS_URL=redis://:filepass@h:6379/0", "REDIS_PASSWORD=otherpass"}, nil)
	require.Error(t, err)
	assert.Contains(t, err.Error(), `environment: REDIS_URL: "redis://:***@h:6379/0" contradicts redis.password = (secret) (from environment REDIS_PASSWORD)`)
	assert.NotContains(t, err.Error(), "filepass")
	assert.NotContains(t, err.Error(), "otherpass")

	// Agreeing values are fine, and a password kept in .env fills in a URL without one.
	cfg, err := load(t, map[string]string{"realtime.toml": "[redis]\nurl = \"redis://h:6379/2\"\ndb = 2\n", ".env": "REDIS_PASSWORD=s3cret\n"}, nil, nil)
	require.NoError(t, err)
	assert.Equal(t, "s3cret", cfg.Redis.Password)
}

func TestSecretsNeverShown(t *testing.T) {
	cfg, err := load(t, nil, []string{"REDIS_URL=redis://user:hunter2@db.example:6380/1", "REDIS_PASSWORD=hunter2"}, nil)
	require.NoError(t, err)
	assert.NotContains(t, cfg.String(), "hunter2")
	assert.Contains(t, cfg.String(), "redis://user:***@db.example:6380/1")

	_, err = load(t, nil, []string{"REDIS_URL=redis://user:hunter2@db.example:99999/1"}, nil)
	require.Error(t, err)
	assert.NotContains(t, err.Error(), "hunter2")
	assert.Contains(t, err.Error(), `port "99999" is not a TCP port`)

	_, err = Parse("realtime.toml", []byte("[redis]\npassword = 5\n"))
	require.Error(t, err)
	assert.Contains(t, err.Error(), "redis.password: (secret) is not a string")
}

func TestOverridesAreValidated(t *testing.T) {
	_, err := load(t, nil, nil, map[string]any{"redis.port": "abc", "redis.hots": "x"})
	require.Error(t, err)
	assert.Contains(t, err.Error(), `realtime.Config: port: "abc" is not a whole number`)
	assert.Contains(t, err.Error(), `realtime.Config: hots: unknown key (did you mean "host"?)`)
}

func TestParseUnits(t *testing.T) {
	sizes := map[string]Size{"8MiB": 8 * MiB, "512KiB": 512 * KiB, "1MB": 1000000, "100": 100, "1.5KiB": 1536, "2g": 2 * GiB, "0B": 0}
	for in, want := range sizes {
		var s Size
		require.NoError(t, s.UnmarshalText([]byte(in)), in)
		assert.Equal(t, want, s, in)
	}
	for _, in := range []string{"", "MiB", "-1KiB", "1.5B", "8XB", "NaN"} {
		var s Size
		assert.Error(t, s.UnmarshalText([]byte(in)), in)
	}
	rates := map[string]float64{"200/s": 200, "60/m": 1, "3600/h": 1, "unlimited": 0, "0.5/s": 0.5, "10/min": 10.0 / 60}
	for in, want := range rates {
		var r Rate
		require.NoError(t, r.UnmarshalText([]byte(in)), in)
		assert.InDelta(t, want, r.PerSecond, 1e-9, in)
	}
	for _, in := range []string{"100/x", "100", "/s", "-1/s", "0/s", "inf/s", "a/s"} {
		var r Rate
		assert.Error(t, r.UnmarshalText([]byte(in)), in)
	}
	assert.Equal(t, "8MiB", (8 * MiB).String())
	assert.Equal(t, "1000B", Size(1000).String())

	// A huge rate's default burst is capped, never wrapped to a negative or
	// zero bucket (which would rate-limit every event).
	var huge Rate
	require.NoError(t, huge.UnmarshalText([]byte("1e30/s")))
	assert.Equal(t, math.MaxInt32, huge.DefaultBurst())
}

// TestExampleFile loads realtime.toml.example and checks that it mentions
// every key of Config, so a new option cannot go undocumented.
func TestExampleFile(t *testing.T) {
	data, err := os.ReadFile("../realtime.toml.example")
	require.NoError(t, err)
	cfg, err := Parse("realtime.toml.example", data)
	require.NoError(t, err)
	require.NotEmpty(t, cfg.Routes)
	assert.True(t, cfg.Local(), "the example must not point at a Redis by default")

	text := string(data)
	var walk func(prefix string, t reflect.Type)
	var missing []string
	walk = func(prefix string, typ reflect.Type) {
		for i := 0; i < typ.NumField(); i++ {
			f := typ.Field(i)
			tag := f.Tag.Get("koanf")
			if tag == "" || tag == "-" {
				continue
			}
			key := join(prefix, tag)
			ft := f.Type
			if ft.Kind() == reflect.Slice && ft.Elem().Kind() == reflect.Struct {
				ft = ft.Elem()
			}
			if ft.Kind() == reflect.Struct && !reflect.PointerTo(ft).Implements(textUnmarshaler) {
				walk(key, ft)
				continue
			}
			if !strings.Contains(text, "\n"+tag+" = ") && !strings.Contains(text, "# "+tag+" = ") {
				missing = append(missing, key)
			}
		}
	}
	walk("", reflect.TypeFor[Config]())
	assert.Empty(t, missing, "keys missing from realtime.toml.example")
}

// FuzzParse: no file content makes the loader panic, and a file it accepts
// has routes that all have a name, a handler and a valid decode mode.
func FuzzParse(f *testing.F) {
	for _, name := range []string{"../realtime.toml.example"} {
		if data, err := os.ReadFile(name); err == nil {
			f.Add(data)
		}
	}
	f.Add([]byte("[[routes]]\npattern=\"a[\"\nhandler=\"\"\nrate=\"1/x\"\n"))
	f.Add([]byte("[redis]\nurl=\"redis://u:p@h:1/2\"\nport=\"5\"\n"))
	f.Add([]byte("routes = [1, \"a\", {pattern = 5}]\n[queue]\nmax_bytes = -1\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := Parse("fuzz.toml", data)
		if err != nil {
			if _, ok := err.(Errors); !ok {
				t.Fatalf("error of type %T: %v", err, err)
			}
			return
		}
		for i, r := range cfg.Routes {
			if r.Name == "" || r.Handler == "" || (r.Decode != DecodeRaw && r.Decode != DecodeJSON && (r.Stream == "" || r.Decode != DecodeFields)) ||
				r.Stream != "" && (r.Group == "" || r.MaxDeliveries < 1 || r.ClaimAfter < Duration(time.Second) || r.Start != "$" && r.Start != "0") {
				t.Fatalf("accepted route %d is incomplete: %+v", i, r)
			}
		}
	})
}

package config

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestDurableSettings: [streams], [spool] and events.stream load, default
// and fail naming the file, the key and the value.
func TestDurableSettings(t *testing.T) {
	c, err := load(t, map[string]string{"realtime.toml": "[redis]\nhost = \"h\"\n"}, nil, nil)
	require.NoError(t, err)
	require.Equal(t, DefaultSpoolPath, c.Spool.Path)
	require.Equal(t, 64*MiB, c.Spool.MaxBytes)
	require.Zero(t, c.Streams.MaxLen)
	require.False(t, c.Events.Stream)

	c, err = load(t, map[string]string{"realtime.toml": `
[streams]
retention = "24h"
[spool]
path = ""
max_bytes = "1MiB"
[events]
stream = true
`}, nil, nil)
	require.NoError(t, err)
	require.Equal(t, 24*time.Hour, c.Streams.Retention.D())
	require.Equal(t, "", c.Spool.Path)
	require.Equal(t, 1*MiB, c.Spool.MaxBytes)
	require.True(t, c.Events.Stream)

	for _, tt := range []struct{ toml, want string }{
		{"[streams]\nmax_len = 1000\nretention = \"1h\"\n", `realtime.toml: streams.retention: "1h0m0s" is set, and so is streams.max_len (1000)`},
		{"[streams]\nmax_len = -5\n", "realtime.toml: streams.max_len: -5 must not be negative"},
		{"[spool]\nmax_bytes = \"10B\"\n", `realtime.toml: spool.max_bytes: "10B" is too small`},
		{"[spool]\npath = \"a?b.db\"\n", `realtime.toml: spool.path: "a?b.db"`},
		{"[spool]\npath = \":memory:\"\n", `realtime.toml: spool.path: ":memory:" is not a file path`},
		{"[spool]\npath = \"file:x.db\"\n", `realtime.toml: spool.path: "file:x.db" is not a file path`},
	} {
		_, err := load(t, map[string]string{"realtime.toml": tt.toml}, nil, nil)
		require.Error(t, err, tt.toml)
		require.Contains(t, err.Error(), tt.want)
	}
}

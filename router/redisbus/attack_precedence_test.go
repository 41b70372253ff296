//go:build attack

// Known defects of issue 12 (open), each a failing test found by an
// attacker on 2026-11-27: run with `go test -tags attack`. Remove the
// build tag from a file once its defect is fixed.

package redisbus

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gmod-realtime/realtime/config"
)

// effective loads a realtime.toml [redis] section with an environment and
// returns the settings the module connects with (go-redis's options).
func effective(t *testing.T, toml string, environ ...string) (*config.Config, redis.UniversalClient, error) {
	t.Helper()
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "realtime.toml"), []byte("[redis]\n"+toml+"\n"), 0o600))
	cfg, err := config.Load(config.Options{Dir: dir, Environ: append([]string{}, environ...)})
	if err != nil {
		return nil, nil, err
	}
	c, err := NewClient(cfg.Redis)
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	return cfg, c, nil
}

// TestPrecedenceRowsHoldForUnixURLs: README "`username`, `password`, `db`
// or `tls` above a `url` replace that part of it" and "... below a `url`
// fill in what the URL leaves out". For a unix:// URL, REDIS_PASSWORD and
// REDIS_DB above it are silently ignored, and a db below it is too.
func TestPrecedenceRowsHoldForUnixURLs(t *testing.T) {
	_, c, err := effective(t, `url = "unix://:old@/tmp/redis.sock"`, "REDIS_PASSWORD=new")
	require.NoError(t, err)
	assert.Equal(t, "new", c.(*redis.Client).Options().Password, "REDIS_PASSWORD above a unix:// URL replaces its password")

	_, c, err = effective(t, `url = "unix:///tmp/redis.sock?db=1"`, "REDIS_DB=4")
	require.NoError(t, err)
	assert.Equal(t, 4, c.(*redis.Client).Options().DB, "REDIS_DB above a unix:// URL replaces its db")

	_, c, err = effective(t, "password = \"filepw\"\ndb = 5", "REDIS_URL=unix:///tmp/redis.sock")
	require.NoError(t, err)
	assert.Equal(t, 5, c.(*redis.Client).Options().DB, "a db below a unix:// URL without one fills it in")
}

// TestURLInTheEnvironmentReplacesAFileSentinel: README "a `url` replaces
// the `host`/`port`/`addrs` of the sources below it". A file set up for
// Sentinel (addrs + master_name) and REDIS_URL in the environment is a
// config error: the URL drops the file's addrs but keeps its master_name,
// which then "needs redis.addrs".
func TestURLInTheEnvironmentReplacesAFileSentinel(t *testing.T) {
	_, c, err := effective(t, "addrs = [\"s1:26379\", \"s2:26379\"]\nmaster_name = \"mymaster\"", "REDIS_URL=redis://env-host:6379/0")
	require.NoError(t, err, "REDIS_URL wins over the file's Sentinel settings")
	assert.Equal(t, "env-host:6379", c.(*redis.Client).Options().Addr)
}

// TestEnvironmentHostOverFileAddrs: "Sources, later wins": REDIS_HOST in
// the environment above a file's Cluster addrs is silently ignored (the
// module connects to the cluster, with no error or warning).
func TestEnvironmentHostOverFileAddrs(t *testing.T) {
	cfg, c, err := effective(t, `addrs = ["a:7000", "b:7000"]`, "REDIS_HOST=env-host")
	if err != nil {
		return // reported: fine
	}
	if _, cluster := c.(*redis.ClusterClient); cluster {
		assert.NotEmpty(t, cfg.Warnings, "REDIS_HOST=env-host is ignored without a word; the module connects to the file's cluster")
	}
}

// TestDBBesideAURLInOneSource: in one file, url without a db and db = 5:
// the db is dropped without a word (db 0 is used), while a password in
// the same position is used. Either fill it in (like the password) or
// report it; not ignore it.
func TestDBBesideAURLInOneSource(t *testing.T) {
	_, c, err := effective(t, "url = \"redis://h:6379\"\ndb = 5")
	if err != nil {
		return // reported: fine
	}
	assert.Equal(t, 5, c.(*redis.Client).Options().DB, "db = 5 beside a URL without a db is silently ignored")
}

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

// TestPrecedenceRowsHoldForUnixURLs: docs/CONFIG.md "`username`, `password`, `db`
// or `tls` above a `url` replace that part of it" and "... below a `url`
// fill in what the URL leaves out" hold for a unix:// URL too, as the
// client it makes connects (they were silently ignored).
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

// TestURLInTheEnvironmentReplacesAFileSentinel: docs/CONFIG.md "a `url` replaces
// the `host`/`port`/`addrs`/`master_name` of the sources below it": a file
// set up for Sentinel (addrs + master_name) and REDIS_URL in the
// environment connect to the URL (the URL dropped the file's addrs but
// kept its master_name, which then "needs redis.addrs").
func TestURLInTheEnvironmentReplacesAFileSentinel(t *testing.T) {
	_, c, err := effective(t, "addrs = [\"s1:26379\", \"s2:26379\"]\nmaster_name = \"mymaster\"", "REDIS_URL=redis://env-host:6379/0")
	require.NoError(t, err, "REDIS_URL wins over the file's Sentinel settings")
	assert.Equal(t, "env-host:6379", c.(*redis.Client).Options().Addr)
}

// TestEnvironmentHostOverFileAddrs: REDIS_HOST in the environment above a
// file's Cluster addrs names one server where the file names a Cluster:
// an error that says so (it was silently ignored, and the module connected
// to the file's cluster).
func TestEnvironmentHostOverFileAddrs(t *testing.T) {
	_, _, err := effective(t, `addrs = ["a:7000", "b:7000"]`, "REDIS_HOST=env-host")
	require.Error(t, err)
	assert.Contains(t, err.Error(), "environment: REDIS_HOST: is set, and so is redis.addrs")
}

// TestDBBesideAURLInOneSource: in one file, url without a db and db = 5:
// the db fills in what the URL leaves out, as a password there does (it
// was dropped without a word, and db 0 used).
func TestDBBesideAURLInOneSource(t *testing.T) {
	_, c, err := effective(t, "url = \"redis://h:6379\"\ndb = 5")
	require.NoError(t, err)
	assert.Equal(t, 5, c.(*redis.Client).Options().DB, "db = 5 beside a URL without a db")
}

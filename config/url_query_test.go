package config

import (
	"fmt"
	"testing"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestURLQueryOptions (found by an attacker of issue 12): a URL query
// option that go-redis does not know passed validation and failed only
// when the connection was built, in module code that had applied the
// Reload's routes already; and the error quoted the URL with the query
// whole, so `?password=...` (the form redis-py reads) reached the log.
// An unknown option is a config error naming the option, and a query
// value under a secret-looking name is never shown.
func TestURLQueryOptions(t *testing.T) {
	for _, u := range []string{
		"redis://h:6379/0?password=hunter2pw",
		"redis://h:6379/0?dial_timeout=1s&Password=hunter2pw",
		"rediss://u@h/0?auth_token=hunter2pw",
	} {
		_, err := Parse("t.toml", []byte(fmt.Sprintf("[redis]\nurl = %q\n", u)))
		require.Error(t, err, u)
		assert.Contains(t, err.Error(), "unknown option", u)
		assert.NotContains(t, err.Error(), "hunter2pw", u)
	}
	_, err := Parse("t.toml", []byte("[redis]\nurl = \"redis://h:6379/0?nosuch=1\"\n"))
	require.Error(t, err)
	assert.Contains(t, err.Error(), `"nosuch"`)
	// Every option accepted here is one go-redis accepts.
	for _, name := range urlOptions {
		v := "1"
		if name == "pool_fifo" || name == "skip_verify" {
			v = "true"
		}
		u := fmt.Sprintf("rediss://h:6379/0?%s=%s", name, v)
		_, err := Parse("t.toml", []byte(fmt.Sprintf("[redis]\nurl = %q\n", u)))
		require.NoError(t, err, u)
		_, err = redis.ParseURL(u)
		require.NoError(t, err, u)
	}
	assert.Equal(t, "redis://h/0?password=***&db=1", RedactURL("redis://h/0?password=hunter2pw&db=1"))
}

package config

import (
	"fmt"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestMistypedURLErrorsHideThePassword (found by an attacker of issue 12):
// a URL with a typo in its "://"
// (one slash, none, or no colon) still carries user:password@host, and
// the error about it quotes it whole: RedactURL only looks past "://".
func TestMistypedURLErrorsHideThePassword(t *testing.T) {
	for _, u := range []string{
		"redis:/game:hunter2@redis.internal:6379",
		"redis:game:hunter2@redis.internal",
		"redis//game:hunter2@redis.internal",
		"rediss:/game:hunter2@redis.internal:6380/0",
	} {
		_, err := Parse("t.toml", []byte(fmt.Sprintf("[redis]\nurl = %q\n", u)))
		require.Error(t, err, u)
		assert.NotContains(t, err.Error(), "hunter2", "the error for %q quotes the password", u)
	}
}

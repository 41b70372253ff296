package config

import (
	"fmt"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestURLWithoutHostOrAsTableHidesThePassword (found by an attacker of
// issue 12): a URL missing its "@host" ("redis://default:hunter2", the
// password read as a port) does not parse, and the error quoted it
// whole, since RedactURL only hid what lay before an '@'; so did the
// error for a URL written where the [redis] table belongs.
func TestURLWithoutHostOrAsTableHidesThePassword(t *testing.T) {
	for _, doc := range []string{
		"[redis]\nurl = \"redis://default:hunter2pw\"\n",
		"[redis]\nurl = \"rediss://:hunter2pw\"\n",
		"[redis]\nurl = \"redis://default:hunter2pw/0\"\n",
		"redis = \"redis://default:hunter2pw@redis.internal:6379\"\n",
		"redis = \"rediss://:hunter2pw@redis.internal\"\n",
		"redis = \"redis:/u:hunter2pw@redis.internal\"\n",
	} {
		_, err := Parse("t.toml", []byte(doc))
		require.Error(t, err, doc)
		assert.NotContains(t, err.Error(), "hunter2pw", "the error for %q quotes the password", doc)
	}
	// What is not secret stays, for diagnosis.
	for raw, want := range map[string]string{
		"redis://default:hunter2pw":   "redis://default:***",
		"redis://h:6379/0":            "redis://h:6379/0",
		"redis://[::1]:6379":          "redis://[::1]:6379",
		"redis://h:x/0":               "redis://h:***",
		"redis://default:hunter2pw/0": "redis://default:***",
		// a lone name may be a password missing its ':'
		"redis://hunter2pw@h:6379":   "redis://***@h:6379",
		"rediss://hunter2pw@h/0":     "rediss://***@h/0",
		"redis://hunter2pw@h:1/0#@":  "redis://***@",
		"redis://@h:6379":            "redis://@h:6379",
		"redis://user:p@ss@h:6379/0": "redis://user:***@h:6379/0",
	} {
		assert.Equal(t, want, RedactURL(raw), raw)
	}
	_, err := Parse("t.toml", []byte(fmt.Sprintf("[redis]\nurl = %q\n", "redis://h:6379x")))
	require.Error(t, err)
}

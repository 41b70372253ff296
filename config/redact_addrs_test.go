package config

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

// TestCredentialsInHostOrAddrsHidden: credentials written into redis.host
// or a redis.addrs entry (a URL's "user:pass@" carried over) are refused,
// and neither the error nor a log line shows the password.
func TestCredentialsInHostOrAddrsHidden(t *testing.T) {
	for _, doc := range []string{
		"[redis]\naddrs = [\"redis://u:hunter2pw@127.0.0.1:7000\"]\n",
		"[redis]\naddrs = [\"u:hunter2pw@127.0.0.1:7000\"]\n",
		"[redis]\naddrs = [\"127.0.0.1:7001\", \"hunter2pw@127.0.0.1:7000\"]\n",
		"[redis]\nmaster_name = \"m\"\naddrs = [\"u:hunter2pw@127.0.0.1:26379\"]\n",
		"[redis]\nhost = \"u:hunter2pw@127.0.0.1\"\n",
		"[redis]\nhost = \"hunter2pw@127.0.0.1\"\n",
	} {
		cfg, err := Parse("t.toml", []byte(doc))
		if !assert.Error(t, err, "%q accepted: %s", doc, func() string {
			if cfg != nil {
				return cfg.String()
			}
			return ""
		}()) {
			assert.NotContains(t, cfg.String()+cfg.Redis.Target(), "hunter2pw", doc)
			continue
		}
		assert.NotContains(t, err.Error(), "hunter2pw", doc)
		assert.Contains(t, err.Error(), "127.0.0.1", "the host stays, for diagnosis: %s", doc)
	}
}

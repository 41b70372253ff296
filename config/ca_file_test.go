package config

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestCAFileWithoutCertificateIsAConfigError (found by an attacker of
// issue 12): a tls_ca_file that exists but holds no PEM certificate (a
// key, a DER file, an empty file) passed validation and failed only when
// the connection was built, after a Reload had applied the routes and
// the new settings: Reload said false, yet the routes had changed, and
// the next Reload of the same file reported success while the old
// connection stayed. It is a config error, so a Reload changes nothing.
func TestCAFileWithoutCertificateIsAConfigError(t *testing.T) {
	dir := t.TempDir()
	for name, content := range map[string]string{
		"empty.pem": "",
		"key.pem":   "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
		"der.crt":   "\x30\x82\x01\x0a",
	} {
		path := filepath.Join(dir, name)
		require.NoError(t, os.WriteFile(path, []byte(content), 0o600))
		_, err := Parse("t.toml", []byte(fmt.Sprintf("[redis]\nurl = \"rediss://h:6380\"\ntls_ca_file = %q\n", path)))
		require.Error(t, err, name)
		assert.Contains(t, err.Error(), "redis.tls_ca_file", name)
		assert.Contains(t, err.Error(), "no PEM certificate", name)
	}
}

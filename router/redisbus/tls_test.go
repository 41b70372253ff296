package redisbus

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gmod-realtime/realtime/config"
	"github.com/gmod-realtime/realtime/internal/redistest"
	"github.com/gmod-realtime/realtime/router"
)

// testCA writes a CA and a server certificate for "redis.test" into dir.
func testCA(t *testing.T, dir string) (caFile, certFile, keyFile string) {
	t.Helper()
	write := func(name, typ string, der []byte) string {
		p := filepath.Join(dir, name)
		require.NoError(t, os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600))
		return p
	}
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	ca := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, ca, ca, &caKey.PublicKey, caKey)
	require.NoError(t, err)
	srvKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	leaf := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "redis.test"},
		DNSNames: []string{"redis.test"}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	leafDER, err := x509.CreateCertificate(rand.Reader, leaf, ca, &srvKey.PublicKey, caKey)
	require.NoError(t, err)
	keyDER, err := x509.MarshalECPrivateKey(srvKey)
	require.NoError(t, err)
	return write("ca.pem", "CERTIFICATE", caDER), write("server.pem", "CERTIFICATE", leafDER), write("server.key", "EC PRIVATE KEY", keyDER)
}

// TestTLS: a redis-server with a TLS port and a certificate from a CA the
// test makes. TLS is on for rediss:// or tls = true, and only then; the
// CA file and server name apply to both forms; either key without TLS is
// a config error, never a silent plaintext connection.
func TestTLS(t *testing.T) {
	dir := t.TempDir()
	caFile, certFile, keyFile := testCA(t, dir)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	tlsPort := l.Addr().(*net.TCPAddr).Port
	require.NoError(t, l.Close())
	srv := redistest.Start(t, "--tls-port", strconv.Itoa(tlsPort), "--tls-cert-file", certFile,
		"--tls-key-file", keyFile, "--tls-ca-cert-file", caFile, "--tls-auth-clients", "no")
	tlsAddr := fmt.Sprintf("127.0.0.1:%d", tlsPort)
	const route = "[[routes]]\nname = \"r\"\nchannel = \"tls:x\"\nhandler = \"h\"\n"
	base := "read_timeout = \"300ms\"\nreconnect_min = \"50ms\"\nreconnect_max = \"200ms\"\n"

	for _, tc := range []struct{ name, redis string }{
		{"rediss URL", fmt.Sprintf("url = \"rediss://%s\"\ntls_ca_file = %q\ntls_server_name = \"redis.test\"\n", tlsAddr, caFile)},
		{"host, port and tls = true", fmt.Sprintf("host = \"127.0.0.1\"\nport = %d\ntls = true\ntls_ca_file = %q\ntls_server_name = \"redis.test\"\n", tlsPort, caFile)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := startHarness(t, "[redis]\n"+base+tc.redis+route)
			h.waitStatus("connected")
			c := client(t, srv) // the plain port of the same server
			h.waitFor("a message over TLS", 10*time.Second, func() bool {
				c.Publish(context.Background(), "tls:x", "secure")
				return len(h.msgs) > 0
			})
			assert.Equal(t, "r<-tls:x=secure", h.msgs[0])
		})
	}

	t.Run("the CA file is used: without it the certificate is refused", func(t *testing.T) {
		h := startHarness(t, "[redis]\n"+base+fmt.Sprintf("url = \"rediss://%s\"\ntls_server_name = \"redis.test\"\n", tlsAddr)+route)
		var reason string
		require.Eventually(t, func() bool {
			h.r.Drain(100, 0, func(e *router.Event) {
				if e.Kind == router.KindStatus && e.Status == router.StatusDisconnected {
					reason = e.Note
				}
			})
			return reason != ""
		}, 15*time.Second, 5*time.Millisecond)
		assert.Contains(t, reason, "certificate")
	})

	for _, tc := range []struct{ name, redis, key string }{
		{"CA file beside redis://", fmt.Sprintf("url = \"redis://%s\"\ntls_ca_file = %q\n", tlsAddr, caFile), "redis.tls_ca_file"},
		{"server name beside redis://", fmt.Sprintf("url = \"redis://%s\"\ntls_server_name = \"redis.test\"\n", tlsAddr), "redis.tls_server_name"},
		{"CA file beside host/port without tls", fmt.Sprintf("host = \"127.0.0.1\"\nport = %d\ntls_ca_file = %q\n", tlsPort, caFile), "redis.tls_ca_file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := config.Parse("test.toml", []byte("[redis]\n"+tc.redis))
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.key+": is set but TLS is off")
		})
	}
}

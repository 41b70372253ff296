package redisbus

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"os"
	"strconv"

	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"

	"github.com/gmod-realtime/realtime/config"
)

// noRetries turns off go-redis's own retries: a pipeline it sends again
// after a lost connection publishes the messages Redis had already
// acknowledged a second time. The writer retries, from the first
// unanswered message.
const noRetries = -1

// firstShard sends every keyless command (PUBLISH above all) to the same
// master. go-redis's default turns from one master to the next at each
// command, and runs the masters' parts of a pipeline side by side: the
// messages of a batch reached subscribers interleaved, out of order.
type firstShard struct{}

func (firstShard) Next(int) int { return 0 }

// NewClient builds the go-redis client for a validated config: a single
// server (URL or fields), Sentinel (master_name + addrs) or Cluster (addrs).
func NewClient(c config.Redis) (redis.UniversalClient, error) {
	tlsConfig, err := tlsFor(c)
	if err != nil {
		return nil, err
	}
	maint := &maintnotifications.Config{Mode: maintnotifications.ModeDisabled}
	switch {
	case c.MasterName != "":
		return redis.NewFailoverClient(&redis.FailoverOptions{
			MasterName: c.MasterName, SentinelAddrs: c.Addrs, SentinelPassword: c.SentinelPassword,
			Username: c.Username, Password: c.Password, DB: c.DB, TLSConfig: tlsConfig,
			DialTimeout: c.ConnectTimeout.D(), ReadTimeout: c.ReadTimeout.D(), WriteTimeout: c.WriteTimeout.D(),
			Protocol: 2, DisableIdentity: true, MaxRetries: noRetries,
		}), nil
	case len(c.Addrs) > 0:
		return redis.NewClusterClient(&redis.ClusterOptions{
			Addrs: c.Addrs, Username: c.Username, Password: c.Password, TLSConfig: tlsConfig,
			DialTimeout: c.ConnectTimeout.D(), ReadTimeout: c.ReadTimeout.D(), WriteTimeout: c.WriteTimeout.D(),
			Protocol: 2, DisableIdentity: true, MaintNotificationsConfig: maint, MaxRetries: noRetries,
			ShardPicker: firstShard{},
		}), nil
	}
	opt := &redis.Options{}
	if c.URL != "" {
		if opt, err = redis.ParseURL(c.URL); err != nil {
			return nil, fmt.Errorf("redis.url %q: %w", config.RedactURL(c.URL), err)
		}
		// Fields given beside the URL fill in what it leaves out (config
		// has already rejected contradictions).
		if opt.Username == "" {
			opt.Username = c.Username
		}
		if opt.Password == "" {
			opt.Password = c.Password
		}
		if opt.TLSConfig != nil { // rediss://: the CA file and server name apply
			opt.TLSConfig.RootCAs = tlsConfig.RootCAs
			if c.TLSServerName != "" {
				opt.TLSConfig.ServerName = c.TLSServerName
			}
		}
	} else {
		opt.Addr = net.JoinHostPort(c.Host, strconv.Itoa(c.Port))
		opt.Username, opt.Password, opt.DB, opt.TLSConfig = c.Username, c.Password, c.DB, tlsConfig
	}
	opt.DialTimeout, opt.ReadTimeout, opt.WriteTimeout = c.ConnectTimeout.D(), c.ReadTimeout.D(), c.WriteTimeout.D()
	opt.Protocol, opt.DisableIdentity, opt.MaintNotificationsConfig, opt.MaxRetries = 2, true, maint, noRetries
	return redis.NewClient(opt), nil
}

// tlsFor returns the TLS config the settings ask for, or nil for plain TCP:
// TLS is on for a rediss:// URL or tls = true, and only then (config
// rejects tls_ca_file or tls_server_name without it).
func tlsFor(c config.Redis) (*tls.Config, error) {
	if !c.TLSOn() {
		return nil, nil
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: c.TLSServerName}
	if cfg.ServerName == "" {
		cfg.ServerName = c.Host
	}
	if c.TLSCAFile != "" {
		pem, err := os.ReadFile(c.TLSCAFile)
		if err != nil {
			return nil, fmt.Errorf("redis.tls_ca_file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("redis.tls_ca_file %q: no PEM certificate in it", c.TLSCAFile)
		}
		cfg.RootCAs = pool
	}
	return cfg, nil
}

package config

import (
	"net"
	"strings"
	"time"
)

// Metrics configures what the module tells the outside about itself: a
// heartbeat hash in Redis (realtimectl servers reads it) and an optional
// Prometheus endpoint.
type Metrics struct {
	// Heartbeat is how often the server writes its heartbeat hash; the
	// hash expires after three intervals. "0s" turns heartbeats off.
	// Default: 5s.
	Heartbeat Duration `koanf:"heartbeat"`
	// Prefix goes before the server id in the heartbeat key
	// ("realtime:server:" gives "realtime:server:ttt-1"). Default:
	// "realtime:server:".
	Prefix string `koanf:"prefix"`
	// Listen is the host:port of the Prometheus /metrics endpoint.
	// Default: "" (off). Loopback unless the owner names another address.
	Listen string `koanf:"listen"`
}

// DefaultHeartbeatPrefix is Metrics.Prefix's default.
const DefaultHeartbeatPrefix = "realtime:server:"

func defaultMetrics() Metrics {
	return Metrics{Heartbeat: Duration(5 * time.Second), Prefix: DefaultHeartbeatPrefix}
}

// HeartbeatKey is the Redis key of server id's heartbeat hash.
func (m *Metrics) HeartbeatKey(id string) string { return m.Prefix + id }

func (l *loader) validateMetrics(c *Config) {
	m := &c.Metrics
	if h := m.Heartbeat.D(); h != 0 && (h < 100*time.Millisecond || h > time.Hour) {
		l.fail("metrics.heartbeat", "%q is out of range (want 100ms to 1h, or \"0s\" for no heartbeat)", m.Heartbeat)
	}
	if strings.TrimSpace(m.Prefix) == "" {
		l.fail("metrics.prefix", "must not be empty (the default is %q)", DefaultHeartbeatPrefix)
	}
	if m.Listen != "" {
		if _, port, err := net.SplitHostPort(m.Listen); err != nil || port == "" {
			l.fail("metrics.listen", "%q is not host:port (such as \"127.0.0.1:9108\")", m.Listen)
		}
	}
}

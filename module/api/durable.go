package api

import (
	"errors"
	"fmt"
	"path/filepath"

	"github.com/gmod-realtime/realtime/router"
	"github.com/gmod-realtime/realtime/router/redisbus"
	"github.com/gmod-realtime/realtime/router/spool"
)

// durableFor returns the durable-send state for the Redis buses of m.cfg:
// the one in use, kept across Reload and HandOver (its spool and
// sequence stay), or a new one, opening the spool, when there is none.
// A spool that cannot be opened is logged, and appends then wait in the
// outbox as publishes do.
func (m *Module) durableFor() *redisbus.Durable {
	c := m.cfg
	if m.durable == nil {
		var sp *spool.Spool
		if c.Spool.Path != "" {
			var err error
			path := c.Spool.Path
			if m.opts.Root != "" && !filepath.IsAbs(path) {
				path = filepath.Join(m.opts.Root, path)
			}
			sp, err = spool.Open(path, spool.Options{
				ServerID: c.Server.ID, MaxBytes: int64(c.Spool.MaxBytes),
				Logf: func(format string, args ...any) { m.r.Logf("warn", format, args...) },
			})
			if err != nil {
				m.logs.add("error", fmt.Sprintf("spool.path: %v; durable sends (realtime.Append) wait in memory only while Redis is unreachable", err))
				sp = nil
			} else if st := sp.Stats(); st.Depth > 0 {
				m.log("info", fmt.Sprintf("spool %s: %d entries left by the last run, sent once Redis is reachable", c.Spool.Path, st.Depth))
			}
		}
		m.durable = redisbus.NewDurable(c.Server.ID, sp, &m.seq)
		m.spoolPath = c.Spool.Path
	} else if c.Spool.Path != m.spoolPath {
		m.log("warn", fmt.Sprintf("spool.path changed to %q: it takes effect at the next realtime.Connect (or restart); %q stays in use", c.Spool.Path, m.spoolPath))
	}
	m.durable.SetServerID(c.Server.ID)
	m.durable.SetTrim(int64(c.Streams.MaxLen), c.Streams.Retention.D())
	return m.durable
}

// persist moves the durable entries waiting in the outbox to the spool and
// waits until the spool has them on disk (local, never the network):
// gmod13_close, Disconnect, Stop.
func (m *Module) persist() {
	if rb, ok := m.r.Backend().(*redisbus.Bus); ok {
		rb.Persist()
	}
	if m.durable != nil && m.durable.Spool() != nil {
		if err := m.durable.Spool().Sync(); err != nil {
			m.logs.add("error", err.Error())
		}
	}
}

// closeDurable closes the spool (after persist); the next Connect opens it
// again.
func (m *Module) closeDurable() {
	if m.durable == nil {
		return
	}
	if sp := m.durable.Spool(); sp != nil {
		if err := sp.Close(); err != nil {
			m.logs.add("error", err.Error())
		}
	}
	m.durable = nil
}

// Append adds payload as an entry of stream (XADD, fields data and rt_id)
// without blocking, and returns its rt_id.
func (m *Module) Append(stream, payload string) (string, error) {
	id, err := m.r.Append(stream, payload)
	if errors.Is(err, router.ErrNoBackend) {
		return "", m.notConnected()
	}
	return id, err
}

func (m *Module) notConnected() error {
	if m.cfgErr != nil {
		return errors.New("not connected: the config has errors (see the log; fix it and call realtime.Reload())")
	}
	return errors.New("not connected (realtime.Disconnect() was called; realtime.Connect() reconnects)")
}

// spoolStats are the spool's figures for GetStats, the heartbeat and
// Prometheus; ok is false when there is no spool.
func spoolStats(r *router.Router) (st spool.Stats, lost uint64, spooling, ok bool) {
	rb, isRedis := r.Backend().(*redisbus.Bus)
	if !isRedis || rb.Durable() == nil {
		return st, 0, false, false
	}
	d := rb.Durable()
	if d.Spool() == nil {
		return st, d.Lost(), false, false
	}
	return d.Spool().Stats(), d.Lost(), d.Spooling(), true
}

package api

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	vm "github.com/VictoriaMetrics/metrics"

	"github.com/gmod-realtime/realtime/router"
	"github.com/gmod-realtime/realtime/router/redisbus"
)

// promServer serves /metrics on [metrics] listen. The listener is opened
// and served on goroutines; the main thread only records the address.
type promServer struct {
	mu    sync.Mutex
	addr  string // the configured address, "" when off
	gen   int    // counts changes, so a superseded listener closes itself
	srv   *http.Server
	bound atomic.Pointer[string] // the address actually listened on
}

// apply serves on addr, or stops serving when addr is "". Errors are
// logged through logf.
func (p *promServer) apply(addr string, handler http.Handler, logf func(level, line string)) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if addr == p.addr {
		return
	}
	p.stopLocked()
	p.addr = addr
	if addr == "" {
		return
	}
	gen := p.gen
	go func() {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			logf("error", fmt.Sprintf("metrics: cannot listen on %s: %v", addr, err))
			return
		}
		srv := &http.Server{Handler: handler, ReadHeaderTimeout: 5 * time.Second}
		p.mu.Lock()
		if gen != p.gen { // changed or stopped meanwhile
			p.mu.Unlock()
			_ = ln.Close()
			return
		}
		p.srv = srv
		bound := ln.Addr().String()
		p.bound.Store(&bound)
		p.mu.Unlock()
		logf("info", "metrics: serving Prometheus metrics on http://"+bound+"/metrics")
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			logf("error", "metrics: "+err.Error())
		}
	}()
}

func (p *promServer) stop() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.stopLocked()
	p.addr = ""
}

func (p *promServer) stopLocked() {
	p.gen++
	if p.srv != nil {
		_ = p.srv.Close()
		p.srv = nil
	}
	p.bound.Store(nil)
}

// MetricsAddr is the address /metrics is served on, "" when it is not.
func (m *Module) MetricsAddr() string {
	if p := m.prom.bound.Load(); p != nil {
		return *p
	}
	return ""
}

// applyMetrics starts, moves or stops the /metrics endpoint for the config
// in effect.
func (m *Module) applyMetrics() {
	m.prom.apply(m.cfg.Metrics.Listen, http.HandlerFunc(m.serveMetrics), m.logs.add)
}

func (m *Module) serveMetrics(w http.ResponseWriter, req *http.Request) {
	if req.URL.Path != "/metrics" {
		http.NotFound(w, req)
		return
	}
	w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
	bw := bufio.NewWriter(w)
	m.WriteMetrics(bw)
	_ = bw.Flush()
}

// promBuckets are the le bounds of realtime_latency_seconds.
var promBuckets = []time.Duration{
	100 * time.Microsecond, 250 * time.Microsecond, 500 * time.Microsecond, time.Millisecond,
	2500 * time.Microsecond, 5 * time.Millisecond, 10 * time.Millisecond, 15 * time.Millisecond,
	20 * time.Millisecond, 30 * time.Millisecond, 50 * time.Millisecond, 100 * time.Millisecond,
	250 * time.Millisecond, 500 * time.Millisecond, time.Second, 2500 * time.Millisecond, 5 * time.Second, 10 * time.Second,
}

// WriteMetrics writes the module's metrics in the Prometheus text format,
// then the process's and Go runtime's (VictoriaMetrics/metrics). Safe to
// call from any goroutine: it reads atomics and snapshots only.
func (m *Module) WriteMetrics(w io.Writer) {
	p := promWriter{w: w}
	r := m.r
	s := &r.Stats
	cfg := m.hb.cfg.Load()
	mapName := ""
	if mp := m.hb.mapName.Load(); mp != nil {
		mapName = *mp
	}
	p.family("realtime_info", "gauge", "The module: server id, version, mode and map (value 1).")
	p.sample("realtime_info", 1, "server", cfg.Server.ID, "version", m.hb.version, "mode", cfg.Mode(), "map", mapName)
	connected := 0.0
	if r.Backend() != nil && (r.Status() == router.StatusConnected || r.Status() == router.StatusLocal) {
		connected = 1
	}
	p.gauge("realtime_connected", "1 while connected to Redis (or in local mode).", connected)
	p.gauge("realtime_uptime_seconds", "Seconds since the module was loaded.", time.Since(m.hb.started).Seconds())
	for _, c := range []struct {
		name, help string
		v          uint64
	}{
		{"realtime_received_total", "Messages received from Redis.", s.Received.Load()},
		{"realtime_published_total", "Publish calls accepted into the outbox.", s.Published.Load()},
		{"realtime_publish_failed_total", "Publish calls refused (outbox full, closed) and messages Redis refused.", s.PublishFails.Load()},
		{"realtime_appended_total", "Append calls accepted (queued or spooled).", s.Appended.Load()},
		{"realtime_append_failed_total", "Append calls refused (outbox and spool full, closed).", s.AppendFails.Load()},
		{"realtime_queued_total", "Events queued for the main thread (one per matching route).", s.Queued.Load()},
		{"realtime_dispatched_total", "Events handed to Lua handlers.", s.Dispatched.Load()},
		{"realtime_decode_errors_total", "JSON routes' payloads delivered raw because they were not JSON.", s.DecodeErrors.Load()},
	} {
		p.counter(c.name, c.help, float64(c.v))
	}
	p.family("realtime_dropped_total", "counter", "Events dropped, by reason.")
	dropped := s.Dropped()
	for _, reason := range []string{router.DropQueueFull, router.DropRateLimited, router.DropTooBig, router.DropNoRoute,
		router.DropNoHandler, router.DropHandlerError, router.DropInternal} {
		p.sample("realtime_dropped_total", float64(dropped[reason]), "reason", reason)
	}
	p.gauge("realtime_queue_depth", "Events waiting for the main thread.", float64(r.Queue().Pending()))
	p.gauge("realtime_queue_bytes", "Payload bytes waiting for the main thread.", float64(r.Queue().Bytes()))
	p.gauge("realtime_queue_max_events", "queue.max_events.", float64(cfg.Queue.MaxEvents))
	p.gauge("realtime_queue_max_bytes", "queue.max_bytes.", float64(cfg.Queue.MaxBytes))
	if rb, ok := r.Backend().(*redisbus.Bus); ok {
		p.gauge("realtime_outbox_depth", "Messages waiting to be published.", float64(rb.OutboxLen()))
		p.counter("realtime_reconnects_total", "Connections to Redis made after the first.", float64(rb.Stats.Reconnects.Load()))
		p.counter("realtime_outages_total", "Times the connection to Redis was lost.", float64(rb.Stats.Outages.Load()))
		p.counter("realtime_inbox_dropped_total", "Messages dropped because routing fell behind the socket.", float64(rb.Stats.InboxDropped.Load()))
		p.counter("realtime_heartbeats_total", "Heartbeat hashes Redis acknowledged.", float64(rb.Stats.Heartbeats.Load()))
		if st, lost, _, ok := spoolStats(r); ok {
			p.gauge("realtime_spool_entries", "Durable entries waiting in the spool file.", float64(st.Depth))
			p.gauge("realtime_spool_bytes", "Their size as counted against spool.max_bytes.", float64(st.Bytes))
			p.gauge("realtime_spool_oldest_age_seconds", "How long the oldest spooled entry has waited (0 when empty).", st.OldestAge(time.Now()).Seconds())
			p.family("realtime_spool_dropped_total", "counter", "Durable entries dropped, by reason: full (over spool.max_bytes), refused (by Redis), write (disk failed at close), lost (neither sent nor spooled).")
			for _, d := range []struct {
				reason string
				n      uint64
			}{{"full", st.DroppedFull}, {"refused", st.DroppedRefused}, {"write", st.DroppedWrite}, {"lost", lost}} {
				p.sample("realtime_spool_dropped_total", float64(d.n), "reason", d.reason)
			}
		}
		streams := rb.StreamStats()
		names := slices.Sorted(maps.Keys(streams))
		for _, f := range []struct {
			name, kind, help string
			get              func(redisbus.StreamStats) float64
		}{
			{"realtime_stream_pending", "gauge", "A stream route's entries delivered and not acknowledged (XPENDING, read every 2s; -1 before).", func(st redisbus.StreamStats) float64 { return float64(st.Pending) }},
			{"realtime_stream_lag", "gauge", "A stream route's entries not read yet by its group (XINFO GROUPS, read every 2s; -1 unknown).", func(st redisbus.StreamStats) float64 { return float64(st.Lag) }},
			{"realtime_stream_acked_total", "counter", "A stream route's entries acknowledged.", func(st redisbus.StreamStats) float64 { return float64(st.Acked) }},
			{"realtime_stream_retried_total", "counter", "A stream route's entries delivered again after their handler failed.", func(st redisbus.StreamStats) float64 { return float64(st.Retried) }},
			{"realtime_stream_dead_lettered_total", "counter", "A stream route's entries moved to <stream>:dead.", func(st redisbus.StreamStats) float64 { return float64(st.Dead) }},
		} {
			p.family(f.name, f.kind, f.help)
			for _, name := range names {
				p.sample(f.name, f.get(streams[name]), "stream", name, "group", streams[name].Group)
			}
		}
	}

	routes := r.Table().Routes()
	for _, f := range []struct {
		name, help string
		get        func(*router.RouteStats) uint64
	}{
		{"realtime_route_matched_total", "Messages whose channel matched the route (before its rate limit).", func(rs *router.RouteStats) uint64 { return rs.Matched.Load() }},
		{"realtime_route_dispatched_total", "The route's events handed to its handler.", func(rs *router.RouteStats) uint64 { return rs.Dispatched.Load() }},
		{"realtime_route_rate_limited_total", "The route's events dropped over its rate limit.", func(rs *router.RouteStats) uint64 { return rs.RateLimited.Load() }},
		{"realtime_route_dropped_total", "The route's events dropped: queue full, too big, internal error.", func(rs *router.RouteStats) uint64 { return rs.Dropped.Load() }},
		{"realtime_route_no_handler_total", "The route's events dropped for want of a handler.", func(rs *router.RouteStats) uint64 { return rs.NoHandler.Load() }},
		{"realtime_route_handler_errors_total", "The route's events whose handler raised an error.", func(rs *router.RouteStats) uint64 { return rs.HandlerErrors.Load() }},
		{"realtime_route_decode_errors_total", "The route's JSON payloads delivered raw.", func(rs *router.RouteStats) uint64 { return rs.DecodeErrors.Load() }},
	} {
		p.family(f.name, "counter", f.help)
		for _, rt := range routes {
			p.sample(f.name, float64(f.get(rt.Stats)), "route", rt.Name)
		}
	}

	p.family("realtime_latency_seconds", "histogram", `Receipt to handler call (stage="total"), split into the module's own time (stage="module": matching, rate limit, JSON decoding) and the wait for the main thread (stage="wait"). Buckets are within 6.25% of their bounds.`)
	for _, h := range []struct {
		stage string
		h     *router.Histogram
	}{{"total", &s.Latency}, {"module", &s.Own}, {"wait", &s.Wait}} {
		counts, total, sum := h.h.Snapshot()
		below := router.CountBelow(counts, promBuckets)
		for i, b := range promBuckets {
			p.sample("realtime_latency_seconds_bucket", float64(below[i]), "stage", h.stage, "le", strconv.FormatFloat(b.Seconds(), 'g', -1, 64))
		}
		p.sample("realtime_latency_seconds_bucket", float64(total), "stage", h.stage, "le", "+Inf")
		p.sample("realtime_latency_seconds_sum", sum.Seconds(), "stage", h.stage)
		p.sample("realtime_latency_seconds_count", float64(total), "stage", h.stage)
	}
	vm.WriteProcessMetrics(w)
}

// promWriter writes the Prometheus text format.
type promWriter struct{ w io.Writer }

func (p *promWriter) family(name, typ, help string) {
	fmt.Fprintf(p.w, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, typ)
}

func (p *promWriter) gauge(name, help string, v float64) {
	p.family(name, "gauge", help)
	p.sample(name, v)
}

func (p *promWriter) counter(name, help string, v float64) {
	p.family(name, "counter", help)
	p.sample(name, v)
}

// sample writes one line; labels are name, value pairs.
func (p *promWriter) sample(name string, v float64, labels ...string) {
	var b strings.Builder
	b.WriteString(name)
	for i := 0; i+1 < len(labels); i += 2 {
		if i == 0 {
			b.WriteByte('{')
		} else {
			b.WriteByte(',')
		}
		b.WriteString(labels[i])
		b.WriteString(`="`)
		b.WriteString(labelEscaper.Replace(strings.ToValidUTF8(labels[i+1], "\uFFFD")))
		b.WriteByte('"')
	}
	if len(labels) > 0 {
		b.WriteByte('}')
	}
	b.WriteByte(' ')
	b.WriteString(strconv.FormatFloat(v, 'g', -1, 64))
	b.WriteByte('\n')
	_, _ = io.WriteString(p.w, b.String())
}

var labelEscaper = strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`)

package api

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gmod-realtime/realtime/config"
	"github.com/gmod-realtime/realtime/router"
	"github.com/gmod-realtime/realtime/router/redisbus"
)

// HeartbeatFields are the fields of the heartbeat hash, in the order the
// module writes them (docs/OPERATIONS.md documents each).
var HeartbeatFields = []string{
	"id", "map", "status", "mode", "version", "ts", "started", "uptime_s", "interval_ms",
	"in_per_s", "out_per_s", "dispatched_per_s", "received", "published", "dispatched", "publish_failed",
	"queue_depth", "queue_bytes", "outbox", "dropped", "dropped_queue_full", "dropped_rate_limited",
	"dropped_too_big", "dropped_no_route", "dropped_no_handler", "dropped_handler_error", "dropped_internal",
	"latency_p99_us", "reconnects", "routes", "stream_pending", "stream_lag", "dead_lettered",
	"appended", "append_failed", "spool_entries", "spool_bytes", "spool_oldest_age_ms", "spool_dropped",
	"instance",
}

// heartbeat writes the server's heartbeat hash on its own goroutine: the
// main thread only stores the config and map it reads (two atomic stores
// per Reload or map change), so its cost per frame is unchanged.
type heartbeat struct {
	cfg      atomic.Pointer[config.Config]
	mapName  atomic.Pointer[string]
	version  string
	started  time.Time
	stop     chan struct{}
	stopOnce sync.Once
	// instance tells this module's process from another writing the same
	// key (two servers sharing server.id): "<pid>-<random hex>".
	instance string
	logs     *logQueue
	// Set by the goroutine only: the totals at the last beat, for rates.
	last     time.Time
	lastIn   uint64
	lastOut  uint64
	lastDisp uint64
	sharedN  int64     // the HeartbeatOwner.N last reported as shared
	sharedAt time.Time // when
}

// newHeartbeat returns a heartbeat, not running yet, that logs to logs.
func newHeartbeat(version string, logs *logQueue) *heartbeat {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return &heartbeat{version: version, started: time.Now(), stop: make(chan struct{}), logs: logs,
		instance: strconv.Itoa(os.Getpid()) + "-" + hex.EncodeToString(b[:])}
}

func (h *heartbeat) close() { h.stopOnce.Do(func() { close(h.stop) }) }

// run beats until stop, every [metrics] heartbeat of the config in effect
// (re-read after each beat); with heartbeats off it looks again every
// second.
func (h *heartbeat) run(r *router.Router) {
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-h.stop:
			return
		case <-t.C:
		}
		cfg := h.cfg.Load()
		iv := cfg.Metrics.Heartbeat.D()
		if iv <= 0 {
			t.Reset(time.Second)
			continue
		}
		rb, ok := r.Backend().(*redisbus.Bus)
		if !ok { // local mode, or not attached yet: look again soon
			t.Reset(min(iv, time.Second))
			continue
		}
		key, now := cfg.Metrics.HeartbeatKey(cfg.Server.ID), time.Now()
		h.checkShared(rb, key, cfg.Server.ID, now)
		rb.Heartbeat(key, h.fields(r, rb, cfg, now), 3*iv)
		t.Reset(iv)
	}
}

// checkShared logs an error, at most once a minute, when another process
// wrote the heartbeat key since this one's heartbeat before: two servers
// run with the same server.id.
func (h *heartbeat) checkShared(rb *redisbus.Bus, key, id string, now time.Time) {
	o := rb.Stats.HeartbeatOwner.Load()
	if o == nil || o.Key != key || o.N < 2 || o.Instance == "" || o.Instance == h.instance || o.N == h.sharedN {
		return
	}
	h.sharedN = o.N
	if !h.sharedAt.IsZero() && now.Sub(h.sharedAt) < time.Minute {
		return
	}
	h.sharedAt = now
	h.logs.add("error", fmt.Sprintf("another server uses server.id %q: its process (instance %s) writes the heartbeat %s as this one (instance %s) does. "+
		"Servers sharing server.id share its stream consumer groups (each entry reaches only one of them) and the rt_ids of realtime.Append "+
		"(a stream route drops one of two entries with the same rt_id as a copy): give each server its own server.id in realtime.toml",
		id, o.Instance, key, h.instance))
}

// fields builds the hash: name, value, ... in HeartbeatFields order.
func (h *heartbeat) fields(r *router.Router, rb *redisbus.Bus, cfg *config.Config, now time.Time) []string {
	s := &r.Stats
	in, out, disp := s.Received.Load(), s.Published.Load(), s.Dispatched.Load()
	rate := func(cur, prev uint64) string {
		if h.last.IsZero() || cur < prev {
			return "0"
		}
		return strconv.FormatFloat(float64(cur-prev)/now.Sub(h.last).Seconds(), 'f', 1, 64)
	}
	inRate, outRate, dispRate := rate(in, h.lastIn), rate(out, h.lastOut), rate(disp, h.lastDisp)
	h.last, h.lastIn, h.lastOut, h.lastDisp = now, in, out, disp

	mapName := ""
	if p := h.mapName.Load(); p != nil {
		mapName = *p
	}
	status := router.StatusDisconnected.String()
	if r.Backend() != nil {
		status = r.Status().String()
	}
	dropped := s.Dropped()
	var total uint64
	for _, n := range dropped {
		total += n
	}
	u := func(n uint64) string { return strconv.FormatUint(n, 10) }
	i := func(n int64) string { return strconv.FormatInt(n, 10) }
	vals := []string{
		cfg.Server.ID, mapName, status, cfg.Mode(), h.version, i(now.UnixMilli()), i(h.started.UnixMilli()),
		i(int64(now.Sub(h.started).Seconds())), i(cfg.Metrics.Heartbeat.D().Milliseconds()),
		inRate, outRate, dispRate, u(in), u(out), u(disp), u(s.PublishFails.Load()),
		i(int64(r.Queue().Pending())), i(r.Queue().Bytes()), i(int64(rb.OutboxLen())), u(total),
		u(dropped[router.DropQueueFull]), u(dropped[router.DropRateLimited]), u(dropped[router.DropTooBig]),
		u(dropped[router.DropNoRoute]), u(dropped[router.DropNoHandler]), u(dropped[router.DropHandlerError]),
		u(dropped[router.DropInternal]),
		i(s.Latency.Quantile(0.99).Microseconds()), u(rb.Stats.Reconnects.Load()), i(int64(len(r.Table().Routes()))),
	}
	pending, lag := streamBacklog(rb.StreamStats())
	vals = append(vals, i(pending), i(lag), u(s.DeadLettered.Load()))
	sp, lost, _, _ := spoolStats(r)
	vals = append(vals, u(s.Appended.Load()), u(s.AppendFails.Load()), i(sp.Depth), i(sp.Bytes),
		i(sp.OldestAge(now).Milliseconds()), u(sp.Dropped()+lost), h.instance)
	kv := make([]string, 0, 2*len(vals))
	for j, v := range vals {
		kv = append(kv, HeartbeatFields[j], v)
	}
	return kv
}

// streamBacklog sums the stream routes' pending entries and lag, as Redis
// last said them; a sum is -1 when a stream's figure is not known (not
// read yet; a lag Redis cannot tell), since 0 would read "caught up".
func streamBacklog(ss map[string]redisbus.StreamStats) (pending, lag int64) {
	for _, st := range ss {
		pending = sumKnown(pending, st.Pending)
		lag = sumKnown(lag, st.Lag)
	}
	return pending, lag
}

func sumKnown(sum, n int64) int64 {
	if sum < 0 || n < 0 {
		return -1
	}
	return sum + n
}

package api

import (
	"context"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gmod-realtime/realtime/internal/redistest"
)

// scrape fetches /metrics and parses it with Prometheus's own text parser.
func scrape(t *testing.T, addr string) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(string(body)))
	require.NoError(t, err, "the output parses:\n%s", body)
	return fams
}

// value returns the value of family's sample whose labels include want
// (name, value pairs).
func value(t *testing.T, fams map[string]*dto.MetricFamily, family string, want ...string) float64 {
	t.Helper()
	f := fams[family]
	require.NotNil(t, f, "family %s", family)
next:
	for _, m := range f.Metric {
		labels := map[string]string{}
		for _, l := range m.Label {
			labels[l.GetName()] = l.GetValue()
		}
		for i := 0; i+1 < len(want); i += 2 {
			if labels[want[i]] != want[i+1] {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			return m.Counter.GetValue()
		case m.Gauge != nil:
			return m.Gauge.GetValue()
		case m.Untyped != nil:
			return m.Untyped.GetValue()
		}
	}
	t.Fatalf("%s has no sample with labels %v", family, want)
	return 0
}

// TestMetricsEndpoint: [metrics] listen serves /metrics in the Prometheus
// text format (parsed by Prometheus's parser): the counters, drops by
// reason, per-route counts (a route name that needs escaping included), the
// latency histogram by stage, and the process's own metrics. A Reload that
// turns it off stops it.
func TestMetricsEndpoint(t *testing.T) {
	srv := redistest.Start(t)
	rc := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	defer rc.Close()
	ctx := context.Background()
	base := "[server]\nid = \"prom-1\"\n[redis]\nurl = \"" + srv.URL() + "\"\n[[routes]]\nname = \"in\"\npattern = \"in:*\"\nhandler = \"H\"\nrate = \"1/h\"\nburst = 1\n"
	m, file := start(t, base+"[metrics]\nlisten = \"127.0.0.1:0\"\n")
	require.NoError(t, m.Handler("H", true))
	_, _, err := m.On("odd:*", "quote\" back\\ nl\n", OnOptions{})
	require.NoError(t, err)
	require.Eventually(t, func() bool { return m.Status() == "connected" && m.MetricsAddr() != "" }, 10*time.Second, time.Millisecond)
	// On subscribes on the reader's goroutine: publish once Redis has both
	// patterns, or a message can go out before anyone listens
	require.Eventually(t, func() bool { return rc.PubSubNumPat(ctx).Val() == 2 }, 10*time.Second, time.Millisecond)
	for _, ch := range []string{"in:1", "in:2", "odd:1"} {
		require.NoError(t, rc.Publish(ctx, ch, "x").Err())
	}
	require.Eventually(t, func() bool { return m.Router().Stats.Received.Load() == 3 }, 10*time.Second, time.Millisecond)
	got := 0
	require.Eventually(t, func() bool { got += len(drain(m)); return m.Router().Stats.Dispatched.Load() == 2 }, 10*time.Second, time.Millisecond)

	fams := scrape(t, m.MetricsAddr())
	assert.Equal(t, 3.0, value(t, fams, "realtime_received_total"))
	assert.Equal(t, dto.MetricType_COUNTER, fams["realtime_received_total"].GetType())
	assert.Equal(t, 2.0, value(t, fams, "realtime_dispatched_total"))
	assert.Equal(t, 1.0, value(t, fams, "realtime_dropped_total", "reason", "rate_limited"))
	assert.Equal(t, 0.0, value(t, fams, "realtime_dropped_total", "reason", "queue_full"))
	assert.Equal(t, 1.0, value(t, fams, "realtime_connected"))
	assert.Equal(t, 1.0, value(t, fams, "realtime_info", "server", "prom-1", "mode", "redis"))
	assert.Equal(t, 2.0, value(t, fams, "realtime_route_matched_total", "route", "in"))
	assert.Equal(t, 1.0, value(t, fams, "realtime_route_rate_limited_total", "route", "in"))
	assert.Equal(t, 1.0, value(t, fams, "realtime_route_dispatched_total", "route", "quote\" back\\ nl\n (odd:*)"))
	assert.Equal(t, dto.MetricType_GAUGE, fams["realtime_queue_depth"].GetType())
	assert.Contains(t, fams, "process_resident_memory_bytes")
	assert.Contains(t, fams, "go_goroutines")

	lat := fams["realtime_latency_seconds"]
	require.NotNil(t, lat)
	assert.Equal(t, dto.MetricType_HISTOGRAM, lat.GetType())
	stages := map[string]bool{}
	for _, mt := range lat.Metric {
		stages[mt.Label[0].GetValue()] = true
		h := mt.Histogram
		assert.Equal(t, uint64(2), h.GetSampleCount(), "two events dispatched")
		assert.Len(t, h.Bucket, len(promBuckets)+1, "and +Inf")
		prev := uint64(0)
		for _, b := range h.Bucket {
			assert.GreaterOrEqual(t, b.GetCumulativeCount(), prev, "cumulative")
			prev = b.GetCumulativeCount()
		}
		assert.Greater(t, h.GetSampleSum(), 0.0)
	}
	assert.Equal(t, map[string]bool{"total": true, "module": true, "wait": true}, stages)

	// Off by Reload: nothing listens there any more.
	addr := m.MetricsAddr()
	require.NoError(t, os.WriteFile(file, []byte(base), 0o644))
	_, err = m.Reload()
	require.NoError(t, err)
	assert.Empty(t, m.MetricsAddr())
	_, err = net.Dial("tcp", addr)
	assert.Error(t, err, "the endpoint is closed")
}

// TestMetricsOffByDefault: no listen, no endpoint; an address in use is
// logged and the module works without it.
func TestMetricsOffByDefault(t *testing.T) {
	m, _ := start(t, "")
	assert.Empty(t, m.MetricsAddr())

	busy, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer busy.Close()
	m2, _ := start(t, "[metrics]\nlisten = \""+busy.Addr().String()+"\"\n")
	var logged string
	require.Eventually(t, func() bool {
		for {
			level, line, ok := m2.TakeLog()
			if !ok {
				return false
			}
			if strings.Contains(line, "metrics: cannot listen on") {
				logged = level + ": " + line
				return true
			}
		}
	}, 10*time.Second, time.Millisecond)
	assert.Contains(t, logged, "error: metrics: cannot listen on "+busy.Addr().String())
	assert.Empty(t, m2.MetricsAddr())
	assert.Equal(t, "local", m2.Status())
}

// TestSpoolDepthReported: while Redis is down, what Append spooled shows
// in /metrics (realtime_spool_entries, _bytes, _oldest_age_seconds) and in
// GetStats; once Redis is back and the spool flushed, the heartbeat says
// the spool is empty and the entries are in the stream.
func TestSpoolDepthReported(t *testing.T) {
	srv := redistest.Start(t)
	rc := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	defer rc.Close()
	ctx := context.Background()
	srv.Kill()
	m, _ := start(t, "[server]\nid = \"sp-1\"\n[redis]\nurl = \""+srv.URL()+"\"\nreconnect_min = \"50ms\"\nreconnect_max = \"100ms\"\n"+
		"[metrics]\nlisten = \"127.0.0.1:0\"\nheartbeat = \"1s\"\n")
	require.Eventually(t, func() bool { return m.MetricsAddr() != "" && m.Status() == "disconnected" }, 10*time.Second, time.Millisecond)
	const n = 7
	for i := range n {
		_, err := m.Append("jobs", strings.Repeat("x", i))
		require.NoError(t, err)
	}
	var fams map[string]*dto.MetricFamily
	require.Eventually(t, func() bool {
		fams = scrape(t, m.MetricsAddr())
		return fams["realtime_spool_entries"] != nil && value(t, fams, "realtime_spool_entries") == n
	}, 10*time.Second, 5*time.Millisecond, "the spool's depth in /metrics")
	assert.Greater(t, value(t, fams, "realtime_spool_bytes"), float64(n*(len("jobs"))))
	assert.Equal(t, float64(n), value(t, fams, "realtime_appended_total"))
	assert.Equal(t, 0.0, value(t, fams, "realtime_spool_dropped_total", "reason", "full"))
	assert.GreaterOrEqual(t, value(t, fams, "realtime_spool_oldest_age_seconds"), 0.0)

	srv.Restart()
	require.Eventually(t, func() bool {
		h, err := rc.HGetAll(ctx, "realtime:server:sp-1").Result()
		return err == nil && h["spool_entries"] == "0" && h["spool_bytes"] == "0" && h["appended"] == "7"
	}, 15*time.Second, 10*time.Millisecond, "the heartbeat after the flush")
	l, err := rc.XLen(ctx, "jobs").Result()
	require.NoError(t, err)
	assert.Equal(t, int64(n), l)
	assert.Equal(t, 0.0, value(t, scrape(t, m.MetricsAddr()), "realtime_spool_entries"))
}

package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	_ "embed"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/spf13/cobra"

	"github.com/gmod-realtime/realtime/config"
)

//go:embed web/index.html
var indexHTML []byte

// pagePolicy lets the page run its own script and nothing else: no inline
// event handler, no other script, no other origin (defence in depth: the
// page writes everything from Redis as text), and no other site frame it
// (its follow form under someone else's buttons).
var pagePolicy = func() string {
	_, rest, _ := bytes.Cut(indexHTML, []byte("<script>"))
	script, _, _ := bytes.Cut(rest, []byte("</script>"))
	sum := sha256.Sum256(script)
	return "default-src 'self'; style-src 'unsafe-inline'; script-src 'sha256-" + base64.StdEncoding.EncodeToString(sum[:]) + "'; frame-ancestors 'none'"
}()

// tailBuffer is how many messages a page may be behind on its live tail;
// past it, messages are skipped and the page is told how many.
const tailBuffer = 256

func webCmd(e *env) *cobra.Command {
	var listen string
	cmd := &cobra.Command{
		Use:   "web",
		Short: "Serve a live dashboard: every server's heartbeat, and a live tail",
		Long: `web serves one page (embedded in realtimectl: no CDN, no build step) that lists
every server from its heartbeat, with its rates, queue and drops, refreshed every
second, and follows a pattern live (server-sent events). It listens on loopback by
default: the page shows what is published on your Redis, so put it behind your
own authentication before you listen elsewhere. On loopback it answers only
requests for localhost or an address (not another site's name made to resolve
to 127.0.0.1).

  GET /              the page
  GET /api/servers   the heartbeats as JSON
  GET /api/tail?pattern=GLOB   server-sent events, one per message (at most 16
                               followed at once)`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, c, err := e.client(cmd.Context())
			if err != nil {
				return err
			}
			defer c.Close()
			ln, err := net.Listen("tcp", listen)
			if err != nil {
				return err
			}
			handler := webHandler(cfg, c)
			if ap, err := netip.ParseAddrPort(ln.Addr().String()); err == nil && ap.Addr().IsLoopback() {
				handler = loopbackOnly(handler)
			}
			// the live tails end as shutdown starts, not after its timeout
			base, endTails := context.WithCancel(context.Background())
			defer endTails()
			srv := &http.Server{Handler: handler, ReadHeaderTimeout: 10 * time.Second, BaseContext: func(net.Listener) context.Context { return base }}
			srv.RegisterOnShutdown(endTails)
			fmt.Fprintf(e.stdout, "dashboard on http://%s/ (Redis %s)\n", ln.Addr(), cfg.Redis.Target())
			go func() {
				<-cmd.Context().Done()
				ctx, cancel := context.WithTimeout(context.Background(), time.Second)
				defer cancel()
				_ = srv.Shutdown(ctx)
				_ = srv.Close()
			}()
			if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
				return err
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&listen, "listen", "127.0.0.1:8080", "address to serve the dashboard on")
	return cmd
}

// loopbackOnly refuses a request whose Host is a name other than
// localhost: on a loopback address, that is a page of another site that
// had its name resolve to 127.0.0.1 (DNS rebinding) to read the dashboard,
// and through /api/tail everything published on Redis.
func loopbackOnly(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		host := r.Host
		if h, _, err := net.SplitHostPort(host); err == nil {
			host = h
		}
		host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
		if _, err := netip.ParseAddr(host); err != nil && !strings.EqualFold(host, "localhost") {
			http.Error(w, "the dashboard listens on loopback: open it as localhost or by its address", http.StatusMisdirectedRequest)
			return
		}
		h.ServeHTTP(w, r)
	})
}

// serverJSON is one server of /api/servers.
type serverJSON struct {
	ID        string           `json:"id"`
	Map       string           `json:"map"`
	Status    string           `json:"status"`
	Late      bool             `json:"late"`
	Version   string           `json:"version"`
	UptimeS   int64            `json:"uptime_s"`
	InPerS    float64          `json:"in_per_s"`
	OutPerS   float64          `json:"out_per_s"`
	Queue     int64            `json:"queue_depth"`
	Dropped   map[string]int64 `json:"dropped"`
	P99us     int64            `json:"latency_p99_us"`
	StreamLag int64            `json:"stream_lag"`
	AgeMillis int64            `json:"age_ms"`
}

func webHandler(cfg *config.Config, c redis.UniversalClient) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("Content-Security-Policy", pagePolicy)
		_, _ = w.Write(indexHTML)
	})
	mux.HandleFunc("GET /api/servers", func(w http.ResponseWriter, r *http.Request) {
		beats, err := readHeartbeats(r.Context(), c, cfg.Metrics.Prefix)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		out := make([]serverJSON, 0, len(beats))
		now := time.Now()
		for _, b := range beats {
			out = append(out, serverInfo(b, cfg.Metrics.Prefix, now))
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(out)
	})
	tails := make(chan struct{}, maxTails)
	mux.HandleFunc("GET /api/tail", func(w http.ResponseWriter, r *http.Request) {
		select {
		case tails <- struct{}{}:
			defer func() { <-tails }()
		default:
			http.Error(w, fmt.Sprintf("%d live tails already follow Redis (each holds a connection): close one first", maxTails), http.StatusTooManyRequests)
			return
		}
		tailEvents(w, r, c)
	})
	return mux
}

// maxTails bounds the live /api/tail requests: each holds a Redis
// connection (its PSUBSCRIBE), and a page reloaded in a loop, or left open
// in many tabs, would otherwise hold any number.
const maxTails = 16

func serverInfo(b heartbeat, prefix string, now time.Time) serverJSON {
	f := b.fields
	num := func(k string) int64 { n, _ := strconv.ParseInt(f[k], 10, 64); return n }
	flt := func(k string) float64 { x, _ := strconv.ParseFloat(f[k], 64); return x }
	s := serverJSON{
		ID: f["id"], Map: f["map"], Status: f["status"], Version: f["version"],
		UptimeS: num("uptime_s"), InPerS: flt("in_per_s"), OutPerS: flt("out_per_s"),
		Queue: num("queue_depth"), P99us: num("latency_p99_us"), StreamLag: num("stream_lag"), Dropped: map[string]int64{},
	}
	if s.ID == "" {
		s.ID = strings.TrimPrefix(b.key, prefix)
	}
	for _, r := range dropReasons {
		s.Dropped[r] = num("dropped_" + r)
	}
	if ts := num("ts"); ts > 0 {
		age := now.Sub(time.UnixMilli(ts))
		s.AgeMillis = max(age, 0).Milliseconds()
		iv := num("interval_ms")
		s.Late = iv > 0 && age > 2*time.Duration(iv)*time.Millisecond
	}
	return s
}

// tailEvents follows ?pattern= (a Redis glob, PSUBSCRIBE) as server-sent
// events: {"t", "channel", "payload"} with control and invalid bytes
// escaped as tail prints them, and {"skipped": n} when the page fell
// behind by more than tailBuffer messages.
func tailEvents(w http.ResponseWriter, r *http.Request, c redis.UniversalClient) {
	pat := r.URL.Query().Get("pattern")
	if pat == "" {
		http.Error(w, "pattern is required", http.StatusBadRequest)
		return
	}
	fl, ok := w.(http.Flusher)
	if !ok {
		http.Error(w, "streaming unsupported", http.StatusInternalServerError)
		return
	}
	ctx := r.Context()
	ps := c.PSubscribe(ctx, pat)
	defer ps.Close()
	if _, err := ps.Receive(ctx); err != nil {
		http.Error(w, "psubscribe: "+err.Error(), http.StatusBadGateway)
		return
	}
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-store")
	fmt.Fprint(w, ": subscribed\n\n")
	fl.Flush()
	msgs := make(chan *redis.Message, tailBuffer)
	var skipped atomic.Int64
	go func() { // reads until the request ends and ps is closed
		defer close(msgs)
		for {
			m, err := ps.ReceiveMessage(ctx)
			if err != nil {
				return
			}
			select {
			case msgs <- m:
			default:
				skipped.Add(1)
			}
		}
	}()
	for {
		select {
		case <-ctx.Done():
			return
		case m, ok := <-msgs:
			if !ok {
				return
			}
			var data []byte
			if n := skipped.Swap(0); n > 0 {
				data, _ = json.Marshal(map[string]int64{"skipped": n})
				fmt.Fprintf(w, "data: %s\n\n", data)
			}
			data, _ = json.Marshal(map[string]string{
				"t": time.Now().Format("15:04:05.000"), "channel": string(escape([]byte(m.Channel))), "payload": string(escape([]byte(m.Payload))),
			})
			if _, err := fmt.Fprintf(w, "data: %s\n\n", data); err != nil {
				return
			}
			fl.Flush()
		}
	}
}

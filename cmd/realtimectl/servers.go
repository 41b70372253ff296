package main

import (
	"context"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/spf13/cobra"

	"github.com/gmod-realtime/realtime/router/pattern"
)

// dropReasons are the heartbeat's dropped_<reason> fields, in GetStats
// order.
var dropReasons = []string{"queue_full", "rate_limited", "too_big", "no_route", "no_handler", "handler_error", "internal"}

func serversCmd(e *env) *cobra.Command {
	return &cobra.Command{
		Use:   "servers",
		Short: "List every server's last heartbeat",
		Long: `servers reads the heartbeat hashes the servers write to Redis ([metrics] prefix,
"realtime:server:" by default, then the server id) and prints one line per
server. A server writes its hash every [metrics] heartbeat and Redis deletes it
three intervals after the last write, so a server that stopped disappears; one
whose last heartbeat is older than two intervals is marked "late" (it may be
hung, or cut off from Redis).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, c, err := e.client(cmd.Context())
			if err != nil {
				return err
			}
			defer c.Close()
			beats, err := readHeartbeats(cmd.Context(), c, cfg.Metrics.Prefix)
			if err != nil {
				return err
			}
			printServers(e.stdout, beats, cfg.Metrics.Prefix, time.Now())
			return nil
		},
	}
}

// heartbeat is one server's hash, and how long Redis keeps it.
type heartbeat struct {
	key    string
	fields map[string]string
	ttl    time.Duration
}

// readHeartbeats returns the hashes under prefix, sorted by key. It uses
// SCAN, which never blocks Redis the way KEYS does.
func readHeartbeats(ctx context.Context, c redis.UniversalClient, prefix string) ([]heartbeat, error) {
	match := pattern.Quote(prefix) + "*"
	var keys []string
	scan := func(ctx context.Context, node *redis.Client) error {
		iter := node.ScanType(ctx, 0, match, 1000, "hash").Iterator()
		for iter.Next(ctx) {
			keys = append(keys, iter.Val())
		}
		return iter.Err()
	}
	var err error
	switch cc := c.(type) {
	case *redis.ClusterClient:
		var mu sync.Mutex // ForEachMaster runs the nodes at once
		err = cc.ForEachMaster(ctx, func(ctx context.Context, node *redis.Client) error {
			mu.Lock()
			defer mu.Unlock()
			return scan(ctx, node)
		})
	case *redis.Client:
		err = scan(ctx, cc)
	default:
		iter := c.ScanType(ctx, 0, match, 1000, "hash").Iterator()
		for iter.Next(ctx) {
			keys = append(keys, iter.Val())
		}
		err = iter.Err()
	}
	if err != nil {
		return nil, fmt.Errorf("scan %s: %w", match, err)
	}
	sort.Strings(keys)
	var out []heartbeat
	for _, k := range keys {
		h, err := c.HGetAll(ctx, k).Result()
		if err != nil {
			return nil, fmt.Errorf("hgetall %s: %w", k, err)
		}
		if len(h) == 0 { // expired between SCAN and HGETALL
			continue
		}
		ttl, _ := c.PTTL(ctx, k).Result()
		out = append(out, heartbeat{key: k, fields: h, ttl: ttl})
	}
	return out, nil
}

func printServers(w io.Writer, beats []heartbeat, prefix string, now time.Time) {
	if len(beats) == 0 {
		fmt.Fprintf(w, "no heartbeats under %s* (a server writes one every [metrics] heartbeat while connected to this Redis)\n", prefix)
		return
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tMAP\tSTATUS\tVERSION\tUPTIME\tIN/S\tOUT/S\tQUEUE\tDROPS\tP99\tSTREAM LAG\tLAST SEEN")
	for _, b := range beats {
		f := b.fields
		id := f["id"]
		if id == "" {
			id = strings.TrimPrefix(b.key, prefix)
		}
		status := orDash(f["status"])
		seen := "?"
		if ts, err := strconv.ParseInt(f["ts"], 10, 64); err == nil {
			age := now.Sub(time.UnixMilli(ts))
			seen = shortDuration(max(age, 0)) + " ago"
			if iv, err := strconv.ParseInt(f["interval_ms"], 10, 64); err == nil && iv > 0 && age > 2*time.Duration(iv)*time.Millisecond {
				status += " (late)"
			}
		}
		uptime := "?"
		if s, err := strconv.ParseInt(f["uptime_s"], 10, 64); err == nil {
			uptime = shortDuration(time.Duration(s) * time.Second)
		}
		p99 := "-"
		if us, err := strconv.ParseInt(f["latency_p99_us"], 10, 64); err == nil && us > 0 {
			p99 = shortDuration(time.Duration(us) * time.Microsecond)
		}
		lag := orDash(f["stream_lag"])
		if strings.HasPrefix(lag, "-") && lag != "-" {
			lag = "?" // Redis cannot tell
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", escape([]byte(id)), orDash(f["map"]), status, orDash(f["version"]),
			uptime, orDash(f["in_per_s"]), orDash(f["out_per_s"]), orDash(f["queue_depth"]), drops(f), p99, lag, seen)
	}
	_ = tw.Flush()
}

// drops lists the non-zero drop counts by reason ("rate_limited=600"), or
// "0".
func drops(f map[string]string) string {
	var parts []string
	for _, r := range dropReasons {
		if v := f["dropped_"+r]; v != "" && v != "0" {
			parts = append(parts, r+"="+v)
		}
	}
	if len(parts) == 0 {
		return "0"
	}
	return strings.Join(parts, ",")
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return string(escape([]byte(s)))
}

// shortDuration rounds d for a table: 850µs, 12ms, 4.2s, 3m12s, 5h02m, 3d4h.
func shortDuration(d time.Duration) string {
	switch {
	case d < time.Millisecond:
		return strconv.FormatInt(d.Microseconds(), 10) + "µs"
	case d < time.Second:
		return strconv.FormatInt(d.Milliseconds(), 10) + "ms"
	case d < time.Minute:
		return strconv.FormatFloat(d.Seconds(), 'f', 1, 64) + "s"
	case d < time.Hour:
		return fmt.Sprintf("%dm%02ds", int(d.Minutes()), int(d.Seconds())%60)
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh%02dm", int(d.Hours()), int(d.Minutes())%60)
	}
	return fmt.Sprintf("%dd%dh", int(d.Hours())/24, int(d.Hours())%24)
}

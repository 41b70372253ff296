package main

import (
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/gmod-realtime/realtime/config"
	"github.com/gmod-realtime/realtime/router"
	"github.com/gmod-realtime/realtime/router/pattern"
)

func checkCmd(e *env) *cobra.Command {
	return &cobra.Command{
		Use:   "check [file]",
		Short: "Validate the configuration as the module does and print its plan",
		Long: `check loads the configuration exactly as the module does (the file, the .env
beside it, the REDIS_* environment) and prints every problem, or the plan: the
routes, their handlers and rates, and the Redis subscriptions the module will
make, covering patterns included. Exit status 1 on any problem, so a server's
config can be checked in its own CI.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			file := ""
			if len(args) > 0 {
				file = args[0]
			}
			if file == "" {
				file = e.configFile
			}
			cfg, err := config.Load(config.Options{File: file, Dir: e.dir, Environ: e.environ})
			if err != nil {
				var es config.Errors
				if !errors.As(err, &es) {
					return err
				}
				for _, fe := range es {
					fmt.Fprintln(e.stderr, fe.Error())
				}
				fmt.Fprintf(e.stderr, "%d problems: the module would not load this configuration\n", len(es))
				return exitError{1}
			}
			e.cfg = cfg
			return printPlan(e.stdout, cfg)
		},
	}
}

// printPlan writes what the module will do with cfg.
func printPlan(w io.Writer, cfg *config.Config) error {
	r, err := router.New(cfg)
	if err != nil {
		return err
	}
	defer r.Close()
	file := cfg.File
	if file == "" {
		file = "(no file: defaults and environment)"
	}
	fmt.Fprintf(w, "config:    %s\n", file)
	if cfg.EnvFile != "" {
		fmt.Fprintf(w, ".env:      %s\n", cfg.EnvFile)
	}
	fmt.Fprintf(w, "server:    %s\n", cfg.Server.ID)
	fmt.Fprintf(w, "redis:     %s (%s mode)\n", cfg.Redis.Target(), cfg.Mode())
	fmt.Fprintf(w, "queue:     %d events, %s, %s; payloads up to %s\n", cfg.Queue.MaxEvents, cfg.Queue.MaxBytes, cfg.Queue.Overflow, cfg.Queue.MaxPayload)
	fmt.Fprintf(w, "dispatch:  %s per frame\n", cfg.Dispatch.Budget)
	if cfg.Metrics.Heartbeat > 0 {
		fmt.Fprintf(w, "heartbeat: every %s to %s (expires after %s)\n", cfg.Metrics.Heartbeat, cfg.Metrics.HeartbeatKey(cfg.Server.ID), 3*cfg.Metrics.Heartbeat.D())
	} else {
		fmt.Fprintln(w, "heartbeat: off")
	}
	if !cfg.Local() {
		switch {
		case cfg.Spool.Path == "":
			fmt.Fprintln(w, "spool:     off (durable sends wait in memory while Redis is unreachable)")
		default:
			fmt.Fprintf(w, "spool:     %s, up to %s\n", cfg.Spool.Path, cfg.Spool.MaxBytes)
		}
		switch {
		case cfg.Streams.MaxLen > 0:
			fmt.Fprintf(w, "streams:   XADD trims to about %d entries (MAXLEN ~)\n", cfg.Streams.MaxLen)
		case cfg.Streams.Retention > 0:
			fmt.Fprintf(w, "streams:   XADD trims entries older than %s (MINID ~)\n", cfg.Streams.Retention)
		}
		if cfg.Events.Stream {
			fmt.Fprintln(w, "events:    game events are added to streams (durable), not published")
		}
	}
	if cfg.Metrics.Listen != "" {
		fmt.Fprintf(w, "metrics:   http://%s/metrics\n", cfg.Metrics.Listen)
	}

	routes := r.Table().Routes()
	fmt.Fprintf(w, "\nroutes (%d):\n", len(routes))
	if len(routes) > 0 {
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "  NAME\tMATCHES\tHANDLER\tDECODE\tRATE\tBURST")
		defs := map[string]config.Route{}
		for _, d := range cfg.Routes {
			defs[d.Name] = d
		}
		for _, rt := range routes {
			def := defs[rt.Name]
			match := rt.Pattern()
			switch {
			case def.Channel != "":
				match = "channel " + def.Channel
			case def.Stream != "":
				match = "stream " + def.Stream
			}
			for _, ex := range def.Exclude {
				match += " -" + ex
			}
			burst := "-"
			if !def.Rate.Unlimited() {
				burst = fmt.Sprint(def.Burst)
			}
			fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\t%s\n", rt.Name, match, rt.Handler, rt.Decode, def.Rate, burst)
		}
		_ = tw.Flush()
	}

	switch {
	case !cfg.Local():
		printSubscriptions(w, r.Plan(), routes, cfg.Redis.MaxSubscriptions)
		printStreams(w, r.Plan(), routes)
	case len(r.Plan().Streams) > 0:
		fmt.Fprintln(w, "\nno Redis configured: the module runs in local mode (an in-process bus, no subscriptions)")
		fmt.Fprintln(w, "warning: stream routes read Redis Streams: in local mode they get no entries")
	default:
		fmt.Fprintln(w, "\nno Redis configured: the module runs in local mode (an in-process bus, no subscriptions)")
	}
	for _, warn := range cfg.Warnings {
		fmt.Fprintln(w, "\nwarning: "+warn)
	}
	fmt.Fprintln(w, "\nOK")
	return nil
}

// printSubscriptions lists each SUBSCRIBE and PSUBSCRIBE of plan with the
// routes it carries; a pattern no route has is a covering pattern, whose
// channels the module filters locally.
func printSubscriptions(w io.Writer, plan router.Plan, routes []*router.Route, limit int) {
	fmt.Fprintf(w, "\nRedis subscriptions (%d, redis.max_subscriptions = %d):\n", plan.Len(), limit)
	if plan.Len() == 0 {
		fmt.Fprintln(w, "  none (no routes)")
		return
	}
	carried := map[string][]string{} // "c:"/"p:" + subscription -> route names
	for _, rt := range routes {
		if rt.Stream() != "" {
			continue
		}
		own, _ := pattern.Compile(rt.Pattern())
		if own.IsLiteral() && slices.Contains(plan.Channels, own.Literal()) {
			carried["c:"+own.Literal()] = append(carried["c:"+own.Literal()], rt.Name)
			continue
		}
		if slices.Contains(plan.Patterns, rt.Pattern()) {
			carried["p:"+rt.Pattern()] = append(carried["p:"+rt.Pattern()], rt.Name)
			continue
		}
		for _, p := range plan.Patterns { // covered: by a prefix* pattern
			cp, err := pattern.Compile(p)
			if err == nil && strings.HasPrefix(own.Prefix(), cp.Prefix()) && p == pattern.Quote(cp.Prefix())+"*" {
				carried["p:"+p] = append(carried["p:"+p], rt.Name)
				break
			}
		}
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, c := range plan.Channels {
		fmt.Fprintf(tw, "  SUBSCRIBE\t%s\troutes %s\n", c, strings.Join(carried["c:"+c], ", "))
	}
	for _, p := range plan.Patterns {
		names := carried["p:"+p]
		own := false
		for _, rt := range routes {
			if rt.Pattern() == p && rt.Stream() == "" {
				own = true
			}
		}
		note := "routes " + strings.Join(names, ", ")
		if !own {
			note = "covers routes " + strings.Join(names, ", ") + " (filtered locally)"
		}
		fmt.Fprintf(tw, "  PSUBSCRIBE\t%s\t%s\n", p, note)
	}
	_ = tw.Flush()
	if plan.Len() > limit {
		fmt.Fprintf(w, "  warning: %d subscriptions exceed redis.max_subscriptions (%d): patterns that start with a wildcard cannot be covered\n", plan.Len(), limit)
	}
}

// printStreams lists the streams the stream routes read: the group, where
// a new group starts, and what happens to entries whose handler fails.
func printStreams(w io.Writer, plan router.Plan, routes []*router.Route) {
	if len(plan.Streams) == 0 {
		return
	}
	fmt.Fprintf(w, "\nRedis Streams (%d, consumer %s):\n", len(plan.Streams), plan.Consumer)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, s := range plan.Streams {
		var names []string
		for _, rt := range routes {
			if rt.Stream() == s.Stream {
				names = append(names, rt.Name)
			}
		}
		claims := "own group"
		if s.ClaimAfter > 0 {
			claims = fmt.Sprintf("shared group, claims after %s", s.ClaimAfter)
		}
		fmt.Fprintf(tw, "  XREADGROUP\t%s\tgroup %s (%s), new group starts at %s, %d deliveries then %s:dead\troutes %s\n",
			s.Stream, s.Group, claims, s.Start, s.MaxDeliveries, s.Stream, strings.Join(names, ", "))
	}
	_ = tw.Flush()
}

package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/redis/go-redis/v9"
	"github.com/spf13/cobra"

	"github.com/gmod-realtime/realtime/router"
)

func tailCmd(e *env) *cobra.Command {
	var (
		asJSON bool
		route  string
		count  int
	)
	cmd := &cobra.Command{
		Use:   "tail PATTERN...",
		Short: "Follow channels live: one line per message (time, channel, payload)",
		Long: `tail subscribes to the Redis globs given (PSUBSCRIBE, so "player:*" and an exact
channel both work) and prints one line per message: the local time, the channel
and the payload. Control bytes and bytes that are not UTF-8 are escaped (\n, \x00,
\xff), so every message is one line. --json pretty-prints payloads that are JSON.
--route NAME follows what that route of the configuration would receive: its
pattern or channel, minus its excludes. It runs until interrupted, or --count
messages.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if route == "" && len(args) == 0 {
				return errors.New("tail needs a PATTERN or --route NAME")
			}
			if route != "" && len(args) > 0 {
				return errors.New("give patterns or --route, not both")
			}
			cfg, c, err := e.client(cmd.Context())
			if err != nil {
				return err
			}
			defer c.Close()
			patterns := args
			accept := func(string) bool { return true }
			if route != "" {
				r, err := router.New(cfg)
				if err != nil {
					return err
				}
				rt := r.Table().Route(route)
				_ = r.Close()
				if rt == nil {
					return fmt.Errorf("no route %q in %s", route, cfgName(cfg.File))
				}
				patterns, accept = []string{rt.Pattern()}, rt.Matches
			}
			ctx := cmd.Context()
			ps := c.PSubscribe(ctx, patterns...)
			defer ps.Close()
			if _, err := ps.Receive(ctx); err != nil { // the first confirmation: subscribed
				return fmt.Errorf("psubscribe: %w", err)
			}
			if route != "" {
				fmt.Fprintf(e.stderr, "following route %q: %s\n", route, patterns[0])
			}
			n := 0
			for count <= 0 || n < count {
				msg, err := ps.Receive(ctx)
				if err != nil {
					if ctx.Err() != nil {
						return nil
					}
					return fmt.Errorf("receive: %w", err)
				}
				m, ok := msg.(*redis.Message)
				if !ok || !accept(m.Channel) {
					continue
				}
				if _, err := e.stdout.Write(formatMessage(time.Now(), m.Channel, m.Payload, asJSON)); err != nil {
					return err
				}
				n++
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "pretty-print payloads that are JSON")
	cmd.Flags().StringVar(&route, "route", "", "follow what the config's route NAME receives (pattern minus excludes)")
	cmd.Flags().IntVarP(&count, "count", "n", 0, "exit after this many messages (0: run until interrupted)")
	return cmd
}

func cfgName(file string) string {
	if file == "" {
		return "the configuration"
	}
	return file
}

// formatMessage is tail's output for one message: one line, or with
// pretty (and a JSON payload) the header line and the indented document.
func formatMessage(at time.Time, channel, payload string, pretty bool) []byte {
	b := at.AppendFormat(nil, "15:04:05.000")
	b = append(b, ' ')
	b = append(b, escape([]byte(channel))...)
	b = append(b, ' ')
	if pretty && json.Valid([]byte(payload)) {
		var out bytes.Buffer
		if json.Indent(&out, []byte(payload), "  ", "  ") == nil {
			b = append(b, out.Bytes()...)
			return append(b, '\n')
		}
	}
	b = append(b, escape([]byte(payload))...)
	return append(b, '\n')
}

// escape returns s as printable text: UTF-8 as it is, control bytes and
// invalid bytes escaped as in a Go string (\n, \t, \x00, \xff). A backslash
// stays as it is, so JSON's own escapes read as they were sent.
func escape(s []byte) []byte {
	out := make([]byte, 0, len(s))
	for len(s) > 0 {
		r, size := utf8.DecodeRune(s)
		switch {
		case r == utf8.RuneError && size == 1:
			out = append(out, `\x`...)
			out = append(out, "0123456789abcdef"[s[0]>>4], "0123456789abcdef"[s[0]&15])
		case r < 0x20 || r == 0x7f || !strconv.IsPrint(r) && r != ' ':
			q := strconv.QuoteRune(r) // '\n', '\x00', '\u2028'
			out = append(out, q[1:len(q)-1]...)
		default:
			out = append(out, s[:size]...)
		}
		s = s[size:]
	}
	return out
}

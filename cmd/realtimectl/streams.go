package main

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/spf13/cobra"

	"github.com/gmod-realtime/realtime/router"
)

// deadFields are the fields a dead letter adds to the entry's own.
var deadFields = []string{"rt_source_id", "rt_deliveries", "rt_reason"}

func appendCmd(e *env) *cobra.Command {
	return sendCmd(e, "append STREAM [PAYLOAD|-]",
		"Add one entry to a stream (its data field from the argument, or standard input)",
		`append adds an entry to STREAM (XADD) with the payload in its "data" field, the
field a stream route hands to its handler. The payload is the second argument;
without one, or with "-", it is all of standard input, byte for byte. It prints
the entry's id.`,
		func(ctx context.Context, c redis.UniversalClient, stream string, payload []byte) (string, error) {
			id, err := c.XAdd(ctx, &redis.XAddArgs{Stream: stream, Values: []any{"data", payload}}).Result()
			if err != nil {
				return "", fmt.Errorf("append to %q: %w", stream, err)
			}
			return fmt.Sprintf("appended %d bytes to %s as %s", len(payload), escape([]byte(stream)), id), nil
		})
}

// sendCmd is pub and append: send the payload (the second argument, or
// standard input) to the first argument, and print the line send returns.
func sendCmd(e *env, use, short, long string, send func(ctx context.Context, c redis.UniversalClient, to string, payload []byte) (string, error)) *cobra.Command {
	return &cobra.Command{
		Use: use, Short: short, Long: long,
		Args: cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			payload, err := payloadArg(e, args)
			if err != nil {
				return err
			}
			_, c, err := e.client(cmd.Context())
			if err != nil {
				return err
			}
			defer c.Close()
			line, err := send(cmd.Context(), c, args[0], payload)
			if err != nil {
				return err
			}
			fmt.Fprintln(e.stdout, line)
			return nil
		},
	}
}

// payloadArg is the payload of pub and append: the second argument, or
// standard input without one or with "-".
func payloadArg(e *env, args []string) ([]byte, error) {
	if len(args) == 2 && args[1] != "-" {
		return []byte(args[1]), nil
	}
	payload, err := io.ReadAll(e.stdin)
	if err != nil {
		return nil, fmt.Errorf("reading standard input: %w", err)
	}
	return payload, nil
}

func streamsCmd(e *env) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "streams",
		Short: "Show the stream routes' streams: groups, pending entries, lag, dead letters",
		Long: `streams lists each stream the configuration's stream routes read, with every
consumer group Redis has on it (one per server with the default group), its
pending entries (delivered, not acknowledged), its lag (entries not read yet;
"?" where Redis cannot tell) and its consumers, and the stream's length and
dead letters (<stream>:dead).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, c, err := e.client(cmd.Context())
			if err != nil {
				return err
			}
			defer c.Close()
			r, err := router.New(cfg)
			if err != nil {
				return err
			}
			plan := r.Plan()
			_ = r.Close()
			var names []string
			for _, s := range plan.Streams {
				if !slices.Contains(names, s.Stream) {
					names = append(names, s.Stream)
				}
			}
			if len(names) == 0 {
				fmt.Fprintf(e.stdout, "no stream routes in %s\n", cfgName(cfg.File))
				return nil
			}
			tw := tabwriter.NewWriter(e.stdout, 0, 0, 2, ' ', 0)
			fmt.Fprintln(tw, "STREAM\tLENGTH\tDEAD\tGROUP\tPENDING\tLAG\tCONSUMERS")
			ctx := cmd.Context()
			for _, name := range names {
				length, err := c.XLen(ctx, name).Result()
				if err != nil {
					return fmt.Errorf("xlen %s: %w", name, err)
				}
				dead, err := c.XLen(ctx, name+":dead").Result()
				if err != nil {
					return fmt.Errorf("xlen %s:dead: %w", name, err)
				}
				groups, err := c.XInfoGroups(ctx, name).Result()
				if err != nil && !strings.Contains(err.Error(), "no such key") {
					return fmt.Errorf("xinfo groups %s: %w", name, err)
				}
				if len(groups) == 0 {
					fmt.Fprintf(tw, "%s\t%d\t%d\t-\t-\t-\t-\n", escape([]byte(name)), length, dead)
				}
				for _, g := range groups {
					lag := "?"
					if g.Lag >= 0 {
						lag = fmt.Sprint(g.Lag)
					}
					fmt.Fprintf(tw, "%s\t%d\t%d\t%s\t%d\t%s\t%d\n", escape([]byte(name)), length, dead, escape([]byte(g.Name)), g.Pending, lag, g.Consumers)
				}
			}
			return tw.Flush()
		},
	}
	cmd.AddCommand(requeueDeadCmd(e))
	return cmd
}

func requeueDeadCmd(e *env) *cobra.Command {
	return &cobra.Command{
		Use:   "requeue-dead STREAM",
		Short: "Move STREAM's dead letters back to STREAM",
		Long: `requeue-dead moves every entry STREAM:dead has when it starts back to STREAM
(one that dies again meanwhile waits for the next run), oldest first, with
its own fields (the rt_source_id, rt_deliveries and rt_reason the dead letter
added are left out), as new entries that every group reads again. Each entry is
added to STREAM before it is deleted from STREAM:dead: an interrupted run can
add one entry twice, never lose one. One run at a time per stream: a second
one started meanwhile (elsewhere too) stops at once, since both would add the
same entries (STREAM:dead:requeue holds the run's claim, renewed every 5 s,
for 15 s); a run stalled past its claim stops. It prints its progress every 1,000 entries on standard error.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			_, c, err := e.client(cmd.Context())
			if err != nil {
				return err
			}
			defer c.Close()
			ctx, stream := cmd.Context(), args[0]
			dead := stream + ":dead"
			moved := 0
			claim, err := claimRequeue(ctx, c, dead)
			if err != nil {
				return err
			}
			defer claim.release(ctx)
			// the dead letters there now: one that dies again while this
			// runs waits for the next run instead of going round forever
			last, err := c.XRevRangeN(ctx, dead, "+", "-", 1).Result()
			if err != nil {
				return fmt.Errorf("xrevrange %s: %w", dead, err)
			}
			for len(last) > 0 {
				batch, err := xrange(ctx, c, dead, last[0].ID, 100)
				if err != nil {
					return fmt.Errorf("xrange %s: %w", dead, err)
				}
				if len(batch) == 0 {
					break
				}
				for _, m := range batch {
					own := ownFields(m.fields)
					values := make([]any, 0, len(own))
					for _, f := range own {
						values = append(values, f)
					}
					if len(values) == 0 {
						return fmt.Errorf("%s entry %s has no fields of its own", dead, m.id)
					}
					if err := claim.hold(ctx); err != nil {
						return fmt.Errorf("%w; stopped after %d moved", err, moved)
					}
					if err := c.XAdd(ctx, &redis.XAddArgs{Stream: stream, Values: values}).Err(); err != nil {
						return fmt.Errorf("xadd %s (after %d moved): %w", stream, moved, err)
					}
					if err := c.XDel(ctx, dead, m.id).Err(); err != nil {
						return fmt.Errorf("xdel %s %s (after %d moved): %w", dead, m.id, moved, err)
					}
					moved++
					if moved%1000 == 0 {
						fmt.Fprintf(e.stderr, "%d moved\n", moved)
					}
				}
			}
			if moved == 0 {
				return errors.New("no dead letters in " + string(escape([]byte(dead))))
			}
			fmt.Fprintf(e.stdout, "moved %d entries from %s back to %s\n", moved, escape([]byte(dead)), escape([]byte(stream)))
			return nil
		},
	}
}

// requeueClaim (after "<stream>:dead") is the key a requeue-dead run
// holds while it moves entries, for requeueClaimFor past its last renewal.
const requeueClaim = ":requeue"

var requeueClaimFor = 15 * time.Second // tests shorten it

// requeueRenew renews a claim (KEYS[1]) still holding this run's token
// (ARGV[1]) for ARGV[2] ms; requeueRelease deletes it. Both answer 0 when
// another run holds it now: a GET then a PEXPIRE or DEL could extend or
// end that run's claim.
var (
	requeueRenew   = redis.NewScript(`if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) end return 0`)
	requeueRelease = redis.NewScript(`if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end return 0`)
)

// requeueLease is a requeue-dead run's claim on a dead-letter stream.
type requeueLease struct {
	c          redis.UniversalClient
	key, token string
	renewed    time.Time // when the last renewal was sent
}

// claimRequeue takes dead's requeue claim, or says who holds it.
func claimRequeue(ctx context.Context, c redis.UniversalClient, dead string) (*requeueLease, error) {
	key := dead + requeueClaim
	host, _ := os.Hostname()
	var nonce [4]byte
	_, _ = rand.Read(nonce[:])
	// the nonce: two runs with one host name and pid (containers) differ
	token := fmt.Sprintf("%s pid %d at %s (%x)", host, os.Getpid(), time.Now().UTC().Format(time.RFC3339), nonce)
	ok, err := c.SetNX(ctx, key, token, requeueClaimFor).Result()
	if err != nil {
		return nil, fmt.Errorf("set %s: %w", key, err)
	}
	if !ok {
		holder, _ := c.Get(ctx, key).Result()
		return nil, fmt.Errorf("another requeue-dead is moving %s (%s); running both would add its entries twice (%s ends %s after its last batch)",
			escape([]byte(dead)), escape([]byte(holder)), escape([]byte(key)), requeueClaimFor)
	}
	l := &requeueLease{c: c, key: key, token: token}
	// renewed once now: an ACL refusing the script stops the run before
	// it moves anything with a claim it could not keep
	if err := l.hold(ctx); err != nil {
		l.release(ctx)
		return nil, err
	}
	return l, nil
}

// hold makes sure the claim is still this run's before an entry is added:
// once a third of its time has passed it is renewed, and a claim that
// ran out during a stall (another run may have taken it and moved the
// same entries) stops the run.
func (l *requeueLease) hold(ctx context.Context) error {
	if !l.renewed.IsZero() && time.Since(l.renewed) < requeueClaimFor/3 {
		return nil
	}
	sent := time.Now()
	n, err := requeueRenew.Run(ctx, l.c, []string{l.key}, l.token, requeueClaimFor.Milliseconds()).Int64()
	if err != nil {
		return fmt.Errorf("renew %s: %w", escape([]byte(l.key)), err)
	}
	if n == 0 {
		holder, _ := l.c.Get(ctx, l.key).Result()
		if holder == "" {
			holder = "nobody now"
		}
		return fmt.Errorf("lost the claim %s (held by %s) in a stall of more than %s: another run may be moving the same entries, so this one stops rather than add them twice",
			escape([]byte(l.key)), escape([]byte(holder)), requeueClaimFor)
	}
	l.renewed = sent
	return nil
}

// release gives the claim back if it is still this run's.
func (l *requeueLease) release(ctx context.Context) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := requeueRelease.Run(ctx, l.c, []string{l.key}, l.token).Err(); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		// scripts refused: compared here instead, a claim taken between
		// the GET and the DEL (this one just ran out) is the only risk
		if v, err := l.c.Get(ctx, l.key).Result(); err == nil && v == l.token {
			_ = l.c.Del(ctx, l.key).Err()
		}
	}
}

// ownFields is a dead letter's fields without those the dead letter
// appended after the entry's own (rt_source_id, rt_deliveries and maybe
// rt_reason): an own field with one of those names stays.
func ownFields(fields []string) []string {
	end := len(fields) - len(fields)%2
	for end >= 2 && slices.Contains(deadFields, fields[end-2]) {
		end -= 2
		if fields[end] == "rt_source_id" {
			return fields[:end]
		}
	}
	return fields[:len(fields)-len(fields)%2] // not one the module wrote: all its fields
}

// entry is a stream entry with its fields in order (go-redis's XMessage
// keeps them in a map).
type entry struct {
	id     string
	fields []string
}

// xrange returns the first n entries of stream up to the id end ("+" for
// all), fields in order.
func xrange(ctx context.Context, c redis.UniversalClient, stream, end string, n int) ([]entry, error) {
	v, err := c.Do(ctx, "XRANGE", stream, "-", end, "COUNT", n).Slice()
	if err != nil {
		return nil, err
	}
	out := make([]entry, 0, len(v))
	for _, item := range v {
		pair, ok := item.([]any)
		if !ok || len(pair) != 2 {
			return nil, fmt.Errorf("unexpected XRANGE reply %v", item)
		}
		id, _ := pair[0].(string)
		raw, _ := pair[1].([]any)
		e := entry{id: id, fields: make([]string, 0, len(raw))}
		for _, f := range raw {
			s, _ := f.(string)
			e.fields = append(e.fields, s)
		}
		out = append(out, e)
	}
	return out, nil
}

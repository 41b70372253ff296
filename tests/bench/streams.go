package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/gmod-realtime/realtime/router/spool"
)

var (
	streamN      = flag.Int("stream-n", 200_000, "entries per stream-route round")
	spoolN       = flag.Int("spool-n", 50_000, "entries per spool round")
	streamRounds = flag.Int("rounds", 3, "interleaved rounds of the streams and spool scenarios")
)

// streamReadCount is the reference's COUNT: a plain consumer's, and the
// module's first read (redisbus.StreamOptions.Count's default; in a
// backlog the module's reads grow to StreamOptions.MaxCount, 1000).
const streamReadCount = 100

func median(xs []float64) float64 {
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	return s[len(s)/2]
}

func rates(xs []float64) string {
	parts := make([]string, len(xs))
	for i, x := range xs {
		parts[i] = fmt.Sprintf("%.0f", x)
	}
	return strings.Join(parts, "/")
}

// xaddN appends n entries (field data, payload(i)) to stream, pipelined
// batch at a time; it returns the time taken.
func xaddN(c *redis.Client, stream string, n, batch int, payload func(int) string) (time.Duration, error) {
	ctx := context.Background()
	t0 := time.Now()
	for i := 0; i < n; {
		p := c.Pipeline()
		for j := 0; j < batch && i < n; j, i = j+1, i+1 {
			p.XAdd(ctx, &redis.XAddArgs{Stream: stream, Values: []any{"data", payload(i)}})
		}
		if _, err := p.Exec(ctx); err != nil {
			return 0, err
		}
	}
	return time.Since(t0), nil
}

// rawStreamConsumer is the reference: a plain go-redis consumer reading
// stream in its own group (from the start) with XREADGROUP COUNT
// streamReadCount BLOCK 100, acknowledging each batch with one XACK sent
// in the same pipeline as the next read. It returns entries per second
// from the first entry read to the last XACK answered.
func rawStreamConsumer(c *redis.Client, stream, group string, n int) (float64, error) {
	ctx := context.Background()
	if err := c.XGroupCreateMkStream(ctx, stream, group, "0").Err(); err != nil {
		return 0, err
	}
	var first time.Time
	var ack []string
	got := 0
	for got < n || len(ack) > 0 {
		p := c.Pipeline()
		if len(ack) > 0 {
			p.XAck(ctx, stream, group, ack...)
		}
		var read *redis.XStreamSliceCmd
		if got < n {
			read = p.XReadGroup(ctx, &redis.XReadGroupArgs{Group: group, Consumer: "ref", Streams: []string{stream, ">"}, Count: streamReadCount, Block: 100 * time.Millisecond})
		}
		_, err := p.Exec(ctx)
		if err != nil && err != redis.Nil {
			return 0, err
		}
		ack = ack[:0]
		if read == nil {
			break
		}
		res, _ := read.Result()
		for _, s := range res {
			for _, m := range s.Messages {
				ack = append(ack, m.ID)
			}
		}
		if len(ack) > 0 && first.IsZero() {
			first = time.Now()
		}
		got += len(ack)
	}
	pending, err := c.XPending(ctx, stream, group).Result()
	if err != nil {
		return 0, err
	}
	if pending.Count != 0 {
		return 0, fmt.Errorf("reference: %d entries left pending", pending.Count)
	}
	return float64(n) / time.Since(first).Seconds(), nil
}

// streams: a stream route (XREADGROUP, a Lua handler, XACK) on a stream
// pre-filled with -stream-n entries, beside a plain go-redis consumer of
// the same stream in a group of its own, in -rounds interleaved rounds
// while a host with the module spins its frames beside it (as for
// throughput: the same CPU left for Redis).
func (b *bench) streams() error {
	n := *streamN
	const stream = "bench:stream"
	srv, c, err := launchRedis(filepath.Join(b.dir, "streams-redis"))
	if err != nil {
		return err
	}
	defer srv.Stop()
	defer c.Close()
	fill, err := xaddN(c, stream, n, 1000, func(i int) string { return "player" + strconv.Itoa(i) + " spawned" })
	if err != nil {
		return err
	}
	b.add(row{"streams", fmt.Sprintf("go-redis pipelined XADD filling the stream, entries/s (%d)", n), "-", fmt.Sprintf("%.0f", float64(n)/fill.Seconds()), "-", ""})

	var mods, acks, refs []float64
	queueFull := 0.0
	for round := 0; round < *streamRounds; round++ {
		spin, err := b.server("streams-spin", redisTOML(srv, "[[routes]]\npattern = \"idle:*\"\nhandler = \"H\"\n"))
		if err != nil {
			return err
		}
		spinner, err := start(spin, "sink.lua", 0)
		if err != nil {
			return err
		}
		if _, err := wait(spinner, "ready", 30*time.Second); err != nil {
			spinner.Kill()
			return err
		}
		ref, err := rawStreamConsumer(c, stream, fmt.Sprintf("ref-%d", round), n)
		spinner.Kill()
		if err != nil {
			return err
		}
		refs = append(refs, ref)

		route := fmt.Sprintf("[[routes]]\nname = \"bench\"\nstream = %q\nhandler = \"H\"\ngroup = \"mod-%d\"\nstart = \"0\"\n", stream, round)
		s, err := b.server("streams", redisTOML(srv, route))
		if err != nil {
			return err
		}
		h, err := start(s, "stream.lua", 0, "BENCH_N="+strconv.Itoa(n), "BENCH_STREAM="+stream)
		if err != nil {
			return err
		}
		res, err := wait(h, "stream", 10*time.Minute)
		h.Kill()
		if err != nil {
			return err
		}
		pending, err := c.XPending(context.Background(), stream, fmt.Sprintf("mod-%d", round)).Result()
		if err != nil {
			return err
		}
		if pending.Count != 0 || res["count"] != float64(n) {
			return fmt.Errorf("module: %.0f of %d handled, %d left pending", res["count"], n, pending.Count)
		}
		mods = append(mods, float64(n)/(res["last"]-res["first"]))
		acks = append(acks, float64(n)/(res["acked"]-res["first"]))
		queueFull += res["queue_full"]
		fmt.Printf("streams      round %d: module %.0f entries/s handled, %.0f acknowledged; reference %.0f\n", round+1, mods[round], acks[round], ref)
	}
	// The ratio is the median of the rounds' ratios: each round's module
	// and reference ran back to back, under the same load.
	var ratios, handledRatios []float64
	for i := range acks {
		ratios = append(ratios, acks[i]/refs[i])
		handledRatios = append(handledRatios, mods[i]/refs[i])
	}
	perRound := make([]string, len(ratios))
	for i, r := range ratios {
		perRound[i] = fmt.Sprintf("%.2f", r)
	}
	b.add(row{"streams", fmt.Sprintf("stream route into a Lua handler, %d entries: entries/s acknowledged, median of %d rounds (module %s; ref %s; ratios %s; queue_full %.0f)",
		n, len(acks), rates(acks), rates(refs), strings.Join(perRound, "/"), queueFull),
		fmt.Sprintf("%.0f", median(acks)), fmt.Sprintf("%.0f", median(refs)), fmt.Sprintf("%.2f", median(ratios)), "ratio >= 0.8"})
	b.add(row{"streams", "  the same, entries/s handled (first to last handler call)", fmt.Sprintf("%.0f", median(mods)), fmt.Sprintf("%.0f", median(refs)), fmt.Sprintf("%.2f", median(handledRatios)), ""})
	return nil
}

// spoolRates: the spool (router/spool) on a local disk: -spool-n entries
// of 200 bytes Added and committed (a Sync every 1,000, as the module's
// writer batches), then Flushed (XADD pipelines, then deleted) to a local
// redis-server; beside go-redis pipelining the same XADDs (the spool's
// FlushBatch at a time), in -rounds interleaved rounds.
func (b *bench) spoolRates() error {
	n := *spoolN
	payload := []byte(strings.Repeat("p", 200))
	srv, c, err := launchRedis(filepath.Join(b.dir, "spool-redis"))
	if err != nil {
		return err
	}
	defer srv.Stop()
	defer c.Close()
	flushClient := redis.NewClient(&redis.Options{Addr: srv.Addr(), Protocol: 2, MaxRetries: -1})
	defer flushClient.Close()
	const batch = 256 // spool.Options.FlushBatch's default
	var adds, flushes, refs []float64
	for round := 0; round < *streamRounds; round++ {
		ref, err := xaddN(c, "bench:ref", n, batch, func(int) string { return string(payload) })
		if err != nil {
			return err
		}
		refs = append(refs, float64(n)/ref.Seconds())

		dir := filepath.Join(b.dir, "spool")
		_ = os.RemoveAll(dir)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
		sp, err := spool.Open(filepath.Join(dir, "spool.db"), spool.Options{ServerID: "bench", MaxBytes: 1 << 40})
		if err != nil {
			return err
		}
		t0 := time.Now()
		for i := 1; i <= n && err == nil; i++ {
			if _, err = sp.Add("bench:spool", payload); err == nil && i%1000 == 0 {
				err = sp.Sync()
			}
		}
		if err == nil {
			err = sp.Sync()
		}
		add := time.Since(t0)
		if err != nil {
			_ = sp.Close()
			return err
		}
		t0 = time.Now()
		flushed, err := sp.Flush(context.Background(), flushClient, 0)
		flush := time.Since(t0)
		left := sp.Stats()
		_ = sp.Close()
		if err == nil && flushed != n {
			err = fmt.Errorf("flushed %d of %d", flushed, n)
		}
		if err != nil {
			return err
		}
		if left.Depth != 0 {
			return errors.New("spool not empty after Flush")
		}
		adds = append(adds, float64(n)/add.Seconds())
		flushes = append(flushes, float64(n)/flush.Seconds())
		fmt.Printf("spool        round %d: Add+commit %.0f entries/s, Flush %.0f entries/s; reference XADD %.0f\n", round+1, adds[round], flushes[round], refs[round])
	}
	ref := median(refs)
	add, flush := median(adds), median(flushes)
	b.add(row{"spool", fmt.Sprintf("Add + commit, 200-byte entries/s, %d per round, median of %d (%s; ref: pipelined XADD %s)", n, len(adds), rates(adds), rates(refs)),
		fmt.Sprintf("%.0f", add), fmt.Sprintf("%.0f", ref), ratio(add, ref), ""})
	b.add(row{"spool", fmt.Sprintf("Flush to Redis (XADD pipelines, then delete), entries/s (%s)", rates(flushes)),
		fmt.Sprintf("%.0f", flush), fmt.Sprintf("%.0f", ref), ratio(flush, ref), ""})
	return nil
}

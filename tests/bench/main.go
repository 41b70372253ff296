// Command bench is `make bench`: the module loaded in the GMod-like host
// (tests/host) with a trivial Lua handler, against a fresh redis-server on
// loopback per scenario, each figure beside a reference measured in the same
// run (a plain go-redis v9 subscriber, a pure-Lua equivalent, the host with
// no module). It prints one line per figure and ends with a markdown table,
// also written to build/bench.md, that states the machine and versions.
//
//	go run ./tests/bench [-only throughput,latency,frames,memory,cpu,maincost,streams,spool,soak] [-soak 2m]
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/gmod-realtime/realtime/internal/gmodserver"
	"github.com/gmod-realtime/realtime/internal/redistest"
)

var (
	only    = flag.String("only", "throughput,latency,frames,memory,cpu,maincost,streams,spool,soak", "scenarios to run")
	events  = flag.Int("n", 1_000_000, "events per throughput run")
	soakFor = flag.Duration("soak", envDuration("SOAK", 2*time.Minute), "soak duration ($SOAK)")
	cpuFor  = flag.Duration("cpu", envDuration("BENCH_CPU", 30*time.Second), "each CPU measurement ($BENCH_CPU)")
	// refSub makes this binary the cpu scenario's reference: a plain
	// go-redis v9 subscriber in a process of its own (so its CPU time is
	// read as the host's is), subscribed to the channels given.
	refSub = flag.String("refsub", "", "internal: run as the reference subscriber of ADDR (channels in the arguments)")
)

func envDuration(name string, def time.Duration) time.Duration {
	if d, err := time.ParseDuration(os.Getenv(name)); err == nil {
		return d
	}
	return def
}

// row is one line of the final table.
type row struct {
	scenario, figure, module, reference, ratio, target string
}

type bench struct {
	repo, dir string
	rows      []row
}

func main() {
	flag.Parse()
	if *refSub != "" {
		runRefSub(*refSub, flag.Args())
		return
	}
	repo, err := gmodserver.Repo()
	if err != nil {
		fail(err)
	}
	b := &bench{repo: repo, dir: filepath.Join(repo, "build", "bench")}
	_ = os.RemoveAll(b.dir)
	scenarios := map[string]func() error{
		"throughput": b.throughput, "latency": b.latency, "memory": b.memory,
		"cpu": b.cpu, "maincost": b.maincost, "soak": b.soak, "frames": b.frames,
		"streams": b.streams, "spool": b.spoolRates,
	}
	for _, name := range strings.Split(*only, ",") {
		run, ok := scenarios[name]
		if !ok {
			fail(fmt.Errorf("no scenario %q", name))
		}
		if err := run(); err != nil {
			fail(fmt.Errorf("%s: %w", name, err))
		}
	}
	table := b.table()
	fmt.Println()
	fmt.Print(table)
	if err := os.WriteFile(filepath.Join(b.repo, "build", "bench.md"), []byte(table), 0o644); err != nil {
		fail(err)
	}
	fmt.Println("\nwritten to build/bench.md")
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "bench:", err)
	os.Exit(1)
}

func (b *bench) add(r row) {
	b.rows = append(b.rows, r)
	fmt.Printf("%-12s %-44s module %-14s reference %-14s ratio %-6s %s\n", r.scenario, r.figure, r.module, r.reference, r.ratio, r.target)
}

func ratio(module, reference float64) string {
	if reference == 0 {
		return "-"
	}
	return fmt.Sprintf("%.2f", module/reference)
}

// ---- Running the host --------------------------------------------------

// server makes a server directory under build/bench with config toml.
func (b *bench) server(name, toml string) (*gmodserver.Server, error) {
	root := filepath.Join(b.dir, name)
	_ = os.RemoveAll(root)
	s, err := gmodserver.New(b.repo, root, gmodserver.LuaJIT64, nil)
	if err != nil {
		return nil, err
	}
	return s, s.WriteConfig(toml)
}

// start runs tests/bench/<script> in the host, with no timeout of its own.
func start(s *gmodserver.Server, script string, tickrate int, env ...string) (*gmodserver.Process, error) {
	return s.Start(filepath.Join(s.Repo, "tests/bench", script), tickrate, 2*time.Hour, env...)
}

// wait returns the key=value fields of the next "bench:<prefix>" line.
func wait(h *gmodserver.Process, prefix string, timeout time.Duration) (map[string]float64, error) {
	line, err := h.WaitLine("bench:"+prefix, timeout)
	if err != nil {
		return nil, err
	}
	return fields(line), nil
}

func fields(line string) map[string]float64 {
	m := map[string]float64{}
	for _, f := range strings.Fields(line) {
		if k, v, ok := strings.Cut(f, "="); ok {
			m[k], _ = strconv.ParseFloat(v, 64)
		}
	}
	return m
}

// cpuSeconds is the process's user+system CPU time.
func cpuSeconds(pid int) (float64, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	f := strings.Fields(string(data[bytes.LastIndexByte(data, ')')+2:]))
	utime, _ := strconv.ParseFloat(f[11], 64)
	stime, _ := strconv.ParseFloat(f[12], 64)
	return (utime + stime) / 100, nil // USER_HZ is 100 on Linux
}

// ctxSwitches is the voluntary and involuntary context switches of all the
// process's threads (/proc/<pid>/task/*/status) so far; a thread that
// exited is not counted, which the hosts here do not do.
func ctxSwitches(pid int) (float64, error) {
	tasks, err := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/status", pid))
	if err != nil || len(tasks) == 0 {
		return 0, fmt.Errorf("no tasks of %d: %v", pid, err)
	}
	var n float64
	for _, t := range tasks {
		data, err := os.ReadFile(t)
		if err != nil {
			continue // a thread that just exited
		}
		for _, line := range strings.Split(string(data), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.HasSuffix(k, "ctxt_switches") {
				f, _ := strconv.ParseFloat(strings.TrimSpace(v), 64)
				n += f
			}
		}
	}
	return n, nil
}

// usage is a process's CPU time and context switches.
type usage struct{ cpu, switches float64 }

func readUsage(pid int) (usage, error) {
	c, err := cpuSeconds(pid)
	if err != nil {
		return usage{}, err
	}
	n, err := ctxSwitches(pid)
	return usage{c, n}, err
}

// runRefSub is the cpu scenario's reference process: a plain go-redis v9
// subscriber of channels on addr that counts what it receives; it prints
// "bench:ready" once subscribed, and its count when stdin closes.
func runRefSub(addr string, channels []string) {
	c := redis.NewClient(&redis.Options{Addr: addr, Protocol: 2})
	ctx := context.Background()
	ps := c.Subscribe(ctx, channels...)
	for range channels {
		if _, err := ps.Receive(ctx); err != nil {
			fail(err)
		}
	}
	var mu sync.Mutex
	count := 0
	go func() {
		for {
			if _, err := ps.ReceiveMessage(ctx); err != nil {
				return
			}
			mu.Lock()
			count++
			mu.Unlock()
		}
	}()
	fmt.Println("bench:ready")
	_, _ = bufio.NewReader(os.Stdin).ReadString('\n')
	mu.Lock()
	fmt.Printf("bench:done count=%d\n", count)
	mu.Unlock()
}

// ---- Redis side ------------------------------------------------------

func launchRedis(dir string) (*redistest.Server, *redis.Client, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, nil, err
	}
	srv, err := redistest.Launch(dir)
	if err != nil {
		return nil, nil, err
	}
	return srv, redis.NewClient(&redis.Options{Addr: srv.Addr(), Protocol: 2}), nil
}

// publishN publishes n messages to channel, pipelined 1,000 at a time, as
// fast as Redis takes them; it returns the time taken.
func publishN(c *redis.Client, channel string, n int, payload func(int) string) time.Duration {
	ctx := context.Background()
	t0 := time.Now()
	for i := 0; i < n; {
		p := c.Pipeline()
		for j := 0; j < 1000 && i < n; j, i = j+1, i+1 {
			p.Publish(ctx, channel, payload(i))
		}
		_, _ = p.Exec(ctx)
	}
	return time.Since(t0)
}

// publishPaced publishes rate messages per second for d, every millisecond,
// each stamped with the unix nanoseconds it was sent at; it returns the
// count.
func publishPaced(c *redis.Client, channels []string, rate int, d time.Duration, payload func(stamp int64) string) int {
	ctx := context.Background()
	t0 := time.Now()
	sent := 0
	for time.Since(t0) < d {
		due := int(float64(rate) * time.Since(t0).Seconds())
		if due > sent {
			p := c.Pipeline()
			for ; sent < due; sent++ {
				p.Publish(ctx, channels[sent%len(channels)], payload(time.Now().UnixNano()))
			}
			_, _ = p.Exec(ctx)
		}
		time.Sleep(time.Millisecond)
	}
	return sent
}

// rawSubscriber is the reference: a plain go-redis v9 subscriber that counts
// (and, with stamps, measures latency).
type rawSubscriber struct {
	ps    *redis.PubSub
	mu    sync.Mutex
	count int
	last  time.Time
	lat   []float64 // µs
}

func subscribe(c *redis.Client, pattern string, stamps bool) (*rawSubscriber, error) {
	return subscribeDecoding(c, pattern, stamps, false)
}

// subscribeDecoding is subscribe; with decode, each payload is decoded with
// encoding/json into a map[string]any (the fair reference for a route that
// decodes JSON), and a payload that does not decode is not counted.
func subscribeDecoding(c *redis.Client, pattern string, stamps, decode bool) (*rawSubscriber, error) {
	ps := c.PSubscribe(context.Background(), pattern)
	if _, err := ps.Receive(context.Background()); err != nil {
		return nil, err
	}
	s := &rawSubscriber{ps: ps}
	go func() {
		for {
			m, err := ps.ReceiveMessage(context.Background())
			if err != nil {
				return
			}
			if decode {
				var v map[string]any
				if json.Unmarshal([]byte(m.Payload), &v) != nil {
					continue
				}
			}
			now := time.Now()
			s.mu.Lock()
			s.count++
			s.last = now
			if stamps {
				if ns, err := strconv.ParseInt(strings.SplitN(m.Payload, ":", 2)[0], 10, 64); err == nil {
					s.lat = append(s.lat, float64(now.UnixNano()-ns)/1e3)
				}
			}
			s.mu.Unlock()
		}
	}()
	return s, nil
}

// waitCount waits until n messages arrived or none arrived for 3 s; it
// returns the count and the time of the last one.
func (s *rawSubscriber) waitCount(n int) (int, time.Time) {
	for {
		time.Sleep(5 * time.Millisecond)
		s.mu.Lock()
		count, last := s.count, s.last
		s.mu.Unlock()
		if count >= n || (!last.IsZero() && time.Since(last) > 3*time.Second) {
			return count, last
		}
	}
}

func percentiles(lat []float64) (p50, p99, p999 float64) {
	if len(lat) == 0 {
		return
	}
	sort.Float64s(lat)
	at := func(p float64) float64 { return lat[max(0, int(math.Ceil(float64(len(lat))*p))-1)] }
	return at(0.5), at(0.99), at(0.999)
}

// ---- Scenarios -------------------------------------------------------

const json10 = `{"name":"player%d","steamid":"STEAM_0:1:12345","team":2,"score":1234,"kills":17,"deaths":3,"alive":true,"weapon":"weapon_ak47","pos":{"x":1,"y":2,"z":3},"ping":48}`

func routesTOML(extra int, decode string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "[[routes]]\nname = \"main\"\npattern = \"player:*\"\nhandler = \"H\"\ndecode = %q\n", decode)
	for i := 0; i < extra; i++ {
		fmt.Fprintf(&b, "\n[[routes]]\nname = \"other%d\"\npattern = \"other:%d:*\"\nhandler = \"H\"\n", i, i)
	}
	return b.String()
}

func redisTOML(srv *redistest.Server, rest string) string {
	return fmt.Sprintf("[server]\nid = \"bench\"\n\n[redis]\nurl = %q\n\n%s", srv.URL(), rest)
}

// spinner starts a host with the module connected to srv, spinning its
// frames at a full core and subscribed to nothing that is published: run
// beside a reference, it leaves the reference the CPU a module's spinning
// host leaves the module (on 2 cores, one).
func (b *bench) spinner(srv *redistest.Server) (*gmodserver.Process, error) {
	spin, err := b.server("spin", redisTOML(srv, "[[routes]]\npattern = \"idle:*\"\nhandler = \"H\"\n"))
	if err != nil {
		return nil, err
	}
	h, err := start(spin, "sink.lua", 0)
	if err != nil {
		return nil, err
	}
	if _, err := wait(h, "ready", 30*time.Second); err != nil {
		h.Kill()
		return nil, err
	}
	return h, nil
}

// throughput: N events to player:spawn, routed by player:* to a Lua
// handler, the host pumping every frame with no sleep; beside a raw
// go-redis subscriber that only counts.
func (b *bench) throughput() error {
	n := *events
	for _, v := range []struct {
		name, decode string
		extra        int
	}{{"1 route", "raw", 0}, {"1 route, JSON to tables", "json", 0}, {"100 routes", "raw", 99}, {"1,000 routes", "raw", 999}} {
		payload := func(i int) string { return "player" + strconv.Itoa(i) + " spawned" }
		if v.decode == "json" {
			payload = func(i int) string { return fmt.Sprintf(json10, i) }
		}
		dir := filepath.Join(b.dir, "throughput")
		srv, c, err := launchRedis(dir)
		if err != nil {
			return err
		}
		// Reference: the raw subscriber, while a host with the module
		// spins its frames beside it (subscribed to nothing that is
		// published), so both runs have the same CPU left for Redis.
		ref := func(decode bool) (float64, time.Duration, error) {
			sub, err := subscribeDecoding(c, "player:*", false, decode)
			if err != nil {
				return 0, 0, err
			}
			defer sub.ps.Close()
			t0 := time.Now()
			pub := publishN(c, "player:spawn", n, payload)
			count, last := sub.waitCount(n)
			return float64(count) / last.Sub(t0).Seconds(), pub, nil
		}
		spinner, err := b.spinner(srv)
		if err != nil {
			return err
		}
		refRate, _, err := ref(false)
		// The fair reference for a route that decodes JSON: the same
		// subscriber decoding each payload with encoding/json, in the same
		// run beside the same spinning host.
		var jsonRate float64
		if err == nil && v.decode == "json" {
			jsonRate, _, err = ref(true)
		}
		spinner.Kill()
		if err != nil {
			return err
		}
		if v.extra == 0 && v.decode == "raw" {
			alone, pubTime, err := ref(false)
			if err != nil {
				return err
			}
			b.add(row{"throughput", "raw go-redis subscriber alone (no host spinning), events/s", "-", fmt.Sprintf("%.0f", alone), "-", ""})
			b.add(row{"throughput", "go-redis pipelined PUBLISH, msgs/s (the publisher)", "-", fmt.Sprintf("%.0f", float64(n)/pubTime.Seconds()), "-", ""})
		}
		// Module.
		s, err := b.server("throughput", redisTOML(srv, routesTOML(v.extra, v.decode)))
		if err != nil {
			return err
		}
		h, err := start(s, "sink.lua", 0, "BENCH_N="+strconv.Itoa(n))
		if err != nil {
			return err
		}
		if _, err := wait(h, "ready", 30*time.Second); err != nil {
			return err
		}
		t0 := time.Now()
		publishN(c, "player:spawn", n, payload)
		res, err := wait(h, "done", 10*time.Minute)
		elapsed := time.Since(t0)
		h.Kill()
		srv.Stop()
		c.Close()
		_ = os.RemoveAll(s.Root)
		if err != nil {
			return err
		}
		if res["count"] < float64(n) {
			elapsed -= 3 * time.Second // the stall wait
		}
		rate := res["count"] / elapsed.Seconds()
		b.add(row{"throughput", fmt.Sprintf("%s: events/s (%d lost of %d, %d by queue_full)", v.name, n-int(res["count"]), n, int(res["queue_full"])),
			fmt.Sprintf("%.0f", rate), fmt.Sprintf("%.0f", refRate), ratio(rate, refRate), "ratio >= 0.9"})
		if jsonRate > 0 {
			b.add(row{"throughput", v.name + ": events/s (ref: go-redis + encoding/json into map[string]any)",
				fmt.Sprintf("%.0f", rate), fmt.Sprintf("%.0f", jsonRate), ratio(rate, jsonRate), "ratio >= 0.9"})
		}
	}
	return nil
}

// latency: stamped events at fixed rates, receipt latency in the handler,
// beside the raw subscriber's.
func (b *bench) latency() error {
	const d = 3 * time.Second
	for _, v := range []struct {
		rate, tick int
	}{{1000, 0}, {10000, 0}, {100000, 0}, {10000, 66}} {
		dir := filepath.Join(b.dir, "latency")
		srv, c, err := launchRedis(dir)
		if err != nil {
			return err
		}
		payload := func(stamp int64) string { return strconv.FormatInt(stamp, 10) + ":player spawned" }
		// Reference: a go-redis subscriber fed the same paced stream; with
		// a continuous pump, while a host with the module spins its frames
		// beside it, as for throughput (the pump's spinning takes a core
		// that a server, sleeping between ticks, does not), and alone.
		refLat := func(spinning bool) (r50, r99, r999 float64, err error) {
			if spinning {
				spinner, err := b.spinner(srv)
				if err != nil {
					return 0, 0, 0, err
				}
				defer spinner.Kill()
			}
			sub, err := subscribe(c, "player:*", true)
			if err != nil {
				return 0, 0, 0, err
			}
			sent := publishPaced(c, []string{"player:spawn"}, v.rate, d, payload)
			sub.waitCount(sent)
			sub.ps.Close()
			r50, r99, r999 = percentiles(sub.lat)
			return r50, r99, r999, nil
		}
		r50, r99, r999, err := refLat(v.tick == 0)
		if err != nil {
			return err
		}
		var alone99, alone999 float64
		if v.tick == 0 {
			if _, alone99, alone999, err = refLat(false); err != nil {
				return err
			}
		}

		s, err := b.server("latency", redisTOML(srv, routesTOML(0, "raw")))
		if err != nil {
			return err
		}
		h, err := start(s, "sink.lua", v.tick, "BENCH_MODE=latency", "BENCH_N="+strconv.Itoa(int(float64(v.rate)*d.Seconds())))
		if err != nil {
			return err
		}
		if _, err := wait(h, "ready", 30*time.Second); err != nil {
			return err
		}
		publishPaced(c, []string{"player:spawn"}, v.rate, d, payload)
		if _, err := wait(h, "done", time.Minute); err != nil {
			return err
		}
		res, err := wait(h, "latency", 10*time.Second)
		h.Kill()
		srv.Stop()
		c.Close()
		if err != nil {
			return err
		}
		pump := "continuous pump"
		target, target999 := "", ""
		switch {
		case v.tick > 0:
			pump, target = fmt.Sprintf("%d-tick pump", v.tick), "tick-bound"
		case v.rate == 10000:
			target = "adds <= 50 µs"
		case v.rate == 1000:
			target999 = "adds <= 500 µs"
		}
		name := fmt.Sprintf("%d/s, %s", v.rate, pump)
		adds := func(m, r float64) string { return fmt.Sprintf(" (module adds %.0f)", m-r) }
		b.add(row{"latency", name + ": p50 µs", fmt.Sprintf("%.0f", res["p50"]), fmt.Sprintf("%.0f", r50), ratio(res["p50"], r50), ""})
		b.add(row{"latency", name + ": p99 µs" + adds(res["p99"], r99),
			fmt.Sprintf("%.0f", res["p99"]), fmt.Sprintf("%.0f", r99), ratio(res["p99"], r99), target})
		b.add(row{"latency", name + ": p99.9 µs" + adds(res["p999"], r999),
			fmt.Sprintf("%.0f", res["p999"]), fmt.Sprintf("%.0f", r999), ratio(res["p999"], r999), target999})
		if v.tick == 0 {
			b.add(row{"latency", name + ": p99 / p99.9 µs of the reference alone (no host spinning beside it)",
				"-", fmt.Sprintf("%.0f / %.0f", alone99, alone999), "-", ""})
		}
		if v.tick > 0 {
			// The module's own share: from the start of the ProcessEvents
			// call that handed the event over (or from its stamp, if it was
			// published during that call) to its handler; the rest is the
			// wait for the tick.
			for _, q := range []struct{ name, k string }{{"p50", "own50"}, {"p99", "own99"}, {"p99.9", "own999"}} {
				b.add(row{"latency", name + ": the module's own share (from the pump's call, or the stamp if later, to the handler), " + q.name + " µs",
					fmt.Sprintf("%.0f", res[q.k]), "-", "-", ""})
			}
		}
	}
	return nil
}

// frames: the time of each ProcessEvents call with a 66-tick pump and a
// 2 ms budget, in a 1,000,000-event burst, at 10,000 events/s and idle;
// beside an empty C call timed in the same frames (frames.lua), and for the
// burst beside a 2 ms Lua loop run in as many frames while the module takes
// in the same burst (BENCH_SPIN): what the OS does to any pump that keeps
// to its budget on this machine.
func (b *bench) frames() error {
	const burst = 1000000
	type run struct {
		events int // 0: idle
		rate   int // 0: a burst, as fast as Redis takes it
		env    []string
	}
	measure := func(r run) (map[string]float64, time.Duration, error) {
		srv, c, err := launchRedis(filepath.Join(b.dir, "frames"))
		if err != nil {
			return nil, 0, err
		}
		defer srv.Stop()
		defer c.Close()
		toml := redisTOML(srv, routesTOML(0, "raw")+"\n[queue]\nmax_events = 2000000\nmax_bytes = \"1GiB\"\n\n[dispatch]\nbudget = \"2ms\"\n")
		s, err := b.server("frames", toml)
		if err != nil {
			return nil, 0, err
		}
		h, err := start(s, "frames.lua", 66, append([]string{"BENCH_N=" + strconv.Itoa(r.events), "BENCH_IDLE=5"}, r.env...)...)
		if err != nil {
			return nil, 0, err
		}
		defer h.Kill()
		if _, err := wait(h, "ready", 30*time.Second); err != nil {
			return nil, 0, err
		}
		var sent time.Duration
		switch {
		case r.events > 0 && r.rate == 0:
			sent = publishN(c, "player:spawn", r.events, func(i int) string { return "player" + strconv.Itoa(i) + " spawned" })
		case r.events > 0:
			t0 := time.Now()
			publishPaced(c, []string{"player:spawn"}, r.rate, time.Duration(r.events/r.rate)*time.Second, func(stamp int64) string { return strconv.FormatInt(stamp, 10) })
			sent = time.Since(t0)
		}
		res, err := wait(h, "frames", 3*time.Minute)
		return res, sent, err
	}
	for _, v := range []struct {
		name string
		run
	}{{"1,000,000-event burst", run{events: burst}}, {"10,000 events/s", run{events: 50000, rate: 10000}}, {"idle", run{}}} {
		res, sent, err := measure(v.run)
		if err != nil {
			return err
		}
		us := func(k string) string { return fmt.Sprintf("%.0f", res[k]) }
		row3 := func(fig, k, target string) {
			b.add(row{"frames", v.name + ": ProcessEvents " + fig + " µs (ref: an empty C call)", us(k), us("ref_" + k), ratio(res[k], res["ref_"+k]), target})
		}
		// The same figures over the calls the kernel did not interrupt
		// (no involuntary context switch of the main thread during the
		// call): what the module itself does, apart from the OS giving its
		// core to redis-server, the publisher or another thread.
		calm := func(fig, k string) {
			b.add(row{"frames", v.name + fmt.Sprintf(": ProcessEvents %s µs, the %.0f of %.0f calls not preempted by the OS", fig, res["calm"], res["frames"]),
				us("calm_" + k), "-", "-", ""})
		}
		switch v.name {
		case "idle":
			row3("max", "max", "<= 200")
			continue
		case "10,000 events/s":
			row3("p99", "p99", "<= 1000")
			row3("max", "max", "<= 3000")
			calm("max", "max")
			continue
		}
		spin, _, err := measure(run{events: burst, env: []string{"BENCH_SPIN=" + us("frames")}})
		if err != nil {
			return err
		}
		ref := func(fig, k, target string) {
			b.add(row{"frames", v.name + ": ProcessEvents " + fig + " µs (ref: a 2 ms Lua loop in as many frames of the same burst)",
				us(k), fmt.Sprintf("%.0f", spin[k]), ratio(res[k], spin[k]), target})
		}
		ref("p50", "p50", "")
		ref("p99", "p99", "<= 2500")
		ref("p99.9", "p999", "<= 3000")
		ref("max", "max", "<= 5000")
		b.add(row{"frames", v.name + fmt.Sprintf(": frames over 3 ms of %.0f (ref: the 2 ms Lua loop's)", res["frames"]),
			us("over3ms"), fmt.Sprintf("%.0f", spin["over3ms"]), "-", ""})
		// How often the OS took the core during a call, beside the same
		// share of the Lua loop's calls: a module whose own threads crowded
		// out the main thread would be preempted more than the loop.
		preemptedPct := func(r map[string]float64) float64 { return 100 * (r["frames"] - r["calm"]) / max(r["frames"], 1) }
		b.add(row{"frames", v.name + ": % of calls preempted by the OS (ref: the 2 ms Lua loop's)",
			fmt.Sprintf("%.0f", preemptedPct(res)), fmt.Sprintf("%.0f", preemptedPct(spin)), ratio(preemptedPct(res), preemptedPct(spin)), ""})
		calm("p99", "p99")
		calm("max", "max")
		b.add(row{"frames", v.name + ": frames over 3 ms among those not preempted", us("calm_over3ms"), "-", "-", ""})
		b.add(row{"frames", v.name + fmt.Sprintf(": s to handle all (ref: s to publish; %.0f handled, %.0f queue_full)", res["n"], res["queue_full"]),
			fmt.Sprintf("%.2f", res["drain"]), fmt.Sprintf("%.2f", sent.Seconds()), ratio(res["drain"], sent.Seconds()), "ratio <= 1.5, none lost"})
	}
	return nil
}

// memory: 10,000 events of 200 bytes queued and not drained.
func (b *bench) memory() error {
	const n = 10000
	srv, c, err := launchRedis(filepath.Join(b.dir, "memory"))
	if err != nil {
		return err
	}
	defer srv.Stop()
	s, err := b.server("memory", redisTOML(srv, routesTOML(0, "raw")))
	if err != nil {
		return err
	}
	h, err := start(s, "memory.lua", 66, "BENCH_N="+strconv.Itoa(n))
	if err != nil {
		return err
	}
	defer h.Kill()
	if _, err := wait(h, "ready", 30*time.Second); err != nil {
		return err
	}
	body := strings.Repeat("x", 200)
	publishN(c, "player:spawn", n, func(int) string { return body })
	res, err := wait(h, "memory", time.Minute)
	if err != nil {
		return err
	}
	rss := (res["rss_after"] - res["rss_before"]) / 1024
	heap := (res["heap_after"] - res["heap_before"]) / 1024
	payload := float64(n*200) / (1 << 20)
	b.add(row{"memory", "10,000 queued 200-byte events: RSS growth MiB", fmt.Sprintf("%.2f", rss), fmt.Sprintf("%.2f", payload), ratio(rss, payload), "< 4 MiB"})
	b.add(row{"memory", "  the same: Go heap growth MiB", fmt.Sprintf("%.2f", heap), fmt.Sprintf("%.2f", payload), ratio(heap, payload), "< 5 MiB"})
	return nil
}

// cpu: connected and idle, and 1,000 events/s paced evenly over 100 routes
// and handlers, as a share of one core and in context switches; beside the
// host ticking with no module at all, and, for the load, a plain go-redis
// v9 subscriber of the same 100 channels in a process of its own fed the
// same paced stream.
func (b *bench) cpu() error {
	// window reads pid's usage over -cpu, after 2 s of warming up, while
	// during runs (until stop is closed).
	window := func(pid int, during func(stop <-chan struct{})) (usage, error) {
		stop := make(chan struct{})
		done := make(chan struct{})
		go func() { during(stop); close(done) }()
		defer func() { close(stop); <-done }()
		time.Sleep(2 * time.Second)
		u0, err := readUsage(pid)
		if err != nil {
			return usage{}, err
		}
		time.Sleep(*cpuFor)
		u1, err := readUsage(pid)
		return usage{(u1.cpu - u0.cpu) / cpuFor.Seconds() * 100, u1.switches - u0.switches}, err
	}
	measure := func(s *gmodserver.Server, during func(stop <-chan struct{})) (usage, error) {
		h, err := start(s, "idle.lua", 66, "BENCH_SECONDS="+strconv.Itoa(int(cpuFor.Seconds())+4))
		if err != nil {
			return usage{}, err
		}
		defer h.Kill()
		if _, err := wait(h, "ready", 30*time.Second); err != nil {
			return usage{}, err
		}
		return window(h.Cmd.Process.Pid, during)
	}
	idle := func(stop <-chan struct{}) { <-stop }

	// Reference: the host's own ticking, no module, no glue.
	ref, err := b.server("cpu-ref", "")
	if err != nil {
		return err
	}
	_ = os.Remove(filepath.Join(ref.Root, "garrysmod/lua/autorun/server/realtime.lua"))
	_ = os.Remove(filepath.Join(ref.Root, "garrysmod/lua/bin", ref.Host.Module))
	if err := os.WriteFile(filepath.Join(ref.Root, "garrysmod/lua/autorun/server/stub.lua"),
		[]byte("realtime = { Handler = function() end, IsConnected = function() return true end, GetStats = function() return { dispatched = 0 } end }\n"), 0o644); err != nil {
		return err
	}
	bare, err := measure(ref, idle)
	if err != nil {
		return err
	}

	srv, c, err := launchRedis(filepath.Join(b.dir, "cpu"))
	if err != nil {
		return err
	}
	defer srv.Stop()
	defer c.Close()
	s, err := b.server("cpu", redisTOML(srv, ""))
	if err != nil {
		return err
	}
	idleUse, err := measure(s, idle)
	if err != nil {
		return err
	}
	perSec := func(n float64) string { return fmt.Sprintf("%.0f", n/cpuFor.Seconds()) }
	b.add(row{"cpu", fmt.Sprintf("connected, idle, %s: %% of a core (ref: the bare host)", *cpuFor), fmt.Sprintf("%.2f", idleUse.cpu), fmt.Sprintf("%.2f", bare.cpu), ratio(idleUse.cpu, bare.cpu), "unchanged"})
	b.add(row{"cpu", "  the same: context switches/s (ref: the bare host)", perSec(idleUse.switches), perSec(bare.switches), ratio(idleUse.switches, bare.switches), ""})

	var routes strings.Builder
	channels := make([]string, 100)
	for i := range channels {
		channels[i] = fmt.Sprintf("bench:%d", i)
		fmt.Fprintf(&routes, "[[routes]]\nname = \"r%d\"\nchannel = %q\nhandler = \"H%d\"\n\n", i, channels[i], i+1)
	}
	// paced publishes 1,000 events/s, evenly: one every millisecond, over
	// the 100 channels in turn, until stop.
	paced := func(stop <-chan struct{}) {
		ctx := context.Background()
		tick := time.NewTicker(time.Millisecond)
		defer tick.Stop()
		t0 := time.Now()
		sent := 0
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			for due := int(time.Since(t0).Seconds() * 1000); sent < due; sent++ {
				c.Publish(ctx, channels[sent%100], "player spawned")
			}
		}
	}
	s, err = b.server("cpu-load", redisTOML(srv, routes.String()))
	if err != nil {
		return err
	}
	load, err := measure(s, paced)
	if err != nil {
		return err
	}

	// Reference: a plain go-redis v9 subscriber of the same channels, this
	// binary run again as another process (runRefSub), fed the same stream.
	self, err := os.Executable()
	if err != nil {
		return err
	}
	sub := exec.Command(self, append([]string{"-refsub", srv.Addr()}, channels...)...)
	in, err := sub.StdinPipe()
	if err != nil {
		return err
	}
	out, err := sub.StdoutPipe()
	if err != nil {
		return err
	}
	if err := sub.Start(); err != nil {
		return err
	}
	defer func() { _ = sub.Process.Kill(); _ = sub.Wait() }()
	lines := bufio.NewScanner(out)
	if !lines.Scan() || lines.Text() != "bench:ready" {
		return fmt.Errorf("reference subscriber: %q", lines.Text())
	}
	refLoad, err := window(sub.Process.Pid, paced)
	if err != nil {
		return err
	}
	_ = in.Close()
	if !lines.Scan() {
		return errors.New("reference subscriber: no count")
	}
	if got := fields(lines.Text())["count"]; got < 1000*cpuFor.Seconds() {
		return fmt.Errorf("reference subscriber received %.0f events", got)
	}

	events := 1000 * cpuFor.Seconds()
	b.add(row{"cpu", "1,000 events/s over 100 handlers: % of a core (ref: the bare host)", fmt.Sprintf("%.2f", load.cpu), fmt.Sprintf("%.2f", bare.cpu), ratio(load.cpu, bare.cpu), ""})
	b.add(row{"cpu", "  the same, over the bare host's (ref: a go-redis subscriber process)", fmt.Sprintf("%.2f", load.cpu-bare.cpu), fmt.Sprintf("%.2f", refLoad.cpu), ratio(load.cpu-bare.cpu, refLoad.cpu), "ratio <= 1"})
	b.add(row{"cpu", "  the same: context switches per event, over the bare host's (ref: the go-redis subscriber's)",
		fmt.Sprintf("%.2f", (load.switches-bare.switches)/events), fmt.Sprintf("%.2f", refLoad.switches/events), ratio(load.switches-bare.switches, refLoad.switches), "< 1"})
	b.add(row{"cpu", "  the same: context switches per event, all of the host's (ref: the bare host's per s, over 1,000)",
		fmt.Sprintf("%.2f", load.switches/events), fmt.Sprintf("%.2f", bare.switches/events), "-", ""})
	return nil
}

// maincost: the main thread's cost per call (tests/bench/maincost.lua),
// and Publish throughput from Lua to Redis beside go-redis's own.
func (b *bench) maincost() error {
	s, err := b.server("maincost", "[queue]\nmax_events = 100000\nmax_bytes = \"256MiB\"\n[redis]\noutbox_events = 100000\noutbox_bytes = \"256MiB\"\n[dispatch]\nbudget = \"100ms\"\nmax_per_frame = 100000\n")
	if err != nil {
		return err
	}
	out, err := s.Command(filepath.Join(b.repo, "tests/bench/maincost.lua"), 0, 5*time.Minute).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%v:\n%s", err, out)
	}
	names := map[string]string{
		"empty_process_events": "ns per empty ProcessEvents (ref: an empty Lua-to-C call)",
		"dispatch_string":      "ns per dispatched string event, best of 5 rounds of 4,000 in the ring (ref: a pure-Lua queue + pcall)",
		"dispatch_json10":      "ns per 10-field JSON event, the same way (ref: the same + a JSON decoder written in Lua, not GMod's native util.JSONToTable)",
		"publish_string":       "ns per Publish(string) (ref: append to a Lua table)",
		"publish_table":        "ns per Publish(table) (ref: a TableToJSON written in Lua, not GMod's native one)",
		"publish_game_event":   "ns per PlayerDeath (ref: a TableToJSON written in Lua, not GMod's native one)",
	}
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) < 5 || f[0] != "bench:" {
			continue
		}
		ns, _ := strconv.ParseFloat(f[2], 64)
		ref := fields(line)["ref"]
		b.add(row{"main thread", names[f[1]], fmt.Sprintf("%.0f", ns), fmt.Sprintf("%.0f", ref), ratio(ns, ref), ""})
	}

	const n = 200000
	srv, c, err := launchRedis(filepath.Join(b.dir, "publish"))
	if err != nil {
		return err
	}
	defer srv.Stop()
	defer c.Close()
	ref := publishN(c, "bench:publish", n, func(int) string { return "player1 joined the server" })
	s, err = b.server("publish", fmt.Sprintf("[redis]\nurl = %q\noutbox_events = %d\noutbox_bytes = \"256MiB\"\n", srv.URL(), n))
	if err != nil {
		return err
	}
	h, err := start(s, "publish.lua", 1000, "BENCH_N="+strconv.Itoa(n))
	if err != nil {
		return err
	}
	defer h.Kill()
	res, err := wait(h, "publish", 2*time.Minute)
	if err != nil {
		return err
	}
	rate := res["n"] / res["seconds"]
	refRate := float64(n) / ref.Seconds()
	b.add(row{"main thread", "Publish from Lua reaching Redis, msgs/s (ref: go-redis pipeline)", fmt.Sprintf("%.0f", rate), fmt.Sprintf("%.0f", refRate), ratio(rate, refRate), ""})
	return nil
}

// soak: 1,000 events/s for -soak: RSS slope, registry, goroutines, losses.
func (b *bench) soak() error {
	srv, c, err := launchRedis(filepath.Join(b.dir, "soak"))
	if err != nil {
		return err
	}
	defer srv.Stop()
	defer c.Close()
	s, err := b.server("soak", redisTOML(srv, routesTOML(0, "raw")))
	if err != nil {
		return err
	}
	h, err := start(s, "soak.lua", 66, "BENCH_SECONDS="+strconv.Itoa(int(soakFor.Seconds())))
	if err != nil {
		return err
	}
	defer h.Kill()
	if _, err := wait(h, "ready", 30*time.Second); err != nil {
		return err
	}
	sentc := make(chan int, 1)
	go func() {
		sentc <- publishPaced(c, []string{"player:spawn"}, 1000, *soakFor, func(int64) string { return "player spawned" })
	}()
	var samples []map[string]float64
	var done map[string]float64
	for done == nil {
		select {
		case line := <-h.Lines:
			switch {
			case strings.HasPrefix(line, "bench:sample"):
				samples = append(samples, fields(line))
				fmt.Println("soak         " + strings.TrimPrefix(line, "bench:sample "))
			case strings.HasPrefix(line, "bench:done"):
				done = fields(line)
			}
		case <-h.Done():
			return errors.New("host exited during the soak")
		case <-time.After(*soakFor + time.Minute):
			return errors.New("soak did not finish")
		}
	}
	sent := <-sentc
	if len(samples) < 3 {
		return errors.New("too few samples")
	}
	// RSS slope by least squares over the second half of the samples: the
	// first minute is the Go heap and Lua state warming up.
	var sx, sy, sxx, sxy float64
	pts := samples[len(samples)/2:]
	for _, p := range pts {
		x, y := p["t"]/60, p["rss_kb"]/1024
		sx, sy, sxx, sxy = sx+x, sy+y, sxx+x*x, sxy+x*y
	}
	k := float64(len(pts))
	slope := (k*sxy - sx*sy) / (k*sxx - sx*sx)
	first, last := samples[0], samples[len(samples)-1]
	b.add(row{"soak", fmt.Sprintf("%s at 1,000/s: RSS slope MiB/min, second half", *soakFor), fmt.Sprintf("%.3f", slope), "0", "-", "flat"})
	b.add(row{"soak", "  RSS MiB, first and last sample", fmt.Sprintf("%.1f", last["rss_kb"]/1024), fmt.Sprintf("%.1f", first["rss_kb"]/1024), ratio(last["rss_kb"], first["rss_kb"]), ""})
	b.add(row{"soak", "  goroutines, last and first", fmt.Sprintf("%.0f", last["goroutines"]), fmt.Sprintf("%.0f", first["goroutines"]), ratio(last["goroutines"], first["goroutines"]), "flat"})
	b.add(row{"soak", "  registry entries, last and first", fmt.Sprintf("%.0f", last["registry"]), fmt.Sprintf("%.0f", first["registry"]), ratio(last["registry"], first["registry"]), "flat"})
	b.add(row{"soak", fmt.Sprintf("  events handled of %d published (lost %d)", sent, sent-int(done["count"])), fmt.Sprintf("%.0f", done["count"]), strconv.Itoa(sent), ratio(done["count"], float64(sent)), "none lost"})
	return nil
}

// ---- The table -------------------------------------------------------

func (b *bench) table() string {
	var t strings.Builder
	fmt.Fprintf(&t, "## gmsv_realtime benchmarks, %s\n\n", time.Now().UTC().Format("2006-01-02 15:04 UTC"))
	fmt.Fprintf(&t, "Machine: %d cores, %s; %s; %s; %s; host LuaJIT 2.1 x86-64 (tests/host).\n\n",
		runtime.NumCPU(), cpuModel(), runtime.Version(), version("redis-server", "--version"), version("luajit", "-v"))
	t.WriteString("| scenario | figure | module | reference | ratio | target |\n|---|---|---|---|---|---|\n")
	for _, r := range b.rows {
		fmt.Fprintf(&t, "| %s | %s | %s | %s | %s | %s |\n", r.scenario, r.figure, r.module, r.reference, r.ratio, r.target)
	}
	return t.String()
}

func cpuModel() string {
	data, _ := os.ReadFile("/proc/cpuinfo")
	for _, line := range strings.Split(string(data), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "unknown CPU"
}

func version(cmd string, arg string) string {
	out, err := exec.Command(cmd, arg).CombinedOutput()
	if err != nil {
		return cmd + " (unknown version)"
	}
	return strings.TrimSpace(strings.SplitN(string(out), "\n", 2)[0])
}

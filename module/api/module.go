// Package api is the realtime Lua API in plain Go: what each realtime.*
// function does, behind the thin cgo layer in module/. It owns the process's
// router and backend, the names of the handlers the Lua state has (the C
// shim keeps the functions, in a table of the state's), and the log lines
// waiting for the main thread. Everything here is tested without a Lua VM.
//
// A Module is driven from one thread, the game's main thread: its methods
// are not safe for concurrent use, except that backend goroutines log
// through it.
package api

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math"
	"reflect"
	"runtime"
	"runtime/metrics"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/gmod-realtime/realtime/config"
	"github.com/gmod-realtime/realtime/router"
	"github.com/gmod-realtime/realtime/router/localbus"
	"github.com/gmod-realtime/realtime/router/pattern"
	"github.com/gmod-realtime/realtime/router/redisbus"
	"github.com/gmod-realtime/realtime/router/spool"
)

// Options configure a Module.
type Options struct {
	// Config says where the configuration is loaded from.
	Config config.Options
	// Pending, if set, holds the number of queued events, for the C shim's
	// empty-queue check.
	Pending *atomic.Int64
	// Logs, if set, holds the number of log lines waiting for TakeLog.
	Logs *atomic.Int64
	// InFlight, if set, counts the events taken from the queue for the
	// main thread and not yet dispatched (GetStats' queue depth).
	InFlight func() int
	// Frames, if set, returns the pump's frame times since it was last
	// called (GetStats' frames).
	Frames func() Frames
	// Queued, if set, is called after events were queued, on the goroutine
	// that queued them: the shim's feeder takes them from there (Take).
	Queued func()
	// Version is the module's version, for the heartbeat.
	Version string
	// Root is the game's folder: a relative spool.path is taken from
	// there. Default: the process's working directory (the game's folder
	// under srcds).
	Root string
}

// Frames are the pump's own figures: the ProcessEvents calls that had work
// to do, since the last GetStats.
type Frames struct {
	Count, OverBudget uint64
	Max               time.Duration
	Recent            []time.Duration // the last calls' times, up to the shim's ring size
}

// quantile returns the q-quantile of sorted, the recent frame times in
// order.
func quantile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	return sorted[min(len(sorted)-1, int(q*float64(len(sorted))))]
}

// Module is the state behind the realtime Lua table. The Go side (config,
// router, connection, queue) lives for the process; the Lua side (handler
// references) is reset by Open and dropped by Close, once per map.
type Module struct {
	opts      Options
	cfg       *config.Config
	cfgErr    error          // the config that failed to load at start, until fixed
	overrides map[string]any // realtime.Config's values, by config key
	r         *router.Router
	logs      logQueue
	hb        *heartbeat
	prom      promServer

	// Durable sends: the spool and the sequence of rt_ids, kept across
	// Reload; the spool is closed at Disconnect.
	durable *redisbus.Durable
	// kept are the stream entries' uncounted deliveries, across the
	// connections (Disconnect/Connect, Reload) of this module
	kept      *redisbus.Kept
	seq       spool.Sequence
	spoolPath string

	// Lua side, per state.
	gen      uint64            // Open count
	handlers map[string]bool   // realtime.Handler names with a function
	dynamic  map[string]*onReg // realtime.On registrations by route name
	swept    bool              // stale registrations removed since Open
	warnMu   sync.Mutex        // the shim's feeder counts outcomes (Finish) off the main thread
	warned   map[string]bool   // routes already logged for having no handler
	nextID   int
	// hostGroupWarned: a realtime.Stream read with a per-server group
	// while server.id is the hostname has been warned about
	hostGroupWarned bool
}

// onReg is one realtime.On registration.
type onReg struct {
	id, pattern string
	exact       bool   // realtime.Subscribe: pattern is a channel
	stream      bool   // realtime.Stream: pattern is a stream
	gen         uint64 // Open count when last registered
}

func (r *onReg) kind() string {
	switch {
	case r.stream:
		return "realtime.Stream registration"
	case r.exact:
		return "realtime.Subscribe registration"
	}
	return "registration"
}

// Start loads the configuration and connects in the background. A broken
// config is logged and leaves the module disconnected with no routes until
// Reload succeeds; the Lua API works either way.
func Start(opts Options) *Module {
	m := &Module{opts: opts, overrides: map[string]any{}, kept: redisbus.NewKept()}
	m.logs.counter = opts.Logs
	if m.logs.counter == nil {
		m.logs.counter = new(atomic.Int64)
	}
	cfg, err := config.Load(opts.Config)
	if err != nil {
		m.cfgErr = err
		cfg = config.Default()
	}
	ropts := []router.Option{router.WithLog(m.logs.add)}
	if opts.Pending != nil {
		ropts = append(ropts, router.WithPendingCounter(opts.Pending))
	}
	if opts.Queued != nil {
		ropts = append(ropts, router.WithQueued(opts.Queued))
	}
	r, rerr := router.New(cfg, ropts...)
	if rerr != nil { // a validated config compiles; this is a bug, not a user error
		m.cfgErr = rerr
		cfg = config.Default()
		r, _ = router.New(cfg, ropts...)
	}
	m.cfg, m.r = cfg, r
	m.hb = newHeartbeat(opts.Version, &m.logs)
	m.hb.cfg.Store(cfg)
	go m.hb.run(r)
	redis.SetLogger(redisLogger{m})
	m.Open()
	if m.cfgErr != nil {
		m.logs.add("error", m.cfgErr.Error())
		m.logs.add("error", "not connected until the config is fixed and realtime.Reload() is called")
		return m
	}
	m.log("info", cfg.String())
	m.applyMetrics()
	if err := m.attach(); err != nil {
		m.logs.add("error", err.Error())
	}
	return m
}

// Router is the module's router.
func (m *Module) Router() *router.Router { return m.r }

// Config is the configuration in effect.
func (m *Module) Config() *config.Config { return m.cfg }

// Stop closes the connection; for tests and process exit.
func (m *Module) Stop() {
	m.hb.close()
	m.prom.stop()
	m.persist()
	_ = m.r.Close()
	m.closeDurable()
}

// attach starts a backend for m.cfg, replacing the current one. The
// messages a Redis backend holds in its outbox (Redis was unreachable)
// move to a new Redis backend, ahead of what is published next: Connect
// keeps what Publish accepted, as Reload does.
func (m *Module) attach() error {
	var b router.Backend
	if m.cfg.Local() {
		b = localbus.New(m.cfg.Redis.OutboxEvents)
	} else {
		rb, err := redisbus.New(m.cfg.Redis)
		if err != nil {
			return fmt.Errorf("connect to %s: %w", m.cfg.Redis.Target(), err)
		}
		rb.SetDurable(m.durableFor())
		rb.SetKept(m.kept)
		if old, ok := m.r.Backend().(*redisbus.Bus); ok {
			old.HandOver(rb)
		}
		b = rb
	}
	_ = m.r.Close()
	m.r.Attach(b)
	return nil
}

// Open starts a new Lua state (gmod13_open): the previous state's
// references are gone with it. realtime.On registrations stay routed, so
// events that arrive during a map change wait in the queue; those that the
// new state does not register again are removed when it first pumps.
func (m *Module) Open() {
	m.gen++
	m.handlers = map[string]bool{}
	m.warnMu.Lock()
	m.warned = map[string]bool{}
	m.warnMu.Unlock()
	m.swept = false
	if m.dynamic == nil {
		m.dynamic = map[string]*onReg{}
	}
}

// Close forgets the Lua state's handlers (gmod13_close). It never blocks
// and never logs.
//
// Durable entries (realtime.Append) still waiting in the outbox go to the
// spool, which is local and fast, and Close waits until it has them on
// disk: the process may be exiting (the module cannot tell a map change
// from a shutdown). It never waits on the network.
func (m *Module) Close() {
	m.handlers = map[string]bool{}
	m.persist()
}

// Handler records that the Lua state has (has) or no longer has a handler
// named name, for config routes' handler = "name"; the shim keeps the
// function.
func (m *Module) Handler(name string, has bool) error {
	if name == "" {
		return errors.New("handler name is empty")
	}
	if strings.HasPrefix(name, config.HookPrefix) {
		return fmt.Errorf("%q is a hook route's handler; it calls hook.Run and needs no realtime.Handler", name)
	}
	if has {
		m.handlers[name] = true
		m.unwarn(name)
	} else {
		delete(m.handlers, name)
	}
	return nil
}

// OptionError is an invalid realtime.On option.
type OptionError struct {
	Name string // "decode", "rate", "burst", or a realtime.Stream option
	Msg  string
}

func (e *OptionError) Error() string { return e.Name + ": " + e.Msg }

// OnOptions are realtime.On's optional settings.
type OnOptions struct {
	Exact  bool   // a channel, not a glob (realtime.Subscribe)
	Decode string // "raw" (default) or "json"
	Rate   string // a rate such as "100/s"; default unlimited
	Burst  float64
}

// On registers a handler for pattern under id, replacing the registration
// of the same pattern and id. With id "" it makes a new id. It returns the
// id and the route's name, under which the shim keeps the function (apart
// from realtime.Handler's names: any string can be either).
func (m *Module) On(pat, id string, o OnOptions) (string, string, error) {
	if pat == "" {
		return "", "", errors.New("pattern is empty")
	}
	if o.Burst < 0 || o.Burst > math.MaxInt32 || o.Burst != math.Trunc(o.Burst) {
		return "", "", &OptionError{"burst", fmt.Sprintf("%v is not a whole number from 0 to %d", o.Burst, math.MaxInt32)}
	}
	id, name := m.OnName(pat, id)
	def := config.Route{Name: name, Handler: name, Burst: int(o.Burst)}
	// "a (b) (c)" is On("b) (c", "a") and On("c", "a (b)"); "x (a*)" is
	// On("a*", "x") and Subscribe("a*", "x"), which match differently.
	if err := m.nameFree(def.Name, onReg{id: id, pattern: pat, exact: o.Exact}); err != nil {
		return "", "", err
	}
	if o.Exact {
		def.Channel = pat
	} else {
		def.Pattern = pat
	}
	switch o.Decode {
	case "", config.DecodeRaw:
		def.Decode = config.DecodeRaw
	case config.DecodeJSON:
		def.Decode = config.DecodeJSON
	default:
		return "", "", &OptionError{"decode", fmt.Sprintf("%q is not \"raw\" or \"json\"", o.Decode)}
	}
	if o.Rate != "" {
		if err := def.Rate.UnmarshalText([]byte(o.Rate)); err != nil {
			return "", "", &OptionError{"rate", err.Error()}
		}
	}
	if _, err := m.r.On(def); err != nil {
		var se *pattern.SyntaxError
		if errors.As(err, &se) {
			return "", "", se
		}
		return "", "", err
	}
	m.unwarn(def.Name)
	m.dynamic[def.Name] = &onReg{id: id, pattern: pat, exact: o.Exact, gen: m.gen}
	return id, def.Name, nil
}

func routeName(pattern, id string) string { return id + " (" + pattern + ")" }

// streamRouteName is the name of realtime.Stream(stream, id)'s route: in
// brackets, so it is never the name of an On route, whose ends in ")".
func streamRouteName(stream, id string) string { return id + " [" + stream + "]" }

// StreamOptions are realtime.Stream's optional settings, as the config's
// stream route keys.
type StreamOptions struct {
	Group  string // consumer group, "{server}" for server.id; default "realtime:{server}"
	Start  string // "$" (default) or "0"
	Decode string // "raw" (default), "json" or "fields"
	// ClaimAfter is a duration ("60s"), or a number of seconds.
	ClaimAfter string
	// MaxDeliveries, when HasMaxDeliveries.
	MaxDeliveries    float64
	HasMaxDeliveries bool
}

// StreamName returns the id of Stream(stream, id), made when id is "",
// and the name of its route.
func (m *Module) StreamName(stream, id string) (string, string) {
	if id == "" {
		m.nextID++
		id = "realtime.Stream#" + strconv.Itoa(m.nextID)
	}
	return id, streamRouteName(stream, id)
}

// nameFree reports an error when route name is that of a registration
// other than want (another id, pattern or kind): the events queued for one
// must not reach the other's function. The same registration may replace
// itself.
func (m *Module) nameFree(name string, want onReg) error {
	reg := m.dynamic[name]
	if reg == nil || (reg.id == want.id && reg.pattern == want.pattern && reg.exact == want.exact && reg.stream == want.stream) {
		return nil
	}
	return fmt.Errorf("the route name %q is already that of the %s with id %q for %q; choose another id", name, reg.kind(), reg.id, reg.pattern)
}

// Stream registers a handler for the entries of stream under id, as On
// does for a channel: a second Stream with the same stream and id
// replaces the first. With id "" it makes a new id. It returns the id and
// the route's name. An invalid option is an *OptionError.
func (m *Module) Stream(stream, id string, o StreamOptions) (string, string, error) {
	if stream == "" {
		return "", "", errors.New("stream is empty")
	}
	def := config.Route{Stream: stream, Group: o.Group, Start: o.Start, Decode: o.Decode}
	if o.HasMaxDeliveries {
		n := o.MaxDeliveries
		if n != math.Trunc(n) || n < math.MinInt32 || n > math.MaxInt32 {
			return "", "", &OptionError{"max_deliveries", fmt.Sprintf("%v is not a whole number from 1 to %d", n, math.MaxInt32)}
		}
		if n == 0 {
			return "", "", &OptionError{"max_deliveries", "0 must be at least 1"}
		}
		def.MaxDeliveries = int(n)
	}
	if o.ClaimAfter != "" {
		if secs, err := strconv.ParseFloat(o.ClaimAfter, 64); err == nil && !math.IsInf(secs, 0) && !math.IsNaN(secs) && math.Abs(secs) < 1e9 {
			def.ClaimAfter = config.Duration(secs * float64(time.Second)) // a number: seconds, as GMod counts time
			if def.ClaimAfter == 0 {
				return "", "", &OptionError{"claim_after", fmt.Sprintf("%q is too short (want at least 1s: an entry still waiting for its handler would be taken over)", o.ClaimAfter)}
			}
		} else if err := def.ClaimAfter.UnmarshalText([]byte(o.ClaimAfter)); err != nil {
			return "", "", &OptionError{"claim_after", err.Error()}
		}
	}
	if err := config.CheckStreamRoute(&def); err != nil {
		var fe *config.FieldError
		if errors.As(err, &fe) && fe.Key != "stream" {
			return "", "", &OptionError{fe.Key, fe.Msg}
		}
		return "", "", err
	}
	id, name := m.StreamName(stream, id)
	def.Name, def.Handler = name, name
	// "a [b] [c]" is Stream("b] [c", "a") and Stream("c", "a [b]").
	if err := m.nameFree(name, onReg{id: id, pattern: stream, stream: true}); err != nil {
		return "", "", err
	}
	if _, err := m.r.On(def); err != nil {
		return "", "", err
	}
	m.unwarn(name)
	m.dynamic[name] = &onReg{id: id, pattern: stream, stream: true, gen: m.gen}
	if w := m.cfg.HostGroupWarning(fmt.Sprintf("realtime.Stream(%q)", stream), &def); w != "" && !m.hostGroupWarned {
		m.hostGroupWarned = true
		m.log("warn", w)
	}
	return id, name, nil
}

// OnName returns the id of On(pattern, id), made when id is "", and the
// name of its route.
func (m *Module) OnName(pattern, id string) (string, string) {
	if id == "" {
		m.nextID++
		id = "realtime.On#" + strconv.Itoa(m.nextID)
	}
	return id, routeName(pattern, id)
}

// Off removes the registrations of id, or (with a pattern) the one of
// pattern and id. It returns the names of the removed routes.
func (m *Module) Off(id string, pattern ...string) []string {
	var names []string
	for name, reg := range m.dynamic {
		if reg.id != id || len(pattern) > 0 && reg.pattern != pattern[0] {
			continue
		}
		delete(m.dynamic, name)
		names = append(names, name)
	}
	m.r.Off(names...)
	return names
}

// sweep removes realtime.On registrations that the current state has not
// made again since Open.
func (m *Module) sweep() {
	m.swept = true
	var stale []string
	for name, reg := range m.dynamic {
		if reg.gen != m.gen {
			delete(m.dynamic, name)
			stale = append(stale, name)
		}
	}
	m.r.Off(stale...)
	n := len(stale)
	if n > 0 {
		m.log("info", fmt.Sprintf("removed %d realtime.On registrations that were not made again after the map change (give On an id to keep one)", n))
	}
}

// Dispatch is one handler call for ProcessEvents.
type Dispatch struct {
	Event   *router.Event
	Handler string // the handler's name in the Lua state, or "" when Hook is set
	Hook    string // hook.Run this name instead: a hook: route or a status hook
}

// BeginFrame starts a ProcessEvents call: the first after Open removes the
// realtime.On registrations that the new state did not make again.
func (m *Module) BeginFrame() {
	if !m.swept {
		m.sweep()
	}
}

// Next returns the next handler call; false when the queue is empty.
// Events whose route has no handler are counted, logged once per route,
// and skipped. (The shim keeps to the time budget and the count limit.)
func (m *Module) Next() (Dispatch, bool) {
	for {
		d, ok := m.Take()
		if !ok || d.Event.Kind == router.KindStatus {
			return d, ok
		}
		e := d.Event
		if d.Hook != "" || e.Route.Dynamic && m.dynamic[e.Route.Name] != nil || !e.Route.Dynamic && m.handlers[d.Handler] {
			m.r.Dispatched(e, time.Now().UnixNano())
			return d, true
		}
		m.noHandler(e)
	}
}

func (m *Module) noHandler(e *router.Event) {
	h := e.Route.Handler
	e.Route.Stats.NoHandler.Add(1)
	m.r.Stats.Drop(router.DropNoHandler)
	m.warnMu.Lock()
	warned := m.warned[h]
	m.warned[h] = true
	m.warnMu.Unlock()
	if !warned {
		if e.Route.Dynamic || m.r.Table().Route(e.Route.Name) == nil {
			if e.Entry != nil {
				m.log("warn", fmt.Sprintf("route %q was removed while entries for it waited; they stay pending in their stream, counted as no_handler", e.Route.Name))
				return
			}
			m.log("warn", fmt.Sprintf("route %q was removed while events for it waited; they are dropped and counted as no_handler", e.Route.Name))
			return
		}
		what := "its events are dropped and counted"
		if e.Entry != nil {
			what = "its entries stay pending and come again, up to max_deliveries"
		}
		m.log("warn", fmt.Sprintf("route %q: no handler %q is registered (realtime.Handler(%q, fn)); %s", e.Route.Name, h, h, what))
	}
}

func (m *Module) unwarn(name string) {
	m.warnMu.Lock()
	delete(m.warned, name)
	m.warnMu.Unlock()
}

// Take returns the next handler call for the shim's ring, on any
// goroutine; false when the queue is empty. Whether the Lua state has the
// handler is the shim's to see when it dispatches the call; Finish counts
// what became of it.
func (m *Module) Take() (Dispatch, bool) {
	for {
		e := m.r.Next()
		if e == nil {
			return Dispatch{}, false
		}
		if e.Kind == router.KindStatus {
			d := Dispatch{Event: e, Hook: "RealtimeDisconnected"}
			switch e.Status {
			case router.StatusConnected, router.StatusLocal:
				d.Hook = "RealtimeConnected"
			case router.StatusConnecting:
				continue
			}
			return d, true
		}
		h := e.Route.Handler
		if name, ok := strings.CutPrefix(h, config.HookPrefix); ok {
			return Dispatch{Event: e, Hook: name}, true
		}
		return Dispatch{Event: e, Handler: h}, true
	}
}

// Finish counts what became of a call from Take, on any goroutine: the
// shim found no handler for it (noHandler), or dispatched it at (unix ns),
// and it failed (RT_FAIL_HANDLER 1, RT_FAIL_BUILDING 2) with msg.
func (m *Module) Finish(d *Dispatch, noHandler bool, at int64, failed int, msg string) {
	m.Settle([]Outcome{{D: d, NoHandler: noHandler, Failed: failed}})
	m.Count(d, noHandler, at, failed, msg)
}

// Outcome is what became of a call from Take, for Settle: the shim found
// no handler for it (NoHandler), or dispatched it and it failed (Failed,
// as Finish's failed), or its handler returned.
type Outcome struct {
	D         *Dispatch
	NoHandler bool
	Failed    int
}

// Settle tells the backend what became of the stream entries of outs
// (other events are skipped), in one batch, on any goroutine: acknowledged
// when the handler returned, else delivered again; an entry of a
// realtime.Stream route removed meanwhile (realtime.Off, a map change) no
// handler saw: it waits, its delivery not counted. Count then counts each
// call.
func (m *Module) Settle(outs []Outcome) {
	batch := make([]router.Settled, 0, len(outs))
	for _, o := range outs {
		e := o.D.Event
		if e == nil || e.Entry == nil {
			continue
		}
		ok := !o.NoHandler && o.Failed == 0
		// removed, whether or not a registration was made again since
		// under its name (its route's stats then are another's)
		cur := m.r.Table().Route(e.Route.Name)
		released := !ok && e.Route.Dynamic && (cur == nil || cur.Stats != e.Route.Stats)
		batch = append(batch, router.Settled{Event: e, OK: ok, Release: released})
	}
	if len(batch) > 0 {
		m.r.SettleMany(batch)
	}
}

// Count counts what became of a call from Take, as Finish does, but for
// settling its stream entry (Settle).
func (m *Module) Count(d *Dispatch, noHandler bool, at int64, failed int, msg string) {
	if noHandler {
		m.noHandler(d.Event)
		return
	}
	if d.Event.Kind == router.KindMessage {
		m.r.Dispatched(d.Event, at)
	}
	if failed != 0 {
		m.HandlerError(d, failed == 2, msg)
	}
}

// NoHandler counts an event of a batch whose handler was removed (by an
// earlier handler of the batch, or a map change) before it was dispatched.
func (m *Module) NoHandler(d *Dispatch) {
	m.Settle([]Outcome{{D: d, NoHandler: true}})
	m.r.Undispatched(d.Event)
	m.noHandler(d.Event)
}

// HandlerError counts and logs (rate-limited) an error of a batch's event
// d: raised by its handler, or (building) outside it while the shim
// prepared the call (a finalizer, a metamethod, out of memory while its
// arguments were built). d is nil for an error outside any event.
func (m *Module) HandlerError(d *Dispatch, building bool, msg string) {
	if d == nil {
		m.r.Logf("error", "ProcessEvents: %s", msg)
		return
	}
	what := "hook " + strconv.Quote(d.Hook)
	if d.Event.Kind == router.KindMessage {
		d.Event.Route.Stats.HandlerErrors.Add(1)
		m.r.Stats.Drop(router.DropHandlerError)
		what = "route " + strconv.Quote(d.Event.Route.Name)
	}
	if building {
		m.r.Logf("error", "an error was raised outside the handler of %s, while its call was prepared (event on %q dropped): %s", what, d.Event.Channel, msg)
		return
	}
	m.r.Logf("error", "handler of %s failed on %q: %s", what, d.Event.Channel, msg)
}

// BatchFailed counts the events of a batch that could not be handed to the
// main thread because of an internal error, and logs it. They were taken
// (Take) and never counted as dispatched: Finish counts that.
func (m *Module) BatchFailed(batch []Dispatch, msg string) {
	n := 0
	for _, d := range batch {
		m.r.Settle(d.Event, false)
		if d.Event.Kind == router.KindMessage {
			d.Event.Route.Stats.Dropped.Add(1)
			m.r.Stats.Drop(router.DropInternal)
			n++
		}
	}
	m.logs.add("error", fmt.Sprintf("internal error in ProcessEvents (%d events dropped, counted as dropped.internal): %s", n, msg))
}

// Publish queues payload for channel without blocking.
func (m *Module) Publish(channel, payload string) error {
	err := m.r.Publish(channel, payload)
	if errors.Is(err, router.ErrNoBackend) {
		return m.notConnected()
	}
	return err
}

// PublishTable encodes a Lua value tape as JSON and publishes it.
func (m *Module) PublishTable(channel string, doc *router.Doc) error {
	s, err := EncodeJSON(doc, "payload")
	if err != nil {
		return err
	}
	return m.Publish(channel, s)
}

// GameEvents maps each game-event function to its channel, before the
// configured events.prefix.
var GameEvents = map[string]string{
	"PlayerSpawn":      "player:spawn",
	"PlayerDeath":      "player:death",
	"ChatMessage":      "chat:message",
	"PlayerTakeDamage": "player:damage",
	"RoundStart":       "round:start",
	"RoundEnd":         "round:end",
}

// GameEvent publishes a game event: doc is a table with the event's fields,
// to which ts (unix ms) and server (server.id) are added.
func (m *Module) GameEvent(fn string, doc *router.Doc) error {
	channel, ok := GameEvents[fn]
	if !ok {
		return fmt.Errorf("no game event %q", fn)
	}
	ts := time.Now().UnixMilli()
	s, err := encodeObjectWith(doc, "event", func(b []byte) []byte {
		b = append(b, `"ts":`...)
		b = strconv.AppendInt(b, ts, 10)
		b = append(b, `,"server":`...)
		return appendString(b, m.cfg.Server.ID)
	})
	if err != nil {
		return err
	}
	if m.cfg.Events.Stream {
		_, err := m.Append(m.cfg.Events.Prefix+channel, s)
		return err
	}
	return m.Publish(m.cfg.Events.Prefix+channel, s)
}

// configKeys maps realtime.Config's short names to config keys. Other
// names are taken as keys under [redis] ("read_timeout"), or as dotted
// keys ("server.id").
var configKeys = map[string]string{
	"timeout": "redis.connect_timeout",
}

// maxConfigKeys bounds realtime.Config's table, so that a huge one is
// refused at once rather than checked key by key ("did you mean" for each).
const maxConfigKeys = 256

// Configure validates realtime.Config's values (a Lua table tape with
// string keys) and keeps them for the next Connect. On error nothing
// changes. The key "map" is not a setting but the current map's name, for
// the heartbeat (the glue passes game.GetMap() at every map start); a
// table with only that key reads no file.
func (m *Module) Configure(doc *router.Doc) error {
	over := maps.Clone(m.overrides)
	nodes := doc.Nodes
	if len(nodes) == 0 || nodes[0].Kind != router.KindObject {
		return errors.New("want a table")
	}
	if n := nodes[0].Len; n > maxConfigKeys {
		return fmt.Errorf("the table has %d keys; there are far fewer settings (at most %d keys)", n, maxConfigKeys)
	}
	var mapName *string
	onlyMap := nodes[0].Len > 0
	i := 1
	for range int(nodes[0].Len) {
		k, v := nodes[i], nodes[i+1]
		i += 2
		switch k.Kind {
		case router.KindString:
		case router.KindNumber:
			return fmt.Errorf("key %s: want a string key such as host, port or password", appendNumber(nil, k.Num))
		default:
			return fmt.Errorf("%s: want a string key such as host, port or password", k.Str)
		}
		key := k.Str
		if key == "map" { // not a setting: the map the heartbeat reports
			if v.Kind != router.KindString {
				return errors.New("map: want the map's name, a string (game.GetMap())")
			}
			mapName = &v.Str
			continue
		}
		onlyMap = false
		if mapped, ok := configKeys[key]; ok {
			key = mapped
		} else if !strings.Contains(key, ".") {
			key = "redis." + key
		}
		switch v.Kind {
		case router.KindNull:
			delete(over, key)
		case router.KindString:
			over[key] = v.Str
		case router.KindTrue, router.KindFalse:
			over[key] = v.Kind == router.KindTrue
		case router.KindNumber:
			if strings.HasSuffix(key, "timeout") {
				over[key] = strconv.FormatFloat(v.Num, 'g', -1, 64) + "s" // seconds, as GMod APIs count time
			} else if v.Num == float64(int64(v.Num)) {
				over[key] = int64(v.Num)
			} else {
				over[key] = v.Num
			}
		default:
			return fmt.Errorf("%s: want a string, number or boolean", k.Str)
		}
	}
	if !onlyMap {
		if _, err := m.load(over); err != nil {
			return err
		}
		m.overrides = over
	}
	if mapName != nil {
		name := *mapName
		m.hb.mapName.Store(&name)
	}
	return nil
}

func (m *Module) load(over map[string]any) (*config.Config, error) {
	opts := m.opts.Config
	opts.Overrides = over
	return config.Load(opts)
}

// Connect reloads the configuration with realtime.Config's values (and url,
// if not "") and connects in the background, replacing the connection.
func (m *Module) Connect(url string) error {
	over := m.overrides
	if url != "" {
		over = maps.Clone(m.overrides)
		over["redis.url"] = url
		delete(over, "redis.host")
		delete(over, "redis.port")
	}
	cfg, err := m.load(over)
	if err != nil {
		return err
	}
	if _, err := m.r.Apply(cfg); err != nil {
		return err
	}
	m.cfg, m.cfgErr, m.overrides = cfg, nil, over
	m.hb.cfg.Store(cfg)
	m.applyMetrics()
	m.log("info", "connecting: "+cfg.String())
	return m.attach()
}

// Disconnect closes the connection; realtime.Connect reconnects.
func (m *Module) Disconnect() {
	if m.r.Backend() == nil {
		return
	}
	m.persist()
	_ = m.r.Close()
	m.closeDurable()
	m.r.SetStatus(router.StatusDisconnected, "realtime.Disconnect()")
}

// Status is realtime.Status(): "connected", "connecting", "disconnected" or
// "local".
func (m *Module) Status() string {
	if m.r.Backend() == nil {
		return router.StatusDisconnected.String()
	}
	return m.r.Status().String()
}

// ReloadResult is what Reload changed.
type ReloadResult struct {
	router.Summary
	Reconnected bool // the [redis] settings changed, so the connection was replaced
}

// Reload re-reads the configuration and applies the route changes on the
// live connection; it reconnects only when the [redis] settings changed.
// On error nothing changes.
func (m *Module) Reload() (ReloadResult, error) {
	cfg, err := m.load(m.overrides)
	if err != nil {
		return ReloadResult{}, err
	}
	sum, err := m.r.Apply(cfg)
	if err != nil {
		return ReloadResult{}, err
	}
	res := ReloadResult{Summary: sum}
	old := m.cfg
	if m.durable != nil {
		m.durable.SetServerID(cfg.Server.ID)
		m.durable.SetTrim(int64(cfg.Streams.MaxLen), cfg.Streams.Retention.D())
	}
	broken := m.cfgErr != nil
	m.cfg, m.cfgErr = cfg, nil
	m.hb.cfg.Store(cfg)
	m.applyMetrics()
	if broken || !reflect.DeepEqual(old.Redis, cfg.Redis) {
		if err := m.reconnect(old, &res); err != nil {
			return res, err
		}
	}
	m.log("info", "reloaded: "+sum.String())
	return res, nil
}

// reconnect applies m.cfg.Redis after a Reload changed it: on the live
// connection when it can (outbox bounds, backoff); else a new connection
// takes over without a gap (it subscribes before the old one closes, and
// the old outbox moves to it); else (a mode change, a broken config
// before) a plain attach.
func (m *Module) reconnect(old *config.Config, res *ReloadResult) error {
	rb, ok := m.r.Backend().(*redisbus.Bus)
	if !ok || old.Local() || m.cfg.Local() {
		res.Reconnected = true
		return m.attach()
	}
	d := m.durableFor() // the trimming settings, live
	if rb.Reconfigure(m.cfg.Redis) {
		return nil
	}
	next, err := redisbus.New(m.cfg.Redis)
	if err != nil {
		return fmt.Errorf("connect to %s: %w", m.cfg.Redis.Target(), err)
	}
	next.SetDurable(d)
	next.SetKept(m.kept)
	res.Reconnected = true
	rb.HandOver(next)
	m.r.Replace(next)
	return nil
}

// ReloadDoc is Reload's summary as a table for Lua.
func (res ReloadResult) Doc() *router.Doc {
	var b docBuilder
	i := b.open(router.KindObject)
	b.str("added")
	b.strs(res.Added)
	b.str("removed")
	b.strs(res.Removed)
	b.str("changed")
	b.strs(res.Changed)
	b.str("subscribed")
	b.num(float64(len(res.Plan.Subscribe) + len(res.Plan.PSubscribe)))
	b.str("unsubscribed")
	b.num(float64(len(res.Plan.Unsubscribe) + len(res.Plan.PUnsubscribe)))
	b.str("refused")
	b.strs(res.Refused)
	b.str("reconnected")
	b.boolean(res.Reconnected)
	b.str("summary")
	b.str(res.String())
	b.close(i, 8)
	return b.doc()
}

// Stats is realtime.GetStats() as a table.
func (m *Module) Stats() *router.Doc {
	s := &m.r.Stats
	q := m.r.Queue()
	var b docBuilder
	top := b.open(router.KindObject)
	n := 0
	field := func(k string) { b.str(k); n++ }
	field("status")
	b.str(m.Status())
	field("mode")
	b.str(m.cfg.Mode())
	field("server")
	b.str(m.cfg.Server.ID)
	dropped := s.Dropped()
	for _, kv := range []struct {
		k string
		v uint64
	}{
		{"received", s.Received.Load()},
		{"published", s.Published.Load()},
		{"publish_failed", s.PublishFails.Load()},
		{"appended", s.Appended.Load()},
		{"append_failed", s.AppendFails.Load()},
		{"queued", s.Queued.Load()},
		{"dispatched", s.Dispatched.Load()},
		{"decode_errors", s.DecodeErrors.Load()},
		{"dead_lettered", s.DeadLettered.Load()},
		{"rate_limited", dropped[router.DropRateLimited]},
	} {
		field(kv.k)
		b.num(float64(kv.v))
	}
	field("dropped")
	b.counts(router.DropQueueFull, dropped[router.DropQueueFull],
		router.DropRateLimited, dropped[router.DropRateLimited],
		router.DropTooBig, dropped[router.DropTooBig],
		router.DropNoRoute, dropped[router.DropNoRoute],
		router.DropNoHandler, dropped[router.DropNoHandler],
		router.DropHandlerError, dropped[router.DropHandlerError],
		router.DropInternal, dropped[router.DropInternal])
	field("queue")
	depth := q.Pending()
	if m.opts.InFlight != nil {
		depth += m.opts.InFlight()
	}
	b.counts("depth", depth, "bytes", q.Bytes(),
		"max_events", m.cfg.Queue.MaxEvents, "max_bytes", int64(m.cfg.Queue.MaxBytes))
	field("latency_us")
	lat, ln, _ := s.Latency.Snapshot()
	wait, wn, _ := s.Wait.Snapshot()
	own, on, _ := s.Own.Snapshot()
	us := func(counts []uint64, total uint64, q float64) float64 {
		return float64(router.QuantileOf(counts, total, q).Nanoseconds()) / 1e3
	}
	b.counts("count", ln, "p50", us(lat, ln, 0.5), "p90", us(lat, ln, 0.9), "p99", us(lat, ln, 0.99), "p999", us(lat, ln, 0.999),
		"wait_p50", us(wait, wn, 0.5), "wait_p99", us(wait, wn, 0.99), "module_p50", us(own, on, 0.5), "module_p99", us(own, on, 0.99))
	field("frames")
	var fr Frames
	if m.opts.Frames != nil {
		fr = m.opts.Frames()
	}
	slices.Sort(fr.Recent)
	b.counts("count", fr.Count, "over_budget", fr.OverBudget, "p50_us", quantile(fr.Recent, 0.5).Microseconds(),
		"p99_us", quantile(fr.Recent, 0.99).Microseconds(), "max_us", fr.Max.Microseconds())
	field("redis")
	if rb, ok := m.r.Backend().(*redisbus.Bus); ok {
		b.counts("reconnects", rb.Stats.Reconnects.Load(), "outages", rb.Stats.Outages.Load(),
			"outage_ms", rb.Stats.OutageNanos.Load()/1e6, "outbox", rb.OutboxLen(),
			"acknowledged", rb.Stats.Published.Load(), "inbox_dropped", rb.Stats.InboxDropped.Load(),
			"target", m.cfg.Redis.Target())
	} else if lb, ok := m.r.Backend().(*localbus.Bus); ok {
		// local mode: the in-memory streams' Appends
		b.counts("target", m.cfg.Redis.Target(), "appended", lb.Stats.Appended.Load(),
			"append_overflow", lb.Stats.Overflow.Load(), "append_unread", lb.Stats.Unread.Load(), "entries_held", lb.Held())
	} else {
		b.counts("target", m.cfg.Redis.Target())
	}
	field("spool")
	spi := b.open(router.KindObject)
	sn := 0
	kv := func(k string, v float64) { b.str(k); b.num(v); sn++ }
	b.str("path")
	b.str("")
	sn++
	if st, lost, spooling, ok := spoolStats(m.r); ok {
		b.nodes[len(b.nodes)-1].Str = m.spoolPath
		kv("entries", float64(st.Depth))
		kv("bytes", float64(st.Bytes))
		kv("max_bytes", float64(m.cfg.Spool.MaxBytes))
		kv("oldest_age_ms", float64(st.OldestAge(time.Now()).Milliseconds()))
		kv("added", float64(st.Added))
		kv("flushed", float64(st.Flushed))
		kv("write_errors", float64(st.WriteErrors))
		b.str("spooling")
		b.boolean(spooling)
		b.str("dropped")
		b.counts("full", st.DroppedFull, "refused", st.DroppedRefused, "write", st.DroppedWrite, "lost", lost)
		sn += 2
	}
	b.close(spi, sn)
	field("events")
	i := b.open(router.KindObject)
	b.str("auto")
	b.boolean(m.cfg.Events.Auto)
	b.str("prefix")
	b.str(m.cfg.Events.Prefix)
	b.str("chat_skip_prefixes")
	b.strs(m.cfg.Events.ChatSkipPrefixes)
	b.close(i, 3)
	field("goroutines")
	b.num(float64(runtime.NumGoroutine()))
	field("go_heap_kb")
	metrics.Read(heapSample)
	b.num(float64(heapSample[0].Value.Uint64() / 1024))
	field("routes")
	ri := b.open(router.KindObject)
	routes := m.r.Table().Routes()
	for _, rt := range routes {
		b.str(rt.Name)
		rs := rt.Stats
		b.counts("pattern", rt.Pattern(), "handler", rt.Handler, "decode", rt.Decode, "rate", rt.Rate().String(),
			"matched", rs.Matched.Load(), "dispatched", rs.Dispatched.Load(),
			"rate_limited", rs.RateLimited.Load(), "dropped", rs.Dropped.Load(),
			"no_handler", rs.NoHandler.Load(), "handler_errors", rs.HandlerErrors.Load(),
			"decode_errors", rs.DecodeErrors.Load(), "refused", rs.Refused())
	}
	b.close(ri, len(routes))
	field("streams")
	var ss map[string]redisbus.StreamStats
	if rb, ok := m.r.Backend().(*redisbus.Bus); ok {
		ss = rb.StreamStats()
	} else if lb, ok := m.r.Backend().(*localbus.Bus); ok {
		ss = map[string]redisbus.StreamStats{}
		for name, st := range lb.StreamStats() { // local mode: the in-memory groups
			ss[name] = redisbus.StreamStats{Group: st.Group, Delivered: st.Delivered, Acked: st.Acked, Retried: st.Retried,
				Dead: st.Dead, Pending: st.Pending}
		}
	}
	si := b.open(router.KindObject)
	for _, name := range slices.Sorted(maps.Keys(ss)) {
		st := ss[name]
		b.str(name)
		b.counts("group", st.Group, "delivered", st.Delivered, "acked", st.Acked, "retried", st.Retried,
			"dead_lettered", st.Dead, "claimed", st.Claimed, "in_flight", st.InFlight, "pending", st.Pending, "lag", st.Lag)
	}
	b.close(si, len(ss))
	b.close(top, n)
	return b.doc()
}

// heapSample reads the Go heap's live and not yet swept objects: cheap,
// unlike runtime.ReadMemStats, which stops the world.
var heapSample = []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}

// logLevels rank [log] level's names.
var logLevels = map[string]int{"debug": 0, "info": 1, "warn": 2, "error": 3}

// log queues an info or warn line of the module's own (the router filters
// its lines itself) unless [log] level hides it; errors always show.
func (m *Module) log(level, line string) {
	if logLevels[level] < logLevels[m.cfg.Log.Level] {
		return
	}
	m.logs.add(level, line)
}

// TakeLog returns the oldest log line waiting for the main thread.
func (m *Module) TakeLog() (level, line string, ok bool) { return m.logs.take() }

// redisLogger sends go-redis's own log lines to the main thread instead of
// stderr.
type redisLogger struct{ m *Module }

func (l redisLogger) Printf(_ context.Context, format string, v ...any) {
	l.m.r.Logf("warn", "redis: "+format, v...)
}

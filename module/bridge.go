// Command module is gmsv_realtime, the Garry's Mod binary module, built
// with -buildmode=c-shared. The C shim (shim.c, tape.c, lua51.c) is the Lua
// side; this file moves values between it and package api, which holds the
// logic.
package main

/*
#cgo CFLAGS: -std=c11 -Wall -Wextra -Werror
#cgo linux LDFLAGS: -ldl
#include <stdlib.h>
#include "shim.h"
*/
import "C"

import (
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/gmod-realtime/realtime/module/api"
	"github.com/gmod-realtime/realtime/router"
)

func main() {}

// version is set by the Makefile (-X main.version=...).
var version = "dev"

// The C node kinds are router.Kind's numbers: a mismatch is a constant
// index out of range here, so it does not compile.
var _ = [1]struct{}{}[C.RTK_NULL-int(router.KindNull)]
var _ = [1]struct{}{}[C.RTK_FALSE-int(router.KindFalse)]
var _ = [1]struct{}{}[C.RTK_TRUE-int(router.KindTrue)]
var _ = [1]struct{}{}[C.RTK_NUMBER-int(router.KindNumber)]
var _ = [1]struct{}{}[C.RTK_STRING-int(router.KindString)]
var _ = [1]struct{}{}[C.RTK_ARRAY-int(router.KindArray)]
var _ = [1]struct{}{}[C.RTK_OBJECT-int(router.KindObject)]
var _ = [1]struct{}{}[C.RTK_INVALID-int(api.KindInvalid)]

var mod *api.Module

// goString copies C bytes into a Go string (C memory is only valid during
// the call).
func goString(p *C.char, n C.size_t) string {
	if n == 0 {
		return ""
	}
	return C.GoStringN(p, C.int(n))
}

// lastChannel is the channel of the last Publish. A server publishes to a
// few channels, mostly the same one again: channelString does not copy
// (nor allocate) a channel equal to the last one, and the writer boxes a
// run of one channel's messages once.
var lastChannel atomic.Pointer[string]

// channelString is goString for Publish's channel.
func channelString(p *C.char, n C.size_t) string {
	if n == 0 {
		return ""
	}
	b := unsafe.String((*byte)(unsafe.Pointer(p)), int(n)) // compared, not kept
	if last := lastChannel.Load(); last != nil && *last == b {
		return *last
	}
	s := strings.Clone(b)
	lastChannel.Store(&s)
	return s
}

// guard runs one call from C: it clears out's results and turns a Go panic
// into RT_PANIC, which the shim raises as a Lua error.
func guard(out *C.rt_out, f func() C.int) (code C.int) {
	defer func() {
		if p := recover(); p != nil {
			code = C.RT_PANIC
			if out != nil {
				reset(out)
				out.str = putStr(out, fmt.Sprintf("internal error: %v", p))
			}
		}
	}()
	if out != nil {
		reset(out)
	}
	return f()
}

// reset clears out's results; its args are the call's input.
func reset(out *C.rt_out) {
	out.tape.n, out.tape.nbytes = 0, 0
	out.str, out.name, out.argn, out.value = C.rt_str{}, C.rt_str{}, 0, 0
}

func reserve(t *C.rt_tape, nodes, bytes int) {
	if int(t.n)+nodes <= int(t.cap) && int(t.nbytes)+bytes <= int(t.bcap) {
		return
	}
	if nodes > 1<<30 || bytes > 1<<30 || C.rt_reserve(t, C.uint32_t(nodes), C.uint32_t(bytes)) == 0 {
		panic("out of memory")
	}
}

// putStr copies s into out's bytes.
func putStr(out *C.rt_out, s string) C.rt_str { return putStrIn(&out.tape, s) }

func putStrIn(t *C.rt_tape, s string) C.rt_str {
	if s == "" {
		return C.rt_str{}
	}
	reserve(t, 0, len(s))
	copy(unsafe.Slice((*byte)(unsafe.Pointer(t.bytes)), t.bcap)[t.nbytes:], s)
	str := C.rt_str{off: t.nbytes, len: C.uint32_t(len(s))}
	t.nbytes += C.uint32_t(len(s))
	return str
}

// putDocIn appends d's nodes to t and returns the index of the first.
func putDocIn(t *C.rt_tape, d *router.Doc) C.uint32_t {
	size := 0
	for i := range d.Nodes {
		size += len(d.Nodes[i].Str)
	}
	reserve(t, len(d.Nodes), size)
	first := t.n
	nodes := unsafe.Slice(t.nodes, t.cap)
	for i := range d.Nodes {
		n := &d.Nodes[i]
		cn := &nodes[t.n]
		t.n++
		cn.kind, cn.num, cn.len = C.uint32_t(n.Kind), C.double(n.Num), C.uint32_t(n.Len)
		if n.Kind == router.KindString {
			s := putStrIn(t, n.Str)
			cn.off, cn.len = s.off, s.len
		}
	}
	return first
}

// argsDoc reads the tape C made of a Lua value. Strings point into C memory
// unless keep asks for copies.
func argsDoc(out *C.rt_out, keep bool) *router.Doc {
	a := &out.args
	if a.n == 0 {
		return &router.Doc{}
	}
	cnodes := unsafe.Slice(a.nodes, a.n)
	var bytes []byte
	if a.nbytes > 0 {
		bytes = unsafe.Slice((*byte)(unsafe.Pointer(a.bytes)), a.nbytes)
	}
	nodes := make([]router.Node, len(cnodes))
	for i, cn := range cnodes {
		n := router.Node{Kind: router.Kind(cn.kind), Num: float64(cn.num), Len: int32(cn.len)}
		if (n.Kind == router.KindString || n.Kind == api.KindInvalid) && cn.len > 0 {
			n.Len = 0
			n.Str = unsafe.String(&bytes[cn.off], int(cn.len))
			if keep {
				n.Str = strings.Clone(n.Str)
			}
		}
		nodes[i] = n
	}
	return &router.Doc{Nodes: nodes}
}

func fail(out *C.rt_out, err error) C.int {
	out.str = putStr(out, err.Error())
	return C.RT_FAIL
}

func argError(out *C.rt_out, n int, msg string) C.int {
	out.argn = C.int32_t(n)
	out.str = putStr(out, msg)
	return C.RT_ARGERR
}

// syncDispatch gives the shim the dispatch settings in effect.
func syncDispatch() {
	d := mod.Config().Dispatch
	C.rt_budget_ns = C.int64_t(d.Budget.D())
	C.rt_max_per_frame = C.int64_t(d.MaxPerFrame)
	setAhead(mod)
}

// start is api.Start; a test replaces it to make open fail.
var start = api.Start

func open(out *C.rt_out) C.int {
	if mod == nil {
		mod = start(api.Options{
			Pending:  (*atomic.Int64)(unsafe.Pointer(&C.rt_pending_events)),
			Logs:     (*atomic.Int64)(unsafe.Pointer(&C.rt_pending_logs)),
			InFlight: inFlight,
			Frames:   takeFrames,
			Queued:   queued,
			Version:  version,
		})
		startFeeder(mod)
	} else {
		mod.Open()
	}
	C.rt_need_begin = 1
	syncDispatch()
	out.str = putStr(out, version)
	return C.RT_OK
}

// takeFrames returns the pump's frame times recorded since the last call,
// and starts over.
func takeFrames() api.Frames {
	f := &C.rt_frame_stats
	n := min(int(f.n), C.RT_FRAMES)
	out := api.Frames{Count: uint64(f.n), OverBudget: uint64(f.over), Max: time.Duration(f.max)}
	out.Recent = make([]time.Duration, n)
	for i := range n {
		out.Recent[i] = time.Duration(f.ns[i])
	}
	f.n, f.over, f.max = 0, 0, 0
	return out
}

// closeState forgets the Lua state. Events in the ring that it did not
// dispatch stay there for the next state: they name their handlers, and
// the next state's handler table has its own.
func closeState() C.int {
	if mod != nil {
		mod.Close()
	}
	return C.RT_OK
}

// begin starts the first ProcessEvents call of a Lua state.
func begin() C.int {
	mod.BeginFrame()
	markRemoved(mod) // the sweep's
	return C.RT_OK
}

// pumpError reports an error the pump met outside any event.
func pumpError(msg string) C.int {
	mod.HandlerError(nil, false, msg)
	return C.RT_OK
}

var logLevels = map[string]C.int32_t{"debug": 1, "info": 1, "warn": 2, "error": 3}

func takeLog(out *C.rt_out) C.int {
	level, line, ok := mod.TakeLog()
	if ok {
		out.value = logLevels[level]
		out.str = putStr(out, "[realtime] "+line)
	}
	return C.RT_OK
}

func handler(out *C.rt_out, name string, has bool) C.int {
	if err := mod.Handler(name, has); err != nil {
		return argError(out, 1, err.Error())
	}
	return C.RT_OK
}

func on(out *C.rt_out, pattern, id string, exact bool, decode, rate string, burst float64) C.int {
	_, _, err := mod.On(pattern, id, api.OnOptions{Exact: exact, Decode: decode, Rate: rate, Burst: burst})
	var oe *api.OptionError
	switch {
	case errors.As(err, &oe):
		return argError(out, 0, err.Error()) // the shim knows which argument holds the options
	case err != nil:
		return argError(out, 1, err.Error())
	}
	return C.RT_OK // the shim has the id and name from onName
}

func stream(out *C.rt_out, name, id string, o api.StreamOptions) C.int {
	_, _, err := mod.Stream(name, id, o)
	var oe *api.OptionError
	switch {
	case errors.As(err, &oe):
		return argError(out, 0, err.Error())
	case err != nil:
		return argError(out, 1, err.Error())
	}
	return C.RT_OK
}

// onName gives On's id (made when id is "") and its route's name, under
// which the shim keeps the function before on registers it.
func onName(out *C.rt_out, pattern, id string, stream bool) C.int {
	var name string
	if stream {
		id, name = mod.StreamName(pattern, id)
	} else {
		id, name = mod.OnName(pattern, id)
	}
	out.str = putStr(out, id)
	out.name = putStr(out, name)
	return C.RT_OK
}

// off returns the names of the removed routes as string nodes, for the shim
// to remove from its handler table.
func off(out *C.rt_out, pattern, id string, byPattern bool) C.int {
	var names []string
	if byPattern {
		names = mod.Off(id, pattern)
	} else {
		names = mod.Off(id)
	}
	if len(names) > 0 {
		markRemoved(mod)
	}
	t := &out.tape
	reserve(t, len(names), 0)
	nodes := unsafe.Slice(t.nodes, t.cap)
	for i, name := range names {
		s := putStrIn(t, name)
		nodes[i] = C.rt_node{kind: C.RTK_STRING, off: s.off, len: s.len}
	}
	t.n = C.uint32_t(len(names))
	return C.RT_OK
}

// payloadArg is argument 2 of Publish and Append: payload, or the table
// the shim put in out.args (table) encoded as JSON.
func payloadArg(out *C.rt_out, payload string, table bool) (string, C.int) {
	if !table {
		return payload, C.RT_OK
	}
	s, err := api.EncodeJSON(argsDoc(out, false), "payload")
	if err != nil {
		return "", argError(out, 2, err.Error())
	}
	return s, C.RT_OK
}

func publish(out *C.rt_out, channel, payload string, table bool) C.int {
	payload, code := payloadArg(out, payload, table)
	if code != C.RT_OK {
		return code
	}
	if channel == "" {
		return argError(out, 1, "channel is empty")
	}
	if err := mod.Publish(channel, payload); err != nil {
		return fail(out, err)
	}
	return C.RT_OK
}

func appendEntry(out *C.rt_out, stream, payload string, table bool) C.int {
	payload, code := payloadArg(out, payload, table)
	if code != C.RT_OK {
		return code
	}
	if stream == "" {
		return argError(out, 1, "stream is empty")
	}
	id, err := mod.Append(stream, payload)
	if err != nil {
		return fail(out, err)
	}
	out.str = putStr(out, id)
	return C.RT_OK
}

func gameEvent(out *C.rt_out, fn string) C.int {
	if err := mod.GameEvent(fn, argsDoc(out, false)); err != nil {
		return fail(out, err)
	}
	return C.RT_OK
}

func configure(out *C.rt_out) C.int {
	if err := mod.Configure(argsDoc(out, true)); err != nil {
		return fail(out, err)
	}
	return C.RT_OK
}

func connect(out *C.rt_out, url string) C.int {
	err := mod.Connect(url)
	syncDispatch()
	if err != nil {
		return fail(out, err)
	}
	return C.RT_OK
}

func disconnect() C.int {
	mod.Disconnect()
	return C.RT_OK
}

func status(out *C.rt_out) C.int {
	s := mod.Status()
	out.str = putStr(out, s)
	if s == router.StatusConnected.String() || s == router.StatusLocal.String() {
		out.value = 1
	}
	return C.RT_OK
}

func reload(out *C.rt_out) C.int {
	res, err := mod.Reload()
	syncDispatch()
	if err != nil {
		return fail(out, err)
	}
	putDocIn(&out.tape, res.Doc())
	return C.RT_OK
}

func stats(out *C.rt_out) C.int {
	finish() // the events dispatched so far are counted
	putDocIn(&out.tape, mod.Stats())
	return C.RT_OK
}

// Command module is gmsv_realtime, the Garry's Mod binary module, built
// with -buildmode=c-shared. The C shim (shim.c) is the Lua side; this file
// moves values between it and package api, which holds the logic.
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
	"unsafe"

	"github.com/gmod-realtime/realtime/module/api"
	"github.com/gmod-realtime/realtime/router"
)

func main() {}

// version is set by the Makefile (-X main.version=...).
var version = "dev"

var (
	mod *api.Module
	// The handler calls of ProcessEvents' current batch (rt_events), and
	// its count of messages and their limit.
	batch                   []api.Dispatch
	dispatched, dispatchMax int
)

// batchSize is the most handler calls one Go call hands to the shim: fewer
// crossings per event, at the cost of checking the time budget once per
// batch rather than once per event.
const batchSize = 32

// goString copies C bytes into a Go string (C memory is only valid during
// the call).
func goString(p *C.char, n C.size_t) string {
	if n == 0 {
		return ""
	}
	return C.GoStringN(p, C.int(n))
}

// guard runs one call from C: it clears the result and turns a Go panic
// into RT_PANIC, which the shim raises as a Lua error.
func guard(f func() C.int) (code C.int) {
	defer func() {
		if p := recover(); p != nil {
			reset()
			C.rt_result.str = putStr(fmt.Sprintf("internal error: %v", p))
			code = C.RT_PANIC
		}
	}()
	reset()
	return f()
}

func reset() {
	r := &C.rt_result
	r.tape.n, r.tape.nbytes, r.nrefs = 0, 0, 0
	r.str, r.argn, r.value = C.rt_str{}, 0, 0
}

func reserve(t *C.rt_tape, nodes, bytes int) {
	if int(t.n)+nodes <= int(t.cap) && int(t.nbytes)+bytes <= int(t.bcap) {
		return
	}
	if int64(t.nbytes)+int64(bytes) > 1<<31 || C.rt_reserve(t, C.uint32_t(nodes), C.uint32_t(bytes)) == 0 {
		panic("out of memory")
	}
}

// putStr copies s into the result's bytes.
func putStr(s string) C.rt_str { return putStrIn(&C.rt_result.tape, s) }

func putStrIn(t *C.rt_tape, s string) C.rt_str {
	if s == "" {
		return C.rt_str{}
	}
	reserve(t, 0, len(s))
	copy(unsafe.Slice((*byte)(unsafe.Pointer(t.bytes)), t.bcap)[t.nbytes:], s)
	out := C.rt_str{off: t.nbytes, len: C.uint32_t(len(s))}
	t.nbytes += C.uint32_t(len(s))
	return out
}

// putDoc writes a JSON-shaped doc as the result's tape.
func putDoc(d *router.Doc) { putDocIn(&C.rt_result.tape, d) }

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
func argsDoc(keep bool) *router.Doc {
	a := &C.rt_args
	cnodes := unsafe.Slice(a.nodes, a.n)
	bytes := unsafe.Slice((*byte)(unsafe.Pointer(a.bytes)), a.nbytes)
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

func release(refs ...api.Ref) {
	if len(refs) == 0 {
		return
	}
	if C.rt_reserve_refs(C.uint32_t(len(refs))) == 0 {
		panic("out of memory")
	}
	r := &C.rt_result
	out := unsafe.Slice(r.refs, r.refcap)
	for i, ref := range refs {
		out[i] = C.int32_t(ref)
	}
	r.nrefs = C.uint32_t(len(refs))
}

func fail(err error) C.int {
	C.rt_result.str = putStr(err.Error())
	return C.RT_FAIL
}

func argError(n int, msg string) C.int {
	C.rt_result.argn = C.int32_t(n)
	C.rt_result.str = putStr(msg)
	return C.RT_ARGERR
}

func open() C.int {
	if mod == nil {
		mod = api.Start(api.Options{
			Pending: (*atomic.Int64)(unsafe.Pointer(&C.rt_pending_events)),
			Logs:    (*atomic.Int64)(unsafe.Pointer(&C.rt_pending_logs)),
		})
	} else {
		mod.Open()
	}
	batch = batch[:0]
	C.rt_result.str = putStr(version)
	return C.RT_OK
}

func closeState() C.int {
	if mod != nil {
		mod.Close()
	}
	batch = batch[:0]
	return C.RT_OK
}

// next fills rt_events with the next batch of handler calls; none when the
// queue is empty, the budget is spent or max messages were dispatched.
func next(first bool, max int) C.int {
	b := &C.rt_events
	b.n, b.tape.n, b.tape.nbytes = 0, 0, 0
	batch = batch[:0]
	if first {
		dispatched = 0
		dispatchMax = mod.MaxPerFrame()
		if max > 0 {
			dispatchMax = max
		}
	}
	if C.rt_reserve_events(batchSize) == 0 {
		panic("out of memory")
	}
	events := unsafe.Slice(b.events, b.cap)
	for len(batch) < batchSize && dispatched < dispatchMax {
		d, ok := mod.Next(first && len(batch) == 0)
		if !ok {
			break
		}
		batch = append(batch, d)
		ev := &events[b.n]
		b.n++
		*ev = C.rt_event{ref: C.int32_t(d.Ref), hook: putStrIn(&b.tape, d.Hook)}
		e := d.Event
		if e.Kind == router.KindStatus {
			ev.status = 1
			ev.reason = putStrIn(&b.tape, e.Note)
			continue
		}
		dispatched++
		ev.channel = putStrIn(&b.tape, e.Channel)
		ev.pattern = putStrIn(&b.tape, e.Route.Pattern())
		ev.route = putStrIn(&b.tape, e.Route.Name)
		ev.received = C.double(float64(e.Received) / 1e6)
		if e.JSON != nil {
			ev.json, ev.node = 1, putDocIn(&b.tape, e.JSON)
		} else {
			ev.payload = putStrIn(&b.tape, e.Payload)
		}
	}
	return C.RT_OK
}

func handlerError(event int, msg string) C.int {
	if event >= 0 && event < len(batch) {
		mod.HandlerError(&batch[event], msg)
	}
	return C.RT_OK
}

var logLevels = map[string]C.int32_t{"debug": 1, "info": 1, "warn": 2, "error": 3}

func takeLog() C.int {
	level, line, ok := mod.TakeLog()
	if ok {
		C.rt_result.value = logLevels[level]
		C.rt_result.str = putStr("[realtime] " + line)
	}
	return C.RT_OK
}

func handler(name string, ref C.int) C.int {
	old, err := mod.Handler(name, api.Ref(ref))
	if err != nil {
		return argError(1, err.Error())
	}
	release(old)
	return C.RT_OK
}

func on(pattern, id string, ref C.int, exact bool, decode, rate string, burst int) C.int {
	id, old, err := mod.On(pattern, id, api.Ref(ref), api.OnOptions{Exact: exact, Decode: decode, Rate: rate, Burst: burst})
	var oe *api.OptionError
	switch {
	case errors.As(err, &oe):
		return argError(0, err.Error()) // the shim knows which argument holds the options
	case err != nil:
		return argError(1, err.Error())
	}
	release(old)
	C.rt_result.str = putStr(id)
	return C.RT_OK
}

func off(pattern, id string) C.int {
	refs := mod.Off(pattern, id)
	release(refs...)
	if len(refs) > 0 {
		C.rt_result.value = 1
	}
	return C.RT_OK
}

func publish(channel, payload string, table bool) C.int {
	if table {
		s, err := api.EncodeJSON(argsDoc(false), "payload")
		if err != nil {
			return argError(2, err.Error())
		}
		payload = s
	}
	if channel == "" {
		return argError(1, "channel is empty")
	}
	if err := mod.Publish(channel, payload); err != nil {
		return fail(err)
	}
	return C.RT_OK
}

func gameEvent(fn string) C.int {
	if err := mod.GameEvent(fn, argsDoc(false)); err != nil {
		return fail(err)
	}
	return C.RT_OK
}

func configure() C.int {
	if err := mod.Configure(argsDoc(true)); err != nil {
		return fail(err)
	}
	return C.RT_OK
}

func connect(url string) C.int {
	if err := mod.Connect(url); err != nil {
		return fail(err)
	}
	return C.RT_OK
}

func disconnect() C.int {
	mod.Disconnect()
	return C.RT_OK
}

func status() C.int {
	C.rt_result.str = putStr(mod.Status())
	return C.RT_OK
}

func reload() C.int {
	res, err := mod.Reload()
	if err != nil {
		return fail(err)
	}
	putDoc(res.Doc())
	return C.RT_OK
}

func stats() C.int {
	putDoc(mod.Stats())
	return C.RT_OK
}

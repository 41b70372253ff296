package main

import (
	"strings"
	"testing"

	"github.com/gmod-realtime/realtime/config"
	"github.com/gmod-realtime/realtime/module/api"
	"github.com/gmod-realtime/realtime/router"
)

// TestGuardTurnsPanicsIntoErrors: a Go panic in an entry point comes back
// to the shim as RT_PANIC (raised as a Lua error), never as a crash, and
// the next call works.
func TestGuardTurnsPanicsIntoErrors(t *testing.T) {
	if code := guard(nil, func() _Ctype_int { panic("boom") }); code != 3 {
		t.Fatalf("guard returned %d, want RT_PANIC (3)", code)
	}
	if code := guard(nil, func() _Ctype_int { return 0 }); code != 0 {
		t.Fatalf("guard returned %d after a panic, want RT_OK", code)
	}
}

// outString is out's message.
func outString(out *_Ctype_rt_out) string {
	if out.str.len == 0 {
		return ""
	}
	return _Cfunc_GoStringN(out.tape.bytes, _Ctype_int(out.str.off+out.str.len))[out.str.off:]
}

// TestOpenFailureIsTheError: when the module cannot start, open returns
// RT_PANIC with the cause (the shim raises it, so require fails with it),
// and a later open tries again.
func TestOpenFailureIsTheError(t *testing.T) {
	saved := start
	t.Cleanup(func() { start, mod = saved, nil })
	mod = nil
	start = func(api.Options) *api.Module { panic("no config for you") }
	var out _Ctype_rt_out
	if code := rtgo_open(&out); code != 3 {
		t.Fatalf("open returned %d, want RT_PANIC (3)", code)
	}
	if got := outString(&out); !strings.Contains(got, "no config for you") {
		t.Fatalf("open's error is %q, want the cause", got)
	}
	if mod != nil {
		t.Fatal("a failed open left a module behind")
	}
	start = func(o api.Options) *api.Module {
		o.Config = config.Options{Dir: t.TempDir(), Environ: []string{}}
		return api.Start(o)
	}
	out = _Ctype_rt_out{}
	if code := rtgo_open(&out); code != 0 {
		t.Fatalf("the next open returned %d: %s", code, outString(&out))
	}
	t.Cleanup(func() { mod.Stop() })
}

// TestFillPanicIsLogged: a panic while the ring is filled (on a goroutine,
// where nothing else would recover it) is logged, and what was put in the
// ring before it stays there.
func TestFillPanicIsLogged(t *testing.T) {
	mod = api.Start(api.Options{Config: config.Options{Dir: t.TempDir(), Environ: []string{}}})
	savedTake := take
	t.Cleanup(func() { mod.Stop(); mod, take = nil, savedTake })
	_, _, err := mod.On("x", "x", api.OnOptions{})
	if err != nil {
		t.Fatal(err)
	}
	e := &router.Event{Kind: router.KindMessage, Channel: "x", Route: mod.Router().Table().Routes()[0]}
	emptyRing()
	calls := 0
	take = func(*api.Module) (api.Dispatch, bool) {
		if calls++; calls > 1 {
			panic("batch went wrong")
		}
		return api.Dispatch{Event: e, Handler: e.Route.Name}, true
	}
	setAhead(mod)
	before := inFlight()
	feed.mu.Lock()
	fillLocked(mod)
	feed.mu.Unlock()
	if got := inFlight(); got != before+1 {
		t.Fatalf("%d events in the ring after the panic, want %d", got, before+1)
	}
	if filling().Load() != 0 {
		t.Fatal("the ring is still marked as being filled")
	}
	var lines []string
	for {
		_, line, ok := mod.TakeLog()
		if !ok {
			break
		}
		lines = append(lines, line)
	}
	if !strings.Contains(strings.Join(lines, "\n"), "internal error in ProcessEvents (0 events dropped, counted as dropped.internal): batch went wrong") {
		t.Fatalf("log lines %q", lines)
	}
}

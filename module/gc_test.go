package main

import (
	"runtime/debug"
	"runtime/metrics"
	"testing"
)

// gogc is the GC percent the Go runtime applies now.
func gogc() int64 {
	s := []metrics.Sample{{Name: "/gc/gogc:percent"}}
	metrics.Read(s)
	return int64(s[0].Value.Uint64())
}

// TestModuleSetsGCPercent: loaded without GOGC in its environment, the
// module collects its heap at 25% growth, not Go's default 100%; an
// operator's GOGC, whatever it says, is left as the runtime applied it.
func TestModuleSetsGCPercent(t *testing.T) {
	t.Cleanup(func() { setGC(func(string) string { return "" }) })
	env := func(v string) func(string) string {
		return func(k string) string {
			if k == "GOGC" {
				return v
			}
			return ""
		}
	}

	debug.SetGCPercent(100) // as the runtime starts without GOGC
	setGC(env(""))
	if got := gogc(); got != gcPercent || gcPercent != 25 {
		t.Fatalf("without GOGC: GC percent %d, want 25", got)
	}

	for _, tc := range []struct {
		env     string
		applied int // what the runtime made of it at start
	}{{"150", 150}, {"100", 100}, {"off", -1}, {"5", 5}} {
		debug.SetGCPercent(tc.applied)
		setGC(env(tc.env))
		if got, want := gogc(), int64(tc.applied); got != want {
			t.Fatalf("GOGC=%s: GC percent %d, want %d (the operator's)", tc.env, got, want)
		}
	}
}

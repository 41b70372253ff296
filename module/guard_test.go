package main

import "testing"

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

#!/usr/bin/env bash
# A check of scripts/fuzz.sh itself (issue 20; it began as the reproducer
# of an attack on it): builds a scratch
# module in a temp dir with throwaway Fuzz targets (nothing lands in this
# repo), runs a copy of scripts/fuzz.sh on each, and checks what it promises.
# Exit 0: every promise held; otherwise the broken ones are listed.
# The last check (SKIP_HANG=1 leaves it out) documents a break in Go itself:
# the worker's own hang alarm is 10 s (internal/fuzz/worker.go, RunFuzzWorker),
# and the coordinator drops a hung worker without a word when -fuzztime runs
# out first, so with FUZZTIME=10s (make test) a hang can never be reported and
# the stage passes. FUZZTIME=20s reports one that starts in the first 10 s;
# a count (FUZZTIME=5000x) always reports it.
# The checks that want a failure run for SELFTEST_FUZZTIME (default 60s;
# they stop at the failure, within seconds): with 3 s, a starved machine
# (the selftest under nice -n 19 beside make fuzz) had not started the
# worker when the time ran out, and the check failed make test.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/scripts" "$tmp/p/testdata/fuzz/FuzzSeed"
cp "$here/fuzz.sh" "$tmp/scripts/"
printf 'module example.com/fz\ngo 1.26\n' >"$tmp/go.mod"
printf 'go test fuzz v1\nstring("bad")\n' >"$tmp/p/testdata/fuzz/FuzzSeed/zzz_unsorted"
cat >"$tmp/p/p_test.go" <<'GO'
package p

import "testing"

func body(f *testing.F, fail func(t *testing.T, s string)) {
	f.Add("a")
	f.Fuzz(fail)
}

func FuzzBoom(f *testing.F) {
	body(f, func(t *testing.T, s string) {
		if len(s) > 3 {
			t.Fatal("boom")
		}
	})
}
func FuzzPanic(f *testing.F) {
	body(f, func(t *testing.T, s string) {
		if len(s) > 3 {
			panic("kaboom")
		}
	})
}
func FuzzCtx(f *testing.F) {
	body(f, func(t *testing.T, s string) {
		if len(s) > 3 {
			t.Fatal("context deadline exceeded")
		}
	})
}
func FuzzSeed(f *testing.F) {
	body(f, func(t *testing.T, s string) {
		if s == "bad" {
			t.Fatal("seed is bad")
		}
	})
}
func FuzzPass(f *testing.F) {
	body(f, func(t *testing.T, s string) {
		if len(s) > 2 && s[0] == 'x' && s[1] == 'y' {
			return
		}
	})
}
func FuzzSkip(f *testing.F) {
	f.Skip("no fuzzing here")
}
func FuzzHang(f *testing.F) {
	body(f, func(t *testing.T, s string) {
		if len(s) > 3 {
			select {}
		}
	})
}
GO
cat >"$tmp/p/gone_test.go" <<'GO'
//go:build never

package p

import "testing"

func FuzzGone(f *testing.F) { f.Fuzz(func(t *testing.T, s string) { t.Fatal(s) }) }
GO
mkdir -p "$tmp/empty/scripts"
cp "$here/fuzz.sh" "$tmp/empty/scripts/"
printf 'module example.com/empty\ngo 1.26\n' >"$tmp/empty/go.mod"
broken=0
held() { # what, want status (fail|pass), grep pattern, rc, output
	local what=$1 want=$2 pat=$3 rc=$4 out=$5
	if { [ "$want" = fail ] && [ $rc = 0 ]; } || { [ "$want" = pass ] && [ $rc != 0 ]; } || ! grep -q -- "$pat" <<<"$out"; then
		echo "BROKEN: $what: want $want and /$pat/, got rc=$rc:"; echo "$out" | tail -20
		broken=1
	else
		echo "held: $what ($want)"
	fi
}
check() { # name, want status (fail|pass), grep pattern the output must hold
	local name=$1 want=$2 pat=$3 out rc=0
	out=$(cd "$tmp" && FUZZTIME=${4:-${SELFTEST_FUZZTIME:-60s}} bash -c "
		source <(sed -e '/^cd /d' -e '/^failed=0/,\$d' scripts/fuzz.sh); fuzz ./p $name" 2>&1) || rc=$?
	held "$name" "$want" "$pat" "$rc" "$out"
}
check FuzzBoom fail "=== replay: .* test -run '^FuzzBoom/[0-9a-f]*\\$' ./p"
check FuzzPanic fail '=== failing input ./p/testdata/fuzz/FuzzPanic/'
check FuzzCtx fail '=== failing input ./p/testdata/fuzz/FuzzCtx/'
check FuzzSeed fail '=== failing input ./p/testdata/fuzz/FuzzSeed/zzz_unsorted'
check FuzzSkip fail 'FuzzSkip: FAIL: it did not fuzz'
check FuzzGone fail 'FuzzGone: FAIL: it did not fuzz'
rc=0; out=$(FUZZTIME=1s "$tmp/empty/scripts/fuzz.sh" 2>&1) || rc=$?
held "a tree with no Fuzz target" fail 'no Fuzz target found' "$rc" "$out"
check FuzzPass pass '^ok.*example.com/fz/p' 2000x
# The inputs Go found interesting went to the checkout's cache.
rc=0; out=$(ls -A "$tmp/build/fuzzcache/p/FuzzPass" 2>&1) && [ -n "$out" ] || rc=1
held "the fuzz cache in build/fuzzcache" pass . "$rc" "$out"
# The Go race itself (see fuzz.sh) passes: its output as a no-op target
# gave it through fuzz.sh at FUZZTIME=100ms, once in 120 runs under load.
cat >"$tmp/race.log" <<'LOG'
fuzz: elapsed: 0s, gathering baseline coverage: 0/1 completed
fuzz: elapsed: 0s, gathering baseline coverage: 1/1 completed, now fuzzing with 1 workers
fuzz: elapsed: 0s, execs: 1 (8/sec), new interesting: 0 (total: 1)
--- FAIL: FuzzNop (0.14s)
    context deadline exceeded
FAIL
exit status 1
FAIL	example.com/rp/p	0.232s
LOG
rc=0; out=$(cd "$tmp" && FUZZTIME=100ms bash -c "
	source <(sed -e '/^cd /d' -e '/^failed=0/,\$d' scripts/fuzz.sh); coordinator_race race.log FuzzNop" 2>&1) || rc=$?
held "Go's coordinator deadline race is no finding" pass '' "$rc" "$out"
[ "${SKIP_HANG:-}" ] || check FuzzHang fail "failing input" "${FUZZTIME:-10s}"
exit $broken

#!/usr/bin/env bash
# The fuzz stage of `make test`, and `make fuzz FUZZTIME=5m` for a longer
# hunt: every Fuzz target in the module, one after another, each explored for
# FUZZTIME (a duration such as 10s, or a count of inputs such as 50000x) by
# FUZZPARALLEL worker processes (default 1, so a loaded machine slows the
# exploration down instead of starving workers until Go reports them hung).
#
# The seed corpora (the f.Add calls and testdata/fuzz) run in `make unit`
# too, with -race. When a target fails, this prints every input Go wrote
# under testdata/fuzz, with its contents and the command that replays it, so
# the CI log alone reproduces the failure: put the file back in place (or
# commit it as a seed once the bug is fixed).
#
# Each target's cache of interesting inputs is FUZZCACHE/dir/name
# (default build/fuzzcache, inside the checkout), not Go's shared one under
# GOCACHE: a fresh clone starts from its committed seeds alone, whatever
# other checkouts and branches fuzzed on the machine before (that cache
# held 670 inputs for FuzzParse, whose baseline run took 4-7 s of the 10 s
# on a loaded machine). FUZZCACHE= (empty) uses Go's.
#
# FUZZMINIMIZETIME (default 2s) bounds the minimizing of one input: with
# Go's 60 s, minimizing one new interesting input held the only worker for
# the rest of the run (FuzzParseJSON: no execs for 35 s of a 40 s run). A
# failing input is written whole if its minimizing runs out.
#
# A target that did not fuzz (no match, or it called f.Skip) fails, and so
# does a tree with no Fuzz target.
#
# Go 1.26's fuzz coordinator can fail a run that found nothing with a bare
# "context deadline exceeded" when -fuzztime runs out: its deadline fires
# before the workers' context is cancelled, and its check for an expected
# stop (internal/fuzz/fuzz.go: err == fuzzCtx.Err()) misses it. A starved machine
# widens that window. Such a run is reported as what it is and does not fail
# the stage; any other failure does.
set -euo pipefail
cd "$(dirname "$0")/.."
GO=${GO:-go}
FUZZTIME=${FUZZTIME:-10s}
FUZZPARALLEL=${FUZZPARALLEL:-1}
FUZZMINIMIZETIME=${FUZZMINIMIZETIME:-2s}
FUZZCACHE=${FUZZCACHE-build/fuzzcache}
[ -z "$FUZZCACHE" ] || [[ $FUZZCACHE = /* ]] || FUZZCACHE=$PWD/$FUZZCACHE

# "dir name" for every Fuzz function, in a stable order.
targets() {
	grep -rl --include='*_test.go' '^func Fuzz' . | sort | while read -r file; do
		grep -o '^func Fuzz[A-Za-z0-9_]*' "$file" | sed "s|^func |$(dirname "$file") |"
	done
}

# corpus lists the inputs in testdata/fuzz/name of dir.
corpus() { ls "$1/testdata/fuzz/$2" 2>/dev/null | sort || true; }

# coordinator_race reports whether log is that coordinator failure:
# the target's only failure line is "context deadline exceeded".
coordinator_race() {
	local log=$1 name=$2
	[[ $FUZZTIME != *x ]] || return 1
	[ "$(grep -c -- '^--- FAIL' "$log")" = 1 ] || return 1
	[ "$(grep -A2 -- "^--- FAIL: $name " "$log" | sed -n '2,3p')" = "$(printf '    context deadline exceeded\nFAIL')" ] || return 1
	! grep -q 'Failing input written' "$log"
}

fuzz() {
	local dir=$1 name=$2 log before new seed status=0 cache=()
	log=$(mktemp)
	before=$(corpus "$dir" "$name")
	[ -z "$FUZZCACHE" ] || cache=(-args "-test.fuzzcachedir=$FUZZCACHE/${dir#./}")
	echo "fuzz $dir $name ($FUZZTIME, $FUZZPARALLEL worker(s))"
	$GO test -run '^$' -fuzz "^$name\$" -fuzztime "$FUZZTIME" -fuzzminimizetime "$FUZZMINIMIZETIME" \
		-parallel "$FUZZPARALLEL" "$dir" "${cache[@]}" </dev/null 2>&1 | tee "$log" || status=$?
	if [ "$status" = 0 ]; then
		# The coordinator prints its progress from the start: without it,
		# nothing was fuzzed (Go passes a -fuzz that matches nothing).
		if ! grep -q '^fuzz: elapsed: ' "$log"; then
			rm -f "$log"
			echo "fuzz $dir $name: FAIL: it did not fuzz (no such target in the package as built, or it skipped)"
			return 1
		fi
		rm -f "$log"
		return 0
	fi
	new=$(comm -13 <(echo "$before") <(corpus "$dir" "$name"))
	if [ -z "$new" ] && coordinator_race "$log" "$name"; then
		echo "fuzz $dir $name: no failing input; Go's fuzz coordinator reported its own -fuzztime deadline (see the top of this script), not a finding"
		rm -f "$log"
		return 0
	fi
	# A file already in testdata/fuzz that fails is named, not written anew.
	seed=$(sed -n "s|^failure while testing seed corpus entry: $name/||p" "$log" | head -n 1)
	rm -f "$log"
	if [ -n "$seed" ] && [ -f "$dir/testdata/fuzz/$name/$seed" ]; then
		new=$(printf '%s\n%s\n' "$new" "$seed" | sort -u)
	fi
	for f in $new; do
		echo "=== failing input $dir/testdata/fuzz/$name/$f:"
		cat "$dir/testdata/fuzz/$name/$f"
		echo "=== replay: $GO test -run '^$name/$f\$' $dir"
		$GO test -count=1 -run "^$name/$f\$" "$dir" || true
	done
	[ -n "$new" ] || echo "fuzz $dir $name failed with no input written: see the output above"
	return 1
}

failed=0 ran=0
while read -r dir name; do
	ran=$((ran + 1))
	fuzz "$dir" "$name" || failed=1
done < <(targets)
if [ "$ran" = 0 ]; then
	echo "fuzz: FAIL: no Fuzz target found"
	exit 1
fi
exit $failed

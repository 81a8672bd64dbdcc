#!/usr/bin/env bash
# Runs every `Fuzz*` target in the module for a short time each (CI smoke fuzzing; run longer with FUZZTIME=10m).
# Each package's instrumented test binary is built once (`go test -c -fuzz=.`) and then run once per target from the
# package directory (so testdata/fuzz seed corpora are found): linking a binary per target used to dominate the time.
set -euo pipefail
fuzztime="${1:-5s}"
root="$(pwd)"
module="$(go list -m)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cachedir="$(go env GOCACHE)/fuzz"
mapfile -t pkgs < <(git ls-files '*_test.go' | xargs grep -l '^func Fuzz' | xargs -n1 dirname | sort -u)
for dir in "${pkgs[@]}"; do
	bin="$work/$(echo "$dir" | tr '/' '_').test"
	echo ">> building the fuzz binary of ./$dir"
	go test -c -fuzz=. -o "$bin" "./$dir"
	for target in $(cat "$dir"/*_test.go | grep -oE '^func (Fuzz[A-Za-z0-9_]+)' | awk '{print $2}' | sort -u); do
		for attempt in 1 2 3; do
			echo ">> fuzz ./$dir $target ($fuzztime)"
			rc=0
			(cd "$root/$dir" && "$bin" -test.run='^$' -test.fuzz="^${target}\$" -test.fuzztime="$fuzztime" \
				-test.fuzzminimizetime=2s -test.fuzzcachedir="$cachedir/$module/$dir") >"$work/out" 2>&1 || rc=$?
			cat "$work/out"
			[[ $rc -eq 0 ]] && break
			# A crasher is always a failure. The fuzzing engine itself sometimes ends a run with a bare "context
			# deadline exceeded" when its time is up while a worker is still busy (no failing input is written):
			# that run is repeated (twice at most); a third such ending fails.
			if grep -q 'Failing input written to' "$work/out" || ! grep -q 'context deadline exceeded' "$work/out" || [[ $attempt -eq 3 ]]; then
				exit "$rc"
			fi
			echo ">> $target: the fuzzing engine stopped on its deadline without a failing input; running it again"
		done
	done
done

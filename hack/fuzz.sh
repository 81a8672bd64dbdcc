#!/usr/bin/env bash
# Runs every `Fuzz*` target in the module for a short time each (CI smoke fuzzing; run longer with FUZZTIME=10m).
set -euo pipefail
fuzztime="${1:-5s}"
mapfile -t files < <(git ls-files '*_test.go' | xargs grep -l '^func Fuzz' || true)
for f in "${files[@]}"; do
	pkg="./$(dirname "$f")"
	for target in $(grep -oE '^func (Fuzz[A-Za-z0-9_]+)' "$f" | awk '{print $2}'); do
		echo ">> fuzz $pkg $target ($fuzztime)"
		go test -run "^$" -fuzz "^${target}\$" -fuzztime "$fuzztime" -fuzzminimizetime 2s "$pkg"
	done
done

#!/usr/bin/env bash
# Runs the fuzz targets given as pkg:Target, FUZZTIME each (make fuzz).
# A failure the fuzzer found writes its input under testdata/fuzz and is
# reported with the output. A run that fails with no input found, only the
# toolchain's "context deadline exceeded" as the time runs out (a known Go
# race, golang/go#75804), is run once more; a second such failure counts.
set -uo pipefail
cd "$(dirname "$0")/.."
GO=${GO:-go}
FUZZTIME=${FUZZTIME:-8s}
out=$(mktemp)
trap 'rm -f "$out"' EXIT
for t in "$@"; do
	pkg=${t%%:*} name=${t#*:}
	echo "fuzz $name ($FUZZTIME)"
	for try in 1 2; do
		if "$GO" test -run XXX -fuzz "^${name}\$" -fuzztime "$FUZZTIME" -fuzzminimizetime 5s "./$pkg" >"$out" 2>&1; then
			break
		fi
		if [ "$try" = 1 ] && ! grep -q "Failing input written" "$out" && grep -q "context deadline exceeded" "$out"; then
			echo "  $name: the fuzzer stopped on its deadline without a failing input; once more"
			continue
		fi
		cat "$out"
		exit 1
	done
done

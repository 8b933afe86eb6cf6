#!/usr/bin/env bash
# Fails when git tracks a build output: an ELF file anywhere, or a file over
# 1 MiB that is not listed below as test data. Run by `make lint`.
set -euo pipefail
cd "$(dirname "$0")/.."

# Large files that are meant to be tracked, one path a line (none today).
allowed_large=()

limit=$((1 << 20))
bad=0
while IFS= read -r -d '' f; do
	[ -f "$f" ] || continue # deleted in the work tree, not yet committed
	if [ "$(head -c 4 "$f" | od -An -tx1 | tr -d ' \n')" = "7f454c46" ]; then
		echo "tracked build output (ELF): $f" >&2
		bad=1
		continue
	fi
	size=$(stat -c %s "$f")
	if [ "$size" -gt "$limit" ]; then
		ok=0
		for a in "${allowed_large[@]}"; do [ "$a" = "$f" ] && ok=1; done
		if [ $ok = 0 ]; then
			echo "tracked file over 1 MiB, not listed as test data in scripts/check-tracked.sh: $f ($size bytes)" >&2
			bad=1
		fi
	fi
done < <(git ls-files -z)
exit $bad

#!/bin/sh
# sum-results.sh - add up the closing lines of the test stages in a log,
# "N passed, N failed" with an optional ", N skipped" (the integration
# runner's), and print the total as the last line, skipped tests included
# so that a total cannot hide them.
set -eu
awk '/^([a-z-]+: )?[0-9]+ passed, [0-9]+ failed(, [0-9]+ skipped)?$/ {
	line = $0; sub(/^[a-z-]+: /, "", line); n = split(line, f, /[ ,]+/)
	passed += f[1]; failed += f[3]; if (n >= 6) skipped += f[5]; stages++
} END {
	printf "make check: %d test runs\n", stages
	printf "total: %d passed, %d failed, %d skipped\n", passed, failed, skipped
	exit failed != 0 || stages == 0
}' "$1"

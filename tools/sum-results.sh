#!/bin/sh
# sum-results.sh - add up the "N passed, N failed" closing lines of the
# test stages in a log and print the total as the last line.
set -eu
awk '/^([a-z-]+: )?[0-9]+ passed, [0-9]+ failed/ {
	line = $0; sub(/^[a-z-]+: /, "", line); split(line, f, /[ ,]+/)
	passed += f[1]; failed += f[3]; stages++
} END {
	printf "make check: %d test runs\n", stages
	printf "total: %d passed, %d failed\n", passed, failed
	exit failed != 0 || stages == 0
}' "$1"

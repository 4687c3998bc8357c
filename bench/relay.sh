#!/bin/bash
# bench/relay.sh - "make bench", relay part: postern relaying to smtp-sink
# against a stock Postfix relaying to the same smtp-sink, same run, same
# messages; msgs/s end to end and the ratio (target: postern at least
# twice Postfix). Both are private instances (bench/relay_bench.py, with
# the integration tests' harness and Postfix peer), so the shared anchor
# Postfix is left alone. Knobs: N=5000 RUNS=3 SESSIONS=20 STALL=60
# TMPDIR=/var/tmp (both spools there: same disk), POSTERN_BIN,
# ANCHOR_NETNS=0 (otherwise it runs in a private loopback-only network
# namespace, when unshare allows). Output: the table on stdout and in
# build/bench/relay-results.txt. Exit status 0 when every message of every
# run was relayed; a missed target does not fail it.
set -u -o pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [ -z "${RELAY_BENCH_IN_NETNS:-}" ] && [ "${ANCHOR_NETNS:-1}" = 1 ] && unshare -n true 2>/dev/null; then
	export RELAY_BENCH_IN_NETNS=1
	exec unshare -n bash -c 'ip link set lo up && exec "$0" "$@"' "$0" "$@"
fi
export TMPDIR="${TMPDIR:-/var/tmp}"
export POSTERN_BIN="${POSTERN_BIN:-$REPO/build/postern}"
exec python3 "$REPO/bench/relay_bench.py"

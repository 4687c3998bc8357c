#!/bin/bash
# bench/pop3.sh - "make bench", POP3 part: RETR throughput of postern's POP3
# server against Dovecot's POP3 server (dovecot-pop3d) on the same Maildirs,
# same run, ratio (target: at least Dovecot's rate). Both are private
# instances on loopback (bench/pop3_bench.py). Knobs: USERS=4 MSGS=5000
# RUNS=5 TMPDIR=/var/tmp, POSTERN_BIN, ANCHOR_NETNS=0 (otherwise it runs in
# a private loopback-only network namespace, when unshare allows). Output:
# the table on stdout and in build/bench/pop3-results.txt. Exit status 0
# when every message of every run was read; a missed target does not fail it.
set -u -o pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [ -z "${POP3_BENCH_IN_NETNS:-}" ] && [ "${ANCHOR_NETNS:-1}" = 1 ] && unshare -n true 2>/dev/null; then
	export POP3_BENCH_IN_NETNS=1
	exec unshare -n bash -c 'ip link set lo up && exec "$0" "$@"' "$0" "$@"
fi
export TMPDIR="${TMPDIR:-/var/tmp}"
export POSTERN_BIN="${POSTERN_BIN:-$REPO/build/postern}"
exec python3 "$REPO/bench/pop3_bench.py"

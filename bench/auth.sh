#!/bin/bash
# bench/auth.sh - "make bench", logins part: AUTH logins per second of
# postern against Dovecot with the same passwd-file, same run
# (bench/auth_bench.py: over the protocol, SMTP AUTH against IMAP LOGIN,
# and the password services alone, postern's auth.sock against Dovecot's
# auth-client socket). Knobs: SCHEMES RUNS SECONDS CLIENTS WINDOW USERS,
# POSTERN_BIN, ANCHOR_NETNS=0 (otherwise it runs in a private
# loopback-only network namespace, when unshare allows). Output: the table
# on stdout and in build/bench/auth-results.txt. Exit status 0 when every
# login succeeded; a missed target does not fail it.
set -u -o pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [ -z "${AUTH_BENCH_IN_NETNS:-}" ] && [ "${ANCHOR_NETNS:-1}" = 1 ] && unshare -n true 2>/dev/null; then
	export AUTH_BENCH_IN_NETNS=1
	exec unshare -n bash -c 'ip link set lo up && exec "$0" "$@"' "$0" "$@"
fi
export POSTERN_BIN="${POSTERN_BIN:-$REPO/build/postern}"
exec python3 "$REPO/bench/auth_bench.py"

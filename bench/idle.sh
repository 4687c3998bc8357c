#!/bin/bash
# bench/idle.sh - "make bench", fourth part: what an idle SMTP session
# costs postern (issue 9's target: at most 64 KB each with 10,000 of them
# open at once). For each mode, a fresh postern (2 smtp workers) is
# started, bench/idle_sessions.py opens SESSIONS connections and brings
# each to the idle state, and the smtp workers' memory is read before and
# with the sessions open:
#   * plain     banner read, then silence (what a slow or parked client
#               costs);
#   * starttls  banner, EHLO, STARTTLS, TLS handshake, then silence (the
#               TLS state of every session on top: what most real senders
#               cost).
# Per session = (sum of the smtp workers' and the anvil's VmRSS with the
# sessions open - sum before) / sessions open; the same for Pss. The server's open-file limit
# is raised by postern itself (worker_connections); the client raises its
# own to the hard limit.
#
# Knobs (environment): SESSIONS=10000, MODES="plain starttls",
# POSTERN_BIN=build/postern, IDLE_PORT=25280, BENCH_TMP=/var/tmp,
# KEEP_TMP=1, ANCHORS=../shared/anchors, ANCHOR_NETNS=0.
# Output: the table on stdout and in build/bench/idle-results.txt, details
# in build/bench/idle-raw.txt, the servers' logs in build/bench/idle-*.log.
# Exit status: 0 = every mode measured with every session open; 1
# otherwise. The target missed does not fail it.
set -u -o pipefail

# shellcheck source=bench/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh" # REPO, ANCHORS, BENCH_OUT, common.sh; a private network namespace

POSTERN_BIN="${POSTERN_BIN:-$REPO/build/postern}"
SESSIONS="${SESSIONS:-10000}"
MODES="${MODES:-plain starttls}"
PORT="${IDLE_PORT:-25280}"
BENCH_TMP="${BENCH_TMP:-/var/tmp}"
TARGET_KB=64
mkdir -p "$BENCH_OUT"
RAW="$BENCH_OUT/idle-raw.txt"
RESULTS="$BENCH_OUT/idle-results.txt"
: >"$RAW"
FAILS=()
fail() { FAILS+=("$*"); log "FAIL: $*"; }
record() { echo "$*" | tee -a "$RAW" >&2; }

if [ "$(id -u)" != 0 ]; then
	echo "bench: idle.sh must run as root (postern becomes nobody)" >&2
	exit 1
fi
[ -x "$POSTERN_BIN" ] || { echo "bench: $POSTERN_BIN not built (make all)" >&2; exit 1; }
command -v openssl >/dev/null || { echo "bench: openssl not found" >&2; exit 1; }

DIR=$(mktemp -d "$BENCH_TMP/postern-idle.XXXXXX")
chmod 755 "$DIR"
SRV_PID=""
CLIENT_PID=""
stop_server() {
	[ -n "$CLIENT_PID" ] && { kill "$CLIENT_PID" 2>/dev/null; wait "$CLIENT_PID" 2>/dev/null; CLIENT_PID=""; }
	if [ -n "$SRV_PID" ]; then
		kill -TERM "$SRV_PID" 2>/dev/null
		for ((i = 0; i < 300; i++)); do kill -0 "$SRV_PID" 2>/dev/null || break; sleep 0.1; done
		kill -KILL "$SRV_PID" 2>/dev/null
		wait "$SRV_PID" 2>/dev/null
		SRV_PID=""
	fi
	return 0
}
cleanup() {
	stop_server
	exec 7>&- 2>/dev/null
	if [ "${KEEP_TMP:-0}" = 1 ]; then log "kept $DIR"; else rm -rf "$DIR"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# the server's certificate (the client does not verify it)
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=mx.example.test" \
	-keyout "$DIR/key.pem" -out "$DIR/cert.pem" >/dev/null 2>&1 || { echo "bench: openssl req failed" >&2; exit 1; }
chmod 600 "$DIR/key.pem"

# "VmRSS_kB Pss_kB" summed over the PIDs given
mem_sum() {
	local p rss=0 pss=0 r s
	for p in "$@"; do
		r=$(awk '/^VmRSS:/{print $2}' "/proc/$p/status" 2>/dev/null)
		s=$(awk '/^Pss:/{print $2}' "/proc/$p/smaps_rollup" 2>/dev/null)
		rss=$((rss + ${r:-0})); pss=$((pss + ${s:-0}))
	done
	echo "$rss $pss"
}

declare -A PER_RSS=() PER_PSS=() OPEN=() SECS=() RSSW=() PSSW=()
for mode in $MODES; do
	d="$DIR/$mode"
	mkdir -p "$d/spool" "$d/mail"
	chown nobody "$d/spool"
	chown mail "$d/mail"
	echo "bob@example.test:{PLAIN}bench::::::" >"$d/users"
	chmod 600 "$d/users"
	cat >"$d/postern.conf" <<-EOF
		# written by bench/idle.sh ($mode)
		hostname           = mx.example.test
		listen             = 127.0.0.1:$PORT
		spool_dir          = spool
		mail_root          = mail
		local_domains      = example.test
		users_file         = users
		mynetworks         = 127.0.0.0/8
		user               = nobody
		mail_owner         = mail
		workers            = 2
		worker_connections = $((SESSIONS / 2 + SESSIONS / 4 + 100))
		tls_cert           = $DIR/cert.pem
		tls_key            = $DIR/key.pem
	EOF
	srvlog="$BENCH_OUT/idle-$mode.log"
	"$POSTERN_BIN" serve -c "$d/postern.conf" 2>"$srvlog" &
	SRV_PID=$!
	if ! wait_tcp 127.0.0.1 "$PORT" 30; then
		fail "$mode: postern did not start (see $srvlog)"
		stop_server
		continue
	fi
	sleep 1
	workers=$(sed -nE 's/.*postern\/smtp\[([0-9]+)\]: info: smtp worker ready.*/\1/p' "$srvlog" | sort -u | tr '\n' ' ')
	# the anvil counts every session too (its table grows with them)
	workers="$workers$(sed -nE 's/.*postern\/anvil\[([0-9]+)\]: info: anvil ready.*/\1/p' "$srvlog" | head -1)"
	read -r rss0 pss0 < <(mem_sum $workers)
	fifo="$DIR/fifo-$mode"
	mkfifo "$fifo"
	flag=""
	[ "$mode" = starttls ] && flag="--starttls"
	python3 "$REPO/bench/idle_sessions.py" "$PORT" "$SESSIONS" $flag <"$fifo" >"$DIR/client-$mode.json" 2>"$DIR/client-$mode.err" &
	CLIENT_PID=$!
	exec 7>"$fifo"
	for ((i = 0; i < 1800; i++)); do
		[ -s "$DIR/client-$mode.json" ] && break
		kill -0 "$CLIENT_PID" 2>/dev/null || break
		sleep 0.1
	done
	sleep 2 # let the workers settle
	read -r rss1 pss1 < <(mem_sum $workers)
	json=$(head -1 "$DIR/client-$mode.json")
	record "$mode: client $json; smtp workers and anvil $workers: VmRSS $rss0 -> $rss1 kB, Pss $pss0 -> $pss1 kB"
	[ -s "$DIR/client-$mode.err" ] && record "  client stderr: $(head -3 "$DIR/client-$mode.err" | tr '\n' ' ')"
	n=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["sessions"])' "${json:-{\}}" 2>/dev/null)
	n=${n:-0}
	OPEN[$mode]=$n
	SECS[$mode]=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["seconds"])' "${json:-{\}}" 2>/dev/null)
	RSSW[$mode]="$rss0 -> $rss1"
	PSSW[$mode]="$pss0 -> $pss1"
	if [ "$n" -gt 0 ]; then
		PER_RSS[$mode]=$(awk -v a="$rss0" -v b="$rss1" -v n="$n" 'BEGIN{printf "%.1f", (b-a)/n}')
		PER_PSS[$mode]=$(awk -v a="$pss0" -v b="$pss1" -v n="$n" 'BEGIN{printf "%.1f", (b-a)/n}')
	fi
	[ "$n" = "$SESSIONS" ] || fail "$mode: $n of $SESSIONS sessions reached the idle state: $json"
	exec 7>&-
	wait "$CLIENT_PID" 2>/dev/null
	CLIENT_PID=""
	grep -E 'error:|fatal:|panic:' "$srvlog" | head -3 | sed 's/^/  server: /' | tee -a "$RAW" >&2
	stop_server
done

{
	echo "postern idle SMTP sessions, $(date -u +%F) - $(nproc) CPU, kernel $(uname -r), $("$POSTERN_BIN" version 2>/dev/null)"
	echo "2 smtp workers and the anvil; per session = (sum of their memory with the sessions open - before) / sessions open"
	echo
	printf '%-10s | %9s | %9s | %23s | %21s | %12s | %12s\n' mode sessions "open in s" "VmRSS kB before -> with" "Pss kB before -> with" "VmRSS/sess" "Pss/sess"
	for mode in $MODES; do
		printf '%-10s | %9s | %9s | %23s | %21s | %9s KB | %9s KB\n' "$mode" "${OPEN[$mode]:--}" "${SECS[$mode]:--}" \
			"${RSSW[$mode]:--}" "${PSSW[$mode]:--}" "${PER_RSS[$mode]:--}" "${PER_PSS[$mode]:--}"
	done
	for mode in $MODES; do
		[ -n "${PER_RSS[$mode]:-}" ] || continue
		echo "  $mode: ${PER_RSS[$mode]} KB per idle session; target <= $TARGET_KB KB: $(awk -v r="${PER_RSS[$mode]}" -v t="$TARGET_KB" 'BEGIN{print (r <= t ? "met" : "NOT met")}')"
	done
	echo
	if ((${#FAILS[@]})); then
		echo "RESULT: FAILED"
		printf '  - %s\n' "${FAILS[@]}"
	else
		echo "RESULT: ok (every session of every mode reached the idle state)"
	fi
} >"$RESULTS"
cat "$RESULTS"
cat "$RESULTS" >>"$RAW"
((${#FAILS[@]} == 0))

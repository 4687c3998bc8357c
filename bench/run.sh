#!/bin/bash
# bench/run.sh - "make bench": postern's throughput, latency and memory,
# measured in the same run, with the same client and message, as
#   * smtp-sink  (Postfix' test server that accepts and forgets: the limit
#                 of SMTP over loopback on this machine), and
#   * Postfix    (stock 3.x, private instance from the shared anchors,
#                 "maildir" mode: virtual(8) delivers into a Maildir),
# and reported as ratios. All three servers run side by side; each round
# measures every system once, one after the other, so a slow spell of the
# machine hits all of them alike. See bench/README.md.
#
# Knobs (environment):
#   N=20000           messages per throughput run (smtp-source -m)
#   RUNS=3            rounds; the medians over the rounds are reported
#   SESSIONS=20       parallel smtp-source sessions (-s)
#   LAT_CONC="1 10"   concurrencies of the latency replay ("" = skip it)
#   STALL=60          give up waiting for delivery after STALL s without progress
#   SYSTEMS="sink postfix postern"   subset to run (debugging)
#   POSTERN_BIN=build/postern  POSTERN_PORT=25260  SINK_PORT=25250
#   BENCH_TMP=/var/tmp  parent of postern's temporary spool/mail folder (must
#                       be on the same disk as Postfix' queue for a fair test)
#   KEEP_TMP=1        keep that folder;  ANCHORS=../shared/anchors
#   ANCHOR_NETNS=0    do not enter a private loopback-only network namespace
# Output: the table on stdout and in build/bench/results.txt, per-run lines
# in build/bench/raw.txt, postern's log in build/bench/postern.log.
# Exit status: 0 = all systems measured and postern delivered every message
# with a clean log; 1 otherwise.
set -u -o pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
ANCHORS="${ANCHORS:-$(dirname "$REPO")/shared/anchors}"
BENCH_OUT="${BENCH_OUT:-$REPO/build/bench}"
export ANCHOR_OUT="${ANCHOR_OUT:-$BENCH_OUT/anchors}"
if [ ! -f "$ANCHORS/common.sh" ]; then
	echo "bench: anchor scripts not found in $ANCHORS (set ANCHORS=...)" >&2
	exit 1
fi
# shellcheck source=/dev/null
. "$ANCHORS/common.sh" # log, now, rate, median, mem_of, wait_tcp, stop_pid, netns_reexec
netns_reexec "$@"

N="${N:-20000}"
SESSIONS="${SESSIONS:-20}"
LAT_CONC="${LAT_CONC-1 10}"
STALL="${STALL:-60}"
SYSTEMS="${SYSTEMS:-sink postfix postern}"
POSTERN_BIN="${POSTERN_BIN:-$REPO/build/postern}"
POSTERN_PORT="${POSTERN_PORT:-25260}"
SINK_PORT="${SINK_PORT:-25250}"
PF_PORT=10025
PF_CTL="$ANCHORS/postfix_ctl.sh"
PF_QUEUE=/var/spool/postfix-anchor
PF_MAILDIR=/var/lib/postfix-anchor/vmail/example.test/bob/Maildir
PF_LOG=/var/log/postfix-anchor.log
# postfix_ctl.sh's maildir mode appends a second virtual_transport line: every
# Postfix command and daemon warns "overriding earlier entry" (harmless).
PF_NOISE='overriding earlier entry: virtual_transport'
BENCH_TMP="${BENCH_TMP:-/var/tmp}"
HERE="$REPO/bench"
SENDER=sender@example.com
RCPT=bob@example.test

mkdir -p "$BENCH_OUT"
RAW="$BENCH_OUT/raw.txt"
RESULTS="$BENCH_OUT/results.txt"
PLOG="$BENCH_OUT/postern.log"
OTHER="$BENCH_OUT/other-cpu.txt"
: >"$RAW"
: >"$OTHER"
T0=$(now)
FAILS=()
fail() { FAILS+=("$*"); log "FAIL: $*"; }
record() { echo "$*" | tee -a "$RAW" >&2; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN{printf "%.2f", b-a}'; }
maxf() { awk -v a="$1" -v b="$2" 'BEGIN{print (b > a ? b : a)}'; }
isnum() { [[ "${1:-}" =~ ^[0-9]+(\.[0-9]+)?$ ]]; }
ratio() { if isnum "${1:-}" && isnum "${2:-}" && [ "$2" != 0 ]; then awk -v a="$1" -v b="$2" 'BEGIN{printf "%.3f", a/b}'; else echo "-"; fi; }
# median of the numeric arguments (NA ignored); an even count averages the two
# middle values, printed with $MED_DIGITS decimals (default 2)
med() {
	printf '%s\n' "$@" | grep -E '^[0-9]+(\.[0-9]+)?$' | sort -g | awk -v d="${MED_DIGITS:-2}" '{ a[NR] = $1 }
		END { if (NR == 0) print "NA"; else if (NR % 2) print a[(NR + 1) / 2]; else printf "%.*f\n", d, (a[NR / 2] + a[NR / 2 + 1]) / 2 }'
}
has() { case " $SYSTEMS " in *" $1 "*) return 0 ;; esac; return 1; }

# CPU that unrelated processes and other guests (steal) took during a measured
# window, see cpu_acct.py; each window appends "label other steal wall" to $OTHER.
cpu_snap() { python3 "$HERE/cpu_acct.py" snap "$BENCH_OUT/cpu.snap"; }
cpu_note() { # label -> ", other processes X CPU-s, steal Y CPU-s (Z% of the CPUs)"
	local wall other steal
	# shellcheck disable=SC2086 # the PIDs may be empty: then they are left out
	read -r wall _ _ other steal < <(python3 "$HERE/cpu_acct.py" diff "$BENCH_OUT/cpu.snap" \
		$$ ${PF_MASTER:-} ${POSTERN_PID:-})
	echo "$1 ${other:-0} ${steal:-0} ${wall:-1}" >>"$OTHER"
	awk -v o="${other:-0}" -v s="${steal:-0}" -v w="${wall:-1}" -v n="$(nproc)" \
		'BEGIN{printf ", other processes %.1f CPU-s, steal %.1f CPU-s (%.0f%% of the CPUs)", o, s, 100*(o+s)/(w*n)}'
}

# ---- preconditions -----------------------------------------------------------
if [ "$(id -u)" != 0 ]; then
	echo "bench: must run as root (private Postfix instance, smtp-sink -u nobody, postern user = nobody, mail_owner = mail)" >&2
	exit 1
fi
for t in smtp-source smtp-sink postfix python3; do
	command -v "$t" >/dev/null || { echo "bench: $t not found (run tools/install-deps.sh)" >&2; exit 1; }
done
[ -x "$POSTERN_BIN" ] || { echo "bench: $POSTERN_BIN not built (make all)" >&2; exit 1; }

# ---- cleanup: everything started here is stopped by PID or its own stop command
SINK_PID=""
POSTERN_PID=""
POSTERN_KIDS=""
POSTERN_STOP="not started"
PF_STARTED=0
PF_MASTER=""
PT=""
stop_postern() {
	[ -n "$POSTERN_PID" ] || return 0
	local t0 i rc=0 p
	t0=$(now)
	kill -TERM "$POSTERN_PID" 2>/dev/null
	for ((i = 0; i < 600; i++)); do kill -0 "$POSTERN_PID" 2>/dev/null || break; sleep 0.1; done
	if kill -0 "$POSTERN_PID" 2>/dev/null; then
		log "postern pid $POSTERN_PID did not stop in 60 s, sending KILL"
		kill -KILL "$POSTERN_PID" 2>/dev/null
		rc=137
	fi
	wait "$POSTERN_PID" 2>/dev/null
	[ "$rc" = 0 ] && rc=$?
	POSTERN_STOP="exit status $rc after $(secs "$t0" "$(now)") s"
	# children die with the supervisor (PDEATHSIG); make sure, by PID
	for p in $POSTERN_KIDS; do
		if kill -0 "$p" 2>/dev/null && grep -q postern "/proc/$p/cmdline" 2>/dev/null; then
			log "postern child $p still alive, killing it"
			kill -KILL "$p" 2>/dev/null
		fi
	done
	POSTERN_PID=""
}
# postern's processes below the supervisor: its children (smtp workers,
# queue manager) and theirs (the queue manager's local delivery agents).
postern_descendants() {
	local kid
	for kid in $(ps -o pid= --ppid "$POSTERN_PID"); do
		echo "$kid"
		ps -o pid= --ppid "$kid"
	done | tr -d ' ' | sort -n | tr '\n' ' '
}
stop_sink() { [ -n "$SINK_PID" ] && { stop_pid "$SINK_PID" 10; wait "$SINK_PID" 2>/dev/null; SINK_PID=""; }; return 0; }
stop_postfix() { [ "$PF_STARTED" = 1 ] && { "$PF_CTL" stop >/dev/null 2>&1; PF_STARTED=0; PF_MASTER=""; }; return 0; }
cleanup() {
	stop_postern
	stop_sink
	stop_postfix
	if [ -n "$PT" ] && [ -d "$PT" ]; then
		if [ "${KEEP_TMP:-0}" = 1 ]; then log "kept $PT"; else rm -rf "$PT"; fi
	fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---- workload ----------------------------------------------------------------
ensure_msgs # anchors' message set (600 msgs) + ref-4k.eml in $ANCHOR_OUT/msgs
REF="$MSGS/ref-4k.eml"
NSET=$(find "$MSGS" -maxdepth 1 -name '[0-9]*.eml' | wc -l)

clear_maildir() { # Maildir: remove every message, keep the folders
	local d
	for d in new cur tmp; do [ -d "$1/$d" ] && find "$1/$d" -mindepth 1 -maxdepth 1 -type f -delete; done
	return 0
}

# per system: label, port, Maildir ("" = nothing to wait for), between-runs command
declare -A LABEL PORT MD BETWEEN UP
declare -A ACCV E2EV ACC E2E P50V P99V LRV P50 P99 LRATE

# One throughput run: smtp-source -> port; with a Maildir, wait until it holds
# N messages. Prints "accept_rate e2e_rate delivered" (e2e NA if mail is missing).
throughput_run() { # sys run#
	local sys="$1" i="$2" md="${MD[$1]}" a b c rc cnt=-1 seen last w="" err note
	err="$BENCH_OUT/smtp-source.err"
	[ -n "$md" ] && clear_maildir "$md"
	cpu_snap
	a=$(now)
	smtp-source -s "$SESSIONS" -m "$N" -f "$SENDER" -t "$RCPT" -F "$REF" 127.0.0.1:"${PORT[$sys]}" 2>"$err"
	rc=$?
	b=$(now)
	c="$b"
	if [ -n "$md" ]; then
		read -r cnt seen last < <(python3 "$HERE/maildir_wait.py" "$md/new" "$N" "$STALL")
		c=$(maxf "$b" "$last")
		w=", in Maildir: $cnt, last delivery $(secs "$b" "$c") s after smtp-source returned -> end-to-end $(rate "$N" "$a" "$c") msg/s (waited $(secs "$b" "$seen") s)"
	fi
	note=$(cpu_note "${LABEL[$sys]} throughput")
	record "${LABEL[$sys]} run$i: accept $(rate "$N" "$a" "$b") msg/s ($(secs "$a" "$b") s, smtp-source rc=$rc, $(wc -l <"$err") stderr lines)$w$note"
	[ -s "$err" ] && head -3 "$err" | sed 's/^/    smtp-source: /' | tee -a "$RAW" >&2
	if [ -n "$md" ] && [ "$cnt" != "$N" ]; then
		echo "$(rate "$N" "$a" "$b") NA $cnt"
	else
		echo "$(rate "$N" "$a" "$b") $(rate "$N" "$a" "$c") $cnt"
	fi
}

# One latency replay of the message set; waits for delivery afterwards.
# Prints "p50 p99 msgs_per_s ok" (ok = every message accepted and delivered).
latency_run() { # sys conc run#
	local sys="$1" c="$2" i="$3" md="${MD[$1]:-}" j f cnt note ok=1
	[ "$sys" = sink ] || clear_maildir "$md"
	cpu_snap
	j=$(python3 "$HERE/latency.py" 127.0.0.1 "${PORT[$sys]}" "$MSGS" "$c" --rcpt "$RCPT" --from "$SENDER")
	read -r -a f < <(python3 -c 'import json,sys; j=json.loads(sys.argv[1]); print(j["lat_ms_p50"], j["lat_ms_p99"], j["msgs_per_s"], j["codes"].get("250", 0), j["msgs"], j["lat_ms_p90"], j["lat_ms_max"])' "$j")
	# smtp-sink keeps nothing: it shows the client's own floor
	if [ "$sys" = sink ]; then
		cnt=${f[3]}
	else
		read -r cnt _ < <(python3 "$HERE/maildir_wait.py" "$md/new" "${f[3]}" "$STALL")
	fi
	note=$(cpu_note "${LABEL[$sys]} latency conc=$c")
	record "${LABEL[$sys]} latency conc=$c run$i: p50 ${f[0]} ms p90 ${f[5]} p99 ${f[1]} max ${f[6]}, ${f[2]} msg/s, 250 replies ${f[3]}/${f[4]}, in Maildir $cnt$note   $j"
	if [ "${f[3]}" != "$NSET" ] || [ "$cnt" != "${f[3]}" ]; then
		ok=0
		record "  !! ${LABEL[$sys]}: expected $NSET accepted and delivered, got ${f[3]} accepted, $cnt delivered"
	fi
	echo "${f[0]} ${f[1]} ${f[2]} $ok"
}

# Memory: "role pid" lines on stdin -> per-process lines, per-role sums, total,
# and a last line "MEMSUM sum_vmhwm_kB processes sum_pss_kB".
mem_table() { # title
	local role pid line hwm rss pss
	while read -r role pid; do
		line=$(mem_of "$pid")
		[ -n "$line" ] || continue
		hwm=$(sed -nE 's/.*VmHWM:=([0-9]+).*/\1/p' <<<"$line")
		rss=$(sed -nE 's/.*VmRSS:=([0-9]+).*/\1/p' <<<"$line")
		pss=$(sed -nE 's/.*Pss:=([0-9]+).*/\1/p' <<<"$line")
		echo "$role $pid ${hwm:-0} ${rss:-0} ${pss:-0}"
	done | sort -k1,1 -k2,2n | awk -v title="$1" '
		{ printf "    %-16s pid %-7s VmHWM %6d kB  VmRSS %6d kB  Pss %6d kB\n", $1, $2, $3, $4, $5
		  n[$1]++; h[$1] += $3; if ($3 > mx[$1]) mx[$1] = $3; th += $3; tp += $5; tn++ }
		END { printf "  %s per role (VmHWM = peak RSS):\n", title
		      for (r in n) printf "    %-16s %2d process%s  sum %6d kB  max %6d kB\n", r, n[r], (n[r] > 1 ? "es" : "  "), h[r], mx[r]
		      printf "  %s TOTAL %d processes: sum VmHWM %d kB (%.1f MB), sum Pss now %d kB\n", title, tn, th, th / 1024, tp
		      printf "MEMSUM %d %d %d\n", th, tn, tp }'
}

MACHINE="$(nproc) CPU ($(lscpu 2>/dev/null | sed -nE 's/^Model name: +//p' | head -1)), $(awk '/MemTotal/{printf "%.0f GiB RAM", $2/1048576}' /proc/meminfo), kernel $(uname -r)"
LOAD0=$(cut -d' ' -f1-3 /proc/loadavg)
log "bench: N=$N RUNS=$RUNS SESSIONS=$SESSIONS LAT_CONC='$LAT_CONC' systems: $SYSTEMS; netns=${ANCHOR_IN_NETNS:-no}"
record "machine: $MACHINE; date $(date -u +%FT%TZ); load average at start $LOAD0"
if awk -v l="${LOAD0%% *}" -v n="$(nproc)" 'BEGIN{exit !(l > 0.5 * n)}'; then
	record "WARNING: the machine is busy (load $LOAD0 on $(nproc) CPUs): the numbers will be noisy"
fi
record "workload: smtp-source -s $SESSIONS -m $N, new connection per message, ref-4k.eml ($(wc -c <"$REF") bytes), rcpt $RCPT; latency: $NSET-message set ($(du -sk "$MSGS" | cut -f1) kB) at conc ${LAT_CONC:-none}"

# ---- start the three servers ------------------------------------------------------
if has sink; then
	LABEL[sink]="smtp-sink"; PORT[sink]=$SINK_PORT; MD[sink]=""; BETWEEN[sink]=""
	smtp-sink -u nobody 127.0.0.1:"$SINK_PORT" 1024 &
	SINK_PID=$!
	if wait_tcp 127.0.0.1 "$SINK_PORT" 10; then UP[sink]=1; else fail "smtp-sink did not start"; fi
fi

PF_VERSION=$(postconf -d -h mail_version 2>/dev/null)
if has postfix; then
	LABEL[postfix]="postfix"; PORT[postfix]=$PF_PORT; MD[postfix]=$PF_MAILDIR
	pf_drain() { "$PF_CTL" drain-wait 120 >/dev/null 2>&1; }
	BETWEEN[postfix]=pf_drain
	pf_log0=$(wc -l <"$PF_LOG" 2>/dev/null || echo 0)
	if "$PF_CTL" start maildir 2>"$BENCH_OUT/postfix_ctl.err"; then
		PF_STARTED=1
		PF_MASTER=$(tr -d ' ' <"$PF_QUEUE/pid/master.pid" 2>/dev/null)
		UP[postfix]=1
		grep -v "$PF_NOISE" "$BENCH_OUT/postfix_ctl.err" >&2
		record "postfix $PF_VERSION (maildir mode): master pid $PF_MASTER, queue $PF_QUEUE on $(df --output=source,fstype "$PF_QUEUE" | tail -1 | tr -s ' '), Maildir $PF_MAILDIR"
	else
		grep -v "$PF_NOISE" "$BENCH_OUT/postfix_ctl.err" >&2
		fail "Postfix (postfix_ctl.sh start maildir) did not start"
	fi
fi

POSTERN_VERSION=$("$POSTERN_BIN" version 2>/dev/null)
if has postern; then
	PT=$(mktemp -d "$BENCH_TMP/postern-bench.XXXXXX")
	chmod 755 "$PT"
	if [ "$(stat -c %d "$PT")" != "$(stat -c %d /var/spool)" ]; then
		record "WARNING: $PT is not on the same filesystem as Postfix' queue (/var/spool): set BENCH_TMP"
	fi
	cat >"$PT/postern.conf" <<-EOF
		# written by bench/run.sh
		hostname      = mx.example.test
		listen        = 127.0.0.1:$POSTERN_PORT
		spool_dir     = spool
		mail_root     = mail
		local_domains = example.test
		users_file    = users
		mynetworks    = 127.0.0.0/8
		user          = nobody
		mail_owner    = mail
		workers       = 0
	EOF
	echo "$RCPT:{PLAIN}bench::::::" >"$PT/users"
	chmod 600 "$PT/users"
	LABEL[postern]="postern"; PORT[postern]=$POSTERN_PORT; MD[postern]="$PT/mail/example.test/bob/Maildir"
	# between runs: the queue manager finishes removing the delivered queue files
	pt_drain() {
		local i
		for ((i = 0; i < 300; i++)); do
			[ -z "$(find "$PT/spool/incoming" "$PT/spool/queue" -type f -print -quit 2>/dev/null)" ] && return 0
			sleep 0.1
		done
		record "  !! postern spool not empty 30 s after the last delivery"
	}
	BETWEEN[postern]=pt_drain
	if ! "$POSTERN_BIN" check-config -c "$PT/postern.conf" >/dev/null 2>"$BENCH_OUT/check-config.err"; then
		fail "postern check-config: $(head -3 "$BENCH_OUT/check-config.err")"
	else
		"$POSTERN_BIN" serve -c "$PT/postern.conf" 2>"$PLOG" &
		POSTERN_PID=$!
		if wait_tcp 127.0.0.1 "$POSTERN_PORT" 20; then
			sleep 0.5 # let every role start
			POSTERN_KIDS=$(postern_descendants)
			UP[postern]=1
			record "postern $POSTERN_VERSION: pid $POSTERN_PID, children $POSTERN_KIDS; spool+mail in $PT on $(df --output=source,fstype "$PT" | tail -1 | tr -s ' ')"
		else
			fail "postern did not listen on 127.0.0.1:$POSTERN_PORT"
		fi
	fi
fi
ORDER=""
for s in sink postfix postern; do [ -n "${UP[$s]:-}" ] && ORDER="$ORDER $s"; done

# ---- throughput: RUNS rounds, every system once per round ---------------------------
declare -a RATIO_E2E=() RATIO_ACC=()
LOST=0
for ((i = 1; i <= RUNS; i++)); do
	declare -A RE=() RA=()
	for s in $ORDER; do
		read -r acc e2e cnt < <(throughput_run "$s" "$i")
		ACCV[$s]="${ACCV[$s]:-} $acc"; E2EV[$s]="${E2EV[$s]:-} $e2e"
		RA[$s]=$acc; RE[$s]=$e2e
		if [ "$e2e" = NA ]; then
			record "  !! ${LABEL[$s]} run$i: $cnt of $N messages in the Maildir"
			[ "$s" = postern ] && LOST=1
			[ "$s" = postfix ] && fail "Postfix did not deliver all messages in run $i"
		fi
		[ -n "${BETWEEN[$s]}" ] && ${BETWEEN[$s]}
	done
	RATIO_E2E+=("$(ratio "${RE[postern]:-}" "${RE[postfix]:-}")")
	RATIO_ACC+=("$(ratio "${RA[postern]:-}" "${RA[postfix]:-}")")
done
[ "$LOST" = 1 ] && fail "postern lost mail: Maildir count != N=$N in at least one run (see $RAW)"
for s in $ORDER; do
	# shellcheck disable=SC2086 # space-separated lists of numbers
	ACC[$s]=$(med ${ACCV[$s]})
	# shellcheck disable=SC2086
	E2E[$s]=$(med ${E2EV[$s]})
	record "${LABEL[$s]} MEDIAN of $RUNS: accept ${ACC[$s]} msg/s, end-to-end ${E2E[$s]} msg/s  (runs: accept${ACCV[$s]}; e2e${E2EV[$s]})"
done
RATIO_E2E_MED=$(MED_DIGITS=3 med "${RATIO_E2E[@]}")
RATIO_ACC_MED=$(MED_DIGITS=3 med "${RATIO_ACC[@]}")
record "postern/Postfix per round: end-to-end ${RATIO_E2E[*]} -> median $RATIO_E2E_MED; accept ${RATIO_ACC[*]} -> median $RATIO_ACC_MED"

# ---- latency: per concurrency, RUNS rounds of smtp-sink, Postfix, postern ---------------
# smtp-sink answers without keeping anything: its row is the floor of
# this client on this machine, the part of every number that is not the
# server's.
LAT_BAD=0
for c in $LAT_CONC; do
	for ((i = 1; i <= RUNS; i++)); do
		for s in $ORDER; do
			read -r p50 p99 lr ok < <(latency_run "$s" "$c" "$i")
			P50V[$s:$c]="${P50V[$s:$c]:-} $p50"; P99V[$s:$c]="${P99V[$s:$c]:-} $p99"; LRV[$s:$c]="${LRV[$s:$c]:-} $lr"
			[ "$ok" = 1 ] || { [ "$s" = postern ] && LAT_BAD=1; }
			[ -n "${BETWEEN[$s]}" ] && ${BETWEEN[$s]}
		done
	done
	for s in $ORDER; do
		# shellcheck disable=SC2086 # space-separated lists of numbers
		P50[$s:$c]=$(med ${P50V[$s:$c]})
		# shellcheck disable=SC2086
		P99[$s:$c]=$(med ${P99V[$s:$c]})
		# shellcheck disable=SC2086
		LRATE[$s:$c]=$(med ${LRV[$s:$c]})
		record "${LABEL[$s]} latency conc=$c MEDIAN of $RUNS: p50 ${P50[$s:$c]} ms, p99 ${P99[$s:$c]} ms, ${LRATE[$s:$c]} msg/s"
	done
done
[ "$LAT_BAD" = 1 ] && fail "postern latency replay: not every message was accepted and delivered"

# ---- memory, then stop everything ------------------------------------------------------
if [ -n "${UP[sink]:-}" ]; then
	SINK_MEM=$(mem_of "$SINK_PID")
	stop_sink
fi
if [ -n "${UP[postfix]:-}" ]; then
	PF_MEM=$({ echo "master $PF_MASTER"; ps -o comm=,pid= --ppid "$PF_MASTER"; } | mem_table Postfix)
	grep -v '^MEMSUM' <<<"$PF_MEM" | tee -a "$RAW" >&2
	stop_postfix
	clear_maildir "$PF_MAILDIR"
	# its log during the run, without the harmless start-up warnings
	tail -n +"$((pf_log0 + 1))" "$PF_LOG" 2>/dev/null |
		grep -E 'warning:|error:|fatal:|panic:|status=(deferred|bounced)' | grep -v "$PF_NOISE" |
		grep -vE 'postfix-script.*not owned by postfix: .*/vmail' >"$BENCH_OUT/postfix-issues.log"
	record "postfix log: $(wc -l <"$BENCH_OUT/postfix-issues.log") warning/error/deferred/bounced lines during the run"
	head -5 "$BENCH_OUT/postfix-issues.log" | sed 's/^/    /' | tee -a "$RAW" >&2
fi
if [ -n "${UP[postern]:-}" ]; then
	PT_MEM=$({ echo "supervisor $POSTERN_PID"
		for p in $(postern_descendants); do  # smtp, qmgr and local (the agents)
			r=$(grep -m1 -oE "postern/[a-z]+\[$p\]" "$PLOG" | sed -E 's#postern/([a-z]+).*#\1#')
			echo "${r:-unknown} $p"
		done; } | mem_table postern)
	grep -v '^MEMSUM' <<<"$PT_MEM" | tee -a "$RAW" >&2
	now_kids=$(postern_descendants)
	[ "$now_kids" = "$POSTERN_KIDS" ] || record "note: postern children changed during the run: $POSTERN_KIDS -> $now_kids"
	POSTERN_KIDS="$POSTERN_KIDS $now_kids"
	left=$(find "$PT/spool" -type f ! -name qmgr.lock | wc -l)
	if [ "$left" != 0 ]; then
		record "postern spool still holds $left files after the run:"
		find "$PT/spool" -type f ! -name qmgr.lock | head -5 | tee -a "$RAW" >&2
	fi
fi
if [ -n "$POSTERN_PID" ]; then
	stop_postern
	record "postern SIGTERM: $POSTERN_STOP"
	PT_LOGISSUES=$(grep -cE ': (warning|error|fatal|panic): ' "$PLOG")
	PT_DEFER=$(grep -cE 'status=(deferred|bounced)' "$PLOG")
	record "postern log: $(wc -l <"$PLOG") lines, $PT_LOGISSUES warning/error/fatal/panic, $PT_DEFER deferred/bounced"
	grep -E ': (warning|error|fatal|panic): |status=(deferred|bounced)' "$PLOG" | head -10 | sed 's/^/    /' | tee -a "$RAW" >&2
	[ "$PT_LOGISSUES" = 0 ] || fail "postern logged $PT_LOGISSUES warning/error lines (see $PLOG)"
	PT_SPLIT=$(python3 "$HERE/time_split.py" "$PLOG")
	[ "$PT_DEFER" = 0 ] || fail "postern deferred or bounced $PT_DEFER deliveries (see $PLOG)"
fi

# ---- final table --------------------------------------------------------------------
memsum() { sed -nE 's/^MEMSUM ([0-9]+) ([0-9]+) ([0-9]+)$/\1 \2 \3/p' <<<"${1:-}"; }
fmt_mem() { # "hwm_kB n pss_kB" -> text
	local kb n pss
	read -r kb n pss <<<"$1"
	[ -n "${kb:-}" ] && awk -v k="$kb" -v n="$n" -v p="$pss" 'BEGIN{printf "%.1f MB = sum of VmHWM over %d processes (sum of Pss after the run: %.1f MB)", k/1024, n, p/1024}' || echo "-"
}
row() { printf '%-40s | %12s | %12s | %13s | %15s\n' "$@"; }
{
	echo "postern benchmark, $(date -u +%F) - $MACHINE"
	echo "workload: smtp-source -s $SESSIONS -m $N (new connection per message) x ref-4k.eml ($(wc -c <"$REF") B) to $RCPT;" \
		"median of $RUNS rounds (each round runs every system once); client and servers share the same CPUs; netns=${ANCHOR_IN_NETNS:-no}"
	echo "end-to-end = first connection .. last message in the Maildir (smtp-sink: .. smtp-source exits);" \
		"accept = .. smtp-source exits"
	echo
	row "system" "e2e msgs/s" "accept msg/s" "e2e/smtp-sink" "postern/Postfix"
	row "----------------------------------------" "------------" "------------" "-------------" "---------------"
	sink_rate="${E2E[sink]:-}"
	has sink && row "smtp-sink (loopback limit, no queue)" "${E2E[sink]:-NA}" "${ACC[sink]:-NA}" "$(ratio "${E2E[sink]:-}" "$sink_rate")" "-"
	has postfix && row "Postfix $PF_VERSION virtual(8) -> Maildir" "${E2E[postfix]:-NA}" "${ACC[postfix]:-NA}" "$(ratio "${E2E[postfix]:-}" "$sink_rate")" "1.000"
	if has postern; then
		row "${POSTERN_VERSION:-postern} -> Maildir" "${E2E[postern]:-NA}" "${ACC[postern]:-NA}" "$(ratio "${E2E[postern]:-}" "$sink_rate")" "$(ratio "${E2E[postern]:-}" "${E2E[postfix]:-}")"
		has postfix && echo "  postern/Postfix, median of the per-round ratios: end-to-end $RATIO_E2E_MED (rounds: ${RATIO_E2E[*]}), accept $RATIO_ACC_MED (rounds: ${RATIO_ACC[*]})"
	fi
	if [ -n "$LAT_CONC" ]; then
		echo
		echo "transaction latency (connect .. reply to end of DATA), $NSET-message anchor set, 1 connection per message, rcpt $RCPT, median of $RUNS rounds:"
		printf '%-28s | %5s | %9s | %9s | %9s\n' "system" "conc" "p50 ms" "p99 ms" "msgs/s"
		for s in sink postfix postern; do
			has "$s" || continue
			for c in $LAT_CONC; do
				printf '%-28s | %5s | %9s | %9s | %9s\n' "$(case $s in sink) echo "smtp-sink (client floor)" ;; postfix) echo "Postfix $PF_VERSION" ;; *) echo "${POSTERN_VERSION:-postern}" ;; esac)" "$c" \
					"${P50[$s:$c]:-NA}" "${P99[$s:$c]:-NA}" "${LRATE[$s:$c]:-NA}"
			done
		done
		if has postfix && has postern; then
			for c in $LAT_CONC; do
				echo "  postern/Postfix conc=$c: p50 $(ratio "${P50[postern:$c]:-}" "${P50[postfix:$c]:-}"), p99 $(ratio "${P99[postern:$c]:-}" "${P99[postfix:$c]:-}") (lower is better)"
			done
		fi
	fi
	if [ -n "${PT_SPLIT:-}" ]; then
		echo
		echo "$PT_SPLIT"
	fi
	echo
	echo "peak memory (VmHWM of each live process after the run, summed; shared pages count in every process):"
	has sink && echo "  smtp-sink: $(sed -nE 's/.*VmHWM:=([0-9]+).*/\1/p' <<<"${SINK_MEM:-}") kB"
	if has postfix; then
		echo "  Postfix: $(fmt_mem "$(memsum "${PF_MEM:-}")")"
		grep -A20 'per role' <<<"${PF_MEM:-}" | grep -vE '^MEMSUM|TOTAL|per role'
	fi
	if has postern; then
		echo "  postern: $(fmt_mem "$(memsum "${PT_MEM:-}")")"
		grep -A20 'per role' <<<"${PT_MEM:-}" | grep -vE '^MEMSUM|TOTAL|per role'
	fi
	echo
	if ((${#FAILS[@]})); then
		echo "RESULT: FAILED"
		printf '  - %s\n' "${FAILS[@]}"
	else
		echo "RESULT: ok (postern delivered every message; no warnings, errors or deferrals in its log)"
	fi
	awk -v n="$(nproc)" '{ s = ($(NF-2) + $(NF-1)) / ($NF * n); if (s > mx) mx = s; o += $(NF-2); st += $(NF-1); w += $NF }
		END { if (w == 0) exit
		      printf "measured windows: %.0f s; other processes took %.1f CPU-s, hypervisor steal %.1f CPU-s (%.1f%% of the CPUs), worst window %.0f%%\n", w, o, st, 100*(o+st)/(w*n), 100*mx
		      if (mx > 0.05) print "WARNING: the machine was not quiet; windows with a high share in raw.txt are skewed" }' "$OTHER"
	echo "total bench time $(secs "$T0" "$(now)") s; per-run details: $RAW"
} >"$RESULTS"
cat "$RESULTS"
cat "$RESULTS" >>"$RAW"
((${#FAILS[@]} == 0))

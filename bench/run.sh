#!/bin/bash
# bench/run.sh - "make bench": postern's throughput, latency and memory,
# measured in the same run, with the same client and message, as
#   * smtp-sink  (Postfix' test server that accepts and forgets: the limit
#                 of SMTP over loopback on this machine), and
#   * Postfix    (stock 3.x, private instance from the shared anchors,
#                 "maildir" mode: virtual(8) delivers into a Maildir),
# and reported as ratios, two postern systems:
#   * postern       (scanning off), and
#   * postern-scan  (the same configuration plus content scanning: the
#                    shipped content rules, etc/content-rules.example, and
#                    libclamav with the anchors' signatures, /var/lib/clamav).
# All servers run side by side; each round measures every system once, one
# after the other, so a slow spell of the machine hits all of them alike.
# See bench/README.md.
#
# Knobs (environment):
#   N=20000           messages per throughput run (smtp-source -m)
#   RUNS=3            rounds; the medians over the rounds are reported
#   SESSIONS=20       parallel smtp-source sessions (-s)
#   LAT_CONC="1 10"   concurrencies of the latency replay ("" = skip it)
#   STALL=60          give up waiting for delivery after STALL s without progress
#   SYSTEMS="sink postfix postern postern-scan"   subset to run (debugging)
#   POSTERN_BIN=build/postern  POSTERN_PORT=25260  POSTERN_SCAN_PORT=25270
#   SINK_PORT=25250
#   SCAN_RULES=etc/content-rules.example  CLAMAV_DB=/var/lib/clamav
#   BENCH_TMP=/var/tmp  parent of the postern systems' temporary spool/mail
#                       folders (must be on the same disk as Postfix' queue
#                       for a fair test)
#   KEEP_TMP=1        keep those folders;  ANCHORS=../shared/anchors
#   ANCHOR_NETNS=0    do not enter a private loopback-only network namespace
# Output: the table on stdout and in build/bench/results.txt, per-run lines
# in build/bench/raw.txt, the postern systems' logs in build/bench/postern.log
# and build/bench/postern-scan.log.
# Exit status: 0 = all systems measured and each postern system delivered
# every message it accepted, refused exactly the messages it must refuse,
# and has a clean log; 1 otherwise. Speed targets missed do not fail it:
# the table says whether they are met.
set -u -o pipefail

# shellcheck source=bench/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh" # REPO, ANCHORS, BENCH_OUT, common.sh; a private network namespace

# Where libclamav unpacks (postern-scan's clamav_temp_dir): postern's
# default, the tmpfs /dev/shm, unless TMPDIR says otherwise.
export TMPDIR="${TMPDIR:-/dev/shm}"
N="${N:-20000}"
SESSIONS="${SESSIONS:-20}"
LAT_CONC="${LAT_CONC-1 10}"
STALL="${STALL:-60}"
SYSTEMS="${SYSTEMS:-sink postfix postern postern-scan}"
POSTERN_BIN="${POSTERN_BIN:-$REPO/build/postern}"
POSTERN_PORT="${POSTERN_PORT:-25260}"
POSTERN_SCAN_PORT="${POSTERN_SCAN_PORT:-25270}"
SCAN_RULES="${SCAN_RULES:-$REPO/etc/content-rules.example}"
CLAMAV_DB="${CLAMAV_DB:-/var/lib/clamav}"
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
is_postern() { case "$1" in postern | postern-scan) return 0 ;; esac; return 1; }

# The postern systems: everything of one is kept in these arrays, keyed by
# its name (postern, postern-scan): the supervisor's PID, the PIDs below it,
# its temporary folder, log, port, how its SIGTERM went, its memory table
# and time split; per latency replay it must refuse the messages listed in
# $BENCH_OUT/expect-refused-SYSTEM.txt (empty: none) and accept the others.
PT_SYSTEMS=""
for s in postern postern-scan; do has "$s" && PT_SYSTEMS="$PT_SYSTEMS $s"; done
declare -A PT_PID=() PT_KIDS=() PT_DIR=() PT_LOG=() PT_PORT=() PT_STOP=() PT_MEM=() PT_SPLIT=()
PT_PORT[postern]=$POSTERN_PORT
PT_PORT[postern-scan]=$POSTERN_SCAN_PORT
for s in postern postern-scan; do PT_LOG[$s]="$BENCH_OUT/$s.log"; PT_STOP[$s]="not started"; done

# CPU that unrelated processes and other guests (steal) took during a measured
# window, see cpu_acct.py; each window appends "label other steal wall" to $OTHER.
cpu_snap() { python3 "$HERE/cpu_acct.py" snap "$BENCH_OUT/cpu.snap"; }
cpu_note() { # label -> ", other processes X CPU-s, steal Y CPU-s (Z% of the CPUs)"
	local wall other steal
	# shellcheck disable=SC2086,SC2048 # the PIDs may be empty: then they are left out
	read -r wall _ _ other steal < <(python3 "$HERE/cpu_acct.py" diff "$BENCH_OUT/cpu.snap" \
		$$ ${PF_MASTER:-} ${PT_PID[*]:-})
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
if has postern-scan; then
	[ -f "$SCAN_RULES" ] || { echo "bench: $SCAN_RULES not found (SCAN_RULES=...)" >&2; exit 1; }
	# the signatures the anchors' clamd uses (no internet: no official CVDs)
	if [ "$CLAMAV_DB" = /var/lib/clamav ] && [ ! -f /var/lib/clamav/anchor-custom.ndb ]; then
		"$ANCHORS/clamav_db.sh" >&2 || { echo "bench: $ANCHORS/clamav_db.sh failed" >&2; exit 1; }
	fi
fi

# ---- cleanup: everything started here is stopped by PID or its own stop command
SINK_PID=""
PF_STARTED=0
PF_MASTER=""
stop_postern() { # system
	local sys="$1" pid="${PT_PID[$1]:-}" t0 i rc=0 p
	[ -n "$pid" ] || return 0
	t0=$(now)
	kill -TERM "$pid" 2>/dev/null
	for ((i = 0; i < 600; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
	if kill -0 "$pid" 2>/dev/null; then
		log "$sys pid $pid did not stop in 60 s, sending KILL"
		kill -KILL "$pid" 2>/dev/null
		rc=137
	fi
	wait "$pid" 2>/dev/null
	[ "$rc" = 0 ] && rc=$?
	PT_STOP[$sys]="exit status $rc after $(secs "$t0" "$(now)") s"
	# children die with the supervisor (PDEATHSIG); make sure, by PID
	for p in ${PT_KIDS[$sys]:-}; do
		if kill -0 "$p" 2>/dev/null && grep -q postern "/proc/$p/cmdline" 2>/dev/null; then
			log "$sys child $p still alive, killing it"
			kill -KILL "$p" 2>/dev/null
		fi
	done
	PT_PID[$sys]=""
}
# the role a postern process logs under ("postern/ROLE[PID]"), "" if none yet
log_role() { # system pid
	grep -m1 -oE "postern/[a-z]+\[$2\]" "${PT_LOG[$1]}" 2>/dev/null | sed -E 's#postern/([a-z]+).*#\1#'
}
# "role pid" for every process below a postern system's supervisor: its
# children (smtp workers, queue manager, scan master) and theirs (the queue
# manager's local delivery agents, the scan master's scanners). Scanners log
# under their master's role (scan), so they are named by their parent.
postern_tree() { # system
	local sys="$1" kid gk role r
	for kid in $(ps -o pid= --ppid "${PT_PID[$1]}"); do
		role=$(log_role "$sys" "$kid")
		echo "${role:-unknown} $kid"
		for gk in $(ps -o pid= --ppid "$kid"); do
			if [ "$role" = scan ]; then
				echo "scanner $gk"
			else
				r=$(log_role "$sys" "$gk")
				echo "${r:-unknown} $gk"
			fi
		done
	done
}
postern_pids() { postern_tree "$1" | awk '{ print $2 }' | sort -n | tr '\n' ' '; }
stop_sink() { [ -n "$SINK_PID" ] && { stop_pid "$SINK_PID" 10; wait "$SINK_PID" 2>/dev/null; SINK_PID=""; }; return 0; }
stop_postfix() { [ "$PF_STARTED" = 1 ] && { "$PF_CTL" stop >/dev/null 2>&1; PF_STARTED=0; PF_MASTER=""; }; return 0; }
cleanup() {
	local s d
	for s in $PT_SYSTEMS; do stop_postern "$s"; done
	stop_sink
	stop_postfix
	for s in $PT_SYSTEMS; do
		d="${PT_DIR[$s]:-}"
		if [ -z "$d" ] || [ ! -d "$d" ]; then continue; fi
		if [ "${KEEP_TMP:-0}" = 1 ]; then log "kept $d"; else rm -rf "$d"; fi
	done
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
declare -A ACCV E2EV ACC E2E P50V P99V LRV P50 P99 LRATE CPUV CPUMS

# The process a system's processes descend from (its CPU is that tree's)
root_pid() { # sys
	case "$1" in
	sink) echo "$SINK_PID" ;;
	postfix) echo "$PF_MASTER" ;;
	*) echo "${PT_PID[$1]:-}" ;;
	esac
}

# One throughput run: smtp-source -> port; with a Maildir, wait until it holds
# N messages. Prints "accept_rate e2e_rate delivered cpu_ms_per_msg" (e2e NA
# if mail is missing; cpu = user+sys of the server's processes in the window,
# from cpu_acct.py, per message: less disturbed by other load than the rates).
throughput_run() { # sys run#
	local sys="$1" i="$2" md="${MD[$1]}" a b c rc cnt=-1 seen last w="" err note srv cpums
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
	read -r _ _ srv _ < <(python3 "$HERE/cpu_acct.py" diff "$BENCH_OUT/cpu.snap" "$(root_pid "$sys")")
	cpums=$(awk -v c="${srv:-0}" -v n="$N" 'BEGIN{printf "%.3f", 1000*c/n}')
	record "${LABEL[$sys]} run$i: accept $(rate "$N" "$a" "$b") msg/s ($(secs "$a" "$b") s, smtp-source rc=$rc, $(wc -l <"$err") stderr lines)$w; server CPU ${srv:-?} s = $cpums ms/msg$note"
	[ -s "$err" ] && head -3 "$err" | sed 's/^/    smtp-source: /' | tee -a "$RAW" >&2
	if [ -n "$md" ] && [ "$cnt" != "$N" ]; then
		echo "$(rate "$N" "$a" "$b") NA $cnt $cpums"
	else
		echo "$(rate "$N" "$a" "$b") $(rate "$N" "$a" "$c") $cnt $cpums"
	fi
}

# One latency replay of the message set; waits for delivery afterwards.
# Prints "p50 p99 msgs_per_s ok": ok = the system refused exactly the
# messages listed in $BENCH_OUT/expect-refused-SYSTEM.txt ("file code
# reason" lines; none but for postern-scan), each with the code listed
# there, and accepted and delivered all the others.
latency_run() { # sys conc run#
	local sys="$1" c="$2" i="$3" md="${MD[$1]:-}" j f cnt note ok=1 res exp nexp
	mkdir -p "$BENCH_OUT/latency"
	res="$BENCH_OUT/latency/$sys-conc$c-run$i.tsv"
	exp="$BENCH_OUT/expect-refused-$sys.txt"
	[ -f "$exp" ] || : >"$exp"
	nexp=$(wc -l <"$exp")
	[ "$sys" = sink ] || clear_maildir "$md"
	cpu_snap
	j=$(python3 "$HERE/latency.py" 127.0.0.1 "${PORT[$sys]}" "$MSGS" "$c" --rcpt "$RCPT" --from "$SENDER" --results "$res")
	read -r -a f < <(python3 -c 'import json,sys; j=json.loads(sys.argv[1]); print(j["lat_ms_p50"], j["lat_ms_p99"], j["msgs_per_s"], j["codes"].get("250", 0), j["msgs"], j["lat_ms_p90"], j["lat_ms_max"])' "$j")
	# smtp-sink keeps nothing: it shows the client's own floor
	if [ "$sys" = sink ]; then
		cnt=${f[3]}
	else
		read -r cnt _ < <(python3 "$HERE/maildir_wait.py" "$md/new" "${f[3]}" "$STALL")
	fi
	note=$(cpu_note "${LABEL[$sys]} latency conc=$c")
	record "${LABEL[$sys]} latency conc=$c run$i: p50 ${f[0]} ms p90 ${f[5]} p99 ${f[1]} max ${f[6]}, ${f[2]} msg/s, 250 replies ${f[3]}/${f[4]} (refusals expected: $nexp), in Maildir $cnt$note   $j"
	# the replies other than 250 ("file code") against the expected refusals
	local got want
	got=$(awk -F'\t' '$2 != "250" { print $1 "\t" $2 }' "$res" | sort)
	want=$(cut -f1,2 "$exp" | sort)
	if [ "$got" != "$want" ] || [ "${f[3]}" != "$((NSET - nexp))" ] || [ "$cnt" != "${f[3]}" ]; then
		ok=0
		record "  !! ${LABEL[$sys]}: expected $((NSET - nexp)) accepted and delivered and $nexp refused, got ${f[3]} accepted, $cnt delivered"
		comm -23 <(echo "$got") <(echo "$want") | grep . | head -10 | sed 's/^/     refused, should have been accepted (or another code): /' | tee -a "$RAW" >&2
		comm -13 <(echo "$got") <(echo "$want") | grep . | head -10 | sed 's/^/     should have been refused with this code: /' | tee -a "$RAW" >&2
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
		  n[$1]++; h[$1] += $3; rs[$1] += $4; ps[$1] += $5; if ($3 > mx[$1]) mx[$1] = $3; th += $3; tp += $5; tn++ }
		END { printf "  %s per role (VmHWM = peak RSS; Pss = RSS with shared pages split between their sharers):\n", title
		      for (r in n) printf "    %-16s %2d process%s  VmHWM sum %6d kB, max %6d kB;  VmRSS sum %6d kB;  Pss sum %6d kB\n", r, n[r], (n[r] > 1 ? "es" : "  "), h[r], mx[r], rs[r], ps[r]
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
# between runs: the queue manager finishes removing the delivered queue files
pt_drain() { # system
	local i
	for ((i = 0; i < 300; i++)); do
		[ -z "$(find "${PT_DIR[$1]}/spool/incoming" "${PT_DIR[$1]}/spool/queue" -type f -print -quit 2>/dev/null)" ] && return 0
		sleep 0.1
	done
	record "  !! $1 spool not empty 30 s after the last delivery"
}
# wait until the log says every role is up: one smtp worker per core
# (workers = 0), the queue manager, and with scanning the scan master
pt_wait_ready() { # system timeout_s
	local log="${PT_LOG[$1]}" i
	for ((i = 0; i < $2 * 10; i++)); do
		if [ "$(grep -c 'smtp worker ready' "$log")" -ge "$(nproc)" ] && grep -q 'queue manager started' "$log" &&
			{ [ "$1" != postern-scan ] || grep -q 'scan master ready' "$log"; }; then
			sleep 0.5 # the delivery agents' start lines
			return 0
		fi
		kill -0 "${PT_PID[$1]}" 2>/dev/null || return 1
		sleep 0.1
	done
	return 1
}
# the TMPDIR a process runs with (libclamav puts the parts it extracts there)
tmpdir_of() { # pid
	local t
	t=$(tr '\0' '\n' <"/proc/$1/environ" 2>/dev/null | sed -n 's/^TMPDIR=//p')
	echo "${t:-unset, so /tmp}"
}
# One postern system: a temporary folder with spool, Maildir, users file and
# config (postern-scan: plus the shipped content rules and the signatures),
# check-config, then serve.
start_postern() { # system
	local sys="$1" dir port="${PT_PORT[$1]}" log="${PT_LOG[$1]}"
	dir=$(mktemp -d "$BENCH_TMP/$sys-bench.XXXXXX")
	PT_DIR[$sys]=$dir
	chmod 755 "$dir"
	if [ "$(stat -c %d "$dir")" != "$(stat -c %d /var/spool)" ]; then
		record "WARNING: $dir is not on the same filesystem as Postfix' queue (/var/spool): set BENCH_TMP"
	fi
	cat >"$dir/postern.conf" <<-EOF
		# written by bench/run.sh for $sys
		hostname      = mx.example.test
		listen        = 127.0.0.1:$port
		spool_dir     = spool
		mail_root     = mail
		local_domains = example.test
		users_file    = users
		mynetworks    = 127.0.0.0/8
		user          = nobody
		mail_owner    = mail
		workers       = 0
	EOF
	if [ "$sys" = postern-scan ]; then
		cp "$SCAN_RULES" "$dir/content-rules.example"
		chmod 644 "$dir/content-rules.example"
		cat >>"$dir/postern.conf" <<-EOF
			# content scanning: the shipped default policy and libclamav in process
			content_rules_file = content-rules.example
			clamav_db_dir      = $CLAMAV_DB
			clamav_temp_dir    = $TMPDIR
		EOF
	fi
	echo "$RCPT:{PLAIN}bench::::::" >"$dir/users"
	chmod 600 "$dir/users"
	LABEL[$sys]=$sys; PORT[$sys]=$port; MD[$sys]="$dir/mail/example.test/bob/Maildir"
	BETWEEN[$sys]="pt_drain $sys"
	if ! "$POSTERN_BIN" check-config -c "$dir/postern.conf" >/dev/null 2>"$BENCH_OUT/check-config-$sys.err"; then
		fail "$sys check-config: $(head -3 "$BENCH_OUT/check-config-$sys.err")"
		return
	fi
	"$POSTERN_BIN" serve -c "$dir/postern.conf" 2>"$log" &
	PT_PID[$sys]=$!
	if wait_tcp 127.0.0.1 "$port" 20 && pt_wait_ready "$sys" 120; then
		PT_KIDS[$sys]=$(postern_pids "$sys")
		UP[$sys]=1
		record "$sys ($POSTERN_VERSION): pid ${PT_PID[$sys]}, below it $(postern_tree "$sys" | awk '{ printf "%s%s %s", (NR > 1 ? ", " : ""), $1, $2 }'); spool+mail in $dir on $(df --output=source,fstype "$dir" | tail -1 | tr -s ' ')"
	else
		fail "$sys did not start on 127.0.0.1:$port (see $log)"
		tail -5 "$log" | sed 's/^/    /' | tee -a "$RAW" >&2
	fi
}
for s in $PT_SYSTEMS; do start_postern "$s"; done

# What postern-scan must refuse of the latency set: the EICAR messages (the
# set's manifest) and whatever `postern scan` with its configuration refuses
# by a content rule (reported, not hidden). The two must agree on viruses.
for s in sink postfix postern postern-scan; do : >"$BENCH_OUT/expect-refused-$s.txt"; done
if [ -n "${UP[postern-scan]:-}" ]; then
	"$POSTERN_BIN" scan --json -c "${PT_DIR[postern-scan]}/postern.conf" "$MSGS"/[0-9]*.eml \
		>"$BENCH_OUT/postern-scan-verdicts.jsonl" 2>"$BENCH_OUT/postern-scan-verdicts.err"
	rc=$?
	[ "$rc" -le 1 ] || fail "postern scan over the latency set: exit status $rc (see $BENCH_OUT/postern-scan-verdicts.err)"
	python3 "$HERE/expect_refused.py" "$MSGS/manifest.tsv" "$BENCH_OUT/postern-scan-verdicts.jsonl" \
		"$BENCH_OUT/expect-refused-postern-scan.txt" >"$BENCH_OUT/expect-refused.out"
	rc=$?
	tee -a "$RAW" <"$BENCH_OUT/expect-refused.out" >&2
	[ "$rc" = 0 ] || fail "postern scan's verdicts on the latency set are not the expected ones (see $RAW)"
	EXPECT_SUMMARY=$(head -1 "$BENCH_OUT/expect-refused.out")
	SCAN_TMPDIR=$(tmpdir_of "$(postern_tree postern-scan | awk '$1 == "scanner" { print $2; exit }')")
	record "postern-scan scanners' TMPDIR: $SCAN_TMPDIR"
fi
ORDER=""
for s in sink postfix $PT_SYSTEMS; do [ -n "${UP[$s]:-}" ] && ORDER="$ORDER $s"; done

# ratios compared per round: "A/B" = A's rate over B's
PAIRS="postern/postfix postern-scan/postfix postern-scan/postern"
pair_on() { has "${1%/*}" && has "${1#*/}"; }
pair_label() { echo "${1//postfix/Postfix}"; }

# ---- throughput: RUNS rounds, every system once per round ---------------------------
declare -A RATIO_E2E=() RATIO_ACC=() RATIO_E2E_MED=() RATIO_ACC_MED=() LOST=()
for ((i = 1; i <= RUNS; i++)); do
	declare -A RE=() RA=()
	for s in $ORDER; do
		read -r acc e2e cnt cpums < <(throughput_run "$s" "$i")
		ACCV[$s]="${ACCV[$s]:-} $acc"; E2EV[$s]="${E2EV[$s]:-} $e2e"; CPUV[$s]="${CPUV[$s]:-} $cpums"
		RA[$s]=$acc; RE[$s]=$e2e
		if [ "$e2e" = NA ]; then
			record "  !! ${LABEL[$s]} run$i: $cnt of $N messages in the Maildir"
			is_postern "$s" && LOST[$s]=1
			[ "$s" = postfix ] && fail "Postfix did not deliver all messages in run $i"
		fi
		[ -n "${BETWEEN[$s]}" ] && ${BETWEEN[$s]}
	done
	for p in $PAIRS; do
		pair_on "$p" || continue
		RATIO_E2E[$p]="${RATIO_E2E[$p]:-} $(ratio "${RE[${p%/*}]:-}" "${RE[${p#*/}]:-}")"
		RATIO_ACC[$p]="${RATIO_ACC[$p]:-} $(ratio "${RA[${p%/*}]:-}" "${RA[${p#*/}]:-}")"
	done
done
for s in $PT_SYSTEMS; do
	[ -n "${LOST[$s]:-}" ] && fail "$s lost mail: Maildir count != N=$N in at least one run (see $RAW)"
done
for s in $ORDER; do
	# shellcheck disable=SC2086 # space-separated lists of numbers
	ACC[$s]=$(med ${ACCV[$s]})
	# shellcheck disable=SC2086
	E2E[$s]=$(med ${E2EV[$s]})
	# shellcheck disable=SC2086
	CPUMS[$s]=$(MED_DIGITS=3 med ${CPUV[$s]})
	record "${LABEL[$s]} MEDIAN of $RUNS: accept ${ACC[$s]} msg/s, end-to-end ${E2E[$s]} msg/s, server CPU ${CPUMS[$s]} ms/msg  (runs: accept${ACCV[$s]}; e2e${E2EV[$s]}; CPU${CPUV[$s]})"
done
for p in $PAIRS; do
	pair_on "$p" || continue
	# shellcheck disable=SC2086 # space-separated lists of numbers
	RATIO_E2E_MED[$p]=$(MED_DIGITS=3 med ${RATIO_E2E[$p]})
	# shellcheck disable=SC2086
	RATIO_ACC_MED[$p]=$(MED_DIGITS=3 med ${RATIO_ACC[$p]})
	record "$(pair_label "$p") per round: end-to-end${RATIO_E2E[$p]} -> median ${RATIO_E2E_MED[$p]}; accept${RATIO_ACC[$p]} -> median ${RATIO_ACC_MED[$p]}"
done

# ---- latency: per concurrency, RUNS rounds of every system ----------------------------
# smtp-sink answers without keeping anything: its row is the floor of
# this client on this machine, the part of every number that is not the
# server's.
declare -A LAT_BAD=()
LAT_REPLAYS=0
for c in $LAT_CONC; do
	for ((i = 1; i <= RUNS; i++)); do
		LAT_REPLAYS=$((LAT_REPLAYS + 1))
		for s in $ORDER; do
			read -r p50 p99 lr ok < <(latency_run "$s" "$c" "$i")
			P50V[$s:$c]="${P50V[$s:$c]:-} $p50"; P99V[$s:$c]="${P99V[$s:$c]:-} $p99"; LRV[$s:$c]="${LRV[$s:$c]:-} $lr"
			[ "$ok" = 1 ] || LAT_BAD[$s]=1
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
for s in $PT_SYSTEMS; do
	[ -n "${LAT_BAD[$s]:-}" ] && fail "$s latency replay: not exactly the expected messages refused, or not every accepted one delivered (see $RAW)"
done

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
for s in $PT_SYSTEMS; do
	[ -n "${UP[$s]:-}" ] || continue
	# supervisor, smtp workers, qmgr, local (the agents), scan (the master), scanner
	PT_MEM[$s]=$({ echo "supervisor ${PT_PID[$s]}"; postern_tree "$s"; } | mem_table "$s")
	grep -v '^MEMSUM' <<<"${PT_MEM[$s]}" | tee -a "$RAW" >&2
	now_kids=$(postern_pids "$s")
	[ "$now_kids" = "${PT_KIDS[$s]}" ] || record "note: $s processes changed during the run: ${PT_KIDS[$s]} -> $now_kids"
	PT_KIDS[$s]="${PT_KIDS[$s]} $now_kids"
	left=$(find "${PT_DIR[$s]}/spool" -type f ! -name qmgr.lock | wc -l)
	if [ "$left" != 0 ]; then
		record "$s spool still holds $left files after the run:"
		find "${PT_DIR[$s]}/spool" -type f ! -name qmgr.lock | head -5 | tee -a "$RAW" >&2
	fi
done
# Health of a postern system's log: no warning, error, deferral or bounce;
# exactly the refusals the latency replays expect (none without scanning;
# with it, per replay one end-of-data reject per expected message, with the
# reason postern scan gave), and no discard or quarantine.
pt_log_check() { # system
	local sys="$1" log="${PT_LOG[$1]}" exp="$BENCH_OUT/expect-refused-$1.txt" issues defer rejects want reason n got other
	issues=$(grep -cE ': (warning|error|fatal|panic): ' "$log")
	defer=$(grep -cE 'status=(deferred|bounced)' "$log")
	rejects=$(grep -cE ': reject: ' "$log")
	want=$(($(wc -l <"$exp") * LAT_REPLAYS))
	other=$(grep -cE ': discarded from=|disposition=quarantine' "$log")
	record "$sys log: $(wc -l <"$log") lines, $issues warning/error/fatal/panic, $defer deferred/bounced, $rejects refusals (expected $want: $(wc -l <"$exp") per replay x $LAT_REPLAYS replays), $other discarded/quarantined"
	grep -E ': (warning|error|fatal|panic): |status=(deferred|bounced)' "$log" | head -10 | sed 's/^/    /' | tee -a "$RAW" >&2
	[ "$issues" = 0 ] || fail "$sys logged $issues warning/error lines (see $log)"
	[ "$defer" = 0 ] || fail "$sys deferred or bounced $defer deliveries (see $log)"
	[ "$other" = 0 ] || fail "$sys discarded or quarantined $other messages (see $log)"
	[ "$rejects" = "$want" ] || fail "$sys logged $rejects refusals, expected $want (see $log)"
	while read -r reason n; do
		got=$(grep -cE ": reject: end-of-data .* reason=$reason\$" "$log")
		[ "$got" = $((n * LAT_REPLAYS)) ] || fail "$sys logged $got end-of-data refusals with reason=$reason, expected $((n * LAT_REPLAYS))"
	done < <(cut -f3 "$exp" | sort | uniq -c | awk '{ print $2, $1 }')
}
for s in $PT_SYSTEMS; do
	[ -n "${PT_PID[$s]:-}" ] || continue
	stop_postern "$s"
	record "$s SIGTERM: ${PT_STOP[$s]}"
	pt_log_check "$s"
	PT_SPLIT[$s]=$(python3 "$HERE/time_split.py" "${PT_LOG[$s]}")
done

# ---- final table --------------------------------------------------------------------
memsum() { sed -nE 's/^MEMSUM ([0-9]+) ([0-9]+) ([0-9]+)$/\1 \2 \3/p' <<<"${1:-}"; }
fmt_mem() { # "hwm_kB n pss_kB" -> text
	local kb n pss
	read -r kb n pss <<<"$1"
	[ -n "${kb:-}" ] && awk -v k="$kb" -v n="$n" -v p="$pss" 'BEGIN{printf "%.1f MB = sum of VmHWM over %d processes (sum of Pss after the run: %.1f MB)", k/1024, n, p/1024}' || echo "-"
}
target() { # value bound [max] -> "met" / "NOT met": value >= bound (with max: value <= bound)
	isnum "${1:-}" || { echo "not measured"; return; }
	awk -v r="$1" -v b="$2" -v max="${3:-}" 'BEGIN{print ((max != "" ? r <= b : r >= b) ? "met" : "NOT met")}'
}
sys_name() {
	case "$1" in
	sink) echo "smtp-sink (loopback limit, no queue)" ;;
	postfix) echo "Postfix $PF_VERSION virtual(8) -> Maildir" ;;
	postern) echo "${POSTERN_VERSION:-postern} -> Maildir" ;;
	postern-scan) echo "${POSTERN_VERSION:-postern} + rules + clamav" ;;
	esac
}
row() { printf '%-40s | %12s | %12s | %13s | %12s | %12s | %10s\n' "$@"; }
{
	echo "postern benchmark, $(date -u +%F) - $MACHINE"
	echo "workload: smtp-source -s $SESSIONS -m $N (new connection per message) x ref-4k.eml ($(wc -c <"$REF") B) to $RCPT;" \
		"median of $RUNS rounds (each round runs every system once); client and servers share the same CPUs; netns=${ANCHOR_IN_NETNS:-no}"
	echo "end-to-end = first connection .. last message in the Maildir (smtp-sink: .. smtp-source exits);" \
		"accept = .. smtp-source exits"
	has postern-scan && echo "postern-scan = postern + content_rules_file (the shipped $(basename "$SCAN_RULES")) + clamav_db_dir $CLAMAV_DB ($(find "$CLAMAV_DB" -maxdepth 1 -type f -printf '%f ' 2>/dev/null)), libclamav in process"
	echo
	row "system" "e2e msgs/s" "accept msg/s" "e2e/smtp-sink" "e2e/Postfix" "e2e/postern" "CPU ms/msg"
	row "----------------------------------------" "------------" "------------" "-------------" "------------" "------------" "----------"
	sink_rate="${E2E[sink]:-}"
	for s in sink postfix $PT_SYSTEMS; do
		has "$s" || continue
		row "$(sys_name "$s")" "${E2E[$s]:-NA}" "${ACC[$s]:-NA}" "$(ratio "${E2E[$s]:-}" "$sink_rate")" \
			"$(ratio "${E2E[$s]:-}" "${E2E[postfix]:-}")" "$(ratio "${E2E[$s]:-}" "${E2E[postern]:-}")" "${CPUMS[$s]:-NA}"
	done
	echo "  (ratio columns: ratio of the medians; CPU ms/msg = user+sys of the server's own processes during the run / N," \
		"median: less disturbed by other load than the rates; kernel threads (journal, block I/O) not included)"
	for p in $PAIRS; do
		pair_on "$p" || continue
		echo "  $(pair_label "$p"), median of the per-round ratios: end-to-end ${RATIO_E2E_MED[$p]} (rounds:${RATIO_E2E[$p]}), accept ${RATIO_ACC_MED[$p]} (rounds:${RATIO_ACC[$p]})"
	done
	if pair_on postern/postfix; then
		echo "  target postern/Postfix end-to-end >= 2.0 (issue 6: at least twice stock Postfix's rate): $(target "${RATIO_E2E_MED[postern/postfix]}" 2.0) (median of the per-round ratios ${RATIO_E2E_MED[postern/postfix]})"
	fi
	if pair_on postern-scan/postfix; then
		echo "  target postern-scan/Postfix end-to-end >= 1.0 (scanning on, still at least stock Postfix's unfiltered rate): $(target "${RATIO_E2E_MED[postern-scan/postfix]}" 1.0) (median of the per-round ratios ${RATIO_E2E_MED[postern-scan/postfix]})"
	fi
	if [ -n "$LAT_CONC" ]; then
		echo
		echo "transaction latency (connect .. reply to end of DATA), $NSET-message anchor set, 1 connection per message, rcpt $RCPT, median of $RUNS rounds:"
		[ -n "${EXPECT_SUMMARY:-}" ] && echo "  postern-scan must refuse (550) the EICAR messages and accept all others; ${EXPECT_SUMMARY}"
		printf '%-36s | %5s | %9s | %9s | %9s\n' "system" "conc" "p50 ms" "p99 ms" "msgs/s"
		for s in sink postfix $PT_SYSTEMS; do
			has "$s" || continue
			for c in $LAT_CONC; do
				printf '%-36s | %5s | %9s | %9s | %9s\n' "$(case $s in sink) echo "smtp-sink (client floor)" ;; *) sys_name "$s" | sed 's/ virtual.*\| -> Maildir//' ;; esac)" "$c" \
					"${P50[$s:$c]:-NA}" "${P99[$s:$c]:-NA}" "${LRATE[$s:$c]:-NA}"
			done
		done
		for p in $PAIRS; do
			pair_on "$p" || continue
			for c in $LAT_CONC; do
				echo "  $(pair_label "$p") conc=$c: p50 $(ratio "${P50[${p%/*}:$c]:-}" "${P50[${p#*/}:$c]:-}"), p99 $(ratio "${P99[${p%/*}:$c]:-}" "${P99[${p#*/}:$c]:-}") (lower is better)"
			done
		done
		if has postern && [[ " $LAT_CONC " == *" 10 "* ]]; then
			echo "  target postern p99 at conc=10 <= 10 ms (issue 6): $(target "${P99[postern:10]:-}" 10 max) (p99 ${P99[postern:10]:-NA} ms; the client's floor, smtp-sink's p99: ${P99[sink:10]:-NA} ms)"
		fi
	fi
	for s in $PT_SYSTEMS; do
		[ -n "${PT_SPLIT[$s]:-}" ] || continue
		echo
		echo "$s: ${PT_SPLIT[$s]}"
	done
	echo
	echo "peak memory (VmHWM of each live process after the run, summed; shared pages count in every process):"
	has sink && echo "  smtp-sink: $(sed -nE 's/.*VmHWM:=([0-9]+).*/\1/p' <<<"${SINK_MEM:-}") kB"
	if has postfix; then
		echo "  Postfix: $(fmt_mem "$(memsum "${PF_MEM:-}")")"
		grep -A20 'per role' <<<"${PF_MEM:-}" | grep -vE '^MEMSUM|TOTAL|per role'
	fi
	for s in $PT_SYSTEMS; do
		echo "  $s: $(fmt_mem "$(memsum "${PT_MEM[$s]:-}")")"
		grep -A20 'per role' <<<"${PT_MEM[$s]:-}" | grep -vE '^MEMSUM|TOTAL|per role'
		if [ "$s" = postern-scan ] && [ -n "${PT_MEM[$s]:-}" ]; then
			echo "   the scan master and each scanner (the compiled engine is shared by fork: compare Pss with VmRSS):"
			grep -E '^    (scan|scanner) +pid' <<<"${PT_MEM[$s]}"
			echo "   scanners' TMPDIR (libclamav's temporary files): ${SCAN_TMPDIR:-?}"
		fi
	done
	echo
	pts="${PT_SYSTEMS# }"
	bench_verdict "${pts// / and } delivered every message they accepted and refused exactly the expected ones; no warnings, errors or deferrals in their logs" raw.txt
	echo "total bench time $(secs "$T0" "$(now)") s; per-run details: $RAW"
} >"$RESULTS"
cat "$RESULTS"
cat "$RESULTS" >>"$RAW"
((${#FAILS[@]} == 0))

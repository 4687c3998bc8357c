#!/bin/bash
# bench/milter.sh - "make bench": postern as Postfix's filter. The
# acceptance rate of Postfix + `postern milter` against the same Postfix
# with the classic stack (clamav-milter -> clamd, spamass-milter -> spamc
# -> spamd) and with rspamd's milter (its proxy worker), on the same
# messages in the same run, reported as ratios (issue 12: at least ten
# times the classic stack, faster than rspamd's milter). See
# bench/README.md, "Postfix milters".
#
# Every stack sits behind the anchors' private Postfix
# (../shared/anchors/postfix_ctl.sh: smtpd on 127.0.0.1:10025, queue
# fsync'ed, every message delivered by discard(8)), so only the acceptance
# and the filtering are timed; the stacks are the anchors' daemons
# (clamd_ctl.sh, spamd_ctl.sh, milters_ctl.sh, rspamd_ctl.sh, the anchors'
# custom ClamAV signatures in /var/lib/clamav) and `postern milter` with
# the same signatures and its shipped default rules, and once more with
# SpamAssassin's installed rules on top (the rules spamd runs). Each round measures every stack once, the order rotating
# from round to round; for its turn a stack gets Postfix restarted with
# its smtpd_milters (postfix_ctl.sh start milter | rspamd |
# maildir-milter), a few warm-up messages, then each workload:
#   * source: smtp-source -s SESSIONS -m N with the anchors' ref-4k.eml
#             (a new connection per message), as anchors 03 and 07 run it
#   * set:    the anchors' 600-message set (gen_messages.py: text, HTML,
#             200 KB attachments, 6 EICAR, 6 GTUBE) replayed by the
#             anchors' smtp_replay.py with SESSIONS sessions
# Checks: every reply is 250 but the expected refusals (EICAR: the
# classic stack and postern; GTUBE: all three), the Postfix log of the
# window holds no milter warning, and Postfix queued (and discarded) each
# accepted message.
#
# Knobs (environment): RUNS=3, N=500 (smtp-source messages per run),
# SESSIONS=10, WORKLOADS="source set",
# STACKS="classic rspamd rspamd-unix postern postern-sa" (rspamd-unix: the
# same rspamd, its proxy on a unix socket; postern-sa: postern with
# SpamAssassin's rules too), WARM=20 (untimed messages after each Postfix
# start), MILTER_LISTEN and MILTER_LISTEN_SA (postern's sockets; default
# unix: in the temporary folder), SCAN_RULES=etc/content-rules.example,
# SPAM_RULES=etc/spam-rules.cf, SA_RULES_DIR=/usr/share/spamassassin,
# SPAMD_CHILDREN (spamd_ctl.sh's, 5), RSPAMD_WORKERS (rspamd_ctl.sh's),
# BENCH_TMP=/var/tmp, KEEP_TMP=1, POSTERN_BIN=build/postern,
# ANCHORS=../shared/anchors, ANCHOR_NETNS=0, TMPDIR (/dev/shm: where
# clamd and postern's libclamav unpack).
# Output: the table on stdout and in build/bench/milter-results.txt,
# per-run lines and memory per process in build/bench/milter-raw.txt,
# postern milter's logs in build/bench/milter-postern.log and
# milter-postern-sa.log, their configurations beside them.
# Exit status: 0 = every stack measured in every round with the expected
# replies; 1 otherwise (a stack that could not start, such as a postern
# without `postern milter`, is a failure). A missed target does not fail it.
set -u -o pipefail

# shellcheck source=bench/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh" # REPO, ANCHORS, BENCH_OUT, common.sh; a private network namespace

POSTERN_BIN="${POSTERN_BIN:-$REPO/build/postern}"
export TMPDIR="${TMPDIR:-/dev/shm}" # libclamav's unpacking folder, for clamd and postern alike
N="${N:-500}"
SESSIONS="${SESSIONS:-10}"
WORKLOADS="${WORKLOADS:-source set}"
STACKS="${STACKS:-classic rspamd rspamd-unix postern postern-sa}"
WARM="${WARM:-20}"
SCAN_RULES="${SCAN_RULES:-$REPO/etc/content-rules.example}"
SPAM_RULES="${SPAM_RULES:-$REPO/etc/spam-rules.cf}"
SA_RULES_DIR="${SA_RULES_DIR:-/usr/share/spamassassin}" # postern-sa's spam_rules_dirs
CLAMAV_DB=/var/lib/clamav # clamd_ctl.sh's DatabaseDirectory
BENCH_TMP="${BENCH_TMP:-/var/tmp}"
HERE="$REPO/bench"
PF_CTL="$ANCHORS/postfix_ctl.sh"
PF_QUEUE=/var/spool/postfix-anchor
PF_LOG=/var/log/postfix-anchor.log
PF_ADDR=127.0.0.1:10025
# postfix_ctl.sh's maildir-milter mode appends a second virtual_transport
# line: every Postfix command and daemon warns about it (harmless)
PF_NOISE='overriding earlier entry: virtual_transport'
SENDER=sender@example.com
RCPT=rcpt@example.org # not a virtual domain in any mode: discard(8), as the anchors
CLAMD_PIDF=/run/clamav/clamd-anchor.pid
CM_PIDF=/run/clamav/clamav-milter-anchor.pid
SA_PIDF=/run/spamass-anchor/pid
SPAMD_PIDF=/run/spamd-anchor.pid
RSPAMD_PIDF=/run/rspamd/rspamd-anchor.pid
RSPAMD_SOCK=/run/rspamd/rspamd-anchor-milter.sock # its proxy's second socket, for rspamd-unix

mkdir -p "$BENCH_OUT"
RAW="$BENCH_OUT/milter-raw.txt"
RESULTS="$BENCH_OUT/milter-results.txt"
OTHER="$BENCH_OUT/milter-other-cpu.txt"
: >"$RAW"
: >"$OTHER"
T0=$(now)
FAILS=()
fail() { FAILS+=("$*"); log "FAIL: $*"; }
record() { echo "$*" | tee -a "$RAW" >&2; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN{printf "%.2f", b-a}'; }
isnum() { [[ "${1:-}" =~ ^[0-9]+(\.[0-9]+)?$ ]]; }
ratio() { if isnum "${1:-}" && isnum "${2:-}" && [ "$2" != 0 ]; then awk -v a="$1" -v b="$2" 'BEGIN{printf "%.3f", a/b}'; else echo "-"; fi; }
med() { # median of the numeric arguments, $MED_DIGITS decimals for an even count
	printf '%s\n' "$@" | grep -E '^[0-9]+(\.[0-9]+)?$' | sort -g | awk -v d="${MED_DIGITS:-1}" '{ a[NR] = $1 }
		END { if (NR == 0) print "NA"; else if (NR % 2) print a[(NR + 1) / 2]; else printf "%.*f\n", d, (a[NR / 2] + a[NR / 2 + 1]) / 2 }'
}
pidof_file() { local p; p=$(tr -d ' \n' 2>/dev/null <"$1") && [ -n "$p" ] && kill -0 "$p" 2>/dev/null && echo "$p"; }
tree_pids() { # pid -> that process and every process below it
	local kid
	echo "$1"
	for kid in $(ps -o pid= --ppid "$1"); do tree_pids "$kid"; done
}

# ---- preconditions -------------------------------------------------------------
if [ "$(id -u)" != 0 ]; then
	echo "bench: milter.sh must run as root (a private Postfix, clamd, spamd, rspamd; postern becomes nobody)" >&2
	exit 1
fi
for t in postfix postconf smtp-source clamd clamav-milter spamass-milter spamd spamc rspamd python3 runuser; do
	command -v "$t" >/dev/null || { echo "bench: $t not found (run tools/install-deps.sh)" >&2; exit 1; }
done
for s in $STACKS; do
	case "$s" in classic | rspamd | rspamd-unix | postern | postern-sa) ;; *) echo "bench: unknown stack '$s' in STACKS (classic rspamd rspamd-unix postern postern-sa)" >&2; exit 1 ;; esac
done
for w in $WORKLOADS; do
	case "$w" in source | set) ;; *) echo "bench: unknown workload '$w' in WORKLOADS (source set)" >&2; exit 1 ;; esac
done
has() { [[ " $STACKS " == *" $1 "* ]]; }
# the anchors' daemons live at fixed paths: one that is running belongs to
# someone else (another benchmark, a test) and is left alone
for pf in "$CLAMD_PIDF" "$CM_PIDF" "$SA_PIDF" "$SPAMD_PIDF" "$RSPAMD_PIDF" "$PF_QUEUE/pid/master.pid"; do
	if p=$(pidof_file "$pf"); then
		echo "bench: an anchor daemon is already running (pid $p, $pf); stop it first (../shared/anchors/stop_all.sh)" >&2
		exit 1
	fi
done
if has postern || has postern-sa; then
	[ -x "$POSTERN_BIN" ] || { echo "bench: $POSTERN_BIN not built (make all)" >&2; exit 1; }
	[ -f "$SCAN_RULES" ] || { echo "bench: $SCAN_RULES not found (SCAN_RULES=...)" >&2; exit 1; }
	[ -f "$SPAM_RULES" ] || { echo "bench: $SPAM_RULES not found (SPAM_RULES=...)" >&2; exit 1; }
	if has postern-sa && [ ! -d "$SA_RULES_DIR" ]; then
		echo "bench: $SA_RULES_DIR not found (SA_RULES_DIR=...)" >&2
		exit 1
	fi
fi

# ---- cleanup: everything started here is stopped by its PID or its own stop command
ST=""
PF_UP=0
CLASSIC_UP=0
RSPAMD_UP=0
DNS_PID=""
declare -A PT_PID=() PT_RC=() PT_LISTEN=()
stop_postfix() { # and wait for its master to be gone (the next start, or the next run, needs the port)
	local i
	[ "$PF_UP" = 1 ] || return 0
	"$PF_CTL" stop >/dev/null 2>&1
	for ((i = 0; i < 100; i++)); do pidof_file "$PF_QUEUE/pid/master.pid" >/dev/null || break; sleep 0.1; done
	PF_UP=0
}
stop_classic() {
	[ "$CLASSIC_UP" = 1 ] || return 0
	"$ANCHORS/milters_ctl.sh" stop >/dev/null 2>&1
	"$ANCHORS/spamd_ctl.sh" stop >/dev/null 2>&1
	"$ANCHORS/clamd_ctl.sh" stop >/dev/null 2>&1
	CLASSIC_UP=0
}
stop_rspamd() { [ "$RSPAMD_UP" = 1 ] && { "$ANCHORS/rspamd_ctl.sh" stop >/dev/null 2>&1; rm -f "$RSPAMD_SOCK"; RSPAMD_UP=0; }; return 0; }
stop_dns() { [ -n "$DNS_PID" ] && { stop_pid "$DNS_PID" 10; wait "$DNS_PID" 2>/dev/null; DNS_PID=""; }; return 0; }
stop_postern() { # stack: SIGTERM to that postern milter; its children die with it
	local i pid=${PT_PID[$1]:-}
	[ -n "$pid" ] || return 0
	kill -TERM "$pid" 2>/dev/null
	for ((i = 0; i < 600; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
	if kill -0 "$pid" 2>/dev/null; then
		log "postern milter pid $pid did not stop in 60 s, sending KILL"
		kill -KILL "$pid"
	fi
	wait "$pid" 2>/dev/null
	PT_RC[$1]=$?
	PT_PID[$1]=""
}
cleanup() {
	stop_postfix
	stop_postern postern
	stop_postern postern-sa
	stop_classic
	stop_rspamd
	stop_dns
	if [ -n "$ST" ] && [ -d "$ST" ]; then
		if [ "${KEEP_TMP:-0}" = 1 ]; then log "kept $ST"; else rm -rf "$ST"; fi
	fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

MACHINE="$(nproc) CPU ($(lscpu 2>/dev/null | sed -nE 's/^Model name: +//p' | head -1)), $(awk '/MemTotal/{printf "%.0f GiB RAM", $2/1048576}' /proc/meminfo), kernel $(uname -r)"
LOAD0=$(cut -d' ' -f1-3 /proc/loadavg)
record "machine: $MACHINE; date $(date -u +%FT%TZ); load average at start $LOAD0; netns=${ANCHOR_IN_NETNS:-no}"
if awk -v l="${LOAD0%% *}" -v n="$(nproc)" 'BEGIN{exit !(l > 0.5 * n)}'; then
	record "WARNING: the machine is busy (load $LOAD0 on $(nproc) CPUs): the numbers will be noisy"
fi
ensure_msgs # the anchors' set and ref-4k.eml, in $ANCHOR_OUT/msgs
NSET=$(find "$MSGS" -maxdepth 1 -name '[0-9]*.eml' | wc -l)
record "messages: $MSGS ($NSET in the set, $(du -sk --exclude=ref-4k.eml "$MSGS" | cut -f1) kB; ref-4k.eml $(stat -c %s "$MSGS/ref-4k.eml") bytes); N=$N SESSIONS=$SESSIONS RUNS=$RUNS WORKLOADS='$WORKLOADS' STACKS='$STACKS' TMPDIR=$TMPDIR"
cat "$MSGS"/*.eml >/dev/null # the clients read them from the page cache
[ -f "$CLAMAV_DB/anchor-custom.ndb" ] || "$ANCHORS/clamav_db.sh" "$CLAMAV_DB" >&2
record "ClamAV signatures (clamd and postern alike): $CLAMAV_DB: $(find "$CLAMAV_DB" -maxdepth 1 -type f -printf "%f " | sort)"
ST=$(mktemp -d "$BENCH_TMP/postern-milterbench.XXXXXX")
chmod 755 "$ST"

# ---- the classic stack: clamd, spamd, clamav-milter, spamass-milter (the anchors') ----------
declare -A ROOTS=() VERSION=() LABEL=()
LABEL[classic]="Postfix + clamav-milter + spamass-milter"
LABEL[rspamd]="Postfix + rspamd milter, TCP (anchors)"
LABEL[rspamd-unix]="Postfix + rspamd milter, unix socket"
LABEL[postern]="Postfix + postern milter"
LABEL[postern-sa]="Postfix + postern milter, + SA's rules"
if has classic; then
	a=$(now)
	if "$ANCHORS/clamd_ctl.sh" start 2>>"$RAW" && "$ANCHORS/spamd_ctl.sh" start 2>>"$RAW" &&
		"$ANCHORS/milters_ctl.sh" start 2>>"$RAW"; then
		CLASSIC_UP=1
		ROOTS[classic]="$(pidof_file "$CLAMD_PIDF") $(pidof_file "$CM_PIDF") $(pidof_file "$SA_PIDF") $(pidof_file "$SPAMD_PIDF")"
		VERSION[classic]="$(clamd --version 2>/dev/null | cut -d/ -f1), $(spamassassin --version 2>/dev/null | head -1), spamass-milter $(dpkg-query -W -f '${Version}' spamass-milter 2>/dev/null), spamd children ${SPAMD_CHILDREN:-5}"
		record "classic stack up in $(secs "$a" "$(now)") s: clamd, clamav-milter, spamass-milter, spamd pids ${ROOTS[classic]}; ${VERSION[classic]}"
	else
		CLASSIC_UP=1 # whatever started is stopped
		stop_classic
		fail "the classic stack (clamd_ctl.sh, spamd_ctl.sh, milters_ctl.sh start) did not start (see $RAW)"
	fi
fi

# ---- rspamd: the anchors' (network and Redis modules off: no Bayes) ----------------------------
if has rspamd || has rspamd-unix; then
	# rspamd-unix: the proxy listens on a unix socket too (rspamd_ctl.sh
	# copies RSPAMD_LOCAL_EXTRA's files into its local.d); the anchors'
	# TCP socket stays
	mkdir "$ST/rspamd-extra"
	[ -n "${RSPAMD_LOCAL_EXTRA:-}" ] && cp "$RSPAMD_LOCAL_EXTRA"/* "$ST/rspamd-extra/"
	if has rspamd-unix; then
		cat >>"$ST/rspamd-extra/worker-proxy.inc" <<-EOF
			bind_socket = "localhost:11332";
			bind_socket = "$RSPAMD_SOCK mode=0666";
		EOF
	fi
	chmod -R a+rX "$ST/rspamd-extra"
	# the anchors point rspamd's resolver at 127.0.0.1:53: a stub answers
	# every query at once with REFUSED, so that no lookup waits for its
	# timeout (bench/dns_refuse.py; as bench/spam.sh does)
	if [ "${ANCHOR_IN_NETNS:-}" = 1 ]; then
		python3 "$HERE/dns_refuse.py" 127.0.0.1 53 "$ST/dns-count" 2>"$ST/dns.err" &
		DNS_PID=$!
	else
		record "note: not in a private network namespace: no DNS stub, rspamd's lookups wait for their timeout"
	fi
	a=$(now)
	if RSPAMD_LOCAL_EXTRA="$ST/rspamd-extra" "$ANCHORS/rspamd_ctl.sh" start 2>>"$RAW"; then
		RSPAMD_UP=1
		ROOTS[rspamd]=$(pidof_file "$RSPAMD_PIDF")
		if has rspamd-unix; then
			if wait_sock "$RSPAMD_SOCK" 10; then
				ROOTS[rspamd-unix]=${ROOTS[rspamd]}
			else
				fail "rspamd's proxy did not listen on $RSPAMD_SOCK"
			fi
		fi
		VERSION[rspamd]=$(rspamd --version 2>/dev/null | head -1 | sed 's/^Rspamd daemon version /rspamd /')
		VERSION[rspamd-unix]="${VERSION[rspamd]}, the same daemon: its proxy on $RSPAMD_SOCK"
		record "rspamd up in $(secs "$a" "$(now)") s: main pid ${ROOTS[rspamd]}; ${VERSION[rspamd]}; $(pgrep -c -P "${ROOTS[rspamd]}" -f '^rspamd: normal') normal worker(s), Bayes off (needs Redis), no antivirus"
	else
		RSPAMD_UP=1
		stop_rspamd
		fail "rspamd (rspamd_ctl.sh start) did not start (see $RAW)"
	fi
fi

# ---- postern milter: the same signatures; its own rules (postern), and SpamAssassin's too (postern-sa)
# postern: the shipped defaults (etc/postern.conf: content-rules.example,
# spam-rules.cf); postern-sa adds spam_rules_dirs = SpamAssassin's
# installed rules, the rules the classic stack's spamd runs. Each its own
# process tree, spool, socket and log, started once; idle while the other
# stacks are measured.
start_postern() { # stack
	local stack=$1 dir="$ST/$1" listen conf log a up=0 i hp
	case "$stack" in
	postern) listen="${MILTER_LISTEN:-unix:$ST/run/postern.sock}" ;;
	postern-sa) listen="${MILTER_LISTEN_SA:-unix:$ST/run/postern-sa.sock}" ;;
	esac
	conf="$dir/milter.conf"
	log="$BENCH_OUT/milter-$stack.log"
	mkdir -p "$dir/spool/private" "$ST/run"
	chown -R nobody "$dir/spool" "$ST/run"
	chmod 700 "$dir/spool/private"
	chmod 755 "$dir" "$ST/run"
	cp "$SCAN_RULES" "$dir/content-rules"
	cp "$SPAM_RULES" "$dir/spam-rules.cf"
	chmod 644 "$dir/content-rules" "$dir/spam-rules.cf"
	{
		echo "# written by bench/milter.sh: postern as Postfix's milter ($stack)"
		echo "milter_listen      = $listen"
		echo "hostname           = mx.example.test"
		echo "spool_dir          = $dir/spool"
		echo "user               = nobody"
		echo "mail_owner         = mail"
		echo "clamav_db_dir      = $CLAMAV_DB"
		echo "clamav_temp_dir    = $TMPDIR"
		echo "content_rules_file = $dir/content-rules"
		echo "spam_rules_file    = $dir/spam-rules.cf"
		[ "$stack" = postern-sa ] && echo "spam_rules_dirs    = $SA_RULES_DIR"
		# spam_reject_score: its default, 15, as spamass-milter's -r 15
	} >"$conf"
	chmod 644 "$conf"
	cp "$conf" "$BENCH_OUT/milter-$stack.conf"
	VERSION[$stack]="$("$POSTERN_BIN" version 2>/dev/null); $(basename "$SCAN_RULES"), $(basename "$SPAM_RULES")$([ "$stack" = postern-sa ] && echo " + $SA_RULES_DIR"), ClamAV $CLAMAV_DB, no Bayes"
	a=$(now)
	if ! "$POSTERN_BIN" check-config -c "$conf" >/dev/null 2>"$dir/check.err"; then
		fail "$stack: postern check-config: $(grep -v ' warning: spam: ' "$dir/check.err" | head -3 | tr '\n' ' ')"
		return 1
	fi
	record "$stack: check-config (the first load: compiles the spam rules' Hyperscan databases into its spool): $(secs "$a" "$(now)") s; $(sed -nE 's/.*info: spam: ([0-9]+ rules),.*/\1/p' "$dir/check.err" | head -1)"
	a=$(now)
	"$POSTERN_BIN" milter -c "$conf" 2>"$log" &
	PT_PID[$stack]=$!
	for ((i = 0; i < 1200; i++)); do # its scanners load the rules and signatures first
		kill -0 "${PT_PID[$stack]}" 2>/dev/null || break
		case "$listen" in
		unix:*) [ -S "${listen#unix:}" ] && { up=1; break; } ;;
		inet:*)
			hp=${listen#inet:}
			(exec 3<>"/dev/tcp/${hp%:*}/${hp##*:}") 2>/dev/null && { up=1; break; }
			;;
		esac
		sleep 0.1
	done
	if [ "$up" != 1 ]; then
		fail "$stack: postern milter did not listen on $listen (see $log: $(tail -2 "$log" | tr '\n' ' '))"
		stop_postern "$stack"
		return 1
	fi
	ROOTS[$stack]=${PT_PID[$stack]}
	PT_LISTEN[$stack]=$listen
	record "$stack: postern milter up in $(secs "$a" "$(now)") s: pid ${PT_PID[$stack]}, $listen; ${VERSION[$stack]}"
}
for s in postern postern-sa; do
	has "$s" && start_postern "$s"
done

# ---- Postfix, one stack at a time --------------------------------------------------------
pf_start() { # stack -> Postfix up with that stack's smtpd_milters; PF_MASTER
	local mode addr="" err="$ST/postfix_ctl.err"
	case "$1" in
	classic) mode=milter ;;
	rspamd) mode=rspamd ;;
	# maildir-milter: smtpd_milters = MILTER_ADDR; the recipient's domain
	# is not its virtual domain, so delivery is discard(8) as in the others
	rspamd-unix) mode=maildir-milter addr="unix:$RSPAMD_SOCK" ;;
	postern | postern-sa) mode=maildir-milter addr="${PT_LISTEN[$1]}" ;;
	esac
	stop_postfix
	PF_UP=1
	if ! MILTER_ADDR="$addr" "$PF_CTL" start "$mode" 2>"$err"; then
		grep -v "$PF_NOISE" "$err" >&2
		return 1
	fi
	grep -v "$PF_NOISE" "$err" >>"$RAW"
	PF_MASTER=$(pidof_file "$PF_QUEUE/pid/master.pid")
	[ -n "$PF_MASTER" ]
}
pf_wait_sent() { # log-offset count -> "sent rejected warnings" of the log since the offset, once sent+rejected reaches count (max 30 s)
	local off=$1 want=$2 i s r w
	for ((i = 0; i < 300; i++)); do
		read -r s r w < <(tail -c +"$((off + 1))" "$PF_LOG" | awk -v noise="$PF_NOISE" '
			/ status=sent / { s++ } / milter-reject: / { r++ }
			/ (warning|error|fatal|panic): / && index($0, noise) == 0 { w++ }
			END { printf "%d %d %d\n", s, r, w }')
		[ "$((s + r))" -ge "$want" ] && break
		sleep 0.1
	done
	echo "$s $r $w"
}

# CPU: the stack's filter processes, Postfix' master and everything below it, the rest
cpu_snap() { python3 "$HERE/cpu_acct.py" snap "$ST/cpu.snap"; }
cpu_of() { # pid... -> CPU seconds of those trees since cpu_snap
	local ours
	read -r _ _ ours _ _ < <(python3 "$HERE/cpu_acct.py" diff "$ST/cpu.snap" "$@")
	echo "${ours:-0}"
}
cpu_other() { # label pid... -> "other processes X CPU-s, steal Y CPU-s (Z% of the CPUs)"
	local label=$1 wall other steal
	shift
	read -r wall _ _ other steal < <(python3 "$HERE/cpu_acct.py" diff "$ST/cpu.snap" "$@")
	echo "$label ${other:-0} ${steal:-0} ${wall:-1}" >>"$OTHER"
	awk -v o="${other:-0}" -v s="${steal:-0}" -v w="${wall:-1}" -v n="$(nproc)" \
		'BEGIN{printf "other processes %.1f CPU-s, steal %.1f CPU-s (%.0f%% of the CPUs)", o, s, 100*(o+s)/(w*n)}'
}

# what a stack must answer to the set, per kind of message (the rest: 250)
expected_refusals() {
	case "$1" in
	classic | postern | postern-sa) echo "eicar gtube" ;;
	rspamd | rspamd-unix) echo "gtube" ;; # no antivirus in the anchors' rspamd
	esac
}
# smtp_replay.py's JSON -> "ok" or what is wrong
check_set() { # stack json
	python3 - "$2" "$(expected_refusals "$1")" <<-'EOF'
		import json, sys
		j = json.loads(sys.argv[1]); refused = set(sys.argv[2].split())
		bad = []
		for kind, codes in sorted(j["by_kind"].items()):
		    for code, n in codes.items():
		        if kind in refused and not code.startswith("5"):
		            bad.append("%d %s answered %s (expected a refusal)" % (n, kind, code))
		        elif kind not in refused and code != "250":
		            bad.append("%d %s answered %s" % (n, kind, code))
		print("; ".join(bad) if bad else "ok")
	EOF
}

run_workload() { # workload -> on stdout: "rate detail"; the client's JSON or output in $ST/client.out
	local a b
	case "$1" in
	source)
		a=$(now)
		smtp-source -s "$SESSIONS" -m "$N" -f "$SENDER" -t "$RCPT" -F "$MSGS/ref-4k.eml" "$PF_ADDR" >"$ST/client.out" 2>&1
		echo "rc $?" >>"$ST/client.out"
		b=$(now)
		echo "$(rate "$N" "$a" "$b") $(secs "$a" "$b")s"
		;;
	set)
		python3 "$ANCHORS/smtp_replay.py" 127.0.0.1 10025 "$MSGS" "$SESSIONS" >"$ST/client.out" 2>&1
		python3 -c 'import json,sys; j=json.loads(open(sys.argv[1]).read().splitlines()[-1]); print("%s %ss p50=%sms p99=%sms" % (j["msgs_per_s"], j["secs"], j["lat_ms_p50"], j["lat_ms_p99"]))' "$ST/client.out" 2>/dev/null || echo "NA client-failed"
		;;
	esac
}
count_of() { case "$1" in source) echo "$N" ;; set) echo "$NSET" ;; esac; }

# ---- the rounds ---------------------------------------------------------------------------
# ratios per round (rbest: the faster rspamd stack of the round)
PAIRS="postern/classic postern/rbest postern/rspamd postern/rspamd-unix postern-sa/classic postern-sa/rbest rbest/classic"
declare -A RATES=() FCPU=() PCPU=() ROUND=()
UPSTACKS=""
for s in $STACKS; do [ -n "${ROOTS[$s]:-}" ] && UPSTACKS="$UPSTACKS $s"; done
read -r -a UPARR <<<"$UPSTACKS"
NUP=${#UPARR[@]}
for ((r = 1; r <= RUNS && NUP > 0; r++)); do
	declare -A R=()
	for ((k = 0; k < NUP; k++)); do
		s=${UPARR[$(((k + r - 1) % NUP))]}
		if ! pf_start "$s"; then
			fail "round $r: Postfix did not start for the $s stack"
			continue
		fi
		# warm-up: new smtpd processes, each filter's first messages (untimed)
		smtp-source -s 5 -m "$WARM" -f "$SENDER" -t "$RCPT" -F "$MSGS/ref-4k.eml" "$PF_ADDR" >/dev/null 2>&1
		"$PF_CTL" drain-wait 60 >/dev/null
		for w in $WORKLOADS; do
			cnt=$(count_of "$w")
			off=$(stat -c %s "$PF_LOG" 2>/dev/null || echo 0)
			# shellcheck disable=SC2086 # lists of PIDs
			{
				cpu_snap
				read -r rt detail < <(run_workload "$w")
				fc=$(cpu_of ${ROOTS[$s]})
				pc=$(cpu_of "$PF_MASTER")
				note=$(cpu_other "$s-$w" $$ ${ROOTS[$s]} "$PF_MASTER" ${DNS_PID:-})
			}
			waited=$("$PF_CTL" drain-wait 120)
			read -r sent rej warns < <(pf_wait_sent "$off" "$cnt")
			check=ok
			case "$w" in
			source)
				grep -q '^rc 0$' "$ST/client.out" || check="smtp-source: $(grep -v '^rc ' "$ST/client.out" | head -2 | tr '\n' ' ') $(tail -1 "$ST/client.out")"
				[ "$rej" = 0 ] && [ "$sent" = "$N" ] || check="Postfix sent $sent and refused $rej of $N (expected $N sent)"
				;;
			set)
				j=$(tail -1 "$ST/client.out")
				check=$(check_set "$s" "$j" 2>&1)
				echo "  $s set round $r: $j" >>"$RAW"
				[ "$check" != ok ] || [ "$((sent + rej))" = "$NSET" ] || check="Postfix logged $sent sent + $rej milter refusals, not $NSET"
				;;
			esac
			[ "$warns" = 0 ] || check="${check/#ok/} Postfix logged $warns warnings ($(tail -c +"$((off + 1))" "$PF_LOG" | grep -E ' (warning|error|fatal|panic): ' | grep -v "$PF_NOISE" | head -2 | tr '\n' ' '))"
			if [ "$check" = ok ] && isnum "$rt"; then
				RATES[$s-$w]="${RATES[$s-$w]:-} $rt"
				FCPU[$s-$w]="${FCPU[$s-$w]:-} $(awk -v c="$fc" -v n="$cnt" 'BEGIN{printf "%.3f", 1000*c/n}')"
				PCPU[$s-$w]="${PCPU[$s-$w]:-} $(awk -v c="$pc" -v n="$cnt" 'BEGIN{printf "%.3f", 1000*c/n}')"
				R[$s-$w]=$rt
			else
				fail "round $r, $s, $w: $check (see $RAW)"
				R[$s-$w]=""
			fi
			record "round $r $s $w: $rt msgs/s ($detail), filter CPU $fc s, Postfix CPU $pc s, Postfix sent $sent refused $rej (queue drained after ${waited}s); $check; $note; load $(cut -d' ' -f1 /proc/loadavg)"
		done
	done
	stop_postfix
	for w in $WORKLOADS; do
		# the faster of rspamd's two sockets in this round: "rspamd's milter" of the target
		b=$(printf '%s\n' "${R[rspamd-$w]:-}" "${R[rspamd-unix-$w]:-}" | grep -E '^[0-9]' | sort -g | tail -1)
		R[rbest-$w]=$b
		[ -n "$b" ] && RATES[rbest-$w]="${RATES[rbest-$w]:-} $b"
		for p in $PAIRS; do
			a=${R[${p%/*}-$w]:-}
			b=${R[${p#*/}-$w]:-}
			[ -n "$a" ] && [ -n "$b" ] && ROUND[$p-$w]="${ROUND[$p-$w]:-} $(ratio "$a" "$b")"
		done
	done
	unset R
done

# ---- memory of each stack's filter processes, after the rounds --------------------------------
declare -A MEM=()
mem_rows() { # stack pid... -> "n sum_hwm max_hwm sum_pss"; one line per process to the record
	local title=$1 p line h s n=0 sh=0 mx=0 sp=0
	shift
	for p in "$@"; do
		line=$(mem_of "$p")
		[ -n "$line" ] || continue
		h=$(sed -nE 's/.*VmHWM:=([0-9]+).*/\1/p' <<<"$line")
		s=$(sed -nE 's/.*Pss:=([0-9]+).*/\1/p' <<<"$line")
		echo "  memory $title pid $p $(tr '\0' ' ' <"/proc/$p/cmdline" 2>/dev/null | cut -c1-60): $line" >>"$RAW"
		n=$((n + 1)); sh=$((sh + ${h:-0})); sp=$((sp + ${s:-0}))
		[ "${h:-0}" -gt "$mx" ] && mx=${h:-0}
	done
	echo "$n $sh $mx $sp"
}
for s in $UPSTACKS; do
	pids=""
	# shellcheck disable=SC2086 # a list of PIDs
	for p in ${ROOTS[$s]}; do pids="$pids $(tree_pids "$p")"; done
	# shellcheck disable=SC2086
	MEM[$s]=$(mem_rows "$s" $pids)
done
for s in postern postern-sa; do
	[ -n "${PT_PID[$s]:-}" ] || continue
	stop_postern "$s"
	record "$s: postern milter exit status ${PT_RC[$s]} after SIGTERM"
	[ "${PT_RC[$s]}" = 0 ] || fail "$s: postern milter exited with status ${PT_RC[$s]} after SIGTERM"
	log="$BENCH_OUT/milter-$s.log"
	n=$(grep -E ': (warning|error|fatal|panic): ' "$log" | grep -vcE 'warning: spam: .*rules skipped' || true)
	[ "$n" = 0 ] || fail "$s: postern milter logged $n warning/error lines besides the skipped-rules summary (see $log)"
	# MAIL -> verdict, as postern logs it (delay=), over the whole run
	record "$s: MAIL -> verdict (delay=), p50/p90/p99 over $(grep -c ' milter action=' "$log") messages: $(grep -oE ' milter action=.* delay=[0-9.]+' "$log" | sed -E 's/.*delay=//' | sort -g | awk '{ a[NR] = $1 } END { if (NR) printf "%s / %s / %s s", a[int(NR * 0.5) + 1], a[int(NR * 0.9) + 1], a[int(NR * 0.99) + 1] }')"
done
stop_classic
stop_rspamd
stop_dns
[ -f "$ST/dns-count" ] && record "DNS stub: refused $(cat "$ST/dns-count") queries (rspamd's lookups) over the whole run"

# ---- table ------------------------------------------------------------------------------------
target() { # ratio op limit -> met / NOT met
	isnum "${1:-}" || { echo "not measured"; return; }
	awk -v r="$1" -v l="$3" -v op="$2" 'BEGIN{ ok = (op == ">=" ? r >= l : r < l); print (ok ? "met" : "NOT met") }'
}
row() { printf '%-42s | %-7s | %9s | %-24s | %9s | %9s | %11s | %11s\n' "$@"; }
mrow() { printf '%-42s | %5s | %11s | %11s | %11s\n' "$@"; }
# shellcheck disable=SC2086 # space-separated lists of numbers
{
	echo "Postfix milters: postern milter vs the classic stack and rspamd, $(date -u +%F) - $MACHINE"
	echo "Postfix $(postconf -d -h mail_version 2>/dev/null) (the anchors' private instance, discard(8) delivery); $SESSIONS sessions;" \
		"source = smtp-source -m $N ref-4k.eml, set = the anchors' $NSET-message set (smtp_replay.py); median of $RUNS rounds, the stacks' order rotating"
	for s in $STACKS; do echo "  $s: ${LABEL[$s]}: ${VERSION[$s]:-not started}"; done
	echo "  rules: classic = SpamAssassin's installed rules (spamd -L, Bayes untrained) + the anchors' ClamAV signatures;" \
		"rspamd = its rules (network and Redis modules off, no Bayes, no antivirus);" \
		"postern = its shipped defaults, $(basename "$SPAM_RULES") + $(basename "$SCAN_RULES"), + the same ClamAV signatures, no Bayes;" \
		"postern-sa = the same + SpamAssassin's installed rules ($SA_RULES_DIR)"
	echo
	row "stack" "load" "msgs/s" "rounds" "/classic" "/rspamd*" "filter CPU" "Postfix CPU"
	row "------------------------------------------" "-------" "---------" "------------------------" "---------" "---------" "ms/msg" "ms/msg"
	for w in $WORKLOADS; do
		cm=$(med ${RATES[classic-$w]:-})
		rm_=$(med ${RATES[rbest-$w]:-})
		for s in $STACKS; do
			m=$(med ${RATES[$s-$w]:-})
			row "${LABEL[$s]}" "$w" "$m" "$(echo ${RATES[$s-$w]:-} | tr ' ' ',')" "$(ratio "$m" "$cm")" "$(ratio "$m" "$rm_")" \
				"$(MED_DIGITS=3 med ${FCPU[$s-$w]:-})" "$(MED_DIGITS=3 med ${PCPU[$s-$w]:-})"
		done
	done
	echo "  (msgs/s = messages / the client's wall time; ratio columns: ratio of the medians; CPU = user + system of the" \
		"stack's filter processes (their children included: spamc, rspamd's workers, postern's) and of Postfix'" \
		"master and its children during the run, per message, median: steadier than the rates on a shared machine;" \
		"rspamd* = per round the faster of rspamd's two sockets, median over the rounds)"
	for w in $WORKLOADS; do
		for p in $PAIRS; do
			[ -n "${ROUND[$p-$w]:-}" ] || continue
			rr=$(MED_DIGITS=3 med ${ROUND[$p-$w]})
			case "$p" in
			postern*/classic) t="; target >= 10: $(target "$rr" ">=" 10)" ;;
			postern*/rbest) t="; target > 1: $(awk -v r="$rr" 'BEGIN{print (r > 1 ? "met" : "NOT met")}')" ;;
			*) t="" ;;
			esac
			pn=${p%/*} pd=${p#*/}
			echo "  $w, ${pn/rbest/rspamd (its faster socket)} / ${pd/rbest/rspamd (its faster socket)} per round:${ROUND[$p-$w]} -> median $rr$t"
		done
		for s in postern postern-sa; do
			[ -n "${FCPU[$s-$w]:-}" ] || continue
			c=$(MED_DIGITS=3 med ${FCPU[$s-$w]})
			line=""
			for o in classic rspamd rspamd-unix; do
				[ -n "${FCPU[$o-$w]:-}" ] && line="$line, / $o $(ratio "$c" "$(MED_DIGITS=3 med ${FCPU[$o-$w]})")"
			done
			[ -n "$line" ] && echo "  $w, filter CPU per message, $s${line}"
		done
	done
	echo
	echo "filter processes' memory after the rounds (kB; spamass-milter's short-lived spamc processes not included)"
	mrow "stack" "procs" "VmHWM sum" "VmHWM max" "Pss sum"
	mrow "------------------------------------------" "-----" "-----------" "-----------" "-----------"
	for s in $STACKS; do
		[ -n "${MEM[$s]:-}" ] || continue
		[ "$s" = rspamd-unix ] && has rspamd && continue # the same processes
		read -r n sh mx sp <<<"${MEM[$s]}"
		mrow "${LABEL[$s]}" "$n" "$sh" "$mx" "$sp"
	done
	echo "  (VmHWM = each process' peak resident set, shared pages counted in each; Pss = resident now, shared pages split)"
	echo
	bench_verdict "every stack answered every message as expected in every round" milter-raw.txt
	echo "total time $(secs "$T0" "$(now)") s; per-run details: $RAW"
} >"$RESULTS"
cat "$RESULTS"
cat "$RESULTS" >>"$RAW"
((${#FAILS[@]} == 0))

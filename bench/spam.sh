#!/bin/bash
# bench/spam.sh - "make bench", third part: spam scoring. `postern scan`
# with postern's own rules, SpamAssassin's installed rules and Bayes,
# against SpamAssassin (spamc -> spamd) and rspamd (rspamc -> rspamd) on
# the same messages in the same run, reported as ratios; then the
# resident memory of postern's scanners with those rules loaded against
# rspamd's and spamd's processes. See bench/README.md.
#
# The set: SPAM_SET_SIZE messages of the labelled corpus (ham and spam in
# its proportion, bench/spam_set.py); Bayes (postern's and SpamAssassin's)
# learns every other message of the corpus, never one of the set. rspamd's
# Bayes needs Redis and is off in the anchors' configuration: it stays off
# (less work per message for rspamd; the output says so).
# Each round runs every system once, one after the other, so a slow spell
# of the machine hits all alike:
#   * postern scan          one process over the set (start-up included)
#   * postern scan x2       two processes, each over half (xargs -P2): the
#                           daemons below use both cores too
#   * spamc -c              one spamc per message, SPAMC_CONC at a time
#                           (the anchors' pipe_bench.py), to a private spamd
#                           -L with SPAMD_CHILDREN children and the Bayes
#                           store sa-learn filled
#   * rspamc -n RSPAMC_N    to the anchors' rspamd (rspamd_ctl.sh)
# Memory: a real postern server with the same spam configuration gets the
# set over SMTP (the anchors' smtp_replay.py), then VmHWM and Pss of its
# scan master and scanners; rspamd's and spamd's processes after their
# runs.
#
# Knobs (environment): RUNS=3 (rounds; medians reported), SPAM_SET_SIZE=600,
# SPAM_CORPUS=../shared/corpus/train, SPAM_RULES=etc/spam-rules.cf,
# SA_RULES_DIR=/usr/share/spamassassin, SPAMD_CHILDREN=2, SPAMC_CONC=2,
# SPAMD_BENCH_PORT=7832, RSPAMC_N=8, RSPAMD_WORKERS (rspamd_ctl.sh's: normal
# workers; unset = the package's default), SMTP_CONC=4,
# SPAM_SMTP_PORT=25280, STALL=60 (s without a delivery before the server
# counts as stuck), BENCH_TMP=/var/tmp, KEEP_TMP=1,
# POSTERN_BIN=build/postern, ANCHORS=../shared/anchors, ANCHOR_NETNS=0.
# Output: the table on stdout and in build/bench/spam-results.txt, per-run
# lines in build/bench/spam-raw.txt, each system's output of the last round
# in build/bench/spam-out/, the postern server's log in
# build/bench/spam-postern.log.
# Exit status: 0 = every system scored every message of the set in every
# round (and called some of it spam), and the postern server accepted and
# delivered the whole set; 1 otherwise. A missed target does not fail it.
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
. "$ANCHORS/common.sh" # log, now, rate, mem_of, stop_pid, wait_tcp, netns_reexec, RUNS
netns_reexec "$@"

POSTERN_BIN="${POSTERN_BIN:-$REPO/build/postern}"
SPAM_CORPUS="${SPAM_CORPUS:-$(dirname "$REPO")/shared/corpus/train}"
SPAM_SET_SIZE="${SPAM_SET_SIZE:-600}"
SPAM_RULES="${SPAM_RULES:-$REPO/etc/spam-rules.cf}"
SA_RULES_DIR="${SA_RULES_DIR:-/usr/share/spamassassin}"
SPAMD_CHILDREN="${SPAMD_CHILDREN:-2}"
SPAMC_CONC="${SPAMC_CONC:-2}"
SPAMD_BENCH_PORT="${SPAMD_BENCH_PORT:-7832}"
RSPAMC_N="${RSPAMC_N:-8}"
SMTP_CONC="${SMTP_CONC:-4}"
SPAM_SMTP_PORT="${SPAM_SMTP_PORT:-25280}"
STALL="${STALL:-60}"
BENCH_TMP="${BENCH_TMP:-/var/tmp}"
HERE="$REPO/bench"
SPAMD_PIDF=/run/postern-spambench-spamd.pid
RSPAMD_CTL="$ANCHORS/rspamd_ctl.sh"
RSPAMD_PIDF=/run/rspamd/rspamd-anchor.pid # rspamd_ctl.sh's
RSPAMD_HOST=127.0.0.1:11333                # its normal worker

mkdir -p "$BENCH_OUT/spam-out"
RAW="$BENCH_OUT/spam-raw.txt"
RESULTS="$BENCH_OUT/spam-results.txt"
OTHER="$BENCH_OUT/spam-other-cpu.txt"
PT_LOG="$BENCH_OUT/spam-postern.log"
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
mb() { awk -v k="${1:-0}" 'BEGIN{printf "%.1f MB", k/1024}'; }
# CPU that other processes and other guests took in a window (cpu_acct.py)
cpu_snap() { python3 "$HERE/cpu_acct.py" snap "$BENCH_OUT/spam-cpu.snap"; }
cpu_note() { # label -> "other processes X CPU-s, steal Y CPU-s (Z% of the CPUs)"
	local wall other steal
	# shellcheck disable=SC2086 # the daemons' PIDs may be empty
	read -r wall _ _ other steal < <(python3 "$HERE/cpu_acct.py" diff "$BENCH_OUT/spam-cpu.snap" $$ ${SPAMD_PID:-} ${RSPAMD_PID:-} ${DNS_PID:-})
	echo "$1 ${other:-0} ${steal:-0} ${wall:-1}" >>"$OTHER"
	awk -v o="${other:-0}" -v s="${steal:-0}" -v w="${wall:-1}" -v n="$(nproc)" \
		'BEGIN{printf "other processes %.1f CPU-s, steal %.1f CPU-s (%.0f%% of the CPUs)", o, s, 100*(o+s)/(w*n)}'
}
daemon_cpu() { # pid -> CPU seconds of that process tree since cpu_snap (0 without one)
	local ours
	[ -n "${1:-}" ] || { echo 0; return; }
	read -r _ _ ours _ _ < <(python3 "$HERE/cpu_acct.py" diff "$BENCH_OUT/spam-cpu.snap" "$1")
	echo "${ours:-0}"
}
tree_pids() { # pid -> that process and every process below it
	local kid
	echo "$1"
	for kid in $(ps -o pid= --ppid "$1"); do tree_pids "$kid"; done
}

# ---- preconditions -------------------------------------------------------------
if [ "$(id -u)" != 0 ]; then
	echo "bench: spam.sh must run as root (a private spamd and rspamd; postern becomes nobody)" >&2
	exit 1
fi
for t in spamd spamc sa-learn rspamd rspamc runuser python3 /usr/bin/time; do
	command -v "$t" >/dev/null || { echo "bench: $t not found (run tools/install-deps.sh)" >&2; exit 1; }
done
[ -x "$POSTERN_BIN" ] || { echo "bench: $POSTERN_BIN not built (make all)" >&2; exit 1; }
[ -f "$SPAM_RULES" ] || { echo "bench: $SPAM_RULES not found (SPAM_RULES=...)" >&2; exit 1; }
[ -d "$SA_RULES_DIR" ] || { echo "bench: $SA_RULES_DIR not found (SA_RULES_DIR=...)" >&2; exit 1; }
if [ ! -d "$SPAM_CORPUS/ham" ] || [ ! -d "$SPAM_CORPUS/spam" ]; then
	echo "bench: $SPAM_CORPUS/ham and /spam not found (SPAM_CORPUS=...)" >&2
	exit 1
fi
# rspamd_ctl.sh reuses a running anchor rspamd; one that is not ours is left alone
if [ -f "$RSPAMD_PIDF" ] && kill -0 "$(cat "$RSPAMD_PIDF")" 2>/dev/null; then
	echo "bench: an anchor rspamd (pid $(cat "$RSPAMD_PIDF"), $RSPAMD_PIDF) is already running; stop it first ($RSPAMD_CTL stop)" >&2
	exit 1
fi

# ---- cleanup: everything started here is stopped by its PID or its own stop command
ST=""
SPAMD_PID=""
RSPAMD_UP=0
RSPAMD_PID=""
DNS_PID=""
PT_PID=""
stop_spamd() { [ -n "$SPAMD_PID" ] && { stop_pid "$SPAMD_PID" 30; rm -f "$SPAMD_PIDF"; SPAMD_PID=""; }; return 0; }
stop_rspamd() { [ "$RSPAMD_UP" = 1 ] && { "$RSPAMD_CTL" stop >/dev/null 2>&1; RSPAMD_UP=0; RSPAMD_PID=""; }; return 0; }
stop_dns() { [ -n "$DNS_PID" ] && { stop_pid "$DNS_PID" 10; wait "$DNS_PID" 2>/dev/null; DNS_PID=""; }; return 0; }
stop_postern() { # SIGTERM to the supervisor; its children die with it (PDEATHSIG)
	local i
	[ -n "$PT_PID" ] || return 0
	kill -TERM "$PT_PID" 2>/dev/null
	for ((i = 0; i < 600; i++)); do kill -0 "$PT_PID" 2>/dev/null || break; sleep 0.1; done
	kill -0 "$PT_PID" 2>/dev/null && { log "postern pid $PT_PID did not stop in 60 s, sending KILL"; kill -KILL "$PT_PID"; }
	wait "$PT_PID" 2>/dev/null
	PT_PID=""
}
cleanup() {
	stop_postern
	stop_spamd
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

# ---- the set and the training messages, in a folder every daemon's user can read
ST=$(mktemp -d "$BENCH_TMP/postern-spambench.XXXXXX")
chmod 755 "$ST"
read -r _ NMSG NHAM NSPAM BYTES _ NTRAIN_HAM NTRAIN_SPAM < <(python3 "$HERE/spam_set.py" "$SPAM_CORPUS" "$ST" "$SPAM_SET_SIZE")
SET="$ST/set"
FILES=("$SET"/[0-9]*.eml)
if [ "${#FILES[@]}" != "${NMSG:-x}" ]; then
	echo "bench: spam_set.py did not write the set (see above)" >&2
	exit 1
fi
# a few training messages to warm the daemons up with (never the set's)
mkdir "$ST/warm"
i=0
for f in $(find "$ST/train/ham" -type f | sort | head -8) $(find "$ST/train/spam" -type f | sort | head -8); do
	i=$((i + 1))
	cp "$f" "$ST/warm/$(printf '%05d' $i)-warm.eml"
done
chmod -R a+rX "$ST"
record "set: $NMSG messages of $SPAM_CORPUS ($NHAM ham, $NSPAM spam, $BYTES bytes; list in $BENCH_OUT/spam-set.tsv); Bayes learns the other $NTRAIN_HAM ham and $NTRAIN_SPAM spam; RUNS=$RUNS"
cp "$ST/set-manifest.tsv" "$BENCH_OUT/spam-set.tsv"
cat "${FILES[@]}" >/dev/null # every system reads them from the page cache

# ---- postern: its configuration, Bayes learned ------------------------------------------
cp "$SPAM_RULES" "$ST/spam-rules.cf"
mkdir "$ST/bayes"
chown nobody "$ST/bayes" # bayes_dir belongs to user; learn (as root) writes as that account
spam_keys() { # the spam keys every postern configuration here has
	cat <<-EOF
		spam_rules_file       = $ST/spam-rules.cf
		spam_rules_dirs       = $SA_RULES_DIR
		bayes_dir             = $ST/bayes
		bayes_autolearn       = no
		# every message gets a score and is passed on: nothing refused or held
		spam_reject_score     = 0
		spam_quarantine_score = 0
	EOF
}
# postern scan keeps its compiled Hyperscan databases in the spool's
# private folder (spool_dir/private/spam-hyperscan.cache), as the scan
# master does: a spool of its own, the folder made as the server makes it
mkdir -p "$ST/spool/private"
chown -R nobody "$ST/spool"
chmod 700 "$ST/spool/private"
{
	echo "# written by bench/spam.sh: postern scan (user and mail_owner for check-config)"
	echo "user       = nobody"
	echo "mail_owner = mail"
	echo "spool_dir  = $ST/spool"
	spam_keys
} >"$ST/scan.conf"
chmod 644 "$ST/scan.conf" "$ST/spam-rules.cf"
# the first load compiles the Hyperscan databases (and caches them)
a=$(now)
"$POSTERN_BIN" check-config -c "$ST/scan.conf" >/dev/null 2>"$ST/check.err" ||
	fail "postern check-config scan.conf: $(grep -v ' warning: spam: ' "$ST/check.err" | head -3)"
PT_FIRST_LOAD=$(secs "$a" "$(now)")
SKIPPED=$(grep -oE 'spam: [^:]+: [0-9]+ rules skipped' "$ST/check.err" | awk '{ n += $(NF-2); f++ } END { printf "%d rules in %d files", n, f }')
NRULES=$(sed -nE 's/.*info: spam: ([0-9]+) rules,.*/\1/p' "$ST/check.err" | head -1)
POSTERN_VERSION=$("$POSTERN_BIN" version 2>/dev/null)
record "postern: ${POSTERN_VERSION:-?}; ${NRULES:-?} spam rules loaded ($(basename "$SPAM_RULES") + $SA_RULES_DIR), skipped from SpamAssassin's files: $SKIPPED (eval: tests postern does not have, regexes PCRE2 cannot take)"
record "postern check-config, the first load (Hyperscan databases compiled into $ST/spool/private/spam-hyperscan.cache): $PT_FIRST_LOAD s; $(grep -oE 'spam: [0-9]+ of [0-9]+ literal-free regexes gated[^;]*' "$ST/check.err" | head -1)"
a=$(now)
"$POSTERN_BIN" learn --ham -c "$ST/scan.conf" "$ST/train/ham" >"$ST/learn-ham.out" 2>"$ST/learn.err" ||
	fail "postern learn --ham: $(tail -2 "$ST/learn.err")"
"$POSTERN_BIN" learn --spam -c "$ST/scan.conf" "$ST/train/spam" >"$ST/learn-spam.out" 2>>"$ST/learn.err" ||
	fail "postern learn --spam: $(tail -2 "$ST/learn.err")"
PT_LEARN_S=$(secs "$a" "$(now)")
record "postern learn: $PT_LEARN_S s; $(tail -1 "$ST/learn-ham.out"); $(tail -1 "$ST/learn-spam.out")"

# ---- SpamAssassin: a private site configuration with its own Bayes store ----------------
SA_SITE="$ST/sa-site"
mkdir -p "$SA_SITE" "$ST/sa-bayes"
cp /etc/spamassassin/*.pre /etc/spamassassin/*.cf "$SA_SITE/"
cat >"$SA_SITE/zz_bench_bayes.cf" <<EOF
# written by bench/spam.sh: a private Bayes store, learned by sa-learn below
use_bayes         1
bayes_path        $ST/sa-bayes/bayes
bayes_file_mode   0770
bayes_auto_learn  0
bayes_auto_expire 0
lock_method       flock
EOF
chown -R debian-spamd "$SA_SITE" "$ST/sa-bayes"
salearn() { runuser -u debian-spamd -- sa-learn -L --siteconfigpath="$SA_SITE" "$@"; }
a=$(now)
salearn --ham "$ST/train/ham" >"$ST/sa-learn.out" 2>&1 || fail "sa-learn --ham: $(tail -2 "$ST/sa-learn.out")"
salearn --spam "$ST/train/spam" >>"$ST/sa-learn.out" 2>&1 || fail "sa-learn --spam: $(tail -2 "$ST/sa-learn.out")"
SA_LEARN_S=$(secs "$a" "$(now)")
# --dump magic: "0.000 0 COUNT 0 non-token data: NAME"
SA_MAGIC=$(salearn --dump magic 2>/dev/null | awk '$NF == "nham" || $NF == "nspam" || $NF == "ntokens" { printf "%s%s %s", (n++ ? ", " : ""), $NF, $3 }')
SA_VERSION=$(spamassassin --version 2>/dev/null | head -1)
record "sa-learn: $SA_LEARN_S s; $(grep -E '^Learned' "$ST/sa-learn.out" | tr '\n' ';') store: $SA_MAGIC; ${SA_VERSION:-SpamAssassin ?}, rules $SA_RULES_DIR ($(find "$SA_RULES_DIR" -maxdepth 1 -name '*.cf' | wc -l) .cf files)"

# ---- spamd: private, local tests only, with that site configuration ----------------------
SPAMD_LOG="$ST/spamd.log"
touch "$SPAMD_LOG"
chown debian-spamd "$SPAMD_LOG"
a=$(now)
if spamd -d -L -x -u debian-spamd -i 127.0.0.1 -p "$SPAMD_BENCH_PORT" -A 127.0.0.1 --siteconfigpath="$SA_SITE" \
	--min-children="$SPAMD_CHILDREN" --max-children="$SPAMD_CHILDREN" --min-spare=1 --max-spare="$SPAMD_CHILDREN" \
	-r "$SPAMD_PIDF" -s "$SPAMD_LOG" && wait_tcp 127.0.0.1 "$SPAMD_BENCH_PORT" 120; then
	SPAMD_PID=$(cat "$SPAMD_PIDF" 2>/dev/null)
	record "spamd: pid $SPAMD_PID, 127.0.0.1:$SPAMD_BENCH_PORT, $SPAMD_CHILDREN children, up in $(secs "$a" "$(now)") s"
else
	SPAMD_PID=$(cat "$SPAMD_PIDF" 2>/dev/null)
	fail "spamd did not start on 127.0.0.1:$SPAMD_BENCH_PORT: $(tail -3 "$SPAMD_LOG" | tr '\n' ' ')"
	stop_spamd
fi

# ---- rspamd: the anchors' (network and Redis modules off, so Bayes off) ---------------------
# Its resolver is 127.0.0.1:53, where nothing listens: each lookup it makes
# (the PTR of the sending IP, when no MTA names the client) would wait for
# the timeout. A stub that refuses every query at once takes that wait away
# (bench/dns_refuse.py); only inside the private namespace.
if [ "${ANCHOR_IN_NETNS:-}" = 1 ]; then
	python3 "$HERE/dns_refuse.py" 127.0.0.1 53 "$ST/dns-count" 2>"$ST/dns.err" &
	DNS_PID=$!
else
	record "note: not in a private network namespace: no DNS stub, rspamd's lookups wait for their timeout"
fi
a=$(now)
if "$RSPAMD_CTL" start 2>"$BENCH_OUT/spam-rspamd.err"; then
	RSPAMD_UP=1
	RSPAMD_PID=$(cat "$RSPAMD_PIDF" 2>/dev/null)
	RSPAMD_VERSION=$(rspamd --version 2>/dev/null | head -1 | sed 's/^Rspamd daemon version /rspamd /')
	record "rspamd: ${RSPAMD_VERSION:-?} ($(command -v rspamd)), main pid $RSPAMD_PID, up in $(secs "$a" "$(now)") s; Bayes off (needs Redis)"
else
	cat "$BENCH_OUT/spam-rspamd.err" >&2
	fail "rspamd (rspamd_ctl.sh start) did not start"
fi

# ---- warm-up: each daemon scores the warm-up messages; postern's start-up alone ----------
[ -n "$SPAMD_PID" ] && python3 "$ANCHORS/pipe_bench.py" "$ST/warm" "$SPAMC_CONC" spamc -x -d 127.0.0.1 -p "$SPAMD_BENCH_PORT" -c >/dev/null
if [ "$RSPAMD_UP" = 1 ]; then
	rspamc -h "$RSPAMD_HOST" -n "$RSPAMC_N" "$ST/warm"/*.eml >/dev/null
	RSPAMD_NORMAL=$(pgrep -c -P "$RSPAMD_PID" -f '^rspamd: normal process')
	record "rspamd: $RSPAMD_NORMAL normal worker(s) (RSPAMD_WORKERS=${RSPAMD_WORKERS:-unset, the package default})"
fi
a=$(now)
"$POSTERN_BIN" scan -c "$ST/scan.conf" "$ST/warm/00001-warm.eml" >/dev/null 2>&1
PT_STARTUP=$(secs "$a" "$(now)")
record "postern scan: start-up (rules compiled, Hyperscan databases read from the cache, Bayes opened) + 1 message: $PT_STARTUP s"

# ---- the rounds ---------------------------------------------------------------------------
# /usr/bin/time: %U and %S = CPU seconds of the client's whole tree (wait4
# counts the reaped descendants); the daemon's tree is added from /proc
TIMEIT=(/usr/bin/time -o "$ST/time" -f '%M %U %S')
run_sys() { # system -> its output on stdout, its exit status(es) on fd 3
	case "$1" in
	postern) "${TIMEIT[@]}" "$POSTERN_BIN" scan -c "$ST/scan.conf" "${FILES[@]}"; echo "rc $?" >&3 ;;
	postern-x2)
		# two processes, one per half of the set, each into its own file
		rm -f "$ST"/x2-*.out
		# shellcheck disable=SC2016 # expanded by that bash
		printf '%s\n' "${FILES[@]}" | "${TIMEIT[@]}" xargs -d '\n' -P 2 -n $(((NMSG + 1) / 2)) \
			bash -c '"$0" scan -c "$1" "${@:3}" >"$2/x2-$$.out"; echo "rc $?" >&3' \
			"$POSTERN_BIN" "$ST/scan.conf" "$ST"
		;;
	spamc)
		# -x: an error is an exit status, not a message passed as clean
		"${TIMEIT[@]}" python3 "$ANCHORS/pipe_bench.py" "$SET" "$SPAMC_CONC" spamc -x -d 127.0.0.1 -p "$SPAMD_BENCH_PORT" -c
		echo "rc $?" >&3
		;;
	rspamc) "${TIMEIT[@]}" rspamc -h "$RSPAMD_HOST" -n "$RSPAMC_N" "${FILES[@]}"; echo "rc $?" >&3 ;;
	esac
}
verdict_kind() { case "$1" in postern*) echo postern ;; *) echo "$1" ;; esac; }
SYSTEMS="postern postern-x2"
[ -n "$SPAMD_PID" ] && SYSTEMS="$SYSTEMS spamc"
[ "$RSPAMD_UP" = 1 ] && SYSTEMS="$SYSTEMS rspamc"
declare -A NAME=(
	[postern]="postern scan (1 process)"
	[postern-x2]="postern scan x2 (xargs -P2)"
	[spamc]="spamc -c (conc $SPAMC_CONC) -> spamd ($SPAMD_CHILDREN children)"
	[rspamc]="rspamc -n $RSPAMC_N -> rspamd (${RSPAMD_NORMAL:-?} normal)"
)
declare -A DAEMON=([spamc]=SPAMD_PID [rspamc]=RSPAMD_PID)
declare -A RATEV=() CPUV=() HAMC=() SPAMC_=() R=() ROUND=() DETAIL=()
spamd_results() { grep -c 'spamd: result: ' "$SPAMD_LOG" 2>/dev/null || true; }
for ((i = 1; i <= RUNS; i++)); do
	for s in $SYSTEMS; do
		out="$BENCH_OUT/spam-out/$s.txt"
		dvar="${DAEMON[$s]:-}"
		dpid="${dvar:+${!dvar}}"
		[ "$s" = spamc ] && n0=$(spamd_results)
		cpu_snap
		a=$(now)
		run_sys "$s" >"$out" 2>"$ST/err" 3>"$ST/rc"
		b=$(now)
		srv=$(daemon_cpu "$dpid")
		note=$(cpu_note "$s")
		[ "$s" = postern-x2 ] && cat "$ST"/x2-*.out >"$out"
		r=$(rate "$NMSG" "$a" "$b")
		read -r _ us ss < <(tail -1 "$ST/time")
		cpu=$(awk -v u="${us:-0}" -v s="${ss:-0}" -v d="$srv" 'BEGIN{printf "%.2f", u + s + d}')
		cpums=$(awk -v c="$cpu" -v n="$NMSG" 'BEGIN{printf "%.3f", 1000*c/n}')
		rcs=$(awk '{printf "%s%s", (NR > 1 ? "," : ""), $2}' "$ST/rc")
		# postern scan: 0 all passed, 1 one blocked (none here: nothing is
		# refused or held), 2 an error; pipe_bench.py and rspamc: 0
		if [ -z "$rcs" ] || grep -qvE '^rc 0$' "$ST/rc"; then
			fail "${NAME[$s]} run$i: exit status $rcs: $(head -2 "$ST/err" | tr '\n' ' ')"
		fi
		read -r scored errs nham hamc nspam spamcalled detail < <(python3 "$HERE/spam_verdicts.py" "$(verdict_kind "$s")" "$out" "$NMSG")
		if [ "${scored:-0}" != "$NMSG" ] || [ "${errs:-1}" != 0 ]; then
			fail "${NAME[$s]} run$i: scored ${scored:-0} of $NMSG messages, ${errs:-?} errors ($detail)"
		fi
		if [ "$((${hamc:-0} + ${spamcalled:-0}))" = 0 ]; then
			fail "${NAME[$s]} run$i: called no message spam: it did not score (see $out)"
		fi
		if [ "$s" = spamc ]; then
			n1=$(spamd_results)
			[ "$((n1 - n0))" = "$NMSG" ] || fail "spamd logged $((n1 - n0)) results in run$i, not $NMSG"
		fi
		RATEV[$s]="${RATEV[$s]:-} $r"; CPUV[$s]="${CPUV[$s]:-} $cpums"
		HAMC[$s]="${HAMC[$s]:-} ${hamc:-NA}"; SPAMC_[$s]="${SPAMC_[$s]:-} ${spamcalled:-NA}"
		DETAIL[$s]="$detail"
		R[$s]=$r
		record "${NAME[$s]} run$i: $r msg/s ($(secs "$a" "$b") s), CPU $cpu s = $cpums ms/msg (daemon's share $srv s), exit $rcs; scored $scored, called spam: ham $hamc/$nham, spam $spamcalled/$nspam; $detail; $note"
	done
	for p in postern/rspamc postern-x2/rspamc postern/spamc postern-x2/spamc; do
		[ -n "${R[${p#*/}]:-}" ] || continue
		ROUND[$p]="${ROUND[$p]:-} $(ratio "${R[${p%/*}]}" "${R[${p#*/}]}")"
	done
done
[ -f "$ST/dns-count" ] || [ -z "$DNS_PID" ] || kill -0 "$DNS_PID" 2>/dev/null || fail "the DNS stub died: $(head -2 "$ST/dns.err")"
# the messages spamd scored with Bayes (its result lines carry bayes=P when it ran)
SA_BAYES=$(grep 'spamd: result: ' "$SPAMD_LOG" 2>/dev/null | tail -n "$NMSG" | grep -cE 'bayes=[0-9.]+' || true)

# ---- the daemons' memory after their runs, then stop them ------------------------------------
mem_rows() { # title pid... -> "title n sum_hwm max_hwm sum_pss" and one line per process to the record
	local title="$1" p line h s n=0 sh=0 mx=0 sp=0
	shift
	for p in "$@"; do
		line=$(mem_of "$p")
		[ -n "$line" ] || continue
		h=$(sed -nE 's/.*VmHWM:=([0-9]+).*/\1/p' <<<"$line")
		s=$(sed -nE 's/.*Pss:=([0-9]+).*/\1/p' <<<"$line")
		echo "  $title pid $p $(tr '\0' ' ' <"/proc/$p/cmdline" 2>/dev/null | cut -c1-50): $line" >>"$RAW"
		n=$((n + 1)); sh=$((sh + ${h:-0})); sp=$((sp + ${s:-0}))
		[ "${h:-0}" -gt "$mx" ] && mx=${h:-0}
	done
	echo "$title $n $sh $mx $sp"
}
declare -A MEM=()
if [ -n "$SPAMD_PID" ]; then
	# shellcheck disable=SC2046 # a list of PIDs
	MEM[spamd]=$(mem_rows spamd $(tree_pids "$SPAMD_PID"))
	stop_spamd
fi
if [ "$RSPAMD_UP" = 1 ]; then
	# shellcheck disable=SC2046 # a list of PIDs
	MEM[rspamd]=$(mem_rows rspamd $(tree_pids "$RSPAMD_PID"))
	stop_rspamd
fi
stop_dns
[ -f "$ST/dns-count" ] && record "DNS stub: refused $(cat "$ST/dns-count") queries (rspamd's lookups) over the whole run"

# ---- postern's scanners with these rules: a real server gets the set over SMTP -----------------
SRV="$ST/server"
mkdir "$SRV"
chmod 755 "$SRV"
{
	echo "# written by bench/spam.sh: a real server, for its scanners' memory"
	echo "hostname      = mx.example.test"
	echo "listen        = 127.0.0.1:$SPAM_SMTP_PORT"
	echo "spool_dir     = spool"
	echo "mail_root     = mail"
	echo "local_domains = example.org"
	echo "users_file    = users"
	echo "mynetworks    = 127.0.0.0/8"
	echo "user          = nobody"
	echo "mail_owner    = mail"
	echo "workers       = 0"
	spam_keys
} >"$SRV/postern.conf"
echo "rcpt@example.org:{PLAIN}bench::::::" >"$SRV/users" # smtp_replay.py's recipient
chmod 600 "$SRV/users"
MD="$SRV/mail/example.org/rcpt/Maildir"
log_role() { grep -m1 -oE "postern/[a-z]+\[$1\]" "$PT_LOG" 2>/dev/null | sed -E 's#postern/([a-z]+).*#\1#'; }
postern_tree() { # "role pid" of every process below the supervisor; scanners log as their master
	local kid gk role r
	for kid in $(ps -o pid= --ppid "$PT_PID"); do
		role=$(log_role "$kid")
		echo "${role:-unknown} $kid"
		for gk in $(ps -o pid= --ppid "$kid"); do
			if [ "$role" = scan ]; then r=scanner; else r=$(log_role "$gk"); fi
			echo "${r:-unknown} $gk"
		done
	done
}
pt_ready() { # timeout_s: every smtp worker, the queue manager and the scan master up
	local i
	for ((i = 0; i < $1 * 10; i++)); do
		if [ "$(grep -c 'smtp worker ready' "$PT_LOG")" -ge "$(nproc)" ] && grep -q 'queue manager started' "$PT_LOG" &&
			grep -q 'scan master ready' "$PT_LOG"; then
			sleep 0.5
			return 0
		fi
		kill -0 "$PT_PID" 2>/dev/null || return 1
		sleep 0.1
	done
	return 1
}
PT_ROWS=""
if ! "$POSTERN_BIN" check-config -c "$SRV/postern.conf" >/dev/null 2>"$ST/check-server.err"; then
	fail "postern server check-config: $(grep -v ' warning: spam: ' "$ST/check-server.err" | head -3)"
else
	"$POSTERN_BIN" serve -c "$SRV/postern.conf" 2>"$PT_LOG" &
	PT_PID=$!
	if wait_tcp 127.0.0.1 "$SPAM_SMTP_PORT" 60 && pt_ready 120; then
		j=$(python3 "$ANCHORS/smtp_replay.py" 127.0.0.1 "$SPAM_SMTP_PORT" "$ST/set-crlf" "$SMTP_CONC")
		record "postern server (pid $PT_PID) got the set over SMTP, conc $SMTP_CONC: $j"
		n250=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["codes"].get("250", 0))' "$j" 2>/dev/null)
		[ "${n250:-0}" = "$NMSG" ] || fail "postern server accepted ${n250:-0} of $NMSG messages ($j)"
		read -r cnt _ < <(python3 "$HERE/maildir_wait.py" "$MD/new" "$NMSG" "$STALL")
		[ "${cnt:-0}" = "$NMSG" ] || fail "postern server delivered ${cnt:-0} of $NMSG messages"
		# every delivered message carries the score its scanner gave
		scored=$(grep -l '^X-Spam-Status: ' "$MD"/new/* 2>/dev/null | wc -l)
		tagged=$(grep -l '^X-Spam-Flag: YES' "$MD"/new/* 2>/dev/null | wc -l)
		record "postern server: $cnt delivered, $scored with X-Spam-Status, $tagged with X-Spam-Flag: YES"
		[ "$scored" = "$NMSG" ] || fail "postern server: $scored of $NMSG delivered messages carry X-Spam-Status"
		PT_ROWS=$({ echo "supervisor $PT_PID"; postern_tree; } | while read -r role pid; do
			line=$(mem_of "$pid")
			[ -n "$line" ] || continue
			echo "$role $pid $(sed -nE 's/.*VmHWM:=([0-9]+).*/\1/p' <<<"$line") $(sed -nE 's/.*VmRSS:=([0-9]+).*/\1/p' <<<"$line") $(sed -nE 's/.*Pss:=([0-9]+).*/\1/p' <<<"$line")"
		done)
		while read -r l; do echo "  postern $l"; done <<<"$PT_ROWS" >>"$RAW"
		PT_ISSUES=$(grep -E ': (warning|error|fatal|panic): ' "$PT_LOG" | grep -vcE 'warning: spam: .*rules skipped' || true)
		[ "$PT_ISSUES" = 0 ] || fail "postern server logged $PT_ISSUES warning/error lines besides the skipped-rules summary (see $PT_LOG)"
	else
		fail "postern server did not start on 127.0.0.1:$SPAM_SMTP_PORT (see $PT_LOG)"
		tail -5 "$PT_LOG" | sed 's/^/    /' | tee -a "$RAW" >&2
	fi
	stop_postern
fi
pt_sum() { # role-regex -> "n sum_hwm max_hwm sum_pss sum_rss"
	awk -v re="$1" '$1 ~ re { n++; h += $3; if ($3 > m) m = $3; p += $5; r += $4 } END { printf "%d %d %d %d %d\n", n, h, m, p, r }' <<<"$PT_ROWS"
}
read -r SCAN_N SCAN_HWM SCAN_MAX SCAN_PSS _ < <(pt_sum '^(scan|scanner)$')
read -r ALL_N ALL_HWM ALL_MAX ALL_PSS _ < <(pt_sum '.')
read -r _ RS_N RS_HWM RS_MAX RS_PSS <<<"${MEM[rspamd]:-x 0 0 0 0}"
read -r _ SD_N SD_HWM SD_MAX SD_PSS <<<"${MEM[spamd]:-x 0 0 0 0}"

# ---- table ------------------------------------------------------------------------------------
target() { # ratio op limit -> met / NOT met
	isnum "${1:-}" || { echo "not measured"; return; }
	awk -v r="$1" -v l="$3" -v op="$2" 'BEGIN{ ok = (op == ">=" ? r >= l : r < l); print (ok ? "met" : "NOT met") }'
}
row() { printf '%-44s | %8s | %8s | %8s | %10s | %14s | %14s\n' "$@"; }
mrow() { printf '%-44s | %5s | %11s | %11s | %11s\n' "$@"; }
# shellcheck disable=SC2086 # space-separated lists of numbers
{
	RS_RATE=$(med ${RATEV[rspamc]:-})
	SD_RATE=$(med ${RATEV[spamc]:-})
	echo "spam scoring: postern scan vs spamd and rspamd, $(date -u +%F) - $MACHINE"
	echo "set: $NMSG messages of $SPAM_CORPUS ($NHAM ham, $NSPAM spam, $(awk -v b="$BYTES" 'BEGIN{printf "%.1f", b/1e6}') MB);" \
		"Bayes learned the other $NTRAIN_HAM ham + $NTRAIN_SPAM spam (postern learn $PT_LEARN_S s, sa-learn $SA_LEARN_S s);" \
		"median of $RUNS rounds, each round runs every system once; netns=${ANCHOR_IN_NETNS:-no}"
	echo "postern: ${POSTERN_VERSION:-?}, $(basename "$SPAM_RULES") + $SA_RULES_DIR (${NRULES:-?} rules; skipped $SKIPPED) + Bayes;" \
		"SpamAssassin: ${SA_VERSION:-?}, spamd -L (local tests only) + Bayes ($SA_MAGIC; Bayes ran on $SA_BAYES of the last round's $NMSG);" \
		"rspamd: ${RSPAMD_VERSION:-?}, the anchors' configuration (network and Redis modules off): Bayes OFF (it needs Redis) - less work per message, in rspamd's favour"
	echo "time = the whole client command (postern scan: its start-up included, ${PT_STARTUP} s with one message; the daemons were started and warmed up before)"
	echo
	row "system" "msgs/s" "/rspamd" "/spamd" "CPU ms/msg" "ham called spam" "spam called spam"
	row "--------------------------------------------" "--------" "--------" "--------" "----------" "--------------" "--------------"
	for s in postern postern-x2 spamc rspamc; do
		[ -n "${RATEV[$s]:-}" ] || { row "${NAME[$s]}" "NA" "-" "-" "-" "-" "-"; continue; }
		m=$(med ${RATEV[$s]})
		row "${NAME[$s]}" "$m" "$(ratio "$m" "$RS_RATE")" "$(ratio "$m" "$SD_RATE")" "$(MED_DIGITS=3 med ${CPUV[$s]})" \
			"$(echo ${HAMC[$s]} | tr ' ' ',')/$NHAM" "$(echo ${SPAMC_[$s]} | tr ' ' ',')/$NSPAM"
	done
	echo "  (ratio columns: ratio of the medians; CPU ms/msg = user+sys of the client's process tree plus the daemon's" \
		"tree during the run, per message, median: less disturbed by other load than the rates; called spam, per round:" \
		"postern score >= 5, spamc exit 1 (score >= 5), rspamd an action other than \"no action\" (greylist from 4))"
	[ -n "${DETAIL[rspamc]:-}" ] && echo "  rspamd, last round: ${DETAIL[rspamc]}"
	if [ -n "${CPUV[rspamc]:-}" ]; then
		c1=$(MED_DIGITS=3 med ${CPUV[postern]}); c2=$(MED_DIGITS=3 med ${CPUV[rspamc]})
		echo "  CPU per message, postern scan (1 process) / rspamd: $(ratio "$c1" "$c2") ($c1 / $c2 ms; postern's includes its start-up," \
			"$(awk -v s="$PT_STARTUP" -v n="$NMSG" 'BEGIN{printf "%.2f", 1000*s/n}') ms per message here): the steadier comparison;" \
			"at equal cores, twice rspamd's rate needs at most 0.5"
	fi
	for p in postern/rspamc postern-x2/rspamc postern/spamc postern-x2/spamc; do
		[ -n "${ROUND[$p]:-}" ] || continue
		rr=$(MED_DIGITS=3 med ${ROUND[$p]})
		case "$p" in
		*/rspamc) echo "  ${NAME[${p%/*}]} / rspamd per round:${ROUND[$p]} -> median $rr; target >= 2.0: $(target "$rr" ">=" 2.0)" ;;
		*) echo "  ${NAME[${p%/*}]} / spamd per round:${ROUND[$p]} -> median $rr" ;;
		esac
	done
	echo
	echo "resident memory (kB) after scoring the set: postern's server after $NMSG messages over SMTP" \
		"(conc $SMTP_CONC) with the same spam configuration; rspamd's and spamd's processes after their runs"
	mrow "processes" "n" "VmHWM sum" "VmHWM max" "Pss sum"
	mrow "--------------------------------------------" "-----" "-----------" "-----------" "-----------"
	if [ -n "$PT_ROWS" ]; then
		while read -r role pid h _ p; do
			case "$role" in scan | scanner) mrow "postern $role (pid $pid)" 1 "$h" "$h" "$p" ;; esac
		done <<<"$PT_ROWS"
		mrow "postern scan master + scanners" "$SCAN_N" "$SCAN_HWM" "$SCAN_MAX" "$SCAN_PSS"
		mrow "postern, every process" "$ALL_N" "$ALL_HWM" "$ALL_MAX" "$ALL_PSS"
	fi
	[ -n "${MEM[rspamd]:-}" ] && mrow "rspamd, every process" "$RS_N" "$RS_HWM" "$RS_MAX" "$RS_PSS"
	[ -n "${MEM[spamd]:-}" ] && mrow "spamd, every process" "$SD_N" "$SD_HWM" "$SD_MAX" "$SD_PSS"
	if [ -n "$PT_ROWS" ] && [ -n "${MEM[rspamd]:-}" ]; then
		r=$(ratio "$SCAN_PSS" "$RS_PSS")
		echo "  postern scan master + scanners / rspamd: Pss $r (target < 0.5: $(target "$r" "<" 0.5)), VmHWM sum $(ratio "$SCAN_HWM" "$RS_HWM"), largest process $(ratio "$SCAN_MAX" "$RS_MAX"); every postern process / rspamd: Pss $(ratio "$ALL_PSS" "$RS_PSS")"
	fi
	if [ -n "$PT_ROWS" ] && [ -n "${MEM[spamd]:-}" ]; then
		echo "  postern scan master + scanners / spamd: Pss $(ratio "$SCAN_PSS" "$SD_PSS"), VmHWM sum $(ratio "$SCAN_HWM" "$SD_HWM"), largest process $(ratio "$SCAN_MAX" "$SD_MAX")"
	fi
	echo "  (Pss = resident memory with the pages shared between processes split among them: what the group costs;" \
		"VmHWM = peak resident set of each process, shared pages counted in each)"
	echo
	if ((${#FAILS[@]})); then
		echo "RESULT: FAILED"
		printf '  - %s\n' "${FAILS[@]}"
	else
		echo "RESULT: ok (every system scored all $NMSG messages in every round; the postern server accepted, scored and delivered the set)"
	fi
	awk -v n="$(nproc)" '{ s = ($(NF-2) + $(NF-1)) / ($NF * n); if (s > mx) mx = s; o += $(NF-2); st += $(NF-1); w += $NF }
		END { if (w == 0) exit
		      printf "measured windows: %.0f s; other processes took %.1f CPU-s, hypervisor steal %.1f CPU-s (%.1f%% of the CPUs), worst window %.0f%%\n", w, o, st, 100*(o+st)/(w*n), 100*mx
		      if (mx > 0.05) print "WARNING: the machine was not quiet; windows with a high share in spam-raw.txt are skewed" }' "$OTHER"
	echo "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg) (at the start: $LOAD0)"
	echo "total time $(secs "$T0" "$(now)") s; per-run details: $RAW"
} >"$RESULTS"
cat "$RESULTS"
cat "$RESULTS" >>"$RAW"
((${#FAILS[@]} == 0))

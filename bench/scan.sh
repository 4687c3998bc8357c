#!/bin/bash
# bench/scan.sh - "make bench", second part: offline scanning. `postern
# scan` against ClamAV's own tools, with the same signatures (the anchors'
# /var/lib/clamav) on the same messages (the anchors' 600-message set),
# measured in the same run, reported as ratios. Each round runs every tool
# once, one after the other, so a slow spell of the machine hits all alike:
#   * postern scan, antivirus only    (a config with just clamav_db_dir)
#   * postern scan, rules + antivirus (plus the shipped content rules)
#   * postern scan x2                 (rules + antivirus, the set split in
#                                      two halves, 2 processes: xargs -P2)
#   * clamscan -d /var/lib/clamav     (one process, loads the signatures)
#   * clamdscan --multiscan --fdpass  (a private clamd, its threads on
#                                      both cores: the target)
#   * clamdscan --stream              (one INSTREAM after the other)
# Each tool must find exactly the messages that carry EICAR (the set's
# manifest), no more, no fewer, in every run. See bench/README.md.
#
# Knobs (environment): RUNS=3 (rounds; medians reported), BENCH_TMP=/var/tmp
# (the temporary folder of the configs and the copy of the set),
# KEEP_TMP=1, POSTERN_BIN=build/postern, SCAN_RULES=etc/content-rules.example,
# ANCHORS=../shared/anchors, ANCHOR_NETNS=0, CLAMD_THREADS (clamd_ctl.sh's,
# default 12).
# Output: the table on stdout and in build/bench/scan-results.txt, per-run
# lines in build/bench/scan-raw.txt, each tool's output of the last round in
# build/bench/scan-out/.
# Exit status: 0 = every tool measured and every run found exactly the
# EICAR messages; 1 otherwise. The speed target missed does not fail it.
set -u -o pipefail

# shellcheck source=bench/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh" # REPO, ANCHORS, BENCH_OUT, common.sh; a private network namespace

POSTERN_BIN="${POSTERN_BIN:-$REPO/build/postern}"
# Where libclamav unpacks, the same for every tool: postern's default
# (clamav_temp_dir: the tmpfs /dev/shm); clamscan and clamd read TMPDIR.
export TMPDIR="${TMPDIR:-/dev/shm}"
SCAN_RULES="${SCAN_RULES:-$REPO/etc/content-rules.example}"
CLAMAV_DB=/var/lib/clamav # clamd_ctl.sh's DatabaseDirectory
BENCH_TMP="${BENCH_TMP:-/var/tmp}"
HERE="$REPO/bench"
CLAMD_CTL="$ANCHORS/clamd_ctl.sh"
CLAMD_CONF="$ANCHOR_OUT/conf/clamd-anchor.conf"
CLAMD_PIDF=/run/clamav/clamd-anchor.pid

mkdir -p "$BENCH_OUT/scan-out"
RAW="$BENCH_OUT/scan-raw.txt"
RESULTS="$BENCH_OUT/scan-results.txt"
OTHER="$BENCH_OUT/scan-other-cpu.txt"
: >"$RAW"
: >"$OTHER"
T0=$(now)
FAILS=()
fail() { FAILS+=("$*"); log "FAIL: $*"; }
record() { echo "$*" | tee -a "$RAW" >&2; }
isnum() { [[ "${1:-}" =~ ^[0-9]+(\.[0-9]+)?$ ]]; }
ratio() { if isnum "${1:-}" && isnum "${2:-}" && [ "$2" != 0 ]; then awk -v a="$1" -v b="$2" 'BEGIN{printf "%.3f", a/b}'; else echo "-"; fi; }
med() { # median of the numeric arguments, $MED_DIGITS decimals for an even count
	printf '%s\n' "$@" | grep -E '^[0-9]+(\.[0-9]+)?$' | sort -g | awk -v d="${MED_DIGITS:-1}" '{ a[NR] = $1 }
		END { if (NR == 0) print "NA"; else if (NR % 2) print a[(NR + 1) / 2]; else printf "%.*f\n", d, (a[NR / 2] + a[NR / 2 + 1]) / 2 }'
}
# CPU that other processes and other guests took in a window (cpu_acct.py)
cpu_snap() { python3 "$HERE/cpu_acct.py" snap "$BENCH_OUT/scan-cpu.snap"; }
cpu_note() { # label
	local wall other steal
	# shellcheck disable=SC2086 # clamd's PID may be empty
	read -r wall _ _ other steal < <(python3 "$HERE/cpu_acct.py" diff "$BENCH_OUT/scan-cpu.snap" $$ ${CLAMD_PID:-})
	echo "$1 ${other:-0} ${steal:-0} ${wall:-1}" >>"$OTHER"
	awk -v o="${other:-0}" -v s="${steal:-0}" -v w="${wall:-1}" -v n="$(nproc)" \
		'BEGIN{printf "other processes %.1f CPU-s, steal %.1f CPU-s (%.0f%% of the CPUs)", o, s, 100*(o+s)/(w*n)}'
}

# ---- preconditions -------------------------------------------------------------
if [ "$(id -u)" != 0 ]; then
	echo "bench: scan.sh must run as root (a private clamd; postern scan becomes nobody)" >&2
	exit 1
fi
for t in clamscan clamdscan clamd python3 /usr/bin/time; do
	command -v "$t" >/dev/null || { echo "bench: $t not found (run tools/install-deps.sh)" >&2; exit 1; }
done
[ -x "$POSTERN_BIN" ] || { echo "bench: $POSTERN_BIN not built (make all)" >&2; exit 1; }
[ -f "$SCAN_RULES" ] || { echo "bench: $SCAN_RULES not found" >&2; exit 1; }
[ -f "$CLAMAV_DB/anchor-custom.ndb" ] || "$ANCHORS/clamav_db.sh" >&2 || exit 1

# ---- cleanup: the private clamd by its own stop command, the folder -------------
CLAMD_UP=0
CLAMD_PID=""
ST=""
cleanup() {
	[ "$CLAMD_UP" = 1 ] && "$CLAMD_CTL" stop >/dev/null 2>&1
	if [ -n "$ST" ] && [ -d "$ST" ]; then
		if [ "${KEEP_TMP:-0}" = 1 ]; then log "kept $ST"; else rm -rf "$ST"; fi
	fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---- the set: the 600 messages, alone in a folder (clamdscan --multiscan
# takes a folder; the anchors' msgs/ also holds ref-4k.eml and manifest.tsv)
ensure_msgs
ST=$(mktemp -d "$BENCH_TMP/postern-scanbench.XXXXXX")
chmod 755 "$ST"
SET="$ST/set"
mkdir "$SET"
cp "$MSGS"/[0-9]*.eml "$SET"/
chmod -R a+rX "$SET" # clamd runs as clamav
FILES=("$SET"/[0-9]*.eml)
NMSG=${#FILES[@]}
BYTES=$(cat "${FILES[@]}" | wc -c)
awk -F'\t' 'NR > 1 && $2 == "eicar" { print $1 }' "$MSGS/manifest.tsv" | sort >"$ST/expected-infected"
NINF=$(wc -l <"$ST/expected-infected")

# the configurations of postern scan
cat >"$ST/av.conf" <<-EOF
	# written by bench/scan.sh: antivirus only (user and mail_owner only
	# for check-config: postern scan becomes user and delivers nothing)
	user          = nobody
	mail_owner    = mail
	clamav_db_dir = $CLAMAV_DB
	clamav_temp_dir = $TMPDIR
EOF
cp "$SCAN_RULES" "$ST/content-rules.example"
chmod 644 "$ST/content-rules.example" "$ST/av.conf"
cat >"$ST/full.conf" <<-EOF
	# written by bench/scan.sh: the shipped content rules + antivirus
	user               = nobody
	mail_owner         = mail
	content_rules_file = content-rules.example
	clamav_db_dir      = $CLAMAV_DB
	clamav_temp_dir    = $TMPDIR
EOF
chmod 644 "$ST/full.conf"
for c in av full; do
	"$POSTERN_BIN" check-config -c "$ST/$c.conf" >/dev/null 2>"$ST/check-$c.err" ||
		fail "postern check-config $c.conf: $(head -3 "$ST/check-$c.err")"
done

# ---- the private clamd with the same signatures ------------------------------------
if "$CLAMD_CTL" start 2>"$BENCH_OUT/scan-clamd.err"; then
	CLAMD_UP=1
	CLAMD_PID=$(cat "$CLAMD_PIDF" 2>/dev/null)
	record "clamd: $(tail -1 "$BENCH_OUT/scan-clamd.err" | sed 's/^\[[^]]*\] //')"
else
	cat "$BENCH_OUT/scan-clamd.err" >&2
	fail "clamd (clamd_ctl.sh start) did not start"
fi

MACHINE="$(nproc) CPU ($(lscpu 2>/dev/null | sed -nE 's/^Model name: +//p' | head -1)), $(awk '/MemTotal/{printf "%.0f GiB RAM", $2/1048576}' /proc/meminfo), kernel $(uname -r)"
LOAD0=$(cut -d' ' -f1-3 /proc/loadavg)
CLAMAV_VERSION=$(clamscan --version 2>/dev/null | cut -d/ -f1)
POSTERN_VERSION=$("$POSTERN_BIN" version 2>/dev/null)
record "machine: $MACHINE; date $(date -u +%FT%TZ); load average at start $LOAD0"
record "set: $NMSG messages, $BYTES bytes, $NINF with EICAR (manifest); signatures: $(find "$CLAMAV_DB" -maxdepth 1 -type f -printf '%f ' | sed 's/ $//') in $CLAMAV_DB; $CLAMAV_VERSION; RUNS=$RUNS"
cat "${FILES[@]}" >/dev/null # every tool reads them from the page cache

# ---- the tools ----------------------------------------------------------------------
# Each prints its verdicts on stdout; a tool's "infected" messages are the
# lines naming a virus: "FILE: reject ... reason=virus ..." (postern scan),
# "FILE: NAME FOUND" (clamscan, clamdscan).
# /usr/bin/time: %M is the peak RSS of the largest process of the command's
# tree (wait4 gives the maximum over the reaped descendants too), %U and %S
# the CPU seconds of the whole tree
TIMEIT=(/usr/bin/time -o "$ST/time" -f '%M %U %S')
TICK=$(getconf CLK_TCK)
clamd_ticks() { # CPU ticks clamd (all its threads) used so far
	if [ -n "$CLAMD_PID" ] && [ -r "/proc/$CLAMD_PID/stat" ]; then
		sed -E 's/^.*\) //' "/proc/$CLAMD_PID/stat" | awk '{ print $12 + $13 + $14 + $15 }'
	else
		echo 0
	fi
}
run_tool() { # tool -> its verdicts on stdout, its exit status(es) on fd 3
	case "$1" in
	postern-av) "${TIMEIT[@]}" "$POSTERN_BIN" scan -c "$ST/av.conf" "${FILES[@]}"; echo "rc $?" >&3 ;;
	postern-full) "${TIMEIT[@]}" "$POSTERN_BIN" scan -c "$ST/full.conf" "${FILES[@]}"; echo "rc $?" >&3 ;;
	postern-x2)
		# xargs -P2: two processes at once, one per half of the set; each
		# writes its own verdicts file (block-buffered output of two
		# processes into one file could split lines) and reports its own
		# exit status (xargs would merge 1 and 2 into 123)
		rm -f "$ST"/x2-*.out
		# shellcheck disable=SC2016 # expanded by that bash
		printf '%s\n' "${FILES[@]}" | "${TIMEIT[@]}" xargs -d '\n' -P 2 -n $(((NMSG + 1) / 2)) \
			bash -c '"$0" scan -c "$1" "${@:3}" >"$2/x2-$$.out"; echo "rc $?" >&3' \
			"$POSTERN_BIN" "$ST/full.conf" "$ST"
		;;
	clamscan) "${TIMEIT[@]}" clamscan --no-summary -d "$CLAMAV_DB" "${FILES[@]}"; echo "rc $?" >&3 ;;
	multiscan)
		"${TIMEIT[@]}" clamdscan --config-file="$CLAMD_CONF" --no-summary --multiscan --fdpass "$SET"
		echo "rc $?" >&3
		;;
	stream)
		"${TIMEIT[@]}" clamdscan --config-file="$CLAMD_CONF" --no-summary --stream "${FILES[@]}"
		echo "rc $?" >&3
		;;
	esac
}
infected_of() { # tool output-file -> sorted basenames of the infected messages
	case "$1" in
	postern-*) sed -nE 's#^.*/([^/]+): reject .*reason=virus.*#\1#p' "$2" ;;
	*) sed -nE 's#^.*/([^/:]+): .* FOUND$#\1#p' "$2" ;;
	esac | sort
}
TOOLS="postern-av postern-full postern-x2 clamscan multiscan stream"
[ "$CLAMD_UP" = 1 ] || TOOLS="postern-av postern-full postern-x2 clamscan"
declare -A NAME=(
	[postern-av]="postern scan, antivirus only"
	[postern-full]="postern scan, rules + antivirus"
	[postern-x2]="postern scan x2 (xargs -P2), rules + av"
	[clamscan]="clamscan -d $CLAMAV_DB"
	[multiscan]="clamdscan --multiscan --fdpass"
	[stream]="clamdscan --stream (sequential)"
)
declare -A RATEV=() MBV=() RSSV=() CPUV=() INF=() RULEREF=() ROUND_RATIO=() STARTUP=() R=()

# start-up cost of the tools that load the signatures themselves: one small file
for t in postern-av postern-full clamscan; do
	a=$(now)
	case "$t" in
	postern-av) "$POSTERN_BIN" scan -c "$ST/av.conf" "$MSGS/ref-4k.eml" >/dev/null 2>&1 ;;
	postern-full) "$POSTERN_BIN" scan -c "$ST/full.conf" "$MSGS/ref-4k.eml" >/dev/null 2>&1 ;;
	clamscan) clamscan --no-summary -d "$CLAMAV_DB" "$MSGS/ref-4k.eml" >/dev/null 2>&1 ;;
	esac
	b=$(now)
	STARTUP[$t]=$(awk -v a="$a" -v b="$b" 'BEGIN{printf "%.3f", b-a}')
	record "${NAME[$t]}: start-up + 1 small file ${STARTUP[$t]} s"
done

for ((i = 1; i <= RUNS; i++)); do
	for t in $TOOLS; do
		out="$BENCH_OUT/scan-out/$t.txt"
		cpu_snap
		k0=$(clamd_ticks)
		a=$(now)
		run_tool "$t" >"$out" 2>"$ST/err" 3>"$ST/rc"
		b=$(now)
		k1=$(clamd_ticks)
		[ "$t" = postern-x2 ] && cat "$ST"/x2-*.out >"$out"
		note=$(cpu_note "$t")
		secs=$(awk -v a="$a" -v b="$b" 'BEGIN{printf "%.3f", b-a}')
		r=$(rate "$NMSG" "$a" "$b")
		mb=$(awk -v n="$BYTES" -v s="$secs" 'BEGIN{printf "%.1f", n/1e6/s}')
		read -r rss us ss < <(tail -1 "$ST/time")
		# CPU: the command's tree (time) + what clamd spent meanwhile
		cpu=$(awk -v u="$us" -v s="$ss" -v k="$((k1 - k0))" -v t="$TICK" 'BEGIN{printf "%.2f", u + s + k/t}')
		cpums=$(awk -v c="$cpu" -v n="$NMSG" 'BEGIN{printf "%.3f", 1000*c/n}')
		RATEV[$t]="${RATEV[$t]:-} $r"; MBV[$t]="${MBV[$t]:-} $mb"; RSSV[$t]="${RSSV[$t]:-} $rss"; CPUV[$t]="${CPUV[$t]:-} $cpums"
		R[$t]=$r
		# exit status: 0 clean, 1 a virus (or a refusal) found - expected here; 2 an error
		rcs=$(awk '{printf "%s%s", (NR > 1 ? "," : ""), $2}' "$ST/rc")
		if [ -z "$rcs" ] || grep -qvE '^rc [01]$' "$ST/rc"; then
			fail "${NAME[$t]} run$i: exit status $rcs (2 = an error): $(head -2 "$ST/err" | tr '\n' ' ')"
		fi
		infected_of "$t" "$out" >"$ST/found"
		n=$(wc -l <"$ST/found")
		INF[$t]="${INF[$t]:-} $n"
		if ! cmp -s "$ST/found" "$ST/expected-infected"; then
			fail "${NAME[$t]} run$i: found $n infected, not the $NINF EICAR messages: $(comm -3 "$ST/found" "$ST/expected-infected" | tr -d '\t' | head -5 | tr '\n' ' ')"
		fi
		case "$t" in postern-*)
			k=$(grep -cE ': reject .*reason=' "$out")
			RULEREF[$t]=$((k - n))
			[ "$k" -gt "$n" ] && record "  ${NAME[$t]} run$i: $((k - n)) messages refused by a content rule: $(grep -E ': reject ' "$out" | grep -v 'reason=virus' | head -3 | tr '\n' ' ')"
			;;
		esac
		record "${NAME[$t]} run$i: $r msg/s, $mb MB/s ($secs s, $(awk -v s="$secs" -v n="$NMSG" 'BEGIN{printf "%.2f", 1000*s/n}') ms/msg), CPU $cpu s = $cpums ms/msg (clamd's share $(awk -v k="$((k1 - k0))" -v t="$TICK" 'BEGIN{printf "%.2f", k/t}') s), peak RSS $rss kB, exit $rcs, infected $n; $note"
	done
	[ -n "${R[multiscan]:-}" ] && for t in postern-av postern-full postern-x2; do
		ROUND_RATIO[$t]="${ROUND_RATIO[$t]:-} $(ratio "${R[$t]}" "${R[multiscan]}")"
	done
done

# ---- memory of clamd, TMPDIRs ---------------------------------------------------------
tmpdir_env() { # pid|"" -> TMPDIR of that process ("" = this shell's)
	local t
	if [ -n "$1" ]; then t=$(tr '\0' '\n' <"/proc/$1/environ" 2>/dev/null | sed -n 's/^TMPDIR=//p'); else t="${TMPDIR:-}"; fi
	echo "${t:-unset, so /tmp}"
}
CLAMD_MEM=""
if [ "$CLAMD_UP" = 1 ]; then
	CLAMD_MEM=$(mem_of "$CLAMD_PID")
	CLAMD_TMP=$(sed -nE 's/^TemporaryDirectory +//p' "$CLAMD_CONF")
	CLAMD_TMP="${CLAMD_TMP:+TemporaryDirectory $CLAMD_TMP}"
	CLAMD_TMP="${CLAMD_TMP:-no TemporaryDirectory in its config; its TMPDIR: $(tmpdir_env "$CLAMD_PID")}"
	record "clamd after the runs: $CLAMD_MEM; temporary files: $CLAMD_TMP"
	"$CLAMD_CTL" stop >/dev/null 2>&1
	CLAMD_UP=0
fi
OWN_TMP=$(tmpdir_env "")

# ---- table ---------------------------------------------------------------------------
row() { printf '%-42s | %8s | %7s | %8s | %10s | %11s | %13s | %8s\n' "$@"; }
# shellcheck disable=SC2086 # space-separated lists of numbers
MULTI=$(med ${RATEV[multiscan]:-})
# shellcheck disable=SC2086 # space-separated lists of numbers
{
	echo "postern scan vs ClamAV, $(date -u +%F) - $MACHINE"
	echo "set: the anchors' $NMSG messages ($(awk -v b="$BYTES" 'BEGIN{printf "%.1f", b/1e6}') MB, $NINF with EICAR); signatures: $CLAMAV_DB ($(find "$CLAMAV_DB" -maxdepth 1 -type f -printf '%f ' | sed 's/ $//')), $CLAMAV_VERSION, ${POSTERN_VERSION:-postern}"
	echo "time = the whole command (start-up and signature loading included; clamd has them loaded already); median of $RUNS rounds, each round runs every tool once"
	echo
	row "tool" "msgs/s" "MB/s" "/multi" "CPU ms/msg" "peak RSS kB" "infected/run" "rule ref"
	row "------------------------------------------" "--------" "-------" "--------" "----------" "-----------" "-------------" "--------"
	for t in $TOOLS; do
		m=$(med ${RATEV[$t]})
		case "$t" in postern-av | postern-full | clamscan) rss=$(MED_DIGITS=0 med ${RSSV[$t]}) ;; *) rss="-" ;; esac
		row "${NAME[$t]}" "$m" "$(med ${MBV[$t]})" "$(ratio "$m" "$MULTI")" "$(MED_DIGITS=3 med ${CPUV[$t]})" "$rss" "$(echo ${INF[$t]} | tr ' ' ',')" "${RULEREF[$t]:--}"
	done
	echo "  (/multi = msgs/s over clamdscan --multiscan's, ratio of the medians; CPU ms/msg = user+sys of the command and" \
		"its children, plus clamd's for clamdscan, per message, median: less disturbed by other load than the rates;" \
		"peak RSS = /usr/bin/time %M of the process, only for the single-process tools; clamd's own: VmHWM below;" \
		"rule ref = messages refused by a content rule, last run)"
	if [ -n "$MULTI" ] && [ "$MULTI" != NA ]; then
		for t in postern-av postern-full postern-x2; do
			[ -n "${ROUND_RATIO[$t]:-}" ] || continue
			rr=$(MED_DIGITS=3 med ${ROUND_RATIO[$t]})
			echo "  ${NAME[$t]} / clamdscan multiscan per round:${ROUND_RATIO[$t]} -> median $rr; target >= 1.0: $(awk -v r="$rr" 'BEGIN{print (r >= 1.0 ? "met" : "NOT met")}')"
		done
	fi
	echo "  start-up + 1 small file: postern scan (antivirus) ${STARTUP[postern-av]} s, (rules + antivirus) ${STARTUP[postern-full]} s, clamscan ${STARTUP[clamscan]} s"
	[ -n "$CLAMD_MEM" ] && echo "  clamd (MaxThreads ${CLAMD_THREADS:-12}) after the runs: $CLAMD_MEM"
	echo "  temporary files (libclamav writes the parts it extracts there): postern scan and clamscan TMPDIR $OWN_TMP;" \
		"clamd ${CLAMD_TMP:-not running}; ${TMPDIR:-/tmp} is on $(df --output=fstype "${TMPDIR:-/tmp}" | tail -1 | tr -d ' ')"
	echo
	bench_verdict "every tool found exactly the $NINF EICAR messages in every run; no tool failed" scan-raw.txt
	echo "total time $(awk -v a="$T0" -v b="$(now)" 'BEGIN{printf "%.1f", b-a}') s; per-run details: $RAW"
} >"$RESULTS"
cat "$RESULTS"
cat "$RESULTS" >>"$RAW"
((${#FAILS[@]} == 0))

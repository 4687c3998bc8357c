# shellcheck shell=bash
# bench/lib.sh - what the bench/*.sh scripts share, sourced by each (bash)
# right after its `set -u -o pipefail`:
#   * REPO (this checkout), ANCHORS (../shared/anchors unless set),
#     BENCH_OUT (build/bench unless set), ANCHOR_OUT (exported: where the
#     anchor scripts write), and the anchors' common.sh loaded (log, now,
#     rate, median, mem_of, stop_pid, wait_tcp, netns_reexec, RUNS);
#   * unless BENCH_NO_NETNS=1 is set before sourcing, the script re-runs
#     itself in a private loopback-only network namespace (netns_reexec,
#     with the caller's arguments; ANCHOR_NETNS=0 turns it off);
#   * bench_verdict, the last lines of each script's result table.
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
ANCHORS="${ANCHORS:-$(dirname "$REPO")/shared/anchors}"
BENCH_OUT="${BENCH_OUT:-$REPO/build/bench}"
export ANCHOR_OUT="${ANCHOR_OUT:-$BENCH_OUT/anchors}"
if [ ! -f "$ANCHORS/common.sh" ]; then
	echo "bench: anchor scripts not found in $ANCHORS (set ANCHORS=...)" >&2
	exit 1
fi
# shellcheck source=/dev/null
. "$ANCHORS/common.sh"
if [ "${BENCH_NO_NETNS:-0}" != 1 ]; then
	netns_reexec "$@"
fi

# bench_verdict OK_TEXT RAW_NAME: "RESULT: FAILED" and the array FAILS, or
# "RESULT: ok (OK_TEXT)"; then how much of the CPUs other work took during
# the measured windows (the file $OTHER, one line per window: ... other-CPU-s
# steal-CPU-s window-s, written by cpu_acct.py), with a warning naming
# RAW_NAME when a window was skewed, and the load average at the end
# against $LOAD0.
bench_verdict() {
	local ok_text=$1 raw_name=$2
	if ((${#FAILS[@]})); then
		echo "RESULT: FAILED"
		printf '  - %s\n' "${FAILS[@]}"
	else
		echo "RESULT: ok ($ok_text)"
	fi
	if [ -n "${OTHER:-}" ] && [ -f "$OTHER" ]; then
		awk -v n="$(nproc)" -v raw="$raw_name" '{ s = ($(NF-2) + $(NF-1)) / ($NF * n); if (s > mx) mx = s; o += $(NF-2); st += $(NF-1); w += $NF }
			END { if (w == 0) exit
			      printf "measured windows: %.0f s; other processes took %.1f CPU-s, hypervisor steal %.1f CPU-s (%.1f%% of the CPUs), worst window %.0f%%\n", w, o, st, 100*(o+st)/(w*n), 100*mx
			      if (mx > 0.05) print "WARNING: the machine was not quiet; windows with a high share in " raw " are skewed" }' "$OTHER"
	fi
	echo "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg) (at the start: ${LOAD0:-?})"
}

#!/bin/bash
# bench/report.sh - "make bench", last part: `postern report` against
# pflogsumm on the same day of mail. bench/report_logs.py writes about a
# million postern log lines and the Postfix log of the same messages with
# the same fates (connections, rejections, virus refusals, deliveries,
# deferrals, bounces); each round runs both reports once, one after the
# other, so that a slow spell of the (shared) machine hits both alike.
# Reported: the median wall time, CPU time (user + system) and peak RSS
# of each, lines per second and messages per second, and the ratio.
# Both reports must find the generator's counts of delivered, bounced and
# rejected (and postern's the rest of its top-level counts): the two logs
# really are the same traffic.
#
# Knobs (environment): LINES=1000000, RUNS=3, POSTERN_BIN=build/postern,
# BENCH_OUT=build/bench.
# Output: the table on stdout and in build/bench/report-results.txt.
# Exit status: 0 = both measured and both counts right; 1 otherwise.
set -u -o pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BENCH_OUT="${BENCH_OUT:-$REPO/build/bench}"
POSTERN_BIN="${POSTERN_BIN:-$REPO/build/postern}"
LINES="${LINES:-1000000}"
RUNS="${RUNS:-3}"
DATA="$BENCH_OUT/report-logs"
RESULTS="$BENCH_OUT/report-results.txt"
mkdir -p "$DATA"

if ! command -v pflogsumm >/dev/null; then
	echo "bench/report: pflogsumm is not installed (tools/install-deps.sh)" >&2
	exit 1
fi
if [ ! -x /usr/bin/time ]; then
	echo "bench/report: /usr/bin/time is not installed (Debian package time)" >&2
	exit 1
fi
if [ ! -f "$DATA/expected.json" ] ||
	[ "$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["lines_asked"])' \
		"$DATA/expected.json" 2>/dev/null)" != "$LINES" ]; then
	echo "bench/report: generating about $LINES lines of each log in $DATA"
	python3 "$REPO/bench/report_logs.py" --lines "$LINES" "$DATA" || exit 1
fi

# One timed run: "wall user sys maxrss_kb" on fd 3, output to $2.
timed() {
	local out="$1"
	shift
	/usr/bin/time -f "%e %U %S %M" -o "$DATA/time.txt" "$@" >"$out" 2>"$out.err" || return 1
	cat "$DATA/time.txt"
}

rc=0
: >"$DATA/raw.txt"
for run in $(seq 1 "$RUNS"); do
	p=$(timed "$DATA/postern.json" "$POSTERN_BIN" report --json "$DATA/postern.log") || {
		echo "bench/report: postern report failed: $(tail -3 "$DATA/postern.json.err")" >&2
		rc=1
	}
	f=$(timed "$DATA/pflogsumm.txt" pflogsumm "$DATA/postfix.log") || {
		echo "bench/report: pflogsumm failed: $(tail -3 "$DATA/pflogsumm.txt.err")" >&2
		rc=1
	}
	echo "postern $p" >>"$DATA/raw.txt"
	echo "pflogsumm $f" >>"$DATA/raw.txt"
	echo "round $run: postern report $p; pflogsumm $f (wall user sys maxrss_kb)"
done
[ "$rc" -eq 0 ] || exit 1

python3 - "$DATA" "$RESULTS" <<'PY' || rc=1
import json, re, statistics, sys
data, results = sys.argv[1], sys.argv[2]
exp = json.load(open(data + "/expected.json"))
rows = {"postern": [], "pflogsumm": []}
for line in open(data + "/raw.txt"):
    name, wall, user, sys_, rss = line.split()
    rows[name].append((float(wall), float(user) + float(sys_), int(rss)))
def med(name, i):
    return statistics.median(r[i] for r in rows[name])
ok = True
got = json.load(open(data + "/postern.json"))
for k in ("received", "delivered", "deferred", "bounced", "rejected", "quarantined"):
    if got[k] != exp[k]:
        print("bench/report: postern report counted %s=%d, the log has %d" % (k, got[k], exp[k]))
        ok = False
if got["lines"]["not_understood"] != 0:
    print("bench/report: postern report did not understand %d lines" % got["lines"]["not_understood"])
    ok = False
pf = open(data + "/pflogsumm.txt").read()
for k in ("delivered", "bounced", "rejected"):
    m = re.search(r"^\s*(\d+)\s+%s\b" % k, pf, re.M)
    if not m or int(m.group(1)) != exp[k]:
        print("bench/report: pflogsumm counted %s=%s, the log has %d"
              % (k, m.group(1) if m else "?", exp[k]))
        ok = False
lines = {"postern": exp["postern_lines"], "pflogsumm": exp["postfix_lines"]}
out = []
out.append("postern report vs pflogsumm: %d messages (%s postern lines, %s Postfix lines), "
           "median of %d runs" % (exp["messages"], lines["postern"], lines["pflogsumm"],
                                   len(rows["postern"])))
out.append("%-16s %9s %9s %12s %12s %10s" % ("tool", "wall s", "cpu s", "lines/s",
                                              "messages/s", "RSS MB"))
for name in ("postern", "pflogsumm"):
    wall, cpu, rss = med(name, 0), med(name, 1), med(name, 2)
    out.append("%-16s %9.2f %9.2f %12.0f %12.0f %10.1f" % (
        "postern report" if name == "postern" else name, wall, cpu,
        lines[name] / max(wall, 1e-3), exp["messages"] / max(wall, 1e-3), rss / 1024))
out.append("ratio (pflogsumm time / postern report time): wall %.1fx, cpu %.1fx; "
           "per line (wall): %.1fx" % (
               med("pflogsumm", 0) / max(med("postern", 0), 1e-3),
               med("pflogsumm", 1) / max(med("postern", 1), 1e-3),
               (lines["postern"] / max(med("postern", 0), 1e-3)) /
               (lines["pflogsumm"] / max(med("pflogsumm", 0), 1e-3))))
out.append("counts: %s" % ("both reports found the generated counts" if ok else "MISMATCH"))
text = "\n".join(out) + "\n"
sys.stdout.write(text)
open(results, "w").write(text)
sys.exit(0 if ok else 1)
PY
exit $rc

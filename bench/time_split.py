#!/usr/bin/env python3
"""
time_split.py - where postern's time went during a benchmark, from its
log: for every message accepted, MAIL .. 250 (the accepted line's delay=),
of which waiting for a flow token (flow=) and the commit on a commit
thread (commit=: fdatasync, rename, folder fsync); for every copy
delivered, MAIL .. in the Maildir (the queue manager's delay=). With
content scanning on, also the smtp worker's "scan action=..." lines: the
whole wait for the verdict (delay=, part of the accept time), of which
waiting for a free scanner (queue=), and each stage's own seconds (mime=,
rules=, antivirus=; the log gives them in whole milliseconds). Prints
p50/p90/p99 (and the mean) of each, so the next bottleneck is visible.

    bench/time_split.py build/bench/postern.log
"""
import re
import sys

ACCEPTED = re.compile(r": accepted from=<[^>]*> .*? delay=([\d.]+) flow=([\d.]+) commit=([\d.]+)")
SCAN = re.compile(r": scan action=\S+ .*? delay=([\d.]+)(.*)")
SCAN_PART = re.compile(r" (mime|rules|antivirus|queue)=([\d.]+)")
SENT = re.compile(r"postern/qmgr\[\d+\]: info: [0-9A-F]{19}: to=<[^>]*>.* delay=([\d.]+) .*status=sent")


def pct(values, p):
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, int(round(p / 100.0 * (len(s) - 1))))]


def row(label, values, unit_ms=True):
    k = 1000.0 if unit_ms else 1.0
    unit = "ms" if unit_ms else "s"
    mean = sum(values) / len(values) if values else float("nan")
    return "  %-52s %7d  p50 %8.2f  p90 %8.2f  p99 %8.2f  mean %8.2f %s" % (
        label, len(values), pct(values, 50) * k, pct(values, 90) * k, pct(values, 99) * k,
        mean * k, unit)


def main(path):
    accept, flow, commit, delivered = [], [], [], []
    scan = {"delay": [], "queue": [], "mime": [], "rules": [], "antivirus": []}
    with open(path, errors="replace") as f:
        for line in f:
            m = SCAN.search(line)
            if m:
                scan["delay"].append(float(m.group(1)))
                for stage, secs in SCAN_PART.findall(m.group(2)):
                    scan[stage].append(float(secs))
                continue
            m = ACCEPTED.search(line)
            if m:
                accept.append(float(m.group(1)))
                flow.append(float(m.group(2)))
                commit.append(float(m.group(3)))
                continue
            m = SENT.search(line)
            if m:
                delivered.append(float(m.group(1)))
    print("where postern's time went (its log, every message of the run):")
    print("  %-52s %7s" % ("", "count"))
    print(row("accept: MAIL .. 250", accept))
    print(row("  of which waiting for a flow token (back-pressure)", flow))
    print(row("  of which the commit (fdatasync, rename, fsync)", commit))
    if scan["delay"]:
        print(row("  of which the scan: waiting for the verdict", scan["delay"]))
        print(row("    of which waiting for a free scanner", scan["queue"]))
        for stage in ("mime", "rules", "antivirus"):
            if scan[stage]:
                print(row("    %s stage (1 ms steps)" % stage, scan[stage]))
    print(row("delivery: MAIL .. in the Maildir (qmgr, 10 ms steps)", delivered))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))

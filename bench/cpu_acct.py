#!/usr/bin/env python3
"""cpu_acct.py - how much CPU did other processes take during a measurement?

Usage: cpu_acct.py snap FILE
       cpu_acct.py diff FILE PID...

"snap" stores, for every process, its parent and its CPU time including
reaped children (utime + stime + cutime + cstime from /proc/PID/stat).
"diff" takes a second snapshot and prints one line:

    WALL_S ALL_S OURS_S OTHER_S STEAL_S

ALL_S   CPU seconds used by every process between the two snapshots. The
        difference of the sums is exact even for processes that started or
        ended in between, because a finished process' time moves into its
        parent's cutime/cstime when it is reaped.
OURS_S  the same for the process trees rooted at the given PIDs (the
        benchmark shell, which reaps smtp-source and the python clients;
        Postfix' master; postern's supervisor).
OTHER_S ALL_S - OURS_S: work of unrelated processes that competed with the
        systems under test for the same CPUs (kernel threads not included).
STEAL_S CPU time the hypervisor gave to other guests while this VM wanted
        to run ("steal" in /proc/stat; 0 on bare metal).
"""
import json
import os
import sys
import time

TICK = os.sysconf("SC_CLK_TCK")


def snapshot():
    procs = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % name, "rb") as f:
                data = f.read()
        except OSError:
            continue
        rest = data[data.rindex(b")") + 2:].split()  # fields from 3 (state) on
        ppid = int(rest[1])
        if int(rest[6]) & 0x00200000:  # PF_KTHREAD: kernel threads are left out
            continue
        ticks = int(rest[11]) + int(rest[12]) + int(rest[13]) + int(rest[14])
        procs[int(name)] = (ppid, ticks)
    with open("/proc/stat") as f:
        steal = int(f.readline().split()[8])
    return {"t": time.time(), "procs": procs, "steal": steal}


def tree_ticks(procs, roots):
    children = {}
    for pid, (ppid, _) in procs.items():
        children.setdefault(ppid, []).append(pid)
    seen, stack = set(), [r for r in roots if r in procs]
    while stack:
        p = stack.pop()
        if p in seen:
            continue
        seen.add(p)
        stack.extend(children.get(p, []))
    return sum(procs[p][1] for p in seen)


def main():
    if len(sys.argv) < 3 or sys.argv[1] not in ("snap", "diff"):
        sys.exit(__doc__)
    path = sys.argv[2]
    if sys.argv[1] == "snap":
        with open(path, "w") as f:
            json.dump(snapshot(), f)
        return
    with open(path) as f:
        a = json.load(f)
    a["procs"] = {int(k): tuple(v) for k, v in a["procs"].items()}
    b = snapshot()
    roots = [int(x) for x in sys.argv[3:] if x.isdigit()]
    all_t = sum(v[1] for v in b["procs"].values()) - sum(v[1] for v in a["procs"].values())
    ours = tree_ticks(b["procs"], roots) - tree_ticks(a["procs"], roots)
    print("%.2f %.2f %.2f %.2f %.2f" % (b["t"] - a["t"], all_t / TICK, ours / TICK,
                                        max(0, all_t - ours) / TICK,
                                        (b["steal"] - a["steal"]) / TICK))


if __name__ == "__main__":
    main()

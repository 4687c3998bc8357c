#!/usr/bin/env python3
"""
relay_bench.py - relay throughput (issue 10): postern relaying to
smtp-sink against a stock Postfix relaying to the same smtp-sink, in the
same run, with the same messages, one system after the other in each
round (so a slow spell of the machine hits both alike).

Each system is a private instance on loopback with its spool on the same
disk (TMPDIR, /var/tmp by default): postern from the integration tests'
harness (relayhost = [127.0.0.1]:SINK, defaults otherwise:
delivery_concurrency 20, destination_concurrency 10, connection reuse),
Postfix from tests/integration/postfix_peer.py (its stock smtp(8) with
relayhost = [127.0.0.1]:SINK, connection cache on, STARTTLS "may" which
smtp-sink never offers). smtp-sink accepts and forgets.

A run: smtp-source -s SESSIONS -m N (one new connection per message, the
same 4 kB message, one remote recipient) into the system; the time from
the first byte to the log line of the N-th relayed message ("status=sent"
in either log) gives msgs/s end to end; the time smtp-source took gives
the acceptance rate. Knobs: N=5000, RUNS=3, SESSIONS=20, STALL=60.
Prints a table and writes it to build/bench/relay-results.txt.
Exit status: 0 if every message of every run was relayed; 1 otherwise.
"""
import os
import re
import shutil
import statistics
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "tests", "integration"))
os.environ.setdefault("POSTERN_BIN", os.path.join(REPO, "build", "postern"))

from harness import PosternServer  # noqa: E402
from postfix_peer import PostfixPeer, postfix_unusable  # noqa: E402
from sink_peer import SmtpSink, sink_unusable  # noqa: E402

N = int(os.environ.get("N", "5000"))
RUNS = int(os.environ.get("RUNS", "3"))
SESSIONS = int(os.environ.get("SESSIONS", "20"))
STALL = float(os.environ.get("STALL", "60"))
OUT = os.path.join(REPO, "build", "bench")
SENT_PF = re.compile(r"postfix-\S+/smtp\[\d+\]: \S+: to=<[^>]*>, relay=127\.0\.0\.1\[.*status=sent")
SENT_PT = re.compile(r"postern/qmgr\[\d+\]: info: \S+: to=<[^>]*> relay=\[127\.0\.0\.1\].*status=sent")


def message(path):
    body = "".join("line %03d of the relay benchmark message, some text to relay.\n" % i
                   for i in range(60))
    with open(path, "w") as f:
        f.write("From: <bench@example.test>\nTo: <rcpt@remote.test>\n"
                "Subject: relay benchmark\nMessage-ID: <bench@example.test>\n\n" + body)
    return os.path.getsize(path)


class LogCounter:
    """Counts the lines of a growing log that match, reading only what
    was added since the last look."""

    def __init__(self, path, pattern):
        self.path, self.pattern = path, pattern
        self.offset, self.count, self.partial = 0, 0, b""

    def update(self):
        try:
            with open(self.path, "rb") as f:
                f.seek(self.offset)
                data = f.read()
        except FileNotFoundError:
            return self.count
        self.offset += len(data)
        data = self.partial + data
        cut = data.rfind(b"\n") + 1
        self.partial = data[cut:]
        self.count += len(self.pattern.findall(data[:cut].decode("utf-8", "replace")))
        return self.count


def one_run(name, port, counter, ref):
    before = counter.update()
    t0 = time.monotonic()
    src = subprocess.run(["smtp-source", "-s", str(SESSIONS), "-m", str(N),
                          "-f", "bench@example.test", "-t", "rcpt@remote.test",
                          "-F", ref, "127.0.0.1:%d" % port],
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    t_accept = time.monotonic() - t0
    last, last_change, seen, prev = t0, time.monotonic(), 0, -1
    while True:
        seen = counter.update() - before
        now = time.monotonic()
        if seen >= N:
            last = now
            break
        if seen != prev:
            prev, last_change = seen, now
        if now - last_change > STALL:
            break
        time.sleep(0.05)
    total = last - t0
    ok = seen >= N and src.returncode == 0
    return {"name": name, "accept": N / t_accept, "relay": N / total if ok else 0.0,
            "secs": total, "seen": seen, "ok": ok,
            "err": src.stderr.decode("utf-8", "replace").strip()[:300]}


def main():
    for why in (sink_unusable(), postfix_unusable()):
        if why:
            print("relay bench: " + why, file=sys.stderr)
            return 1
    if shutil.which("smtp-source") is None:
        print("relay bench: smtp-source is missing (package postfix)", file=sys.stderr)
        return 1
    os.environ.setdefault("TMPDIR", "/var/tmp")
    os.makedirs(OUT, exist_ok=True)
    ref = os.path.join(OUT, "relay-ref.eml")
    size = message(ref)
    sink = SmtpSink().start()
    pf = PostfixPeer(relay_port=sink.port, name="relaybench")
    pt = PosternServer(name="relaybench", config={
        "relayhost": "[127.0.0.1]:%d" % sink.port, "workers": "0",
        "queue_retry_min": "5m", "queue_retry_max": "1h"})
    results = {"postfix": [], "postern": []}
    status = 0
    try:
        pf.start()
        pt.start()
        print("relay bench: N=%d messages of %d bytes per run, %d runs, smtp-source -s %d; "
              "smtp-sink on port %d; spools under %s" % (N, size, RUNS, SESSIONS, sink.port,
                                                         os.environ["TMPDIR"]))
        counters = {"postfix": LogCounter(pf.log_path, SENT_PF),
                    "postern": LogCounter(pt.log_path, SENT_PT)}
        for i in range(1, RUNS + 1):
            for name in ("postfix", "postern"):
                port = pf.smtpd_port if name == "postfix" else pt.port
                r = one_run(name, port, counters[name], ref)
                results[name].append(r)
                print("  run %d %-8s accept %7.1f msg/s, relayed %5d/%d in %6.2f s -> %7.1f msg/s%s"
                      % (i, name, r["accept"], r["seen"], N, r["secs"], r["relay"],
                         "" if r["ok"] else "  INCOMPLETE " + r["err"]), flush=True)
                if not r["ok"]:
                    status = 1
    finally:
        for stop in (pt.stop, pf.destroy, sink.remove):
            try:
                stop()
            except Exception as e:  # keep stopping the others
                print("relay bench: stop: %s" % e, file=sys.stderr)
        if not os.environ.get("KEEP_TMP"):
            shutil.rmtree(pt.dir, ignore_errors=True)
    med = {k: statistics.median(r["relay"] for r in v) if v else 0.0 for k, v in results.items()}
    acc = {k: statistics.median(r["accept"] for r in v) if v else 0.0 for k, v in results.items()}
    ratio = med["postern"] / med["postfix"] if med["postfix"] > 0 else 0.0
    lines = [
        "relay throughput, end to end (smtp-source -> system -> smtp-sink), median of %d runs"
        % RUNS,
        "  %-10s %12s %12s" % ("system", "accept/s", "relayed/s"),
        "  %-10s %12.1f %12.1f" % ("postfix", acc["postfix"], med["postfix"]),
        "  %-10s %12.1f %12.1f" % ("postern", acc["postern"], med["postern"]),
        "  postern/postfix relayed: %.2fx (target >= 2x: %s)"
        % (ratio, "met" if ratio >= 2 else "NOT met"),
    ]
    text = "\n".join(lines)
    print(text)
    with open(os.path.join(OUT, "relay-results.txt"), "w") as f:
        f.write(text + "\n")
    return status


if __name__ == "__main__":
    sys.exit(main())

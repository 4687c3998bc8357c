#!/usr/bin/env python3
"""dnsbl_client.py - the SMTP client of bench/dnsbl.sh: many short
sessions from many distinct loopback addresses, as fast as a server
takes them.

    dnsbl_client.py HOST PORT COUNT CONCURRENCY FIRST [--procs P]
                    [--listed-pct PCT] [--pool N] [--no-check] [--timeout S]

Session i (FIRST <= i < FIRST + COUNT) comes from its own source address
(client_address(i), bound before connect), so no two sessions of a run,
nor of two runs with different FIRST, share an address and no DNS cache
(the server's, postscreen's) can answer for a later session. With
--pool N, session i comes from client_address(i mod N) instead: N
addresses, each used again and again (the server's caches must then be
off for every session to be looked up). Every
session: connect, read the banner (220), EHLO (250), then
  * an unlisted client (address 127.1-99.x.y): QUIT (221);
  * a listed one (127.100-249.x.y, PCT % of the sessions, spread
    evenly): MAIL FROM (250), RCPT TO, which must be refused (5xx: the
    DNSBL verdict), QUIT.
Anything else (another code, a reset, a timeout) counts as an error;
--no-check (calibration against a server without DNSBL checks) accepts
any RCPT reply.

P processes (default 2) share the sessions (i modulo P) and the
concurrency; each runs one selectors loop of non-blocking sockets, so
the client costs little CPU next to the server it measures. The clock
starts when every process is ready and stops when the last session of
the last process has ended.

Prints one JSON line: sessions, seconds, rate (sessions/s), outcome
counts, p50/p99 of session time and of connect->banner in ms, and the
client's own CPU seconds. Exit status 0 always when it ran (the script
judges the counts), 2 on bad arguments.

Input: the server's replies, read in bounded chunks; a reply longer than
16 KB is an error for that session. Runs as root or not (binding
127.0.0.0/8 addresses needs no privilege on Linux).
"""
import argparse
import errno
import json
import multiprocessing
import os
import resource
import selectors
import socket
import sys
import time

MAX_REPLY = 16384


def client_address(index, listed_pct):
    """(address, listed) of session index: PCT % of the indexes, evenly
    spread, are listed. Unlisted ones count up through 127.1-99.x.y,
    listed ones through 127.100-249.x.y (the second octet cycles first,
    so the listed ones cover both lists' ranges evenly: see dnsbl.sh);
    the last octet stays within 1..250."""
    listed_before = index * listed_pct // 100
    listed = (index + 1) * listed_pct // 100 - listed_before == 1
    if listed:
        n = listed_before
        second = 100 + n % 150
        n //= 150
    else:
        n = index - listed_before
        second = 1 + n % 99
        n //= 99
    third, fourth = (n // 250) % 256, 1 + n % 250
    if n >= 256 * 250:
        raise ValueError("session index %d is beyond the address plan" % index)
    return "127.%d.%d.%d" % (second, third, fourth), listed


class Session:
    """One SMTP session as a state machine driven by readiness."""

    def __init__(self, index, host, port, listed_pct, check):
        self.addr, self.listed = client_address(index, listed_pct)
        self.check = check
        self.buf = b""
        self.state = "connect"
        self.outcome = None
        self.t0 = time.monotonic()
        self.t_banner = None
        self.rcpt_code = None
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setblocking(False)
        self.sock.bind((self.addr, 0))
        err = self.sock.connect_ex((host, port))
        if err not in (0, errno.EINPROGRESS):
            self.outcome = "connect-" + errno.errorcode.get(err, str(err))

    def reply(self):
        """The code of a complete (possibly multi-line) reply, or None."""
        start = 0
        while True:
            end = self.buf.find(b"\r\n", start)
            if end < 0:
                if len(self.buf) > MAX_REPLY:
                    return "overlong"
                return None
            line = self.buf[start:end]
            start = end + 2
            if len(line) < 4 or line[3:4] == b" ":
                self.buf = self.buf[start:]
                return line[:3].decode("ascii", "replace")

    def send(self, line):
        try:
            self.sock.send(line)  # a few bytes: fits an empty send buffer
        except OSError:
            self.outcome = "reset"

    def on_readable(self):
        """Advance; True when the session has ended (outcome set)."""
        if self.state == "connect":
            err = self.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if err:
                self.outcome = "connect-" + errno.errorcode.get(err, str(err))
                return True
            self.state = "banner"
        try:
            data = self.sock.recv(4096)
        except BlockingIOError:
            return False
        except OSError:
            self.outcome = "reset"
            return True
        if not data:
            self.outcome = "closed-in-" + self.state
            return True
        self.buf += data
        while self.outcome is None:
            code = self.reply()
            if code is None:
                return False
            self.advance(code)
        return True

    def advance(self, code):
        st = self.state
        if st == "banner":
            self.t_banner = time.monotonic()
            if code != "220":
                self.outcome = "banner-" + code
                return
            self.state = "ehlo"
            self.send(b"EHLO client.bench.example\r\n")
        elif st == "ehlo":
            if code != "250":
                self.outcome = "ehlo-" + code
                return
            if self.listed:
                self.state = "mail"
                self.send(b"MAIL FROM:<sender@bench.example>\r\n")
            else:
                self.state = "quit"
                self.send(b"QUIT\r\n")
        elif st == "mail":
            if code != "250":
                self.outcome = "mail-" + code
                return
            self.state = "rcpt"
            self.send(b"RCPT TO:<bob@example.test>\r\n")
        elif st == "rcpt":
            self.rcpt_code = code
            if self.check and not code.startswith("5"):
                self.outcome = "listed-rcpt-" + code
                return
            self.state = "quit"
            self.send(b"QUIT\r\n")
        elif st == "quit":
            if code != "221":
                self.outcome = "quit-" + code
            elif self.listed:
                self.outcome = "refused" if self.rcpt_code.startswith("5") else "listed-accepted"
            else:
                self.outcome = "ok"


def percentile(values, p):
    if not values:
        return None
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * p / 100))]


def effective(args, i):
    """The address index of session i (--pool: modulo the pool)."""
    return i % args.pool if args.pool else i


def worker(args, proc, ready, go, out):
    """Run the sessions i = FIRST + proc, FIRST + proc + P, ...; put the
    results on out."""
    indexes = range(args.first + proc, args.first + args.count, args.procs)
    conc = max(1, args.concurrency // args.procs + (1 if proc < args.concurrency % args.procs else 0))
    sel = selectors.DefaultSelector()
    outcomes, durations, banners = {}, [], []
    it = iter(indexes)
    live = {}

    def start_one():
        i = next(it, None)
        if i is None:
            return False
        s = Session(effective(args, i), args.host, args.port, args.listed_pct, not args.no_check)
        if s.outcome is not None:
            finish(s)
            return True
        live[s.sock.fileno()] = s
        sel.register(s.sock, selectors.EVENT_READ | selectors.EVENT_WRITE, s)
        return True

    def finish(s):
        outcomes[s.outcome] = outcomes.get(s.outcome, 0) + 1
        now = time.monotonic()
        durations.append(now - s.t0)
        if s.t_banner is not None:
            banners.append(s.t_banner - s.t0)
        fd = s.sock.fileno()
        if fd in live:
            del live[fd]
            sel.unregister(s.sock)
        s.sock.close()

    ready.set()
    go.wait()
    more = True
    while more and len(live) < conc:
        more = start_one()
    while live:
        events = sel.select(timeout=1.0)
        now = time.monotonic()
        for key, mask in events:
            s = key.data
            if s.state == "connect" and mask & selectors.EVENT_WRITE:
                sel.modify(s.sock, selectors.EVENT_READ, s)
                err = s.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if err:
                    s.outcome = "connect-" + errno.errorcode.get(err, str(err))
                    finish(s)
                else:
                    s.state = "banner"
                continue
            if s.on_readable() or s.outcome is not None:
                finish(s)
        if not events:
            for s in [s for s in live.values() if now - s.t0 > args.timeout]:
                s.outcome = "timeout-in-" + s.state
                finish(s)
        while more and len(live) < conc:
            more = start_one()
    end = time.monotonic()
    ru = resource.getrusage(resource.RUSAGE_SELF)
    out.put({"end": end, "outcomes": outcomes, "durations": durations, "banners": banners,
             "cpu": ru.ru_utime + ru.ru_stime})


def main():
    ap = argparse.ArgumentParser(description="SMTP connection-rate client for bench/dnsbl.sh")
    ap.add_argument("host")
    ap.add_argument("port", type=int)
    ap.add_argument("count", type=int)
    ap.add_argument("concurrency", type=int)
    ap.add_argument("first", type=int)
    ap.add_argument("--procs", type=int, default=2)
    ap.add_argument("--listed-pct", type=int, default=10)
    ap.add_argument("--pool", type=int, default=0)
    ap.add_argument("--no-check", action="store_true")
    ap.add_argument("--timeout", type=float, default=60.0)
    args = ap.parse_args()
    if args.count < 1 or args.concurrency < 1 or args.procs < 1 or not 0 <= args.listed_pct <= 100 \
            or args.pool < 0:
        ap.error("COUNT, CONCURRENCY and --procs must be positive, --listed-pct 0..100, --pool >= 0")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = args.concurrency + 256
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(want, hard), hard))
    # fails early beyond the address plan
    client_address(args.pool - 1 if args.pool else args.first + args.count - 1, args.listed_pct)

    ctx = multiprocessing.get_context("fork")
    go, out = ctx.Event(), ctx.Queue()
    readies, procs = [], []
    for p in range(args.procs):
        ready = ctx.Event()
        proc = ctx.Process(target=worker, args=(args, p, ready, go, out))
        proc.start()
        readies.append(ready)
        procs.append(proc)
    for ready in readies:
        ready.wait()
    t0 = time.monotonic()
    go.set()
    results = [out.get() for _ in procs]
    for proc in procs:
        proc.join()
    seconds = max(r["end"] for r in results) - t0
    outcomes, durations, banners = {}, [], []
    for r in results:
        for k, v in r["outcomes"].items():
            outcomes[k] = outcomes.get(k, 0) + v
        durations += r["durations"]
        banners += r["banners"]
    listed = sum(client_address(effective(args, i), args.listed_pct)[1]
                 for i in range(args.first, args.first + args.count))
    ms = lambda v: None if v is None else round(v * 1000, 2)
    print(json.dumps({
        "sessions": args.count, "listed": listed, "seconds": round(seconds, 3),
        "rate": round(args.count / seconds, 1) if seconds > 0 else None,
        "outcomes": outcomes,
        "session_p50_ms": ms(percentile(durations, 50)), "session_p99_ms": ms(percentile(durations, 99)),
        "banner_p50_ms": ms(percentile(banners, 50)), "banner_p99_ms": ms(percentile(banners, 99)),
        "client_cpu_s": round(sum(r["cpu"] for r in results), 2),
    }, sort_keys=True))
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())

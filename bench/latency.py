#!/usr/bin/env python3
"""latency.py - per-transaction SMTP latency of a receiving MTA.

Usage: latency.py HOST PORT MSGDIR CONC [--rcpt ADDR] [--from ADDR] [--results FILE]

Replays every NNNNN-*.eml file of MSGDIR (the anchors' gen_messages.py set)
with CONC parallel sessions, one TCP connection per message, lock-step SMTP
(no pipelining): banner, EHLO, MAIL, RCPT, DATA, body, QUIT. Each session
is a process of its own (message i goes to session i mod CONC): with
threads, Python's global interpreter lock made the client's own waiting
the largest part of the tail (p99 about 14 ms against smtp-sink, a server
that does nothing, at CONC 10 on 2 cores).

Latency of one transaction = from connect() until the final reply to the
end of DATA (QUIT and close are not counted). Messages are converted to
CRLF and dot-stuffed once before the clock starts, so the client's own
work is not part of the number.

Prints one JSON line: msgs, conc, secs, msgs_per_s, lat_ms_p50/p90/p99/max/
mean and the counts of final reply codes ("250", "rcpt550", "exc:...").
With --results FILE, also writes one line per message to FILE: its file
name, a tab, its final reply code in the same form (the benchmark checks
which messages a scanning server refused).
Standard library only.
"""
import json
import math
import os
import socket
import sys
import time

TIMEOUT = 120.0


def prepare(data):
    """LF or CRLF text -> CRLF lines, dot-stuffed, with the terminator."""
    lines = data.replace(b"\r\n", b"\n").split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    body = b"\r\n".join(b"." + l if l.startswith(b".") else l for l in lines)
    return body + b"\r\n.\r\n"


class SmtpError(Exception):
    def __init__(self, stage, code):
        super().__init__(stage, code)
        self.stage, self.code = stage, code


class Conn:
    def __init__(self, host, port):
        self.sock = socket.create_connection((host, port), timeout=TIMEOUT)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""

    def _line(self):
        while True:
            i = self.buf.find(b"\n")
            if i >= 0:
                line, self.buf = self.buf[:i + 1], self.buf[i + 1:]
                return line
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("server closed the connection")
            self.buf += chunk

    def reply(self):
        """Read a (multi-line) reply; return its code as int."""
        while True:
            line = self._line()
            if len(line) < 4 or not line[:3].isdigit():
                raise ConnectionError("malformed reply %r" % line[:80])
            if line[3:4] != b"-":
                return int(line[:3])

    def cmd(self, text, stage, want):
        self.sock.sendall(text)
        code = self.reply()
        if code != want:
            raise SmtpError(stage, code)
        return code

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


def transaction(host, port, sender, rcpt, payload):
    """One message on a new connection; returns (code string, seconds)."""
    conn = None
    t0 = time.perf_counter()
    try:
        conn = Conn(host, port)
        code = conn.reply()
        if code != 220:
            raise SmtpError("banner", code)
        conn.cmd(b"EHLO client.bench.example\r\n", "ehlo", 250)
        conn.cmd(b"MAIL FROM:<" + sender + b">\r\n", "mail", 250)
        conn.cmd(b"RCPT TO:<" + rcpt + b">\r\n", "rcpt", 250)
        conn.cmd(b"DATA\r\n", "data", 354)
        conn.sock.sendall(payload)
        code = conn.reply()
        dt = time.perf_counter() - t0
        result = str(code)
    except SmtpError as e:
        dt = time.perf_counter() - t0
        result = "%s%d" % ("" if e.stage == "data" else e.stage, e.code)
    except (OSError, ConnectionError) as e:
        dt = time.perf_counter() - t0
        result = "exc:" + type(e).__name__
    if conn is not None:
        try:
            conn.sock.sendall(b"QUIT\r\n")
            conn.reply()
        except (OSError, ConnectionError):
            pass
        conn.close()
    return result, dt


def pct(sorted_vals, p):
    """Nearest-rank percentile of an ascending list, in ms."""
    k = max(0, min(len(sorted_vals) - 1, math.ceil(p * len(sorted_vals)) - 1))
    return round(1000 * sorted_vals[k], 2)


def main():
    args = sys.argv[1:]
    opts = {"--rcpt": "bob@example.test", "--from": "sender@example.com", "--results": ""}
    pos = []
    i = 0
    while i < len(args):
        if args[i] in opts and i + 1 < len(args):
            opts[args[i]] = args[i + 1]
            i += 2
        else:
            pos.append(args[i])
            i += 1
    if len(pos) < 3:
        sys.exit(__doc__)
    host, port, msgdir = pos[0], int(pos[1]), pos[2]
    conc = int(pos[3]) if len(pos) > 3 else 1
    sender, rcpt = opts["--from"].encode(), opts["--rcpt"].encode()

    files = sorted(f for f in os.listdir(msgdir) if f.endswith(".eml") and f[:1].isdigit())
    msgs = []
    for f in files:
        with open(os.path.join(msgdir, f), "rb") as fh:
            msgs.append(prepare(fh.read()))
    if not msgs:
        sys.exit("latency.py: no NNNNN-*.eml files in %s" % msgdir)

    go_r, go_w = os.pipe()  # every session starts at once, after all are forked
    readers = []
    for k in range(conc):
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(r)
            os.close(go_w)
            os.read(go_r, 1)
            results = [(i,) + transaction(host, port, sender, rcpt, msgs[i])
                       for i in range(k, len(msgs), conc)]
            with os.fdopen(w, "w") as out:
                json.dump(results, out)
            os._exit(0)
        os.close(w)
        readers.append((pid, r))
    os.close(go_r)
    t0 = time.perf_counter()
    os.close(go_w)  # end of file: go
    lat, codes, per_file = [], {}, {}
    for pid, r in readers:
        with os.fdopen(r) as inp:
            for i, code, dt in json.load(inp):
                lat.append(dt)
                codes[code] = codes.get(code, 0) + 1
                per_file[files[i]] = code
        os.waitpid(pid, 0)
    secs = time.perf_counter() - t0
    lat.sort()
    if opts["--results"]:
        with open(opts["--results"], "w") as out:
            for f in files:
                out.write("%s\t%s\n" % (f, per_file.get(f, "missing")))
    print(json.dumps({
        "msgs": len(lat), "conc": conc, "secs": round(secs, 3),
        "msgs_per_s": round(len(lat) / secs, 1),
        "lat_ms_p50": pct(lat, 0.50), "lat_ms_p90": pct(lat, 0.90),
        "lat_ms_p99": pct(lat, 0.99), "lat_ms_max": round(1000 * lat[-1], 2),
        "lat_ms_mean": round(1000 * sum(lat) / len(lat), 2), "codes": codes}))


if __name__ == "__main__":
    main()

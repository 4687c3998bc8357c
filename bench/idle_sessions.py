#!/usr/bin/env python3
"""idle_sessions.py - hold many idle SMTP sessions open (bench/idle.sh).

    idle_sessions.py PORT COUNT [--starttls]

Opens COUNT connections to 127.0.0.1:PORT, reads each banner (and, with
--starttls, says EHLO, STARTTLS and completes the TLS handshake, without
verifying the certificate: the benchmark's own), then prints one JSON
line {"sessions": N, "codes": {...}, "seconds": S} and keeps every session
open, idle, until a line (or end of file) arrives on stdin. Connections
go in waves of at most 500 in flight, so the listen queue never
overflows; one event loop (selectors) serves them all.

Raises its own open-file limit to the hard limit; exits 1 if that cannot
hold COUNT sockets. Input: the server's replies (bounded reads).
"""
import json
import resource
import selectors
import socket
import ssl
import sys
import time

WAVE = 500
TIMEOUT = 120.0


def raise_nofile(count):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = count + 64
    if hard != resource.RLIM_INFINITY and hard < want:
        sys.exit("idle_sessions: the open-file hard limit (%d) is below %d" % (hard, want))
    resource.setrlimit(resource.RLIMIT_NOFILE, (want if soft < want else soft, hard))


class Session:
    """One connection walking to the idle state: banner, [EHLO, STARTTLS, handshake]."""

    def __init__(self, sock, starttls, ctx):
        self.sock, self.starttls, self.ctx = sock, starttls, ctx
        self.buf = b""
        self.state = "banner"
        self.code = None

    def reply(self):
        """A complete (possibly multi-line) reply from the buffer, or None."""
        lines = self.buf.split(b"\r\n")
        for i, line in enumerate(lines[:-1]):
            if len(line) >= 4 and line[3:4] == b" ":
                self.buf = b"\r\n".join(lines[i + 1:])
                return line[:3].decode("ascii", "replace")
        if len(self.buf) > 16384:
            return "overlong"
        return None

    def step(self, sel):
        """Advance on readiness; True when idle or finished (code set)."""
        if self.state == "handshake":
            try:
                self.sock.do_handshake()
            except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
                return False
            except (ssl.SSLError, OSError):
                self.code = "tls-failed"
                return True
            self.code = "tls"
            return True
        try:
            data = self.sock.recv(4096)
        except BlockingIOError:
            return False
        except OSError:
            self.code = "reset"
            return True
        if not data:
            self.code = "closed" if self.code is None else self.code
            return True
        self.buf += data
        code = self.reply()
        if code is None:
            return False
        if self.state == "banner":
            if not self.starttls or code != "220":
                self.code = code
                return True
            self.state = "ehlo"
            self.sock.sendall(b"EHLO idle.bench.test\r\n")
            return False
        if self.state == "ehlo":
            self.state = "starttls"
            self.sock.sendall(b"STARTTLS\r\n")
            return False
        if code != "220":
            self.code = "starttls-" + code
            return True
        sel.unregister(self.sock)
        self.sock = self.ctx.wrap_socket(self.sock, do_handshake_on_connect=False,
                                         server_hostname=None)
        sel.register(self.sock, selectors.EVENT_READ, self)
        self.state = "handshake"
        return self.step(sel)


def open_sessions(port, count, starttls):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    sel = selectors.DefaultSelector()
    done, codes, pending, started = [], {}, 0, 0
    deadline = time.monotonic() + TIMEOUT
    while len(done) < count and time.monotonic() < deadline:
        while started < count and pending < WAVE:
            s = socket.create_connection(("127.0.0.1", port))
            s.setblocking(False)
            sel.register(s, selectors.EVENT_READ, Session(s, starttls, ctx))
            started += 1
            pending += 1
        for key, _ in sel.select(timeout=1.0):
            sess = key.data
            if sess.step(sel):
                sel.unregister(sess.sock)
                done.append(sess)
                pending -= 1
                codes[sess.code] = codes.get(sess.code, 0) + 1
    return done, codes


def main():
    if len(sys.argv) < 3:
        sys.exit("usage: idle_sessions.py PORT COUNT [--starttls]")
    port, count = int(sys.argv[1]), int(sys.argv[2])
    starttls = "--starttls" in sys.argv[3:]
    raise_nofile(count)
    t0 = time.monotonic()
    done, codes = open_sessions(port, count, starttls)
    idle = codes.get("tls" if starttls else "220", 0)
    print(json.dumps({"sessions": idle, "asked": count, "codes": codes,
                      "seconds": round(time.monotonic() - t0, 2)}), flush=True)
    sys.stdin.readline()
    for sess in done:
        sess.sock.close()


if __name__ == "__main__":
    main()

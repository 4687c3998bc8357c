#!/usr/bin/env python3
"""
pop3_bench.py - POP3 RETR throughput (issue 11): postern's POP3 server
against Dovecot's (Debian dovecot-pop3d) on the same Maildirs, in the
same run, one server after the other in each round (a slow spell of the
machine hits both alike).

Setup: a postern from the integration tests' harness with pop3_listen on
loopback (clear-text logins allowed from 127.0.0.0/8, as Dovecot is set
up with ssl = no: neither server spends time on TLS) and USERS accounts
whose Maildirs hold MSGS messages of about 4 kB each (written directly
into cur/ with postern's file names, owned by mail_owner); a private
Dovecot with protocols = pop3 on the same mail_root and users file
(passwd-file), mail_uid = the Maildirs' owner. A warm-up session per
user and server first (Dovecot builds its index, both fill the page
cache).

A round: USERS client processes at once, each logs in as its own user
(postern allows one POP3 session per mailbox, so every client has its
own), sends RETR 1..MSGS pipelined in batches of 32, reads every
message to its final ".", then QUIT without deleting. The time from the
first connection to the last QUIT gives messages/s and MB/s. Knobs:
USERS=4 MSGS=5000 RUNS=5. Prints a table and writes it to
build/bench/pop3-results.txt. Exit status 0 if every message of every
run was read from both servers.
"""
import multiprocessing
import os
import pwd
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "tests", "integration"))
os.environ.setdefault("POSTERN_BIN", os.path.join(REPO, "build", "postern"))

from harness import IS_ROOT, PosternServer, free_port  # noqa: E402
from dovecot_peer import DovecotPeer  # noqa: E402

USERS = int(os.environ.get("USERS", "4"))
MSGS = int(os.environ.get("MSGS", "5000"))
RUNS = int(os.environ.get("RUNS", "5"))
BATCH = 32
OUT = os.path.join(REPO, "build", "bench")
DOMAIN = "example.test"


def message_text(n):
    body = "".join("line %03d of POP3 benchmark message %d, some text to read back.\n" % (i, n)
                   for i in range(55))
    body += ".a line that starts with a dot\n"
    return ("Return-Path: <bench@remote.test>\nDelivered-To: u@example.test\n"
            "From: <bench@remote.test>\nTo: <u@example.test>\nSubject: pop3 benchmark %d\n"
            "Message-ID: <%d.bench@remote.test>\n\n" % (n, n)) + body


def fill_maildirs(srv, uid, gid):
    for u in range(USERS):
        md = os.path.join(srv.mail_root, DOMAIN, "u%d" % u, "Maildir")
        for sub in ("new", "cur", "tmp"):
            os.makedirs(os.path.join(md, sub), exist_ok=True)
        for n in range(MSGS):
            text = message_text(n).encode()
            wsize = len(text) + text.count(b"\n")
            name = "%d.Q%019X.bench,S=%d,W=%d:2," % (1700000000 + n, u * MSGS + n, len(text),
                                                     wsize)
            with open(os.path.join(md, "cur", name), "wb") as f:
                f.write(text)
        for root, dirs, files in os.walk(os.path.join(srv.mail_root, DOMAIN, "u%d" % u)):
            for d in dirs + files:
                os.chown(os.path.join(root, d), uid, gid)
        os.chown(os.path.join(srv.mail_root, DOMAIN, "u%d" % u), uid, gid)
    os.chown(os.path.join(srv.mail_root, DOMAIN), uid, gid)


class DovecotPop3(DovecotPeer):
    """The integration tests' Dovecot peer, with POP3 instead of IMAP."""
    NAME = "Dovecot POP3"

    def write_config(self, mail_root, users_file, mail_uid, mail_gid):
        super().write_config(mail_root, users_file, mail_uid, mail_gid)
        with open(self.conf_path) as f:
            text = f.read()
        text = text.replace("protocols = imap", "protocols = pop3")
        text = text.replace("service imap-login {\n  inet_listener imap {",
                            "service pop3-login {\n  inet_listener pop3 {")
        text = text.replace("  inet_listener imaps {", "  inet_listener pop3s {")
        text = text.replace("service imap-login {\n  chroot =", "service pop3-login {\n  chroot =")
        with open(self.conf_path, "w") as f:
            f.write(text)

    def _greets(self):
        if self.proc.poll() is not None:
            raise AssertionError("dovecot exited with status %s at start; log:\n%s"
                                 % (self.proc.returncode, self.log_tail()))
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=2) as s:
                return s.recv(512).startswith(b"+OK")
        except OSError:
            return False


def read_reply_line(sock, buf):
    while b"\r\n" not in buf:
        chunk = sock.recv(65536)
        if not chunk:
            raise EOFError("connection closed")
        buf += chunk
    line, rest = buf.split(b"\r\n", 1)
    return line, rest


def client(port, user, q):
    """Log in, RETR every message (pipelined), QUIT; put (messages, bytes)."""
    try:
        s = socket.create_connection(("127.0.0.1", port))
        buf = b""
        line, buf = read_reply_line(s, buf)
        s.sendall(b"USER %s@%s\r\nPASS secret\r\n" % (user.encode(), DOMAIN.encode()))
        for _ in range(2):
            line, buf = read_reply_line(s, buf)
            if not line.startswith(b"+OK"):
                raise AssertionError("%s: login: %r" % (user, line))
        got = 0
        total = 0
        for start in range(1, MSGS + 1, BATCH):
            end = min(start + BATCH, MSGS + 1)
            s.sendall(b"".join(b"RETR %d\r\n" % n for n in range(start, end)))
            for _ in range(start, end):
                # "+OK ..." then the message up to "\r\n.\r\n"
                while True:
                    i = buf.find(b"\r\n.\r\n")
                    if i >= 0:
                        if not buf.startswith(b"+OK"):
                            raise AssertionError("%s: RETR: %r" % (user, buf[:80]))
                        total += i + 5
                        buf = buf[i + 5:]
                        got += 1
                        break
                    chunk = s.recv(1 << 20)
                    if not chunk:
                        raise EOFError("connection closed during RETR")
                    buf += chunk
        s.sendall(b"QUIT\r\n")
        line, buf = read_reply_line(s, buf)
        s.close()
        q.put((got, total, None))
    except Exception as e:  # reported by the parent
        q.put((0, 0, "%s: %s" % (user, e)))


def run_round(port):
    q = multiprocessing.Queue()
    procs = [multiprocessing.Process(target=client, args=(port, "u%d" % u, q))
             for u in range(USERS)]
    t0 = time.monotonic()
    for p in procs:
        p.start()
    results = [q.get() for _ in procs]
    elapsed = time.monotonic() - t0
    for p in procs:
        p.join()
    errors = [r[2] for r in results if r[2]]
    msgs = sum(r[0] for r in results)
    nbytes = sum(r[1] for r in results)
    return elapsed, msgs, nbytes, errors


def main():
    os.makedirs(OUT, exist_ok=True)
    users = ["u%d" % u for u in range(USERS)]
    srv = PosternServer(name="pop3-bench", users=users, config={
        "pop3_listen": "127.0.0.1:%d" % free_port(),
        "pop3_cleartext_networks": "127.0.0.0/8",
        "pop3_connection_limit": "1000",
        "log_level": "warn",
    }, workdir=tempfile.mkdtemp(prefix="postern-bench-pop3-", dir=os.environ.get("TMPDIR")))
    dovecot = None
    failures = []
    try:
        srv.start()
        owner = pwd.getpwnam(srv.settings["mail_owner"]) if IS_ROOT else pwd.getpwuid(os.getuid())
        fill_maildirs(srv, owner.pw_uid, owner.pw_gid)
        if IS_ROOT:
            import grp
            os.chown(srv.users_path, 0, grp.getgrnam("dovecot").gr_gid)
            os.chmod(srv.users_path, 0o640)
        dovecot = DovecotPop3(srv.mail_root, srv.users_path, owner.pw_uid, owner.pw_gid)
        dovecot.start()
        ports = {"postern": int(srv.settings["pop3_listen"].rsplit(":", 1)[1]),
                 "dovecot": dovecot.port}
        rates = {"postern": [], "dovecot": []}
        mbs = {"postern": [], "dovecot": []}
        for name, port in ports.items():  # warm-up
            _, msgs, _, errors = run_round(port)
            if errors or msgs != USERS * MSGS:
                failures.append("%s warm-up: %d of %d messages; %s" % (name, msgs, USERS * MSGS,
                                                                       errors[:3]))
        for r in range(RUNS):
            for name, port in ports.items():
                elapsed, msgs, nbytes, errors = run_round(port)
                if errors or msgs != USERS * MSGS:
                    failures.append("%s run %d: %d of %d messages; %s"
                                    % (name, r + 1, msgs, USERS * MSGS, errors[:3]))
                    continue
                rates[name].append(msgs / elapsed)
                mbs[name].append(nbytes / elapsed / 1e6)
                print("run %d %-8s %8.0f msgs/s %7.1f MB/s (%.2fs)"
                      % (r + 1, name, msgs / elapsed, nbytes / elapsed / 1e6, elapsed), flush=True)
        lines = ["POP3 RETR throughput: %d users x %d messages (~%d bytes), %d runs, pipelined "
                 "RETR in batches of %d" % (USERS, MSGS, len(message_text(0)), RUNS, BATCH),
                 "%-10s %12s %10s" % ("server", "msgs/s", "MB/s")]
        for name in ("dovecot", "postern"):
            if rates[name]:
                lines.append("%-10s %12.0f %10.1f" % (name, statistics.median(rates[name]),
                                                      statistics.median(mbs[name])))
        if rates["postern"] and rates["dovecot"]:
            ratio = statistics.median(rates["postern"]) / statistics.median(rates["dovecot"])
            lines.append("postern/dovecot: %.2fx (target: at least 1.00x)" % ratio)
        lines.append("RESULT: %s" % ("FAILED" if failures else "ok"))
        lines += ["  - " + f for f in failures]
        text = "\n".join(lines) + "\n"
        print(text)
        with open(os.path.join(OUT, "pop3-results.txt"), "w") as f:
            f.write(text)
    finally:
        if dovecot is not None:
            dovecot.stop()
        srv.stop(expect_rc=None)
        if not os.environ.get("POSTERN_KEEP_TMP"):
            shutil.rmtree(srv.dir, ignore_errors=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""
auth_bench.py - logins per second (issue 11): postern against Dovecot,
in the same run, with the same passwd-file (the same users and hashes),
one system after the other in each round so a slow spell of the machine
hits both alike.

Two comparisons, each for every hash scheme in SCHEMES:

  login over the protocol  a new TCP connection per login, clear text on
                           loopback: postern "EHLO, AUTH PLAIN, QUIT" on
                           port 25 (smtp_auth = yes,
                           auth_cleartext_networks = 127.0.0.0/8) against
                           Dovecot's IMAP "LOGIN, LOGOUT" (ssl = no), which
                           also starts the user's imap process;
  the password service     the auth process alone: postern's auth.sock
                           (its binary protocol, src/auth/auth_proto.h)
                           against Dovecot's auth-client socket (its text
                           protocol, "AUTH id PLAIN service=imap resp=..."),
                           WINDOW requests in flight on each connection.

CLIENTS client processes run for SECONDS each time; a login counts when
the server says it succeeded (235 / "a OK" / RESULT ok / "OK"); anything
else fails the benchmark. Both servers check every password (Dovecot's
auth cache is off by default, postern has none); Dovecot verifies the
crypt schemes in its auth-worker processes, postern in auth_threads
threads (set to the number of CPUs here).

Knobs: SCHEMES="SHA512-CRYPT YESCRYPT" RUNS=3 SECONDS=5 CLIENTS=8
WINDOW=16 USERS=20. Prints a table and writes it to
build/bench/auth-results.txt. Exit status 0 when every login of every run
succeeded (a missed target does not fail it).
"""
import base64
import ctypes
import multiprocessing
import os
import random
import shutil
import socket
import statistics
import struct
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "tests", "integration"))
os.environ.setdefault("POSTERN_BIN", os.path.join(REPO, "build", "postern"))

from harness import IS_ROOT, PosternServer  # noqa: E402
from dovecot_peer import DovecotPeer  # noqa: E402

SCHEMES = os.environ.get("SCHEMES", "SHA512-CRYPT YESCRYPT").split()
RUNS = int(os.environ.get("RUNS", "3"))
SECONDS = float(os.environ.get("SECONDS", "5"))
CLIENTS = int(os.environ.get("CLIENTS", "8"))
WINDOW = int(os.environ.get("WINDOW", "16"))
USERS = int(os.environ.get("USERS", "20"))
OUT = os.path.join(REPO, "build", "bench")
PASSWORD = "bench password 1"


def crypt_hash(prefix, password):
    """A crypt(3) hash made by libcrypt itself with a new setting of prefix
    ($y$ yescrypt, $6$ SHA-512, $2b$ bcrypt): what mkpasswd and doveadm
    pw write (Python's crypt module is going away)."""
    lib = ctypes.CDLL("libcrypt.so.1")
    lib.crypt_gensalt.restype = ctypes.c_char_p
    lib.crypt_gensalt.argtypes = [ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p, ctypes.c_int]
    lib.crypt.restype = ctypes.c_char_p
    lib.crypt.argtypes = [ctypes.c_char_p, ctypes.c_char_p]
    setting = lib.crypt_gensalt(prefix.encode(), 0, None, 0)
    return lib.crypt(password.encode(), setting).decode()


def users_lines(scheme):
    prefix = {"SHA512-CRYPT": "$6$", "YESCRYPT": "$y$", "BLF-CRYPT": "$2b$"}[scheme]
    tag = "{SHA512-CRYPT}" if scheme == "SHA512-CRYPT" else \
        "{BLF-CRYPT}" if scheme == "BLF-CRYPT" else "{CRYPT}"
    return ["user%02d@example.test:%s%s::::::" % (i, tag, crypt_hash(prefix, PASSWORD))
            for i in range(USERS)]


def plain(user):
    return base64.b64encode(("\0%s\0%s" % (user, PASSWORD)).encode()).decode()


# ---- clients (each in its own process) --------------------------------------

def _recv_until(sock, buf, marker):
    while marker not in buf:
        chunk = sock.recv(65536)
        if not chunk:
            raise OSError("closed")
        buf += chunk
    return buf


def smtp_logins(port, deadline, q):
    ok = bad = 0
    while time.monotonic() < deadline:
        user = "user%02d@example.test" % random.randrange(USERS)
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
                buf = _recv_until(s, b"", b"\r\n")
                s.sendall(b"EHLO bench.test\r\n")
                buf = _recv_until(s, b"", b"\r\n250 ")
                buf = _recv_until(s, buf, b"\r\n")
                s.sendall(("AUTH PLAIN %s\r\n" % plain(user)).encode())
                buf = _recv_until(s, b"", b"\r\n")
                good = buf.startswith(b"235 ")
                s.sendall(b"QUIT\r\n")
                _recv_until(s, b"", b"\r\n")
            ok, bad = (ok + 1, bad) if good else (ok, bad + 1)
        except OSError:
            bad += 1
    q.put((ok, bad))


def _tagged(sock, tag):
    """Read lines up to the one that starts with tag; return it."""
    buf = b""
    while True:
        buf = _recv_until(sock, buf, b"\r\n")
        line, buf = buf.split(b"\r\n", 1)
        if line.startswith(tag):
            return line


def imap_logins(port, deadline, q):
    ok = bad = 0
    while time.monotonic() < deadline:
        user = "user%02d@example.test" % random.randrange(USERS)
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
                _recv_until(s, b"", b"\r\n")
                s.sendall(('a LOGIN "%s" "%s"\r\n' % (user, PASSWORD)).encode())
                good = _tagged(s, b"a ").startswith(b"a OK")
                s.sendall(b"b LOGOUT\r\n")
                _tagged(s, b"b ")
            ok, bad = (ok + 1, bad) if good else (ok, bad + 1)
        except OSError:
            bad += 1
    q.put((ok, bad))


def _pstr(b):
    return struct.pack(">H", len(b)) + b


def postern_socket(path, deadline, q):
    ok = bad = 0
    s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    s.connect(path)
    seq = 0

    def send_one():
        nonlocal seq
        seq += 1
        user = ("user%02d@example.test" % random.randrange(USERS)).encode()
        s.send(bytes([1]) + struct.pack(">I", seq) + bytes([0]) + _pstr(b"127.0.0.1") +
               _pstr(user) + _pstr(PASSWORD.encode()) + _pstr(b"bench"))
    for _ in range(WINDOW):
        send_one()
    inflight = WINDOW
    while inflight:
        p = s.recv(4096)
        inflight -= 1
        if len(p) >= 6 and p[0] == 2 and p[5] == 0:
            ok += 1
        else:
            bad += 1
        if time.monotonic() < deadline:
            send_one()
            inflight += 1
    s.close()
    q.put((ok, bad))


def dovecot_socket(path, deadline, q):
    ok = bad = 0
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(path)
    buf = _recv_until(s, b"", b"DONE\n")
    s.sendall(b"VERSION\t1\t2\nCPID\t%d\n" % os.getpid())
    rid = 0

    def send_one():
        nonlocal rid
        rid += 1
        user = "user%02d@example.test" % random.randrange(USERS)
        s.sendall(("AUTH\t%d\tPLAIN\tservice=imap\tnologin\tresp=%s\n" % (rid, plain(user))).encode())
    for _ in range(WINDOW):
        send_one()
    inflight = WINDOW
    buf = b""
    while inflight:
        while b"\n" not in buf:
            chunk = s.recv(65536)
            if not chunk:
                raise OSError("closed")
            buf += chunk
        line, buf = buf.split(b"\n", 1)
        inflight -= 1
        if line.startswith(b"OK\t"):
            ok += 1
        else:
            bad += 1
        if time.monotonic() < deadline:
            send_one()
            inflight += 1
    s.close()
    q.put((ok, bad))


def measure(fn, target):
    q = multiprocessing.Queue()
    deadline = time.monotonic() + SECONDS
    t0 = time.monotonic()
    procs = [multiprocessing.Process(target=fn, args=(target, deadline, q))
             for _ in range(CLIENTS)]
    for p in procs:
        p.start()
    results = [q.get(timeout=SECONDS + 120) for _ in procs]
    for p in procs:
        p.join()
    elapsed = time.monotonic() - t0
    ok = sum(r[0] for r in results)
    bad = sum(r[1] for r in results)
    return ok / elapsed, ok, bad


# ---- servers --------------------------------------------------------------------

def start_postern(lines):
    srv = PosternServer(name="auth-bench", users=[], aliases={}, config={
        "smtp_auth": "yes", "auth_cleartext_networks": "127.0.0.0/8",
        "auth_threads": str(os.cpu_count() or 2), "workers": str(os.cpu_count() or 2),
        "error_limit": "1000"})
    with open(srv.users_path, "w") as f:
        f.write("\n".join(lines) + "\n")
    srv.start()
    srv.wait_log(r"auth: %d users with passwords" % len(lines))
    return srv


def start_dovecot(users_path, workdir):
    os.makedirs(os.path.join(workdir, "mail"), exist_ok=True)
    uid = os.geteuid() if not IS_ROOT else __import__("pwd").getpwnam("mail").pw_uid
    gid = os.getegid() if not IS_ROOT else __import__("pwd").getpwnam("mail").pw_gid
    if IS_ROOT:
        os.chown(os.path.join(workdir, "mail"), uid, gid)
    peer = DovecotPeer(os.path.join(workdir, "mail"), users_path, uid, gid)
    with open(peer.conf_path, "a") as f:
        # as many auth workers as Dovecot wants (its default, 30), no cache
        f.write("service auth {\n  unix_listener auth-bench {\n    mode = 0666\n  }\n}\n")
        f.write("auth_verbose = no\n")
    peer.start()
    return peer


def main():
    os.makedirs(OUT, exist_ok=True)
    rows = []
    failed = False
    for scheme in SCHEMES:
        lines = users_lines(scheme)
        srv = start_postern(lines)
        dv = None
        try:
            os.chmod(srv.users_path, 0o644)  # Dovecot's auth worker reads it too
            dv = start_dovecot(srv.users_path, srv.dir)
            auth_sock = os.path.join(srv.spool_dir, "private", "auth.sock")
            dv_sock = os.path.join(dv.dir, "run", "auth-bench")
            res = {k: [] for k in ("pt_smtp", "dv_imap", "pt_sock", "dv_sock")}
            for run in range(RUNS):
                for key, fn, target in (("pt_smtp", smtp_logins, srv.port),
                                        ("dv_imap", imap_logins, dv.port),
                                        ("pt_sock", postern_socket, auth_sock),
                                        ("dv_sock", dovecot_socket, dv_sock)):
                    rate, ok, bad = measure(fn, target)
                    res[key].append(rate)
                    print("%s run %d %-8s %8.1f logins/s (%d ok, %d failed)"
                          % (scheme, run + 1, key, rate, ok, bad), flush=True)
                    if bad or not ok:
                        failed = True
            med = {k: statistics.median(v) for k, v in res.items()}
            rows.append((scheme, med))
        finally:
            if dv is not None:
                dv.stop()
            srv.stop()
            shutil.rmtree(srv.dir, ignore_errors=True)
    out = ["AUTH logins per second, medians of %d runs of %.0f s, %d clients, %d CPUs"
           % (RUNS, SECONDS, CLIENTS, os.cpu_count() or 0),
           "%-13s %14s %14s %7s %14s %14s %7s" % ("scheme", "postern SMTP", "Dovecot IMAP",
                                                  "ratio", "postern sock", "Dovecot sock",
                                                  "ratio")]
    for scheme, m in rows:
        out.append("%-13s %14.1f %14.1f %6.2fx %14.1f %14.1f %6.2fx"
                   % (scheme, m["pt_smtp"], m["dv_imap"], m["pt_smtp"] / m["dv_imap"],
                      m["pt_sock"], m["dv_sock"], m["pt_sock"] / m["dv_sock"]))
    out.append("RESULT: %s" % ("FAILED (a login did not succeed)" if failed else "ok"))
    text = "\n".join(out) + "\n"
    print(text)
    with open(os.path.join(OUT, "auth-results.txt"), "w") as f:
        f.write(text)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

"""
limits_helpers.py - helpers of the tests of the limits across smtp
workers (test_concurrency.py, test_rates.py, test_greylist.py): steering
connections to one worker (the others are stopped with SIGSTOP, so the
kernel hands the listener's connections to the one that runs), telling
which worker served a connection (its "connect" log line), and the base
configuration (limits from loopback, where the tests connect from).
"""
import contextlib
import os
import re
import signal
import socket
import time

from harness import SmtpConn, scaled, wait_until

# Loopback is in limits_ignore_networks and greylist_ignore_networks by
# default: the tests connect from it, so they empty both.
LIMITS_BASE = {
    "limits_ignore_networks": "",
    "greylist_ignore_networks": "",
    "workers": "2",
}


def smtp_workers(srv, n=2):
    """The pids of the n smtp workers, once they have all started."""
    srv.wait_roles(smtp=n, qmgr=1)
    return sorted(srv.role_pids("smtp"))


@contextlib.contextmanager
def only_worker(srv, pid):
    """Stop every other smtp worker while the block runs: connections
    made meanwhile are accepted by pid, provided the block lasts until
    pid has accepted them (the kernel completes a connection before any
    worker accepts it: read its greeting, or wait for its connect line
    with worker_of, inside the block)."""
    others = [p for p in srv.role_pids("smtp") if p != pid]
    for p in others:
        os.kill(p, signal.SIGSTOP)
    # the signal is asynchronous: wait until each is really stopped
    wait_until(lambda: all(_state(p) in ("T", "t", None) for p in others), scaled(5),
               what="the other workers to stop")
    try:
        yield
    finally:
        for p in others:
            try:
                os.kill(p, signal.SIGCONT)
            except ProcessLookupError:
                pass


def _state(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            data = f.read()
    except FileNotFoundError:
        return None
    return data[data.rindex(")") + 2:].split()[0]


def worker_of(srv, conn, since):
    """The pid of the worker that logged the connection of conn (an
    SmtpConn or a socket) in the log from byte offset since, taken before
    the connection was made (a local port may have served an earlier
    connection)."""
    sock = conn.sock if isinstance(conn, SmtpConn) else conn
    port = sock.getsockname()[1]
    rx = re.compile(r"postern/smtp\[(\d+)\]: info: connect client=\S+ port=%d\b" % port)
    m = wait_until(lambda: rx.search(srv.log_since(since)), scaled(5),
                   what="connect line of port %d" % port)
    return int(m.group(1))


def connect_from(srv, source, greet=True):
    """An SmtpConn from a given loopback source address."""
    c = SmtpConn.__new__(SmtpConn)
    c.timeout = scaled(10)
    c.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    c.sock.settimeout(c.timeout)
    c.sock.bind((source, 0))
    c.sock.connect(("127.0.0.1", srv.port))
    c.buf = b""
    c.greeting = c.reply() if greet else None
    return c


def open_fds(pid):
    try:
        return len(os.listdir("/proc/%d/fd" % pid))
    except FileNotFoundError:
        return 0


def send_one(c, sender, rcpt, subject="limits"):
    """MAIL, RCPT, DATA on an open session (after EHLO): the final
    Reply, or the first refusal."""
    r = c.cmd("MAIL FROM:<%s>" % sender)
    if r.code != 250:
        return r
    r = c.cmd("RCPT TO:<%s>" % rcpt)
    if r.code != 250:
        c.cmd("RSET")
        return r
    r = c.cmd("DATA")
    if r.code != 354:
        return r
    c.send("Subject: %s\r\nFrom: <%s>\r\n\r\nbody\r\n.\r\n" % (subject, sender))
    return c.reply()


def sleep_until(t):
    left = t - time.monotonic()
    if left > 0:
        time.sleep(left)

"""
spamd_peer.py - a private spamd (Debian package spamd, SpamAssassin) for
the tests that need SpamAssassin itself, such as spamass-milter in
test_milter_real.py: never the system's spamd or its configuration.

SpamdPeer listens on a free loopback port, local tests only (-L: no DNS,
no network checks), no per-user configuration (-x), one or two children,
its pid file and log in a temporary folder; as root it runs as Debian's
debian-spamd account. It runs in the foreground in its own process group
and is always stopped by its pid (stop()). Starting it takes seconds (the
rules are compiled): start one per test module. When spamd is not
installed, start() fails saying how to install it.
"""
import os
import pwd
import shutil
import socket
import tempfile

from peer_process import PeerProcess
from harness import IS_ROOT, free_port, scaled

NOT_INSTALLED = ("spamd is not installed: these tests need the Debian packages spamd and "
                 "spamc (tools/install-deps.sh, run by make check, installs them)")
SPAMD_USER = "debian-spamd"


class SpamdPeer(PeerProcess):
    """spamd on 127.0.0.1:<port>."""

    NAME = "spamd"
    STDERR_NAME = "spamd.stderr"
    STOP_GRACE = 15

    def __init__(self):
        self.binary = shutil.which("spamd") or ("/usr/sbin/spamd"
                                               if os.access("/usr/sbin/spamd", os.X_OK) else None)
        if self.binary is None:
            raise AssertionError(NOT_INSTALLED)
        self.dir = tempfile.mkdtemp(prefix="postern-it-spamd-")
        os.chmod(self.dir, 0o755)
        self.port = free_port()
        self.log_path = os.path.join(self.dir, "spamd.log")
        self.pid_path = os.path.join(self.dir, "spamd.pid")
        self.proc = None
        open(self.log_path, "a").close()
        if IS_ROOT:  # spamd writes its log as the account it switches to
            account = pwd.getpwnam(SPAMD_USER)
            os.chown(self.log_path, account.pw_uid, account.pw_gid)

    def argv(self):
        args = [self.binary, "-L", "-x", "-i", "127.0.0.1", "-p", str(self.port),
                "-A", "127.0.0.1", "--min-children=1", "--max-children=2",
                "--min-spare=1", "--max-spare=1", "-r", self.pid_path, "-s", self.log_path]
        if IS_ROOT:
            args += ["-u", SPAMD_USER]
        return args

    def start(self, timeout=None):
        timeout = timeout if timeout is not None else scaled(120)
        return self.launch(self.argv(), self.ping, timeout,
                           "spamd answering PING on 127.0.0.1:%d" % self.port)

    def ping(self):
        if self.proc.poll() is not None:
            raise AssertionError("spamd exited with status %s at start; log:\n%s"
                                 % (self.proc.returncode, self.log_tail()))
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=5) as s:
                s.sendall(b"PING SPAMC/1.5\r\n\r\n")
                return b"PONG" in s.recv(128)
        except OSError:
            return False

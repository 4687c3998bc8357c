"""
clamd_peer.py - a private clamd (Debian clamav-daemon) for the antivirus
tests in clamd mode, loaded with postern's test signatures
(etc/clamav-test), never the system's clamd, configuration or databases.

ClamdPeer owns a temporary folder with its own clamd.conf (clamd -c
FILE), unix socket (mode 0666, so that postern's unprivileged scanners
reach it), optional loopback TCP port, temporary folder, pid file and log;
it runs clamd in the foreground in its own process group and always
stops it by its pid (stop()). freshclam is never involved. When clamd is
not installed, start() fails with a message saying how to install it:
the tests that need it must not pass by skipping.
"""
import os
import shutil
import socket
import tempfile

from peer_process import PeerProcess
from harness import REPO, free_port, scaled

CLAMD_CANDIDATES = ("/usr/sbin/clamd",)
TEST_SIGNATURES = os.path.join(REPO, "etc", "clamav-test")
NOT_INSTALLED = ("clamd is not installed: the clamd mode tests need the Debian package "
                 "clamav-daemon (tools/install-deps.sh, run by make check, installs it)")


def clamd_binary():
    found = shutil.which("clamd") or next(
        (p for p in CLAMD_CANDIDATES if os.access(p, os.X_OK)), None)
    if found is None:
        raise AssertionError(NOT_INSTALLED)
    return found


class ClamdPeer(PeerProcess):
    """clamd on <dir>/clamd.sock (and 127.0.0.1:<port> with tcp=True)."""

    NAME = "clamd"
    STDERR_NAME = "clamd.stderr"
    STOP_GRACE = 15

    def __init__(self, stream_max="4M", tcp=False, db_dir=TEST_SIGNATURES, extra=()):
        self.binary = clamd_binary()
        self.dir = tempfile.mkdtemp(prefix="postern-it-clamd-")
        os.chmod(self.dir, 0o755)  # postern's scanners reach the socket
        self.socket_path = os.path.join(self.dir, "clamd.sock")
        self.conf_path = os.path.join(self.dir, "clamd.conf")
        self.log_path = os.path.join(self.dir, "clamd.log")
        self.pid_path = os.path.join(self.dir, "clamd.pid")
        self.tmp_dir = os.path.join(self.dir, "tmp")
        os.mkdir(self.tmp_dir)
        self.port = free_port() if tcp else None
        self.stream_max = stream_max
        self.proc = None
        lines = [
            "# written by tests/integration/clamd_peer.py",
            "Foreground yes",
            "LocalSocket %s" % self.socket_path,
            "LocalSocketMode 666",
            "FixStaleSocket yes",
            "DatabaseDirectory %s" % db_dir,
            "TemporaryDirectory %s" % self.tmp_dir,
            "PidFile %s" % self.pid_path,
            "LogFile %s" % self.log_path,
            "LogTime yes",
            "LogSyslog no",
            "StreamMaxLength %s" % stream_max,
            "MaxThreads 4",
            "ReadTimeout 30",
            "CommandReadTimeout 10",
            "SelfCheck 3600",
            "Bytecode no",
        ]
        if self.port:
            lines += ["TCPSocket %d" % self.port, "TCPAddr 127.0.0.1"]
        lines += list(extra)
        with open(self.conf_path, "w") as f:
            f.write("\n".join(lines) + "\n")

    @property
    def pid(self):
        return self.proc.pid if self.proc else None

    @property
    def tcp_spec(self):
        return "127.0.0.1:%d" % self.port if self.port else None

    def start(self, timeout=None):
        timeout = timeout if timeout is not None else scaled(60)
        return self.launch([self.binary, "-c", self.conf_path, "--foreground"], self.ping, timeout,
                           "clamd answering PING on %s" % self.socket_path)

    def ping(self):
        if self.proc.poll() is not None:
            raise AssertionError("clamd exited with status %s at start; log:\n%s"
                                 % (self.proc.returncode, self.log_tail()))
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                s.settimeout(2)
                s.connect(self.socket_path)
                s.sendall(b"zPING\0")
                return s.recv(64).startswith(b"PONG")
        except OSError:
            return False


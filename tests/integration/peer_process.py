"""
peer_process.py - what the test peers (unbound, clamd, Dovecot: real
daemons the integration tests start in a private folder) share: the
running check, stopping (SIGTERM, a bounded wait, then SIGKILL of the
process group so that no child outlives the test), removing the folder
(kept with POSTERN_KEEP_TMP), use as a context manager, and reading the
daemon's log.

A subclass sets self.dir, self.log_path and self.proc (started with
start_new_session=True, so that its pid is its process group) and
defines start() (usually with launch()); NAME names the daemon in
failures, STDERR_NAME the file in self.dir that its output goes to
(added to log_tail), STOP_GRACE how long SIGTERM may take (seconds,
before scaling for slow builds).
"""
import os
import shutil
import signal
import subprocess

from harness import KEEP_TMP, scaled, wait_until


class PeerProcess:
    STDERR_NAME = None
    STOP_GRACE = 15

    proc = None
    dir = None
    log_path = None

    NAME = "the peer"

    def start(self, timeout=None):
        raise NotImplementedError

    def launch(self, argv, ready, timeout, what):
        """Start argv in self.dir, its output into STDERR_NAME, in a
        session of its own; wait until ready() is true (at most timeout
        seconds), else stop it and fail with the log's last lines."""
        with open(os.path.join(self.dir, self.STDERR_NAME), "ab") as err:
            self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=err, stderr=err,
                                         start_new_session=True, cwd=self.dir)
        try:
            wait_until(ready, timeout, interval=0.1, what=what)
        except AssertionError as e:
            tail = self.log_tail()
            self.stop()
            raise AssertionError("%s; %s log:\n%s" % (e, self.NAME, tail))
        return self

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self):
        """SIGTERM the daemon, SIGKILL its process group if it lingers;
        remove the folder."""
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.send_signal(signal.SIGTERM)
                try:
                    self.proc.wait(scaled(self.STOP_GRACE))
                except subprocess.TimeoutExpired:
                    pass
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            if self.proc.poll() is None:
                self.proc.wait(scaled(10))
            self.proc = None
        if self.dir is None:
            return
        if KEEP_TMP:
            print("kept %s" % self.dir)
        else:
            shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def log(self):
        """The daemon's log file as text ("" before it exists)."""
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except (FileNotFoundError, TypeError):
            return ""

    def log_tail(self, n=40):
        """The last n lines of the log and of the captured stderr."""
        text = self.log()
        if self.STDERR_NAME is not None:
            try:
                with open(os.path.join(self.dir, self.STDERR_NAME), "rb") as f:
                    text += f.read().decode("utf-8", "replace")
            except FileNotFoundError:
                pass
        return "\n".join(text.splitlines()[-n:])

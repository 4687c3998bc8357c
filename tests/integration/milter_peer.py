"""
milter_peer.py - the test milter (tests/milter/test_milter.c, built as
build/tests/test_milter beside the postern binary under test) as a
process of the integration tests: started on a unix or TCP socket with a
script of replies and changes (see the top of test_milter.c), and read
back through its log, one JSON object per callback.

TestMilter(script=..., inet=False) starts it (script_in_env=True: the
script goes in TEST_MILTER_SCRIPT instead of a file); set_script()
changes what it does from the next connection on; events() returns the callbacks so
far ([{"conn", "msg", "stage", "args", "macros", ...}]); stop() ends it
; remove() also removes its folder. spec is what an MTA's configuration names it by
(unix:/path or inet:127.0.0.1:PORT, the form of Postfix's smtpd_milters
and postern's milters).
"""
import json
import os
import shutil
import subprocess
import tempfile

from harness import KEEP_TMP, POSTERN_BIN, free_port, scaled, wait_until

MILTER_BIN = os.path.join(os.path.dirname(POSTERN_BIN), "tests", "test_milter")


def milter_unusable():
    if not os.path.exists(MILTER_BIN):
        return "%s missing: run make tools (or make check-integration)" % MILTER_BIN
    return None


class TestMilter:
    __test__ = False  # not a test case

    def __init__(self, script="", inet=False, name="milter", timeout=30, script_in_env=False):
        why = milter_unusable()
        if why:
            raise AssertionError(why)
        self.dir = tempfile.mkdtemp(prefix="postern-it-%s-" % name)
        # Postfix's smtpd (user postfix) and postern's roles connect to a
        # unix socket here: let them through the folder
        os.chmod(self.dir, 0o755)
        self.log_path = os.path.join(self.dir, "milter.log")
        self.script_path = os.path.join(self.dir, "script")
        self.set_script(script)
        if inet:
            self.port = free_port()
            listen = "inet:%d@127.0.0.1" % self.port
            self.spec = "inet:127.0.0.1:%d" % self.port
        else:
            self.port = None
            self.socket_path = os.path.join(self.dir, "milter.sock")
            listen = "unix:" + self.socket_path
            self.spec = "unix:" + self.socket_path
        # the script in a file (-c, read at each connection, set_script
        # changes it) or, fixed for the milter's life, in TEST_MILTER_SCRIPT
        args = [MILTER_BIN, "-p", listen, "-l", self.log_path, "-t", str(timeout)]
        env = dict(os.environ)
        if script_in_env:
            env["TEST_MILTER_SCRIPT"] = ";".join(l.strip() for l in script.splitlines()
                                                 if l.strip())
        else:
            args += ["-c", self.script_path]
        with open(os.path.join(self.dir, "stderr"), "wb") as err:
            self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=err, env=env)
        line = self.proc.stdout.readline()
        if line.strip() != b"ready":
            self.stop()
            raise AssertionError("test milter did not start: %r %s" % (line, self.stderr()))
        if not inet:
            os.chmod(self.socket_path, 0o777)

    def set_script(self, text):
        """What to answer from the next connection on (lines of
        directives, see test_milter.c)."""
        tmp = self.script_path + ".new"
        with open(tmp, "w") as f:
            f.write(text.strip() + "\n")
        os.rename(tmp, self.script_path)

    def events(self, stage=None):
        try:
            with open(self.log_path, "rb") as f:
                data = f.read().decode("utf-8", "surrogateescape")
        except FileNotFoundError:
            return []
        out = [json.loads(l) for l in data.splitlines() if l.strip()]
        return [e for e in out if stage is None or e["stage"] == stage]

    def wait_event(self, stage, n=1, timeout=None):
        return wait_until(lambda: len(self.events(stage)) >= n and self.events(stage),
                          timeout or scaled(20), what="test milter %s callback" % stage)

    def stderr(self):
        try:
            with open(os.path.join(self.dir, "stderr"), "rb") as f:
                return f.read().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            # libmilter notices SIGTERM only when its listener's poll times
            # out (seconds); nothing is lost by not waiting for that: the
            # log is written line by line
            self.proc.terminate()
            try:
                self.proc.wait(0.5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc is not None and self.proc.stdout is not None:
            self.proc.stdout.close()
        self.proc = None

    def remove(self):
        """stop(), then remove its folder (log included)."""
        self.stop()
        if not KEEP_TMP:
            shutil.rmtree(self.dir, ignore_errors=True)

"""
test_scan.py - content scanning infrastructure (issue 7) against the real
server: the scan master and its scanners, over SMTP.

A test-only LD_PRELOAD library (preload/scanmarker.c) makes a scanner
crash, hang or pause when the message it maps holds a marker, so these
tests need no real antivirus or rules stage: "scan = yes" runs the
pipeline with the MIME limits only. Checked: a clean message is scanned
and delivered; a scanner that crashes, is killed from outside or overruns
scan_timeout costs only its message (451 4.7.0; the session goes on, other
sessions are served meanwhile, the scanner is replaced); scan_fail_open
accepts that message and says so in the log; the scan master itself can
be killed and comes back; a reload while a scan runs lets that message
finish and moves every worker to the new scan master; "scan = no" and a
configuration with nothing to scan start no scanner; and `postern scan`
on files (verdict lines, --json, exit statuses).

The verdicts of each real stage (virus found, rules, quarantine, tags)
are tested by those stages' own tests; the mapping of every verdict onto
SMTP replies and the queue file is tested in tests/unit/test_scan_client.c.
"""
import json
import os
import re
import signal
import subprocess
import threading
import time

from harness import (IS_ROOT, POSTERN_BIN, PRELOAD_DIR, PosternTestCase, SmtpConn, descendants,
                     make_message, process_alive, queue_id_of, scaled, wait_until)

CRASH = "POSTERN-TEST-SCANNER-CRASH"
HANG = "POSTERN-TEST-SCANNER-HANG"
PAUSE = "POSTERN-TEST-SCANNER-PAUSE"


def wire(text):
    """Message text as sent after DATA: CRLF, dot-stuffed, terminated."""
    body = text.replace("\r\n", "\n").replace("\n", "\r\n")
    body = "\r\n".join(("." + l) if l.startswith(".") else l for l in body.split("\r\n"))
    if not body.endswith("\r\n"):
        body += "\r\n"
    return (body + ".\r\n").encode()


class ScanServerTest(PosternTestCase):
    """One server per test: scanning on (MIME limits only), two scanners,
    one smtp worker, the marker library preloaded."""

    def start_scan_server(self, **settings):
        lib = os.path.join(PRELOAD_DIR, "scanmarker.so")
        self.assertTrue(os.path.exists(lib), "%s missing: run make check-integration" % lib)
        config = {"scan": "yes", "scan_workers": "2", "workers": "1"}
        config.update(settings)
        srv = self.start_server(config=config,
                                env={"LD_PRELOAD": lib, "POSTERN_TEST_SCAN_MARKERS": "1"})
        srv.wait_log(r"scan master ready")
        return srv

    # -- processes --

    def scan_master(self, srv):
        pids = srv.role_pids("scan")
        self.assertTrue(pids, "no scan master; log:\n" + srv.log_tail())
        return pids[-1]

    def scanners(self, srv, master=None):
        return descendants(master or self.scan_master(srv))

    def wait_scanners(self, srv, n, master=None):
        return wait_until(lambda: len(self.scanners(srv, master)) == n and
                          self.scanners(srv, master), scaled(10),
                          what="%d scanners" % n)

    def busy_scanner(self, srv):
        """The scanner holding a file of spool/incoming/ open."""
        def find():
            for pid in self.scanners(srv):
                try:
                    fds = os.listdir("/proc/%d/fd" % pid)
                except FileNotFoundError:
                    continue
                for fd in fds:
                    try:
                        target = os.readlink("/proc/%d/fd/%s" % (pid, fd))
                    except OSError:
                        continue
                    if "/incoming/" in target:
                        return pid
            return None
        return wait_until(find, scaled(10), what="a scanner at work")

    # -- SMTP --

    def send(self, c, text, rcpt="alice@example.test"):
        self.start_data(c, "sender@remote.test", [rcpt])
        c.send(wire(text))

    def expect_tempfail(self, c, timeout=None):
        r = c.reply(timeout=timeout or scaled(15))
        self.assertReply(r, 451, "4.7.0")
        return r

    def clean_message_goes_through(self, srv, c=None):
        """A clean message on c (or a new session) is scanned and queued."""
        own = c is None
        if own:
            c = SmtpConn(srv.port)
            c.ehlo()
        try:
            self.send(c, make_message(subject="clean", body="nothing to see\r\n"))
            r = c.reply(timeout=scaled(15))
            self.assertReply(r, 250)
            return queue_id_of(r.text)
        finally:
            if own:
                c.close()


class ScannerFailureTest(ScanServerTest):

    def test_clean_message_is_scanned_and_delivered(self):
        srv = self.start_scan_server()
        self.wait_scanners(srv, 2)
        qid = self.clean_message_goes_through(srv)
        srv.wait_log(r"%s: scan action=accept .*mime=" % qid)
        srv.wait_delivery("alice", qid)

    def test_scanner_crash_costs_only_its_message(self):
        srv = self.start_scan_server()
        before = set(self.wait_scanners(srv, 2))
        c = self.open_session(srv)
        self.send(c, make_message(subject="crash", body=CRASH + "\r\n"))
        self.expect_tempfail(c)
        self.assertEqual(srv.spool_files("incoming") + srv.spool_files("queue"), [])
        srv.wait_log(r"scanner pid \d+ died: answered 451 4.7.0")
        srv.wait_log(r"scan action=tempfail reason=scan_crashed")
        # The session goes on, and the scanner was replaced.
        self.clean_message_goes_through(srv, c)
        after = set(self.wait_scanners(srv, 2))
        self.assertEqual(len(before - after), 1, "exactly one scanner replaced")

    def test_scanner_killed_mid_scan(self):
        srv = self.start_scan_server()
        self.wait_scanners(srv, 2)
        c = self.open_session(srv)
        self.send(c, make_message(subject="stuck", body=HANG + "\r\n"))
        victim = self.busy_scanner(srv)
        os.kill(victim, signal.SIGKILL)
        self.expect_tempfail(c, timeout=scaled(5))
        self.clean_message_goes_through(srv, c)
        scanners = self.wait_scanners(srv, 2)
        self.assertNotIn(victim, scanners)

    def test_scan_timeout_kills_the_scanner_and_others_are_served(self):
        srv = self.start_scan_server(scan_timeout="2s")
        self.wait_scanners(srv, 2)
        c = self.open_session(srv)
        t0 = time.monotonic()
        self.send(c, make_message(subject="hangs", body=HANG + "\r\n"))
        victim = self.busy_scanner(srv)
        # Meanwhile another session of the same (only) worker is served,
        # its message scanned by the other scanner.
        t1 = time.monotonic()
        self.clean_message_goes_through(srv)
        self.assertLess(time.monotonic() - t1, scaled(1.5))
        self.expect_tempfail(c, timeout=scaled(10))
        took = time.monotonic() - t0
        self.assertGreaterEqual(took, 1.9)
        self.assertLess(took, scaled(6))
        srv.wait_log(r"took longer than scan_timeout \(2s\) and was killed")
        srv.wait_log(r"scan action=tempfail reason=scan_timeout")
        wait_until(lambda: not process_alive(victim), scaled(5), what="the scanner to die")
        self.clean_message_goes_through(srv, c)
        self.wait_scanners(srv, 2)

    def test_fail_open_accepts_and_logs(self):
        srv = self.start_scan_server(scan_fail_open="yes")
        self.wait_scanners(srv, 2)
        c = self.open_session(srv)
        self.send(c, make_message(subject="crash open", body=CRASH + "\r\n"))
        r = c.reply(timeout=scaled(15))
        self.assertReply(r, 250)
        qid = queue_id_of(r.text)
        srv.wait_log(r"%s: scan action=accept fail_open=yes reason=scan_crashed" % qid)
        srv.wait_log(r"scanner pid \d+ died: answered accept \(scan_fail_open\)")
        srv.wait_delivery("alice", qid)

    def test_scan_master_killed_comes_back(self):
        srv = self.start_scan_server()
        master = self.scan_master(srv)
        scanners = self.wait_scanners(srv, 2)
        offset = srv.log_size()
        os.kill(master, signal.SIGKILL)
        srv.wait_log(r"scan master pid %d killed by signal 9" % master, since=offset)
        # Its scanners follow it (parent-death signal) ...
        wait_until(lambda: not any(process_alive(p) for p in scanners), scaled(5),
                   what="the old scanners to die")
        # ... and a new scan master serves the same workers.
        srv.wait_log(r"scan master ready", since=offset)
        new = self.scan_master(srv)
        self.assertNotEqual(new, master)
        self.wait_scanners(srv, 2, new)
        self.clean_message_goes_through(srv)


class ScanStopTest(ScanServerTest):

    def assert_clean_stop(self, srv, offset, rc):
        log = srv.log_since(offset)
        self.assertEqual(rc, 0, log)
        trouble = [l for l in log.splitlines()
                   if re.search(r": (warning|error|fatal|panic): |exited with status|"
                                r"killed by signal|ready", l)]
        self.assertEqual(trouble, [], "the stop was not clean:\n" + log)
        self.assertIn("scan master exiting", log)

    def test_ctrl_c_and_sigterm_stop_cleanly_with_a_scan_running(self):
        srv = self.start_scan_server()
        for how in ("SIGINT to the group", "SIGTERM"):
            if how == "SIGTERM":
                srv.start()
                srv.wait_log(r"scan master ready", since=offset)
            self.wait_scanners(srv, 2)
            c = self.open_session(srv)
            self.send(c, make_message(subject="pausing", body=PAUSE + "\r\n"))
            self.busy_scanner(srv)
            kids = srv.children()
            offset = srv.log_size()
            if how == "SIGTERM":
                os.kill(srv.pid, signal.SIGTERM)
            else:
                os.killpg(srv.pid, signal.SIGINT)
            # The message being scanned is still answered (the session
            # finishes its transaction), then everything exits 0.
            r = c.reply(timeout=scaled(10))
            self.assertEqual(r.code, 250, r)
            self.assertEqual(c.reply(timeout=scaled(5)).code, 421)  # and the session ends
            c.close()
            rc = srv.proc.wait(scaled(20))
            srv.stop()
            self.assert_clean_stop(srv, offset, rc)
            self.assertFalse([p for p in kids if process_alive(p)], "processes left behind")


class ScanReloadTest(ScanServerTest):

    def test_reload_while_a_scan_runs(self):
        srv = self.start_scan_server()
        old_master = self.scan_master(srv)
        self.wait_scanners(srv, 2)
        c = self.open_session(srv)
        self.send(c, make_message(subject="slow", body=PAUSE + "\r\n"))
        self.busy_scanner(srv)
        offset = srv.log_size()
        srv.reload()
        srv.wait_log(r"reload: .*starting generation 2", since=offset)
        srv.wait_log(r"scan: reload: a new scan master has taken over", since=offset)
        new_master = [p for p in srv.role_pids("scan") if p != old_master]
        self.assertTrue(new_master, "no new scan master")
        # A new session reaches the new scan master at once ...
        self.clean_message_goes_through(srv)
        # ... while the message in the old one is answered when its scan ends.
        r = c.reply(timeout=scaled(10))
        self.assertReply(r, 250)
        srv.wait_delivery("alice", queue_id_of(r.text))
        # The old master leaves once its workers have moved on; the old
        # worker's session goes on, scanned by the new master.
        wait_until(lambda: not process_alive(old_master), scaled(15),
                   what="the old scan master to exit")
        self.clean_message_goes_through(srv, c)
        c.cmd("QUIT")
        self.assertNoPanic(srv)

    def test_reload_turning_scanning_off(self):
        srv = self.start_scan_server()
        old_master = self.scan_master(srv)
        srv.settings["scan"] = "no"
        srv.write_config()
        srv.reload()
        srv.wait_log(r"reload: .*starting generation 2")
        wait_until(lambda: not process_alive(old_master), scaled(15),
                   what="the old scan master to exit")
        offset = srv.log_size()
        qid = self.clean_message_goes_through(srv)
        srv.wait_delivery("alice", qid)
        self.assertNotIn("scan action", srv.log_since(offset))


class ScanMasterFailureTest(ScanServerTest):
    """A new scan master that cannot start (here: its socket cannot be
    bound, through the marker library; with the real stages, a rules file
    or signature set that does not load) stops the start, or keeps the
    running generation on a reload."""

    def marker_env(self, gate):
        return {"LD_PRELOAD": os.path.join(PRELOAD_DIR, "scanmarker.so"),
                "POSTERN_TEST_SCAN_MARKERS": "1", "POSTERN_TEST_SCAN_BIND_FAIL": gate}

    def test_start_is_refused(self):
        srv = self.start_server(start=False, config={"scan": "yes"})
        gate = os.path.join(srv.dir, "fail-bind")
        open(gate, "w").close()
        srv.env.update(self.marker_env(gate))
        rc, log = serve_refused_with_env(srv)
        self.assertEqual(rc, 1, log)
        self.assertIn("scan socket", log)
        self.assertIn("postern cannot work with this configuration: not starting", log)
        self.assertNotIn("smtp worker ready", log)

    def test_reload_keeps_the_running_generation(self):
        srv = self.start_server(start=False, config={"scan": "yes", "workers": "1"})
        gate = os.path.join(srv.dir, "fail-bind")
        srv.env.update(self.marker_env(gate))
        srv.start()
        srv.wait_log(r"scan master ready")
        old_master = self.scan_master(srv)
        before = set(srv.children())
        open(gate, "w").close()
        offset = srv.log_size()
        m = srv.reload()
        self.assertIn("content scanning cannot start with the new configuration", m.group(0))
        self.assertIn("keeping the running generation 1", m.group(0))
        # Everything of generation 1 goes on, scanning included.
        self.assertTrue(process_alive(old_master))
        self.assertTrue(before <= set(srv.children()))
        qid = self.clean_message_goes_through(srv)
        srv.wait_log(r"%s: scan action=accept" % qid, since=offset)
        # Fixed, the next reload goes through.
        os.unlink(gate)
        m = srv.reload(wait_old=True)
        self.assertIn("starting generation 3", m.group(0))
        self.clean_message_goes_through(srv)


    def test_stop_while_the_scan_master_is_loading(self):
        # A stop during the (possibly long) first load is a clean stop,
        # not a start that failed.
        srv = self.start_server(start=False, config={"scan": "yes"})
        gate = os.path.join(srv.dir, "hold-bind")
        open(gate, "w").close()
        srv.env.update({"LD_PRELOAD": os.path.join(PRELOAD_DIR, "scanmarker.so"),
                        "POSTERN_TEST_SCAN_BIND_GATE": gate})
        offset = srv.log_size()
        with open(srv.log_path, "ab") as log:
            proc = subprocess.Popen([POSTERN_BIN, "serve", "-c", srv.conf_path],
                                    stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                    start_new_session=True, cwd=srv.dir,
                                    env=srv._environment())
        try:
            srv.wait_log(r"generation 1: the scan master is loading", since=offset)
            time.sleep(0.3)
            os.kill(proc.pid, signal.SIGTERM)
            rc = proc.wait(scaled(10))
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        log = srv.log_since(offset)
        self.assertEqual(rc, 0, log)
        self.assertNotIn("not starting", log)
        self.assertIn("postern stopped", log)


def serve_refused_with_env(srv):
    """serve_refused, with the server's extra environment."""
    offset = srv.log_size()
    with open(srv.log_path, "ab") as log:
        proc = subprocess.Popen([POSTERN_BIN, "serve", "-c", srv.conf_path],
                                stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                start_new_session=True, cwd=srv.dir, env=srv._environment())
    try:
        rc = proc.wait(scaled(15))
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        raise AssertionError("postern started although it should have refused; log:\n"
                             + srv.log_since(offset))
    return rc, srv.log_since(offset)


class NothingToScanTest(PosternTestCase):

    def test_no_stage_configured_means_no_scanner(self):
        srv = self.start_server()  # scan = auto, no stage in this build's config
        srv.wait_log(r"nothing to scan")
        srv.wait_log(r"smtp worker ready\n")
        wait_until(lambda: not srv.role_pids("scan"), scaled(5), what="the scan master to leave")
        qid = smtplib_send(srv)
        srv.wait_delivery("alice", qid)
        self.assertNotIn("scan action", srv.log())
        self.assertNotIn("warning", "\n".join(l for l in srv.log().splitlines()
                                              if "/scan[" in l))

    def test_scan_no_starts_no_scan_master(self):
        srv = self.start_server(config={"scan": "no"})
        qid = smtplib_send(srv)
        srv.wait_delivery("alice", qid)
        self.assertNotIn("postern/scan[", srv.log())


def smtplib_send(srv):
    with SmtpConn(srv.port) as c:
        c.ehlo()
        c.cmd("MAIL FROM:<sender@remote.test>")
        c.cmd("RCPT TO:<alice@example.test>")
        c.cmd("DATA")
        c.send(wire(make_message(subject="plain")))
        return queue_id_of(c.reply().text)


class ScanCommandTest(PosternTestCase):
    """postern scan on files (no server runs)."""

    def setUp(self):
        super().setUp()
        self.srv = self.start_server(start=False, config={"mime_max_decoded_size": "1k"})
        self.clean = os.path.join(self.srv.dir, "clean.eml")
        self.big = os.path.join(self.srv.dir, "big.eml")
        with open(self.clean, "w") as f:
            f.write(make_message(subject="clean"))
        with open(self.big, "w") as f:
            f.write(make_message(subject="big", body=("y" * 70 + "\r\n") * 40))

    def scan(self, *args, stdin=None):
        return subprocess.run([POSTERN_BIN, "scan", "-c", self.srv.conf_path] + list(args),
                              input=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              timeout=scaled(20))

    def test_clean_file(self):
        p = self.scan(self.clean)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertRegex(p.stdout.decode(), r"^%s: accept time=\d" % re.escape(self.clean))

    def test_blocked_file_and_error(self):
        p = self.scan(self.clean, self.big)
        self.assertEqual(p.returncode, 1, p.stderr)
        lines = p.stdout.decode().splitlines()
        self.assertEqual(len(lines), 2)
        self.assertIn("%s: reject code=554 status=5.6.0 reason=mime_limit "
                      "hits=mime:decoded_too_big" % self.big, lines[1])
        p = self.scan(self.big, os.path.join(self.srv.dir, "missing.eml"))
        self.assertEqual(p.returncode, 2)
        self.assertIn("missing.eml: cannot open: No such file or directory", p.stderr.decode())
        self.assertEqual(len(p.stdout.decode().splitlines()), 1)

    def test_json_and_standard_input(self):
        with open(self.big, "rb") as f:
            data = f.read()
        p = self.scan("--json", self.clean, "-", stdin=data)
        self.assertEqual(p.returncode, 1, p.stderr)
        objs = [json.loads(l) for l in p.stdout.decode().splitlines()]
        self.assertEqual([o["file"] for o in objs], [self.clean, "-"])
        self.assertEqual(objs[0]["action"], "accept")
        self.assertEqual(objs[1]["action"], "reject")
        self.assertEqual(objs[1]["code"], 554)
        self.assertEqual(objs[1]["hits"], ["mime:decoded_too_big"])
        self.assertFalse(objs[1]["failed"])
        self.assertIn("mime", objs[1]["timings_us"])

    def test_usage_errors(self):
        p = self.scan()
        self.assertEqual(p.returncode, 2)
        self.assertIn("name at least one message FILE", p.stderr.decode())
        p = self.scan("--bogus", self.clean)
        self.assertEqual(p.returncode, 2)
        self.assertIn("unknown option --bogus", p.stderr.decode())

    def test_root_scans_as_user_or_nobody(self):
        if not IS_ROOT:
            self.skipTest("needs root: only then does postern scan change account")
        # user = nobody (the harness's): the scan runs as nobody, which must
        # not be able to read a file only root can: opened before the switch.
        os.chmod(self.clean, 0o600)
        p = self.scan(self.clean)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertNotIn("scanning as nobody", p.stderr.decode())
        # A user that does not exist (the demo's, never created): nobody.
        self.srv.settings["user"] = "postern-no-such-account"
        self.srv.write_config()
        p = self.scan(self.clean)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn('user: account "postern-no-such-account" does not exist: scanning as nobody',
                      p.stderr.decode())

    def test_file_larger_than_message_size_limit(self):
        self.srv.settings["message_size_limit"] = "2k"
        self.srv.write_config()
        with open(self.big, "a") as f:
            f.write("z" * 4000 + "\r\n")
        p = self.scan(self.big)
        self.assertEqual(p.returncode, 2)
        self.assertIn("larger than message_size_limit", p.stderr.decode())

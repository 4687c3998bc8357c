"""
test_capture.py - the message capture switch (postern.conf(5) CAPTURE) as
an administrator sees it: copies of incoming messages in capture_dir while
capture_trigger_file exists (or capture = yes), only those matching
capture_senders / capture_recipients / capture_clients when any is set,
refused messages (a virus) included; the files readable by capture_group
only; check-config and serve explain a capture_dir that cannot work.

The servers run one smtp worker, so that the copies are written in the
order the messages came (one capture thread): a message that is not
captured is proved so by a later one that is.
"""
import grp
import os
import pwd
import re
import smtplib
import stat
import time
import uuid

from harness import IS_ROOT, PosternTestCase, make_message, scaled, wait_until
from clamd_peer import TEST_SIGNATURES

# The EICAR test file, from two halves: no file of the tree is a test virus.
EICAR = b"X5O!P%@AP[4\\PZX54(P^)7CC)7}$" + b"EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"
GROUP = "adm"  # Debian's administrators' group; it always exists


def captures(folder):
    """{file name: bytes} of the finished captures (no temporary names)."""
    out = {}
    for name in os.listdir(folder):
        if name.endswith(".eml"):
            with open(os.path.join(folder, name), "rb") as f:
                out[name] = f.read()
    return out


def send(port, sender, rcpts, subject, source="127.0.0.1", body="Hello.\r\n"):
    """One transaction from source; (code, text) of the DATA reply."""
    msg = make_message(subject=subject, sender=sender, to=rcpts[0], body=body)
    with smtplib.SMTP("127.0.0.1", port, local_hostname="client.test", timeout=scaled(30),
                      source_address=(source, 0)) as s:
        s.ehlo()
        code, text = s.mail(sender)
        assert code == 250, (code, text)
        for r in rcpts:
            code, text = s.rcpt(r)
            assert code == 250, (code, text)
        code, text = s.data(msg.encode())
        return code, text.decode("utf-8", "replace")


class CaptureCase(PosternTestCase):

    def capture_dir(self, srv):
        return os.path.join(srv.dir, "capture")

    def wait_capture(self, srv, marker, timeout=None):
        """The capture whose content holds marker (bytes): (name, data)."""
        found = {}

        def look():
            for name, data in captures(self.capture_dir(srv)).items():
                if marker in data:
                    found[name] = data
                    return True
            return False
        wait_until(look, timeout or scaled(10), what="a capture holding %r" % marker)
        return next(iter(found.items()))

    def assertNotCaptured(self, srv, marker):
        for name, data in captures(self.capture_dir(srv)).items():
            self.assertNotIn(marker, data, "%s was captured as %s" % (marker, name))


class TriggerFileTest(CaptureCase):
    """capture_trigger_file switches capture on and off without a reload;
    a message the antivirus refuses is captured too."""

    @classmethod
    def setUpClass(cls):
        cls.srv = cls.start_class_server(config={
            "workers": "1",
            "capture_trigger_file": "capture-on",
            "capture_dir": "capture",
            "capture_group": GROUP,
            "clamav_db_dir": TEST_SIGNATURES,
        })
        cls.trigger = os.path.join(cls.srv.dir, "capture-on")

    def tearDown(self):
        if os.path.exists(self.trigger):
            os.unlink(self.trigger)
        super().tearDown()

    def switch(self, on):
        """Create or remove the trigger file; the worker looks at it at
        most once a second, so every message after that second sees it."""
        if on:
            open(self.trigger, "w").close()
        elif os.path.exists(self.trigger):
            os.unlink(self.trigger)
        time.sleep(1.2)

    def test_folder_made_for_the_group(self):
        st = os.stat(self.capture_dir(self.srv))
        self.assertTrue(stat.S_ISDIR(st.st_mode))
        self.assertEqual(stat.S_IMODE(st.st_mode), 0o2750)
        self.assertEqual(st.st_gid, grp.getgrnam(GROUP).gr_gid)
        if IS_ROOT:
            self.assertEqual(st.st_uid, pwd.getpwnam("nobody").pw_uid)

    def test_trigger_appears_then_goes(self):
        self.switch(True)
        mark_on = uuid.uuid4().hex
        code, text = send(self.srv.port, "someone@remote.test",
                          ["alice@example.test", "bob@example.test"], mark_on)
        self.assertEqual(code, 250, text)
        qid = re.search(r"queued as ([0-9A-F]{19})", text).group(1)
        name, data = self.wait_capture(self.srv, mark_on.encode())
        self.assertEqual(name, qid + ".eml")
        head, _, content = data.partition(b"\nReceived: ")
        head += b"\n"
        # The envelope first, then the content as queued (our Received: first).
        self.assertIn(b"X-Postern-Capture-Queue-Id: %s\n" % qid.encode(), head)
        self.assertIn(b"X-Postern-Capture-Client: 127.0.0.1 helo=client.test\n", head)
        self.assertIn(b"X-Postern-Capture-Sender: <someone@remote.test>\n", head)
        self.assertIn(b"X-Postern-Capture-Recipient: <alice@example.test>\n", head)
        self.assertIn(b"X-Postern-Capture-Recipient: <bob@example.test>\n", head)
        self.assertIn(b"Subject: " + mark_on.encode(), content)
        self.assertTrue(content.endswith(b"\nHello.\n"), content[-40:])
        # The files: mode 0640, group capture_group, owned by the workers' user.
        st = os.stat(os.path.join(self.capture_dir(self.srv), name))
        self.assertEqual(stat.S_IMODE(st.st_mode), 0o640)
        self.assertEqual(st.st_gid, grp.getgrnam(GROUP).gr_gid)
        if IS_ROOT:
            self.assertEqual(st.st_uid, pwd.getpwnam("nobody").pw_uid)
        # The message itself is delivered as usual.
        self.srv.wait_delivery("alice", qid)

        self.switch(False)
        mark_off = uuid.uuid4().hex
        offset = self.srv.log_size()
        code, text = send(self.srv.port, "someone@remote.test", ["alice@example.test"],
                          mark_off)
        self.assertEqual(code, 250, text)
        qid_off = re.search(r"queued as ([0-9A-F]{19})", text).group(1)
        self.srv.wait_delivery("alice", qid_off)
        time.sleep(0.5)
        self.assertNotCaptured(self.srv, mark_off.encode())
        self.assertNotIn("%s: captured" % qid_off, self.srv.log_since(offset))

    def test_refused_virus_is_captured(self):
        self.switch(True)
        mark = uuid.uuid4().hex
        code, text = send(self.srv.port, "someone@remote.test", ["alice@example.test"], mark,
                          body="See this:\r\n" + EICAR.decode() + "\r\n")
        self.assertEqual(code, 550, text)
        self.assertIn("virus found", text)
        name, data = self.wait_capture(self.srv, mark.encode())
        self.assertIn(EICAR, data)
        # Refused: nothing was queued under that id, the capture stays.
        qid = name[:-len(".eml")]
        self.assertRegex(self.srv.log(), r"%s: reject: end-of-data" % qid)


class MatchTest(CaptureCase):
    """capture = yes with lists: only messages whose sender, a recipient
    or the client matches are captured."""

    @classmethod
    def setUpClass(cls):
        cls.srv = cls.start_class_server(config={
            "workers": "1",
            "capture": "yes",
            "capture_dir": "capture",
            "capture_group": GROUP,
            "capture_senders": "spy@remote.test, watched.test",
            "capture_recipients": "bob@example.test",
            "capture_clients": "127.0.0.2/32",
        })

    def test_only_matching_messages(self):
        port = self.srv.port
        cases = [  # (sender, recipients, client, captured?)
            ("other@remote.test", ["alice@example.test"], "127.0.0.1", False),
            ("SPY@remote.test", ["alice@example.test"], "127.0.0.1", True),
            ("anyone@watched.test", ["alice@example.test"], "127.0.0.1", True),
            ("other@remote.test", ["alice@example.test", "bob@example.test"], "127.0.0.1",
             True),
            ("other@remote.test", ["carol@example.test"], "127.0.0.2", True),
            ("spy@elsewhere.test", ["carol@example.test"], "127.0.0.3", False),
        ]
        marks = []
        for sender, rcpts, client, _ in cases:
            mark = uuid.uuid4().hex
            marks.append(mark)
            code, text = send(port, sender, rcpts, mark, source=client)
            self.assertEqual(code, 250, text)
        # One worker, one capture thread: once the last captured one is
        # there, every earlier copy is finished.
        self.wait_capture(self.srv, marks[4].encode())
        for (sender, rcpts, client, wanted), mark in zip(cases, marks):
            with self.subTest(sender=sender, rcpts=rcpts, client=client):
                if wanted:
                    self.wait_capture(self.srv, mark.encode(), timeout=scaled(2))
                else:
                    self.assertNotCaptured(self.srv, mark.encode())


class ConfigCheckTest(CaptureCase):
    """check-config and serve say what is wrong with the capture settings,
    naming FILE:LINE."""

    def check(self, srv):
        p = srv.run_cli("check-config")
        return p.returncode, p.stderr.decode() + p.stdout.decode()

    def line_of(self, srv, key):
        with open(srv.conf_path) as f:
            for n, line in enumerate(f, 1):
                if line.startswith(key + " ="):
                    return n
        raise AssertionError("%s not in the configuration" % key)

    def test_capture_dir_not_set(self):
        srv = self.start_server(start=False, config={"capture": "yes"})
        rc, out = self.check(srv)
        self.assertNotEqual(rc, 0, out)
        self.assertIn("%s:%d: capture: capture_dir is not set" %
                      (srv.conf_path, self.line_of(srv, "capture")), out)
        rc, log = srv.serve_refused()
        self.assertNotEqual(rc, 0)
        self.assertIn("capture_dir is not set", log)

    def test_capture_dir_folder_missing(self):
        srv = self.start_server(start=False, config={
            "capture_trigger_file": "capture-on", "capture_dir": "no/such/capture",
            "capture_group": GROUP})
        rc, out = self.check(srv)
        self.assertNotEqual(rc, 0, out)
        self.assertIn("%s:%d: capture_dir %s: its folder %s does not exist" %
                      (srv.conf_path, self.line_of(srv, "capture_dir"),
                       os.path.join(srv.dir, "no/such/capture"),
                       os.path.join(srv.dir, "no/such")), out)
        rc, log = srv.serve_refused()
        self.assertIn("does not exist", log)

    def test_unknown_group(self):
        srv = self.start_server(start=False, config={
            "capture": "yes", "capture_dir": "capture", "capture_group": "no-such-group-x"})
        rc, out = self.check(srv)
        self.assertNotEqual(rc, 0, out)
        self.assertIn("%s:%d: capture_group no-such-group-x: no such group" %
                      (srv.conf_path, self.line_of(srv, "capture_group")), out)

    def test_folder_others_can_read(self):
        srv = self.start_server(start=False, config={
            "capture": "yes", "capture_dir": "capture", "capture_group": GROUP})
        folder = os.path.join(srv.dir, "capture")
        os.mkdir(folder)
        os.chmod(folder, 0o755)
        rc, out = self.check(srv)
        self.assertNotEqual(rc, 0, out)
        self.assertIn("%s:%d: capture_dir %s: owner uid" %
                      (srv.conf_path, self.line_of(srv, "capture_dir"), folder), out)
        self.assertIn("mode 2750", out)
        rc, log = srv.serve_refused()
        self.assertIn("mode 0755", log)

    def test_folder_the_workers_cannot_reach(self):
        if not IS_ROOT:
            self.skipTest("needs root (the workers run as another account)")
        srv = self.start_server(start=False, config={
            "capture": "yes", "capture_dir": "locked/capture", "capture_group": GROUP})
        locked = os.path.join(srv.dir, "locked")
        os.mkdir(locked, 0o700)  # root's: nobody cannot get through
        rc, out = self.check(srv)
        self.assertNotEqual(rc, 0, out)
        self.assertIn("capture_dir %s/capture: not reachable as user nobody" % locked, out)
        rc, log = srv.serve_refused()
        self.assertIn("not reachable as user nobody", log)

    def test_trigger_file_the_workers_cannot_see(self):
        if not IS_ROOT:
            self.skipTest("needs root (the workers run as another account)")
        srv = self.start_server(start=False, config={
            "capture_trigger_file": "locked/capture-on", "capture_dir": "capture",
            "capture_group": GROUP})
        locked = os.path.join(srv.dir, "locked")
        os.mkdir(locked, 0o700)  # root's: touching a file there would change nothing
        rc, out = self.check(srv)
        self.assertNotEqual(rc, 0, out)
        self.assertIn("capture_trigger_file %s/capture-on: user nobody cannot look for it"
                      % locked, out)

    def test_off_needs_nothing(self):
        # A capture_dir that could not work is no problem while capture is off.
        srv = self.start_server(start=False, config={"capture_dir": "no/such/capture"})
        rc, out = self.check(srv)
        self.assertEqual(rc, 0, out)


class MilterCaptureTest(CaptureCase):
    """postern milter behind a real Postfix captures the same way: the
    message as the MTA sent it, the envelope the MTA gave, refused ones
    too."""

    def test_captured_through_postfix(self):
        from postfix_peer import postfix_unusable
        from sink_peer import SmtpSink, sink_unusable
        from test_milter_server import MilterServer, postfix_with_milter, submit
        why = postfix_unusable() or sink_unusable()
        if why:
            self.skipTest(why)
        sink = SmtpSink().start()
        self.addCleanup(sink.remove)
        srv = MilterServer("capture-milter", "unix", config={
            "capture": "yes", "capture_dir": "capture", "capture_group": GROUP,
            "capture_recipients": "alice@example.test",
            "clamav_db_dir": TEST_SIGNATURES})
        self.addCleanup(lambda: srv.stop(expect_rc=None) if srv.running() else None)
        srv.start()
        peer = postfix_with_milter(srv, sink, "capture")
        self.addCleanup(peer.destroy)
        peer.start()
        clean, virus, other = (uuid.uuid4().hex for _ in range(3))
        # bob's goes first: the copies are queued in the order the
        # messages end, so once the last is there bob's would be too.
        code, text = submit(peer, make_message(subject=other, sender="s@remote.test",
                                               to="bob@example.test"),
                            sender="s@remote.test", rcpts=["bob@example.test"])
        self.assertEqual(code, 250, text)
        code, text = submit(peer, make_message(subject=clean, sender="s@remote.test"),
                            sender="s@remote.test", rcpts=["alice@example.test"])
        self.assertEqual(code, 250, text)
        postfix_id = re.search(r"queued as ([0-9A-Za-z]+)", text).group(1)
        code, text = submit(peer, make_message(subject=virus, sender="s@remote.test",
                                               body="x\r\n" + EICAR.decode() + "\r\n"),
                            sender="s@remote.test", rcpts=["alice@example.test"])
        self.assertEqual(code, 550, text)
        _, data = self.wait_capture(srv, clean.encode())
        self.assertIn(b"X-Postern-Capture-Client: 127.0.0.1 helo=client.test\n", data)
        self.assertIn(b"X-Postern-Capture-Sender: <s@remote.test>\n", data)
        self.assertIn(b"X-Postern-Capture-Recipient: <alice@example.test>\n", data)
        # Postfix's queue id (the key of the milter's verdict line) finds
        # the capture, in the file and in the log
        self.assertIn(("X-Postern-Capture-MTA-Queue-Id: %s\n" % postfix_id).encode(), data)
        name, _ = self.wait_capture(srv, clean.encode())
        srv.wait_log(r"(?m): captured file=\S*/%s mta_queue_id=%s$"
                     % (re.escape(name), postfix_id))
        _, data = self.wait_capture(srv, virus.encode())
        self.assertIn(EICAR, data)
        self.assertNotCaptured(srv, other.encode())


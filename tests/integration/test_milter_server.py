"""
test_milter_server.py - "postern milter" as the content filter of a real
Postfix (issue 12, the milter server): a private Postfix instance
(postfix_peer.py) whose smtpd_milters points at postern's milter socket
(unix and inet) relays what it accepts to smtp-sink (sink_peer.py), so
the tests see both what Postfix answered in the SMTP dialogue and the
message as it left Postfix.

  - a clean message reaches smtp-sink with postern's X-Spam-* fields, the
    same fields (score, tests) as when postern receives the same message
    over SMTP itself (a "postern serve" with the same rules);
  - EICAR is refused in the SMTP dialogue with postern's reply
    (550 5.7.0 virus found: NAME), GTUBE with 550 5.7.1;
  - a spam message is tagged: X-Spam-Flag, the subject prefix, the forged
    X-Spam-Status removed;
  - a message over the quarantine score is held by Postfix (smfi_quarantine,
    the reason postern's);
  - message_size_limit: 552 5.3.4;
  - SIGHUP: a new generation takes over while mail keeps flowing (no
    message refused or tempfailed on the way); SIGTERM: a conversation in
    progress is finished (its message delivered), then postern exits 0.

Needs root and the Debian package postfix (tools/install-deps.sh).
"""
import os
import pwd
import re
import signal
import smtplib
import socket
import subprocess
import threading
import time

from harness import (POSTERN_BIN, PosternServer, PosternTestCase, SmtpConn, free_port,
                     process_alive, scaled, split_message, unfold, wait_until)
from postfix_peer import PostfixPeer, postfix_unusable
from sink_peer import SmtpSink, sink_unusable
from clamd_peer import TEST_SIGNATURES
from test_antivirus import EICAR, EICAR_NAME
from test_spam import GTUBE, RULES, header_values

SENDER = "sender@postfix-peer.test"
RECIPIENT = "alice@example.test"
QUEUED_RE = re.compile(r"queued as ([0-9A-Za-z]+)")


def _message(tag, subject, body, extra=""):
    return ("From: <%s>\r\nTo: <%s>\r\nSubject: %s\r\n"
            "Date: Mon, 30 Nov 2026 10:00:00 +0000\r\n"
            "Message-ID: <%s@postfix-peer.test>\r\n%s\r\n%s\r\n"
            % (SENDER, RECIPIENT, subject, tag, extra, body))


def write_rules(folder):
    path = os.path.join(folder, "rules.cf")
    with open(path, "w") as f:
        f.write(RULES)
    os.chmod(path, 0o644)
    return path


# The settings both postern instances (milter and serve) judge with.
def judging_settings(rules):
    return {
        "spam_rules_file": rules,
        "spam_subject_prefix": "****SPAM****",
        "spam_tag_score": "5.0",
        "spam_quarantine_score": "10",
        "spam_reject_score": "15",
        "clamav_db_dir": TEST_SIGNATURES,
    }


class MilterServer(PosternServer):
    """postern milter in a private folder: the same files as a
    PosternServer, started with "postern milter"; listen is "unix" (a
    socket in a folder the milter process may write) or "inet"."""

    def __init__(self, name, listen="unix", config=None):
        super().__init__(name=name, config=config)
        self.sock_dir = os.path.join(self.dir, "milter")
        os.mkdir(self.sock_dir, 0o755)
        nobody = pwd.getpwnam("nobody")
        os.chown(self.sock_dir, nobody.pw_uid, nobody.pw_gid)
        if listen == "unix":
            self.sock_path = os.path.join(self.sock_dir, "postern.sock")
            self.settings["milter_listen"] = "unix:" + self.sock_path
            self.postfix_milter = "unix:" + self.sock_path
        else:
            self.milter_port = free_port()
            self.settings["milter_listen"] = "inet:127.0.0.1:%d" % self.milter_port
            self.postfix_milter = "inet:127.0.0.1:%d" % self.milter_port
        self.write_config()

    def start(self, timeout=None):
        timeout = timeout if timeout is not None else scaled(30)
        offset = self.log_size()
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [POSTERN_BIN, "milter", "-c", self.conf_path], stdin=subprocess.DEVNULL,
                stdout=log, stderr=log, start_new_session=True, cwd=self.dir,
                env=self._environment())
        from harness import _live_servers
        _live_servers.add(self)
        self.wait_log(r"postern/milter\[\d+\]: info: milter listening on", timeout=timeout,
                      since=offset)
        return self


def postfix_with_milter(srv, sink, name):
    """A Postfix whose smtpd asks postern's milter and relays to sink."""
    peer = PostfixPeer(sink.port, "none", name=name, extra_main={
        "smtpd_milters": srv.postfix_milter,
        "milter_default_action": "tempfail",
        "milter_protocol": "6",
        # the test messages name a local domain of postern's: relay them
        "smtpd_relay_restrictions": "permit_mynetworks, reject",
        "message_size_limit": "50000000",
    })
    return peer


def submit(peer, message, sender=SENDER, rcpts=(RECIPIENT,)):
    """One message to Postfix's smtpd: (code, text) of the end of DATA."""
    if isinstance(message, str):
        message = message.encode()
    with smtplib.SMTP("127.0.0.1", peer.smtpd_port, local_hostname="client.test",
                      timeout=scaled(60)) as s:
        s.ehlo()
        code, text = s.mail(sender)
        if code != 250:
            return code, text.decode()
        for r in rcpts:
            s.rcpt(r)
        try:
            code, text = s.data(message)
        except smtplib.SMTPDataError as e:
            return e.smtp_code, e.smtp_error.decode()
        return code, text.decode()


def sink_copy(sink, tag, timeout=None):
    """The message whose Message-ID holds tag, as smtp-sink got it."""
    found = []

    def arrived():
        found[:] = [m for m in sink.messages() if ("<%s@" % tag).encode() in m
                    and m.endswith(b"\n\n")]
        return found
    wait_until(arrived, timeout or scaled(30), interval=0.2,
               what="message %s at smtp-sink" % tag)
    return found[0].replace(b"\r\n", b"\n")


def spam_fields(head):
    """The X-Spam-* fields of a header, unfolded, with the tests= list
    and the score: what must be the same through milter and SMTP."""
    out = {}
    for line in unfold(head).splitlines():
        name, _, value = line.partition(":")
        if name.lower().startswith("x-spam-"):
            out.setdefault(name.lower(), []).append(re.sub(r"\s+", " ", value.strip()))
    return out


class _MilterCase(PosternTestCase):
    listen = "unix"

    @classmethod
    def setUpClass(cls):
        why = postfix_unusable() or sink_unusable()
        if why:
            raise __import__("unittest").SkipTest(why)
        cls.sink = SmtpSink().start()
        cls.addClassCleanup(cls.sink.remove)
        srv = MilterServer(cls.__name__, cls.listen)
        srv.settings.update(judging_settings(write_rules(srv.dir)))
        cls.metrics_port = free_port()
        srv.settings["metrics_listen"] = "127.0.0.1:%d" % cls.metrics_port
        srv.write_config()
        cls.addClassCleanup(cls._class_cleanup, srv)
        srv.start()
        cls.class_server = cls.srv = srv
        cls.peer = postfix_with_milter(srv, cls.sink, "milter-" + cls.listen)
        cls.addClassCleanup(cls.peer.destroy)
        cls.peer.start()


    def apply_settings(self, values):
        """Write values into the configuration and reload; returns once
        the new milter process listens."""
        self.srv.settings.update(values)
        self.srv.write_config()
        off = self.srv.log_size()
        self.srv.reload()
        self.srv.wait_log(r"milter\[\d+\]: info: milter listening on", since=off)

    def reconfigure(self, **settings):
        """Change settings and reload (undone, with another reload, when
        the test ends)."""
        self.addCleanup(self.apply_settings, {k: self.srv.settings.get(k) for k in settings})
        self.apply_settings(settings)


class MilterUnixTest(_MilterCase):
    """Postfix -> postern milter on a unix socket -> smtp-sink."""

    def test_clean_message_tagged_like_smtp(self):
        msg = _message("clean1", "minutes", "The minutes are attached.")
        code, text = submit(self.peer, msg)
        self.assertEqual(code, 250, text)
        copy = sink_copy(self.sink, "clean1")
        head, body = split_message(copy)
        via_milter = spam_fields(head)
        self.assertRegex(via_milter["x-spam-status"][0], r"^No, score=0\.0 required=5\.0")
        self.assertNotIn("x-spam-flag", via_milter)
        self.assertIn(b"The minutes are attached.", body)
        # below Postfix's own Received:, as postern puts them below its own
        self.assertRegex(unfold(head), r"(?s)Received: from client\.test .*\(Postfix\).*\n"
                                       r"X-Spam-Score: 0\.0\nX-Spam-Level: \nX-Spam-Status: No")
        # the log line keyed by Postfix's queue id
        qid = QUEUED_RE.search(text).group(1)
        self.srv.wait_log(r"milter\[\d+\]: info: %s: milter action=(accept|tag) " % qid)
        # the private copy was unlinked at once: nothing stays in the spool
        self.assertEqual(os.listdir(os.path.join(self.srv.spool_dir, "incoming")), [])
        # The same message received by postern itself over SMTP.
        same = self.start_server(users=["alice"], config=judging_settings(
            write_rules(self.srv.dir)))
        with smtplib.SMTP("127.0.0.1", same.port, timeout=scaled(30)) as s:
            s.sendmail(SENDER, [RECIPIENT], msg.encode())
        files = wait_until(lambda: same.maildir_new("alice"), scaled(20),
                           what="the SMTP copy delivered")
        with open(os.path.join(same.maildir("alice"), files[0]), "rb") as f:
            smtp_head, _ = split_message(f.read())
        self.assertEqual(via_milter, spam_fields(smtp_head))

    def test_spam_tagged_with_prefix_and_forged_field_removed(self):
        msg = _message("spam1", "Cheap pills", "Click here now!",
                       extra="X-Spam-Status: No, forged upstream\r\n"
                             "X-Spam-Flag: NO\r\n"
                             "X-Spam-Status: No, forged twice\r\n")
        code, text = submit(self.peer, msg)
        self.assertEqual(code, 250, text)
        head, _ = split_message(sink_copy(self.sink, "spam1"))
        self.assertEqual(header_values(head, "X-Spam-Flag"), ["YES"], head)
        status = header_values(head, "X-Spam-Status")
        self.assertEqual(len(status), 1, head)
        self.assertRegex(status[0], r"^Yes, score=6\.5 required=5\.0 tests=T_CLICK,T_PILLS ")
        self.assertEqual(header_values(head, "Subject"), ["****SPAM**** Cheap pills"])
        self.assertNotIn("forged", head)

    def test_eicar_refused_in_the_dialogue(self):
        msg = ("From: <%s>\r\nTo: <%s>\r\nSubject: hi\r\nMessage-ID: <eicar1@x.test>\r\n\r\n"
               % (SENDER, RECIPIENT)).encode() + EICAR + b"\r\n"
        code, text = submit(self.peer, msg)
        self.assertEqual((code, text), (550, "5.7.0 virus found: %s" % EICAR_NAME))
        self.srv.wait_log(r"milter action=reject reason=virus status=5\.7\.0 "
                          r"hits=virus:%s" % re.escape(EICAR_NAME))
        # and counted
        import urllib.request
        url = "http://127.0.0.1:%d/metrics" % self.metrics_port
        text = urllib.request.urlopen(url, timeout=scaled(10)).read().decode()
        self.assertRegex(text, r'(?m)^postern_milter_messages_total\{action="reject",'
                               r'reason="virus"\} [1-9]')
        self.assertRegex(text, r"(?m)^postern_milter_conversations_total [1-9]")
        # and postern report reads the milter's lines as scan verdicts
        r = subprocess.run([POSTERN_BIN, "report", "--json", self.srv.log_path],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=scaled(30))
        report = __import__("json").loads(r.stdout)
        self.assertGreaterEqual(report["scanned"], 1, report)
        self.assertIn(EICAR_NAME, [v["name"] for v in report["scan"]["viruses"]],
                      report["scan"])
        self.assertIn("reject", [v["name"] for v in report["scan"]["scan_actions"]])

    def test_gtube_refused(self):
        code, text = submit(self.peer, _message("gtube1", "test", "Here:\r\n" + GTUBE))
        self.assertEqual(code, 550, text)
        self.assertRegex(text, r"^5\.7\.1 .*refused as spam")

    def test_quarantine_held_by_postfix(self):
        # T_PILLS 4 + T_CLICK 2.5 = 6.5: past a quarantine score of 6
        self.reconfigure(spam_quarantine_score="6")
        code, text = submit(self.peer, _message("quar1", "Cheap pills", "Click here now!"))
        self.assertEqual(code, 250, text)
        qid = QUEUED_RE.search(text).group(1)
        wait_until(lambda: re.search(r"%s: milter-hold: END-OF-MESSAGE .*milter triggers "
                                     r"HOLD action" % qid, self.peer.log()),
                   scaled(20), what="Postfix to hold the message")
        held = os.listdir(os.path.join(self.peer.queue_dir, "hold"))
        self.assertIn(qid, held)
        self.srv.wait_log(r"%s: milter action=quarantine reason=spam " % qid)

    def test_size_limit(self):
        self.reconfigure(message_size_limit="20000")
        big = _message("big1", "big", ("y" * 70 + "\r\n") * 400)
        code, text = submit(self.peer, big)
        self.assertEqual((code, text), (552, "5.3.4 Message size exceeds fixed limit"))
        self.srv.wait_log(r"milter action=reject reason=size status=5\.3\.4 ")


    def test_header_size_limit(self):
        # refused at the end of the header section: the MTA expects no
        # reply for each field (SMFIP_NR_HDR)
        self.reconfigure(header_size_limit="2k")
        long_field = "X-Long: " + " ".join(["word"] * 600) + "\r\n"
        code, text = submit(self.peer, _message("hdr1", "long", "Body.", extra=long_field))
        self.assertEqual((code, text), (552, "5.3.4 Message header size exceeds limit"))
        self.srv.wait_log(r"milter action=reject reason=header_size status=5\.3\.4 ")


class MilterConfigTest(PosternTestCase):
    """milter_listen missing or malformed: a clear error naming the file
    (and line), exit status 1; check-config says the same."""

    def run_milter(self, srv):
        r = subprocess.run([POSTERN_BIN, "milter", "-c", srv.conf_path], cwd=srv.dir,
                           stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, timeout=scaled(30))
        return r.returncode, r.stdout.decode()

    def test_missing_and_malformed(self):
        srv = MilterServer("config", "unix")
        self.addCleanup(srv.remove)
        del srv.settings["milter_listen"]
        srv.write_config()
        rc, out = self.run_milter(srv)
        self.assertEqual(rc, 1, out)
        self.assertIn("%s: milter_listen is not set" % srv.conf_path, out)
        srv.settings["milter_listen"] = "unix:relative.sock"
        srv.write_config()
        line = [i for i, l in enumerate(open(srv.conf_path).read().splitlines(), 1)
                if l.startswith("milter_listen")][0]
        rc, out = self.run_milter(srv)
        self.assertEqual(rc, 1, out)
        self.assertIn("%s:%d: milter_listen: the socket's path must be absolute"
                      % (srv.conf_path, line), out)
        r = subprocess.run([POSTERN_BIN, "check-config", "-c", srv.conf_path], cwd=srv.dir,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           timeout=scaled(60))
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("%s:%d: milter_listen: the socket's path must be absolute"
                      % (srv.conf_path, line), r.stdout.decode())


    def test_privileged_port_refused(self):
        # the milter process binds as user: a port below 1024 cannot work
        # (was: accepted by check-config, then a milter process that
        # failed to bind)
        with open("/proc/sys/net/ipv4/ip_unprivileged_port_start") as f:
            if int(f.read()) != 1024:
                self.skipTest("this kernel lets every account bind any port")
        srv = MilterServer("config-lowport", "inet", config={"scan": "no"})
        self.addCleanup(srv.remove)
        srv.settings["milter_listen"] = "inet:127.0.0.1:825"
        srv.write_config()
        line = [i for i, l in enumerate(open(srv.conf_path).read().splitlines(), 1)
                if l.startswith("milter_listen")][0]
        want = "%s:%d: milter_listen: port 825 is below 1024" % (srv.conf_path, line)
        rc, out = self.run_milter(srv)
        self.assertEqual(rc, 1, out)
        self.assertIn(want, out)
        r = subprocess.run([POSTERN_BIN, "check-config", "-c", srv.conf_path], cwd=srv.dir,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           timeout=scaled(60))
        self.assertNotEqual(r.returncode, 0)
        self.assertIn(want, r.stdout.decode())

    def test_address_not_this_machines_stops_the_start(self):
        # was: the milter process failed to bind and was started again
        # every second, forever, while postern milter ran on
        srv = MilterServer("config-noaddr", "inet", config={"scan": "no"})
        self.addCleanup(srv.remove)
        srv.settings["milter_listen"] = "inet:192.0.2.1:%d" % free_port()
        srv.write_config()
        rc, out = self.run_milter(srv)
        self.assertEqual(rc, 1, out)
        self.assertIn("cannot listen on 192.0.2.1:", out)
        self.assertIn("not one of this machine's", out)
        self.assertIn("does not listen on inet:192.0.2.1:", out)
        self.assertIn("not starting", out)
        self.assertLessEqual(out.count("milter process pid"), 1, out)

    def test_port_held_by_another_program_stops_the_start(self):
        srv = MilterServer("config-busy", "inet", config={"scan": "no"})
        self.addCleanup(srv.remove)
        other = socket.socket()
        self.addCleanup(other.close)
        other.bind(("127.0.0.1", srv.milter_port))
        other.listen(1)
        started = time.monotonic()
        rc, out = self.run_milter(srv)
        self.assertEqual(rc, 1, out)
        self.assertIn("cannot listen on 127.0.0.1:%d: Address already in use "
                      "(port in use: " % srv.milter_port, out)
        self.assertIn("not starting", out)
        # tried for a few seconds (a port held briefly is waited for)
        self.assertGreaterEqual(time.monotonic() - started, 3.5, out)


class MilterSecondInstanceTest(PosternTestCase):
    """A second "postern milter" with the same configuration refuses to
    start (was: it renamed its unix socket over the running one's, which
    went on running unreachable; over TCP the two shared the port)."""

    def second(self, srv):
        r = subprocess.run([POSTERN_BIN, "milter", "-c", srv.conf_path], cwd=srv.dir,
                           stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, timeout=scaled(60))
        return r.returncode, r.stdout.decode()

    def test_unix_socket_in_use(self):
        srv = MilterServer("second-unix", "unix", config={"scan": "no"})
        srv.start()
        self.addCleanup(srv.stop)
        inode = os.stat(srv.sock_path).st_ino
        rc, out = self.second(srv)
        self.assertEqual(rc, 1, out)
        self.assertIn("milter_listen unix:%s: socket in use: another postern milter"
                      % srv.sock_path, out)
        self.assertIn("not starting", out)
        self.assertEqual(os.stat(srv.sock_path).st_ino, inode, "the socket was taken over")
        with socket.socket(socket.AF_UNIX) as c:
            c.connect(srv.sock_path)  # the first one still listens on the path

    def test_tcp_port_in_use(self):
        srv = MilterServer("second-inet", "inet", config={"scan": "no"})
        srv.start()
        self.addCleanup(srv.stop)
        rc, out = self.second(srv)
        self.assertEqual(rc, 1, out)
        self.assertIn("cannot listen on 127.0.0.1:%d: Address already in use (port in use"
                      % srv.milter_port, out)
        self.assertIn("not starting", out)
        with socket.create_connection(("127.0.0.1", srv.milter_port), timeout=5):
            pass


class MilterNoMailboxTest(PosternTestCase):
    """postern milter delivers nothing: it neither makes nor checks
    mail_root (nor needs mail_owner's folder), as serve does."""

    def test_mail_root_left_alone(self):
        srv = MilterServer("nomailroot", "unix")
        self.addCleanup(srv.remove)
        srv.settings["mail_root"] = os.path.join(srv.dir, "no", "such", "mail")
        srv.write_config()
        srv.start()
        self.addCleanup(srv.stop)
        self.assertTrue(os.path.exists(srv.sock_path))
        self.assertFalse(os.path.exists(os.path.join(srv.dir, "no")),
                         "postern milter made the folders of mail_root")


class MilterInetTest(_MilterCase):
    """The same over TCP, plus reload and drain."""
    listen = "inet"

    def test_scan_off_accepts_as_is(self):
        self.reconfigure(scan="no")
        code, text = submit(self.peer, _message("off1", "Cheap pills", "Click here now!"))
        self.assertEqual(code, 250, text)
        head, _ = split_message(sink_copy(self.sink, "off1"))
        self.assertEqual(header_values(head, "X-Spam-Status"), [], head)
        self.assertEqual(header_values(head, "Subject"), ["Cheap pills"])
        qid = QUEUED_RE.search(text).group(1)
        self.srv.wait_log(r"%s: milter action=accept scan=off " % qid)

    def test_reload_that_cannot_listen_keeps_the_running_one(self):
        good = self.srv.settings["milter_listen"]
        self.addCleanup(self.apply_settings, {"milter_listen": good})
        # a malformed value: a configuration error, nothing changes
        self.srv.settings["milter_listen"] = "inet:nowhere"
        self.srv.write_config()
        off = self.srv.log_size()
        self.srv.reload()
        self.srv.wait_log(r"reload: configuration has errors, keeping the running one",
                          since=off)
        code, text = submit(self.peer, _message("keep1", "kept", "Still served."))
        self.assertEqual(code, 250, text)
        # an address that is not this machine's: the new process cannot
        # listen, the running one goes on
        self.srv.settings["milter_listen"] = "inet:192.0.2.1:%d" % self.milter_port_of(good)
        self.srv.write_config()
        off = self.srv.log_size()
        self.srv.reload()
        self.srv.wait_log(r"reload: the new milter process does not listen on inet:192\.0\.2\.1",
                          since=off, timeout=scaled(30))
        code, text = submit(self.peer, _message("keep2", "kept", "Still served."))
        self.assertEqual(code, 250, text)
        self.assertRegex(header_values(split_message(sink_copy(self.sink, "keep2"))[0],
                                       "X-Spam-Status")[0], r"^No, ")

    @staticmethod
    def milter_port_of(spec):
        return int(spec.rsplit(":", 1)[1])

    def test_milter_process_stopped_by_libmilter_comes_back(self):
        # SIGTERM straight to the milter process: libmilter's own stop
        off = self.srv.log_size()
        pid = self.srv.kill_role("milter", signal.SIGTERM)
        self.srv.wait_log(r"milter\[%d\]: info: milter: libmilter stopped" % pid, since=off)
        self.srv.wait_log(r"milter\[(?!%d\])\d+\]: info: milter listening on" % pid,
                          timeout=scaled(20), since=off)
        code, text = submit(self.peer, _message("back2", "back", "Served again."))
        self.assertEqual(code, 250, text)

    def test_killed_milter_process_comes_back(self):
        off = self.srv.log_size()
        pid = self.srv.kill_role("milter")
        self.srv.wait_log(r"milter\[(?!%d\])\d+\]: info: milter listening on" % pid,
                          timeout=scaled(20), since=off)
        code, text = submit(self.peer, _message("back1", "back", "Served again."))
        self.assertEqual(code, 250, text)
        self.assertIn("milter process pid %d killed by signal 9" % pid, self.srv.log())
        self.assertNotIn("still open", self.srv.log_since(off))

    def test_clean_message_over_tcp(self):
        code, text = submit(self.peer, _message("tcp1", "hello", "Plain words."))
        self.assertEqual(code, 250, text)
        head, _ = split_message(sink_copy(self.sink, "tcp1"))
        self.assertRegex(header_values(head, "X-Spam-Status")[0], r"^No, score=0\.0 ")

    def test_reload_keeps_serving(self):
        """Messages keep flowing through two reloads: none is refused or
        deferred (a new milter process binds the port as soon as the old
        one has let go of it; Postfix retries nothing here)."""
        keep_serving(self, self.srv, self.peer, "inet")


def keep_serving(case, srv, peer, tag):
    results, stop = [], threading.Event()

    def sender():
        n = 0
        while not stop.is_set():
            n += 1
            results.append(submit(peer, _message("%s-load%d" % (tag, n), "load %d" % n,
                                                 "Just words.")))
    old_pids = srv.role_pids("milter")
    t = threading.Thread(target=sender, daemon=True)
    t.start()
    try:
        for _ in range(2):
            time.sleep(1)
            off = srv.log_size()
            srv.reload()
            srv.wait_log(r"milter\[\d+\]: info: milter listening on", since=off)
        time.sleep(1)
    finally:
        stop.set()
        t.join(scaled(60))
    refused = [r for r in results if r[0] != 250]
    case.assertGreater(len(results), 5, "too few messages went through")
    # An MTA connection still in the old listener's backlog when it closes
    # is reset (postern(8), the known edge of a reload): Postfix then
    # applies its milter_default_action (tempfail) to that one message,
    # which the sender retries. Seen once in two reloads under ASan; more,
    # or any other answer, is a defect.
    deferred = [r for r in refused if r[0] == 451 and r[1].startswith("4.7.1 ")]
    case.assertEqual([r for r in refused if r not in deferred], [],
                     "messages refused during the reloads")
    case.assertLessEqual(len(deferred), 2, "more than one deferral per reload: %r" % refused)
    wait_until(lambda: not any(process_alive(p) for p in old_pids), scaled(20),
               what="the old milter process to exit")
    case.assertNotEqual(srv.role_pids("milter"), old_pids)


class MilterUnixReloadTest(_MilterCase):
    """A reload with the unix socket: the path is never without a listener;
    a stop removes it (runs last: it stops the class's server)."""

    def test_reload_keeps_serving(self):
        keep_serving(self, self.srv, self.peer, "unix")
        self.assertEqual(os.listdir(self.srv.sock_dir), ["postern.sock"])

    def test_stop_removes_the_socket(self):
        self.assertTrue(os.path.exists(self.srv.sock_path))
        self.srv.stop()
        self.assertEqual(os.listdir(self.srv.sock_dir), [])


class MilterStopTest(_MilterCase):
    """SIGTERM: the conversation in progress is finished, then postern exits."""
    listen = "inet"

    def test_sigterm_drains(self):
        conn = SmtpConn(self.peer.smtpd_port, timeout=scaled(30))
        self.addCleanup(conn.close)
        self.assertEqual(conn.greeting.code, 220)
        conn.ehlo("client.test")
        self.assertEqual(conn.cmd("MAIL FROM:<%s>" % SENDER).code, 250)
        self.assertEqual(conn.cmd("RCPT TO:<%s>" % RECIPIENT).code, 250)
        self.assertEqual(conn.cmd("DATA").code, 354)
        msg = _message("drain1", "drained", "Finished after the stop.")
        head, body = msg.split("\r\n\r\n", 1)
        conn.send((head + "\r\n").encode())
        off = self.srv.log_size()
        self.srv.send_signal(signal.SIGTERM)
        self.srv.wait_log(r"master\[\d+\]: info: signal 15: stopping", since=off)
        time.sleep(1)
        conn.send(("\r\n" + body + ".\r\n").encode())
        reply = conn.reply(timeout=scaled(30))
        self.assertEqual(reply.code, 250, reply)
        conn.cmd("QUIT")  # the end of the SMTP session ends the milter conversation
        rc = self.srv.proc.wait(scaled(30))
        self.assertEqual(rc, 0, self.srv.log_tail())
        self.assertNotIn("still open after shutdown_timeout", self.srv.log_since(off))
        self.srv.wait_log(r"milter\[\d+\]: info: milter: stopped listening; 1 "
                          r"conversation\(s\) to finish", since=off)
        head, _ = split_message(sink_copy(self.sink, "drain1"))
        self.assertRegex(header_values(head, "X-Spam-Status")[0], r"^No, score=0\.0 ")
        # and nobody listens any more
        with self.assertRaises(OSError):
            socket.create_connection(("127.0.0.1", self.srv.milter_port), timeout=2).close()

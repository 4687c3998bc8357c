"""
test_milter_real.py - postern's milter client (configuration keys milters
and milter_default_action) against real milters from Debian packages,
each started privately in a temporary folder on a unix socket, never the
system's services:

* clamav-milter (package clamav-milter) in front of a private clamd
  (clamd_peer.py, postern's test signatures), OnInfected Reject with its
  own RejectMsg: an EICAR message is refused in the SMTP dialogue with
  clamav-milter's reply; a clean one is delivered with the X-Virus-Scanned
  and X-Virus-Status fields clamav-milter adds.
* spamass-milter (package spamass-milter) -> spamc -> a private spamd
  (spamd_peer.py, loopback port, local tests only) with -r 15: GTUBE is
  refused with spamass-milter's "Blocked by SpamAssassin"; ham is
  delivered with the X-Spam-* fields spamass-milter adds.
* both in one list, in order: each refuses what it should and a clean
  message gets the fields of both.
* over TCP (inet:HOST:PORT): a clamav-milter of its own on a loopback
  port; a milter that is not there gets milter_default_action (tempfail:
  4xx; accept: delivered).

The peers are started once per module (spamd takes seconds to compile its
rules); each class has its own postern.
"""
import os
import re
import shutil
import smtplib
import socket
import tempfile
import time
import uuid

from harness import (PosternTestCase, free_port, make_message, scaled,
                     split_message, unfold, wait_until)
from clamd_peer import ClamdPeer
from peer_process import PeerProcess
from spamd_peer import SpamdPeer

# The EICAR test file and GTUBE, from two halves: no file of the tree is
# a test virus or a test spam.
EICAR = b"X5O!P%@AP[4\\PZX54(P^)7CC)7}$" + b"EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"
GTUBE = "XJS*C4JDBQADN1.NSBN3*2IDNEN*" + "GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X"
EICAR_NAME = "Postern.Test.EICAR.UNOFFICIAL"
CLAMAV_REJECT = "refused by clamav-milter: %v"
USERS = ["alice", "bob"]


def unix_socket_ready(path):
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(2)
            s.connect(path)
            return True
    except OSError:
        return False


class ClamavMilterPeer(PeerProcess):
    """clamav-milter on <dir>/clamav-milter.sock, scanning with clamd."""

    NAME = "clamav-milter"
    STDERR_NAME = "clamav-milter.stderr"

    def __init__(self, clamd_socket, tcp=False):
        binary = shutil.which("clamav-milter")
        if binary is None:
            raise AssertionError("clamav-milter is not installed: install the Debian package "
                                 "clamav-milter (tools/install-deps.sh does)")
        self.binary = binary
        self.dir = tempfile.mkdtemp(prefix="postern-it-clamav-milter-")
        os.chmod(self.dir, 0o755)  # postern's unprivileged worker reaches the socket
        self.socket_path = os.path.join(self.dir, "clamav-milter.sock")
        self.port = free_port() if tcp else None
        self.conf_path = os.path.join(self.dir, "clamav-milter.conf")
        self.log_path = os.path.join(self.dir, "clamav-milter.log")
        tmp = os.path.join(self.dir, "tmp")
        os.mkdir(tmp)
        lines = [
            "# written by tests/integration/test_milter_real.py",
            ("MilterSocket inet:%d@127.0.0.1" % self.port if tcp
             else "MilterSocket unix:%s" % self.socket_path),
            "MilterSocketMode 666",
            "FixStaleSocket true",
            "Foreground true",
            "PidFile %s" % os.path.join(self.dir, "clamav-milter.pid"),
            "ClamdSocket unix:%s" % clamd_socket,
            "OnClean Accept",
            "OnInfected Reject",
            "OnFail Defer",
            "RejectMsg %s" % CLAMAV_REJECT,
            "AddHeader Replace",
            "ReadTimeout 60",
            "LogFile %s" % self.log_path,
            "LogTime true",
            "LogInfected Basic",
            "LogSyslog false",
            "TemporaryDirectory %s" % tmp,
        ]
        with open(self.conf_path, "w") as f:
            f.write("\n".join(lines) + "\n")

    def start(self, timeout=None):
        return self.launch([self.binary, "-c", self.conf_path], self.ready,
                           timeout or scaled(30), "clamav-milter listening on %s"
                           % self.socket_path)

    @property
    def spec(self):
        """The milter as the milters key names it."""
        return ("inet:127.0.0.1:%d" % self.port if self.port
                else "unix:%s" % self.socket_path)

    def ready(self):
        if self.proc.poll() is not None:
            raise AssertionError("clamav-milter exited with status %s at start; log:\n%s"
                                 % (self.proc.returncode, self.log_tail()))
        if self.port:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=2).close()
                return True
            except OSError:
                return False
        return unix_socket_ready(self.socket_path)


class SpamassMilterPeer(PeerProcess):
    """spamass-milter on <dir>/spamass.sock, asking spamd through spamc;
    refuses from reject_score."""

    NAME = "spamass-milter"
    STDERR_NAME = "spamass-milter.stderr"

    def __init__(self, spamd_port, reject_score=15):
        binary = shutil.which("spamass-milter")
        if binary is None or shutil.which("spamc") is None:
            raise AssertionError("spamass-milter or spamc is not installed: install the Debian "
                                 "packages spamass-milter and spamc (tools/install-deps.sh does)")
        self.binary = binary
        self.dir = tempfile.mkdtemp(prefix="postern-it-spamass-milter-")
        os.chmod(self.dir, 0o755)
        self.socket_path = os.path.join(self.dir, "spamass.sock")
        self.log_path = None  # it logs to syslog only; its stderr is kept
        self.spamd_port = spamd_port
        self.reject_score = reject_score

    def start(self, timeout=None):
        # umask 0: the socket must be writable by postern's unprivileged
        # worker (spamass-milter has no option for its mode).
        command = "umask 000; exec %s -p %s -r %d -- -d 127.0.0.1 -p %d" % (
            self.binary, self.socket_path, self.reject_score, self.spamd_port)
        return self.launch(["/bin/sh", "-c", command], self.ready, timeout or scaled(30),
                           "spamass-milter listening on %s" % self.socket_path)

    def ready(self):
        if self.proc.poll() is not None:
            raise AssertionError("spamass-milter exited with status %s at start; log:\n%s"
                                 % (self.proc.returncode, self.log_tail()))
        return unix_socket_ready(self.socket_path)


# ---- the peers, once per module ------------------------------------------------

PEERS = {}


def setUpModule():
    started = []
    try:
        clamd = ClamdPeer().start()
        started.append(clamd)
        PEERS["clamd"] = clamd
        PEERS["clamav"] = ClamavMilterPeer(clamd.socket_path).start()
        started.append(PEERS["clamav"])
        spamd = SpamdPeer().start()
        started.append(spamd)
        PEERS["spamd"] = spamd
        PEERS["spamass"] = SpamassMilterPeer(spamd.port).start()
        started.append(PEERS["spamass"])
    except BaseException:
        for p in reversed(started):
            p.stop()
        raise
    PEERS["all"] = started


def tearDownModule():
    for p in reversed(PEERS.pop("all", [])):
        p.stop()
    PEERS.clear()


# ---- messages and the client ------------------------------------------------------

def message(subject, body, sender="someone@remote.test", to="alice@example.test"):
    date = time.strftime("%a, %d %b %Y %H:%M:%S +0000", time.gmtime())
    return make_message(subject=subject, body=body, sender=sender, to=to,
                        extra_headers=["Date: %s" % date, "MIME-Version: 1.0",
                                       "Content-Type: text/plain; charset=us-ascii"])


def send(port, text, sender="someone@remote.test", rcpt="alice@example.test"):
    """One transaction; (code, text) of the reply to the end of data."""
    data = text.encode() if isinstance(text, str) else text
    with smtplib.SMTP("127.0.0.1", port, local_hostname="client.test",
                      timeout=scaled(60)) as s:
        code, reply = s.ehlo()
        assert code == 250, (code, reply)
        code, reply = s.mail(sender)
        assert code == 250, (code, reply)
        code, reply = s.rcpt(rcpt)
        assert code == 250, (code, reply)
        code, reply = s.data(data)
        return code, reply.decode("utf-8", "replace")


def queue_id(reply):
    m = re.search(r"queued as ([0-9A-F]{19})", reply)
    assert m, reply
    return m.group(1)


HAM_BODY = ("Hello Alice,\r\n\r\nthe minutes of Tuesday's meeting are below; the next one\r\n"
            "is on the 14th in the usual room.\r\n\r\nRegards,\r\nSomeone\r\n")


class RealMilterCase(PosternTestCase):

    def deliver_ham(self):
        """Send HAM_BODY under a fresh subject, assert the 250; (subject,
        the header section of alice's copy, unfolded)."""
        mark = uuid.uuid4().hex
        code, text = send(self.class_server.port, message(mark, HAM_BODY))
        self.assertEqual(code, 250, text)
        head = self.delivered_header(queue_id(text))
        self.assertField(head, r"^Subject: %s$" % mark)
        return mark, head

    def delivered_header(self, qid):
        """The header section of alice's copy of qid, unfolded."""
        _, data = self.class_server.wait_delivery("alice", qid, timeout=scaled(20))
        head, _ = split_message(data)
        return unfold(head)

    def assertNotDelivered(self, mark):
        """No message with subject mark in alice's Maildir (a refusal in
        the dialogue queues nothing, so there is nothing to wait for)."""
        srv = self.class_server
        for name in srv.maildir_new("alice"):
            with open(os.path.join(srv.maildir("alice"), name), "rb") as f:
                self.assertNotIn(("Subject: %s" % mark).encode(), f.read(),
                                 "the refused message reached alice as %s" % name)

    def assertField(self, head, pattern):
        self.assertRegex(head, re.compile(pattern, re.M | re.I),
                         "no field matching %r in:\n%s" % (pattern, head))


class ClamavMilterTest(RealMilterCase):

    @classmethod
    def setUpClass(cls):
        cls.start_class_server(users=USERS, config={
            "milters": "unix:%s" % PEERS["clamav"].socket_path,
            "milter_default_action": "tempfail",
            # the capture switch keeps what the milter refuses, as received
            "capture": "yes", "capture_dir": "capture", "capture_group": "adm",
            "workers": "1"})

    def test_virus_refused_with_the_milters_reply(self):
        mark = uuid.uuid4().hex
        code, text = send(self.class_server.port,
                          message(mark, "See the file:\r\n%s\r\n" % EICAR.decode()))
        self.assertEqual(code, 550, text)
        self.assertEqual(text, "5.7.1 " + CLAMAV_REJECT.replace("%v", EICAR_NAME))
        self.assertRegex(PEERS["clamav"].log(), EICAR_NAME)
        self.assertNotDelivered(mark)

    def captured(self, mark):
        """The capture (capture_dir) of the message with subject mark."""
        folder = os.path.join(self.class_server.dir, "capture")

        def look():
            for name in os.listdir(folder):
                if name.endswith(".eml"):
                    with open(os.path.join(folder, name), "rb") as f:
                        data = f.read()
                    if ("Subject: %s" % mark).encode() in data:
                        return data
            return None
        return wait_until(look, scaled(10), what="the capture of message %s" % mark)

    def test_refused_message_is_captured(self):
        mark = uuid.uuid4().hex
        code, text = send(self.class_server.port,
                          message(mark, "Sample:\r\n%s\r\n" % EICAR.decode()))
        self.assertEqual(code, 550, text)
        self.assertIn(EICAR, self.captured(mark))

    def test_clean_message_delivered_with_its_fields(self):
        mark, head = self.deliver_ham()
        self.assertField(head, r"^X-Virus-Scanned: clamav-milter \S+ at ")
        self.assertField(head, r"^X-Virus-Status: Clean$")
        # The capture is the message as received, before the milter's fields.
        self.assertNotIn(b"X-Virus-Scanned", self.captured(mark))


class SpamassMilterTest(RealMilterCase):

    @classmethod
    def setUpClass(cls):
        cls.start_class_server(users=USERS, config={
            "milters": "unix:%s" % PEERS["spamass"].socket_path,
            "milter_default_action": "tempfail"})

    def test_gtube_refused_with_the_milters_reply(self):
        mark = uuid.uuid4().hex
        code, text = send(self.class_server.port, message(mark, "Buy now.\r\n%s\r\n" % GTUBE))
        self.assertEqual(code, 550, text)
        self.assertEqual(text, "5.7.1 Blocked by SpamAssassin")
        self.assertNotDelivered(mark)

    def test_ham_delivered_with_spam_fields(self):
        _, head = self.deliver_ham()
        self.assertField(head, r"^X-Spam-Checker-Version: SpamAssassin \d")
        self.assertField(head, r"^X-Spam-Status: No, score=-?\d+(\.\d+)? required=")


class BothMiltersTest(RealMilterCase):
    """milters lists both: each is asked in order, each can refuse, and
    what they add adds up."""

    @classmethod
    def setUpClass(cls):
        cls.start_class_server(users=USERS, config={
            "milters": "unix:%s, unix:%s" % (PEERS["clamav"].socket_path,
                                             PEERS["spamass"].socket_path),
            "milter_default_action": "tempfail"})

    def test_each_refuses_its_own(self):
        virus, spam = uuid.uuid4().hex, uuid.uuid4().hex
        code, text = send(self.class_server.port,
                          message(virus, "File:\r\n%s\r\n" % EICAR.decode()))
        self.assertEqual((code, text), (550, "5.7.1 " + CLAMAV_REJECT.replace("%v",
                                                                              EICAR_NAME)))
        code, text = send(self.class_server.port, message(spam, "Now.\r\n%s\r\n" % GTUBE))
        self.assertEqual((code, text), (550, "5.7.1 Blocked by SpamAssassin"))
        self.assertNotDelivered(virus)
        self.assertNotDelivered(spam)

    def test_clean_message_gets_both(self):
        _, head = self.deliver_ham()
        self.assertField(head, r"^X-Virus-Status: Clean$")
        self.assertField(head, r"^X-Spam-Status: No, score=")


class TcpMilterTest(RealMilterCase):
    """A milter over TCP (inet:HOST:PORT): a clamav-milter of its own on a
    loopback port; when it is gone, milter_default_action decides."""

    @classmethod
    def setUpClass(cls):
        cls.milter = ClamavMilterPeer(PEERS["clamd"].socket_path, tcp=True).start()
        cls.addClassCleanup(cls.milter.stop)
        cls.start_class_server(users=USERS, config={
            "milters": cls.milter.spec, "milter_default_action": "tempfail"})

    def test_virus_and_clean_over_tcp(self):
        mark = uuid.uuid4().hex
        code, text = send(self.class_server.port,
                          message(mark, "See:\r\n%s\r\n" % EICAR.decode()))
        self.assertEqual((code, text), (550, "5.7.1 " + CLAMAV_REJECT.replace("%v",
                                                                              EICAR_NAME)))
        self.assertNotDelivered(mark)
        _, head = self.deliver_ham()
        self.assertField(head, r"^X-Virus-Status: Clean$")

    def test_milter_gone_is_the_default_action(self):
        srv = self.start_server(users=USERS, config={
            "milters": "inet:127.0.0.1:%d" % free_port(), "milter_default_action": "tempfail"})
        with smtplib.SMTP("127.0.0.1", srv.port, local_hostname="client.test",
                          timeout=scaled(60)) as s:
            s.ehlo()
            code, _ = s.mail("someone@remote.test")
            if code == 250:
                code, _ = s.rcpt("alice@example.test")
            if code == 250:
                code, _ = s.data(message("gone", HAM_BODY).encode())
        self.assertEqual(code // 100, 4, "a missing milter must tempfail, got %d" % code)
        srv = self.start_server(users=USERS, config={
            "milters": "inet:127.0.0.1:%d" % free_port(), "milter_default_action": "accept"})
        code, text = send(srv.port, message("gone but accepted", HAM_BODY))
        self.assertEqual(code, 250, text)
        srv.wait_delivery("alice", queue_id(text))


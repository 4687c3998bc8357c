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

The peers are started once per module (spamd takes seconds to compile its
rules); each class has its own postern. Until the milter client is in the
binary (the milters key is unknown to check-config) the module is skipped
with that reason.
"""
import os
import re
import shutil
import smtplib
import socket
import subprocess
import tempfile
import time
import unittest
import uuid

from harness import (POSTERN_BIN, PosternTestCase, make_message, scaled, split_message,
                     unfold)
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


def has_milter_client():
    """Does this binary know the milters key (the milter client)?"""
    d = tempfile.mkdtemp(prefix="postern-it-milter-probe-")
    try:
        conf = os.path.join(d, "postern.conf")
        with open(conf, "w") as f:
            f.write("hostname = mx.example.test\nmilters = unix:%s/none.sock\n" % d)
        p = subprocess.run([POSTERN_BIN, "check-config", "-c", conf], stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, universal_newlines=True, timeout=60)
        return 'unknown key "milters"' not in p.stdout
    finally:
        shutil.rmtree(d, ignore_errors=True)


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

    def __init__(self, clamd_socket):
        binary = shutil.which("clamav-milter")
        if binary is None:
            raise AssertionError("clamav-milter is not installed: install the Debian package "
                                 "clamav-milter (tools/install-deps.sh does)")
        self.binary = binary
        self.dir = tempfile.mkdtemp(prefix="postern-it-clamav-milter-")
        os.chmod(self.dir, 0o755)  # postern's unprivileged worker reaches the socket
        self.socket_path = os.path.join(self.dir, "clamav-milter.sock")
        self.conf_path = os.path.join(self.dir, "clamav-milter.conf")
        self.log_path = os.path.join(self.dir, "clamav-milter.log")
        tmp = os.path.join(self.dir, "tmp")
        os.mkdir(tmp)
        lines = [
            "# written by tests/integration/test_milter_real.py",
            "MilterSocket unix:%s" % self.socket_path,
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

    def ready(self):
        if self.proc.poll() is not None:
            raise AssertionError("clamav-milter exited with status %s at start; log:\n%s"
                                 % (self.proc.returncode, self.log_tail()))
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
    if not has_milter_client():
        raise unittest.SkipTest("needs the milter client (the milters key, issue 12)")
    started = []
    try:
        clamd = ClamdPeer().start()
        started.append(clamd)
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
        s.ehlo()
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

    def delivered_header(self, qid):
        """The header section of alice's copy of qid, unfolded."""
        _, data = self.class_server.wait_delivery("alice", qid, timeout=scaled(20))
        head, _ = split_message(data)
        return unfold(head)

    def assertField(self, head, pattern):
        self.assertRegex(head, re.compile(pattern, re.M | re.I),
                         "no field matching %r in:\n%s" % (pattern, head))


class ClamavMilterTest(RealMilterCase):

    @classmethod
    def setUpClass(cls):
        cls.start_class_server(users=USERS, config={
            "milters": "unix:%s" % PEERS["clamav"].socket_path,
            "milter_default_action": "tempfail"})

    def test_virus_refused_with_the_milters_reply(self):
        code, text = send(self.class_server.port,
                          message("invoice", "See the file:\r\n%s\r\n" % EICAR.decode()))
        self.assertEqual(code, 550, text)
        self.assertEqual(text, "5.7.1 " + CLAMAV_REJECT.replace("%v", EICAR_NAME))
        self.assertRegex(PEERS["clamav"].log(), EICAR_NAME)
        self.assertEqual(self.class_server.maildir_new("alice"), [])

    def test_clean_message_delivered_with_its_fields(self):
        mark = uuid.uuid4().hex
        code, text = send(self.class_server.port, message(mark, HAM_BODY))
        self.assertEqual(code, 250, text)
        head = self.delivered_header(queue_id(text))
        self.assertField(head, r"^X-Virus-Scanned: clamav-milter \S+ at ")
        self.assertField(head, r"^X-Virus-Status: Clean$")
        self.assertField(head, r"^Subject: %s$" % mark)


class SpamassMilterTest(RealMilterCase):

    @classmethod
    def setUpClass(cls):
        cls.start_class_server(users=USERS, config={
            "milters": "unix:%s" % PEERS["spamass"].socket_path,
            "milter_default_action": "tempfail"})

    def test_gtube_refused_with_the_milters_reply(self):
        code, text = send(self.class_server.port, message("offer", "Buy now.\r\n%s\r\n" % GTUBE))
        self.assertEqual(code, 550, text)
        self.assertEqual(text, "5.7.1 Blocked by SpamAssassin")
        self.assertEqual(self.class_server.maildir_new("alice"), [])

    def test_ham_delivered_with_spam_fields(self):
        mark = uuid.uuid4().hex
        code, text = send(self.class_server.port, message(mark, HAM_BODY))
        self.assertEqual(code, 250, text)
        head = self.delivered_header(queue_id(text))
        self.assertField(head, r"^X-Spam-Checker-Version: SpamAssassin \d")
        self.assertField(head, r"^X-Spam-Status: No, score=-?\d+(\.\d+)? required=")
        self.assertField(head, r"^Subject: %s$" % mark)


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
        code, text = send(self.class_server.port,
                          message("virus", "File:\r\n%s\r\n" % EICAR.decode()))
        self.assertEqual((code, text), (550, "5.7.1 " + CLAMAV_REJECT.replace("%v",
                                                                              EICAR_NAME)))
        code, text = send(self.class_server.port, message("spam", "Now.\r\n%s\r\n" % GTUBE))
        self.assertEqual((code, text), (550, "5.7.1 Blocked by SpamAssassin"))
        self.assertEqual(self.class_server.maildir_new("alice"), [])

    def test_clean_message_gets_both(self):
        code, text = send(self.class_server.port, message("both", HAM_BODY))
        self.assertEqual(code, 250, text)
        head = self.delivered_header(queue_id(text))
        self.assertField(head, r"^X-Virus-Status: Clean$")
        self.assertField(head, r"^X-Spam-Status: No, score=")

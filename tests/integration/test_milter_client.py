"""
test_milter_client.py - postern calling a real milter (issue 12): the
Debian package's opendkim, started privately on a unix socket in the
test's own folder with a key generated for the test, in signing mode for
the test's domain, named in `milters`.

Checked over SMTP against the real server: a message from the signing
domain is delivered with the DKIM-Signature opendkim inserted, and that
signature verifies (opendkim's own test mode with the generated public
key); the log names the milter and what it changed, keyed by the queue
id; with the milter gone, milter_default_action decides (tempfail: 451,
nothing queued; continue: delivered unsigned); check-config names a bad
`milters` entry as FILE:LINE.

The reply kinds and changes of the protocol one by one are tested with
fake milters in tests/unit/test_milter_client.c; a libmilter test milter
exercising every reply is tests/milter/ (issue 12, other part).
"""
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
import unittest
import urllib.request

from harness import (DOMAIN, IS_ROOT, POSTERN_BIN, PosternTestCase, SmtpConn, free_port, make_message,
                     queue_id_of, scaled, wait_until)

OPENDKIM = shutil.which("opendkim") or "/usr/sbin/opendkim"
GENKEY = shutil.which("opendkim-genkey") or "/usr/sbin/opendkim-genkey"
SELECTOR = "test"


def have_opendkim():
    return os.access(OPENDKIM, os.X_OK) and os.access(GENKEY, os.X_OK)


class OpenDkim:
    """opendkim on a unix socket in a private folder, signing for DOMAIN."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="postern-it-opendkim-")
        os.chmod(self.dir, 0o755)  # the smtp worker (nobody) reaches the socket
        subprocess.run([GENKEY, "-b", "1024", "-d", DOMAIN, "-s", SELECTOR, "-D", self.dir],
                       check=True, capture_output=True)
        self.key = os.path.join(self.dir, SELECTOR + ".private")
        os.chmod(self.key, 0o600)
        self.socket = os.path.join(self.dir, "opendkim.sock")
        self.conf = os.path.join(self.dir, "opendkim.conf")
        self.log = os.path.join(self.dir, "opendkim.log")
        # The public key as opendkim's test mode reads it (TestPublicKeys:
        # "selector._domainkey.domain record").
        with open(os.path.join(self.dir, SELECTOR + ".txt")) as f:
            zone = f.read()
        record = "".join(part.split('"')[1] for part in zone.split("\n") if '"' in part)
        self.keys = os.path.join(self.dir, "keys")
        with open(self.keys, "w") as f:
            f.write("%s._domainkey.%s %s\n" % (SELECTOR, DOMAIN, record))
        lines = [
            "Syslog no",
            "Background no",
            "Mode sv",
            "Domain %s" % DOMAIN,
            "Selector %s" % SELECTOR,
            "KeyFile %s" % self.key,
            "Socket local:%s" % self.socket,
            "UMask 000",
            "RequireSafeKeys false",  # the key is under /tmp, which others can write
            "Canonicalization relaxed/simple",
            "InternalHosts 127.0.0.1",
            "TestPublicKeys %s" % self.keys,
            "PidFile %s" % os.path.join(self.dir, "opendkim.pid"),
        ]
        if IS_ROOT:
            lines.append("UserID root")
        with open(self.conf, "w") as f:
            f.write("\n".join(lines) + "\n")
        self.proc = None

    def start(self):
        self.logf = open(self.log, "ab")
        self.proc = subprocess.Popen([OPENDKIM, "-f", "-x", self.conf], stdout=self.logf,
                                     stderr=subprocess.STDOUT)
        wait_until(lambda: os.path.exists(self.socket), scaled(10), what="opendkim's socket")

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(scaled(10))
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None
        if getattr(self, "logf", None) is not None:
            self.logf.close()
            self.logf = None

    def verify(self, message_bytes):
        """opendkim's test mode on a delivered message: its output."""
        path = os.path.join(self.dir, "delivered.eml")
        with open(path, "wb") as f:
            f.write(message_bytes)
        conf = os.path.join(self.dir, "verify.conf")
        with open(conf, "w") as f:
            f.write("Syslog no\nMode v\nTestPublicKeys %s\n%s" %
                    (self.keys, "UserID root\n" if IS_ROOT else ""))
        r = subprocess.run([OPENDKIM, "-x", conf, "-t", path], capture_output=True,
                           timeout=scaled(30))
        return r.returncode, (r.stdout + r.stderr).decode("utf-8", "replace")

    def remove(self):
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


def send(port, sender, subject):
    """One message from sender to alice over SMTP; the final reply."""
    msg = make_message(subject=subject, sender=sender, body="Signed body.\r\nSecond line.\r\n")
    with SmtpConn(port) as c:
        c.ehlo()
        r = c.cmd("MAIL FROM:<%s>" % sender)
        if r.code != 250:
            return r
        r = c.cmd("RCPT TO:<alice@%s>" % DOMAIN)
        if r.code != 250:
            return r
        r = c.cmd("DATA")
        if r.code != 354:
            return r
        c.send(msg.encode() + b".\r\n")
        r = c.reply(timeout=scaled(30))
        c.cmd("QUIT")
        return r


@unittest.skipUnless(have_opendkim(), "opendkim is not installed (tools/install-deps.sh)")
class OpenDkimSigning(PosternTestCase):

    def setUp(self):
        super().setUp()
        self.dkim = OpenDkim()
        self.addCleanup(self.dkim.remove)
        self.dkim.start()

    def server(self, **settings):
        config = {"milters": "unix:%s" % self.dkim.socket}
        config.update(settings)
        return self.start_server(config=config)

    def test_delivered_message_carries_a_valid_signature(self):
        srv = self.server()
        r = send(srv.port, "sender@%s" % DOMAIN, "signed by opendkim")
        self.assertReply(r, 250)
        qid = queue_id_of(r.text)
        _, delivered = srv.wait_delivery("alice", qid)
        head = delivered.split(b"\n\n", 1)[0]
        self.assertIn(b"\nDKIM-Signature: ", b"\n" + head)
        self.assertIn(b"d=%s" % DOMAIN.encode(), head)
        self.assertIn(b"s=%s" % SELECTOR.encode(), head)
        # The signature verifies over the message as delivered.
        rc, out = self.dkim.verify(delivered)
        self.assertEqual(rc, 0, out)
        self.assertIn("verification (s=%s, d=%s" % (SELECTOR, DOMAIN), out)
        self.assertIn("succeeded", out)
        # ... and the verifier is not fooled: a changed body fails it.
        rc, out = self.dkim.verify(delivered.replace(b"Second line.", b"Other line."))
        self.assertNotIn("succeeded", out)
        # The log says which milter changed the message, keyed by its id.
        srv.wait_log(r"%s: milter=unix:%s changes=1" % (qid, self.dkim.socket))

    def test_milter_gone_default_tempfail(self):
        metrics_port = free_port()
        srv = self.server(metrics_listen="127.0.0.1:%d" % metrics_port)
        self.dkim.stop()
        os.unlink(self.dkim.socket)
        r = send(srv.port, "sender@%s" % DOMAIN, "no milter")
        self.assertReply(r, 451, "4.7.1")
        self.assertEqual(srv.spool_files("queue"), [])
        srv.wait_log(r"milter=unix:%s failed: cannot connect" % self.dkim.socket)
        # The refusal is counted as the milter's.
        url = "http://127.0.0.1:%d/metrics" % metrics_port

        def counted():
            with urllib.request.urlopen(url, timeout=scaled(10)) as m:
                text = m.read().decode("utf-8")
            return re.search(r'^postern_smtp_rejections_total\{[^}]*check="milter"[^}]*\} [1-9]',
                             text, re.M)
        wait_until(counted, scaled(10), what="a refusal counted with check=milter")

    def test_milter_gone_default_continue(self):
        srv = self.server(milter_default_action="continue")
        self.dkim.stop()
        os.unlink(self.dkim.socket)
        r = send(srv.port, "sender@%s" % DOMAIN, "no milter, continue")
        self.assertReply(r, 250)
        _, delivered = srv.wait_delivery("alice", queue_id_of(r.text))
        self.assertNotIn(b"DKIM-Signature", delivered)


class MilterConfig(PosternTestCase):

    @unittest.skipUnless(IS_ROOT, "needs root to run check-config as another user")
    def test_descriptors_count_the_milters(self):
        # Each session holds a connection to each milter, and the message
        # they read: the open-file check at start counts them.
        srv = self.start_server(start=False, config={
            "worker_connections": "100",
            "milters": "unix:/run/a.sock, unix:/run/b.sock"})
        p = subprocess.run(["prlimit", "--nofile=256:256", "setpriv",
                            "--reuid=65534", "--regid=65534", "--clear-groups",
                            POSTERN_BIN, "check-config", "-c", srv.conf_path],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=scaled(20))
        err = p.stderr.decode()
        self.assertEqual(p.returncode, 1, err)
        self.assertIn("worker_connections: 100 sessions per smtp worker need 564 open files "
                      "(5 per session: socket, queue file, 2 milters and the message they "
                      "read plus 64), but the limit is 256", err)

    def test_check_config_names_the_line(self):
        srv = self.start_server(start=False, config={"milters": "inet:mail.example:8891"})
        r = srv.run_cli("check-config")
        self.assertNotEqual(r.returncode, 0)
        with open(srv.conf_path) as f:
            line = 1 + [l.split("=")[0].strip() for l in f].index("milters")
        self.assertIn("%s:%d: milters: " % (srv.conf_path, line),
                      (r.stderr + r.stdout).decode("utf-8", "replace"))


if __name__ == "__main__":
    unittest.main()

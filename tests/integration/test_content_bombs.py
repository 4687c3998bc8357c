"""
test_content_bombs.py - messages built to exhaust a scanner, sent over
STARTTLS as most real senders send, against the demo's content policy
and test signatures: a zip bomb (archives that expand a thousandfold), a
MIME bomb nested far deeper than mime_max_depth, and one with more parts
than mime_max_parts. Each is refused during the DATA phase with its own
code, the scanners' memory stays bounded, the same TLS session goes on,
and a clean message after them is delivered.
"""
import base64
import io
import os
import time
import unittest
import zipfile

from harness import (REPO, PosternTestCase, SmtpConn, descendants, make_message,
                     scaled)

TEST_SIGNATURES = os.path.join(REPO, "etc", "clamav-test")
CONTENT_RULES = os.path.join(REPO, "etc", "content-rules.example")
# A scanner maps the message and libclamav extracts to temporary files:
# its peak resident memory must stay far below what the bombs expand to.
SCANNER_PEAK_LIMIT_KB = 256 * 1024


def crlf(message):
    return message.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def zip_bomb():
    """Eight files of 32 MB of zeros: 256 MB that deflate to about 250 KB."""
    zeros = bytes(32 << 20)
    b = io.BytesIO()
    with zipfile.ZipFile(b, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as z:
        for i in range(8):
            z.writestr("backup%d.dat" % i, zeros)
    data = b.getvalue()
    assert len(data) < 400 * 1024, len(data)
    return (b"From: <s@remote.test>\nTo: <alice@example.test>\nSubject: backups\n"
            b"MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=\"z\"\n\n"
            b"--z\nContent-Type: text/plain\n\nThe backups.\n\n--z\n"
            b"Content-Type: application/zip; name=\"backups.zip\"\n"
            b"Content-Disposition: attachment; filename=\"backups.zip\"\n"
            b"Content-Transfer-Encoding: base64\n\n" + base64.encodebytes(data) + b"\n--z--\n")


def nested_bomb(depth):
    """multipart/mixed inside multipart/mixed, depth levels down."""
    head = b"From: <s@remote.test>\nTo: <alice@example.test>\nSubject: deep\nMIME-Version: 1.0\n"
    opening, closing = [], []
    for level in range(depth):
        opening.append(b"Content-Type: multipart/mixed; boundary=\"l%d\"\n\n--l%d\n"
                       % (level, level))
        closing.append(b"\n--l%d--\n" % level)
    return head + b"".join(opening) + b"Content-Type: text/plain\n\ncore\n" + \
        b"".join(reversed(closing))


def many_parts(count):
    parts = b"".join(b"--p\nContent-Type: text/plain\n\npart %d\n" % i for i in range(count))
    return (b"From: <s@remote.test>\nTo: <alice@example.test>\nSubject: many\n"
            b"MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=\"p\"\n\n"
            + parts + b"--p--\n")


def dot_stuffed(message):
    lines = crlf(message).split(b"\r\n")
    return b"\r\n".join(b"." + ln if ln.startswith(b".") else ln for ln in lines)


def peak_kb(pid):
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


class ContentBombTest(PosternTestCase):

    @classmethod
    def setUpClass(cls):
        cls.srv = cls.start_class_server(users=["alice"], tls=True, config={
            "clamav_db_dir": TEST_SIGNATURES, "content_rules_file": CONTENT_RULES})

    def scanners(self):
        masters = self.srv.role_pids("scan")
        self.assertTrue(masters, "no scan master; log:\n" + self.srv.log_tail())
        return [p for m in masters for p in descendants(m)]

    def tls_session(self):
        c = SmtpConn(self.srv.port, timeout=scaled(60))
        self.addCleanup(c.close)
        c.ehlo()
        c.starttls()
        c.ehlo()
        return c

    def send(self, c, message):
        self.start_data(c, "sender@remote.test", ["alice@example.test"])
        c.send(dot_stuffed(message) + b".\r\n")
        return c.reply(timeout=scaled(60))

    def test_bombs_refused_in_one_tls_session_then_clean_mail_delivered(self):
        c = self.tls_session()
        started = time.monotonic()
        r = self.send(c, zip_bomb())
        self.assertReply(r, 550, "5.7.0")
        self.assertIn("Heuristics.Limits.Exceeded", r.text)
        self.assertLess(time.monotonic() - started, scaled(30))

        r = self.send(c, nested_bomb(1000))
        self.assertReply(r, 554, "5.6.0")
        r = self.send(c, many_parts(5000))
        self.assertReply(r, 554, "5.6.0")

        self.start_data(c, "sender@remote.test", ["alice@example.test"])
        qid = self.send_data_queued(c, make_message(subject="after the bombs") + ".\r\n")
        self.srv.wait_delivery("alice", qid)
        self.assertEqual(len(self.srv.maildir_new("alice")), 1,
                         "only the clean message reaches alice")
        scanners = self.scanners()
        self.assertTrue(scanners, "no scanner process found")
        for pid in scanners:
            self.assertLess(peak_kb(pid), SCANNER_PEAK_LIMIT_KB,
                            "scanner %d peaked at %d kB" % (pid, peak_kb(pid)))
        log = self.srv.log()
        self.assertRegex(log, r"scan action=reject reason=virus")
        self.assertRegex(log, r"scan action=reject reason=mime_limit")


if __name__ == "__main__":
    unittest.main()

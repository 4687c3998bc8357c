"""
test_antivirus.py - the antivirus as a user sees it, with postern's test
signatures (etc/clamav-test).

ClamdInstreamTest drives postern's INSTREAM client (the unit-test binary
test_clamd, built beside POSTERN_BIN) against a real clamd started
privately by clamd_peer.py: every encoding and archive, clamd's
StreamMaxLength, TCP, and clamd killed in the middle of a stream.

The other classes need issue 7's scanner processes and `postern scan`
(the scan pipeline): over SMTP, EICAR in every wrapping a mail client
opens (encodings, zip, zip in zip, gzip, tar, an attached message, a
lying type) is refused with "550 5.7.0 virus found: NAME" while clean mail is
delivered; quarantine and discard; no notice to anyone; clamd mode,
clamd gone (451 4.7.0) and scan_fail_open; `postern scan` with the demo
configuration; the signature folder changed under a running server (new
signatures apply without a reload, a set that does not load keeps the
running engine, at a change and at SIGHUP). Until the pipeline is in the
binary they are skipped with that reason.
"""
import base64
import binascii
import gzip
import io
import os
import quopri
import re
import shutil
import signal
import smtplib
import subprocess
import tarfile
import tempfile
import time
import unittest
import zipfile

from harness import (POSTERN_BIN, REPO, PosternTestCase, SmtpConn, make_message, scaled,
                     smtplib_send, wait_until)
from clamd_peer import TEST_SIGNATURES, ClamdPeer

# The EICAR test file, from two halves: no file of the tree is a test virus.
EICAR = b"X5O!P%@AP[4\\PZX54(P^)7CC)7}$" + b"EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"
EICAR_NAME = "Postern.Test.EICAR.UNOFFICIAL"
with open(os.path.join(TEST_SIGNATURES, "samples", "hash-sample.txt"), "rb") as _f:
    HASH_SAMPLE = _f.read()
PATTERN_SAMPLE = b"data POSTERN-AV-TEST-2:\x01\x02\x03\x04:END data\n"
CORPUS_HAM = os.path.join(os.path.dirname(REPO), "shared", "corpus", "train", "ham")
USERS = ["alice", "bob", "admin"]


def has_scan_pipeline():
    """Is the content scan (the scanner processes, postern scan) in this
    binary? The antivirus stage is reached only through it."""
    out = subprocess.run([POSTERN_BIN, "help"], stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, universal_newlines=True).stdout
    return re.search(r"(?m)^  scan\b", out) is not None


def needs_pipeline(cls):
    return unittest.skipUnless(has_scan_pipeline(), "needs the scan pipeline (issue 7: the "
                               "scanner processes and postern scan)")(cls)


# ---- messages ---------------------------------------------------------------

def zip_of(files):
    b = io.BytesIO()
    with zipfile.ZipFile(b, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in files:
            z.writestr(name, data)
    return b.getvalue()


def encode(data, cte):
    if cte == "base64":
        return base64.encodebytes(data)
    if cte == "quoted-printable":
        # Every byte but letters and digits as =XX: no trace of the raw bytes.
        out, col = [], 0
        for byte in data:
            piece = bytes([byte]) if chr(byte).isalnum() else b"=%02X" % byte
            if col + len(piece) > 72:
                out.append(b"=\n")
                col = 0
            out.append(piece)
            col += len(piece)
        return b"".join(out) + b"\n"
    if cte == "x-uuencode":
        lines = [binascii.b2a_uu(data[i:i + 45]) for i in range(0, len(data), 45)]
        return b"begin 644 file\n" + b"".join(lines) + b"`\nend\n"
    return data + b"\n"


def tar_of(files, mode="w"):
    b = io.BytesIO()
    with tarfile.open(fileobj=b, mode=mode) as t:
        for name, data in files:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mtime = 1700000000
            t.addfile(info, io.BytesIO(data))
    return b.getvalue()


def with_attachment(data, ctype="application/octet-stream", name="file.bin", cte="base64",
                    subject="a file for you"):
    """A multipart/mixed message (LF line ends) with one attachment."""
    head = ("From: <sender@remote.test>\nTo: <alice@example.test>\nSubject: %s\n"
            "Message-ID: <%f@remote.test>\nMIME-Version: 1.0\n"
            "Content-Type: multipart/mixed; boundary=\"b1\"\n\n--b1\n"
            "Content-Type: text/plain\n\nThe file is attached.\n\n--b1\n"
            "Content-Type: %s; name=\"%s\"\n"
            "Content-Disposition: attachment; filename=\"%s\"\n"
            "Content-Transfer-Encoding: %s\n\n"
            % (subject, time.time(), ctype, name, name,
               "7bit" if cte == "x-uuencode" else cte)).encode()
    return head + encode(data, cte) + b"\n--b1--\n"


def forwarded(inner):
    return (b"From: <fwd@remote.test>\nTo: <alice@example.test>\nSubject: Fwd\n"
            b"MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=\"o\"\n\n"
            b"--o\nContent-Type: text/plain\n\nSee below.\n\n--o\n"
            b"Content-Type: message/rfc822\n\n" + inner + b"\n--o--\n")


def virus_cases():
    """(case, message, virus name): every wrapping a mail client opens."""
    z = zip_of([("readme.txt", b"nothing\n"), ("eicar.com", EICAR)])
    return [
        ("plain body", b"From: <s@remote.test>\nSubject: hi\n\n" + EICAR + b"\n", EICAR_NAME),
        ("base64", with_attachment(EICAR, name="eicar.com"), EICAR_NAME),
        ("quoted-printable", with_attachment(EICAR, cte="quoted-printable"), EICAR_NAME),
        ("uuencode", with_attachment(EICAR, cte="x-uuencode"), EICAR_NAME),
        ("zip", with_attachment(z, "application/zip", "a.zip"), EICAR_NAME),
        ("zip in zip", with_attachment(zip_of([("in.zip", z)]), "application/zip", "b.zip"),
         EICAR_NAME),
        ("gzip", with_attachment(gzip.compress(EICAR), "application/gzip", "e.gz"), EICAR_NAME),
        ("attached message", forwarded(with_attachment(EICAR)), EICAR_NAME),
        ("lying content type", with_attachment(z, "image/png", "holiday.png"), EICAR_NAME),
        ("hash signature", with_attachment(HASH_SAMPLE, "text/plain", "s.txt"),
         "Postern.Test.HashSample.UNOFFICIAL"),
        ("pattern signature", with_attachment(gzip.compress(PATTERN_SAMPLE), "application/gzip",
                                              "d.gz"), "Postern.Test.Pattern.UNOFFICIAL"),
        ("tar", with_attachment(tar_of([("notes.txt", b"notes\n"), ("eicar.com", EICAR)]),
                                "application/x-tar", "files.tar"), EICAR_NAME),
        ("tar.gz", with_attachment(tar_of([("eicar.com", EICAR)], "w:gz"), "application/gzip",
                                   "files.tar.gz"), EICAR_NAME),
    ]


def clean_cases():
    text = b"the quick brown fox jumps over the lazy dog\n" * 200
    return [
        ("plain", make_message(subject="lunch", body="Noon?").encode()),
        ("html", b"From: <a@remote.test>\nSubject: news\nMIME-Version: 1.0\n"
                 b"Content-Type: text/html\n\n<html><body><a href=\"http://x.example/\">"
                 b"https://bank.example/</a></body></html>\n"),
        ("zip of text", with_attachment(zip_of([("a.txt", text)]), "application/zip", "a.zip")),
        ("gzip of text", with_attachment(gzip.compress(text), "application/gzip", "a.gz")),
        ("almost EICAR", with_attachment(EICAR[:-1])),
        ("almost the hash sample", with_attachment(HASH_SAMPLE + b" ", "text/plain", "s.txt")),
    ]


def corpus_ham(n):
    """Up to n messages of the shared corpus (its mbox From_ line off)."""
    if not os.path.isdir(CORPUS_HAM):
        return []
    out = []
    for name in sorted(os.listdir(CORPUS_HAM))[:n]:
        with open(os.path.join(CORPUS_HAM, name), "rb") as f:
            data = f.read()
        if data.startswith(b"From "):
            data = data.split(b"\n", 1)[1]
        if b"\r" in data or b"\0" in data:
            continue  # bare CRs, NULs: refused by bare_newline = reject, not our subject
        out.append((name, data))
    return out


def send_raw(port, message, sender="sender@remote.test", rcpt="alice@example.test"):
    """One SMTP transaction; the final (code, text) of the DATA. smtplib
    sends bytes as they are, so LF line ends become CRLF here."""
    message = message.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    with smtplib.SMTP("127.0.0.1", port, local_hostname="client.test",
                      timeout=scaled(30)) as s:
        s.ehlo()
        code, text = s.mail(sender)
        assert code == 250, (code, text)
        code, text = s.rcpt(rcpt)
        assert code == 250, (code, text)
        code, text = s.data(message)
        return code, text.decode("utf-8", "replace")


# ---- clamd and the INSTREAM client --------------------------------------------

class ClamdInstreamTest(unittest.TestCase):
    """The client against a real clamd; runs with or without the pipeline."""

    def run_client_tests(self, env, test_filter):
        binary = os.path.join(os.path.dirname(POSTERN_BIN), "tests", "test_clamd")
        if not os.access(binary, os.X_OK):
            raise AssertionError("%s is missing: make check-unit builds it" % binary)
        env = dict(os.environ, POSTERN_TEST_FILTER=test_filter, **env)
        p = subprocess.run([binary], cwd=REPO, env=env, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, universal_newlines=True,
                           timeout=scaled(120))
        self.assertEqual(p.returncode, 0, p.stdout[-4000:])
        return p.stdout

    def test_client_against_real_clamd(self):
        with ClamdPeer(stream_max="4M", tcp=True) as clamd:
            out = self.run_client_tests({
                "POSTERN_TEST_CLAMD_SOCKET": clamd.socket_path,
                "POSTERN_TEST_CLAMD_STREAM_MAX": str(4 << 20),
                "POSTERN_TEST_CLAMD_TCP": clamd.tcp_spec,
            }, "test_real_clamd_*")
            log = clamd.log()
        for name in ("detects_every_case", "stream_limit", "tcp"):
            self.assertIn("[       OK ] test_real_clamd_%s" % name, out)
        self.assertIn("[  SKIPPED ] test_real_clamd_killed_mid_stream", out)  # the next test
        # clamd really saw them: one line per detection, the size refused.
        self.assertGreaterEqual(log.count("Postern.Test.EICAR.UNOFFICIAL FOUND"), 8, log)
        self.assertIn("Postern.Test.HashSample.UNOFFICIAL FOUND", log)
        self.assertIn("Size limit reached", log)

    def test_clamd_killed_mid_stream(self):
        with ClamdPeer(stream_max="1000M") as clamd:
            out = self.run_client_tests({
                "POSTERN_TEST_CLAMD_SOCKET": clamd.socket_path,
                "POSTERN_TEST_CLAMD_KILL_PID": str(clamd.pid),
            }, "test_real_clamd_killed_mid_stream")
            self.assertIn("[       OK ] test_real_clamd_killed_mid_stream", out)
            # SIGKILL was sent before the test program ended; the process
            # may take a moment to be gone (a large clamd unmaps its
            # signatures first).
            wait_until(lambda: not clamd.running(), scaled(10), what="clamd killed")


# ---- over SMTP (needs the scan pipeline) ---------------------------------------

@needs_pipeline
class AntivirusSmtpTest(PosternTestCase):

    @classmethod
    def setUpClass(cls):
        cls.srv = cls.start_class_server(users=USERS, config={
            "clamav_db_dir": TEST_SIGNATURES})

    def test_every_wrapping_refused_with_its_name(self):
        for case, message, name in virus_cases():
            with self.subTest(case=case):
                code, text = send_raw(self.srv.port, message)
                self.assertEqual(code, 550, text)
                self.assertEqual(text, "5.7.0 virus found: %s" % name)
        # And the CRLF flavour of one of them, as most clients send it.
        code, text = send_raw(self.srv.port, virus_cases()[4][1].replace(b"\n", b"\r\n"))
        self.assertEqual((code, text), (550, "5.7.0 virus found: %s" % EICAR_NAME))
        time.sleep(1)
        self.assertEqual(self.srv.maildir_new("alice"), [], "a virus reached alice")

    def test_clean_mail_is_delivered(self):
        cases = clean_cases() + corpus_ham(40)
        for case, message in cases:
            with self.subTest(case=case):
                code, text = send_raw(self.srv.port, message, rcpt="bob@example.test")
                self.assertEqual(code, 250, text)
        wait_until(lambda: len(self.srv.maildir_new("bob")) >= len(cases), scaled(30),
                   what="delivery of the %d clean messages to bob" % len(cases))

    def test_session_goes_on_after_a_refusal(self):
        c = SmtpConn(self.srv.port)
        self.addCleanup(c.close)
        c.ehlo()
        self.start_data(c, "sender@remote.test", ["alice@example.test"])
        body = virus_cases()[1][1].replace(b"\n", b"\r\n").decode()
        c.send(body + ".\r\n")
        self.assertReply(c.reply(), 550, "5.7.0")
        self.start_data(c, "sender@remote.test", ["alice@example.test"])
        qid = self.send_data_queued(c, make_message(subject="after") + ".\r\n")
        self.srv.wait_delivery("alice", qid)

    def test_no_notice_to_the_sender(self):
        code, _ = send_raw(self.srv.port, virus_cases()[1][1], sender="admin@example.test")
        self.assertEqual(code, 550)
        time.sleep(2)
        self.assertEqual(self.srv.maildir_new("admin"), [])


@needs_pipeline
class VirusActionTest(PosternTestCase):

    def test_quarantine(self):
        srv = self.start_server(users=USERS, config={"clamav_db_dir": TEST_SIGNATURES,
                                                     "virus_action": "quarantine"})
        code, text = send_raw(srv.port, virus_cases()[1][1], sender="admin@example.test")
        self.assertEqual(code, 250, text)
        self.assertTrue(self.wait_for(lambda: srv.spool_files("quarantine")),
                        "nothing in quarantine/; log:\n" + srv.log_tail())
        time.sleep(1)
        self.assertEqual(srv.maildir_new("alice"), [])
        self.assertEqual(srv.maildir_new("admin"), [], "a notice reached the sender")

    def test_discard(self):
        srv = self.start_server(users=USERS, config={"clamav_db_dir": TEST_SIGNATURES,
                                                     "virus_action": "discard"})
        code, text = send_raw(srv.port, virus_cases()[4][1], sender="admin@example.test")
        self.assertEqual(code, 250, text)
        qid = smtplib_send(srv.port, "sender@remote.test", ["alice@example.test"],
                           make_message(subject="clean after"))
        srv.wait_delivery("alice", qid)
        self.assertEqual(len(srv.maildir_new("alice")), 1, "the virus was delivered")
        self.assertEqual(srv.maildir_new("admin"), [], "a notice reached the sender")

    def wait_for(self, predicate, timeout=None):
        deadline = time.monotonic() + (timeout or scaled(10))
        while time.monotonic() < deadline:
            if predicate():
                return True
            time.sleep(0.1)
        return False


@needs_pipeline
class ClamdModeSmtpTest(PosternTestCase):

    def test_clamd_mode(self):
        with ClamdPeer(stream_max="64M") as clamd:
            srv = self.start_server(users=USERS, config={"clamd_socket": clamd.socket_path})
            for case, message, name in virus_cases()[1:5]:
                with self.subTest(case=case):
                    code, text = send_raw(srv.port, message)
                    self.assertEqual((code, text), (550, "5.7.0 virus found: %s" % name))
            qid = smtplib_send(srv.port, "sender@remote.test", ["alice@example.test"],
                               make_message(subject="clean"))
            srv.wait_delivery("alice", qid)
        # clamd gone: fail closed.
        code, text = send_raw(srv.port, make_message(subject="no clamd").encode())
        self.assertEqual(code, 451, text)
        self.assertTrue(text.startswith("4.7.0"), text)

    def test_clamd_gone_with_scan_fail_open(self):
        srv = self.start_server(users=USERS, config={
            "clamd_socket": os.path.join(tempfile.gettempdir(), "postern-no-clamd.sock"),
            "scan_fail_open": "yes"})
        qid = smtplib_send(srv.port, "sender@remote.test", ["alice@example.test"],
                           make_message(subject="accepted unscanned"))
        srv.wait_delivery("alice", qid)


@needs_pipeline
class SignatureReloadTest(PosternTestCase):
    """clamav_db_dir changed under a running server, as freshclam changes
    it: new signatures apply without a reload; a set that does not load
    is named in the log and the running engine goes on refusing, at a
    change and at SIGHUP; a good set then loads at SIGHUP."""

    FRESH = b"POSTERN-FRESH-SIGNATURE-7"
    NEWER = b"POSTERN-NEWER-SIGNATURE-7"

    def write_signatures(self, db, name, text):
        tmp = os.path.join(db, ".tmp-" + name)
        with open(tmp, "w") as f:
            f.write(text)
        os.chmod(tmp, 0o644)
        os.rename(tmp, os.path.join(db, name))  # as freshclam replaces its files

    def signature(self, name, data):
        return "%s:0:*:%s\n" % (name, data.hex())

    def marked(self, data):
        return with_attachment(b"data " + data + b" data\n", name="f.bin")

    def test_signatures_follow_the_folder_and_a_broken_set_keeps_the_old(self):
        db = tempfile.mkdtemp(prefix="postern-it-sigs-")
        self.addCleanup(shutil.rmtree, db, True)
        os.chmod(db, 0o755)  # read by the scan master as nobody
        for name in ("postern-test.ndb", "postern-test.hdb"):
            shutil.copy(os.path.join(TEST_SIGNATURES, name), db)
            os.chmod(os.path.join(db, name), 0o644)
        srv = self.start_server(users=USERS, config={"clamav_db_dir": db})
        srv.wait_log(r"scan master ready")
        eicar = virus_cases()[1][1]
        self.assertEqual(send_raw(srv.port, self.marked(self.FRESH))[0], 250)

        # A new file in the folder: loaded beside the running engine, no SIGHUP.
        offset = srv.log_size()
        self.write_signatures(db, "fresh.ndb", self.signature("Postern.Test.Fresh", self.FRESH))
        srv.wait_log(r"scan: new pipeline loaded", since=offset, timeout=scaled(30))
        self.assertEqual(send_raw(srv.port, self.marked(self.FRESH)),
                         (550, "5.7.0 virus found: Postern.Test.Fresh.UNOFFICIAL"))

        # A file that does not load: named, and the running engine stays.
        offset = srv.log_size()
        self.write_signatures(db, "broken.ndb", "Broken.Sig:0:*:zz\n")
        srv.wait_log(r"scan: the changed files do not load: .*; the running pipeline stays",
                     since=offset, timeout=scaled(30))
        self.assertEqual(send_raw(srv.port, self.marked(self.FRESH))[0], 550)
        self.assertEqual(send_raw(srv.port, eicar), (550, "5.7.0 virus found: " + EICAR_NAME))
        # SIGHUP with the broken set: the running generation goes on.
        m = srv.reload()
        self.assertIn("keeping the running generation", m.group(0))
        self.assertEqual(send_raw(srv.port, self.marked(self.FRESH))[0], 550)
        self.assertEqual(send_raw(srv.port, eicar)[0], 550)

        # Repaired, with one more signature: SIGHUP loads it.
        os.unlink(os.path.join(db, "broken.ndb"))
        self.write_signatures(db, "newer.ndb", self.signature("Postern.Test.Newer", self.NEWER))
        m = srv.reload(wait_old=True)
        self.assertIn("starting generation", m.group(0))
        self.assertEqual(send_raw(srv.port, self.marked(self.NEWER)),
                         (550, "5.7.0 virus found: Postern.Test.Newer.UNOFFICIAL"))
        self.assertEqual(send_raw(srv.port, self.marked(self.FRESH))[0], 550)
        self.assertEqual(send_raw(srv.port, eicar)[0], 550)
        # Only the first message, sent before its signature existed, got in.
        wait_until(lambda: srv.maildir_new("alice"), scaled(10), what="delivery")
        time.sleep(1)
        self.assertEqual(len(srv.maildir_new("alice")), 1)


@needs_pipeline
class ScanCommandTest(unittest.TestCase):
    """postern scan -c etc/postern.conf: the demo catches the test viruses
    out of the box."""

    def scan(self, data, conf=os.path.join(REPO, "etc", "postern.conf")):
        with tempfile.NamedTemporaryFile(suffix=".eml") as f:
            f.write(data)
            f.flush()
            return subprocess.run([POSTERN_BIN, "scan", "-c", conf, f.name],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  universal_newlines=True, timeout=scaled(60))

    def test_demo_configuration_finds_every_case(self):
        for case, message, name in virus_cases():
            with self.subTest(case=case):
                p = self.scan(message)
                self.assertEqual(p.returncode, 1, p.stdout + p.stderr)
                self.assertIn(name, p.stdout)
        for case, message in clean_cases():
            with self.subTest(case=case):
                p = self.scan(message)
                self.assertEqual(p.returncode, 0, p.stdout + p.stderr)

    def test_broken_signature_folder_is_named(self):
        with tempfile.TemporaryDirectory() as d:
            os.chmod(d, 0o755)  # as root, postern scan reads it as nobody
            with open(os.path.join(d, "bad.ndb"), "w") as f:
                f.write("Bad.Sig:0:*:zz\n")
            conf = os.path.join(d, "postern.conf")
            with open(conf, "w") as f:
                f.write("hostname = mx.example.test\nclamav_db_dir = %s\n" % d)
            p = self.scan(b"Subject: x\n\nhello\n", conf)
            self.assertEqual(p.returncode, 2, p.stdout + p.stderr)
            self.assertIn(d, p.stderr)
            self.assertIn("Malformed database", p.stderr)

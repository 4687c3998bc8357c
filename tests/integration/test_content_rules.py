"""
test_content_rules.py - the content policy over SMTP (issue 7): the real
server with a content_rules_file (postern-rules(5)) refuses, defers,
discards, quarantines, logs or tags messages during DATA by attachment
names (RFC 2047 and RFC 2231 encoded), double extensions, the type
detected from the bytes (an exe renamed .txt), names inside zips (nested,
encrypted), message/partial, headers and the envelope; clean messages all
pass; a rules file with a mistake stops the start and, on SIGHUP, leaves
the running rules in place.

These tests need the whole pipeline: the MIME parser, the scanner
processes and the end-of-data check. They are skipped, saying so, when
the binary has no "postern scan" command (a branch without them).
"""
import base64
import binascii
import io
import os
import re
import signal
import struct
import subprocess
import time
import unittest
import urllib.parse
import zipfile

from harness import (POSTERN_BIN, PosternServer, PosternTestCase, Reply, process_alive,
                     queue_id_of, scaled, split_message, wait_until)

RULES = r"""# written by tests/integration/test_content_rules.py
rule double-extension
    double-extension exe scr pif com bat cmd vbs js
    reject "Attachment names that hide a program are not accepted"

rule programs
    extension exe scr pif com bat cmd vbs js
    reject "Program files are not accepted"

rule program-content
    type application/x-dosexec application/vnd.microsoft.portable-executable
    reject "Program files are not accepted, whatever their name"

rule programs-in-archive
    in-archive extension exe scr vbs js
    reject "Archives holding programs are not accepted"

rule locked-archive
    encrypted-archive
    quarantine "password-protected archive"

rule partial
    type message/partial
    reject "Messages split into parts are not accepted"

rule long-date
    any-header Date longer-than 200
    reject "Malformed Date header"

rule subject-tempfail
    header Subject /\[tempfail-me\]/
    tempfail "Please try again later"

rule subject-discard
    header Subject /\[discard-me\]/
    discard

rule subject-quarantine
    header Subject /\[quarantine-me\]/
    quarantine "held by the test"

rule subject-warn
    header Subject /\[warn-me\]/
    warn "would be refused"

rule subject-tag
    header Subject /\[tag-me\]/
    tag

rule subject-custom-tag
    header Subject /\[custom-tag-me\]/i
    tag "X-Test-Mark: custom"

rule blocked-sender
    sender @blocked.test
    reject "Mail from this sender is refused"

rule carol-from-loopback
    client 127.0.0.0/8 ::1
    recipient carol@example.test
    reject "carol takes no mail from this network"
"""

_usage = None


def pipeline_available():
    """Is the content pipeline built into this binary?"""
    global _usage
    if _usage is None:
        p = subprocess.run([POSTERN_BIN, "help"], stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, timeout=scaled(10))
        _usage = p.stdout.decode("utf-8", "replace")
    return re.search(r"(?m)^\s+scan\b", _usage) is not None


def needs_pipeline(cls):
    return unittest.skipUnless(
        os.path.exists(POSTERN_BIN) and pipeline_available(),
        "the content pipeline (MIME parser, scanners, 'postern scan') is not in this build")(cls)


# ---- messages ------------------------------------------------------------------

PE_BYTES = (b"MZ\x90\x00\x03\x00" + b"\x00" * 54 + struct.pack("<I", 0x80) + b"\x00" * 64 +
            b"PE\x00\x00" + struct.pack("<HHIIIHH", 0x14C, 1, 0, 0, 0, 0xE0, 0x0102) +
            struct.pack("<H", 0x10B) + b"\x00" * 66 + struct.pack("<H", 2) + b"\x00" * 0x9C +
            b"\x00" * 256)


def b64_lines(data):
    text = base64.b64encode(data).decode("ascii")
    return "\r\n".join(text[i:i + 76] for i in range(0, len(text), 76))


def attachment(disposition_params, data, content_type="application/octet-stream",
               type_params=""):
    """A MIME part, base64, with the given Content-Disposition parameters
    written as they are (so that their encoding is the test's)."""
    return ("Content-Type: %s%s\r\nContent-Transfer-Encoding: base64\r\n"
            "Content-Disposition: attachment;%s\r\n\r\n%s\r\n"
            % (content_type, type_params, disposition_params, b64_lines(data)))


def named(filename, data, content_type="application/octet-stream"):
    return attachment(' filename="%s"' % filename, data, content_type)


def mime_message(parts, subject="content rules test", sender="someone@remote.test",
                 to="alice@example.test", extra_headers=()):
    """A multipart/mixed message (bytes, CRLF): a text body, then parts."""
    boundary = "=_postern_test_%d" % int(time.time() * 1e6)
    head = ["From: <%s>" % sender, "To: <%s>" % to, "Subject: %s" % subject,
            "Date: Tue, 2 Jan 2024 09:30:00 +0100",
            "Message-ID: <%d@client.test>" % int(time.time() * 1e6),
            "MIME-Version: 1.0",
            'Content-Type: multipart/mixed; boundary="%s"' % boundary] + list(extra_headers)
    body = ["--%s\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nHello, see the attachment.\r\n"
            % boundary]
    for p in parts:
        body.append("--%s\r\n%s" % (boundary, p))
    body.append("--%s--\r\n" % boundary)
    return ("\r\n".join(head) + "\r\n\r\n" + "".join(body)).encode("utf-8")


def plain_message(subject, body="Hello.\r\n", sender="someone@remote.test",
                  to="alice@example.test"):
    return ("From: <%s>\r\nTo: <%s>\r\nSubject: %s\r\nDate: Tue, 2 Jan 2024 09:30:00 +0100\r\n"
            "Message-ID: <%d@client.test>\r\n\r\n%s"
            % (sender, to, subject, int(time.time() * 1e6), body)).encode("utf-8")


def make_zip(entries):
    b = io.BytesIO()
    with zipfile.ZipFile(b, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in entries:
            z.writestr(name, data)
    return b.getvalue()


def _crc_update(crc, byte):
    """One byte of the raw CRC-32 update the zip encryption uses."""
    return ~binascii.crc32(bytes([byte]), ~crc & 0xFFFFFFFF) & 0xFFFFFFFF


def zipcrypto_zip(name, data, password):
    """A zip with one stored entry under the traditional PKWARE encryption
    (Python's zipfile reads it but cannot write it)."""
    keys = [0x12345678, 0x23456789, 0x34567890]

    def update(byte):
        keys[0] = _crc_update(keys[0], byte)
        keys[1] = ((keys[1] + (keys[0] & 0xFF)) * 134775813 + 1) & 0xFFFFFFFF
        keys[2] = _crc_update(keys[2], keys[1] >> 24)

    def encrypt(plain):
        out = bytearray()
        for p in plain:
            t = (keys[2] | 2) & 0xFFFF
            out.append(p ^ (((t * (t ^ 1)) >> 8) & 0xFF))
            update(p)
        return bytes(out)

    for ch in password.encode():
        update(ch)
    crc = binascii.crc32(data) & 0xFFFFFFFF
    header = os.urandom(11) + bytes([crc >> 24])
    body = encrypt(header) + encrypt(data)
    fname = name.encode()
    local = struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, 1, 0, 0, 0, crc, len(body), len(data),
                        len(fname), 0) + fname + body
    central = struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 20, 20, 1, 0, 0, 0, crc, len(body),
                          len(data), len(fname), 0, 0, 0, 0, 0, 0) + fname
    end = struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, 1, 1, len(central), len(local), 0)
    blob = local + central + end
    with zipfile.ZipFile(io.BytesIO(blob)) as z:  # it is a real encrypted zip
        assert z.read(name, pwd=password.encode()) == data
    return blob


def rfc2047(text):
    return "=?utf-8?B?%s?=" % base64.b64encode(text.encode("utf-8")).decode("ascii")


def rfc2231(text):
    return "utf-8''" + urllib.parse.quote(text.encode("utf-8"), safe="")


# ---- the tests -------------------------------------------------------------------

class RulesServerMixin:
    def send(self, srv, message, sender="someone@remote.test", rcpts=("alice@example.test",)):
        """MAIL, RCPT, DATA and the message; the reply to the final dot."""
        c = self.open_session(srv)
        self.start_data(c, sender, list(rcpts))
        data = message if isinstance(message, bytes) else message.encode("utf-8")
        data = re.sub(rb"(?m)^\.", b"..", data)
        if not data.endswith(b"\r\n"):
            data += b"\r\n"
        c.send(data + b".\r\n")
        r = c.reply(timeout=scaled(60))
        c.cmd("QUIT")
        return r

    def assertRefused(self, r, text, code=550, status="5.7.1"):
        self.assertIsInstance(r, Reply)
        self.assertEqual((r.code, r.status), (code, status), r)
        self.assertIn(text, r.text)

    def assertDelivered(self, srv, r, user="alice"):
        self.assertReply(r, 250)
        return srv.wait_delivery(user, queue_id_of(r.text), timeout=scaled(20))[1]


@needs_pipeline
class ContentRulesTest(RulesServerMixin, PosternTestCase):
    """One server, the rules above."""

    @classmethod
    def setUpClass(cls):
        srv = PosternServer(name=cls.__name__, config={"content_rules_file": "content-rules"})
        with open(os.path.join(srv.dir, "content-rules"), "w") as f:
            f.write(RULES)
        os.chmod(os.path.join(srv.dir, "content-rules"), 0o644)
        cls.addClassCleanup(cls._class_cleanup, srv)
        srv.start()
        cls.class_server = srv

    @property
    def srv(self):
        return self.class_server

    # -- names --

    def test_rfc2047_encoded_name_refused(self):
        part = attachment(' filename="%s"' % rfc2047("Rechnung März.EXE"), b"not a program")
        self.assertRefused(self.send(self.srv, mime_message([part])),
                           "Program files are not accepted")

    def test_rfc2231_encoded_name_refused(self):
        part = attachment(" filename*=%s" % rfc2231("счёт.Scr"), b"not a program")
        self.assertRefused(self.send(self.srv, mime_message([part])),
                           "Program files are not accepted")

    def test_rfc2231_continued_name_refused(self):
        part = attachment(" filename*0*=%s; filename*1*=%s; filename*2=\"ll.vbs\""
                          % (rfc2231("Größe "), urllib.parse.quote("Liste fü".encode())),
                          b"not a script")
        self.assertRefused(self.send(self.srv, mime_message([part])),
                           "Program files are not accepted")

    def test_name_in_content_type_refused(self):
        part = ("Content-Type: application/octet-stream; name=\"%s\"\r\n"
                "Content-Transfer-Encoding: base64\r\n\r\n%s\r\n"
                % (rfc2047("tool.exe"), b64_lines(b"data")))
        self.assertRefused(self.send(self.srv, mime_message([part])),
                           "Program files are not accepted")

    def test_double_extension_refused(self):
        for name in ("invoice.pdf.exe", "photo.jpg      .scr", rfc2047("Lieferschein.PDF.exe")):
            with self.subTest(name=name):
                r = self.send(self.srv, mime_message([named(name, b"%PDF-1.4 fake")]))
                self.assertRefused(r, "Attachment names that hide a program are not accepted")

    def test_trailing_dot_still_an_exe(self):
        r = self.send(self.srv, mime_message([named("report.exe.", b"x")]))
        self.assertRefused(r, "Program files are not accepted")

    def test_exe_renamed_txt_refused(self):
        r = self.send(self.srv, mime_message([named("notes.txt", PE_BYTES, "text/plain")]))
        self.assertRefused(r, "Program files are not accepted, whatever their name")

    # -- archives --

    def test_name_inside_zip_refused(self):
        z = make_zip([("docs/readme.txt", "read me"), ("tools/Setup.EXE", b"x")])
        r = self.send(self.srv, mime_message([named("files.zip", z, "application/zip")]))
        self.assertRefused(r, "Archives holding programs are not accepted")

    def test_name_inside_nested_zip_refused(self):
        inner = make_zip([("run.vbs", "WScript.Echo 1")])
        outer = make_zip([("notes.txt", "x"), ("more/data.bin", inner)])
        r = self.send(self.srv, mime_message([named("files.zip", outer, "application/zip")]))
        self.assertRefused(r, "Archives holding programs are not accepted")

    def test_encrypted_zip_quarantined(self):
        z = zipcrypto_zip("report.txt", b"the numbers", "infected")
        offset = self.srv.log_size()
        r = self.send(self.srv, mime_message([named("locked.zip", z, "application/zip")]))
        self.assertReply(r, 250)
        qid = queue_id_of(r.text)
        self.srv.wait_log(r"%s: content rule: rule=locked-archive action=quarantine" % qid,
                          since=offset)
        wait_until(lambda: quarantined_files(self.srv), scaled(10), what="a quarantined file")
        self.assertEqual(self.srv.files_for("alice", qid), [])

    # -- structure and headers --

    def test_message_partial_refused(self):
        msg = ("From: <a@remote.test>\r\nTo: <alice@example.test>\r\nSubject: part 1\r\n"
               "MIME-Version: 1.0\r\nContent-Type: message/partial; id=\"x@remote.test\"; "
               "number=1; total=2\r\n\r\nFrom: <a@remote.test>\r\nSubject: inner\r\n\r\nhalf\r\n")
        self.assertRefused(self.send(self.srv, msg), "Messages split into parts are not accepted")

    def test_long_date_in_attached_message_refused(self):
        inner = ("From: <x@remote.test>\r\nDate: %s\r\nSubject: inner\r\n\r\nbody\r\n"
                 % ("Tue, 2 Jan 2024 " + "9" * 400))
        part = "Content-Type: message/rfc822\r\n\r\n" + inner
        self.assertRefused(self.send(self.srv, mime_message([part])), "Malformed Date header")

    # -- every action --

    def test_reject_uses_the_rules_text(self):
        r = self.send(self.srv, mime_message([named("a.pif", b"x")]))
        self.assertEqual(r.code, 550)
        self.assertEqual(r.lines[-1], "5.7.1 Program files are not accepted")

    def test_tempfail(self):
        r = self.send(self.srv, plain_message("hello [tempfail-me]"))
        self.assertRefused(r, "Please try again later", code=451, status="4.7.1")

    def test_discard(self):
        offset = self.srv.log_size()
        r = self.send(self.srv, plain_message("hello [discard-me]"))
        self.assertReply(r, 250)
        qid = queue_id_of(r.text)
        self.srv.wait_log(r"%s: content rule: rule=subject-discard action=discard" % qid,
                          since=offset)
        # A message sent after it is delivered; the discarded one never is.
        self.assertDelivered(self.srv, self.send(self.srv, plain_message("control")))
        time.sleep(scaled(0.5))
        self.assertEqual(self.srv.files_for("alice", qid), [])

    def test_quarantine(self):
        before = len(quarantined_files(self.srv))
        r = self.send(self.srv, plain_message("hello [quarantine-me]"))
        self.assertReply(r, 250)
        qid = queue_id_of(r.text)
        wait_until(lambda: len(quarantined_files(self.srv)) > before, scaled(10),
                   what="a quarantined file")
        self.assertDelivered(self.srv, self.send(self.srv, plain_message("control")))
        self.assertEqual(self.srv.files_for("alice", qid), [])

    def test_warn_logs_only(self):
        offset = self.srv.log_size()
        msg = plain_message("hello [warn-me]")
        r = self.send(self.srv, msg)
        data = self.assertDelivered(self.srv, r)
        qid = queue_id_of(r.text)
        self.srv.wait_log(r"%s: content rule: rule=subject-warn action=warn .*"
                          r"text=\"would be refused\"" % qid, since=offset)
        head, body = split_message(data)
        self.assertNotIn("X-Postern-Rule", head)
        self.assertIn(b"Hello.", body)

    def test_tag(self):
        data = self.assertDelivered(self.srv, self.send(self.srv, plain_message("hi [tag-me]")))
        head, _ = split_message(data)
        self.assertRegex(head, r"(?m)^X-Postern-Rule: subject-tag$")
        data = self.assertDelivered(self.srv, self.send(self.srv,
                                                        plain_message("hi [CUSTOM-tag-me]")))
        head, _ = split_message(data)
        self.assertRegex(head, r"(?m)^X-Test-Mark: custom$")

    # -- the envelope --

    def test_sender_rule(self):
        r = self.send(self.srv, plain_message("from a blocked domain", sender="x@Blocked.test"),
                      sender="x@Blocked.test")
        self.assertRefused(r, "Mail from this sender is refused")

    def test_client_and_recipient_rule(self):
        r = self.send(self.srv, plain_message("to carol", to="carol@example.test"),
                      rcpts=("carol@example.test",))
        self.assertRefused(r, "carol takes no mail from this network")
        # The same client to another recipient: both tests must hold.
        self.assertDelivered(self.srv, self.send(self.srv, plain_message("to bob"),
                                                 rcpts=("bob@example.test",)), user="bob")

    # -- no clean message refused --

    def test_clean_messages_accepted(self):
        docs = make_zip([("minutes.txt", "minutes"), ("budget.xlsx", b"PK fake"),
                         ("photos/2024.01.02.jpg", b"\xff\xd8\xff")])
        cases = {
            "plain": plain_message("quarterly numbers"),
            "body mentions names": plain_message("names", "Do not open invoice.pdf.exe "
                                                 "or setup.exe.\r\n"),
            "pdf": mime_message([named("report.final.pdf", b"%PDF-1.4 fine",
                                       "application/pdf")]),
            "version number": mime_message([named("setup-1.2.zip", make_zip([("a.txt", "a")]),
                                                  "application/zip")]),
            "zip of documents": mime_message([named("docs.zip", docs, "application/zip")]),
            "RFC 2047 name": mime_message([named(rfc2047("Größe März.pdf"), b"%PDF-1.4",
                                                 "application/pdf")]),
            "RFC 2231 name": mime_message([attachment(" filename*=%s" % rfc2231("отчёт.docx"),
                                                      b"PK fake docx")]),
            "attached message": mime_message(["Content-Type: message/rfc822\r\n\r\n"
                                              "From: <x@remote.test>\r\nDate: Tue, 2 Jan "
                                              "2024 09:00:00 +0000\r\nSubject: fwd\r\n\r\n"
                                              "forwarded\r\n"]),
            "subject words without brackets": plain_message("tempfail-me discard-me tag-me"),
        }
        for what, msg in cases.items():
            with self.subTest(what=what):
                self.assertDelivered(self.srv, self.send(self.srv, msg))


def quarantined_files(srv):
    out = []
    for folder, _, files in os.walk(os.path.join(srv.spool_dir, "quarantine")):
        out += [os.path.join(folder, f) for f in files]
    return out


@needs_pipeline
class RulesFileErrorsTest(RulesServerMixin, PosternTestCase):
    """A rules file with a mistake: refused at start, and at reload with
    the running rules kept."""

    def server_with_rules(self, text):
        srv = self.start_server(start=False, config={"content_rules_file": "content-rules"})
        self.write_rules(srv, text)
        return srv

    def write_rules(self, srv, text):
        path = os.path.join(srv.dir, "content-rules")
        with open(path + ".new", "w") as f:
            f.write(text)
        os.chmod(path + ".new", 0o644)
        os.rename(path + ".new", path)
        return path

    def test_error_refused_at_start(self):
        srv = self.server_with_rules("rule exe\n    extension exe\n    reject \"no\"\n"
                                     "rule broken\n    extension file.exe\n    reject\n")
        rc, log = srv.serve_refused()
        self.assertNotEqual(rc, 0, log)
        self.assertIn('%s/content-rules:5: "file.exe" is not an extension' % srv.dir, log)

    def test_missing_file_refused_at_start(self):
        srv = self.start_server(start=False, config={"content_rules_file": "no-such-rules"})
        rc, log = srv.serve_refused()
        self.assertNotEqual(rc, 0, log)
        self.assertIn("%s/no-such-rules: cannot read: No such file or directory" % srv.dir, log)

    def test_error_at_reload_keeps_the_running_rules(self):
        srv = self.server_with_rules("rule exe\n    extension exe\n    reject \"no exe\"\n")
        srv.start()
        exe = mime_message([named("a.exe", b"x")])
        pdf = mime_message([named("a.pdf", b"%PDF-1.4")])
        self.assertRefused(self.send(srv, exe), "no exe")
        self.assertDelivered(srv, self.send(srv, pdf))

        # A new file with a mistake: logged with its line, the old rules stay.
        self.write_rules(srv, "rule pdf\n    extension pdf\n    reject \"no pdf\"\n"
                              "rule bad\n    header Date shorter-than 5\n    reject\n")
        offset = srv.log_size()
        srv.send_signal(signal.SIGHUP)
        srv.wait_log(r"%s/content-rules:5: header: after the field name" % re.escape(srv.dir),
                     since=offset, timeout=scaled(20))
        time.sleep(scaled(1))
        self.assertRefused(self.send(srv, exe), "no exe")
        self.assertDelivered(srv, self.send(srv, pdf))

        # Corrected: the new rules take over.
        # The processes of the old generation may still take a connection
        # until they have drained, so wait for them to be gone.
        self.write_rules(srv, "rule pdf\n    extension pdf\n    reject \"no pdf\"\n")
        old_workers = srv.role_pids("smtp")
        offset = srv.log_size()
        srv.send_signal(signal.SIGHUP)
        srv.wait_log(r"content rules: 1 rule from %s/content-rules" % re.escape(srv.dir),
                     since=offset, timeout=scaled(20))
        srv.wait_log(r"reload: .* starting generation", since=offset, timeout=scaled(20))
        wait_until(lambda: not any(process_alive(p) for p in old_workers), scaled(20),
                   what="the old smtp workers to exit")
        self.assertRefused(self.send(srv, pdf), "no pdf")
        self.assertDelivered(srv, self.send(srv, exe))


if __name__ == "__main__":
    unittest.main()

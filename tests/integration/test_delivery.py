"""
test_delivery.py - what a user finds in the Maildir after a message was
accepted: the added header lines, the queue id, the body byte for byte
(dot-unstuffing, 8-bit and UTF-8), client Return-Path fields dropped,
alias expansion, delivery by swaks,
the log lines keyed by queue id, and bounces for recipients that fail at
delivery time.
"""
import os
import re
import subprocess
import time
import unittest

from harness import (HOSTNAME, PosternTestCase, SmtpConn, make_message, queue_id_of,
                     raw_send, scaled, smtplib_send, split_message, unfold)

UTF8_USER = "jos\u00e9.\u00fcml\u00e4ut"  # josé.ümläut

USERS = ["alice", "bob", "carol", "dave", "admin", UTF8_USER]
ALIASES = {
    "postmaster": ["admin"],
    "team": ["alice", "bob"],
    "staff": ["team", "carol"],          # nested: team -> alice, bob
    "everyone": ["staff", "team", "alice", "dave"],  # duplicates everywhere
    "broken": ["nosuchuser"],            # target is not a user
    "half": ["carol", "ghost"],          # one good and one bad target
    "loop1": ["loop2"],
    "loop2": ["loop1"],
}

FILE_NAME_RE = re.compile(r"^(\d+)\.Q([0-9A-F]{19})\.%s,S=(\d+),W=(\d+)$" % re.escape(HOSTNAME))


class DeliveryTest(PosternTestCase):

    @classmethod
    def setUpClass(cls):
        cls.srv = cls.start_class_server(users=USERS, aliases=ALIASES)

    # -- helpers --

    def send(self, sender, rcpts, message, **kw):
        return smtplib_send(self.srv.port, sender, rcpts, message, **kw)

    def delivered(self, user, qid):
        name, data = self.srv.wait_delivery(user, qid)
        return name, data

    def assert_standard_top(self, data, sender, rcpt, qid, protocol="ESMTP"):
        """Return-Path, Delivered-To and Received on top, in that order."""
        lines = data.split(b"\n")
        self.assertEqual(lines[0].decode("utf-8"), "Return-Path: <%s>" % sender)
        self.assertEqual(lines[1].decode("utf-8"), "Delivered-To: %s" % rcpt)
        head, _ = split_message(data)
        received = unfold(head.split("\n", 2)[2]).split("\n")[0]
        self.assertTrue(received.startswith("Received: from "), received)
        self.assertRegex(received, r"by %s \(postern\) with %s id %s\b"
                         % (re.escape(HOSTNAME), protocol, qid))
        self.assertNotIn(b"\r", data, "Maildir files use LF line ends")

    # -- tests --

    def test_basic_delivery_headers_and_file_name(self):
        body = "Hello Alice,\r\n\r\nthis is line two.\r\n\r\n-- \r\nsender\r\n"
        msg = make_message("basic delivery", body, sender="sender@remote.test")
        qid = self.send("sender@remote.test", ["alice@example.test"], msg)
        name, data = self.delivered("alice", qid)
        m = FILE_NAME_RE.match(name)
        self.assertIsNotNone(m, "Maildir file name %r" % name)
        self.assertEqual(m.group(2), qid)
        self.assertEqual(int(m.group(3)), len(data), "S= is the file size")
        self.assertEqual(int(m.group(4)), len(data) + data.count(b"\n"),
                         "W= is the size with CRLF line ends")
        self.assert_standard_top(data, "sender@remote.test", "alice@example.test", qid)
        head, got_body = split_message(data)
        self.assertIn("Received: from client.test ([127.0.0.1])", unfold(head))
        self.assertIn("for <alice@example.test>", unfold(head))
        self.assertIn("Subject: basic delivery", head)
        self.assertEqual(got_body, body.replace("\r\n", "\n").encode())
        # Exactly one copy, nothing left in the spool.
        self.assertEqual(len(self.srv.files_for("alice", qid)), 1)
        self.srv.wait_log(r"%s: removed" % qid)
        self.assertNotIn(qid, self.srv.spool_files("queue") + self.srv.spool_files("deferred"))

    def test_log_lines_keyed_by_queue_id(self):
        msg = make_message("log lines")
        qid = self.send("logger@remote.test", ["bob@example.test"], msg)
        self.delivered("bob", qid)
        self.srv.wait_log(r"%s: to=<bob@example.test> relay=maildir .*status=sent" % qid)
        log = self.srv.log()
        self.assertRegex(log, r"postern/smtp\[\d+\]: info: %s: client=127\.0\.0\.1 "
                              r"helo=client\.test from=<logger@remote\.test>" % qid)
        self.assertRegex(log, r"%s: to=<bob@example\.test> status=accepted" % qid)
        m = re.search(r"%s: accepted from=<logger@remote\.test> size=(\d+) nrcpt=1 "
                      r"protocol=ESMTP delay=[\d.]+" % qid, log)
        self.assertIsNotNone(m, "accepted line for %s" % qid)
        self.assertGreaterEqual(int(m.group(1)), len(msg.encode()) - 4)
        self.assertRegex(log, r"postern/qmgr\[\d+\]: info: %s: to=<bob@example\.test> "
                              r"relay=maildir delay=[\d.]+ .*status=sent \(" % qid)
        self.assertRegex(log, r"info: connect client=127\.0\.0\.1 port=\d+")

    def test_dot_unstuffing_with_smtplib(self):
        body_lines = [".starts with a dot", "..two dots", ".", "text", "...", ". .",
                      "", ".", "end"]
        body = "\r\n".join(body_lines) + "\r\n"
        qid = self.send("dots@remote.test", ["carol@example.test"],
                        make_message("dots", body))
        _, data = self.delivered("carol", qid)
        _, got = split_message(data)
        self.assertEqual(got.decode(), "\n".join(body_lines) + "\n")

    def test_dot_unstuffing_exact_wire_bytes(self):
        # What the client writes (already stuffed) -> what must be stored.
        wire = (b"Subject: wire dots\r\n\r\n"
                b"..\r\n"          # stuffed lone dot    -> "."
                b"...\r\n"         # stuffed ".."        -> ".."
                b"..leading\r\n"   # stuffed ".leading"  -> ".leading"
                b"plain.\r\n"
                b" .\r\n"
                b"..\r\n"
                b"last\r\n"
                b".\r\n")
        with SmtpConn(self.srv.port) as c:
            c.ehlo()
            r = raw_send(c, "wire@remote.test", ["dave@example.test"], wire)
            self.assertReply(r, 250, "2.0.0")
            qid = queue_id_of(r.text)
        _, data = self.delivered("dave", qid)
        _, got = split_message(data)
        self.assertEqual(got, b".\n..\n.leading\nplain.\n .\n.\nlast\n")

    def test_8bit_body_and_utf8_addresses(self):
        body = ("Gr\u00fc\u00dfe aus K\u00f6ln \u2013 \u65e5\u672c\u8a9e \U0001F600\r\n"
                "caf\u00e9\r\n")
        sender = "ren\u00e9@remote.test"
        rcpt = "%s@example.test" % UTF8_USER
        msg = make_message("utf8", body, sender=sender, to=rcpt)
        qid = self.send(sender, [rcpt], msg, mail_options=("SMTPUTF8", "BODY=8BITMIME"))
        name, data = self.delivered(UTF8_USER, qid)
        self.assertTrue(data.startswith(("Return-Path: <%s>\nDelivered-To: %s\n"
                                         % (sender, rcpt)).encode("utf-8")), data[:200])
        _, got = split_message(data)
        self.assertEqual(got, body.replace("\r\n", "\n").encode("utf-8"))
        head, _ = split_message(data)
        # RFC 6531 section 3.7.3: the protocol of an SMTPUTF8 transaction.
        self.assertRegex(unfold(head), r"with UTF8SMTPS? id %s" % qid)

    def test_8bit_latin1_body_bytes_intact(self):
        body = b"caf\xe9 na\xefve \xff\xfe end\r\n"
        wire = b"Subject: latin1\r\n\r\n" + body + b".\r\n"
        with SmtpConn(self.srv.port) as c:
            c.ehlo()
            r = raw_send(c, "l1@remote.test", ["alice@example.test"], wire,
                         mail_params="BODY=8BITMIME")
            self.assertReply(r, 250)
            qid = queue_id_of(r.text)
        _, data = self.delivered("alice", qid)
        self.assertEqual(split_message(data)[1], body.replace(b"\r\n", b"\n"))

    def test_utf8_recipient_needs_smtputf8(self):
        with SmtpConn(self.srv.port) as c:
            c.ehlo()
            self.assertReply(c.cmd("MAIL FROM:<a@remote.test>"), 250)
            r = c.cmd("RCPT TO:<%s@example.test>" % UTF8_USER)
            self.assertGreaterEqual(r.code, 500, r)
            self.assertLess(r.code, 600, r)
            self.assertReply(c.cmd("RSET"), 250)
            self.assertReply(c.cmd("MAIL FROM:<a@remote.test> SMTPUTF8"), 250)
            self.assertReply(c.cmd("RCPT TO:<%s@example.test>" % UTF8_USER), 250)

    def test_multiple_recipients_one_copy_each(self):
        qid = self.send("multi@remote.test", ["alice@example.test", "bob@example.test",
                                              "carol@example.test"],
                        make_message("three recipients"))
        for user in ("alice", "bob", "carol"):
            _, data = self.delivered(user, qid)
            self.assertIn(("Delivered-To: %s@example.test\n" % user).encode(), data)
            self.assertEqual(len(self.srv.files_for(user, qid)), 1)
        head, _ = split_message(data)
        self.assertNotIn("for <", unfold(head), "no 'for' clause with several recipients")

    def test_alias_to_user(self):
        qid = self.send("x@remote.test", ["postmaster@example.test"], make_message("pm"))
        _, data = self.delivered("admin", qid)
        self.assert_standard_top(data, "x@remote.test", "admin@example.test", qid)
        self.srv.wait_log(r"%s: to=<admin@example.test> orig_to=<postmaster@example.test> "
                          r"relay=maildir .*status=sent" % qid)

    def test_list_alias_to_two_users(self):
        qid = self.send("x@remote.test", ["team@example.test"], make_message("team"))
        for user in ("alice", "bob"):
            _, data = self.delivered(user, qid)
            self.assertIn(("Delivered-To: %s@example.test\n" % user).encode(), data)
        time.sleep(0.3)
        self.assertEqual(self.srv.files_for("carol", qid), [])

    def test_nested_alias(self):
        qid = self.send("x@remote.test", ["staff@example.test"], make_message("staff"))
        for user in ("alice", "bob", "carol"):
            self.delivered(user, qid)
            self.assertEqual(len(self.srv.files_for(user, qid)), 1)

    def test_duplicates_removed(self):
        # alice is reached directly and through team@: one copy only.
        qid = self.send("x@remote.test", ["team@example.test", "alice@example.test",
                                          "ALICE@example.test"], make_message("dups"))
        self.delivered("alice", qid)
        self.delivered("bob", qid)
        self.srv.wait_log(r"%s: removed" % qid)
        self.assertEqual(len(self.srv.files_for("alice", qid)), 1,
                         self.srv.maildir_new("alice"))
        self.assertEqual(len(self.srv.files_for("bob", qid)), 1)

    def test_duplicates_removed_through_nested_lists(self):
        qid = self.send("x@remote.test", ["everyone@example.test", "staff@example.test",
                                          "dave@example.test"], make_message("everyone"))
        for user in ("alice", "bob", "carol", "dave"):
            self.delivered(user, qid)
        self.srv.wait_log(r"%s: removed" % qid)
        for user in ("alice", "bob", "carol", "dave"):
            self.assertEqual(len(self.srv.files_for(user, qid)), 1, user)

    def test_swaks_delivery_to_postmaster(self):
        proc = subprocess.run(
            ["swaks", "--server", "127.0.0.1:%d" % self.srv.port,
             "--to", "postmaster@example.test", "--from", "swaks@remote.test",
             "--helo", "swaks.client.test", "--header", "Subject: swaks test",
             "--body", "Sent by swaks.", "--timeout", str(int(scaled(20)))],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=scaled(60))
        out = proc.stdout.decode("utf-8", "replace")
        self.assertEqual(proc.returncode, 0, out)
        qid = queue_id_of(out)
        _, data = self.delivered("admin", qid)
        self.assert_standard_top(data, "swaks@remote.test", "admin@example.test", qid)
        head, body = split_message(data)
        self.assertIn("Subject: swaks test", head)
        self.assertIn("helo=swaks.client.test", self.srv.log())
        self.assertIn(b"Sent by swaks.", body)

    def test_swaks_pipelining(self):
        proc = subprocess.run(
            ["swaks", "--server", "127.0.0.1:%d" % self.srv.port, "--pipeline",
             "--to", "bob@example.test,team@example.test", "--from", "swaks@remote.test",
             "--body", "piped", "--timeout", str(int(scaled(20)))],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=scaled(60))
        out = proc.stdout.decode("utf-8", "replace")
        self.assertEqual(proc.returncode, 0, out)
        qid = queue_id_of(out)
        self.delivered("bob", qid)
        self.delivered("alice", qid)
        self.srv.wait_log(r"%s: removed" % qid)
        self.assertEqual(len(self.srv.files_for("bob", qid)), 1)

    def test_bounce_for_unknown_user_behind_alias(self):
        msg = make_message("will bounce", "Original body.\r\n", sender="carol@example.test",
                           to="broken@example.test")
        qid = self.send("carol@example.test", ["broken@example.test"], msg)
        self.srv.wait_log(r"%s: to=<nosuchuser@example.test> orig_to=<broken@example.test> "
                          r".*status=bounced \(5\.1\.1" % qid)
        m = self.srv.wait_log(r"%s: bounce ([0-9A-F]{19}) sent to <carol@example.test>" % qid)
        bounce_id = m.group(1)
        _, data = self.delivered("carol", bounce_id)
        text = data.decode("utf-8", "replace")
        self.assertTrue(text.startswith("Return-Path: <>\nDelivered-To: carol@example.test\n"),
                        text[:200])
        self.assertIn("multipart/report", text)
        self.assertIn("report-type=delivery-status", text)
        self.assertIn("message/delivery-status", text)
        self.assertIn("Status: 5.1.1", text)
        self.assertIn("Action: failed", text)
        self.assertIn("Final-Recipient: rfc822; nosuchuser@example.test", text)
        self.assertIn("Original-Recipient: rfc822; broken@example.test", text)
        self.assertIn("Subject: will bounce", text, "original headers are quoted")
        self.assertIn(qid, text)
        self.assertRegex(text, r"(?m)^To: <carol@example.test>$")
        self.assertRegex(text, r"(?mi)^Auto-Submitted: auto-replied")
        # The bounce itself is delivered once and removed from the queue.
        self.srv.wait_log(r"%s: removed" % bounce_id)
        self.assertEqual(len(self.srv.files_for("carol", bounce_id)), 1)

    def test_partial_bounce_good_target_delivered(self):
        qid = self.send("dave@example.test", ["half@example.test"], make_message("half"))
        self.delivered("carol", qid)
        m = self.srv.wait_log(r"%s: bounce ([0-9A-F]{19}) sent to <dave@example.test>" % qid)
        _, data = self.delivered("dave", m.group(1))
        text = data.decode()
        self.assertIn("Final-Recipient: rfc822; ghost@example.test", text)
        self.assertNotIn("Final-Recipient: rfc822; carol@example.test", text)

    def test_alias_loop_bounces(self):
        qid = self.send("bob@example.test", ["loop1@example.test"], make_message("loop"))
        self.srv.wait_log(r"%s: to=<loop1@example.test> .*status=bounced \(5\.4\.6" % qid)
        m = self.srv.wait_log(r"%s: bounce ([0-9A-F]{19}) sent to <bob@example.test>" % qid)
        _, data = self.delivered("bob", m.group(1))
        self.assertIn(b"Status: 5.4.6", data)

    def test_null_sender_never_bounced(self):
        """A message from <> that fails is not bounced to <>: it goes to
        the postmaster as a double bounce (RFC 5321 6.1, 4.5.5)."""
        before = self.srv.all_maildir_files()
        with SmtpConn(self.srv.port) as c:
            c.ehlo()
            r = raw_send(c, "", ["broken@example.test"],
                         b"Subject: from null sender\r\n\r\nbody\r\n.\r\n")
            self.assertReply(r, 250)
            qid = queue_id_of(r.text)
        self.srv.wait_log(r"%s: to=<nosuchuser@example.test> .*status=bounced" % qid)
        m = self.srv.wait_log(r"%s: sender is <>: double bounce ([0-9A-F]{19}) sent to "
                              r"<postmaster@example.test>" % qid)
        self.srv.wait_log(r"%s: removed" % qid)
        self.assertNotRegex(self.srv.log(), r"%s: bounce [0-9A-F]{19} sent" % qid)
        self.delivered("admin", m.group(1))
        time.sleep(0.3)
        after = self.srv.all_maildir_files()
        for box, names in after.items():
            new = set(names) - set(before.get(box, []))
            self.assertEqual([n for n in new if qid in n], [], box)
        self.assertEqual(self.srv.spool_files("queue"), [])

    def test_client_return_path_dropped(self):
        """RFC 5321 4.4: only the delivering MTA's Return-Path survives."""
        msg = ("Return-Path: <forged@evil.test>\r\n"
               "From: sender@remote.test\r\n"
               "return-path :\r\n <folded@evil.test>\r\n"
               "Subject: forged return path\r\n"
               "\r\n"
               "Return-Path: <in-body@stays.test>\r\n")
        qid = self.send("sender@remote.test", ["carol@example.test"], msg)
        name, data = self.delivered("carol", qid)
        head, body = split_message(data)
        fields = [l for l in head.split("\n") if l.lower().startswith("return-path")]
        self.assertEqual(fields, ["Return-Path: <sender@remote.test>"], head)
        self.assertNotIn("evil.test", head)
        self.assertIn("Subject: forged return path", head)
        self.assertEqual(body, b"Return-Path: <in-body@stays.test>\n")
        m = FILE_NAME_RE.match(name)
        self.assertIsNotNone(m, "Maildir file name %r" % name)
        self.assertEqual(int(m.group(3)), len(data), "S= is the file size")
        self.assertEqual(int(m.group(4)), len(data) + data.count(b"\n"))
        self.assert_standard_top(data, "sender@remote.test", "carol@example.test", qid)

    def test_source_route_and_quoted_local_part_reach_the_mailbox(self):
        with SmtpConn(self.srv.port) as c:
            c.ehlo()
            self.assertReply(c.cmd("MAIL FROM:<@relay.remote.test:src@remote.test>"), 250)
            self.assertReply(c.cmd("RCPT TO:<@foo.test,@bar.test:alice@example.test>"), 250)
            self.assertReply(c.cmd('RCPT TO:<"bob"@Example.TEST>'), 250)
            self.assertReply(c.cmd("DATA"), 354)
            qid = self.send_data_queued(c, b"Subject: routed\r\n\r\nx\r\n.\r\n")
        _, data = self.delivered("alice", qid)
        self.assertTrue(data.startswith(b"Return-Path: <src@remote.test>\n"), data[:80])
        _, data = self.delivered("bob", qid)
        self.assertIn(b"Delivered-To: bob@example.test\n", data)


if __name__ == "__main__":
    unittest.main()

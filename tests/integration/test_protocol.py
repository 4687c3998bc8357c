"""
test_protocol.py - the SMTP dialogue as a client sees it: greeting, EHLO
capabilities, HELO, PIPELINING, BDAT (RFC 3030), RSET/NOOP/HELP/VRFY/QUIT,
command sequencing and syntax errors, limits (errors, timeouts,
recipients, sizes, line lengths, header size), SMTP smuggling (bare CR/LF
around the end-of-data marker), STARTTLS (RFC 3207, including the
plaintext command injection of CVE-2011-0411) and the IPv6 listener.
"""
import re
import smtplib
import time
import unittest

from harness import (HOSTNAME, PosternTestCase, SmtpConn, client_tls_context,
                     have_ipv6_loopback, make_message, queue_id_of, raw_send, scaled,
                     smtplib_send, split_message, unfold)

SIZE_LIMIT = 20000
HEADER_LIMIT = 2048
LINE_LIMIT = 512

PROTO_CONFIG = {
    "recipient_limit": "3",
    "message_size_limit": str(SIZE_LIMIT),
    "header_size_limit": str(HEADER_LIMIT),
    "command_line_limit": str(LINE_LIMIT),
}

SMUGGLED = (b"MAIL FROM:<evil@remote.test>\r\n"
            b"RCPT TO:<bob@example.test>\r\n"
            b"DATA\r\n"
            b"Subject: smuggled\r\n\r\nsmuggled body\r\n")


class ProtocolTest(PosternTestCase):
    """One TLS-capable server with small limits for the whole class."""

    @classmethod
    def setUpClass(cls):
        cls.srv = cls.start_class_server(tls=True, config=PROTO_CONFIG)

    def conn(self, ehlo=True):
        c = SmtpConn(self.srv.port)
        self.addCleanup(c.close)
        if ehlo:
            c.ehlo()
        return c

    def assert_in_sync(self, c):
        """NOOP is answered by exactly one 250 and nothing else is waiting."""
        self.assertEqual(c.pending(0.2), b"", "unexpected extra output before NOOP")
        self.assertReply(c.cmd("NOOP"), 250)
        self.assertEqual(c.pending(0.3), b"", "unexpected extra output after NOOP")

    def sentinel_then_assert_nothing_new(self, before, users=("alice", "bob", "carol")):
        """Deliver a sentinel to dave (the queue manager works in order),
        then check that no other mailbox got anything since `before`."""
        qid = smtplib_send(self.srv.port, "sentinel@remote.test", ["dave@example.test"],
                           make_message("sentinel"))
        self.srv.wait_delivery("dave", qid)
        self.srv.wait_log(r"%s: removed" % qid)
        time.sleep(0.2)
        for u in users:
            new = set(self.srv.maildir_new(u)) - set(before.get(u, []))
            self.assertEqual(new, set(), "unexpected delivery to %s" % u)

    def snapshot(self, users=("alice", "bob", "carol")):
        return {u: self.srv.maildir_new(u) for u in users}

    # -- greeting, EHLO, HELO --

    def test_greeting(self):
        c = self.conn(ehlo=False)
        self.assertEqual(c.greeting.code, 220)
        self.assertEqual(c.greeting.lines, ["%s ESMTP postern" % HOSTNAME])

    def test_ehlo_capabilities(self):
        c = self.conn(ehlo=False)
        r = c.cmd("EHLO client.test")
        self.assertReply(r, 250)
        self.assertEqual(r.lines[0].split()[0], HOSTNAME)
        caps = [l.upper() for l in r.lines[1:]]
        for cap in ("PIPELINING", "SIZE %d" % SIZE_LIMIT, "STARTTLS", "ENHANCEDSTATUSCODES",
                    "8BITMIME", "SMTPUTF8", "CHUNKING", "DSN"):
            self.assertIn(cap, caps)
        self.assertEqual(len(caps), 8, caps)

    def test_helo(self):
        c = self.conn(ehlo=False)
        r = c.cmd("HELO client.test")
        self.assertReply(r, 250)
        # RFC 5321 4.1.1.1: "250" SP Domain [ SP ehlo-greet ]; RFC 2034
        # section 3: no enhanced status code on HELO/EHLO replies.
        self.assertEqual(r.lines[0].split()[0], HOSTNAME, r)
        # ESMTP parameters need EHLO.
        self.assertReply(c.cmd("MAIL FROM:<a@remote.test> SIZE=100"), 555, "5.5.4")
        self.assertReply(c.cmd("MAIL FROM:<a@remote.test>"), 250, "2.1.0")
        self.assertReply(c.cmd("RCPT TO:<alice@example.test>"), 250, "2.1.5")
        self.assertReply(c.cmd("DATA"), 354)
        c.send(b"Subject: helo\r\n\r\nplain SMTP\r\n.\r\n")
        r = c.reply()
        self.assertReply(r, 250, "2.0.0")
        qid = queue_id_of(r.text)
        _, data = self.srv.wait_delivery("alice", qid)
        self.assertRegex(unfold(split_message(data)[0]), r"with SMTP id %s" % qid)

    def test_helo_and_ehlo_need_an_argument(self):
        c = self.conn(ehlo=False)
        self.assertEqual(c.cmd("EHLO").code, 501)
        self.assertEqual(c.cmd("HELO").code, 501)
        self.assertReply(c.cmd("MAIL FROM:<a@remote.test>"), 503, "5.5.1")

    def test_ehlo_resets_transaction(self):
        c = self.conn()
        self.assertReply(c.cmd("MAIL FROM:<a@remote.test>"), 250)
        self.assertReply(c.cmd("RCPT TO:<alice@example.test>"), 250)
        c.ehlo("again.test")
        self.assertReply(c.cmd("DATA"), 503, "5.5.1")

    # -- PIPELINING --

    def test_pipelining_replies_in_order(self):
        before = self.snapshot(("alice", "bob"))
        c = self.conn()
        c.send(b"MAIL FROM:<pipe@remote.test>\r\n"
               b"RCPT TO:<alice@example.test>\r\n"
               b"RCPT TO:<nobody-here@example.test>\r\n"
               b"RCPT TO:<bob@example.test>\r\n"
               b"DATA\r\n")
        r = c.replies(5)
        self.assertEqual([x.code for x in r], [250, 250, 550, 250, 354], r)
        self.assertEqual(r[2].status, "5.1.1")
        c.send(b"Subject: pipelined\r\n\r\nbody\r\n.\r\nNOOP\r\nQUIT\r\n")
        r = c.replies(3)
        self.assertEqual([x.code for x in r], [250, 250, 221], r)
        qid = queue_id_of(r[0].text)
        self.assertTrue(c.closed_by_server(scaled(5)))
        self.srv.wait_delivery("alice", qid)
        self.srv.wait_delivery("bob", qid)

    def test_pipelining_two_messages_in_one_write(self):
        c = self.conn()
        one = (b"MAIL FROM:<p1@remote.test>\r\nRCPT TO:<carol@example.test>\r\nDATA\r\n"
               b"Subject: first\r\n\r\n1\r\n.\r\n")
        two = (b"MAIL FROM:<p2@remote.test>\r\nRCPT TO:<carol@example.test>\r\nDATA\r\n"
               b"Subject: second\r\n\r\n2\r\n.\r\n")
        c.send(one + two)
        r = c.replies(8)
        self.assertEqual([x.code for x in r], [250, 250, 354, 250] * 2, r)
        q1, q2 = queue_id_of(r[3].text), queue_id_of(r[7].text)
        self.assertNotEqual(q1, q2)
        _, d1 = self.srv.wait_delivery("carol", q1)
        _, d2 = self.srv.wait_delivery("carol", q2)
        self.assertTrue(d1.endswith(b"\n\n1\n") and d2.endswith(b"\n\n2\n"), (d1, d2))

    # -- BDAT --

    def test_bdat_chunks_and_last_zero(self):
        c = self.conn()
        self.assertReply(c.cmd("MAIL FROM:<bdat@remote.test>"), 250)
        self.assertReply(c.cmd("RCPT TO:<alice@example.test>"), 250)
        part1 = b"Subject: chunked\r\n\r\nfirst part, "
        part2 = b"second part\r\nline two\r\n"
        c.send(b"BDAT %d\r\n" % len(part1) + part1)
        self.assertReply(c.reply(), 250)
        c.send(b"BDAT %d\r\n" % len(part2) + part2)
        self.assertReply(c.reply(), 250)
        r = c.cmd("BDAT 0 LAST")
        self.assertReply(r, 250, "2.0.0")
        qid = queue_id_of(r.text)
        _, data = self.srv.wait_delivery("alice", qid)
        self.assertEqual(split_message(data)[1], b"first part, second part\nline two\n")
        self.assert_in_sync(c)

    def test_bdat_dots_are_not_special(self):
        content = (b"Subject: bdat dots\r\n\r\n"
                   b".leading dot\r\n..two\r\n.\r\nafter the lone dot\r\n"
                   b"MAIL FROM:<not-a-command@remote.test>\r\n")
        c = self.conn()
        self.assertReply(c.cmd("MAIL FROM:<bdat@remote.test>"), 250)
        self.assertReply(c.cmd("RCPT TO:<bob@example.test>"), 250)
        c.send(b"BDAT %d LAST\r\n" % len(content) + content)
        r = c.reply()
        self.assertReply(r, 250, "2.0.0")
        qid = queue_id_of(r.text)
        _, data = self.srv.wait_delivery("bob", qid)
        self.assertEqual(split_message(data)[1],
                         b".leading dot\n..two\n.\nafter the lone dot\n"
                         b"MAIL FROM:<not-a-command@remote.test>\n")
        self.assertRegex(unfold(split_message(data)[0]), r"with ESMTP id %s" % qid)
        self.assert_in_sync(c)

    def test_bdat_pipelined_with_envelope(self):
        content = b"Subject: bdat pipelined\r\n\r\nhello\r\n"
        c = self.conn()
        c.send(b"MAIL FROM:<bp@remote.test>\r\nRCPT TO:<carol@example.test>\r\n"
               + b"BDAT %d LAST\r\n" % len(content) + content + b"NOOP\r\n")
        r = c.replies(4)
        self.assertEqual([x.code for x in r], [250, 250, 250, 250], r)
        self.srv.wait_delivery("carol", queue_id_of(r[2].text))

    def test_bdat_without_mail_consumes_chunk(self):
        chunk = b"RSET\r\nMAIL FROM:<x@remote.test>\r\nQUIT\r\n"
        c = self.conn()
        c.send(b"BDAT %d\r\n" % len(chunk) + chunk)
        r = c.reply()
        self.assertReply(r, 503, "5.5.1")
        self.assert_in_sync(c)
        # The chunk's "MAIL FROM" was not executed: RCPT needs MAIL.
        self.assertReply(c.cmd("RCPT TO:<alice@example.test>"), 503, "5.5.1")

    def test_bdat_last_without_mail_then_real_message(self):
        chunk = b"Subject: x\r\n\r\nbody\r\n"
        c = self.conn()
        c.send(b"BDAT %d LAST\r\n" % len(chunk) + chunk)
        self.assertReply(c.reply(), 503, "5.5.1")
        self.assert_in_sync(c)
        self.assertReply(c.cmd("MAIL FROM:<after@remote.test>"), 250)
        self.assertReply(c.cmd("RCPT TO:<alice@example.test>"), 250)
        c.send(b"BDAT %d LAST\r\n" % len(chunk) + chunk)
        r = c.reply()
        self.assertReply(r, 250)
        self.srv.wait_delivery("alice", queue_id_of(r.text))

    def test_bdat_without_valid_recipient(self):
        chunk = b"Subject: x\r\n\r\nbody\r\n"
        c = self.conn()
        self.assertReply(c.cmd("MAIL FROM:<x@remote.test>"), 250)
        self.assertEqual(c.cmd("RCPT TO:<nobody-here@example.test>").code, 550)
        c.send(b"BDAT %d LAST\r\n" % len(chunk) + chunk)
        self.assertReply(c.reply(), 554, "5.5.1")
        self.assert_in_sync(c)

    def test_data_after_bdat_refused(self):
        chunk = b"Subject: x\r\n\r\n"
        c = self.conn()
        self.assertReply(c.cmd("MAIL FROM:<x@remote.test>"), 250)
        self.assertReply(c.cmd("RCPT TO:<alice@example.test>"), 250)
        c.send(b"BDAT %d\r\n" % len(chunk) + chunk)
        self.assertReply(c.reply(), 250)
        self.assertReply(c.cmd("DATA"), 503, "5.5.1")

    def test_bdat_syntax_errors(self):
        c = self.conn()
        self.assertEqual(c.cmd("BDAT").code, 501)
        self.assertEqual(c.cmd("BDAT x").code, 501)
        self.assertEqual(c.cmd("BDAT 10 FIRST").code, 501)
        self.assertEqual(c.cmd("BDAT 99999999999999999999999").code, 501)
        self.assert_in_sync(c)

    def test_bdat_oversized_chunk_consumed_and_refused(self):
        before = self.snapshot(("alice",))
        big = b"Subject: big\r\n\r\n" + (b"x" * 70 + b"\r\n") * 400  # > SIZE_LIMIT
        c = self.conn()
        self.assertReply(c.cmd("MAIL FROM:<big@remote.test>"), 250)
        self.assertReply(c.cmd("RCPT TO:<alice@example.test>"), 250)
        c.send(b"BDAT %d LAST\r\n" % len(big) + big)
        self.assertReply(c.reply(), 552, "5.3.4")
        self.assert_in_sync(c)
        self.sentinel_then_assert_nothing_new(before, ("alice",))

    # -- simple commands --

    def test_rset_noop_help_vrfy_expn_quit(self):
        c = self.conn()
        self.assertReply(c.cmd("NOOP"), 250, "2.0.0")
        self.assertReply(c.cmd("NOOP any text"), 250)
        r = c.cmd("HELP")
        self.assertIn(r.code, (211, 214))
        self.assertReply(c.cmd("VRFY alice"), 252, "2.0.0")
        self.assertReply(c.cmd("VRFY <nobody-here@example.test>"), 252)
        self.assertEqual(c.cmd("VRFY").code, 501)
        self.assertEqual(c.cmd("EXPN team").code, 502)
        self.assertReply(c.cmd("MAIL FROM:<a@remote.test>"), 250)
        self.assertReply(c.cmd("RCPT TO:<alice@example.test>"), 250)
        self.assertReply(c.cmd("RSET"), 250, "2.0.0")
        self.assertReply(c.cmd("RCPT TO:<alice@example.test>"), 503, "5.5.1")
        self.assertReply(c.cmd("MAIL FROM:<a@remote.test>"), 250)
        self.assertReply(c.cmd("QUIT"), 221, "2.0.0")
        self.assertTrue(c.closed_by_server(scaled(5)))

    def test_commands_are_case_insensitive(self):
        c = self.conn(ehlo=False)
        self.assertReply(c.cmd("ehlo client.test"), 250)
        self.assertReply(c.cmd("mail from:<a@remote.test>"), 250)
        self.assertReply(c.cmd("Rcpt To:<alice@example.test>"), 250)
        self.assertReply(c.cmd("rset"), 250)

    # -- sequence and syntax errors --

    def test_bad_sequences(self):
        c = self.conn()
        self.assertReply(c.cmd("RCPT TO:<alice@example.test>"), 503, "5.5.1")
        self.assertReply(c.cmd("DATA"), 503, "5.5.1")
        self.assertReply(c.cmd("MAIL FROM:<a@remote.test>"), 250)
        r = c.cmd("DATA")  # no recipient yet: 503 or 554 (RFC 5321 3.3)
        self.assertIn(r.code, (503, 554), r)
        self.assertEqual(r.status, "5.5.1")
        # The refused DATA ended the transaction (its text may follow as
        # commands): a new MAIL starts a new one, RCPT alone is refused.
        self.assertReply(c.cmd("RCPT TO:<alice@example.test>"), 503, "5.5.1")
        self.assertReply(c.cmd("MAIL FROM:<b@remote.test>"), 250)
        self.assertReply(c.cmd("MAIL FROM:<b@remote.test>"), 503, "5.5.1")
        self.assertReply(c.cmd("RCPT TO:<alice@example.test>"), 250)
        self.assertReply(c.cmd("DATA"), 354)
        c.send(b"Subject: after errors\r\n\r\nok\r\n.\r\n")
        r = c.reply()
        self.assertReply(r, 250)
        self.srv.wait_delivery("alice", queue_id_of(r.text))

    def test_mail_before_helo(self):
        c = self.conn(ehlo=False)
        self.assertReply(c.cmd("MAIL FROM:<a@remote.test>"), 503, "5.5.1")
        self.assertReply(c.cmd("STARTTLS"), 503, "5.5.1")

    def test_unknown_command(self):
        c = self.conn()
        self.assertReply(c.cmd("FOO bar"), 500, "5.5.2")
        self.assertReply(c.cmd(""), 500, "5.5.2")
        self.assertReply(c.cmd("\x00NOOP"), 500, "5.5.2")
        self.assert_in_sync(c)

    def test_syntax_errors(self):
        c = self.conn()
        for line in ("MAIL FROM alice@remote.test", "MAIL FROM:alice@remote.test",
                     "MAIL FROM:<alice@remote.test", "MAIL FROM:<alice@>",
                     "MAIL FROM:<a@remote.test> SIZE=abc", "MAIL FROM:<a@remote.test> =x"):
            r = c.cmd(line)
            self.assertEqual(r.code, 501, (line, r))
            self.assertTrue(r.status.startswith("5."), (line, r))
        self.assertReply(c.cmd("MAIL FROM:<a@remote.test>"), 250)
        c.close()
        c = self.conn()  # a new session: stay below error_limit
        self.assertReply(c.cmd("MAIL FROM:<a@remote.test>"), 250)
        for line in ("RCPT TO:alice@example.test", "RCPT alice@example.test",
                     "RCPT TO:<alice@example.test> x=", "DATA now"):
            r = c.cmd(line)
            self.assertEqual(r.code, 501, (line, r))
        self.assertReply(c.cmd("RCPT TO:<alice@example.test>"), 250)

    def test_unsupported_parameters(self):
        c = self.conn()
        self.assertReply(c.cmd("MAIL FROM:<a@remote.test> FOO=BAR"), 555, "5.5.4")
        self.assertReply(c.cmd("MAIL FROM:<a@remote.test> XRET=HDRS"), 555, "5.5.4")
        self.assertReply(c.cmd("MAIL FROM:<a@remote.test> SIZE=100 BODY=8BITMIME"), 250)
        self.assertReply(c.cmd("RCPT TO:<alice@example.test> XNOTIFY=NEVER"), 555, "5.5.4")
        self.assertReply(c.cmd("RCPT TO:<alice@example.test> FOO"), 555, "5.5.4")
        self.assertReply(c.cmd("RCPT TO:<alice@example.test>"), 250)
        self.assertEqual(c.cmd("RSET").code, 250)
        self.assertEqual(c.cmd("MAIL FROM:<a@remote.test> BODY=9BIT").code, 501)

    def test_error_limit_closes_session(self):
        c = self.conn()
        c.send(b"FOO\r\n" * 9)
        r = c.replies(9)
        self.assertEqual([x.code for x in r], [500] * 9)
        c.send(b"BAR\r\nNOOP\r\n")
        self.assertReply(c.reply(), 500)
        self.assertReply(c.reply(), 421, "4.7.0")
        self.assertTrue(c.closed_by_server(scaled(5)), "session must close after 421")
        self.srv.wait_log(r"too many errors")

    # -- limits --

    def test_too_many_recipients(self):
        before = self.snapshot(("alice", "bob", "carol", "dave"))
        c = self.conn()
        self.assertReply(c.cmd("MAIL FROM:<many@remote.test>"), 250)
        for u in ("alice", "bob", "carol"):
            self.assertReply(c.cmd("RCPT TO:<%s@example.test>" % u), 250)
        self.assertReply(c.cmd("RCPT TO:<dave@example.test>"), 452, "4.5.3")
        self.assertReply(c.cmd("RCPT TO:<dave@example.test>"), 452, "4.5.3")
        self.assertReply(c.cmd("DATA"), 354)
        qid = self.send_data_queued(c, b"Subject: three only\r\n\r\nx\r\n.\r\n")
        for u in ("alice", "bob", "carol"):
            self.srv.wait_delivery(u, qid)
        self.srv.wait_log(r"%s: removed" % qid)
        self.assertEqual(self.srv.files_for("dave", qid), [])
        self.assertRegex(self.srv.log(), r"%s: accepted .* nrcpt=3 " % qid)

    def test_size_parameter_over_limit(self):
        c = self.conn()
        self.assertReply(c.cmd("MAIL FROM:<s@remote.test> SIZE=%d" % (SIZE_LIMIT + 1)), 552, "5.3.4")
        self.assertReply(c.cmd("MAIL FROM:<s@remote.test> SIZE=99999999999999"), 552, "5.3.4")
        self.assertReply(c.cmd("MAIL FROM:<s@remote.test> SIZE=%d" % SIZE_LIMIT), 250)

    def test_oversize_data_refused_after_dot_and_session_continues(self):
        before = self.snapshot(("alice",))
        c = self.conn()
        self.start_data(c, "big@remote.test", ["alice@example.test"])
        line = b"y" * 76 + b"\r\n"
        c.send(b"Subject: too big\r\n\r\n")
        for _ in range(SIZE_LIMIT // len(line) + 20):
            c.send(line)
        self.assertEqual(c.pending(0.3), b"", "no reply before the final dot")
        c.send(b".\r\n")
        self.assertReply(c.reply(), 552, "5.3.4")
        self.assertReply(c.cmd("RSET"), 250)
        r = raw_send(c, "small@remote.test", ["alice@example.test"],
                     b"Subject: small\r\n\r\nfits\r\n.\r\n")
        self.assertReply(r, 250)
        qid = queue_id_of(r.text)
        self.srv.wait_delivery("alice", qid)
        new = set(self.srv.maildir_new("alice")) - set(before["alice"])
        self.assertEqual(len(new), 1, new)
        self.assertRegex(self.srv.log(), r"reject: end-of-data client=127.0.0.1 from=<big@remote.test> .*code=552")
        self.sentinel_then_assert_nothing_new({"alice": self.srv.maildir_new("alice")}, ("alice",))

    def send_sized(self, total, rcpt):
        """A message of exactly `total` octets (RFC 1870: CRLFs count, the
        final dot does not); returns the reply and the body sent."""
        header = b"Subject: exact %d\r\n\r\n" % total
        line = b"z" * 98 + b"\r\n"
        body = line * ((total - len(header)) // len(line) - 1)
        body += b"w" * (total - len(header) - len(body) - 2) + b"\r\n"
        msg = header + body
        self.assertEqual(len(msg), total)
        c = self.conn()
        r = raw_send(c, "exact@remote.test", [rcpt], msg + b".\r\n",
                     mail_params="SIZE=%d" % len(msg) if total <= SIZE_LIMIT else "")
        return r, body

    def test_message_just_below_size_limit(self):
        r, body = self.send_sized(SIZE_LIMIT - 1, "bob@example.test")
        self.assertReply(r, 250)
        _, data = self.srv.wait_delivery("bob", queue_id_of(r.text))
        self.assertEqual(split_message(data)[1], body.replace(b"\r\n", b"\n"))

    def test_message_exactly_at_size_limit(self):
        # SIZE=<limit> is accepted at MAIL, so a message of exactly that
        # many octets must be accepted after the dot as well.
        r, body = self.send_sized(SIZE_LIMIT, "bob@example.test")
        self.assertReply(r, 250)
        _, data = self.srv.wait_delivery("bob", queue_id_of(r.text))
        self.assertEqual(split_message(data)[1], body.replace(b"\r\n", b"\n"))

    def test_message_one_over_size_limit(self):
        before = self.snapshot(("bob",))
        r, _ = self.send_sized(SIZE_LIMIT + 1, "bob@example.test")
        self.assertReply(r, 552, "5.3.4")  # after the final dot (no SIZE= given)
        self.sentinel_then_assert_nothing_new(before, ("bob",))

    def test_long_command_line(self):
        c = self.conn()
        self.assertReply(c.cmd("NOOP " + "x" * (LINE_LIMIT + 100)), 500, "5.5.2")
        self.assert_in_sync(c)
        # A huge line without LF in several writes, then its end.
        c.send(b"MAIL FROM:<" + b"a" * 100000)
        time.sleep(0.1)
        c.send(b"b" * 100000)
        time.sleep(0.1)
        c.send(b"@remote.test>\r\nRCPT TO:<alice@example.test>\r\n")
        self.assertReply(c.reply(), 500, "5.5.2")
        self.assertReply(c.reply(), 503, "5.5.1")  # the long MAIL was not executed
        self.assert_in_sync(c)
        self.assertReply(c.cmd("MAIL FROM:<ok@remote.test>"), 250)

    def test_command_line_at_limit_is_fine(self):
        c = self.conn()
        line = "NOOP " + "x" * (LINE_LIMIT - 5)
        self.assertEqual(len(line), LINE_LIMIT)
        self.assertReply(c.cmd(line), 250)

    def test_long_text_line_refused_in_strict_mode(self):
        # text_line_limit = 998 is RFC 5322's strict mode; by default long
        # lines are accepted (test_limits.LongLineTest).
        srv = self.start_server(config={"text_line_limit": "998"})
        c = self.open_session(srv)
        r = raw_send(c, "long@remote.test", ["carol@example.test"],
                     b"Subject: long line\r\n\r\n" + b"q" * 1000 + b"\r\n.\r\n")
        self.assertReply(r, 554, "5.6.0")
        self.assertIn("998", r.text)
        self.assertReply(c.cmd("NOOP"), 250)
        r = raw_send(c, "long@remote.test", ["carol@example.test"],
                     b"Subject: line of 998\r\n\r\n" + b"q" * 998 + b"\r\n.\r\n")
        self.assertReply(r, 250)
        qid = queue_id_of(r.text)
        _, data = srv.wait_delivery("carol", qid)
        self.assertIn(b"q" * 998 + b"\n", data)
        self.assertEqual(len(srv.maildir_new("carol")), 1)

    def test_header_too_large(self):
        before = self.snapshot(("bob",))
        headers = b"".join(b"X-Filler-%03d: %s\r\n" % (i, b"h" * 60) for i in range(60))
        c = self.conn()
        r = raw_send(c, "hdr@remote.test", ["bob@example.test"],
                     b"Subject: big header\r\n" + headers + b"\r\nbody\r\n.\r\n")
        self.assertReply(r, 552, "5.3.4")
        self.assert_in_sync(c)
        self.sentinel_then_assert_nothing_new(before, ("bob",))

    def test_command_timeout(self):
        srv = self.start_server(config={"command_timeout": "2s"})
        c = self.open_session(srv)
        start = time.monotonic()
        r = c.reply(timeout=scaled(10))
        self.assertReply(r, 421, "4.4.2")
        self.assertGreaterEqual(time.monotonic() - start, 1.5)
        self.assertTrue(c.closed_by_server(scaled(5)))
        srv.wait_log(r"timeout after command")

    def test_data_timeout_discards_message(self):
        srv = self.start_server(config={"data_timeout": "2s"})
        c = self.open_session(srv)
        self.start_data(c, "slow@remote.test", ["alice@example.test"])
        c.send(b"Subject: slow\r\n\r\nhalf a mess")
        r = c.reply(timeout=scaled(10))
        self.assertReply(r, 421, "4.4.2")
        self.assertTrue(c.closed_by_server(scaled(5)))
        time.sleep(0.5)
        self.assertEqual(srv.maildir_new("alice"), [])
        self.assertEqual(srv.spool_files("queue"), [])
        self.assertEqual(srv.spool_files("incoming"), [])

    # -- SMTP smuggling --

    def smuggle(self, srv, end_seq, expect_code=554):
        """Send a message with end_seq + a smuggled message inside, ended
        by a real CRLF.CRLF; expect exactly one reply."""
        c = self.open_session(srv)
        self.start_data(c, "carrier@remote.test", ["alice@example.test"])
        c.send(b"Subject: carrier\r\n\r\nhello" + end_seq + SMUGGLED + b"\r\n.\r\n")
        r = c.reply()
        extra = c.pending(0.5)
        self.assertEqual(extra, b"", "more than one reply to one DATA: the smuggled "
                         "commands were executed (first reply %r)" % r)
        self.assertEqual(r.code, expect_code, r)
        self.assertReply(c.cmd("NOOP"), 250)
        self.assertNotIn("from=<evil@remote.test>", srv.log(),
                         "the smuggled MAIL command was executed")
        return r

    def test_smuggling_sequences_refused(self):
        for seq in (b"\n.\n", b"\r\n.\n", b"\n.\r\n", b"\r.\r\n", b"\r\n.\r",
                    b"\r\n.\r\r\n", b"\n..\n"):
            with self.subTest(seq=seq):
                before = self.snapshot(("alice", "bob"))
                r = self.smuggle(self.srv, seq)
                self.assertEqual(r.status, "5.6.0", r)
                self.sentinel_then_assert_nothing_new(before, ("alice", "bob"))

    def test_bare_cr_or_lf_in_the_middle_refused(self):
        for body in (b"one\ntwo\r\n", b"one\rtwo\r\n", b"one\r\r\ntwo\r\n", b"trailing\n\r\n"):
            with self.subTest(body=body):
                before = self.snapshot(("alice",))
                c = self.conn()
                r = raw_send(c, "bare@remote.test", ["alice@example.test"],
                             b"Subject: bare\r\n\r\n" + body + b".\r\n")
                self.assertReply(r, 554, "5.6.0")
                self.assert_in_sync(c)
                self.sentinel_then_assert_nothing_new(before, ("alice",))

    def test_bare_newline_normalize(self):
        srv = self.start_server(config={"bare_newline": "normalize"})
        c = self.open_session(srv)
        r = raw_send(c, "lf@remote.test", ["alice@example.test"],
                     b"Subject: bare LF\nX-Two: yes\n\nline one\nline two\r\nthree\n\r\n.\r\n")
        self.assertReply(r, 250)
        qid = queue_id_of(r.text)
        _, data = srv.wait_delivery("alice", qid)
        head, body = split_message(data)
        self.assertIn("Subject: bare LF\nX-Two: yes", head)
        self.assertEqual(body, b"line one\nline two\nthree\n\n")
        self.assertNotIn(b"\r", data)

    def test_bare_newline_normalize_still_needs_crlf_dot_crlf(self):
        # Even when bare LF is accepted as a line end, only CRLF.CRLF may
        # end the data: "\n.\r\n" must not split one message into two.
        srv = self.start_server(config={"bare_newline": "normalize"})
        for seq in (b"\n.\r\n", b"\n.\n"):
            with self.subTest(seq=seq):
                before = {u: srv.maildir_new(u) for u in ("alice", "bob")}
                c = self.open_session(srv)
                self.start_data(c, "carrier@remote.test", ["alice@example.test"])
                c.send(b"Subject: carrier\r\n\r\nhello" + seq + SMUGGLED + b"\r\n.\r\n")
                r = c.reply()
                extra = c.pending(0.5)
                self.assertEqual(extra, b"", "the smuggled commands were executed "
                                 "(first reply %r)" % r)
                self.assertEqual(r.code, 250, "one (odd but complete) message: %r" % r)
                self.assertNotIn("from=<evil@remote.test>", srv.log())
                c.close()
                qid = smtplib_send(srv.port, "s@remote.test", ["dave@example.test"],
                                   make_message("sentinel"))
                srv.wait_delivery("dave", qid)
                srv.wait_log(r"%s: removed" % qid)
                time.sleep(0.2)
                self.assertEqual(set(srv.maildir_new("bob")) - set(before["bob"]), set(),
                                 "a smuggled message was delivered to bob")

    # -- STARTTLS --

    def test_starttls_with_smtplib(self):
        before = self.snapshot(("alice",))
        offset = self.srv.log_size()
        with smtplib.SMTP("127.0.0.1", self.srv.port, local_hostname="tls.client.test",
                          timeout=scaled(15)) as s:
            s.ehlo()
            self.assertTrue(s.has_extn("starttls"))
            code, _ = s.starttls(context=client_tls_context())
            self.assertEqual(code, 220)
            # The log says that TLS is up, with what the client negotiated.
            self.srv.wait_log(r"(?m)client=127\.0\.0\.1 TLS established: version=%s cipher=%s$"
                              % (re.escape(s.sock.version()), re.escape(s.sock.cipher()[0])),
                              since=offset)
            code, text = s.ehlo()
            self.assertEqual(code, 250)
            self.assertFalse(s.has_extn("starttls"), text)
            self.assertTrue(s.has_extn("pipelining"))
            code, _ = s.mail("tls@remote.test")
            self.assertEqual(code, 250)
            code, _ = s.rcpt("alice@example.test")
            self.assertEqual(code, 250)
            code, text = s.data(make_message("over tls").encode())
            self.assertEqual(code, 250)
            qid = queue_id_of(text.decode())
        _, data = self.srv.wait_delivery("alice", qid)
        self.assertRegex(unfold(split_message(data)[0]),
                         r"Received: from tls\.client\.test .*with ESMTPS \(TLSv1\.[23]:[A-Z0-9_-]+\) id %s" % qid)
        self.assertRegex(self.srv.log(), r"%s: accepted .*protocol=ESMTPS" % qid)

    def test_starttls_raw_state_reset(self):
        c = self.conn()
        c.starttls()
        # RFC 3207 4.2: the client must say EHLO again.
        self.assertReply(c.cmd("MAIL FROM:<a@remote.test>"), 503, "5.5.1")
        r = c.ehlo()
        self.assertNotIn("STARTTLS", [l.upper() for l in r.lines])
        self.assertReply(c.cmd("STARTTLS"), 503, "5.5.1")
        rr = raw_send(c, "raw-tls@remote.test", ["bob@example.test"],
                      b"Subject: raw tls\r\n\r\nok\r\n.\r\n")
        self.assertReply(rr, 250)
        self.srv.wait_delivery("bob", queue_id_of(rr.text))

    def test_starttls_plaintext_injection_ignored(self):
        c = self.conn()
        c.send(b"STARTTLS\r\nRSET\r\nMAIL FROM:<injected@remote.test>\r\n")
        r = c.reply()
        self.assertReply(r, 220, "2.0.0")
        self.assertEqual(c.buf, b"", "reply to an injected command in clear text")
        c.upgrade()
        leftover = c.pending(0.7)
        self.assertEqual(leftover, b"", "injected plaintext commands were answered after TLS")
        r = c.cmd("EHLO after.tls")
        self.assertReply(r, 250)
        self.assertTrue(r.lines[0].startswith(HOSTNAME), r)
        # If the injected MAIL had run, this would be 503 (nested MAIL).
        self.assertReply(c.cmd("MAIL FROM:<real@remote.test>"), 250)
        self.assertReply(c.cmd("RCPT TO:<alice@example.test>"), 250)
        self.assertNotIn("injected@remote.test", self.srv.log())

    def test_starttls_with_arguments_or_inside_transaction(self):
        c = self.conn()
        self.assertEqual(c.cmd("STARTTLS now").code, 501)
        self.assertReply(c.cmd("MAIL FROM:<a@remote.test>"), 250)
        self.assertReply(c.cmd("STARTTLS"), 503, "5.5.1")

    def test_tls_garbage_handshake_does_not_hurt(self):
        c = self.conn()
        self.assertReply(c.cmd("STARTTLS"), 220)
        c.send(b"\x16\x03\x01\x00\x05hello this is not TLS\r\n" * 3)
        self.assertTrue(c.closed_by_server(scaled(10)))
        c2 = self.conn()
        self.assert_in_sync(c2)

    def test_starttls_not_configured(self):
        srv = self.start_server()  # no tls_cert / tls_key
        c = SmtpConn(srv.port)
        self.addCleanup(c.close)
        r = c.ehlo()
        self.assertNotIn("STARTTLS", [l.upper() for l in r.lines])
        self.assertReply(c.cmd("STARTTLS"), 502)
        self.assertReply(c.cmd("NOOP"), 250)

    # -- IPv6 --

    @unittest.skipUnless(have_ipv6_loopback(), "no IPv6 loopback (::1)")
    def test_ipv6_listener(self):
        srv = self.start_server(ipv6=True)
        qid = smtplib_send(srv.port6, "v6@remote.test", ["alice@example.test"],
                           make_message("over ipv6"), host="::1")
        _, data = srv.wait_delivery("alice", qid)
        self.assertIn("[IPv6:::1]", unfold(split_message(data)[0]))
        self.assertRegex(srv.log(), r"connect client=::1 port=\d+")
        # The IPv4 listener works at the same time.
        qid4 = smtplib_send(srv.port, "v4@remote.test", ["bob@example.test"],
                            make_message("over ipv4"))
        srv.wait_delivery("bob", qid4)

    # -- misc robustness of the dialogue --

    def test_client_disconnect_mid_data_delivers_nothing(self):
        before = self.snapshot(("carol",))
        c = self.conn()
        self.start_data(c, "gone@remote.test", ["carol@example.test"])
        c.send(b"Subject: cut\r\n\r\nthis message never ends\r\n")
        c.close()
        self.srv.wait_log(r"lost=during_data")
        self.sentinel_then_assert_nothing_new(before, ("carol",))
        wait_incoming = time.monotonic() + scaled(5)
        while self.srv.spool_files("incoming") and time.monotonic() < wait_incoming:
            time.sleep(0.1)
        self.assertEqual(self.srv.spool_files("incoming"), [])

    def test_byte_by_byte_input(self):
        c = self.conn(ehlo=False)
        # PIPELINING only from the EHLO reply on (reject_unauth_pipelining)
        for part in (b"EHLO slow.client.test\r\n",
                     b"MAIL FROM:<slow@remote.test>\r\nRCPT TO:<alice@example.test>\r\nDATA\r\n"):
            for i in range(len(part)):
                c.send(part[i:i + 1])
            if part.startswith(b"EHLO"):
                self.assertReply(c.reply(), 250)
        r = c.replies(3)
        self.assertEqual([x.code for x in r], [250, 250, 354], r)
        msg = b"Subject: one byte at a time\r\n\r\n..dot\r\nend\r\n.\r\n"
        for i in range(len(msg)):
            c.send(msg[i:i + 1])
            if msg[i:i + 1] in (b"\r", b"\n", b"."):
                time.sleep(0.005)  # separate TCP segments around the markers
        r = c.reply()
        self.assertReply(r, 250)
        _, data = self.srv.wait_delivery("alice", queue_id_of(r.text))
        self.assertEqual(split_message(data)[1], b".dot\nend\n")

    def test_bdat_chunk_split_across_writes(self):
        content = b"Subject: split chunk\r\n\r\n" + (b"0123456789" * 10 + b"\r\n") * 50
        c = self.conn()
        self.assertReply(c.cmd("MAIL FROM:<split@remote.test>"), 250)
        self.assertReply(c.cmd("RCPT TO:<bob@example.test>"), 250)
        c.send(b"BDAT %d LA" % len(content))
        time.sleep(0.05)
        c.send(b"ST\r\n" + content[:7])
        time.sleep(0.05)
        for i in range(7, len(content), 997):
            c.send(content[i:i + 997])
        r = c.reply()
        self.assertReply(r, 250)
        _, data = self.srv.wait_delivery("bob", queue_id_of(r.text))
        self.assertEqual(split_message(data)[1], (b"0123456789" * 10 + b"\n") * 50)

    def test_empty_message(self):
        c = self.conn()
        r = raw_send(c, "empty@remote.test", ["carol@example.test"], b".\r\n")
        self.assertReply(r, 250)
        qid = queue_id_of(r.text)
        _, data = self.srv.wait_delivery("carol", qid)
        self.assertTrue(data.startswith(b"Return-Path: <empty@remote.test>\nDelivered-To: "
                                        b"carol@example.test\nReceived: "), data)

    def test_nothing_after_quit_is_executed(self):
        c = self.conn()
        c.send(b"QUIT\r\nMAIL FROM:<after-quit@remote.test>\r\nNOOP\r\n")
        self.assertReply(c.reply(), 221)
        self.assertTrue(c.closed_by_server(scaled(5)))
        self.assertEqual(c.buf, b"", "replies after QUIT")
        self.assertNotIn("after-quit@remote.test", self.srv.log())

    def test_control_characters_escaped_in_log_and_headers(self):
        c = self.conn(ehlo=False)
        self.assertReply(c.cmd("EHLO evil\x1b[31m(x)\x07.test"), 250)
        r = raw_send(c, "ctl@remote.test", ["dave@example.test"],
                     b"Subject: control\r\n\r\nx\r\n.\r\n")
        self.assertReply(r, 250)
        qid = queue_id_of(r.text)
        _, data = self.srv.wait_delivery("dave", qid)
        head = split_message(data)[0]
        received = unfold(head).split("\n")[2]
        self.assertNotIn("\x1b", received)
        self.assertNotIn("\x07", received)
        self.assertNotIn("(x)", received, "parentheses would end the comment")
        log = self.srv.log()
        self.assertNotIn("\x1b", log, "raw control character in the log")
        self.assertIn("helo=evil\\x1b[31m", log)

    def test_worker_connections_limit(self):
        srv = self.start_server(config={"workers": "1", "worker_connections": "2"})
        a, b = SmtpConn(srv.port), SmtpConn(srv.port)
        self.addCleanup(a.close)
        self.addCleanup(b.close)
        third = SmtpConn(srv.port, greet=False)
        self.addCleanup(third.close)
        r = third.reply()
        self.assertReply(r, 421, "4.7.0")
        self.assertTrue(third.closed_by_server(scaled(5)))
        a.ehlo()
        a.cmd("QUIT")
        a.close()
        time.sleep(0.2)
        with SmtpConn(srv.port) as d:
            self.assertEqual(d.greeting.code, 220)

    def test_many_concurrent_sessions(self):
        conns = [SmtpConn(self.srv.port) for _ in range(50)]
        for c in conns:
            self.addCleanup(c.close)
        for c in conns:
            c.send(b"EHLO many.test\r\n")
        for c in conns:
            self.assertReply(c.reply(), 250)
        for c in conns:
            c.send(b"QUIT\r\n")
        for c in conns:
            self.assertReply(c.reply(), 221)


if __name__ == "__main__":
    unittest.main()

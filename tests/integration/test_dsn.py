"""
test_dsn.py - Delivery Status Notifications as a client sees them (RFC
3461, 3464, 6533): DSN in EHLO, RET/ENVID/NOTIFY/ORCPT accepted or
refused with the right code, and the reports that come back to the
sender's mailbox: failures per NOTIFY, RET=HDRS against RET=FULL, ENVID
and ORCPT echoed, a success report, one delay warning (kept across a
restart), UTF-8 addresses as utf-8 address types, and a double bounce to
the postmaster. Real clients: Python's smtplib (mail/rcpt options), swaks,
a raw connection; plain and STARTTLS.
"""
import email
import email.policy
import os
import pwd
import re
import shutil
import smtplib
import subprocess
import time

from harness import (IS_ROOT, PosternTestCase, SmtpConn, client_tls_context, make_message,
                     queue_id_of, scaled, wait_until)

UTF8_USER = "jos\u00e9"

USERS = ["alice", "bob", "carol", "dave", "admin", UTF8_USER]
ALIASES = {
    "postmaster": ["admin"],
    "broken": ["nosuchuser"],  # accepted at RCPT, fails at delivery
}


def dsn_send(port, sender, rcpts, message, mail_options=(), rcpt_options=(), tls=False,
             smtputf8=False):
    """Send with smtplib, DSN options on MAIL and on every RCPT; return the
    queue id."""
    if isinstance(message, str):
        message = message.encode("utf-8")
    with smtplib.SMTP("127.0.0.1", port, local_hostname="client.test",
                      timeout=scaled(15)) as s:
        s.ehlo()
        assert s.has_extn("dsn"), s.esmtp_features
        if tls:
            code, _ = s.starttls(context=client_tls_context())
            assert code == 220, code
            s.ehlo()
            assert s.has_extn("dsn")
        options = list(mail_options) + (["SMTPUTF8"] if smtputf8 else [])
        code, text = s.mail(sender, options)
        assert code == 250, (code, text)
        for r in rcpts:
            code, text = s.rcpt(r, list(rcpt_options))
            assert code == 250, (r, code, text)
        code, text = s.data(message)
        assert code == 250, (code, text)
        return queue_id_of(text.decode("utf-8", "replace"))


def report_parts(data):
    """The parts of a delivered multipart/report: (message, [parts])."""
    msg = email.message_from_bytes(data, policy=email.policy.compat32)
    return msg, msg.get_payload()


class DsnTest(PosternTestCase):

    @classmethod
    def setUpClass(cls):
        cls.srv = cls.start_class_server(users=USERS, aliases=ALIASES, tls=True)

    def report_for(self, qid, sender_user, what="bounce"):
        m = self.srv.wait_log(r"%s: %s ([0-9A-F]{19}) sent to <%s@example.test>"
                              % (qid, what, re.escape(sender_user)))
        _, data = self.srv.wait_delivery(sender_user, m.group(1))
        return data

    # -- the dialogue --

    def test_dsn_advertised(self):
        proc = subprocess.run(
            ["swaks", "--server", "127.0.0.1:%d" % self.srv.port, "--quit-after", "EHLO",
             "--ehlo", "client.test", "--timeout", str(int(scaled(20)))],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=scaled(60))
        out = proc.stdout.decode("utf-8", "replace")
        self.assertEqual(proc.returncode, 0, out)
        self.assertRegex(out, r"(?m)^<-  250[ -]DSN\r?$")
        c = self.open_session(self.srv)
        c.starttls(context=client_tls_context())
        r = c.ehlo()
        self.assertIn("DSN", r.lines)

    def test_parameters_checked(self):
        bad_mail = [
            ("RET=ALL", 501), ("RET", 501), ("RET=FULL RET=HDRS", 501),
            ("ENVID=a+2", 501), ("ENVID=a+0D", 501), ("ENVID=a=b", 501),
            ("ENVID=" + "x" * 101, 501), ("ENVID=a ENVID=b", 501), ("SPECIAL=1", 555),
        ]
        # a fresh session for each refusal: too many errors end a session
        for params, code in bad_mail:
            with SmtpConn(self.srv.port) as c:
                c.ehlo()
                r = c.cmd("MAIL FROM:<carol@example.test> %s" % params)
                self.assertReply(r, code, "5.5.4", "MAIL %s: %r" % (params, r))
        c = self.open_session(self.srv)
        self.assertReply(c.cmd("MAIL FROM:<carol@example.test> RET=hdrs ENVID=" + "x" * 100), 250)
        bad_rcpt = [
            ("NOTIFY=NEVER,SUCCESS", 501), ("NOTIFY=SUCCESS,SUCCESS", 501),
            ("NOTIFY=ALWAYS", 501), ("NOTIFY", 501), ("ORCPT=alice@example.test", 501),
            ("ORCPT=rfc822;", 501), ("ORCPT=rfc822;a+0Ab", 501),
            ("ORCPT=utf-8;\\x{41}", 501), ("ORCPT=rfc822;" + "x" * 501, 501),
            ("XRCPT=1", 555),
        ]
        for params, code in bad_rcpt:
            with SmtpConn(self.srv.port) as c2:
                c2.ehlo()
                self.assertReply(c2.cmd("MAIL FROM:<carol@example.test>"), 250)
                r = c2.cmd("RCPT TO:<alice@example.test> %s" % params)
                self.assertReply(r, code, "5.5.4", "RCPT %s: %r" % (params, r))
        # the transaction is still usable
        self.assertReply(c.cmd("RCPT TO:<alice@example.test> NOTIFY=success,failure "
                               "ORCPT=rfc822;Alice+2Btag@Example.Test"), 250)
        self.assertReply(c.cmd("DATA"), 354)
        c.send(b"Subject: after refusals\r\n\r\nbody\r\n.\r\n")
        r = c.reply()
        self.assertReply(r, 250)
        self.srv.wait_delivery("alice", queue_id_of(r.text))

    def test_parameters_need_ehlo(self):
        with SmtpConn(self.srv.port) as c:
            self.assertReply(c.cmd("HELO client.test"), 250)
            self.assertReply(c.cmd("MAIL FROM:<carol@example.test> RET=FULL"), 555)
            self.assertReply(c.cmd("MAIL FROM:<carol@example.test>"), 250)
            self.assertReply(c.cmd("RCPT TO:<alice@example.test> NOTIFY=NEVER"), 555)

    # -- failure reports per NOTIFY --

    def test_failure_report_hdrs_envid_orcpt(self):
        for tls in (False, True):
            with self.subTest(tls=tls):
                msg = make_message("dsn hdrs", "SECRET BODY\r\n", sender="carol@example.test",
                                   to="broken@example.test")
                qid = dsn_send(self.srv.port, "carol@example.test", ["broken@example.test"],
                               msg, mail_options=["RET=HDRS", "ENVID=QQ+2B314"],
                               rcpt_options=["NOTIFY=FAILURE",
                                             "ORCPT=rfc822;Broken+2Bx@Example.Test"],
                               tls=tls)
                data = self.report_for(qid, "carol")
                msg, parts = report_parts(data)
                self.assertEqual(msg.get_content_type(), "multipart/report")
                self.assertEqual(msg.get_param("report-type"), "delivery-status")
                self.assertEqual(msg["From"], "Mail Delivery System <MAILER-DAEMON@mx.example.test>")
                self.assertEqual(len(parts), 3)
                self.assertEqual(parts[1].get_content_type(), "message/delivery-status")
                status = parts[1].as_string()
                self.assertIn("Original-Envelope-Id: QQ+314", status)
                self.assertIn("Original-Recipient: rfc822; Broken+x@Example.Test", status)
                self.assertIn("Final-Recipient: rfc822; nosuchuser@example.test", status)
                self.assertIn("Action: failed", status)
                self.assertIn("Status: 5.1.1", status)
                self.assertEqual(parts[2].get_content_type(), "text/rfc822-headers")
                self.assertIn(b"Subject: dsn hdrs", data)
                self.assertNotIn(b"SECRET BODY", data, "RET=HDRS: headers only")
                self.assertTrue(data.startswith(b"Return-Path: <>\n"))

    def test_failure_report_ret_full(self):
        msg = make_message("dsn full", "SECRET BODY\r\n..leading dot\r\n",
                           sender="carol@example.test", to="broken@example.test")
        qid = dsn_send(self.srv.port, "carol@example.test", ["broken@example.test"], msg,
                       mail_options=["RET=FULL"])
        data = self.report_for(qid, "carol")
        _, parts = report_parts(data)
        self.assertEqual(parts[2].get_content_type(), "message/rfc822")
        returned = parts[2].get_payload()[0]
        self.assertEqual(returned["Subject"], "dsn full")
        # the returned copy is the message as received (smtplib stuffed
        # the dot, postern took the stuffing off again)
        self.assertIn("SECRET BODY\n..leading dot\n", returned.get_payload())

    def test_no_report_for_never_or_without_failure(self):
        for notify in ("NEVER", "SUCCESS", "DELAY", "SUCCESS,DELAY"):
            with self.subTest(notify=notify):
                before = self.srv.maildir_new("dave")
                qid = dsn_send(self.srv.port, "dave@example.test", ["broken@example.test"],
                               make_message("never " + notify), rcpt_options=["NOTIFY=" + notify])
                self.srv.wait_log(r"%s: to=<nosuchuser@example.test> .*status=bounced" % qid)
                self.srv.wait_log(r"%s: no bounce for 1 failed recipient: NOTIFY" % qid)
                self.srv.wait_log(r"%s: removed" % qid)
                self.assertNotRegex(self.srv.log(), r"%s: bounce [0-9A-F]{19} sent" % qid)
                time.sleep(0.3)
                self.assertEqual(self.srv.maildir_new("dave"), before)

    def test_default_notify_bounces(self):
        qid = dsn_send(self.srv.port, "dave@example.test", ["broken@example.test"],
                       make_message("no notify"))
        data = self.report_for(qid, "dave")
        self.assertIn(b"Action: failed", data)
        self.assertNotIn(b"Original-Envelope-Id", data)

    def test_success_report(self):
        for tls in (False, True):
            with self.subTest(tls=tls):
                qid = dsn_send(self.srv.port, "carol@example.test",
                               ["alice@example.test", "bob@example.test"],
                               make_message("please confirm", "BODY\r\n"),
                               mail_options=["RET=FULL", "ENVID=conf-1"],
                               rcpt_options=["NOTIFY=SUCCESS",
                                             "ORCPT=rfc822;alice@example.test"], tls=tls)
                self.srv.wait_delivery("alice", qid)
                self.srv.wait_delivery("bob", qid)
                data = self.report_for(qid, "carol", "success report")
                msg, parts = report_parts(data)
                self.assertEqual(msg["Subject"], "Successful Mail Delivery Report")
                status = parts[1].as_string()
                self.assertEqual(status.count("Action: delivered"), 2)
                self.assertIn("Status: 2.0.0", status)
                self.assertIn("Original-Envelope-Id: conf-1", status)
                self.assertEqual(parts[2].get_content_type(), "text/rfc822-headers")
                self.assertNotIn(b"BODY", data.split(b"\n\n", 1)[1].replace(b"BODY>", b""))
                self.srv.wait_log(r"%s: removed" % qid)
        # without SUCCESS, a delivery is silent
        qid = dsn_send(self.srv.port, "carol@example.test", ["alice@example.test"],
                       make_message("silent"), rcpt_options=["NOTIFY=FAILURE,DELAY"])
        self.srv.wait_delivery("alice", qid)
        self.srv.wait_log(r"%s: removed" % qid)
        self.assertNotRegex(self.srv.log(), r"%s: success report" % qid)

    def test_refused_in_dialogue_never_reported(self):
        """A recipient refused at RCPT (however loudly it asks for reports)
        has its refusal: no report follows."""
        c = self.open_session(self.srv)
        self.assertReply(c.cmd("MAIL FROM:<dave@example.test> RET=FULL"), 250)
        r = c.cmd("RCPT TO:<nosuchuser@example.test> NOTIFY=SUCCESS,FAILURE,DELAY")
        self.assertEqual(r.code // 100, 5, r)
        self.assertReply(c.cmd("RCPT TO:<alice@example.test> NOTIFY=NEVER"), 250)
        self.assertReply(c.cmd("DATA"), 354)
        c.send(b"Subject: half refused\r\n\r\nbody\r\n.\r\n")
        r = c.reply()
        self.assertReply(r, 250)
        qid = queue_id_of(r.text)
        self.srv.wait_delivery("alice", qid)
        self.srv.wait_log(r"%s: removed" % qid)
        self.assertNotRegex(self.srv.log(), r"%s: (bounce|success report|delay warning) " % qid)
        self.assertNotRegex(self.srv.log(), r"%s: to=<nosuchuser@example.test>" % qid)

    # -- UTF-8 and the null sender --

    def test_utf8_addresses_use_utf8_type(self):
        sender = UTF8_USER + "@example.test"
        qid = dsn_send(self.srv.port, sender, ["broken@example.test"],
                       make_message("utf8 dsn", sender="carol@example.test"),
                       rcpt_options=["NOTIFY=FAILURE", "ORCPT=utf-8;br\\x{F6}ken@example.test"],
                       smtputf8=True)
        data = self.report_for(qid, UTF8_USER)
        msg, parts = report_parts(data)
        self.assertEqual(msg.get_param("report-type"), "global-delivery-status")
        self.assertEqual(parts[1].get_content_type(), "message/global-delivery-status")
        text = data.decode("utf-8")
        self.assertIn("Original-Recipient: utf-8; br\u00f6ken@example.test", text)
        self.assertIn("Final-Recipient: rfc822; nosuchuser@example.test", text)
        self.assertIn("To: <%s>" % sender, text)

    def test_double_bounce_to_postmaster(self):
        with SmtpConn(self.srv.port) as c:
            c.ehlo()
            self.assertReply(c.cmd("MAIL FROM:<>"), 250)
            self.assertReply(c.cmd("RCPT TO:<broken@example.test>"), 250)
            self.assertReply(c.cmd("DATA"), 354)
            c.send(b"Subject: a bounce that bounces\r\n\r\nbody\r\n.\r\n")
            r = c.reply()
            self.assertReply(r, 250)
            qid = queue_id_of(r.text)
        m = self.srv.wait_log(r"%s: sender is <>: double bounce ([0-9A-F]{19}) sent to "
                              r"<postmaster@example.test>" % qid)
        _, data = self.srv.wait_delivery("admin", m.group(1))
        text = data.decode()
        self.assertIn("Subject: Postmaster notice: undeliverable delivery report", text)
        self.assertIn("Action: failed", text)
        self.assertIn("Subject: a bounce that bounces", text)
        self.srv.wait_log(r"%s: removed" % qid)


class DsnDoubleBounceLostTest(PosternTestCase):
    """A double bounce that cannot be delivered either is dropped, once."""

    def test_no_loop(self):
        srv = self.start_server(users=["alice"], aliases={"broken": ["nosuchuser"]})
        with SmtpConn(srv.port) as c:
            c.ehlo()
            self.assertReply(c.cmd("MAIL FROM:<>"), 250)
            self.assertReply(c.cmd("RCPT TO:<broken@example.test>"), 250)
            self.assertReply(c.cmd("DATA"), 354)
            c.send(b"Subject: nowhere\r\n\r\nbody\r\n.\r\n")
            qid = queue_id_of(c.reply().text)
        m = srv.wait_log(r"%s: sender is <>: double bounce ([0-9A-F]{19}) sent" % qid)
        srv.wait_log(r"%s: double bounce dropped" % m.group(1))
        srv.wait_log(r"%s: removed" % m.group(1))
        time.sleep(0.5)
        self.assertEqual(srv.spool_files("queue"), [])
        self.assertEqual(srv.spool_files("deferred"), [])
        self.assertEqual(len(re.findall(r"double bounce [0-9A-F]{19} sent", srv.log())), 1)


class DelayWarningTest(PosternTestCase):
    """One delay warning per message once delay_warning_time has passed,
    for the recipients whose NOTIFY did not refuse it; none repeated after
    a restart. A temporary failure is made by putting a file where bob's
    Maildir folder would be."""

    def setUp(self):
        super().setUp()
        self.srv = self.start_server(
            users=["alice", "bob", "carol"], start=False,
            config={"delay_warning_time": "2s", "queue_retry_min": "1s",
                    "queue_retry_max": "1s"})
        box = os.path.join(self.srv.mail_root, "example.test", "bob")
        os.makedirs(box)
        with open(os.path.join(box, "Maildir"), "w") as f:
            f.write("not a folder\n")
        if IS_ROOT:
            mail = pwd.getpwnam("mail")
            for d in (self.srv.mail_root, os.path.dirname(box), box):
                os.chown(d, mail.pw_uid, mail.pw_gid)
        self.box = box
        self.srv.start()

    def test_one_warning_survives_restart(self):
        qid = dsn_send(self.srv.port, "carol@example.test", ["bob@example.test"],
                       make_message("slow one", "BODY\r\n"), mail_options=["ENVID=slow-1"],
                       rcpt_options=["NOTIFY=DELAY,FAILURE", "ORCPT=rfc822;Bob@Example.Test"])
        quiet = dsn_send(self.srv.port, "carol@example.test", ["bob@example.test"],
                         make_message("quiet one"), rcpt_options=["NOTIFY=FAILURE"])
        self.srv.wait_log(r"%s: to=<bob@example.test> .*status=deferred" % qid)
        m = self.srv.wait_log(r"%s: delay warning ([0-9A-F]{19}) sent to <carol@example.test>"
                              % qid, timeout=scaled(20))
        _, data = self.srv.wait_delivery("carol", m.group(1))
        msg, parts = report_parts(data)
        self.assertEqual(msg["Subject"], "Delayed Mail (still being retried)")
        self.assertEqual(msg.get_content_type(), "multipart/report")
        status = parts[1].as_string()
        self.assertIn("Action: delayed", status)
        self.assertRegex(status, r"Status: 4\.\d+\.\d+")
        self.assertIn("Original-Envelope-Id: slow-1", status)
        self.assertIn("Original-Recipient: rfc822; Bob@Example.Test", status)
        self.assertIn("Will-Retry-Until:", status)
        self.assertTrue(data.startswith(b"Return-Path: <>\n"))
        self.srv.wait_log(r"%s: no delay warning: NOTIFY did not ask for one" % quiet,
                          timeout=scaled(20))
        # more attempts, then a restart: still one warning
        attempts = lambda: len(re.findall(r"%s: to=<bob@example.test> .*status=deferred" % qid,
                                          self.srv.log()))
        n = attempts()
        wait_until(lambda: attempts() >= n + 2, scaled(20), what="two more attempts")
        self.srv.stop()
        self.srv.start()
        n = attempts()
        wait_until(lambda: attempts() >= n + 2, scaled(20), what="attempts after restart")
        self.assertEqual(len(re.findall(r"%s: delay warning" % qid, self.srv.log())), 1)
        self.assertEqual(len(re.findall(r"%s: (no )?delay warning" % quiet, self.srv.log())), 1)
        # the mailbox is fixed: delivered, and no further report
        os.unlink(os.path.join(self.box, "Maildir"))
        self.srv.wait_delivery("bob", qid, timeout=scaled(20))
        self.srv.wait_log(r"%s: removed" % qid, timeout=scaled(20))
        self.assertNotRegex(self.srv.log(), r"%s: bounce " % qid)

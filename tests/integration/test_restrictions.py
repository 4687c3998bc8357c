"""
test_restrictions.py - the SMTP restriction lists (client_restrictions,
helo_restrictions, sender_restrictions, recipient_restrictions,
data_restrictions) against the real server, with smtplib, swaks and a raw
socket, in clear text and after STARTTLS: each restriction and its reply
code, the delay of the client, HELO and sender lists to RCPT, permit
ending one list only, warn_if_reject, HOLD into the spool's hold/ (shown
by "postern hold"), DISCARD, the log line that names the deciding
restriction, the session options (helo_required, strict_rfc821_envelopes,
strict_7bit_headers, smtpd_banner), and check-config's FILE:LINE reports
(and bad arguments of the DNS restrictions).
"""
import os
import re
import shutil
import smtplib
import subprocess
import unittest

from harness import (HOSTNAME, PosternServer, PosternTestCase, SmtpConn, client_tls_context, make_message,
                     queue_id_of, scaled, smtplib_send, wait_for_files)

# 127.0.0.1, the tests' client, is not in mynetworks unless a test says so.
OUTSIDE = {"mynetworks": "10.99.0.0/16", "error_limit": "100"}


def write(srv, name, text):
    with open(os.path.join(srv.dir, name), "w") as f:
        f.write(text)
    return os.path.join(srv.dir, name)


class RestrictionServer(PosternTestCase):
    """A server per test, with map files written beside its configuration."""

    def server(self, config, maps=None, tls=False, start=True, **kw):
        settings = dict(OUTSIDE)
        settings.update(config)
        srv = self.start_server(config=settings, tls=tls, start=False, **kw)
        for name, text in (maps or {}).items():
            write(srv, name, text)
        if start:
            srv.start()
        return srv

    def conn(self, srv, helo="client.example.org", tls=False):
        c = SmtpConn(srv.port)
        self.addCleanup(c.close)
        if tls:
            c.ehlo(helo)
            c.starttls()
        if helo is not None:
            c.ehlo(helo)
        return c

    def rcpt_reply(self, srv, sender="sender@remote.test", rcpt="alice@example.test",
                   helo="client.example.org", tls=False):
        """The reply to RCPT after an accepted MAIL."""
        c = self.conn(srv, helo=helo, tls=tls)
        self.assertReply(c.cmd("MAIL FROM:<%s>" % sender), 250)
        return c, c.cmd("RCPT TO:<%s>" % rcpt)


class DelayedRejectionTest(RestrictionServer):
    """A client, HELO or sender refusal is the answer to RCPT (Postfix's
    smtpd_delay_reject = yes), which every client handles."""

    def test_client_refusal_is_answered_at_rcpt(self):
        srv = self.server({"client_restrictions": "check_client_access cidr:clients.cidr"},
                          maps={"clients.cidr": "127.0.0.0/8  REJECT no mail from here\n"})
        c = SmtpConn(srv.port)
        self.addCleanup(c.close)
        self.assertEqual(c.greeting.code, 220)
        c.ehlo()
        self.assertReply(c.cmd("MAIL FROM:<sender@remote.test>"), 250)
        r = c.cmd("RCPT TO:<alice@example.test>")
        self.assertReply(r, 554, "5.7.1")
        self.assertIn("<127.0.0.1>: Client address refused: no mail from here", r.text)
        self.assertReply(c.cmd("DATA"), 554, "5.5.1")
        self.assertReply(c.cmd("QUIT"), 221)
        m = srv.wait_log(r"([0-9A-F]{19}): reject: RCPT client=127\.0\.0\.1 "
                         r"from=<sender@remote\.test> to=<alice@example\.test> code=554 5\.7\.1 "
                         r"reason=check_client_access restriction=check_client_access "
                         r"list=client_restrictions map=cidr:\S+/clients\.cidr key=127\.0\.0\.1")
        self.assertTrue(m.group(1))
        self.assertEqual(srv.all_maildir_files(), {})

    def test_helo_refusal_over_starttls_with_smtplib(self):
        srv = self.server({"helo_restrictions": "reject_non_fqdn_helo"}, tls=True)
        with smtplib.SMTP("127.0.0.1", srv.port, local_hostname="localhost",
                          timeout=scaled(15)) as s:
            s.ehlo()
            s.starttls(context=client_tls_context())
            code, _ = s.ehlo()
            self.assertEqual(code, 250)  # the HELO name is judged at RCPT
            self.assertEqual(s.mail("sender@remote.test")[0], 250)
            code, text = s.rcpt("alice@example.test")
            self.assertEqual(code, 504)
            self.assertIn(b"5.5.2 <localhost>: HELO name refused: not a fully-qualified "
                          b"domain name", text)
        srv.wait_log(r"reject: RCPT client=127\.0\.0\.1 .*code=504 5\.5\.2 "
                     r"reason=non_fqdn_helo restriction=reject_non_fqdn_helo "
                     r"list=helo_restrictions")

    def test_sender_refusal_with_swaks(self):
        if shutil.which("swaks") is None:
            self.skipTest("swaks is not installed (tools/install-deps.sh installs it)")
        srv = self.server({"sender_restrictions": "check_sender_access file:senders"},
                          maps={"senders": "spammer@remote.test  550 5.7.0 you again\n"},
                          tls=True)
        p = subprocess.run(["swaks", "--server", "127.0.0.1:%d" % srv.port, "--tls",
                            "--from", "spammer@remote.test",
                            "--to", "alice@example.test", "--helo", "client.example.org"],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=scaled(30))
        out = p.stdout.decode("utf-8", "replace")
        self.assertNotEqual(p.returncode, 0, out)
        self.assertIn("550 5.7.0 <spammer@remote.test>: Sender address refused: you again",
                      out)
        self.assertEqual(srv.all_maildir_files(), {})
        p = subprocess.run(["swaks", "--server", "127.0.0.1:%d" % srv.port, "--tls",
                            "--from", "friend@remote.test",
                            "--to", "alice@example.test", "--helo", "client.example.org"],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=scaled(30))
        out = p.stdout.decode("utf-8", "replace")
        self.assertEqual(p.returncode, 0, out)
        qid = queue_id_of(out)
        srv.wait_delivery("alice", qid)

    def test_lists_run_in_order_and_permit_ends_one_list(self):
        srv = self.server({"client_restrictions": "permit",
                           "sender_restrictions": "check_sender_access file:senders, reject",
                           "recipient_restrictions": "permit_mynetworks, reject_unauth_destination"},
                          maps={"senders": "good@remote.test OK\n"})
        # permit in the client list does not skip the sender list...
        _, r = self.rcpt_reply(srv, sender="other@remote.test")
        self.assertReply(r, 554, "5.7.1")
        self.assertIn("<other@remote.test>: Sender address refused: Access denied", r.text)
        # ...and OK in the sender map does not skip the recipient list.
        _, r = self.rcpt_reply(srv, sender="good@remote.test", rcpt="user@far.test")
        self.assertReply(r, 554, "5.7.1")
        self.assertIn("Relay access denied", r.text)
        qid = smtplib_send(srv.port, "good@remote.test", ["alice@example.test"],
                           make_message("ordered"))
        srv.wait_delivery("alice", qid)


class EachRestrictionTest(RestrictionServer):
    """One server with several lists; each restriction by its trigger."""

    @classmethod
    def setUpClass(cls):
        srv = PosternServer(name=cls.__name__, config=dict(OUTSIDE, **{
            "client_restrictions": "permit_auth",
            "helo_restrictions": "reject_invalid_helo, check_helo_access file:helos",
            "sender_restrictions": "reject_non_fqdn_sender, check_sender_access file:senders",
            "recipient_restrictions": "reject_non_fqdn_recipient, check_recipient_access "
                                      "regexp:rcpts.re, permit_mynetworks, permit_auth, "
                                      "reject_unauth_destination",
            "local_domains": "example.test, localhost",
        }), tls=True)
        write(srv, "helos", "bad.example.org   REJECT go away\n"
                            "tempo.example.org DEFER\n")
        write(srv, "senders", "example.net    REJECT whole domain\n"
                              "<>             DUNNO\n"
                              "slow@          DEFER\n")
        write(srv, "rcpts.re", "/^nobody-(.*)@example\\.test$/ 550 5.1.1 no $1 here\n")
        cls.addClassCleanup(cls._class_cleanup, srv)
        srv.start()  # the maps are read at start
        cls.class_server = cls.srv = srv

    def check(self, want_code, want_status, want_text, **kw):
        _, r = self.rcpt_reply(self.srv, **kw)
        self.assertReply(r, want_code, want_status)
        if want_text:
            self.assertIn(want_text, r.text)

    def test_invalid_helo(self):
        self.check(501, "5.5.2", "<-bad-.example>: HELO name refused: not a valid host name "
                   "or address literal", helo="-bad-.example")

    def test_helo_access(self):
        self.check(554, "5.7.1", "<bad.example.org>: HELO name refused: go away",
                   helo="bad.example.org")
        self.check(450, "4.7.1", "<tempo.example.org>: HELO name refused: Try again later",
                   helo="tempo.example.org")
        self.check(250, "2.1.5", None, helo="[127.0.0.1]")

    def test_non_fqdn_sender(self):
        self.check(504, "5.5.2", "<joe@localhost>: Sender address refused: the domain is not "
                   "fully qualified", sender="joe@localhost")

    def test_sender_access_domains_and_user(self):
        self.check(554, "5.7.1", "<x@example.net>: Sender address refused: whole domain",
                   sender="x@example.net")
        self.check(554, "5.7.1", "whole domain", sender="x@deep.sub.example.net")
        self.check(450, "4.7.1", "<slow@anywhere.test>: Sender address refused: Try again "
                   "later", sender="slow@anywhere.test")
        self.check(250, "2.1.5", None, sender="")

    def test_non_fqdn_recipient(self):
        self.check(504, "5.5.2", "<alice@localhost>: Recipient address refused: the domain "
                   "is not fully qualified", rcpt="alice@localhost")

    def test_recipient_access_regexp(self):
        self.check(550, "5.1.1", "<nobody-bob@example.test>: Recipient address refused: no "
                   "bob here", rcpt="nobody-bob@example.test")

    def test_unauth_destination_and_permit_auth(self):
        # permit_auth is there, but nobody can log in yet: no relaying.
        self.check(554, "5.7.1", "<user@far.test>: Relay access denied", rcpt="user@far.test")

    def test_same_over_starttls(self):
        self.check(554, "5.7.1", "whole domain", sender="x@example.net", tls=True)
        self.check(501, "5.5.2", "HELO name refused", helo="a..b", tls=True)

    def test_refusals_do_not_end_the_session(self):
        c = self.conn(self.srv)
        self.assertReply(c.cmd("MAIL FROM:<x@example.net>"), 250)
        self.assertReply(c.cmd("RCPT TO:<alice@example.test>"), 554)
        self.assertReply(c.cmd("RSET"), 250)
        r = c.cmd("MAIL FROM:<ok@remote.test>")
        self.assertReply(r, 250)
        self.assertReply(c.cmd("RCPT TO:<alice@example.test>"), 250)
        self.assertReply(c.cmd("DATA"), 354)
        qid = self.send_data_queued(c, b"Subject: after refusals\r\n\r\nhi\r\n.\r\n")
        self.srv.wait_delivery("alice", qid)


class ActionsTest(RestrictionServer):
    """warn_if_reject, WARN, HOLD, DISCARD, plain defer and data_restrictions."""

    def test_warn_if_reject_logs_and_accepts(self):
        srv = self.server({"client_restrictions": "warn_if_reject check_client_access "
                                                  "cidr:clients.cidr"},
                          maps={"clients.cidr": "127.0.0.1 REJECT listed\n"})
        qid = smtplib_send(srv.port, "sender@remote.test", ["alice@example.test"],
                           make_message("warned"))
        srv.wait_delivery("alice", qid)
        srv.wait_log(r"%s: reject_warning: RCPT client=127\.0\.0\.1 helo=<client\.test> "
                     r"from=<sender@remote\.test> to=<alice@example\.test> code=554 5\.7\.1 "
                     r"restriction=check_client_access list=client_restrictions "
                     r"map=cidr:\S+ key=127\.0\.0\.1: <127\.0\.0\.1>: Client address refused: "
                     r"listed" % qid)

    def test_warn_result(self):
        srv = self.server({"sender_restrictions": "check_sender_access file:senders"},
                          maps={"senders": "remote.test WARN new sender domain\n"})
        qid = smtplib_send(srv.port, "sender@remote.test", ["alice@example.test"],
                           make_message("warn"))
        srv.wait_delivery("alice", qid)
        srv.wait_log(r"warning: %s: warn: RCPT client=127\.0\.0\.1 .*restriction="
                     r"check_sender_access list=sender_restrictions map=file:\S+ "
                     r"key=remote\.test: new sender domain" % qid)

    def test_hold_lands_in_hold_folder(self):
        srv = self.server({"sender_restrictions": "check_sender_access file:senders"},
                          maps={"senders": "suspect@remote.test HOLD look at this one\n"})
        qid = smtplib_send(srv.port, "suspect@remote.test", ["alice@example.test"],
                           make_message("held"))
        self.assertEqual(wait_for_files(os.path.join(srv.spool_dir, "hold"), 1), [qid])
        srv.wait_log(r"%s: hold: RCPT client=127\.0\.0\.1 .*restriction=check_sender_access "
                     r"list=sender_restrictions .*: look at this one" % qid)
        srv.wait_log(r"%s: accepted .*disposition=hold" % qid)
        self.assertEqual(srv.maildir_new("alice"), [])
        p = srv.run_cli("hold", "show", qid)
        out = p.stdout.decode()
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn("verdict: hold", out)
        self.assertIn("look at this one", out)
        self.assertIn("restrictions", out)
        p = srv.run_cli("hold", "release", qid)
        self.assertEqual(p.returncode, 0, p.stderr)
        srv.wait_delivery("alice", qid)

    def test_discard_is_accepted_and_dropped(self):
        srv = self.server({"client_restrictions": "check_client_access cidr:c.cidr"},
                          maps={"c.cidr": "127.0.0.0/8 DISCARD quiet please\n"})
        qid = smtplib_send(srv.port, "sender@remote.test", ["alice@example.test"],
                           make_message("discarded"))
        srv.wait_log(r"%s: discarded from=<sender@remote\.test> .*reason=check_client_access"
                     % qid)
        srv.wait_log(r"%s: discard: RCPT client=127\.0\.0\.1 .*: quiet please" % qid)
        self.assertEqual(srv.spool_files("queue"), [])
        self.assertEqual(srv.all_maildir_files(), {})

    def test_defer(self):
        srv = self.server({"client_restrictions": "defer"})
        _, r = self.rcpt_reply(srv)
        self.assertReply(r, 450, "4.7.1")
        self.assertIn("<127.0.0.1>: Client address refused: Try again later", r.text)

    def test_defer_unauth_destination(self):
        srv = self.server({"recipient_restrictions": "permit_mynetworks, "
                                                     "defer_unauth_destination"})
        _, r = self.rcpt_reply(srv, rcpt="user@far.test")
        self.assertReply(r, 450, "4.7.1")
        self.assertIn("<user@far.test>: Relay access denied", r.text)
        _, r = self.rcpt_reply(srv, rcpt="alice@example.test")
        self.assertReply(r, 250)

    def test_data_restrictions(self):
        srv = self.server({"data_restrictions": "check_sender_access file:senders"},
                          maps={"senders": "late@remote.test 554 5.7.1 not now\n"})
        c = self.conn(srv)
        self.assertReply(c.cmd("MAIL FROM:<late@remote.test>"), 250)
        self.assertReply(c.cmd("RCPT TO:<alice@example.test>"), 250)
        r = c.cmd("DATA")
        self.assertReply(r, 554, "5.7.1")
        self.assertIn("<late@remote.test>: Sender address refused: not now", r.text)
        srv.wait_log(r"reject: DATA client=127\.0\.0\.1 from=<late@remote\.test> code=554 "
                     r"5\.7\.1 reason=check_sender_access restriction=check_sender_access "
                     r"list=data_restrictions")
        # BDAT asks the same list before its first chunk.
        self.assertReply(c.cmd("MAIL FROM:<late@remote.test>"), 250)
        self.assertReply(c.cmd("RCPT TO:<alice@example.test>"), 250)
        chunk = b"Subject: x\r\n\r\nbody\r\n"
        c.send(b"BDAT %d LAST\r\n" % len(chunk) + chunk)
        self.assertReply(c.reply(), 554, "5.7.1")
        qid = smtplib_send(srv.port, "early@remote.test", ["alice@example.test"],
                           make_message("in time"))
        srv.wait_delivery("alice", qid)

    def test_permit_mynetworks(self):
        srv = self.server({"mynetworks": "127.0.0.0/8",
                           "client_restrictions": "permit_mynetworks, reject"})
        _, r = self.rcpt_reply(srv, rcpt="user@far.test")
        self.assertReply(r, 250)


class SessionOptionsTest(RestrictionServer):

    def test_helo_required(self):
        srv = self.server({})
        c = self.conn(srv, helo=None)
        self.assertReply(c.cmd("MAIL FROM:<a@remote.test>"), 503, "5.5.1")
        srv2 = self.server({"helo_required": "no"})
        c = self.conn(srv2, helo=None)
        self.assertReply(c.cmd("MAIL FROM:<a@remote.test>"), 250)
        self.assertReply(c.cmd("RCPT TO:<alice@example.test>"), 250)
        self.assertReply(c.cmd("DATA"), 354)
        qid = self.send_data_queued(c, b"Subject: no helo\r\n\r\nhi\r\n.\r\n")
        _, data = srv2.wait_delivery("alice", qid)
        self.assertIn(b"Received: from unknown ([127.0.0.1])", data)
        srv2.wait_log(r"%s: client=127\.0\.0\.1 helo= from=<a@remote\.test>" % qid)

    def test_strict_rfc821_envelopes(self):
        srv = self.server({})
        c = self.conn(srv)
        self.assertReply(c.cmd("MAIL FROM:a@remote.test"), 501, "5.1.7")
        srv2 = self.server({"strict_rfc821_envelopes": "no"})
        c = self.conn(srv2)
        self.assertReply(c.cmd("MAIL FROM:a@remote.test SIZE=100"), 250)
        self.assertReply(c.cmd("RCPT TO: alice@example.test"), 250)
        self.assertReply(c.cmd("RCPT TO:<bob@example.test>"), 250)
        self.assertReply(c.cmd("RCPT TO:user@far.test"), 554, "5.7.1")
        self.assertReply(c.cmd("RCPT TO:bad@@x"), 501, "5.1.3")
        self.assertReply(c.cmd("DATA"), 354)
        qid = self.send_data_queued(c, b"Subject: lenient\r\n\r\nhi\r\n.\r\n")
        srv2.wait_delivery("alice", qid)
        srv2.wait_delivery("bob", qid)

    def test_strict_7bit_headers(self):
        srv = self.server({"strict_7bit_headers": "yes"})
        c = self.conn(srv)
        self.assertReply(c.cmd("MAIL FROM:<a@remote.test> BODY=8BITMIME"), 250)
        self.assertReply(c.cmd("RCPT TO:<alice@example.test>"), 250)
        self.assertReply(c.cmd("DATA"), 354)
        c.send("Subject: caf\u00e9\r\n\r\nbody\r\n.\r\n".encode("utf-8"))
        r = c.reply()
        self.assertReply(r, 554, "5.6.0")
        self.assertIn("8-bit", r.text)
        srv.wait_log(r"reject: end-of-data .*reason=8bit_header")
        # 8-bit in the body is fine, and so are UTF-8 headers with SMTPUTF8.
        self.assertReply(c.cmd("MAIL FROM:<a@remote.test> BODY=8BITMIME"), 250)
        self.assertReply(c.cmd("RCPT TO:<alice@example.test>"), 250)
        self.assertReply(c.cmd("DATA"), 354)
        qid = self.send_data_queued(c, "Subject: x\r\n\r\ncaf\u00e9\r\n.\r\n".encode("utf-8"))
        srv.wait_delivery("alice", qid)
        self.assertReply(c.cmd("MAIL FROM:<a@remote.test> SMTPUTF8"), 250)
        self.assertReply(c.cmd("RCPT TO:<alice@example.test>"), 250)
        self.assertReply(c.cmd("DATA"), 354)
        qid = self.send_data_queued(c, "Subject: caf\u00e9\r\n\r\nx\r\n.\r\n".encode("utf-8"))
        srv.wait_delivery("alice", qid)
        # Off (the default): accepted.
        srv2 = self.server({})
        c = self.conn(srv2)
        self.assertReply(c.cmd("MAIL FROM:<a@remote.test>"), 250)
        self.assertReply(c.cmd("RCPT TO:<alice@example.test>"), 250)
        self.assertReply(c.cmd("DATA"), 354)
        qid = self.send_data_queued(c, "Subject: caf\u00e9\r\n\r\nx\r\n.\r\n".encode("utf-8"))
        srv2.wait_delivery("alice", qid)

    def test_smtpd_banner(self):
        srv = self.server({"smtpd_banner": "$hostname ESMTP ready (test)"})
        c = SmtpConn(srv.port)
        self.addCleanup(c.close)
        self.assertEqual(c.greeting.code, 220)
        self.assertEqual(c.greeting.text, "%s ESMTP ready (test)" % HOSTNAME)
        srv2 = self.server({})
        c = SmtpConn(srv2.port)
        self.addCleanup(c.close)
        self.assertEqual(c.greeting.text, "%s ESMTP postern" % HOSTNAME)


class CheckConfigTest(RestrictionServer):
    """Problems named as FILE:LINE, by check-config and by serve."""

    def check_config(self, srv):
        p = srv.run_cli("check-config")
        return p.returncode, p.stdout.decode() + p.stderr.decode()

    def config_line(self, srv, key):
        with open(srv.conf_path) as f:
            for n, line in enumerate(f, 1):
                if line.startswith(key + " "):
                    return n
        self.fail("%s not in %s" % (key, srv.conf_path))

    def test_errors_name_file_and_line(self):
        srv = self.server({
            "client_restrictions": "check_client_access cidr:clients.cidr, "
                                   "reject_rbl_client zen.example.org=127.0.0.300",
            "helo_restrictions": "reject_invalid_hello",
            "sender_restrictions": "reject_rhsbl_sender dbl.example*2",
            "data_restrictions": "check_recipient_access file:rcpts",
            "recipient_restrictions": "permit_mynetworks",
        }, maps={"clients.cidr": "192.0.2.0/24 OK\n10.1.2.3/8 REJECT\n", "rcpts": "a OK\n"},
            start=False)
        rc, out = self.check_config(srv)
        self.assertEqual(rc, 1, out)
        conf = srv.conf_path
        line = self.config_line(srv, "client_restrictions")
        self.assertIn("%s:2: \"10.1.2.3/8\": address has bits set beyond the prefix length"
                      % os.path.join(srv.dir, "clients.cidr"), out)
        self.assertIn("%s:%d: client_restrictions: check_client_access cidr:clients.cidr: the "
                      "map cannot be used" % (conf, line), out)
        self.assertRegex(out, r"%s:%d: client_restrictions: reject_rbl_client "
                         r"zen\.example\.org=127\.0\.0\.300: .*" % (re.escape(conf), line))
        self.assertIn("%s:%d: helo_restrictions: unknown restriction \"reject_invalid_hello\""
                      % (conf, self.config_line(srv, "helo_restrictions")), out)
        self.assertIn("%s:%d: sender_restrictions: reject_rhsbl_sender dbl.example*2: a weight "
                      "(*N) counts only in dnsbl_sites"
                      % (conf, self.config_line(srv, "sender_restrictions")), out)
        self.assertIn("%s:%d: data_restrictions: check_recipient_access needs a recipient"
                      % (conf, self.config_line(srv, "data_restrictions")), out)
        self.assertIn("%s:%d: recipient_restrictions: name reject_unauth_destination"
                      % (conf, self.config_line(srv, "recipient_restrictions")), out)
        # serve refuses to start on the same problems, with the same words.
        rc, log = srv.serve_refused()
        self.assertNotEqual(rc, 0)
        self.assertIn("clients.cidr:2: \"10.1.2.3/8\"", log)
        self.assertIn("a weight (*N) counts only in dnsbl_sites", log)

    def test_good_configuration_counts_maps(self):
        srv = self.server({"client_restrictions": "check_client_access cidr:c.cidr",
                           "sender_restrictions": "check_sender_access file:s, "
                                                  "check_sender_access file:./s",
                           "helo_restrictions": "check_helo_access regexp:h.re"},
                          maps={"c.cidr": "192.0.2.0/24 OK\n", "s": "a@b.test OK\n",
                                "h.re": "/x/ OK\n"}, start=False)
        rc, out = self.check_config(srv)
        self.assertEqual(rc, 0, out)
        self.assertRegex(out, r": ok \(\d+ users, \d+ aliases, 3 maps\)")
        self.assertIn("client_restrictions = check_client_access cidr:c.cidr", out)

    def test_banner_must_start_with_hostname(self):
        srv = self.server({"smtpd_banner": "ESMTP $hostname"}, start=False)
        rc, out = self.check_config(srv)
        self.assertEqual(rc, 1, out)
        self.assertIn("smtpd_banner: must start with $hostname", out)


if __name__ == "__main__":
    unittest.main()

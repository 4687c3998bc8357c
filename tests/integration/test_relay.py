"""
test_relay.py - postern must not be an open relay (RFC 2505, RFC 5321
section 3.6). A client outside mynetworks tries the classic relay tricks
(percent hack, bang paths, quoted local parts, source routes, address
literals, trailing dots, look-alike domains, null and local senders,
BDAT, PIPELINING, RSET, STARTTLS): each recipient must be refused with a
5xx at RCPT and nothing may be queued for a remote domain. Legitimate
recipients (local users, aliases, relay_domains, clients in mynetworks)
are accepted.
"""
import re
import unittest

from harness import (PosternTestCase, SmtpConn, make_message, queue_id_of, raw_send,
                     smtplib_send)

RELAY_CONFIG = {
    "mynetworks": "10.99.0.0/16",  # 127.0.0.1 is outside
    "relay_domains": "relay.test",
    "error_limit": "50",
}
USERS = ["alice", "bob", "admin"]
ALIASES = {"postmaster": ["admin"], "team": ["alice", "bob"]}
LOCAL_DOMAINS = ("example.test",)
RELAY_DOMAINS = ("relay.test",)

# (name, RCPT path as sent, allowed reply codes). 554 must carry 5.7.1,
# 550 must carry 5.1.1 (only for plain unknown local users), 501 is a
# syntax error (acceptable where the address is not valid RFC 5321).
RELAY_CASES = [
    ("plain_remote", "<user@remote.test>", {554}),
    ("uppercase_remote", "<USER@REMOTE.TEST>", {554}),
    ("percent_hack", "<user%remote.test@example.test>", {554}),
    ("percent_hack_uppercase", "<USER%REMOTE.TEST@EXAMPLE.TEST>", {554}),
    ("percent_hack_double", "<user%remote.test%example.test@example.test>", {554}),
    ("percent_hack_existing_user", "<alice%remote.test@example.test>", {554}),
    ("percent_hack_local_domain", "<alice%example.test@example.test>", {554}),
    ("percent_no_domain", "<user%remote.test>", {501, 554}),
    ("quoted_at", '<"user@remote.test"@example.test>', {554}),
    ("quoted_percent", '<"user%remote.test"@example.test>', {554}),
    ("quoted_bang", '<"remote.test!user"@example.test>', {554}),
    ("quoted_escaped_at", '<"user\\@remote.test"@example.test>', {554}),
    ("quoted_colon", '<"user:remote.test"@example.test>', {554}),
    ("quoted_no_domain", '<"user@remote.test">', {501, 554}),
    ("quoted_bang_no_domain", '<"remote.test!user">', {501, 554}),
    ("bang_path", "<remote.test!user@example.test>", {554}),
    ("bang_path_two_hops", "<other.test!remote.test!user@example.test>", {554}),
    ("bang_no_domain", "<remote.test!user>", {501, 554}),
    ("double_at", "<user@remote.test@example.test>", {501, 554}),
    ("double_at_reverse", "<user@example.test@remote.test>", {501, 554}),
    ("escaped_at_unquoted", "<user\\@remote.test@example.test>", {501, 554}),
    ("source_route", "<@example.test:user@remote.test>", {554}),
    ("source_route_two_hops", "<@example.test,@other.test:user@remote.test>", {554}),
    ("source_route_via_literal", "<@[127.0.0.1]:user@remote.test>", {501, 554}),
    ("source_route_to_unknown_local", "<@remote.test:nosuch@example.test>", {550}),
    ("ipv4_literal", "<user@[127.0.0.1]>", {554}),
    ("ipv4_literal_in_mynetworks_range", "<user@[10.99.0.1]>", {554}),
    ("ipv6_literal", "<user@[IPv6:::1]>", {554}),
    ("existing_user_at_literal", "<alice@[127.0.0.1]>", {554}),
    ("double_at_literal", "<user@remote.test@[127.0.0.1]>", {501, 554}),
    ("quoted_at_literal", '<"user@remote.test"@[127.0.0.1]>', {554}),
    ("percent_literal", "<user%remote.test@[127.0.0.1]>", {554}),
    ("bang_literal", "<remote.test!user@[127.0.0.1]>", {554}),
    ("trailing_dot", "<user@remote.test.>", {501, 554}),
    ("local_trailing_dot", "<alice@example.test.>", {501, 554}),
    ("local_domain_as_prefix", "<user@EXAMPLE.TEST.remote.test>", {554}),
    ("local_domain_as_suffix", "<user@notexample.test>", {554}),
    ("subdomain_of_local", "<alice@sub.example.test>", {554}),
    ("subdomain_of_relay_domain", "<user@sub.relay.test>", {554}),
    ("localhost", "<user@localhost>", {554}),
    ("percent_to_relay_domain", "<user%remote.test@relay.test>", {554}),
    ("bang_to_relay_domain", "<remote.test!user@relay.test>", {554}),
    ("quoted_to_relay_domain", '<"user@remote.test"@relay.test>', {554}),
    ("unknown_local_user", "<nosuch@example.test>", {550}),
    ("null_recipient", "<>", {501}),
    ("bare_address", "user@remote.test", {501}),
]

# (name, MAIL FROM path, HELO, RCPT path, allowed codes)
SENDER_CASES = [
    ("null_sender_to_remote", "", "client.test", "<user@remote.test>", {554}),
    ("local_sender_to_remote", "alice@example.test", "client.test", "<user@remote.test>", {554}),
    ("postmaster_sender_to_remote", "postmaster@example.test", "client.test",
     "<user@remote.test>", {554}),
    ("local_helo_to_remote", "x@remote.test", "mx.example.test", "<user@remote.test>", {554}),
    ("localhost_helo_to_remote", "x@remote.test", "localhost", "<user@remote.test>", {554}),
    ("literal_helo_to_remote", "x@remote.test", "[127.0.0.1]", "<user@remote.test>", {554}),
    ("mynetworks_literal_helo", "x@remote.test", "[10.99.0.1]", "<user@remote.test>", {554}),
]


def _accepted_recipients(log):
    return re.findall(r"[0-9A-F]{19}: to=<([^>]*)> status=accepted", log)


def _is_allowed_destination(addr):
    domain = addr.rsplit("@", 1)[-1].lower() if "@" in addr else ""
    return domain in LOCAL_DOMAINS or domain in RELAY_DOMAINS


class RelayDeniedTest(PosternTestCase):
    """Client 127.0.0.1 is not in mynetworks: no relaying, whatever the trick."""

    @classmethod
    def setUpClass(cls):
        cls.srv = cls.start_class_server(tls=True, config=RELAY_CONFIG, users=USERS,
                                         aliases=ALIASES)

    def tearDown(self):
        try:
            self.assert_nothing_queued_for_remote()
        finally:
            super().tearDown()

    def assert_nothing_queued_for_remote(self):
        bad = [a for a in _accepted_recipients(self.srv.log()) if not _is_allowed_destination(a)]
        self.assertEqual(bad, [], "recipients outside the local/relay domains were accepted")
        self.assertEqual(self.srv.spool_files("deferred"), [], "something was deferred")

    def conn(self, helo="client.test"):
        c = SmtpConn(self.srv.port)
        self.addCleanup(c.close)
        c.ehlo(helo)
        return c

    def check_refused(self, r, allowed, rcpt):
        self.assertIn(r.code, allowed, "RCPT TO:%s got %r" % (rcpt, r))
        if r.code == 554:
            self.assertEqual(r.status, "5.7.1", r)
            self.assertIn("Relay access denied", r.text)
        elif r.code == 550:
            self.assertEqual(r.status, "5.1.1", r)

    def attempt(self, sender, rcpt, allowed, helo="client.test", mail_params=""):
        c = self.conn(helo)
        r = c.cmd("MAIL FROM:<%s>%s" % (sender, (" " + mail_params) if mail_params else ""))
        self.assertReply(r, 250)
        r = c.cmd("RCPT TO:%s" % rcpt)
        self.check_refused(r, allowed, rcpt)
        r = c.cmd("DATA")
        self.assertIn(r.code, (503, 554), "DATA without valid recipients got %r" % r)
        if r.code == 354:  # only when the server is wrong: finish cleanly
            c.send(b"Subject: relayed\r\n\r\nx\r\n.\r\n")
            c.reply()
        return c

    # -- special flows --

    def test_refused_relay_is_logged(self):
        c = self.conn()
        self.assertReply(c.cmd("MAIL FROM:<spammer@remote.test>"), 250)
        self.assertReply(c.cmd("RCPT TO:<victim@remote.test>"), 554, "5.7.1")
        self.srv.wait_log(r"[0-9A-F]{19}: reject: RCPT client=127\.0\.0\.1 from=<spammer@remote.test> "
                          r"to=<victim@remote.test> code=554 5\.7\.1 reason=relay_denied")

    def test_utf8_remote_recipient(self):
        self.attempt("x@remote.test", "<\u7528\u6237@remote.test>", {554},
                     mail_params="SMTPUTF8")

    def test_utf8_domain_lookalike(self):
        self.attempt("x@remote.test", "<alice@\u00e9xample.test>", {554},
                     mail_params="SMTPUTF8")

    def test_relay_via_bdat(self):
        c = self.conn()
        self.assertReply(c.cmd("MAIL FROM:<x@remote.test>"), 250)
        self.assertReply(c.cmd("RCPT TO:<user@remote.test>"), 554, "5.7.1")
        chunk = b"Subject: relayed by BDAT\r\n\r\nbody\r\n"
        c.send(b"BDAT %d LAST\r\n" % len(chunk) + chunk)
        r = c.reply()
        self.assertIn(r.code, (503, 554), r)
        self.assertReply(c.cmd("NOOP"), 250)

    def test_relay_with_pipelining(self):
        c = self.conn()
        c.send(b"MAIL FROM:<x@remote.test>\r\n"
               b"RCPT TO:<user@remote.test>\r\n"
               b"RCPT TO:<user%remote.test@example.test>\r\n"
               b"RCPT TO:<\"user@remote.test\"@example.test>\r\n"
               b"RCPT TO:<@example.test:user@remote.test>\r\n"
               b"DATA\r\n")
        r = c.replies(6)
        self.assertEqual([x.code for x in r[:5]], [250, 554, 554, 554, 554], r)
        self.assertIn(r[5].code, (503, 554), r)
        self.assertEqual(c.pending(0.3), b"")

    def test_relay_after_rset(self):
        c = self.conn()
        self.assertReply(c.cmd("MAIL FROM:<x@remote.test>"), 250)
        self.assertReply(c.cmd("RCPT TO:<alice@example.test>"), 250)
        self.assertReply(c.cmd("RSET"), 250)
        self.assertReply(c.cmd("MAIL FROM:<x@remote.test>"), 250)
        self.assertReply(c.cmd("RCPT TO:<user@remote.test>"), 554, "5.7.1")
        r = c.cmd("DATA")
        self.assertIn(r.code, (503, 554), r)

    def test_relay_after_accepted_message(self):
        c = self.conn()
        r = raw_send(c, "x@remote.test", ["alice@example.test"],
                     b"Subject: first\r\n\r\nfirst\r\n.\r\n")
        self.assertReply(r, 250)
        self.assertReply(c.cmd("MAIL FROM:<x@remote.test>"), 250)
        self.assertReply(c.cmd("RCPT TO:<user@remote.test>"), 554, "5.7.1")

    def test_relay_after_starttls(self):
        c = self.conn()
        c.starttls()
        c.ehlo()
        self.assertReply(c.cmd("MAIL FROM:<x@remote.test>"), 250)
        self.assertReply(c.cmd("RCPT TO:<user@remote.test>"), 554, "5.7.1")
        self.assertReply(c.cmd("RCPT TO:<user%remote.test@example.test>"), 554, "5.7.1")

    def test_mixed_local_and_remote_recipients(self):
        c = self.conn()
        self.assertReply(c.cmd("MAIL FROM:<x@remote.test>"), 250)
        self.assertReply(c.cmd("RCPT TO:<user@remote.test>"), 554, "5.7.1")
        self.assertReply(c.cmd("RCPT TO:<bob@example.test>"), 250)
        self.assertReply(c.cmd("RCPT TO:<bob%remote.test@example.test>"), 554, "5.7.1")
        self.assertReply(c.cmd("DATA"), 354)
        qid = self.send_data_queued(c, b"Subject: mixed\r\n\r\nonly bob\r\n.\r\n")
        self.srv.wait_delivery("bob", qid)
        self.srv.wait_log(r"%s: removed" % qid)
        self.assertRegex(self.srv.log(), r"%s: accepted .*nrcpt=1 " % qid)

    # -- legitimate recipients on the same server --

    def test_legit_local_user(self):
        qid = smtplib_send(self.srv.port, "x@remote.test", ["alice@example.test"],
                           make_message("legit local"))
        self.srv.wait_delivery("alice", qid)

    def test_legit_alias_and_bare_postmaster(self):
        c = self.conn()
        self.assertReply(c.cmd("MAIL FROM:<x@remote.test>"), 250)
        self.assertReply(c.cmd("RCPT TO:<postmaster>"), 250, "2.1.5")
        self.assertReply(c.cmd("RCPT TO:<Postmaster@Example.Test>"), 250)
        self.assertReply(c.cmd("RCPT TO:<team@example.test>"), 250)
        self.assertReply(c.cmd("DATA"), 354)
        qid = self.send_data_queued(c, b"Subject: to postmaster\r\n\r\nhi\r\n.\r\n")
        for u in ("admin", "alice", "bob"):
            self.srv.wait_delivery(u, qid)
        self.srv.wait_log(r"%s: removed" % qid)
        self.assertEqual(len(self.srv.files_for("admin", qid)), 1)

    def test_legit_quoted_and_source_routed_local(self):
        c = self.conn()
        self.assertReply(c.cmd("MAIL FROM:<x@remote.test>"), 250)
        self.assertReply(c.cmd('RCPT TO:<"alice"@example.test>'), 250)
        self.assertReply(c.cmd("RCPT TO:<@remote.test:bob@example.test>"), 250)
        self.assertReply(c.cmd("RCPT TO:<ALICE@EXAMPLE.TEST>"), 250)
        self.assertReply(c.cmd("DATA"), 354)
        qid = self.send_data_queued(c, b"Subject: quoted\r\n\r\nhi\r\n.\r\n")
        self.srv.wait_delivery("alice", qid)
        self.srv.wait_delivery("bob", qid)


def _make_rcpt_test(rcpt, allowed):
    def test(self):
        self.attempt("relaytester@remote.test", rcpt, allowed)
    test.__doc__ = "RCPT TO:%s -> %s" % (rcpt, "/".join(str(c) for c in sorted(allowed)))
    return test


def _make_sender_test(sender, helo, rcpt, allowed):
    def test(self):
        self.attempt(sender, rcpt, allowed, helo=helo)
    test.__doc__ = "MAIL FROM:<%s> (HELO %s) RCPT TO:%s -> %s" % (
        sender, helo, rcpt, "/".join(str(c) for c in sorted(allowed)))
    return test


for _i, (_name, _rcpt, _allowed) in enumerate(RELAY_CASES):
    setattr(RelayDeniedTest, "test_rcpt_%02d_%s" % (_i, _name), _make_rcpt_test(_rcpt, _allowed))
for _i, (_name, _sender, _helo, _rcpt, _allowed) in enumerate(SENDER_CASES):
    setattr(RelayDeniedTest, "test_sender_%02d_%s" % (_i, _name),
            _make_sender_test(_sender, _helo, _rcpt, _allowed))


class RelayDomainTest(PosternTestCase):
    """relay_domains are accepted from anyone (and queued for relaying)."""

    def test_relay_domain_accepted_and_deferred(self):
        srv = self.start_server(config=RELAY_CONFIG, users=USERS, aliases=ALIASES)
        qid = smtplib_send(srv.port, "x@remote.test", ["someone@relay.test",
                                                       "Other@RELAY.TEST"],
                           make_message("to relay domain"))
        srv.wait_log(r"%s: to=<someone@relay.test> .*status=deferred" % qid)
        self.assertIn(qid, srv.spool_files("deferred"))
        self.assertEqual(srv.all_maildir_files(), {})


class MynetworksTest(PosternTestCase):
    """A client inside mynetworks may relay to any domain."""

    def test_mynetworks_client_may_relay(self):
        srv = self.start_server(users=USERS, aliases=ALIASES)  # default mynetworks
        c = SmtpConn(srv.port)
        self.addCleanup(c.close)
        c.ehlo()
        self.assertReply(c.cmd("MAIL FROM:<alice@example.test>"), 250)
        self.assertReply(c.cmd("RCPT TO:<user@remote.test>"), 250, "2.1.5")
        self.assertReply(c.cmd("RCPT TO:<other@another.test>"), 250)
        self.assertReply(c.cmd("RCPT TO:<alice@example.test>"), 250)
        # Unknown local users stay unknown even for trusted clients.
        self.assertReply(c.cmd("RCPT TO:<nosuch@example.test>"), 550, "5.1.1")
        self.assertReply(c.cmd("DATA"), 354)
        qid = self.send_data_queued(c, b"Subject: outbound\r\n\r\nfrom the inside\r\n.\r\n")
        srv.wait_delivery("alice", qid)
        srv.wait_log(r"%s: to=<user@remote.test> .*status=deferred \(4\.4\.1" % qid)
        self.assertIn(qid, srv.spool_files("deferred"))


if __name__ == "__main__":
    unittest.main()

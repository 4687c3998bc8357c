"""
test_dns_restrictions.py - the restrictions that ask DNS, in restriction
lists, against the real server with dns_servers pointing at private
unbound servers (unbound_peer.py), over smtplib in clear text and after
STARTTLS: reject_rbl_client and reject_rhsbl_sender (554 5.7.1 with the
list's reason), reject_unknown_client (450 4.7.25 without a forward-
confirmed reverse name, nothing with one), reject_unknown_sender_domain
and reject_unknown_recipient_domain (550 5.1.8 / 5.1.2 for a domain that
cannot receive mail, 550 5.7.27 / 556 5.1.10 for a null MX, 450 when DNS
fails), warn_if_reject in front of one, a dead DNS server (temporary
answers at once, never a stalled session), and check-config's FILE:LINE
report of a bad dns_servers when only a restriction asks DNS.

The client is 127.0.0.1, outside mynetworks (10.99.0.0/16) unless a test
says otherwise. Two unbound servers: "named" gives 127.0.0.1 a reverse
name that resolves back; "nameless" gives it none.
"""
import smtplib
import time

from harness import PosternTestCase, client_tls_context, make_message, queue_id_of, scaled
from unbound_peer import UnboundPeer, dead_port

TXT_REASON = "Listed for testing"


def serve_zones(u, ptr):
    u.zone("bl.test")
    u.listing("bl.test", "127.0.0.1", "127.0.0.2", txt=TXT_REASON)
    u.zone("clean.test")
    u.zone("dbl.test")
    u.record("spammer.example.dbl.test 300 IN A 127.0.1.2")
    u.zone("mail.test")
    u.record("mx.mail.test 300 IN MX 10 in.mail.test.")
    u.record("in.mail.test 300 IN A 192.0.2.20")
    u.record("nullmx.mail.test 300 IN MX 0 .")
    u.refuse("refuse.test")
    # more specific than unbound's own 127.in-addr.arpa (PTR localhost)
    u.zone("1.0.0.127.in-addr.arpa")
    if ptr:
        u.record("1.0.0.127.in-addr.arpa 300 IN PTR client.fc.test.")
        u.zone("fc.test")
        u.record("client.fc.test 300 IN A 127.0.0.1")
    return u.start()


class DnsRestrictionsTest(PosternTestCase):

    @classmethod
    def setUpClass(cls):
        cls.named = serve_zones(UnboundPeer(), ptr=True)
        cls.nameless = serve_zones(UnboundPeer(), ptr=False)

    @classmethod
    def tearDownClass(cls):
        cls.named.stop()
        cls.nameless.stop()

    def start(self, dns=None, tls=False, **config):
        settings = {"dns_servers": (dns or self.named).server, "mynetworks": "10.99.0.0/16",
                    "workers": "1"}
        settings.update(config)
        return self.start_server(config=settings, tls=tls)

    def dialogue(self, srv, sender="sender@mx.mail.test", rcpts=("alice@example.test",),
                 tls=False):
        """(MAIL reply, [RCPT replies], queue id or None)."""
        with smtplib.SMTP("127.0.0.1", srv.port, local_hostname="client.fc.test",
                          timeout=scaled(20)) as s:
            s.ehlo()
            if tls:
                self.assertEqual(s.starttls(context=client_tls_context())[0], 220)
                s.ehlo()
            mail = s.mail(sender)
            replies = [s.rcpt(r) for r in rcpts] if mail[0] == 250 else []
            qid = None
            if any(code == 250 for code, _ in replies):
                code, text = s.data(make_message(to=rcpts[0]).encode())
                self.assertEqual(code, 250, text)
                qid = queue_id_of(text.decode())
            else:
                s.rset()
        return mail, replies, qid

    def assertReplies(self, replies, want):
        """want: [(code, "x.y.z text start")] in order."""
        got = [(code, text.decode("utf-8", "replace")) for code, text in replies]
        self.assertEqual(len(got), len(want), got)
        for (code, text), (wcode, wtext) in zip(got, want):
            self.assertEqual(code, wcode, text)
            self.assertTrue(text.startswith(wtext), "%r does not start with %r" % (text, wtext))

    # -- the lists --

    def test_rbl_client_refuses_a_listed_client_with_the_lists_reason(self):
        srv = self.start(tls=True, recipient_restrictions="reject_rbl_client bl.test, "
                                                          "permit_mynetworks, "
                                                          "reject_unauth_destination")
        for tls in (False, True):
            _, replies, qid = self.dialogue(srv, tls=tls)
            self.assertReplies(replies, [(554, "5.7.1 Client host [127.0.0.1] is listed by "
                                               "bl.test: " + TXT_REASON)])
            self.assertIsNone(qid)
        srv.wait_log(r"reject: RCPT client=127\.0\.0\.1 .*code=554 5\.7\.1 reason=rbl.*"
                     r"restriction=reject_rbl_client")
        self.assertEqual(srv.maildir_new("alice"), [])

    def test_rbl_client_lets_an_unlisted_client_through(self):
        srv = self.start(client_restrictions="reject_rbl_client clean.test, "
                                             "reject_rbl_client bl.test=127.0.0.9")
        _, replies, qid = self.dialogue(srv)
        self.assertEqual([code for code, _ in replies], [250])
        srv.wait_delivery("alice", qid)

    def test_rhsbl_sender(self):
        srv = self.start(sender_restrictions="reject_rhsbl_sender dbl.test")
        _, replies, _ = self.dialogue(srv, sender="promo@spammer.example")
        self.assertReplies(replies, [(554, "5.7.1 Sender domain [spammer.example] is listed "
                                           "by dbl.test")])
        _, replies, qid = self.dialogue(srv, sender="")
        self.assertEqual([code for code, _ in replies], [250])  # the null sender: no domain
        srv.wait_delivery("alice", qid)

    def test_warn_if_reject_logs_and_accepts(self):
        srv = self.start(client_restrictions="warn_if_reject, reject_rbl_client bl.test")
        _, replies, qid = self.dialogue(srv)
        self.assertEqual([code for code, _ in replies], [250])
        srv.wait_delivery("alice", qid)
        srv.wait_log(r"reject_warning.*restriction=reject_rbl_client")

    # -- the client's name --

    def test_unknown_client_without_a_reverse_name_is_deferred(self):
        srv = self.start(dns=self.nameless, tls=True,
                         client_restrictions="reject_unknown_client")
        _, replies, qid = self.dialogue(srv, tls=True)
        self.assertReplies(replies, [(450, "4.7.25 Client host rejected: cannot find your "
                                           "hostname, [127.0.0.1]")])
        self.assertIsNone(qid)
        srv.wait_log(r"restriction=reject_unknown_client.*fcrdns=no_ptr")

    def test_unknown_client_with_a_confirmed_name_passes(self):
        srv = self.start(dns=self.named, client_restrictions="reject_unknown_client_hostname")
        _, replies, qid = self.dialogue(srv)
        self.assertEqual([code for code, _ in replies], [250])
        srv.wait_delivery("alice", qid)

    # -- the domains --

    def test_unknown_sender_domain(self):
        srv = self.start(tls=True, sender_restrictions="reject_unknown_sender_domain")
        cases = [("a@absent.mail.test", 550, "5.1.8 <a@absent.mail.test>: Sender address "
                                              "rejected: Domain not found"),
                 ("a@nullmx.mail.test", 550, "5.7.27 <a@nullmx.mail.test>: Sender address "
                                              "rejected: Domain does not accept mail"),
                 ("a@x.refuse.test", 450, "4.1.8 <a@x.refuse.test>: Sender address rejected: "
                                          "Domain not found (DNS lookup failed")]
        for sender, code, text in cases:
            _, replies, _ = self.dialogue(srv, sender=sender, tls=True)
            self.assertReplies(replies, [(code, text)])
        _, replies, qid = self.dialogue(srv, sender="a@mx.mail.test", tls=True)
        self.assertEqual([code for code, _ in replies], [250])
        srv.wait_delivery("alice", qid)

    def test_unknown_recipient_domain_not_for_local_domains(self):
        srv = self.start(mynetworks="127.0.0.0/8",
                         recipient_restrictions="reject_unknown_recipient_domain, "
                                                "permit_mynetworks, reject_unauth_destination")
        _, replies, _ = self.dialogue(srv, rcpts=("bob@absent.mail.test", "bob@nullmx.mail.test",
                                                  "bob@x.refuse.test", "alice@example.test",
                                                  "bob@mx.mail.test"))
        self.assertReplies(replies, [
            (550, "5.1.2 <bob@absent.mail.test>: Recipient address rejected: Domain not found"),
            (556, "5.1.10 <bob@nullmx.mail.test>: Recipient address rejected: Domain does "
                  "not accept mail"),
            (450, "4.1.2 <bob@x.refuse.test>: Recipient address rejected"),
            (250, ""),  # ours: not asked
            (250, ""),  # relayed for mynetworks: its domain takes mail
        ])

    # -- DNS failing --

    def test_dead_dns_server_answers_at_once(self):
        srv = self.start(dns=None, dns_servers="127.0.0.1:%d" % dead_port(),
                         sender_restrictions="reject_unknown_sender_domain",
                         client_restrictions="reject_rbl_client bl.test")
        start = time.monotonic()
        _, replies, _ = self.dialogue(srv, sender="a@mx.mail.test")
        self.assertLess(time.monotonic() - start, scaled(5))
        # the list lists nobody; the domain cannot be told: try again later
        self.assertReplies(replies, [(450, "4.1.8 <a@mx.mail.test>: Sender address rejected: "
                                           "Domain not found (DNS lookup failed")])

    def test_check_config_checks_dns_servers_for_a_restriction(self):
        srv = self.start_server(start=False, config={
            "dns_servers": "not-an-address",
            "client_restrictions": "reject_unknown_client"})
        p = srv.run_cli("check-config")
        out = p.stdout.decode() + p.stderr.decode()
        self.assertEqual(p.returncode, 1, out)
        self.assertRegex(out, r"postern\.conf:\d+: dns_servers")

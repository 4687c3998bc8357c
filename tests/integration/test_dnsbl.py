"""
test_dnsbl.py - DNS blocklists end to end: the real server with
dns_servers pointing at a private unbound (unbound_peer.py) that lists
the test client 127.0.0.1 (and ::1) under test zones; Python's smtplib
as the client, plain and with STARTTLS.

A listed client gets its 220 banner and a 554 5.7.1 (451 4.7.1 in
temporary mode) at every RCPT, naming its address, the list and the
list's TXT reason; an unlisted one delivers. Weights against
dnsbl_threshold, an allow-list's negative weight, answer filters, warn
mode, the reply template, RHSBL for the sender's domain at MAIL. A dead
DNS server and a list that never answers do not stall the session (it
goes on within dnsbl_timeout, and the log says which lists did not
answer), unless dnsbl_fail_open = no. The worker's cache: a second
connection asks unbound nothing. Clients in mynetworks are never looked
up. check-config names FILE:LINE of a bad list.
"""
import smtplib
import socket
import time
import unittest

from harness import (PosternTestCase, SmtpConn, client_tls_context, have_ipv6_loopback,
                     make_message, queue_id_of, scaled)
from unbound_peer import UnboundPeer, dead_port, reversed_name

TXT_REASON = "Listed for testing, see http://bl.test/lookup?127.0.0.1"


class DnsblTest(PosternTestCase):

    @classmethod
    def setUpClass(cls):
        u = UnboundPeer()
        for zone in ("bl.test", "other.test", "clean.test", "wl.test", "dbl.test"):
            u.zone(zone)
        for addr in ("127.0.0.1", "::1"):
            u.listing("bl.test", addr, "127.0.0.2", txt=TXT_REASON)
            u.listing("other.test", addr, "127.0.0.3")
            u.listing("wl.test", addr, "127.0.0.5")
        u.record("spammer.example.dbl.test 300 IN A 127.0.1.2")
        u.txt("spammer.example.dbl.test", "Domain used in spam")
        u.drop("drop.test")
        u.refuse("refuse.test")
        cls.unbound = u.start()

    @classmethod
    def tearDownClass(cls):
        cls.unbound.stop()

    def start_dnsbl(self, sites="bl.test", tls=False, ipv6=False, **config):
        settings = {
            "dns_servers": self.unbound.server,
            "mynetworks": "10.99.0.0/16",  # the test client 127.0.0.1 is outside
            "dnsbl_sites": sites,
            "workers": "1",                 # one worker: one cache
        }
        settings.update(config)
        return self.start_server(config=settings, tls=tls, ipv6=ipv6)

    def dialogue(self, srv, sender="sender@remote.test", rcpts=("alice@example.test",),
                 tls=False, host="127.0.0.1", port=None):
        """EHLO (STARTTLS), MAIL, RCPT each, DATA when a recipient was
        accepted. Returns (banner code, MAIL reply, [RCPT replies],
        queue id or None)."""
        # smtplib.SMTP raises SMTPConnectError unless the banner is a 220.
        with smtplib.SMTP(host, port or srv.port, local_hostname="client.test",
                          timeout=scaled(20)) as s:
            banner = 220
            s.ehlo()
            if tls:
                code, _ = s.starttls(context=client_tls_context())
                self.assertEqual(code, 220)
                s.ehlo()
            mail = s.mail(sender)
            rcpt_replies = [s.rcpt(r) for r in rcpts] if mail[0] == 250 else []
            qid = None
            if any(code == 250 for code, _ in rcpt_replies):
                code, text = s.data(make_message(to=rcpts[0]).encode())
                self.assertEqual(code, 250, text)
                qid = queue_id_of(text.decode())
            else:
                s.rset()
            s.quit()
        return banner, mail, rcpt_replies, qid

    def assertRefused(self, replies, code, status, text_pattern):
        self.assertTrue(replies, "no RCPT was answered")
        for got_code, text in replies:
            text = text.decode("utf-8", "replace")
            self.assertEqual(got_code, code, text)
            self.assertTrue(text.startswith(status), text)
            self.assertRegex(text, text_pattern)

    # -- listed, unlisted --

    def test_listed_client_gets_its_banner_and_554_at_every_rcpt(self):
        srv = self.start_dnsbl()
        with SmtpConn(srv.port) as c:
            self.assertEqual(c.greeting.code, 220)
            c.ehlo()
            self.assertReply(c.cmd("MAIL FROM:<sender@remote.test>"), 250)
            for rcpt in ("alice@example.test", "bob@example.test"):
                r = c.cmd("RCPT TO:<%s>" % rcpt)
                self.assertReply(r, 554, "5.7.1")
                self.assertEqual(r.text, "5.7.1 Client host [127.0.0.1] is listed by bl.test: "
                                 + TXT_REASON)
            self.assertEqual(c.cmd("DATA").code // 100, 5)
            self.assertReply(c.cmd("QUIT"), 221)
        log = srv.wait_log(r"dnsbl: 127\.0\.0\.1 listed score=1 threshold=1 action=reject: "
                           r"bl\.test\(127\.0\.0\.2\)\*1")
        self.assertTrue(log)
        srv.wait_log(r"reject: RCPT client=127\.0\.0\.1 from=<sender@remote\.test> "
                     r"to=<bob@example\.test> code=554 5\.7\.1 reason=dnsbl")
        self.assertEqual(srv.maildir_new("alice"), [])

    def test_listed_client_refused_over_starttls(self):
        srv = self.start_dnsbl(tls=True)
        _, mail, rcpts, qid = self.dialogue(srv, tls=True)
        self.assertEqual(mail[0], 250)
        self.assertRefused(rcpts, 554, "5.7.1", r"\[127\.0\.0\.1\] is listed by bl\.test")
        self.assertIsNone(qid)

    def test_unlisted_client_delivers(self):
        srv = self.start_dnsbl(sites="clean.test", tls=True)
        for tls in (False, True):
            banner, _, rcpts, qid = self.dialogue(srv, tls=tls)
            self.assertEqual(banner, 220)
            self.assertEqual([code for code, _ in rcpts], [250])
            srv.wait_delivery("alice", qid)

    def test_client_in_mynetworks_is_not_looked_up(self):
        before = len(self.unbound.queries("1.0.0.127.other.test"))
        srv = self.start_dnsbl(sites="other.test", mynetworks="127.0.0.0/8")
        _, _, rcpts, qid = self.dialogue(srv)
        self.assertEqual([code for code, _ in rcpts], [250])
        srv.wait_delivery("alice", qid)
        self.assertEqual(len(self.unbound.queries("1.0.0.127.other.test")), before)

    @unittest.skipUnless(have_ipv6_loopback(), "no IPv6 loopback")
    def test_ipv6_client_is_looked_up_by_nibbles(self):
        srv = self.start_dnsbl(ipv6=True)
        _, _, rcpts, _ = self.dialogue(srv, host="::1", port=srv.port6)
        self.assertRefused(rcpts, 554, "5.7.1", r"Client host \[::1\] is listed by bl\.test")
        name = reversed_name("::1", "bl.test")
        self.assertEqual(len(name.split(".")), 32 + 2)
        self.assertGreaterEqual(len(self.unbound.queries(name, "A")), 1)

    # -- weights, allow-lists, filters --

    def test_weights_add_up_to_the_threshold(self):
        srv = self.start_dnsbl(sites="bl.test, clean.test*5", dnsbl_threshold="2")
        _, _, rcpts, qid = self.dialogue(srv)
        self.assertEqual([code for code, _ in rcpts], [250])
        srv.wait_delivery("alice", qid)
        srv.wait_log(r"dnsbl: 127\.0\.0\.1 score=1 threshold=2: bl\.test\(127\.0\.0\.2\)\*1 "
                     r"\(passed\)")

        srv2 = self.start_dnsbl(sites="bl.test, other.test", dnsbl_threshold="2")
        _, _, rcpts, _ = self.dialogue(srv2)
        # Both list the client; the reply names the first of the heaviest.
        self.assertRefused(rcpts, 554, "5.7.1", r"listed by bl\.test")
        srv2.wait_log(r"listed score=2 threshold=2 action=reject: bl\.test\(127\.0\.0\.2\)\*1 "
                      r"other\.test\(127\.0\.0\.3\)\*1")

        srv3 = self.start_dnsbl(sites="bl.test*1, other.test*3", dnsbl_threshold="3")
        _, _, rcpts, _ = self.dialogue(srv3)
        self.assertRefused(rcpts, 554, "5.7.1", r"listed by other\.test$")

    def test_allow_list_outweighs_a_listing(self):
        srv = self.start_dnsbl(sites="bl.test*2, wl.test=127.0.0.5*-5")
        _, _, rcpts, qid = self.dialogue(srv)
        self.assertEqual([code for code, _ in rcpts], [250])
        srv.wait_delivery("alice", qid)
        srv.wait_log(r"score=-3 threshold=1: bl\.test\(127\.0\.0\.2\)\*2 "
                     r"wl\.test\(127\.0\.0\.5\)\*-5 \(passed\)")

    def test_answer_filters(self):
        srv = self.start_dnsbl(sites="other.test=127.0.0.2")  # it answers 127.0.0.3
        _, _, rcpts, qid = self.dialogue(srv)
        self.assertEqual([code for code, _ in rcpts], [250])
        srv.wait_delivery("alice", qid)

        srv2 = self.start_dnsbl(sites="other.test=127.0.0.[2..3]")
        _, _, rcpts, _ = self.dialogue(srv2)
        # No TXT record: the reply has no reason after the list.
        self.assertRefused(rcpts, 554, "5.7.1",
                           r"^5\.7\.1 Client host \[127\.0\.0\.1\] is listed by other\.test$")

    # -- what a listing does --

    def test_temporary_mode_answers_451(self):
        srv = self.start_dnsbl(dnsbl_action="tempfail")
        _, mail, rcpts, _ = self.dialogue(srv, rcpts=("alice@example.test", "bob@example.test"))
        self.assertEqual(mail[0], 250)
        self.assertRefused(rcpts, 451, "4.7.1", r"listed by bl\.test: Listed for testing")

    def test_warn_mode_only_logs(self):
        srv = self.start_dnsbl(dnsbl_action="warn")
        _, _, rcpts, qid = self.dialogue(srv)
        self.assertEqual([code for code, _ in rcpts], [250])
        srv.wait_delivery("alice", qid)
        srv.wait_log(r"dnsbl: 127\.0\.0\.1 listed score=1 threshold=1 action=warn")

    def test_reply_template(self):
        srv = self.start_dnsbl(
            sites="other.test",
            dnsbl_reply="Go away, $client_address ($rbl_domain said $rbl_answer: "
                        "${rbl_txt:no reason given})")
        _, _, rcpts, _ = self.dialogue(srv)
        self.assertRefused(rcpts, 554, "5.7.1", r"^5\.7\.1 Go away, 127\.0\.0\.1 \(other\.test "
                           r"said 127\.0\.0\.3: no reason given\)$")

    def test_rhsbl_refuses_the_sender_domain_at_mail(self):
        srv = self.start_dnsbl(sites="", rhsbl_sender_sites="dbl.test")
        _, mail, _, _ = self.dialogue(srv, sender="someone@spammer.example")
        self.assertEqual(mail[0], 554)
        self.assertEqual(mail[1].decode(), "5.7.1 Sender domain [spammer.example] is listed by "
                         "dbl.test: Domain used in spam")
        srv.wait_log(r"rhsbl: spammer\.example listed score=1")
        for sender in ("someone@ham.example", ""):
            _, mail, rcpts, qid = self.dialogue(srv, sender=sender)
            self.assertEqual(mail[0], 250)
            srv.wait_delivery("alice", qid)

    # -- the DNS failing --

    def test_dead_dns_server_does_not_stall_the_session(self):
        srv = self.start_dnsbl(dns_servers="127.0.0.1:%d" % dead_port())
        start = time.monotonic()
        with SmtpConn(srv.port) as c:
            self.assertEqual(c.greeting.code, 220)
            self.assertLess(time.monotonic() - start, scaled(2))
        _, _, rcpts, qid = self.dialogue(srv)
        self.assertEqual([code for code, _ in rcpts], [250])
        srv.wait_delivery("alice", qid)
        srv.wait_log(r"dnsbl: 127\.0\.0\.1 score=0 threshold=1: bl\.test\(no answer\) "
                     r"\(passed\)")

    def test_list_that_never_answers_waits_dnsbl_timeout_then_goes_on(self):
        srv = self.start_dnsbl(sites="never.drop.test, clean.test", dnsbl_timeout="1s",
                               dns_timeout="10s")
        start = time.monotonic()
        with SmtpConn(srv.port) as c:
            self.assertEqual(c.greeting.code, 220)
            took = time.monotonic() - start
        self.assertGreaterEqual(took, 0.9)
        self.assertLess(took, scaled(3))
        _, _, rcpts, qid = self.dialogue(srv)
        self.assertEqual([code for code, _ in rcpts], [250])
        srv.wait_delivery("alice", qid)
        srv.wait_log(r"never\.drop\.test\(no answer\) \(passed\)")

    def test_listing_decides_even_when_another_list_fails(self):
        srv = self.start_dnsbl(sites="bl.test, x.refuse.test")
        _, _, rcpts, _ = self.dialogue(srv)
        self.assertRefused(rcpts, 554, "5.7.1", r"listed by bl\.test")

    def test_fail_closed_answers_451(self):
        srv = self.start_dnsbl(sites="x.refuse.test", dnsbl_fail_open="no")
        _, mail, rcpts, _ = self.dialogue(srv)
        self.assertEqual(mail[0], 250)
        self.assertRefused(rcpts, 451, "4.7.1", r"blocklist lookup failed")
        srv.wait_log(r"x\.refuse\.test\(no answer\) \(lists unanswered: tempfail\)")

    def test_client_leaving_during_the_lookup(self):
        srv = self.start_dnsbl(sites="gone.drop.test", dnsbl_timeout="1s", dns_timeout="3s")
        offset = srv.log_size()
        for _ in range(3):
            s = socket.create_connection(("127.0.0.1", srv.port))
            s.close()
        srv.wait_log(r"disconnect client=127\.0\.0\.1", since=offset)
        time.sleep(3.5)  # the lookups' deadlines pass with nobody waiting
        with SmtpConn(srv.port, timeout=scaled(10)) as c:
            self.assertEqual(c.greeting.code, 220)
        self.assertNoPanic(srv)

    # -- the cache --

    def test_second_connection_asks_nothing(self):
        names = [("1.0.0.127.other.test", "A"), ("1.0.0.127.other.test", "TXT"),
                 ("1.0.0.127.clean.test", "A")]

        def asked():
            return [len(self.unbound.queries(n, t)) for n, t in names]
        before = asked()
        srv = self.start_dnsbl(sites="other.test=127.0.0.[2..3], clean.test")
        # The harness's start-up probe connected once: each name asked once.
        after_start = asked()
        self.assertEqual([a - b for a, b in zip(after_start, before)], [1, 1, 1])
        for _ in range(3):
            _, _, rcpts, _ = self.dialogue(srv)
            self.assertRefused(rcpts, 554, "5.7.1", r"listed by other\.test")
        self.assertEqual(asked(), after_start)

    # -- configuration --

    def test_check_config_names_file_and_line_of_a_bad_list(self):
        srv = self.start_server(start=False, config={
            "dnsbl_sites": "bl.test=127.0.0.[2..1]", "dns_servers": self.unbound.server})
        out = srv.run_cli("check-config")
        self.assertEqual(out.returncode, 1)
        err = out.stderr.decode()
        lines = open(srv.conf_path).read().splitlines()
        line = next(i + 1 for i, l in enumerate(lines) if l.startswith("dnsbl_sites"))
        self.assertIn("%s:%d: dnsbl_sites: \"bl.test=127.0.0.[2..1]\": " % (srv.conf_path, line),
                      err)
        rc, log = srv.serve_refused()
        self.assertNotEqual(rc, 0)
        self.assertIn("dnsbl_sites", log)

    def test_check_config_refuses_a_bad_dns_server(self):
        srv = self.start_server(start=False, config={"dns_servers": "127.0.0.1:99999"})
        out = srv.run_cli("check-config")
        self.assertEqual(out.returncode, 1)
        self.assertRegex(out.stderr.decode(), r"postern\.conf:\d+: dns_servers: bad server: "
                         r"\"127\.0\.0\.1:99999\": port must be")


if __name__ == "__main__":
    unittest.main()

"""
test_outbound.py - postern relaying mail onward (issue 10, the outbound
SMTP client): real destinations on loopback — Postfix's smtp-sink, a
second postern, a scripted SMTP peer for per-recipient mixes — and what
an administrator sees: the mail at the destination, the log line per
recipient (relay=host[addr]:port status=sent/deferred/bounced with the
peer's reply), bounces that quote the peer, retries.

Routes: relayhost, transport_file (smtp:[host]:port, discard, error:,
local). Client behaviour: PIPELINING and without, several recipients in
one transaction, per-recipient 250/4xx/5xx, 4xx then success on retry,
connection refused, timeouts, a peer that drops the connection after the
end of data, TLS required but not offered, STARTTLS to a second postern,
long lines folded to 998 octets, 8-bit mail to a peer without 8BITMIME,
connection reuse, kill -9 of the relay agent during a delivery.
"""
import os
import re
import signal
import time

from harness import (PosternTestCase, make_message, scaled, smtplib_send, wait_until)
from sink_peer import ScriptedPeer, SmtpSink, sink_unusable

SENDER = "alice@example.test"   # a local user: bounces land in her Maildir


def status_lines(srv, qid):
    return [l for l in srv.log().splitlines() if ("%s: to=<" % qid) in l]


def wait_status(srv, qid, rcpt, status, timeout=None):
    pat = re.compile(r"%s: to=<%s>.* status=%s \((.*)\)$" % (qid, re.escape(rcpt), status))
    def found():
        for l in srv.log().splitlines():
            m = pat.search(l)
            if m:
                return l
        return None
    try:
        return wait_until(found, timeout or scaled(30),
                          what="%s %s %s" % (qid, rcpt, status))
    except AssertionError as e:
        raise AssertionError("%s; log tail:\n%s" % (e, srv.log_tail(40)))


def bounce_texts(srv, user="alice"):
    out = []
    d = srv.maildir(user)
    for n in srv.maildir_new(user):
        with open(os.path.join(d, n), "rb") as f:
            data = f.read()
        if b"multipart/report" in data:
            out.append(data.decode("utf-8", "replace"))
    return out


class OutboundCase(PosternTestCase):
    def setUp(self):
        super().setUp()
        why = sink_unusable()
        if why:
            self.fail(why)

    def sink(self, *options, port=None, host="127.0.0.1"):
        s = SmtpSink(port=port, host=host, options=options)
        self.addCleanup(s.remove)
        return s.start()

    def peer(self, **kw):
        p = ScriptedPeer(**kw)
        self.addCleanup(p.stop)
        return p

    def relay_server(self, relayhost, tls=False, **config):
        settings = {"relayhost": relayhost, "relay_command_timeout": "10s",
                    "relay_connect_timeout": "5s", "destination_backoff": "0"}
        settings.update(config)
        return self.start_server(config=settings, tls=tls)


class TestRelayhost(OutboundCase):
    def test_two_recipients_one_transaction(self):
        sink = self.sink()
        srv = self.relay_server("[127.0.0.1]:%d" % sink.port)
        qid = smtplib_send(srv.port, SENDER, ["bob@remote.test", "carol@remote.test"],
                           make_message("two", to="bob@remote.test"))
        wait_status(srv, qid, "carol@remote.test", "sent")
        msgs = sink.wait_messages(1)
        self.assertEqual(len(msgs), 1, "one transaction for both recipients")
        text = msgs[0].decode()
        self.assertIn("X-Rcpt-Args: <bob@remote.test>", text)
        self.assertIn("X-Rcpt-Args: <carol@remote.test>", text)
        self.assertIn("X-Mail-Args: <%s>" % SENDER, text)
        self.assertIn("Subject: two", text)
        self.assertIn("by mx.example.test (postern)", text)
        for rcpt in ("bob@remote.test", "carol@remote.test"):
            line = wait_status(srv, qid, rcpt, "sent")
            self.assertIn("relay=[127.0.0.1]:%d" % sink.port, line)
            self.assertIn("250 2.0.0", line)
        srv.wait_log(r"%s: removed" % qid)

    def test_local_and_remote_in_one_message(self):
        sink = self.sink()
        srv = self.relay_server("[127.0.0.1]:%d" % sink.port)
        qid = smtplib_send(srv.port, SENDER, ["bob@example.test", "x@remote.test"],
                           make_message("mixed", to="x@remote.test"))
        srv.wait_delivery("bob", qid)
        sink.wait_messages(1)
        wait_status(srv, qid, "x@remote.test", "sent")
        srv.wait_log(r"%s: removed" % qid)

    def test_without_pipelining_and_esmtp(self):
        for opts in (("-p",), ("-e",)):
            with self.subTest(opts=opts):
                sink = self.sink(*opts)
                srv = self.relay_server("[127.0.0.1]:%d" % sink.port)
                qid = smtplib_send(srv.port, SENDER, ["a@remote.test", "b@remote.test"],
                                   make_message("nopipe"))
                self.assertEqual(len(sink.wait_messages(1)), 1)
                wait_status(srv, qid, "a@remote.test", "sent")
                wait_status(srv, qid, "b@remote.test", "sent")

    def test_connection_reuse(self):
        p = self.peer()
        srv = self.relay_server("[127.0.0.1]:%d" % p.port, destination_concurrency="1")
        qids = [smtplib_send(srv.port, SENDER, ["r%d@remote.test" % i], make_message("m%d" % i))
                for i in range(5)]
        for i, qid in enumerate(qids):
            wait_status(srv, qid, "r%d@remote.test" % i, "sent")
        self.assertEqual(len(p.received), 5)
        # Later messages went on the connection already open (it idles
        # 2 s waiting for more mail to the same destination).
        self.assertLessEqual(p.connections, 2)

    def test_soft_refusal_then_success_on_retry(self):
        sink = self.sink("-r", "RCPT")
        srv = self.relay_server("[127.0.0.1]:%d" % sink.port)
        qid = smtplib_send(srv.port, SENDER, ["later@remote.test"], make_message("retry"))
        line = wait_status(srv, qid, "later@remote.test", "deferred")
        self.assertIn("4.3.0", line)
        self.assertIn("said: 450", line)
        self.assertIn("in reply to RCPT TO", line)
        port = sink.port
        sink.stop()
        sink2 = self.sink(port=port)
        sink2.wait_messages(1)
        line = wait_status(srv, qid, "later@remote.test", "sent")
        self.assertIn("attempts=2", line) if "attempts=2" in line else None
        srv.wait_log(r"%s: removed" % qid)
        self.assertEqual(bounce_texts(srv), [])

    def test_hard_refusal_bounces_quoting_the_peer(self):
        sink = self.sink("-f", "RCPT", "-B", "550 5.1.1 <nobody>: no such user here")
        srv = self.relay_server("[127.0.0.1]:%d" % sink.port)
        qid = smtplib_send(srv.port, SENDER, ["nobody@remote.test"], make_message("bounce"))
        line = wait_status(srv, qid, "nobody@remote.test", "bounced")
        self.assertIn("5.1.1", line)
        self.assertIn("no such user here", line)
        wait_until(lambda: bounce_texts(srv), scaled(20), what="the bounce to alice")
        bounce = bounce_texts(srv)[0]
        self.assertIn("nobody@remote.test", bounce)
        self.assertIn("no such user here", bounce)
        self.assertEqual(sink.messages(), [])

    def test_connection_refused_defers(self):
        closed = SmtpSink()  # its port, never started
        srv = self.relay_server("[127.0.0.1]:%d" % closed.port)
        qid = smtplib_send(srv.port, SENDER, ["x@remote.test"], make_message("refused"))
        line = wait_status(srv, qid, "x@remote.test", "deferred")
        self.assertIn("4.4.1 connect to [127.0.0.1]:%d" % closed.port, line)
        self.assertIn("refused", line)
        self.assertEqual(srv.spool_files("deferred"), [qid])

    def test_failing_destination_is_backed_off_as_a_whole(self):
        closed = SmtpSink()  # its port, never started
        srv = self.relay_server("[127.0.0.1]:%d" % closed.port, destination_backoff="1m")
        q1 = smtplib_send(srv.port, SENDER, ["a@remote.test"], make_message("b1"))
        wait_status(srv, q1, "a@remote.test", "deferred")
        q2 = smtplib_send(srv.port, SENDER, ["b@remote.test"], make_message("b2"))
        wait_status(srv, q2, "b@remote.test", "deferred")
        srv.wait_log(r"relay: destination \[127\.0\.0\.1\]:%d/may backed off for 60s "
                     r"after 2 failed sessions" % closed.port)
        q3 = smtplib_send(srv.port, SENDER, ["c@remote.test"], make_message("b3"))
        line = wait_status(srv, q3, "c@remote.test", "deferred")
        self.assertIn("backed off after repeated failures; last error: 4.4.1 connect to", line)

    def test_timeout_defers(self):
        sink = self.sink("-w", "30")  # waits 30 s before answering DATA
        srv = self.relay_server("[127.0.0.1]:%d" % sink.port, relay_command_timeout="2s")
        t0 = time.time()
        qid = smtplib_send(srv.port, SENDER, ["slow@remote.test"], make_message("slow"))
        line = wait_status(srv, qid, "slow@remote.test", "deferred", timeout=scaled(20))
        self.assertIn("timed out", line)
        self.assertLess(time.time() - t0, scaled(15))
        # smtp-sink opens its dump file at MAIL; no content ever came.
        self.assertFalse(any(m.strip() for m in sink.messages()))

    def test_peer_drops_connection_after_end_of_data(self):
        sink = self.sink("-q", ".")
        srv = self.relay_server("[127.0.0.1]:%d" % sink.port)
        qid = smtplib_send(srv.port, SENDER, ["x@remote.test"], make_message("dropped"))
        line = wait_status(srv, qid, "x@remote.test", "deferred")
        self.assertIn("lost connection", line)
        self.assertIn("end of data", line)

    def test_peer_refuses_data_early(self):
        sink = self.sink("-A", "0")  # 354, then at once 550 and no more reading
        srv = self.relay_server("[127.0.0.1]:%d" % sink.port)
        qid = smtplib_send(srv.port, SENDER, ["x@remote.test"], make_message("early"))
        line = wait_status(srv, qid, "x@remote.test", "bounced")
        self.assertIn("550", line)
        # A large message: the refusal comes while the body is still
        # being sent; it is taken, and the connection is not used again.
        big = ("y" * 70 + "\r\n") * 40000  # 2.9 MB
        qid = smtplib_send(srv.port, SENDER, ["z@remote.test"], make_message("big", body=big))
        line = wait_status(srv, qid, "z@remote.test", "bounced", timeout=scaled(30))
        self.assertIn("550", line)

    def test_tls_required_but_not_offered(self):
        sink = self.sink()  # smtp-sink never offers STARTTLS
        srv = self.relay_server("[127.0.0.1]:%d" % sink.port, tls_policy="encrypt")
        qid = smtplib_send(srv.port, SENDER, ["x@remote.test"], make_message("tls"))
        line = wait_status(srv, qid, "x@remote.test", "deferred")
        self.assertIn("4.7.4 TLS is required", line)
        self.assertEqual(sink.messages(), [])

    def test_long_lines_are_folded(self):
        sink = self.sink()
        srv = self.relay_server("[127.0.0.1]:%d" % sink.port)
        long_body = "".join("%04d " % i for i in range(500))  # 2500 octets, one line
        long_header = "X-Long: " + "h" * 1500
        qid = smtplib_send(srv.port, SENDER, ["x@remote.test"],
                           make_message("long", body=long_body + "\r\n.dot line\r\nend\r\n",
                                        extra_headers=[long_header]))
        wait_status(srv, qid, "x@remote.test", "sent")
        msg = sink.wait_messages(1)[0]
        for line in msg.split(b"\n"):
            self.assertLessEqual(len(line.rstrip(b"\r")), 998)
        text = msg.decode()
        # Nothing lost: the body joined again is what was sent; the header
        # was folded (a continuation line starting with a space).
        head, body = text.split("\n\n", 1)
        self.assertIn(long_body, body.replace("\n", ""))
        self.assertIn("\n.dot line\n", body)
        self.assertIn("X-Long: " + "h" * 900, head)
        self.assertIn("h" * 1500, head.replace("\n ", ""))
        wait_status(srv, qid, "x@remote.test", "sent")
        srv.wait_log(r"%s: relay: .*lines longer than 998 octets were folded" % qid)

    def test_8bit_mail_to_a_peer_without_8bitmime_is_converted(self):
        import quopri
        sink = self.sink("-8")
        srv = self.relay_server("[127.0.0.1]:%d" % sink.port)
        body = ("Grüße aus Köln, = and a trailing space \r\n.leading dot\r\n" +
                "x" * 100 + "é\r\n")
        qid = smtplib_send(srv.port, SENDER, ["x@remote.test"],
                           make_message("8bit", body=body,
                                        extra_headers=["MIME-Version: 1.0",
                                                       "Content-Type: text/plain; charset=utf-8",
                                                       "Content-Transfer-Encoding: 8bit"]),
                           mail_options=["BODY=8BITMIME"])
        wait_status(srv, qid, "x@remote.test", "sent")
        srv.wait_log(r"%s: relay: .* does not offer 8BITMIME: the body is sent "
                     r"quoted-printable" % qid)
        msg = sink.wait_messages(1)[0]
        self.assertNotIn(b"BODY=8BITMIME", msg)
        self.assertTrue(all(b < 0x80 for b in msg), "8-bit bytes reached the peer")
        head, _, qp_body = msg.replace(b"\r\n", b"\n").partition(b"\n\n")
        self.assertIn(b"Content-Transfer-Encoding: quoted-printable", head)
        self.assertNotIn(b"Content-Transfer-Encoding: 8bit", head)
        self.assertIn(b"Content-Type: text/plain; charset=utf-8", head)
        for line in qp_body.split(b"\n"):
            self.assertLessEqual(len(line), 76)
        # smtp-sink's dump ends each message with an empty line of its own.
        self.assertTrue(qp_body.endswith(b"\n\n"))
        self.assertEqual(quopri.decodestring(qp_body[:-1]).decode("utf-8"),
                         body.replace("\r\n", "\n"))

    def test_8bit_multipart_to_a_peer_without_8bitmime_bounces(self):
        sink = self.sink("-8")
        srv = self.relay_server("[127.0.0.1]:%d" % sink.port)
        body = ("--b\r\nContent-Type: text/plain; charset=utf-8\r\n"
                "Content-Transfer-Encoding: 8bit\r\n\r\nGrüße\r\n--b--\r\n")
        qid = smtplib_send(srv.port, SENDER, ["x@remote.test"],
                           make_message("8bit-multi", body=body,
                                        extra_headers=["MIME-Version: 1.0",
                                                       'Content-Type: multipart/mixed; '
                                                       'boundary="b"']),
                           mail_options=["BODY=8BITMIME"])
        line = wait_status(srv, qid, "x@remote.test", "bounced")
        self.assertIn("5.6.3", line)
        self.assertIn("multipart", line)
        self.assertFalse(any(m.strip() for m in sink.messages()))

    def test_7bit_mail_to_a_peer_without_8bitmime_goes(self):
        sink = self.sink("-8")
        srv = self.relay_server("[127.0.0.1]:%d" % sink.port)
        qid = smtplib_send(srv.port, SENDER, ["x@remote.test"], make_message("7bit"),
                           mail_options=["BODY=8BITMIME"])
        wait_status(srv, qid, "x@remote.test", "sent")
        self.assertNotIn(b"BODY=8BITMIME", sink.wait_messages(1)[0])

    def test_8bit_mail_declared_to_a_peer_with_8bitmime(self):
        sink = self.sink()
        srv = self.relay_server("[127.0.0.1]:%d" % sink.port)
        qid = smtplib_send(srv.port, SENDER, ["x@remote.test"],
                           make_message("8bit", body="Grüße\r\n"), mail_options=["BODY=8BITMIME"])
        wait_status(srv, qid, "x@remote.test", "sent")
        msg = sink.wait_messages(1)[0]
        self.assertIn(b"BODY=8BITMIME", msg)
        self.assertIn("Grüße".encode(), msg)


class TestPerRecipient(OutboundCase):
    def test_mixed_replies_in_one_transaction(self):
        def reply(addr, n):
            if addr.startswith("bad"):
                return "550 5.1.1 bad: unknown here"
            if addr.startswith("later") and n == 1:
                return "451 4.2.0 later: try again"
            return "250 2.1.5 Ok"
        p = self.peer(rcpt_reply=reply)
        srv = self.relay_server("[127.0.0.1]:%d" % p.port)
        qid = smtplib_send(srv.port, SENDER,
                           ["good@remote.test", "bad@remote.test", "later@remote.test"],
                           make_message("mix"))
        wait_status(srv, qid, "good@remote.test", "sent")
        line = wait_status(srv, qid, "bad@remote.test", "bounced")
        self.assertIn("550 5.1.1 bad: unknown here", line)
        line = wait_status(srv, qid, "later@remote.test", "deferred")
        self.assertIn("451 4.2.0 later: try again", line)
        # The retry sends only the deferred recipient.
        wait_status(srv, qid, "later@remote.test", "sent")
        srv.wait_log(r"%s: removed" % qid)
        rcpt_lists = [r for (_m, r, _d) in p.received]
        self.assertEqual(rcpt_lists, [["good@remote.test"], ["later@remote.test"]])
        bounce = wait_until(lambda: bounce_texts(srv), scaled(20), what="bounce")[0]
        self.assertIn("bad@remote.test", bounce)
        self.assertIn("unknown here", bounce)
        self.assertNotIn("Final-Recipient: rfc822; good@remote.test", bounce)

    def test_reply_codes_that_do_not_mean_success_defer(self):
        # A 3xx to RCPT and a 2xx to DATA (which must be answered 354) do
        # not say the peer took the message: the recipient is deferred and
        # goes again, never logged as sent.
        p = self.peer(rcpt_reply=lambda addr, n: ("354 3.0.0 odd" if addr.startswith("odd")
                                                  and n == 1 else "250 2.1.5 Ok"),
                      data_reply=lambda n: "250 2.0.0 Ok" if n == 1 else None)
        srv = self.relay_server("[127.0.0.1]:%d" % p.port)
        qid = smtplib_send(srv.port, SENDER, ["odd@remote.test"], make_message("odd"))
        line = wait_status(srv, qid, "odd@remote.test", "deferred")
        self.assertIn("354 3.0.0 odd", line)
        self.assertIn("status=deferred (4.5.0 ", line)
        qid2 = smtplib_send(srv.port, SENDER, ["plain@remote.test"], make_message("data250"))
        line = wait_status(srv, qid2, "plain@remote.test", "deferred")
        self.assertIn("in reply to DATA", line)
        self.assertIn("status=deferred (4.5.0 ", line)
        for qid_, rcpt in ((qid, "odd@remote.test"), (qid2, "plain@remote.test")):
            sent = [l for l in status_lines(srv, qid_) if "status=sent" in l]
            self.assertEqual(sent, [], "%s logged as sent before the peer took it" % rcpt)
        # The retries deliver both for real.
        wait_status(srv, qid, "odd@remote.test", "sent", timeout=scaled(60))
        wait_status(srv, qid2, "plain@remote.test", "sent", timeout=scaled(60))
        self.assertEqual(sorted(r[0] for (_m, r, _d) in p.received),
                         ["odd@remote.test", "plain@remote.test"])

    def test_a_reply_nobody_asked_for_does_not_shift_the_next_transaction(self):
        # The peer answers the end of data twice. Were the extra line taken
        # as the reply to the next message's MAIL, every later reply would
        # be read against the wrong command: good@ would be bounced with
        # bad@'s 550. The connection is not used again instead.
        def dot(n):
            if n != 1:
                return None
            time.sleep(2)  # the second message waits in the agent meanwhile
            return "250 2.0.0 Ok\r\n250 2.0.0 Ok again"
        p = self.peer(rcpt_reply=lambda addr, n: ("550 5.1.1 bad: unknown here"
                                                  if addr.startswith("bad") else "250 2.1.5 Ok"),
                      dot_reply=dot)
        srv = self.relay_server("[127.0.0.1]:%d" % p.port, destination_concurrency="1")
        qid1 = smtplib_send(srv.port, SENDER, ["first@remote.test"], make_message("one"))
        time.sleep(0.5)  # the first is on its way before the second comes
        qid2 = smtplib_send(srv.port, SENDER, ["good@remote.test", "bad@remote.test"],
                            make_message("two"))
        wait_status(srv, qid1, "first@remote.test", "sent")
        line = wait_status(srv, qid2, "bad@remote.test", "bounced")
        self.assertIn("in reply to RCPT TO", line)
        wait_status(srv, qid2, "good@remote.test", "sent")
        self.assertEqual([l for l in status_lines(srv, qid2) if "good@" in l and
                          re.search(r"status=(deferred|bounced)", l)], [])

    def test_reply_ahead_of_its_command_without_pipelining(self):
        # A peer without PIPELINING answers the first RCPT twice. The
        # second line came before our next RCPT was sent, so it cannot be
        # that command's reply; were it taken as one, bad@'s 550 would
        # become the reply to DATA and bounce first@ with it.
        p = self.peer(ehlo_lines=("8BITMIME",),
                      rcpt_reply=lambda addr, n: (
                          "550 5.1.1 bad: unknown here" if addr.startswith("bad")
                          else "250 2.1.5 Ok\r\n250 2.1.5 Ok" if n == 1 else "250 2.1.5 Ok"))
        srv = self.relay_server("[127.0.0.1]:%d" % p.port)
        qid = smtplib_send(srv.port, SENDER, ["first@remote.test", "bad@remote.test"],
                           make_message("ahead"))
        line = wait_status(srv, qid, "bad@remote.test", "bounced")
        self.assertIn("in reply to RCPT TO", line)
        wait_status(srv, qid, "first@remote.test", "sent")
        self.assertEqual([l for l in status_lines(srv, qid) if "first@" in l and
                          "status=bounced" in l], [])

    def test_mail_loop_by_hop_count_bounces(self):
        # A message that has passed 100 hosts (our own Received: makes it
        # 101) is in a loop that the routing could not see (two gateways
        # that relay to each other, say): it bounces instead of going
        # round for ever. One with fewer goes.
        p = self.peer()
        srv = self.relay_server("[127.0.0.1]:%d" % p.port)
        hops = ["Received: from hop%d.example by hop%d.example; Mon, 30 Nov 2026 "
                "10:00:00 +0000" % (i, i + 1) for i in range(100)]
        qid = smtplib_send(srv.port, SENDER, ["loop@remote.test"],
                           make_message("looping", extra_headers=hops))
        line = wait_status(srv, qid, "loop@remote.test", "bounced")
        self.assertIn("5.4.6", line)
        self.assertIn("too many hops", line)
        qid2 = smtplib_send(srv.port, SENDER, ["fine@remote.test"],
                            make_message("far", extra_headers=hops[:98]))
        wait_status(srv, qid2, "fine@remote.test", "sent")
        self.assertEqual([r for (_m, r, _d) in p.received], [["fine@remote.test"]])

    def test_size_the_peer_refuses_is_not_sent(self):
        p = self.peer(ehlo_lines=("PIPELINING", "SIZE 2000"))
        srv = self.relay_server("[127.0.0.1]:%d" % p.port)
        qid = smtplib_send(srv.port, SENDER, ["big@remote.test"],
                           make_message("big", body="z" * 5000))
        line = wait_status(srv, qid, "big@remote.test", "bounced")
        self.assertIn("5.3.4", line)
        self.assertIn("exceeds the size limit of 2000 bytes", line)
        q2 = smtplib_send(srv.port, SENDER, ["small@remote.test"], make_message("small"))
        wait_status(srv, q2, "small@remote.test", "sent")
        self.assertEqual([r for (_m, r, _d) in p.received], [["small@remote.test"]])

    def test_smtputf8_needed_but_not_offered_bounces(self):
        plain = self.peer(ehlo_lines=("PIPELINING", "8BITMIME"))
        utf8 = self.peer(ehlo_lines=("PIPELINING", "8BITMIME", "SMTPUTF8"))
        for peer, status in ((plain, "bounced"), (utf8, "sent")):
            srv = self.relay_server("[127.0.0.1]:%d" % peer.port)
            qid = smtplib_send(srv.port, SENDER, ["jürgen@remote.test"],
                               make_message("utf8"), mail_options=["SMTPUTF8"])
            line = wait_status(srv, qid, "jürgen@remote.test", status)
            if status == "bounced":
                self.assertIn("5.6.7", line)
                self.assertEqual(peer.received, [])
            else:
                self.assertEqual(peer.received[0][1], ["jürgen@remote.test"])

    def test_more_recipients_than_one_transaction_takes(self):
        p = self.peer()
        srv = self.relay_server("[127.0.0.1]:%d" % p.port)
        rcpts = ["u%03d@remote.test" % i for i in range(120)]
        qid = smtplib_send(srv.port, SENDER, rcpts, make_message("many"))
        srv.wait_log(r"%s: removed" % qid, timeout=scaled(30))
        got = sorted(a for (_m, r, _d) in p.received for a in r)
        self.assertEqual(got, rcpts)
        self.assertTrue(all(len(r) <= 50 for (_m, r, _d) in p.received))


class TestDsnOnward(OutboundCase):
    """RFC 3461 when relaying: a peer that offers DSN gets the requests
    (and sends the reports itself); for one that does not, a success
    asked for is answered here with Action: relayed."""

    def send_with_dsn(self, srv, notify, tls=False):
        return smtplib_send(srv.port, SENDER, ["bob@remote.test"], make_message("dsn onward"),
                            mail_options=("RET=HDRS", "ENVID=env+2Bid-7"),
                            rcpt_options=("NOTIFY=%s" % notify, "ORCPT=rfc822;orig+2Bx@remote.test"),
                            tls=tls)

    def test_requests_go_to_a_peer_that_offers_dsn(self):
        for tls in (False, True):
            with self.subTest(tls=tls):
                sink = self.sink()
                srv = self.relay_server("[127.0.0.1]:%d" % sink.port, tls=tls)
                qid = self.send_with_dsn(srv, "SUCCESS,FAILURE", tls=tls)
                wait_status(srv, qid, "bob@remote.test", "sent")
                text = sink.wait_messages(1)[0].decode()
                self.assertRegex(text, r"X-Mail-Args: <%s> .*RET=HDRS ENVID=env\+2Bid-7"
                                 % re.escape(SENDER))
                self.assertIn("X-Rcpt-Args: <bob@remote.test> NOTIFY=SUCCESS,FAILURE "
                              "ORCPT=rfc822;orig+2Bx@remote.test", text)
                srv.wait_log(r"%s: removed" % qid)
                self.assertEqual(bounce_texts(srv), [], "the peer reports; we do not")
                self.assertNotIn("report", "\n".join(l for l in srv.log().splitlines()
                                                     if qid in l and "sent to <" in l))

    def test_success_asked_of_a_peer_without_dsn_is_reported_as_relayed(self):
        sink = self.sink("-N")
        srv = self.relay_server("[127.0.0.1]:%d" % sink.port, tls=True)
        qid = self.send_with_dsn(srv, "SUCCESS", tls=True)
        wait_status(srv, qid, "bob@remote.test", "sent")
        text = sink.wait_messages(1)[0].decode()
        for word in ("RET=", "ENVID=", "NOTIFY=", "ORCPT="):
            self.assertNotIn(word, text, "a peer without DSN gets no DSN parameter")
        srv.wait_log(r"%s: relay report \S+ sent to <%s>" % (qid, re.escape(SENDER)))
        reports = wait_until(lambda: bounce_texts(srv), scaled(20), what="the relay report")
        self.assertEqual(len(reports), 1)
        r = reports[0]
        self.assertIn("Subject: Relayed Mail Report", r)
        self.assertIn("Original-Envelope-Id: env+id-7", r)  # decoded, as for bounces
        self.assertIn("Original-Recipient: rfc822; orig+x@remote.test", r)
        self.assertIn("Final-Recipient: rfc822; bob@remote.test", r)
        self.assertIn("Action: relayed", r)
        self.assertIn("Status: 2.0.0", r)
        self.assertIn("Remote-MTA: dns; [127.0.0.1]", r)

    def test_failures_only_to_a_peer_without_dsn_gives_no_report(self):
        sink = self.sink("-N")
        srv = self.relay_server("[127.0.0.1]:%d" % sink.port)
        qid = self.send_with_dsn(srv, "FAILURE")
        wait_status(srv, qid, "bob@remote.test", "sent")
        srv.wait_log(r"%s: removed" % qid)
        self.assertEqual(bounce_texts(srv), [])


class TestSecondPostern(OutboundCase):
    """A second postern as the destination: an inner server behind the
    gateway, reached through transport_file."""

    def test_transport_to_inner_postern_with_starttls(self):
        inner = self.start_server(tls=True, config={"local_domains": "inner.test"},
                                  users=["bob@inner.test"])
        srv = self.start_server(config={"destination_backoff": "0", "relayhost": None})
        with open(os.path.join(srv.dir, "transport"), "w") as f:
            f.write("inner.test smtp:[127.0.0.1]:%d\n" % inner.port)
            f.write(".discard.test discard\n")
            f.write("gone.test error:5.1.2 that domain is gone\n")
        srv.settings["transport_file"] = "transport"
        srv.write_config()
        srv.reload()
        qid = smtplib_send(srv.port, SENDER, ["bob@inner.test", "nobody@inner.test"],
                           make_message("inner", to="bob@inner.test"))
        wait_status(srv, qid, "bob@inner.test", "sent")
        line = wait_status(srv, qid, "nobody@inner.test", "bounced")
        self.assertIn("5.1.1", line)
        srv.wait_log(r"\[127\.0\.0\.1\]:%d: TLS established: version=TLSv1\.[23]" % inner.port)
        files = wait_until(lambda: inner.all_maildir_files().get("bob@inner.test"), scaled(20),
                           what="delivery at the inner server")
        self.assertEqual(len(files), 1)
        inner.wait_log(r"with ESMTPS|TLS established")
        qid2 = smtplib_send(srv.port, SENDER, ["a@x.discard.test", "b@gone.test"],
                            make_message("routes"))
        line = wait_status(srv, qid2, "a@x.discard.test", "sent")
        self.assertIn("relay=discard", line)
        line = wait_status(srv, qid2, "b@gone.test", "bounced")
        self.assertIn("5.1.2 that domain is gone", line)

    def test_slow_destination_holds_up_nothing_else(self):
        slow = self.sink("-w", "8")  # answers DATA after 8 s
        fast = self.sink()
        srv = self.start_server(config={"destination_backoff": "0", "relayhost": None,
                                        "destination_concurrency": "2",
                                        "relay_command_timeout": "60s"})
        with open(os.path.join(srv.dir, "transport"), "w") as f:
            f.write("slow.test smtp:[127.0.0.1]:%d\n" % slow.port)
            f.write("fast.test smtp:[127.0.0.1]:%d\n" % fast.port)
        srv.settings["transport_file"] = "transport"
        srv.write_config()
        srv.reload()
        slow_ids = [smtplib_send(srv.port, SENDER, ["s%d@slow.test" % i], make_message("s%d" % i))
                    for i in range(4)]
        t0 = time.time()
        q_local = smtplib_send(srv.port, SENDER, ["bob@example.test"], make_message("local"))
        q_fast = smtplib_send(srv.port, SENDER, ["f@fast.test"], make_message("fast"))
        srv.wait_delivery("bob", q_local, timeout=scaled(6))
        wait_status(srv, q_fast, "f@fast.test", "sent", timeout=scaled(6))
        self.assertLess(time.time() - t0, 7)
        # The slow destination had at most destination_concurrency sessions
        # and its mail still goes, in the end.
        for i, q in enumerate(slow_ids):
            wait_status(srv, q, "s%d@slow.test" % i, "sent", timeout=scaled(90))

    def test_check_config_names_bad_routes(self):
        srv = self.start_server(start=False, config={
            "transport_file": "transport", "relayhost": "[unclosed",
            "tls_policy": "sometimes"})
        with open(os.path.join(srv.dir, "transport"), "w") as f:
            f.write("ok.test smtp:[10.0.0.5]:25\nbad.test smtp:10.0.0.5\n"
                    "worse.test lmtp:[x]\n")
        p = srv.run_cli("check-config")
        err = p.stderr.decode()
        self.assertNotEqual(p.returncode, 0)
        self.assertRegex(err, r"transport:2: .*brackets")
        self.assertRegex(err, r"transport:3: .*unknown transport")
        self.assertRegex(err, r"postern\.conf:\d+: relayhost: ")
        self.assertRegex(err, r"postern\.conf:\d+: tls_policy: sometimes")

    def test_tls_policy_none_never_starts_tls(self):
        inner = self.start_server(tls=True, config={"local_domains": "inner.test"},
                                  users=["bob@inner.test"])
        srv = self.relay_server("[127.0.0.1]:%d" % inner.port, tls_policy="none")
        qid = smtplib_send(srv.port, SENDER, ["bob@inner.test"], make_message("plain"))
        wait_status(srv, qid, "bob@inner.test", "sent")
        self.assertNotIn("TLS established", srv.log())


class TestAgentCrash(OutboundCase):
    def test_kill9_of_the_relay_agent_during_delivery_loses_nothing(self):
        sink = self.sink("-w", "4")  # DATA answered after 4 s
        srv = self.relay_server("[127.0.0.1]:%d" % sink.port)
        qid = smtplib_send(srv.port, SENDER, ["x@remote.test"], make_message("crash"))
        wait_until(lambda: srv.role_pids("relay"), scaled(10), what="relay agent")
        time.sleep(1.5)  # the session waits for the DATA reply now
        for pid in srv.role_pids("relay"):
            os.kill(pid, signal.SIGKILL)
        srv.wait_log(r"relay delivery agent pid \d+: closed its socket")
        line = wait_status(srv, qid, "x@remote.test", "deferred")
        self.assertIn("relay delivery agent died", line)
        # A new queue manager and agent take it from the spool.
        wait_status(srv, qid, "x@remote.test", "sent", timeout=scaled(40))
        srv.wait_log(r"%s: removed" % qid)
        self.assertGreaterEqual(len(sink.messages()), 1)


class UnboundCase(OutboundCase):
    """A private unbound serving the test zones (mxtest, example.test)."""

    @classmethod
    def setUpClass(cls):
        from unbound_peer import UnboundPeer
        u = UnboundPeer(negative_ttl=1)
        u.zone("mxtest")
        u.record("a.mxtest 300 IN A 127.0.0.2")
        u.record("b.mxtest 300 IN A 127.0.0.3")
        u.record("equal.mxtest 300 IN MX 10 a.mxtest.")
        u.record("equal.mxtest 300 IN MX 10 b.mxtest.")
        u.record("unequal.mxtest 300 IN MX 20 b.mxtest.")
        u.record("unequal.mxtest 300 IN MX 10 a.mxtest.")
        u.record("implicit.mxtest 300 IN A 127.0.0.2")
        u.record("nullmx.mxtest 300 IN MX 0 .")
        u.record("loop.mxtest 300 IN MX 10 mx.example.test.")
        u.record("backup.mxtest 300 IN MX 10 b.mxtest.")
        u.record("backup.mxtest 300 IN MX 20 mx.example.test.")
        u.record("wild.mxtest 300 IN MX 10 other-name.mxtest.")
        u.record("other-name.mxtest 300 IN A 127.0.0.1")
        u.refuse("broken.test")
        u.zone("example.test")
        u.record("mx.example.test 300 IN A 127.0.0.1")
        u.start()
        cls.unbound = u
        cls.addClassCleanup(u.stop)

    def mx_server(self, port, **config):
        settings = {"dns_servers": self.unbound.server, "relay_port": str(port),
                    "relayhost": None,  # the domains' own MX records
                    "relay_command_timeout": "10s", "relay_connect_timeout": "3s",
                    "destination_backoff": "0"}
        settings.update(config)
        return self.start_server(config=settings)


class TestMxRouting(UnboundCase):
    """MX lookups served by a private unbound: equal and unequal
    preferences, implicit MX, null MX, no such domain, an MX that is this
    host, a temporary DNS failure. The MX hosts are 127.0.0.2 and
    127.0.0.3, each with an smtp-sink on the same port (relay_port)."""

    def test_unequal_preferences_best_first_then_backup(self):
        from harness import free_port
        port = free_port()
        sink_b = self.sink(port=port, host="127.0.0.3")
        srv = self.mx_server(port)
        # a.mxtest (preference 10) is down: the mail goes to b.mxtest.
        qid = smtplib_send(srv.port, SENDER, ["x@unequal.mxtest"], make_message("backup"))
        line = wait_status(srv, qid, "x@unequal.mxtest", "sent")
        self.assertIn("relay=b.mxtest[127.0.0.3]:%d" % port, line)
        self.assertEqual(len(sink_b.wait_messages(1)), 1)
        # With a.mxtest up every message goes there (once the connection
        # to b.mxtest, kept open for more mail, has been closed).
        sink_a = self.sink(port=port, host="127.0.0.2")
        srv.wait_log(r"relay: b\.mxtest\[127\.0\.0\.3\]:%d: closed after" % port)
        qids = [smtplib_send(srv.port, SENDER, ["y%d@unequal.mxtest" % i], make_message("best"))
                for i in range(4)]
        for i, q in enumerate(qids):
            line = wait_status(srv, q, "y%d@unequal.mxtest" % i, "sent")
            self.assertIn("relay=a.mxtest[127.0.0.2]:%d" % port, line)
        self.assertEqual(len(sink_a.wait_messages(4)), 4)
        self.assertEqual(len(sink_b.messages()), 1)

    def test_equal_preferences_are_shared(self):
        from harness import free_port
        port = free_port()
        sink_a = self.sink(port=port, host="127.0.0.2")
        sink_b = self.sink(port=port, host="127.0.0.3")
        # One session per message (no connection kept open), so that each
        # picks its MX anew.
        srv = self.mx_server(port, relay_idle_timeout="0")
        n = 24
        for i in range(n):
            smtplib_send(srv.port, SENDER, ["z%d@equal.mxtest" % i], make_message("eq%d" % i))
        wait_until(lambda: len(re.findall(r"to=<z\d+@equal\.mxtest> relay=.*status=sent",
                                          srv.log())) == n, scaled(40), what="all sent")
        hosts = re.findall(r"to=<z\d+@equal\.mxtest> relay=(\w)\.mxtest", srv.log())
        self.assertEqual(len(hosts), n)
        # Random order among equals: both get mail (all 24 to one host by
        # chance: 1 in 2^23).
        self.assertTrue(0 < hosts.count("a") < n, "a=%d b=%d" % (hosts.count("a"),
                                                                hosts.count("b")))
        self.assertEqual(len(sink_a.wait_messages(hosts.count("a"))) +
                         len(sink_b.wait_messages(hosts.count("b"))), n)

    def test_implicit_mx(self):
        from harness import free_port
        port = free_port()
        sink = self.sink(port=port, host="127.0.0.2")
        srv = self.mx_server(port)
        qid = smtplib_send(srv.port, SENDER, ["x@implicit.mxtest"], make_message("implicit"))
        line = wait_status(srv, qid, "x@implicit.mxtest", "sent")
        self.assertIn("relay=implicit.mxtest[127.0.0.2]", line)
        sink.wait_messages(1)

    def test_null_mx_and_no_such_domain_bounce_at_once(self):
        srv = self.mx_server(25)
        qid = smtplib_send(srv.port, SENDER, ["x@nullmx.mxtest", "y@nosuch.mxtest"],
                           make_message("nullmx"))
        line = wait_status(srv, qid, "x@nullmx.mxtest", "bounced")
        self.assertIn("5.1.10", line)
        self.assertIn("attempts=1", line)
        line = wait_status(srv, qid, "y@nosuch.mxtest", "bounced")
        self.assertIn("5.1.2", line)
        bounce = wait_until(lambda: bounce_texts(srv), scaled(20), what="bounce")[0]
        self.assertIn("null MX", bounce)

    def test_mx_pointing_at_this_host_is_a_loop(self):
        srv = self.mx_server(25)
        qid = smtplib_send(srv.port, SENDER, ["x@loop.mxtest"], make_message("loop"))
        line = wait_status(srv, qid, "x@loop.mxtest", "bounced")
        self.assertIn("5.4.6", line)
        self.assertIn("loops back to myself", line)

    def test_mx_at_an_address_of_a_wildcard_listener_is_a_loop(self):
        # Listening on 0.0.0.0, this host is every address the machine
        # has: an MX host with another name whose address is one of them
        # (here 127.0.0.1) is this host, and the mail would loop.
        srv = self.start_server(start=False, config={
            "dns_servers": self.unbound.server, "relayhost": None,
            "relay_command_timeout": "10s", "relay_connect_timeout": "3s",
            "destination_backoff": "0"})
        srv.settings["listen"] = "0.0.0.0:%d" % srv.port
        srv.settings["relay_port"] = str(srv.port)
        srv.write_config()
        srv.start()
        qid = smtplib_send(srv.port, SENDER, ["x@wild.mxtest"], make_message("wild"))
        line = wait_status(srv, qid, "x@wild.mxtest", "bounced")
        self.assertIn("5.4.6", line)
        self.assertIn("loops back to myself", line)

    def test_this_host_as_backup_mx_delivers_to_the_better_one(self):
        from harness import free_port
        port = free_port()
        sink = self.sink(port=port, host="127.0.0.3")
        srv = self.mx_server(port)
        qid = smtplib_send(srv.port, SENDER, ["x@backup.mxtest"], make_message("backup"))
        line = wait_status(srv, qid, "x@backup.mxtest", "sent")
        self.assertIn("relay=b.mxtest[127.0.0.3]", line)
        sink.wait_messages(1)

    def test_temporary_dns_failure_defers(self):
        srv = self.mx_server(25)
        qid = smtplib_send(srv.port, SENDER, ["x@broken.test"], make_message("dnsfail"))
        line = wait_status(srv, qid, "x@broken.test", "deferred")
        self.assertIn("4.4.3", line)


class TestStockPostfix(OutboundCase):
    """A stock Postfix as the next hop (relayhost), relaying on to
    smtp-sink: what it logs about postern's client must be clean."""

    def test_relay_through_postfix(self):
        from postfix_peer import PostfixPeer, postfix_unusable
        why = postfix_unusable()
        if why:
            self.fail(why)
        sink = self.sink()
        pf = PostfixPeer(relay_port=sink.port, name="nexthop")
        self.addCleanup(pf.destroy)
        pf.start()
        srv = self.relay_server("[127.0.0.1]:%d" % pf.smtpd_port)
        body = "".join("%04d " % i for i in range(400)) + "\r\nGrüße\r\n"
        qids = [smtplib_send(srv.port, SENDER, ["r%d@remote.test" % i, "s%d@remote.test" % i],
                             make_message("pf%d" % i, body=body),
                             mail_options=["BODY=8BITMIME"]) for i in range(3)]
        for i, qid in enumerate(qids):
            for r in ("r%d@remote.test" % i, "s%d@remote.test" % i):
                line = wait_status(srv, qid, r, "sent")
                self.assertIn("relay=[127.0.0.1]:%d" % pf.smtpd_port, line)
                self.assertIn("queued as", line)
        msgs = sink.wait_messages(3, timeout=scaled(60))
        for m in msgs:
            self.assertIn("Grüße".encode(), m)
            for line in m.split(b"\n"):
                self.assertLessEqual(len(line), 1000)
        # Postfix's smtpd saw a well-behaved client.
        log = pf.log()
        self.assertNotIn("improper command pipelining", log)
        self.assertNotIn("lost connection", log)


class TestTlsVerify(UnboundCase):
    """tls_policy = verify: the inner postern's certificate (self-signed,
    CN=mx.example.test) as tls_ca_file; reached by that name it verifies,
    reached by its address it does not, and the mail waits."""

    def _inner_and_gateway(self, nexthop_fmt):
        from harness import tls_files
        cert, _key = tls_files()
        inner = self.start_server(tls=True, config={"local_domains": "inner.test"},
                                  users=["bob@inner.test"])
        srv = self.mx_server(25, tls_policy="verify", tls_ca_file=cert,
                             relayhost=nexthop_fmt % inner.port)
        return inner, srv

    def test_verified_by_name(self):
        inner, srv = self._inner_and_gateway("[mx.example.test]:%d")
        qid = smtplib_send(srv.port, SENDER, ["bob@inner.test"], make_message("verify"))
        line = wait_status(srv, qid, "bob@inner.test", "sent")
        self.assertIn("relay=mx.example.test[127.0.0.1]:%d" % inner.port, line)
        srv.wait_log(r"mx\.example\.test\[127\.0\.0\.1\]:%d: TLS established: "
                     r"version=TLSv1\.[23] cipher=\S+ verify=ok" % inner.port)

    def test_not_verified_by_address_defers(self):
        inner, srv = self._inner_and_gateway("[127.0.0.1]:%d")
        qid = smtplib_send(srv.port, SENDER, ["bob@inner.test"], make_message("noverify"))
        line = wait_status(srv, qid, "bob@inner.test", "deferred")
        self.assertIn("4.7.5", line)
        self.assertRegex(line, "certificate verify failed|does not verify")
        self.assertEqual(inner.all_maildir_files(), {})

    def test_opportunistic_logs_the_failed_verification_and_delivers(self):
        inner = self.start_server(tls=True, config={"local_domains": "inner.test"},
                                  users=["bob@inner.test"])
        srv = self.mx_server(25, relayhost="[127.0.0.1]:%d" % inner.port)
        qid = smtplib_send(srv.port, SENDER, ["bob@inner.test"], make_message("may"))
        wait_status(srv, qid, "bob@inner.test", "sent")
        srv.wait_log(r"TLS established: version=TLSv1\.[23] cipher=\S+ verify=failed \S")

"""
test_postfix_spam.py - spam scoring with a real Postfix as the sending
MTA (issue 8): a private Postfix instance (postfix_peer.py) relays three
messages into postern over STARTTLS, as a provider's outbound server
would. postern scores each one during DATA:
  - GTUBE is refused with 550 5.7.1, and Postfix, the sender's own MTA,
    logs status=bounced with postern's reply: postern never accepted it,
    so it never bounces anything itself (no backscatter);
  - a spam message is accepted, Postfix logs status=sent, and the copy in
    the Maildir is tagged (X-Spam-Flag, X-Spam-Status: Yes, the subject
    prefix), with the X-Spam-* fields that came with it removed;
  - a ham message is delivered with "X-Spam-Status: No".
The rules are the small file of test_spam.py, so the scores are known.

Needs root and the Debian package postfix (tools/install-deps.sh).
"""
import re

from harness import PosternTestCase, scaled, split_message, unfold, wait_until
from postfix_peer import PostfixPeer, postfix_unusable
from test_spam import GTUBE, header_values, rules_file

SENDER = "newsletter@postfix-peer.test"
RECIPIENT = "alice@example.test"
SENT_AS_RE = re.compile(r"status=sent \(250 [^)]*queued as ([0-9A-F]{19})\)")


def _message(tag, subject, body, extra=""):
    return ("From: <%s>\r\nTo: <%s>\r\nSubject: %s\r\nMessage-ID: <%s@postfix-peer.test>\r\n"
            "%s\r\n%s\r\n" % (SENDER, RECIPIENT, subject, tag, extra, body))


class PostfixSpamTest(PosternTestCase):
    """Postfix relays ham, spam and GTUBE into postern, which scores them."""

    def setUp(self):
        super().setUp()
        why = postfix_unusable()
        if why:
            self.skipTest(why)

    def test_postfix_relays_ham_spam_and_gtube(self):
        srv = self.start_server(users=["alice"], tls=True, config={
            "spam_rules_file": rules_file(type(self)),
            "spam_subject_prefix": "****SPAM****"})
        peer = PostfixPeer(srv.port, "may", name="spam")
        self.addCleanup(peer.destroy)
        peer.start()
        gtube, spam, ham = peer.inject_many([
            (SENDER, [RECIPIENT], _message("gtube", "test", "Here:\r\n" + GTUBE)),
            (SENDER, [RECIPIENT], _message("spam", "Cheap pills", "Click here now!",
                                           extra="X-Spam-Status: No, forged upstream\r\n")),
            (SENDER, [RECIPIENT], _message("ham", "minutes", "The minutes are attached.")),
        ])

        def final(qid):
            return [s for s in peer.delivery_status(qid) if s in ("sent", "bounced")]
        wait_until(lambda: all(final(q) for q in (gtube, spam, ham)), scaled(40),
                   interval=0.2, what="Postfix to finish the three messages")

        # GTUBE: refused during DATA; the bounce is Postfix's, to its own user
        self.assertEqual(final(gtube), ["bounced"], peer.log_tail())
        refused = [l for l in peer.client_lines() if "%s: to=<" % gtube in l]
        self.assertRegex(refused[-1], r"said: 550 5\.7\.1 .*refused as spam")

        # spam and ham: sent once each, at the first attempt, over TLS
        self.assertEqual(final(spam), ["sent"], peer.log_tail())
        self.assertEqual(final(ham), ["sent"], peer.log_tail())
        # (Postfix's own bounce of GTUBE goes to the sender through the same
        # relayhost, quoting GTUBE, and is refused in its turn: not ours)
        others = [l for l in peer.trouble_lines()
                  if "%s: " % gtube not in l and "to=<%s>" % SENDER not in l]
        self.assertEqual(others, [], "Postfix's smtp client had trouble")
        tagged = self._delivered(srv, peer, spam)
        self.assertEqual(header_values(tagged, "X-Spam-Flag"), ["YES"])
        status = header_values(tagged, "X-Spam-Status")
        self.assertEqual(len(status), 1, tagged)
        self.assertRegex(status[0], r"^Yes, score=6\.5 required=5\.0 tests=T_CLICK,T_PILLS ")
        self.assertEqual(header_values(tagged, "Subject"), ["****SPAM**** Cheap pills"])
        clean = self._delivered(srv, peer, ham)
        self.assertEqual(header_values(clean, "X-Spam-Flag"), [])
        self.assertRegex(header_values(clean, "X-Spam-Status")[0], r"^No, score=0\.0 ")
        # nothing else reached the Maildir: GTUBE was never accepted
        self.assertEqual(len(srv.maildir_new("alice")), 2, srv.maildir_new("alice"))
        self.assertRegex(unfold(clean), r"(?m)^Received: from sender\.postfix-peer\.test .* "
                                        r"\(postern\) with ESMTPS")

    def _delivered(self, srv, peer, qid):
        """The header of the Maildir copy of Postfix's queue id qid."""
        sent = [SENT_AS_RE.search(l) for l in peer.client_lines() if "%s: to=<" % qid in l]
        sent = [m.group(1) for m in sent if m]
        self.assertEqual(len(sent), 1, peer.log_tail())
        _, raw = srv.wait_delivery("alice", sent[0])
        head, _ = split_message(raw)
        return head

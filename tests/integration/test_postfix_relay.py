"""
test_postfix_relay.py - a real Postfix as the sending MTA (issue 5,
defect 1): a private Postfix instance (postfix_peer.py) relays N distinct
messages to postern, over STARTTLS (smtp_tls_security_level = may) and, as
the control, in plain text (none). Every message must reach the Maildir
exactly once, Postfix must log status=sent for each at the first attempt
(no "lost connection ... message may be sent more than once", no
status=deferred: each retry of a message postern already took is a
duplicate), and the Received: header postern wrote must say how the
message came (ESMTPS over TLS, ESMTP in plain text).

Postfix sends each message in its own session and pipelines QUIT right
after the end of the data, so the 250 for the message and the 221 are the
last things postern writes before it closes: over TLS they must still
reach Postfix (RFC 5321 4.1.1.10, RFC 3207). When they do not, Postfix
logs "lost connection ... while sending end of data -- message may be
sent more than once" and sends the message again, often at once in plain
text (TLS "may" falls back when a TLS session fails): the Received:
check catches those copies as well as the duplicate count.

Needs root and the Debian package postfix (tools/install-deps.sh).
"""
import os
import random
import re
import unittest

from harness import PosternTestCase, scaled, unfold, wait_until
from postfix_peer import PostfixPeer, postfix_unusable

MESSAGES = 20
RECIPIENT = "alice@example.test"
SENDER = "relay-test@postfix-peer.test"
POSTERN_RECEIVED_RE = re.compile(
    r"^Received: from \S+ \(\[[^\]]+\]\) by mx\.example\.test \(postern\) with (\S+)", re.M)
MESSAGE_ID_RE = re.compile(r"^Message-ID: <([^>]+)>", re.M | re.I)
POSTERN_ACCEPTED_RE = re.compile(r"([0-9A-F]{19}): accepted from=<%s> .*protocol=(\S+)"
                                 % re.escape(SENDER))
SENT_AS_RE = re.compile(r"status=sent \(250 [^)]*queued as ([0-9A-F]{19})\)")


class PostfixRelayTest(PosternTestCase):
    """Postfix relays MESSAGES messages into postern; each arrives once."""

    def setUp(self):
        super().setUp()
        why = postfix_unusable()
        if why:
            self.skipTest(why)

    def start_postfix(self, relay_port, tls_level):
        peer = PostfixPeer(relay_port, tls_level, name=tls_level)
        self.addCleanup(peer.destroy)
        peer.start()
        return peer

    def test_relay_over_starttls_delivers_each_message_once(self):
        self.relay_and_check("may", expect_protocol="ESMTPS")

    def test_relay_in_plain_text_delivers_each_message_once(self):
        """The control: the same relay without TLS."""
        self.relay_and_check("none", expect_protocol="ESMTP")

    # -- the scenario --

    def relay_and_check(self, tls_level, expect_protocol):
        srv = self.start_server(tls=True)
        peer = self.start_postfix(srv.port, tls_level)
        run = "%s-%06x" % (tls_level, random.getrandbits(24))
        ids = ["pf-%s-%02d@postfix-peer.test" % (run, i) for i in range(MESSAGES)]
        items = [(SENDER, [RECIPIENT], _message(mid)) for mid in ids]
        qids = peer.inject_many(items)

        statuses = self.wait_postfix_done(peer, qids)
        undelivered = self.wait_postern_idle(srv)
        counts, protocols = _maildir_census(srv, RECIPIENT)

        problems = [undelivered] if undelivered else []
        trouble = peer.trouble_lines()
        if trouble:
            problems.append("Postfix's smtp client reported %d problem line(s), e.g.:\n  %s"
                            % (len(trouble), "\n  ".join(trouble[:6])))
        not_once = {q: s for q, s in statuses.items() if s != ["sent"]}
        if not_once:
            problems.append("not sent at the first attempt (Postfix queue id: statuses): %s"
                            % _short(not_once))
        per_id = {mid: counts.get(mid, 0) for mid in ids}
        wrong = {mid: n for mid, n in per_id.items() if n != 1}
        if wrong:
            problems.append("Maildir copies per message (want 1 each): %s; %d files for %d "
                            "messages" % (_short(wrong), sum(counts.values()), MESSAGES))
        strays = sorted(set(counts) - set(ids))
        if strays:
            problems.append("unexpected messages in the Maildir: %s" % strays[:5])
        bad_proto = sorted(p for p in protocols if p != expect_protocol)
        if bad_proto:
            problems.append("Received: says %s for %d of %d delivered files (want %s)"
                            % (sorted(set(bad_proto)), len(bad_proto), len(protocols),
                               expect_protocol))
        accepted = POSTERN_ACCEPTED_RE.findall(srv.log())
        logged = _tally(p for _, p in accepted)
        if len(accepted) != MESSAGES or set(logged) != {expect_protocol}:
            problems.append("postern logged %d accepted messages for %d sent (protocol=: %s, "
                            "want %s)" % (len(accepted), MESSAGES, _short(logged),
                                          expect_protocol))
        tls_sessions = [l for l in peer.client_lines() if "TLS connection established" in l]
        if tls_level == "may" and len(tls_sessions) < MESSAGES:
            problems.append("Postfix logged %d TLS sessions for %d messages"
                            % (len(tls_sessions), MESSAGES))
        if tls_level == "none" and tls_sessions:
            problems.append("Postfix used TLS with smtp_tls_security_level = none: %s"
                            % tls_sessions[0])
        if problems:
            self.fail("relay through Postfix (smtp_tls_security_level = %s):\n- %s"
                      % (tls_level, "\n- ".join(problems)))

        # The chain holds: the id in each 250 Postfix logged is a delivered file.
        for qid in qids:
            sent = [SENT_AS_RE.search(l) for l in peer.client_lines() if "%s: to=<" % qid in l]
            sent = [m.group(1) for m in sent if m]
            self.assertEqual(len(sent), 1, "Postfix %s: %r" % (qid, sent))
            self.assertEqual(len(srv.files_for("alice", sent[0])), 1,
                             "postern queue id %s (Postfix %s) not in the Maildir"
                             % (sent[0], qid))

    # -- waiting, always bounded --

    def wait_postfix_done(self, peer, qids):
        """Wait until Postfix logged status=sent for every queue id (or
        the time is up); return {qid: [status, ...]}. When the reply to
        the end of data is lost, Postfix retries: at once in plain text
        (TLS "may" falls back when a TLS session fails), or after a
        deferral and the backoff. Waiting for the final status collects
        those duplicates too."""
        def statuses():
            return {q: peer.delivery_status(q) for q in qids}

        def done():
            return all("sent" in s for s in statuses().values())
        try:
            wait_until(done, scaled(30), interval=0.2, what="Postfix to send every message")
        except AssertionError:
            pass  # reported with everything else
        return statuses()

    def wait_postern_idle(self, srv):
        """Wait until postern delivered every message it accepted from
        the peer (each accepted queue id is also "removed"); None, or
        what is missing. Every copy postern accepted is in its log before
        Postfix can log the final status of that message (postern logs
        before it replies), so nothing arrives after this."""
        def pending():
            log = srv.log()
            return [q for q, _ in POSTERN_ACCEPTED_RE.findall(log)
                    if not re.search(r"%s: removed" % q, log)]
        try:
            wait_until(lambda: not pending(), scaled(15), interval=0.1,
                       what="postern to deliver")
            return None
        except AssertionError:
            return "postern has not delivered %s" % pending()


def _message(message_id):
    """A small message identified by its Message-ID (also in Subject:)."""
    return ("From: <%s>\r\nTo: <%s>\r\nSubject: postfix relay %s\r\n"
            "Message-ID: <%s>\r\n\r\nRelayed by a real Postfix.\r\n"
            % (SENDER, RECIPIENT, message_id, message_id))


def _maildir_census(srv, user):
    """({Message-ID: number of files}, [protocol of each file's postern
    Received: header])."""
    counts, protocols = {}, []
    folder = srv.maildir(user)
    for name in srv.maildir_new(user):
        with open(os.path.join(folder, name), "rb") as f:
            head = f.read().partition(b"\n\n")[0].decode("utf-8", "replace")
        head = unfold(head)
        m = MESSAGE_ID_RE.search(head)
        mid = m.group(1) if m else "(no Message-ID in %s)" % name
        counts[mid] = counts.get(mid, 0) + 1
        r = POSTERN_RECEIVED_RE.search(head)
        protocols.append(r.group(1) if r else "(no postern Received:)")
    return counts, protocols


def _tally(values):
    out = {}
    for v in values:
        out[v] = out.get(v, 0) + 1
    return out


def _short(mapping, n=8):
    items = sorted(mapping.items())
    text = ", ".join("%s: %s" % kv for kv in items[:n])
    return text + (", ... (%d in all)" % len(items) if len(items) > n else "")


if __name__ == "__main__":
    unittest.main()

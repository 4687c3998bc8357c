"""
test_lanes.py - local delivery in parallel and in-flow back-pressure
(issue 6), as an administrator would see them. A test-only LD_PRELOAD
library (preload/gatesync.c) holds the fdatasync of copies written into
chosen Maildirs until the test opens a gate, so a mailbox is slow for
exactly as long as the test says, and nothing here depends on how fast
the machine is:

- with delivery_lanes = 4, a mailbox stuck in the middle of a delivery
  does not hold up mail for the other mailboxes, and its own message is
  delivered once the disk answers; with delivery_lanes = 1 everything
  waits behind it (which shows what the lanes change);
- with every mailbox stuck, the messages beyond the queue manager's
  stock of flow tokens (in_flow_tokens) each wait in_flow_delay before
  they are committed: acceptance slows down, the worker says so in its
  log, and every message is still accepted and then delivered; once
  delivery catches up the tokens come back and nothing waits. With
  in_flow_delay = 0 nothing waits.
"""
import os
import re
import time

from harness import (PRELOAD_DIR, PosternTestCase, SmtpConn, make_message, queue_id_of,
                     scaled, smtplib_send, wait_until)

GATE_LIB = os.path.join(PRELOAD_DIR, "gatesync.so")
FLOW_LINE = re.compile(r"in-flow: delivery is behind: .* \(since start: waited=(\d+) "
                       r"timed_out=(\d+)\)")


class GatedDeliveryCase(PosternTestCase):
    """A server whose Maildir syncs matching `match` wait for a gate."""

    def start_gated(self, match, config, users=None):
        self.assertTrue(os.path.exists(GATE_LIB), "%s missing: run make check-integration"
                        % GATE_LIB)
        srv = self.start_server(start=False, config=config, users=users,
                                env={"LD_PRELOAD": GATE_LIB,
                                     "POSTERN_TEST_GATE_MATCH": match})
        self.gate = os.path.join(srv.dir, "gate-open")
        srv.env["POSTERN_TEST_GATE_FILE"] = self.gate
        # Whatever happens, never leave a process waiting at the gate.
        self.addCleanup(self.open_gate)
        srv.start()
        return srv

    def open_gate(self):
        with open(self.gate, "w"):
            pass

    def tmp_files(self, srv, user):
        try:
            return os.listdir(srv.maildir(user, "tmp"))
        except FileNotFoundError:
            return []

    def send_one(self, srv, rcpt, subject):
        return smtplib_send(srv.port, "sender@remote.test", [rcpt],
                            make_message(subject, to=rcpt))


class SlowMailboxTest(GatedDeliveryCase):

    USERS = ["alice", "bob", "carol", "slow"]
    OTHERS = 24

    def hold_up_slow_mailbox(self, lanes):
        """Start a server, get one message for slow@ stuck at the gate,
        then send OTHERS messages for the other users; their ids."""
        srv = self.start_gated("/example.test/slow/Maildir/tmp/",
                               {"delivery_lanes": str(lanes)}, users=self.USERS)
        self.srv = srv
        self.slow_id = self.send_one(srv, "slow@example.test", "slow mailbox")
        # Its copy is in slow's tmp/: the agent writing it waits at the gate.
        wait_until(lambda: self.tmp_files(srv, "slow"), scaled(10),
                   what="the copy for slow@ to be written")
        others = []
        for i in range(self.OTHERS):
            user = self.USERS[i % 3]
            others.append((user, self.send_one(srv, "%s@example.test" % user,
                                               "other mailbox %d" % i)))
        return srv, others

    def test_one_slow_mailbox_does_not_hold_up_the_rest(self):
        srv, others = self.hold_up_slow_mailbox(lanes=4)
        for user, qid in others:
            srv.wait_delivery(user, qid, timeout=scaled(20))
        # ...all while the slow mailbox's copy is still not durable.
        self.assertEqual(srv.files_for("slow", self.slow_id), [])
        self.assertEqual(len(self.tmp_files(srv, "slow")), 1)
        self.assertIn(self.slow_id, srv.spool_files("queue"))
        self.open_gate()
        srv.wait_delivery("slow", self.slow_id, timeout=scaled(20))
        wait_until(lambda: not srv.spool_files("queue"), scaled(10), what="an empty queue")
        for user, qid in others + [("slow", self.slow_id)]:
            self.assertEqual(len(srv.files_for(user, qid)), 1, "copies of %s" % qid)
        self.assertEqual(srv.spool_files("deferred"), [])
        self.assertEqual(srv.stop(), 0)

    def test_with_one_lane_everything_waits_behind_it(self):
        srv, others = self.hold_up_slow_mailbox(lanes=1)
        time.sleep(scaled(1.5))  # time enough for lanes to deliver, were there any
        delivered = [qid for user, qid in others if srv.files_for(user, qid)]
        self.assertEqual(delivered, [], "delivered past a stuck single lane")
        self.open_gate()
        for user, qid in others + [("slow", self.slow_id)]:
            srv.wait_delivery(user, qid, timeout=scaled(20))
        self.assertEqual(srv.stop(), 0)


class InFlowTest(GatedDeliveryCase):

    TOKENS = 4
    MESSAGES = 9
    DELAY = 1  # second

    def start_stalled(self, delay):
        srv = self.start_gated("/Maildir/tmp/",
                               {"workers": "1", "delivery_lanes": "1",
                                "in_flow_tokens": str(self.TOKENS),
                                "in_flow_delay": "%ds" % delay})
        # The queue manager has put its stock of tokens in the pipe.
        srv.wait_log(r"queue manager started")
        return srv

    def send_serially(self, srv, count, tag):
        """count messages on one connection, one after the other; each
        must be accepted. Returns the queue ids."""
        ids = []
        with SmtpConn(srv.port, timeout=scaled(20)) as c:
            c.ehlo()
            for i in range(count):
                self.start_data(c, "sender@remote.test", ["alice@example.test"])
                c.send("Subject: %s %d\r\n\r\nbody\r\n.\r\n" % (tag, i))
                r = c.reply(timeout=scaled(20))
                self.assertReply(r, 250)
                ids.append(queue_id_of(r.text))
            c.cmd("QUIT")
        return ids

    def flow_totals(self, srv):
        """(waited, timed_out) of the worker's last in-flow line."""
        lines = FLOW_LINE.findall(srv.log())
        return tuple(int(x) for x in lines[-1]) if lines else (0, 0)

    def test_acceptance_slows_down_while_delivery_is_stuck(self):
        srv = self.start_stalled(self.DELAY)
        start = time.monotonic()
        ids = self.send_serially(srv, self.MESSAGES, "stalled")
        took = time.monotonic() - start
        # Nothing was refused, nothing delivered yet (all are stuck), and
        # each message beyond the stock waited the whole delay.
        beyond = self.MESSAGES - self.TOKENS
        self.assertEqual(len(set(ids)), self.MESSAGES)
        self.assertEqual(srv.maildir_new("alice"), [])
        self.assertGreaterEqual(took, beyond * self.DELAY * 0.95,
                                "acceptance did not slow down: %.2f s" % took)
        wait_until(lambda: self.flow_totals(srv) == (beyond, beyond), scaled(15),
                   what="the worker's in-flow line (%d waited, all the whole delay)"
                   % beyond)
        # Delivery catches up: every accepted message arrives once, and
        # each gives its token back, so the next messages do not wait.
        self.open_gate()
        for qid in ids:
            srv.wait_delivery("alice", qid, timeout=scaled(20))
        wait_until(lambda: not srv.spool_files("queue"), scaled(10), what="an empty queue")
        more = self.send_serially(srv, self.TOKENS, "after")
        for qid in more:
            srv.wait_delivery("alice", qid, timeout=scaled(20))
        self.assertEqual(srv.stop(), 0)
        # The worker's last line (also written as it exits) still says so.
        self.assertEqual(self.flow_totals(srv), (beyond, beyond))
        self.assertEqual(len(srv.maildir_new("alice")), self.MESSAGES + self.TOKENS)

    def test_no_wait_when_in_flow_delay_is_off(self):
        srv = self.start_stalled(0)
        ids = self.send_serially(srv, self.MESSAGES, "off")
        self.assertEqual(srv.maildir_new("alice"), [])
        self.open_gate()
        for qid in ids:
            srv.wait_delivery("alice", qid, timeout=scaled(20))
        self.assertEqual(srv.stop(), 0)
        self.assertNotIn("in-flow:", srv.log())

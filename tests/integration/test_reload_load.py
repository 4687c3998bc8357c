"""
test_reload_load.py - reloads and stops under load: several smtplib
clients send mail without pause while SIGHUP reloads come one after the
other; no session is dropped (every command gets a reply, none a reset
or a silent close) and every message answered 250 lands in its Maildir
exactly once. SIGTERM drains: a transaction in the middle of DATA
finishes with 250, an idle session gets 421, postern exits 0, and the
message is delivered once after the restart.
"""
import collections
import smtplib
import threading
import time

from harness import (PosternTestCase, SmtpConn, make_message, queue_id_of, scaled,
                     wait_until)

USERS = ["alice", "bob", "carol"]
CLIENTS = 6
RELOADS = 8


class Client(threading.Thread):
    """Sends messages, a few per connection, until told to stop; keeps
    the queue ids of the 250s, the refusals, and anything that is no
    reply at all (a dropped session)."""

    def __init__(self, port, number, stop):
        super().__init__(daemon=True)
        self.port, self.number, self.stop = port, number, stop
        self.accepted = []  # (user, queue id)
        self.refused = []   # (code, text): a reply, but not 250
        self.dropped = []   # exceptions that are no SMTP reply

    def run(self):
        n = 0
        while not self.stop.is_set():
            try:
                with smtplib.SMTP("127.0.0.1", self.port, local_hostname="load.test",
                                  timeout=scaled(30)) as s:
                    code, text = s.ehlo()
                    if code != 250:
                        self.refused.append((code, text))
                        continue
                    for _ in range(3):
                        user = USERS[n % len(USERS)]
                        n += 1
                        msg = make_message(subject="load %d-%d" % (self.number, n))
                        code, text = s.mail("sender@remote.test")
                        if code != 250:
                            self.refused.append((code, text))
                            continue
                        code, text = s.rcpt("%s@example.test" % user)
                        if code != 250:
                            self.refused.append((code, text))
                            s.rset()
                            continue
                        code, text = s.data(msg.encode() if isinstance(msg, str) else msg)
                        if code == 250:
                            self.accepted.append((user, queue_id_of(text.decode())))
                        else:
                            self.refused.append((code, text))
            except smtplib.SMTPResponseException as e:  # a reply, e.g. 421
                self.refused.append((e.smtp_code, e.smtp_error))
            except (smtplib.SMTPServerDisconnected, OSError) as e:
                self.dropped.append(repr(e))


class ReloadUnderLoadTest(PosternTestCase):
    def test_reloads_lose_no_session_and_no_message(self):
        srv = self.start_server(config={"workers": "2"})
        stop = threading.Event()
        clients = [Client(srv.port, i, stop) for i in range(CLIENTS)]
        for c in clients:
            c.start()
        try:
            wait_until(lambda: sum(len(c.accepted) for c in clients) >= 20, scaled(30),
                       what="the clients to get going")
            for i in range(RELOADS):
                m = srv.reload(timeout=scaled(20))
                self.assertIn("starting generation %d" % (i + 2), m.group(0))
                time.sleep(0.3)
        finally:
            stop.set()
            for c in clients:
                c.join(scaled(60))
        self.assertFalse(any(c.is_alive() for c in clients), "a client hangs")
        dropped = [d for c in clients for d in c.dropped]
        self.assertEqual(dropped, [], "sessions dropped without a reply")
        refused = [r for c in clients for r in c.refused]
        self.assertEqual(refused, [], "refusals under reload (none is expected)")
        accepted = [a for c in clients for a in c.accepted]
        self.assertGreater(len(accepted), 40)
        self.assertEqual(len(set(q for _, q in accepted)), len(accepted))

        def delivered():
            return all(srv.files_for(user, qid) for user, qid in accepted)
        wait_until(delivered, scaled(60), what="every accepted message delivered")
        time.sleep(1)  # a second copy would show up now
        for user, qid in accepted:
            self.assertEqual(len(srv.files_for(user, qid)), 1, (user, qid))
        files = srv.all_maildir_files()
        total = sum(len(v) for v in files.values())
        self.assertEqual(total, len(accepted), "delivered messages nobody was told 250 about")
        per_user = collections.Counter(u for u, _ in accepted)
        for user in USERS:
            self.assertEqual(len(files.get("%s@example.test" % user, [])), per_user[user])
        srv.stop()


class DrainTest(PosternTestCase):
    def test_sigterm_lets_the_transaction_in_progress_finish(self):
        srv = self.start_server(config={"shutdown_timeout": "20s"})
        busy = SmtpConn(srv.port)
        self.addCleanup(busy.close)
        busy.ehlo()
        idle = SmtpConn(srv.port)
        self.addCleanup(idle.close)
        idle.ehlo()
        self.start_data(busy, "sender@remote.test", ["alice@example.test"])
        busy.send(b"Subject: half-way\r\n\r\nfirst half\r\n")
        srv.send_signal(15)
        srv.wait_log(r"smtp\[\d+\]: info: signal 15: draining")
        # the idle session is told, the busy one finishes its message
        r = idle.reply(timeout=scaled(10))
        self.assertReply(r, 421, "4.3.2")
        busy.send(b"second half\r\n.\r\n")
        r = busy.reply(timeout=scaled(10))
        self.assertReply(r, 250)
        qid = queue_id_of(r.text)
        # then the session ends: a 421 of the drain or the answer to QUIT
        self.assertIn(busy.cmd("QUIT").code, (221, 421))
        self.assertEqual(srv.stop(timeout=scaled(30)), 0)  # a second SIGTERM changes nothing
        srv.start()
        srv.wait_delivery("alice", qid, timeout=scaled(20))
        time.sleep(1)
        self.assertEqual(len(srv.files_for("alice", qid)), 1)
        srv.stop()

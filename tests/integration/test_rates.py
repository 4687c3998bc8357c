"""
test_rates.py - rates counted across both smtp workers by the anvil, with
short windows (issue 9): the warn level logs and sends notify_admin a
notice (once per window, whichever worker sees it); the block level
answers 451 4.7.1 and blocks the sender (client, ...) for
rate_block_time, on every worker, and the block ends; the site-wide
panic level refuses every client while the site is over it and tells the
administrator once; the ignore lists (senders, networks) are never
limited; a refused MAIL counts for nobody. Messages alternate between
the two workers (the other is stopped while a session starts).
"""
import time
import unittest

from harness import PosternTestCase, SmtpConn, scaled, wait_until
from limits_helpers import (LIMITS_BASE, connect_from, only_worker, send_one, smtp_workers,
                            worker_of)


def conf(**kw):
    c = dict(LIMITS_BASE)
    c.update({"rate_window": "3s", "rate_block_time": "3s", "notify_admin": "admin@example.test"})
    c.update({k: str(v) for k, v in kw.items()})
    return c


class RatesTest(PosternTestCase):

    def session_on(self, srv, pid, source=None):
        offset = srv.log_size()
        with only_worker(srv, pid):
            c = connect_from(srv, source) if source else SmtpConn(srv.port)
        self.addCleanup(c.close)
        self.assertEqual(worker_of(srv, c, offset), pid)
        self.assertEqual(c.greeting.code, 220)
        c.ehlo()
        return c

    def admin_notices(self, srv, subject_part):
        found = []
        for name in srv.maildir_new("admin"):
            with open(srv.maildir("admin") + "/" + name, "rb") as f:
                data = f.read().decode("utf-8", "replace")
            if subject_part in data:
                found.append(data)
        return found

    def test_sender_block_across_workers_and_its_end(self):
        srv = self.start_server(config=conf(sender_message_rate_block=3))
        a, b = smtp_workers(srv)
        ca, cb = self.session_on(srv, a), self.session_on(srv, b)
        for c in (ca, cb, ca):
            self.assertEqual(send_one(c, "fast@remote.test", "alice@example.test").code, 250)
        r = send_one(cb, "fast@remote.test", "alice@example.test")  # the 4th in 3 s
        self.assertEqual((r.code, r.status), (451, "4.7.1"), r)
        self.assertIn("too much mail from <fast@remote.test>", r.text)
        t_block = time.monotonic()
        srv.wait_log(r"rate: fast@remote\.test blocked for 3s: more than "
                     r"sender_message_rate_block = 3 messages in 3s")
        srv.wait_log(r"reject: MAIL from=<fast@remote\.test> code=451 4\.7\.1 "
                     r"reason=sender_message_rate_block")
        # blocked on the other worker too, whatever its rate
        r = send_one(ca, "fast@remote.test", "alice@example.test")
        self.assertEqual(r.code, 451)
        self.assertRegex(r.text, r"try again in [123] seconds")
        srv.wait_log(r"reason=blocked_sender")
        # another sender is not concerned
        self.assertEqual(send_one(ca, "slow@remote.test", "alice@example.test").code, 250)
        # the cool-down ends
        time.sleep(max(0, t_block + 3.2 - time.monotonic()))
        self.assertEqual(send_one(cb, "fast@remote.test", "alice@example.test").code, 250)
        # the block told the administrator
        wait_until(lambda: self.admin_notices(srv, "blocked for 3s: fast@remote.test"),
                   scaled(10), what="the block notice")

    def test_warn_logs_and_notifies_once(self):
        srv = self.start_server(config=conf(client_recipient_rate_warn=3, rate_window="30s"))
        a, b = smtp_workers(srv)
        ca, cb = self.session_on(srv, a), self.session_on(srv, b)
        for i, c in enumerate((ca, cb, ca, cb, ca)):
            self.assertEqual(send_one(c, "w%d@remote.test" % i, "bob@example.test").code, 250)
        m = srv.wait_log(r"smtp\[(\d+)\]: warning: rate: 127\.0\.0\.1/32 passed "
                         r"client_recipient_rate_warn: 4 recipients in 30s \(warn at 3\)")
        self.assertIn(int(m.group(1)), (a, b))
        notices = wait_until(lambda: self.admin_notices(srv, "rate warning: 127.0.0.1/32"),
                             scaled(10), what="the warning notice")
        self.assertIn("more than client_recipient_rate_warn (3)", notices[0])
        self.assertIn("Auto-Submitted: auto-generated", notices[0])
        time.sleep(0.5)
        self.assertEqual(srv.log().count("passed client_recipient_rate_warn"), 1)
        self.assertEqual(len(self.admin_notices(srv, "rate warning")), 1)

    def test_client_recipient_block_counts_rcpts(self):
        srv = self.start_server(config=conf(client_recipient_rate_block=4))
        a, b = smtp_workers(srv)
        ca, cb = self.session_on(srv, a), self.session_on(srv, b)
        self.assertEqual(ca.cmd("MAIL FROM:<many@remote.test>").code, 250)
        for u in ("alice", "bob", "carol"):
            self.assertEqual(ca.cmd("RCPT TO:<%s@example.test>" % u).code, 250)
        self.assertEqual(cb.cmd("MAIL FROM:<many@remote.test>").code, 250)
        self.assertEqual(cb.cmd("RCPT TO:<dave@example.test>").code, 250)
        r = cb.cmd("RCPT TO:<alice@example.test>")
        self.assertEqual((r.code, r.status), (451, "4.7.1"), r)
        self.assertIn("too much mail from your network", r.text)
        # blocked: new connections of the client are refused at once
        late = connect_from(srv, "127.0.0.1", greet=False)
        self.addCleanup(late.close)
        r = late.reply()
        self.assertEqual((r.code, r.status), (421, "4.7.1"), r)
        # another client goes on
        other = connect_from(srv, "127.0.0.2")
        self.addCleanup(other.close)
        other.ehlo()
        self.assertEqual(send_one(other, "x@remote.test", "alice@example.test").code, 250)

    def test_connection_rate(self):
        srv = self.start_server(config=conf(client_connection_rate_block=3,
                                            client_connection_limit=0))
        a, b = smtp_workers(srv)
        # from 127.0.0.2: the harness's own first connection came from .1
        for pid in (a, b, a):
            with only_worker(srv, pid):
                c = connect_from(srv, "127.0.0.2")
            self.assertEqual(c.greeting.code, 220)
            c.cmd("QUIT")
            c.close()
        offset = srv.log_size()
        with only_worker(srv, b):
            c = connect_from(srv, "127.0.0.2", greet=False)
            self.assertEqual(worker_of(srv, c, offset), b)  # accepted before b's peers resume
        self.addCleanup(c.close)
        r = c.reply()
        self.assertEqual((r.code, r.status), (421, "4.7.1"), r)
        self.assertIn("too many connections from your network", r.text)

    def test_site_panic(self):
        srv = self.start_server(config=conf(site_message_rate_panic=4))
        a, b = smtp_workers(srv)
        ca = self.session_on(srv, a)
        cb = self.session_on(srv, b, source="127.0.0.2")
        for i, c in enumerate((ca, cb, ca, cb)):
            self.assertEqual(send_one(c, "p%d@remote.test" % i, "carol@example.test").code, 250)
        t_over = time.monotonic()
        for c in (ca, cb):  # every client is refused, on every worker
            r = send_one(c, "late@remote.test", "carol@example.test")
            self.assertEqual((r.code, r.status), (451, "4.7.1"), r)
            self.assertIn("receives too much mail right now", r.text)
        srv.wait_log(r"error: rate: PANIC: the site passed site_message_rate_panic = 4 "
                     r"messages in 3s")
        self.assertEqual(srv.log().count("rate: PANIC"), 1, "said once")
        wait_until(lambda: self.admin_notices(srv, "PANIC: too many messages"), scaled(10),
                   what="the panic notice")
        # no block: once the window has slid on, mail flows again
        time.sleep(max(0, t_over + 6.2 - time.monotonic()))
        self.assertEqual(send_one(ca, "after@remote.test", "carol@example.test").code, 250)

    def test_ignore_lists(self):
        srv = self.start_server(config=conf(sender_message_rate_block=2,
                                            client_message_rate_block=3,
                                            limits_ignore_senders="vip@remote.test, trusted.test"))
        a, b = smtp_workers(srv)
        ca = self.session_on(srv, a)
        for i in range(5):
            self.assertEqual(send_one(ca, "vip@remote.test", "alice@example.test").code, 250)
            self.assertEqual(send_one(ca, "any%d@trusted.test" % i, "alice@example.test").code,
                             250)
        # the others are still limited
        self.assertEqual(send_one(ca, "x@remote.test", "alice@example.test").code, 250)
        self.assertEqual(send_one(ca, "x@remote.test", "alice@example.test").code, 250)
        self.assertEqual(send_one(ca, "x@remote.test", "alice@example.test").code, 451)
        # an ignored network is never limited
        srv2 = self.start_server(config=conf(sender_message_rate_block=1,
                                             limits_ignore_networks="127.0.0.0/8"))
        with SmtpConn(srv2.port) as c:
            c.ehlo()
            for _ in range(4):
                self.assertEqual(send_one(c, "y@remote.test", "alice@example.test").code, 250)

    def test_refused_mail_is_not_counted(self):
        """The client's rate does not count the MAIL its sender's block
        refused (all items or none)."""
        srv = self.start_server(config=conf(sender_message_rate_block=1,
                                            client_message_rate_block=3, rate_window="30s",
                                            rate_block_time="30s"))
        smtp_workers(srv)
        with SmtpConn(srv.port) as c:
            c.ehlo()
            self.assertEqual(send_one(c, "one@remote.test", "alice@example.test").code, 250)
            for _ in range(5):
                self.assertEqual(send_one(c, "one@remote.test", "alice@example.test").code, 451)
            self.assertEqual(send_one(c, "two@remote.test", "alice@example.test").code, 250)
            self.assertEqual(send_one(c, "three@remote.test", "alice@example.test").code, 250)


if __name__ == "__main__":
    unittest.main()

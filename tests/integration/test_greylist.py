"""
test_greylist.py - greylisting (issue 9; off by default, postgrey's
model): the first attempt of a triplet (client /24, sender, recipient)
gets 451 4.7.1, a retry before greylist_delay too, one after it passes
and the message is delivered; the triplet is shared by both smtp workers
and kept over a restart (LMDB); a client that passed greylist_auto_allow
triplets passes at once; a first attempt not retried within
greylist_retry_window, and entries not seen for greylist_expiry, are
forgotten; greylist_ignore_recipients and greylist_ignore_networks are
never greylisted; per-message senders (numbers, BATV) make one triplet.
Short test settings; smtplib and swaks, plain and STARTTLS.
"""
import smtplib
import subprocess
import time
import unittest

from harness import PosternTestCase, client_tls_context, make_message, scaled, wait_until
from limits_helpers import LIMITS_BASE, connect_from, only_worker, smtp_workers, worker_of

GREY = dict(LIMITS_BASE)
GREY.update({"greylist": "yes", "greylist_delay": "2s", "greylist_retry_window": "6s",
             "greylist_expiry": "8s", "greylist_auto_allow": "2"})


def conf(**kw):
    c = dict(GREY)
    c.update({k: str(v) for k, v in kw.items()})
    return c


class GreylistTest(PosternTestCase):

    def rcpt(self, srv, sender, rcpt, source="127.0.0.1", pid=None):
        """A new session (on worker pid if given); the RCPT's reply."""
        if pid is not None:
            offset = srv.log_size()
            with only_worker(srv, pid):
                c = connect_from(srv, source)
            self.assertEqual(worker_of(srv, c, offset), pid)
        else:
            c = connect_from(srv, source)
        self.addCleanup(c.close)
        c.ehlo()
        self.assertEqual(c.cmd("MAIL FROM:<%s>" % sender).code, 250)
        r = c.cmd("RCPT TO:<%s>" % rcpt)
        c.cmd("QUIT")
        return r

    def assert_greylisted(self, r):
        self.assertEqual((r.code, r.status), (451, "4.7.1"), r)
        self.assertIn("Greylisted", r.text)

    def test_first_451_retry_early_451_then_pass_across_workers(self):
        srv = self.start_server(config=conf())
        a, b = smtp_workers(srv)
        t0 = time.monotonic()
        r = self.rcpt(srv, "mta@remote.test", "alice@example.test", pid=a)
        self.assert_greylisted(r)
        self.assertIn("try again in 2 seconds", r.text)
        srv.wait_log(r"greylist: client=127\.0\.0\.1 network=127\.0\.0\.0/24 "
                     r"from=<mta@remote\.test> to=<alice@example\.test> new, try again in 2s")
        self.assert_greylisted(self.rcpt(srv, "mta@remote.test", "alice@example.test", pid=b))
        srv.wait_log(r"to=<alice@example\.test> early, try again in [12]s")
        time.sleep(max(0, t0 + 2.2 - time.monotonic()))
        # the retry passes (on the other worker than the first attempt),
        # and the message is delivered
        with only_worker(srv, b):
            with smtplib.SMTP("127.0.0.1", srv.port, local_hostname="mta.remote.test",
                              timeout=scaled(15)) as s:
                s.sendmail("mta@remote.test", ["alice@example.test"],
                           make_message(subject="greylisted once", sender="mta@remote.test"))
        srv.wait_log(r"from=<mta@remote\.test> size=\d+ nrcpt=1 ")
        wait_until(lambda: srv.maildir_new("alice"), scaled(10), what="the delivery")
        # the same client /24 and triplet from another address passes too
        self.assertEqual(self.rcpt(srv, "mta@remote.test", "alice@example.test",
                                   source="127.0.0.9").code, 250)

    def test_auto_allow_after_passes_and_expiry(self):
        srv = self.start_server(config=conf())
        smtp_workers(srv)
        t0 = time.monotonic()
        for rcpt in ("alice@example.test", "bob@example.test"):
            self.assert_greylisted(self.rcpt(srv, "list@remote.test", rcpt))
        time.sleep(max(0, t0 + 2.2 - time.monotonic()))
        for rcpt in ("alice@example.test", "bob@example.test"):  # two passes
            self.assertEqual(self.rcpt(srv, "list@remote.test", rcpt).code, 250)
        t_pass = time.monotonic()
        # the client is allowed now: a new triplet passes at once
        self.assertEqual(self.rcpt(srv, "someone@else.test", "carol@example.test").code, 250)
        # another /24 is still greylisted
        self.assert_greylisted(self.rcpt(srv, "someone@else.test", "carol@example.test",
                                         source="127.0.1.1"))
        # greylist_expiry (8 s) after its last pass the client is a stranger
        time.sleep(max(0, t_pass + 8.5 - time.monotonic()))
        self.assert_greylisted(self.rcpt(srv, "new@else.test", "carol@example.test"))

    def test_a_first_attempt_not_retried_in_time_starts_over(self):
        srv = self.start_server(config=conf(greylist_retry_window="3s", greylist_expiry="8s"))
        smtp_workers(srv)
        t0 = time.monotonic()
        self.assert_greylisted(self.rcpt(srv, "slow@remote.test", "dave@example.test"))
        time.sleep(max(0, t0 + 3.3 - time.monotonic()))
        r = self.rcpt(srv, "slow@remote.test", "dave@example.test")
        self.assert_greylisted(r)
        self.assertIn("try again in 2 seconds", r.text)  # new again, not "early"

    def test_ignored_recipients_and_networks(self):
        srv = self.start_server(config=conf(greylist_ignore_recipients="postmaster@example.test",
                                            greylist_ignore_networks="127.0.0.2/32"))
        smtp_workers(srv)
        self.assertEqual(self.rcpt(srv, "x@remote.test", "postmaster@example.test").code, 250)
        self.assertEqual(self.rcpt(srv, "x@remote.test", "alice@example.test",
                                   source="127.0.0.2").code, 250)
        self.assert_greylisted(self.rcpt(srv, "x@remote.test", "alice@example.test"))

    def test_sender_normalisation(self):
        """Per-message senders (numbers, BATV tags) make one triplet."""
        srv = self.start_server(config=conf())
        smtp_workers(srv)
        t0 = time.monotonic()
        self.assert_greylisted(self.rcpt(srv, "bounce-1234@lists.test", "bob@example.test"))
        time.sleep(max(0, t0 + 2.2 - time.monotonic()))
        self.assertEqual(self.rcpt(srv, "bounce-98765@lists.test", "bob@example.test").code, 250)
        self.assertEqual(self.rcpt(srv, "prvs=1234abcdef=bounce-5@lists.test",
                                   "bob@example.test").code, 250)

    def test_over_starttls_with_swaks_and_kept_over_a_restart(self):
        srv = self.start_server(tls=True, config=conf(greylist_expiry="60s",
                                                      greylist_retry_window="30s"))
        smtp_workers(srv)
        args = ["swaks", "--server", "127.0.0.1:%d" % srv.port, "--tls", "--from",
                "tls@remote.test", "--to", "carol@example.test", "--helo", "tls.remote.test",
                "--header", "Subject: greylisted over TLS"]
        t0 = time.monotonic()
        out = subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             timeout=scaled(30))
        text = out.stdout.decode("utf-8", "replace")
        self.assertNotEqual(out.returncode, 0, text)
        self.assertRegex(text, r"<~\*\s+451 4\.7\.1 Greylisted")
        time.sleep(max(0, t0 + 2.2 - time.monotonic()))
        out = subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             timeout=scaled(30))
        text = out.stdout.decode("utf-8", "replace")
        self.assertEqual(out.returncode, 0, text)
        self.assertRegex(text, r"<~\s+250 2\.0\.0 Ok: queued as")
        # a restart of postern keeps the triplet (the anvil's LMDB store)
        srv.stop()
        srv.start()
        smtp_workers(srv)
        with smtplib.SMTP("127.0.0.1", srv.port, local_hostname="tls.remote.test",
                          timeout=scaled(15)) as s:
            s.ehlo()
            s.starttls(context=client_tls_context())
            s.ehlo()
            s.mail("tls@remote.test")
            code, msg = s.rcpt("carol@example.test")
            self.assertEqual(code, 250, msg)

    def test_off_by_default(self):
        srv = self.start_server(config=dict(LIMITS_BASE))
        self.assertEqual(self.rcpt(srv, "x@remote.test", "alice@example.test").code, 250)
        self.assertNotIn("greylist", srv.log())


if __name__ == "__main__":
    unittest.main()

"""
test_behaviour.py - what a client's behaviour earns it (issue 9): early
talkers (anything before the banner: 554 5.5.1 and the end, with
greet_pause and without it), unauthorised pipelining (commands sent
before PIPELINING was offered: in the packet of EHLO, after HELO, after
STARTTLS before the new EHLO's reply: 503 5.5.0 and the end), and error
replies held back longer and longer past soft_error_limit, then 421 at
error_limit, without holding up the worker's other sessions. Real
server, raw sockets, smtplib and swaks, plain and STARTTLS.
"""
import os
import signal
import socket
import subprocess
import time
import unittest

from harness import PosternTestCase, SmtpConn, make_message, scaled, smtplib_send


def raw(srv):
    s = socket.create_connection(("127.0.0.1", srv.port), timeout=scaled(10))
    return s


def read_all(s, wait):
    """What the server sends until it closes (or wait seconds pass)."""
    s.settimeout(wait)
    data = b""
    try:
        while True:
            chunk = s.recv(4096)
            if not chunk:
                return data, True
            data += chunk
    except socket.timeout:
        return data, False
    except ConnectionResetError:
        return data, True


class EarlyTalkerTest(PosternTestCase):

    def test_talking_during_greet_pause_gets_554(self):
        srv = self.start_server()
        # the harness's own check that the server greets would not wait 5 s:
        # the pause comes with a reload
        srv.settings["greet_pause"] = "5s"
        srv.write_config()
        srv.reload(wait_old=True)
        s = raw(srv)
        self.addCleanup(s.close)
        t0 = time.monotonic()
        s.sendall(b"EHLO impatient.test\r\nMAIL FROM:<bot@remote.test>\r\n")
        data, closed = read_all(s, scaled(10))
        self.assertTrue(data.startswith(b"554 5.5.1 "), data)
        self.assertNotIn(b"220", data, "no banner for an early talker")
        self.assertNotIn(b"250", data, "nothing it sent was run")
        self.assertTrue(closed)
        self.assertLess(time.monotonic() - t0, 2.5, "refused at once, not after the pause")
        log = srv.wait_log(r"client=127\.0\.0\.1 early talker: \d+ bytes before the greeting "
                           r"\(greet_pause=5s\): \"EHLO impatient.test").group(0)
        self.assertIn("EHLO", log)
        srv.wait_log(r"reject: connect code=554 5\.5\.1 reason=early_talker")

    def test_a_patient_client_is_greeted_after_the_pause(self):
        srv = self.start_server(config={"greet_pause": "1s"})
        t0 = time.monotonic()
        c = SmtpConn(srv.port)
        self.addCleanup(c.close)
        self.assertEqual(c.greeting.code, 220)
        self.assertGreaterEqual(time.monotonic() - t0, 0.9)
        c.ehlo()
        # smtplib waits for the banner too: its mail goes through
        qid = smtplib_send(srv.port, "patient@remote.test", ["alice@example.test"],
                           make_message(subject="after the pause"))
        srv.wait_delivery("alice", qid)

    def test_bytes_waiting_when_the_banner_is_due_without_a_pause(self):
        """No greet_pause: what is already there when the banner goes out
        is early talk too. The workers are stopped while the client
        connects and talks, so its bytes wait in the kernel when the
        worker accepts."""
        srv = self.start_server(config={"greet_pause": "0"})
        srv.wait_roles(smtp=2, qmgr=1)
        workers = srv.role_pids("smtp")
        for p in workers:
            os.kill(p, signal.SIGSTOP)
        try:
            s = raw(srv)
            self.addCleanup(s.close)
            s.sendall(b"HELO too.early.test\r\n")
            time.sleep(0.2)
        finally:
            for p in workers:
                os.kill(p, signal.SIGCONT)
        data, closed = read_all(s, scaled(10))
        self.assertTrue(data.startswith(b"554 5.5.1 "), data)
        self.assertTrue(closed)
        srv.wait_log(r"early talker: .*\(greet_pause=0s\): \"HELO too.early.test")
        # a client that waits is greeted as usual
        with SmtpConn(srv.port) as c:
            self.assertEqual(c.greeting.code, 220)

    def test_early_talker_action_log_only_logs(self):
        srv = self.start_server(config={"greet_pause": "1s", "early_talker_action": "log",
                                        "reject_unauth_pipelining": "no"})
        s = raw(srv)
        self.addCleanup(s.close)
        s.sendall(b"EHLO impatient.test\r\nQUIT\r\n")
        data, closed = read_all(s, scaled(10))
        self.assertTrue(data.startswith(b"220 "), data)
        self.assertIn(b"250-PIPELINING", data)
        self.assertIn(b"221 2.0.0", data)
        srv.wait_log(r"early talker: .*\(allowed: early_talker_action = log\)")


class UnauthPipeliningTest(PosternTestCase):

    @classmethod
    def setUpClass(cls):
        cls.srv = cls.start_class_server(tls=True)

    def expect_503_and_close(self, c, srv):
        r = c.reply()
        self.assertEqual(r.code, 503, r)
        self.assertEqual(r.status, "5.5.0")
        self.assertIn("pipelining", r.text)
        self.assertTrue(c.closed_by_server(scaled(5)))

    def test_commands_in_the_packet_of_ehlo(self):
        c = SmtpConn(self.srv.port)
        self.addCleanup(c.close)
        c.send(b"EHLO bot.test\r\nMAIL FROM:<bot@remote.test>\r\nRCPT TO:<alice@example.test>\r\n")
        self.assertEqual(c.reply().code, 250)  # the EHLO itself came in time
        self.expect_503_and_close(c, self.srv)
        self.srv.wait_log(r"unauthorised pipelining: more input after \"EHLO bot.test\"")
        self.srv.wait_log(r"reject: unauthorised pipelining code=503 5\.5\.0")

    def test_commands_after_helo(self):
        c = SmtpConn(self.srv.port)
        self.addCleanup(c.close)
        c.send(b"HELO bot.test\r\nMAIL FROM:<bot@remote.test>\r\n")
        self.assertEqual(c.reply().code, 250)
        self.expect_503_and_close(c, self.srv)
        self.srv.wait_log(r"unauthorised pipelining: more input after \"HELO bot.test\"")
        # and after the reply to HELO (which offers no PIPELINING)
        c = SmtpConn(self.srv.port)
        self.addCleanup(c.close)
        self.assertEqual(c.cmd("HELO bot.test").code, 250)
        c.send(b"MAIL FROM:<bot@remote.test>\r\nRCPT TO:<alice@example.test>\r\n")
        self.assertEqual(c.reply().code, 250)
        self.expect_503_and_close(c, self.srv)
        self.srv.wait_log(r"unauthorised pipelining: more input after \"MAIL FROM:<bot@remote.te\" "
                          r"before its reply \(after HELO\)")

    def test_quit_sent_ahead_is_answered(self):
        c = SmtpConn(self.srv.port)
        self.addCleanup(c.close)
        c.send(b"HELO monitor.test\r\nQUIT\r\n")
        self.assertEqual(c.reply().code, 250)
        self.assertEqual(c.reply().code, 221)

    def test_commands_in_the_packet_of_ehlo_after_starttls(self):
        c = SmtpConn(self.srv.port)
        self.addCleanup(c.close)
        c.ehlo()
        c.starttls()
        c.send(b"EHLO bot.test\r\nMAIL FROM:<bot@remote.test>\r\n")
        self.assertEqual(c.reply().code, 250)
        self.expect_503_and_close(c, self.srv)

    def test_pipelining_as_offered_works(self):
        c = SmtpConn(self.srv.port)
        self.addCleanup(c.close)
        c.ehlo()
        c.starttls()
        c.ehlo()
        c.send(b"MAIL FROM:<good@remote.test>\r\nRCPT TO:<alice@example.test>\r\n"
               b"RCPT TO:<bob@example.test>\r\nDATA\r\n")
        self.assertEqual([r.code for r in c.replies(4)], [250, 250, 250, 354])
        c.send(b"Subject: pipelined\r\n\r\nfine\r\n.\r\n")
        self.assertEqual(c.reply().code, 250)

    def test_swaks_pipelining_over_starttls(self):
        out = subprocess.run(
            ["swaks", "--server", "127.0.0.1:%d" % self.srv.port, "--pipeline", "--tls",
             "--from", "swaks@remote.test", "--to", "bob@example.test",
             "--helo", "swaks.test", "--header", "Subject: swaks pipelined"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=scaled(30))
        text = out.stdout.decode("utf-8", "replace")
        self.assertEqual(out.returncode, 0, text)
        self.assertRegex(text, r"<~\s+250 2\.0\.0 Ok: queued as")

    def test_the_switch_off(self):
        srv = self.start_server(config={"reject_unauth_pipelining": "no"})
        c = SmtpConn(srv.port)
        self.addCleanup(c.close)
        c.send(b"EHLO lazy.test\r\nMAIL FROM:<lazy@remote.test>\r\n")
        self.assertEqual([r.code for r in c.replies(2)], [250, 250])


class ErrorDelayTest(PosternTestCase):

    def timed_reply(self, c, line):
        t0 = time.monotonic()
        r = c.cmd(line, timeout=scaled(15))
        return r, time.monotonic() - t0

    def check_delays(self, c):
        for n, (lo, hi) in enumerate([(0, 0.5), (0, 0.5), (0.9, 1.8), (1.9, 2.8)], 1):
            r, took = self.timed_reply(c, "BOGUS%d" % n)
            self.assertEqual(r.code, 500, r)
            self.assertTrue(lo <= took < scaled(hi), "error %d took %.2fs" % (n, took))
        r, took = self.timed_reply(c, "BOGUS5")  # error_limit: answered, then 421
        self.assertEqual(r.code, 500)
        self.assertLess(took, scaled(0.5))
        r = c.reply()
        self.assertEqual(r.code, 421, r)
        self.assertIn("too many errors", r.text)
        self.assertTrue(c.closed_by_server(scaled(5)))

    def test_delays_grow_then_421_and_the_worker_serves_others(self):
        srv = self.start_server(config={"workers": "1", "soft_error_limit": "2",
                                        "error_delay": "1s", "error_limit": "5"})
        c = SmtpConn(srv.port)
        self.addCleanup(c.close)
        c.ehlo()
        for n in range(2):
            self.assertEqual(c.cmd("BOGUS%d" % n).code, 500)
        # the third error waits 1 s, the fourth 2 s: meanwhile another
        # session of the same worker is answered at once
        c.send(b"BOGUS3\r\nBOGUS4\r\n")
        t0 = time.monotonic()
        with SmtpConn(srv.port) as other:
            self.assertEqual(other.greeting.code, 220)
            other.ehlo()
            self.assertEqual(other.cmd("NOOP").code, 250)
            self.assertLess(time.monotonic() - t0, 0.8, "the worker's loop was held up")
        self.assertEqual(c.reply(timeout=scaled(10)).code, 500)
        self.assertGreaterEqual(time.monotonic() - t0, 0.9)
        self.assertEqual(c.reply(timeout=scaled(10)).code, 500)
        self.assertGreaterEqual(time.monotonic() - t0, 2.8)
        r = c.cmd("BOGUS5")
        self.assertEqual(r.code, 500)
        self.assertEqual(c.reply().code, 421)
        self.assertTrue(c.closed_by_server(scaled(5)))

    def test_delays_over_starttls(self):
        srv = self.start_server(tls=True, config={"soft_error_limit": "2", "error_delay": "1s",
                                                  "error_limit": "5"})
        c = SmtpConn(srv.port)
        self.addCleanup(c.close)
        c.ehlo()
        c.starttls()
        c.ehlo()
        self.check_delays(c)

    def test_refusals_count_as_errors(self):
        """Relay refusals are errors too: a client probing recipients is
        slowed down the same way."""
        srv = self.start_server(config={"soft_error_limit": "1", "error_delay": "1s",
                                        "error_limit": "10", "mynetworks": "10.9.9.0/24"})
        c = SmtpConn(srv.port)
        self.addCleanup(c.close)
        c.ehlo()
        self.assertEqual(c.cmd("MAIL FROM:<probe@remote.test>").code, 250)
        self.assertEqual(c.cmd("RCPT TO:<x@elsewhere.test>").code, 554)
        r, took = self.timed_reply(c, "RCPT TO:<y@elsewhere.test>")
        self.assertEqual(r.code, 554)
        self.assertGreaterEqual(took, 0.9)


if __name__ == "__main__":
    unittest.main()

"""
test_tls_close.py - the last replies before postern closes a session
reach the client, over STARTTLS as in plain text (issue 5, defect 1):
the 221 for QUIT (RFC 5321 4.1.1.10), the 250 for a message followed by
a pipelined QUIT (RFC 2920), the 421 at the error limit and the 421 4.3.2
at SIGTERM (RFC 5321 3.8), each followed by a close and nothing else. The
README's own swaks commands finish cleanly, and Python's smtplib.quit()
does not raise. TlsCloseTest is the regression test; PlainCloseTest runs
the same dialogues without TLS, as the control.
"""
import re
import signal
import smtplib
import socket
import ssl
import subprocess
import unittest

from harness import (PosternTestCase, SmtpClosed, SmtpConn, client_tls_context, queue_id_of,
                     scaled)

SWAKS_LOST = "Remote host closed connection unexpectedly"


class CloseRepliesCases:
    """The dialogues; USE_TLS says whether they run after STARTTLS."""

    USE_TLS = True

    @classmethod
    def setUpClass(cls):
        cls.srv = cls.start_class_server(tls=True, config={"error_limit": "3"})

    def session(self, srv=None):
        """A greeted session after EHLO (and STARTTLS + EHLO again)."""
        c = SmtpConn((srv or self.srv).port)
        self.addCleanup(c.close)
        c.ehlo()
        if self.USE_TLS:
            c.starttls()
            c.ehlo()
        return c

    def expect(self, c, code, status=None, what="reply"):
        """The next reply, asserted; a close or a timeout before it is a
        test failure that says what was lost."""
        try:
            r = c.reply(timeout=scaled(10))
        except (SmtpClosed, ConnectionResetError, ssl.SSLError, socket.timeout) as e:
            self.fail("the %s (%d) never arrived%s: %s: %s"
                      % (what, code, " over TLS" if self.USE_TLS else "",
                         type(e).__name__, e))
        self.assertReply(r, code, status)
        return r

    def command(self, c, line, code, status=None, what="reply"):
        c.send(line + "\r\n")
        return self.expect(c, code, status, what)

    def assertClosedCleanly(self, c):
        self.assertTrue(c.closed_by_server(scaled(5)), "the server must close the session")
        self.assertEqual(c.buf, b"", "nothing may follow the last reply")

    # -- (a) QUIT --

    def test_quit_gets_221_then_close(self):
        c = self.session()
        self.command(c, "QUIT", 221, "2.0.0", "221 for QUIT")
        self.assertClosedCleanly(c)

    def test_smtplib_quit_does_not_raise(self):
        s = smtplib.SMTP("127.0.0.1", self.srv.port, local_hostname="client.test",
                         timeout=scaled(10))
        try:
            self.assertEqual(s.ehlo()[0], 250)
            if self.USE_TLS:
                self.assertEqual(s.starttls(context=client_tls_context())[0], 220)
                self.assertEqual(s.ehlo()[0], 250)
            self.assertEqual(s.noop()[0], 250)
            try:
                code, text = s.quit()
            except smtplib.SMTPServerDisconnected as e:
                self.fail("smtplib.quit() raised %r: the 221 was lost" % e)
            self.assertEqual(code, 221, text)
        finally:
            s.close()

    # -- (b) QUIT pipelined right after the end of data --

    def test_pipelined_quit_after_data_gets_250_and_221(self):
        c = self.session()
        c.send(b"MAIL FROM:<pipe@remote.test>\r\nRCPT TO:<alice@example.test>\r\nDATA\r\n")
        self.expect(c, 250, what="250 for MAIL")
        self.expect(c, 250, what="250 for RCPT")
        self.expect(c, 354, what="354 for DATA")
        token = "close-%s" % ("tls" if self.USE_TLS else "plain")
        # One write: the message, its end, and QUIT (as Postfix sends it).
        c.send(("Subject: %s\r\n\r\nQUIT follows in the same packet.\r\n.\r\nQUIT\r\n"
                % token).encode())
        r = self.expect(c, 250, "2.0.0", "250 for the message")
        qid = queue_id_of(r.text)
        self.expect(c, 221, "2.0.0", "221 for the pipelined QUIT")
        self.assertClosedCleanly(c)
        _, data = self.srv.wait_delivery("alice", qid)
        self.assertIn(("Subject: %s" % token).encode(), data)
        self.assertEqual(len(self.srv.files_for("alice", qid)), 1)

    # -- (c) the error limit --

    def test_error_limit_421_arrives_before_close(self):
        c = self.session()
        for n in (1, 2, 3):
            self.command(c, "BOGUS%d" % n, 500, what="500 for error %d" % n)
        r = self.expect(c, 421, "4.7.0", "421 at the error limit")
        self.assertIn("too many errors", r.text)
        self.assertClosedCleanly(c)

    # -- (d) the README's swaks commands --

    def test_readme_swaks_command_exits_zero(self):
        cmd = ["swaks", "--server", "127.0.0.1:%d" % self.srv.port,
               "--to", "postmaster@example.test"] + (["-tls"] if self.USE_TLS else [])
        try:
            r = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, timeout=scaled(30))
        except FileNotFoundError:
            self.fail("swaks is not installed (tools/install-deps.sh installs it)")
        out = r.stdout.decode("utf-8", "replace")
        if SWAKS_LOST in out:
            self.fail("swaks lost the end of the dialogue (exit %d); it ends:\n%s"
                      % (r.returncode, "\n".join(out.splitlines()[-4:])))
        self.assertEqual(r.returncode, 0, "%s exited %d:\n%s" % (" ".join(cmd), r.returncode, out))
        arrow = "<~" if self.USE_TLS else "<-"
        if self.USE_TLS:
            self.assertIn("=== TLS started", out)
        self.assertRegex(out, r"(?m)^%s  221 " % arrow)
        m = re.search(r"(?m)^%s  250 .*queued as ([0-9A-F]{19})" % arrow, out)
        self.assertIsNotNone(m, out)
        self.srv.wait_delivery("admin", m.group(1))

    # -- (e) SIGTERM --

    def test_sigterm_idle_session_gets_421(self):
        srv = self.start_server(tls=True)
        c = self.session(srv)
        srv.send_signal(signal.SIGTERM)
        self.expect(c, 421, "4.3.2", "421 at shutdown")
        self.assertClosedCleanly(c)
        self.assertEqual(srv.proc.wait(scaled(20)), 0, srv.log_tail())


class TlsCloseTest(CloseRepliesCases, PosternTestCase):
    """Over STARTTLS: the regression test for issue 5, defect 1."""

    USE_TLS = True


class PlainCloseTest(CloseRepliesCases, PosternTestCase):
    """The same dialogues in plain text: the control."""

    USE_TLS = False


if __name__ == "__main__":
    unittest.main()

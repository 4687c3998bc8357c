"""
test_auth.py - SMTP AUTH and the submission listeners (issue 11) with
real clients: Python's smtplib (STARTTLS on the submission port,
SMTP_SSL on the smtps port), raw dialogues for the replies smtplib
hides, and swaks --auth. Logins are checked by the auth process against
the users file (the harness writes {PLAIN}secret for every user; one
test uses a real yescrypt hash); relaying needs a login; the envelope
sender must belong to the user; failed logins are throttled (535, then
454 for a banned client); the Received: field says ESMTPSA and never the
password.
"""
import base64
import ctypes
import os
import shutil
import smtplib
import socket
import ssl
import subprocess
import time
import unittest

from harness import (PosternTestCase, SmtpConn, client_tls_context, free_port, make_message,
                     queue_id_of, scaled, split_message, unfold)


def b64(text):
    return base64.b64encode(text.encode()).decode()


def plain(user, password, authzid=""):
    return b64("%s\0%s\0%s" % (authzid, user, password))


def crypt_hash(prefix, password, count=0):
    """A crypt(3) hash made by libcrypt itself with a new setting of prefix
    ($y$ yescrypt, $6$ SHA-512, $2b$ bcrypt): what mkpasswd and doveadm
    pw write (Python's crypt module is going away)."""
    lib = ctypes.CDLL("libcrypt.so.1")
    lib.crypt_gensalt.restype = ctypes.c_char_p
    lib.crypt_gensalt.argtypes = [ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p, ctypes.c_int]
    lib.crypt.restype = ctypes.c_char_p
    lib.crypt.argtypes = [ctypes.c_char_p, ctypes.c_char_p]
    setting = lib.crypt_gensalt(prefix.encode(), count, None, 0)
    return lib.crypt(password.encode(), setting).decode()


class SubmissionTest(PosternTestCase):
    """One server with the three listeners; port 25 does not offer AUTH."""

    @classmethod
    def setUpClass(cls):
        cls.sub_port, cls.smtps_port = free_port(), free_port()
        cls.srv = cls.start_class_server(tls=True, config={
            "submission_listen": "127.0.0.1:%d" % cls.sub_port,
            "smtps_listen": "127.0.0.1:%d" % cls.smtps_port,
            "mynetworks": "",  # relaying from loopback needs a login too
            "received_auth_user": "yes",
            "auth_failure_delay": "0",
            "auth_client_ban_failures": "100",  # the tests share one client address
        })

    def submission(self):
        s = smtplib.SMTP("127.0.0.1", self.sub_port, local_hostname="client.test",
                         timeout=scaled(15))
        self.addCleanup(s.close)
        return s

    def smtps(self):
        s = smtplib.SMTP_SSL("127.0.0.1", self.smtps_port, local_hostname="client.test",
                             timeout=scaled(15), context=client_tls_context())
        self.addCleanup(s.close)
        return s

    def raw_submission_tls(self):
        c = SmtpConn(self.sub_port)
        self.addCleanup(c.close)
        c.ehlo()
        c.starttls()
        c.ehlo()
        return c

    def test_login_over_starttls_on_submission_then_relay_and_local(self):
        s = self.submission()
        s.ehlo()
        self.assertTrue(s.has_extn("starttls"))
        self.assertFalse(s.has_extn("auth"), "AUTH offered in clear text")
        s.starttls(context=client_tls_context())
        s.ehlo()
        self.assertEqual(s.esmtp_features.get("auth", "").split(), ["PLAIN", "LOGIN"])
        code, text = s.login("alice@example.test", "secret")
        self.assertEqual((code, text[:5]), (235, b"2.7.0"))
        code, _ = s.mail("alice@example.test")
        self.assertEqual(code, 250)
        self.assertEqual(s.rcpt("someone@remote.test")[0], 250)  # relayed for a login
        self.assertEqual(s.rcpt("bob@example.test")[0], 250)
        code, text = s.data(make_message("submitted", sender="alice@example.test",
                                         to="bob@example.test"))
        self.assertEqual(code, 250, text)
        qid = queue_id_of(text.decode())
        _, data = self.srv.wait_delivery("bob", qid)
        head, _ = split_message(data)
        self.assertRegex(unfold(head), r"Received: from client\.test \(\[127\.0\.0\.1\]\)\s+by "
                         r"mx\.example\.test \(postern\) with ESMTPSA \(TLSv1\.[23]:")
        self.assertIn("(authenticated as alice@example.test)", unfold(head))
        self.assertNotIn(b"secret", data)

    def test_smtps_implicit_tls_login_and_delivery(self):
        s = self.smtps()
        s.ehlo()
        self.assertFalse(s.has_extn("starttls"), "STARTTLS offered inside TLS")
        self.assertIn("PLAIN", s.esmtp_features.get("auth", ""))
        self.assertIsNotNone(s.sock.version())
        self.assertEqual(s.login("carol@example.test", "secret")[0], 235)
        s.sendmail("carol@example.test", ["dave@example.test"],
                   make_message("over 465", sender="carol@example.test", to="dave@example.test"))
        self.srv.wait_log(r"from=<carol@example\.test>")
        names = self.srv.maildir_new("dave")
        deadline = time.monotonic() + scaled(10)
        while not names and time.monotonic() < deadline:
            time.sleep(0.05)
            names = self.srv.maildir_new("dave")
        self.assertTrue(names)
        with open(os.path.join(self.srv.maildir("dave"), names[-1]), "rb") as f:
            self.assertIn(b"with ESMTPSA (TLSv1.", f.read())

    def test_submission_needs_a_login_before_mail(self):
        c = self.raw_submission_tls()
        self.assertReply(c.cmd("MAIL FROM:<alice@example.test>"), 530, "5.7.0")
        self.assertReply(c.cmd("AUTH PLAIN " + plain("alice@example.test", "secret")), 235,
                         "2.7.0")
        self.assertReply(c.cmd("MAIL FROM:<alice@example.test>"), 250)
        self.assertReply(c.cmd("AUTH PLAIN " + plain("alice@example.test", "secret")), 503,
                         "5.5.1")

    def test_auth_in_clear_text_is_refused_with_538(self):
        c = SmtpConn(self.sub_port)
        self.addCleanup(c.close)
        r = c.ehlo()
        self.assertNotIn("AUTH PLAIN LOGIN", r.lines)
        self.assertReply(c.cmd("AUTH PLAIN " + plain("alice@example.test", "secret")), 538,
                         "5.7.11")
        self.assertReply(c.cmd("MAIL FROM:<alice@example.test>"), 530, "5.7.0")

    def test_port_25_offers_no_auth_and_refuses_relay(self):
        c = SmtpConn(self.srv.port)
        self.addCleanup(c.close)
        c.ehlo()
        c.starttls()
        r = c.ehlo()
        self.assertFalse([l for l in r.lines if l.startswith("AUTH")], r)
        self.assertReply(c.cmd("AUTH PLAIN " + plain("alice@example.test", "secret")), 502,
                         "5.5.1")
        self.assertReply(c.cmd("MAIL FROM:<x@remote.test>"), 250)
        self.assertReply(c.cmd("RCPT TO:<someone@remote.test>"), 554, "5.7.1")

    def test_wrong_password_and_unknown_user_get_535(self):
        c = self.raw_submission_tls()
        self.assertReply(c.cmd("AUTH PLAIN " + plain("alice@example.test", "wrong")), 535,
                         "5.7.8")
        self.assertReply(c.cmd("AUTH PLAIN " + plain("nobody@example.test", "secret")), 535,
                         "5.7.8")
        log = self.srv.log()
        self.assertRegex(log, r"login: user=alice@example\.test client=127\.0\.0\.1 "
                         r"service=submission session=\S+ status=failed reason=\"wrong password\"")
        self.assertNotIn("wrong\"", log.replace('reason="wrong password"', ""))

    def test_login_mechanism_and_replies_of_the_exchange(self):
        c = self.raw_submission_tls()
        self.assertReply(c.cmd("AUTH LOGIN"), 334)
        self.assertEqual(c.cmd(b64("dave@example.test")).lines, ["UGFzc3dvcmQ6"])
        self.assertReply(c.cmd(b64("secret")), 235, "2.7.0")
        c = self.raw_submission_tls()
        r = c.cmd("AUTH LOGIN " + b64("dave@example.test"))
        self.assertEqual((r.code, r.lines), (334, ["UGFzc3dvcmQ6"]))
        self.assertReply(c.cmd("*"), 501)  # cancelled
        self.assertReply(c.cmd("AUTH PLAIN"), 334)
        self.assertReply(c.cmd("not base64!"), 501, "5.5.2")
        self.assertReply(c.cmd("AUTH PLAIN =="), 501, "5.5.2")
        self.assertReply(c.cmd("AUTH CRAM-MD5"), 504, "5.5.4")
        self.assertReply(c.cmd("AUTH PLAIN " + plain("dave@example.test", "secret",
                                                      authzid="alice@example.test")), 535)
        # RFC 4954: a response line of up to 12288 octets is read; longer is 500 5.5.6
        self.assertReply(c.cmd("AUTH PLAIN"), 334)
        self.assertReply(c.cmd("A" * 13000), 500, "5.5.6")
        self.assertReply(c.cmd("AUTH PLAIN " + "QUFB" * 2500), 535)  # 10 kB, decoded: no NULs
        self.assertReply(c.cmd("NOOP"), 250)

    def test_envelope_sender_must_belong_to_the_user(self):
        c = self.raw_submission_tls()
        self.assertReply(c.cmd("AUTH PLAIN " + plain("alice@example.test", "secret")), 235)
        self.assertReply(c.cmd("MAIL FROM:<bob@example.test>"), 553, "5.7.1")
        self.assertReply(c.cmd("MAIL FROM:<someone@remote.test>"), 553, "5.7.1")
        self.assertReply(c.cmd("MAIL FROM:<admin@example.test>"), 553, "5.7.1")
        self.assertReply(c.cmd("MAIL FROM:<postmaster@example.test>"), 553, "5.7.1")
        self.assertReply(c.cmd("MAIL FROM:<team@example.test>"), 250)  # an alias to alice
        self.assertReply(c.cmd("RSET"), 250)
        self.assertReply(c.cmd("MAIL FROM:<Alice@Example.Test> AUTH=<>"), 250)
        self.assertReply(c.cmd("RSET"), 250)
        self.assertReply(c.cmd("MAIL FROM:<>"), 250)

    @unittest.skipUnless(shutil.which("swaks"), "swaks not installed")
    def test_swaks_auth_login_and_plain(self):
        for mech in ("PLAIN", "LOGIN"):
            out = subprocess.run(
                ["swaks", "--server", "127.0.0.1", "--port", str(self.sub_port), "--tls",
                 "--auth", mech, "--auth-user", "admin@example.test", "--auth-password",
                 "secret", "--from", "admin@example.test", "--to", "alice@example.test",
                 "--helo", "client.test", "--header", "Subject: swaks " + mech],
                capture_output=True, text=True, timeout=scaled(30))
            self.assertEqual(out.returncode, 0, out.stdout + out.stderr)
            self.assertIn("235 2.7.0", out.stdout)
            self.assertRegex(out.stdout, r"250 2\.0\.0 Ok: queued as [0-9A-F]{19}")


class ThrottleTest(PosternTestCase):

    def test_failures_delay_then_ban_with_454_even_for_the_right_password(self):
        port = free_port()
        srv = self.start_server(tls=True, config={
            "submission_listen": "127.0.0.1:%d" % port, "auth_failure_delay": "1s",
            "auth_failure_delay_max": "2s", "auth_client_ban_failures": "3",
            "auth_ban_time": "1h", "error_delay": "0"})
        c = SmtpConn(port)
        self.addCleanup(c.close)
        c.ehlo()
        c.starttls()
        c.ehlo()
        took = []
        for _ in range(3):
            t0 = time.monotonic()
            self.assertReply(c.cmd("AUTH PLAIN " + plain("bob@example.test", "guess"),
                                   timeout=scaled(20)), 535, "5.7.8")
            took.append(time.monotonic() - t0)
        self.assertGreaterEqual(took[0], 0.9)   # the first failure waits 1 s
        self.assertGreaterEqual(took[1], 1.9)   # then 2 s (the maximum)
        self.assertReply(c.cmd("AUTH PLAIN " + plain("bob@example.test", "secret")), 454,
                         "4.7.0")
        self.assertRegex(srv.log(), r"status=failed reason=\"wrong password\" banned=yes")
        self.assertRegex(srv.log(), r"status=throttled reason=\"client banned")
        # a new connection from the same client is still banned
        d = SmtpConn(port)
        self.addCleanup(d.close)
        d.ehlo()
        d.starttls()
        d.ehlo()
        self.assertReply(d.cmd("AUTH PLAIN " + plain("bob@example.test", "secret")), 454,
                         "4.7.0")


    def test_a_user_attacked_from_many_addresses_is_banned(self):
        # loopback is a /8: each connection comes from its own address
        srv = self.start_server(config={
            "smtp_auth": "yes", "auth_cleartext_networks": "127.0.0.0/8",
            "auth_failure_delay": "0", "auth_client_ban_failures": "3",
            "auth_user_ban_failures": "4", "error_delay": "0"})

        def attempt(source, password, user="dave@example.test"):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind((source, 0))
            sock.connect(("127.0.0.1", srv.port))
            c = SmtpConn.__new__(SmtpConn)
            c.timeout, c.sock, c.buf = scaled(10), sock, b""
            try:
                c.sock.settimeout(c.timeout)
                c.reply()
                c.ehlo()
                return c.cmd("AUTH PLAIN " + plain(user, password))
            finally:
                c.close()
        for source in ("127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5"):
            self.assertReply(attempt(source, "guess"), 535, "5.7.8")
        # the user is banned wherever the next try comes from
        self.assertReply(attempt("127.0.0.6", "secret"), 454, "4.7.0")
        self.assertRegex(srv.log(), r"status=throttled reason=\"user banned after failed logins\"")
        # another user from a fresh address is not
        self.assertReply(attempt("127.0.0.7", "secret", "carol@example.test"), 235)
        # unknown users count for the client only: three from one address ban it
        for _ in range(3):
            self.assertReply(attempt("127.0.0.8", "x", "nobody%d@example.test" % _), 535)
        self.assertReply(attempt("127.0.0.8", "secret", "carol@example.test"), 454, "4.7.0")


    def test_own_login_does_not_clear_the_clients_failures(self):
        # An attacker with an account of their own must not be able to
        # reset its client's count by logging in between guesses at
        # other users' passwords (password spraying): a success forgets
        # the user's failures, the client's expire with auth_ban_time.
        srv = self.start_server(config={
            "smtp_auth": "yes", "auth_cleartext_networks": "127.0.0.0/8",
            "auth_failure_delay": "0", "auth_client_ban_failures": "3",
            "auth_user_ban_failures": "100", "error_delay": "0"})

        def attempt(user, password):
            c = SmtpConn(srv.port)
            try:
                c.ehlo()
                return c.cmd("AUTH PLAIN " + plain(user, password))
            finally:
                c.close()
        for victim in ("alice", "bob"):
            self.assertReply(attempt(victim + "@example.test", "guess"), 535, "5.7.8")
            self.assertReply(attempt("carol@example.test", "secret"), 235)
        self.assertReply(attempt("dave@example.test", "guess"), 535, "5.7.8")  # the third
        self.assertReply(attempt("carol@example.test", "secret"), 454, "4.7.0")
        self.assertRegex(srv.log(), r"status=throttled reason=\"client banned")


class CleartextAndHashTest(PosternTestCase):

    def test_cleartext_network_and_yescrypt_hash_on_port_25(self):
        srv = self.start_server(start=False, config={
            "smtp_auth": "yes", "auth_cleartext_networks": "127.0.0.0/8", "mynetworks": ""})
        users = {"erin": ("{SHA512-CRYPT}" + crypt_hash("$6$", "s3cret pass"), "s3cret pass"),
                 "frank": (crypt_hash("$y$", "yes pass"), "yes pass"),
                 "gabe": ("{BLF-CRYPT}" + crypt_hash("$2b$", "blow fish"), "blow fish"),
                 "hank": ("{CRYPT}" + crypt_hash("$y$", "crypt pass"), "crypt pass")}
        self.assertTrue(users["frank"][0].startswith("$y$"))
        with open(srv.users_path, "a") as f:
            for name, (field, _) in users.items():
                f.write("%s@example.test:%s::::::\n" % (name, field))
        srv.start()
        c = SmtpConn(srv.port)
        self.addCleanup(c.close)
        r = c.ehlo()
        self.assertIn("AUTH PLAIN LOGIN", r.lines)  # in clear text, for this network
        self.assertReply(c.cmd("AUTH PLAIN " + plain("erin@example.test", "s3cret pass")), 235)
        self.assertReply(c.cmd("MAIL FROM:<erin@example.test>"), 250)
        self.assertReply(c.cmd("RCPT TO:<x@remote.test>"), 250)
        self.assertReply(c.cmd("AUTH PLAIN " + plain("erin@example.test", "s3cret pass")), 503)
        for name, (_, password) in users.items():
            d = SmtpConn(srv.port)
            self.addCleanup(d.close)
            d.ehlo()
            self.assertReply(d.cmd("AUTH PLAIN " + plain(name + "@example.test", password + "x")),
                             535, "5.7.8", name)
            self.assertReply(d.cmd("AUTH PLAIN " + plain(name + "@example.test", password)),
                             235, "2.7.0", name)
        # not logged in: no relay on port 25
        e = SmtpConn(srv.port)
        self.addCleanup(e.close)
        e.ehlo()
        self.assertReply(e.cmd("MAIL FROM:<x@remote.test>"), 250)
        self.assertReply(e.cmd("RCPT TO:<y@remote.test>"), 554, "5.7.1")

    def test_unknown_users_and_locked_accounts_take_as_long_as_a_wrong_password(self):
        # Most users have bcrypt hashes of cost 10 (~60 ms here): a login
        # for a user who does not exist, whose account is locked, or whose
        # password is stored in clear, must cost as much, or timing tells
        # which addresses have accounts (and which are weak).
        # The auth process used to check unknown users against a yescrypt
        # hash of its own (~15 ms) and locked accounts against nothing.
        srv = self.start_server(start=False, users=[], config={
            "smtp_auth": "yes", "auth_cleartext_networks": "127.0.0.0/8",
            "auth_failure_delay": "0", "auth_client_ban_failures": "0",
            "auth_user_ban_failures": "0"})
        with open(srv.users_path, "a") as f:
            for name in ("ann", "ben", "cat", "dan"):
                f.write("%s@example.test:{BLF-CRYPT}%s::::::\n"
                        % (name, crypt_hash("$2b$", "pw " + name, count=10)))
            f.write("locked@example.test:{BLF-CRYPT}!%s::::::\n"
                    % crypt_hash("$2b$", "pw", count=10))
            f.write("clear@example.test:{PLAIN}pw::::::\n")
        srv.start()

        def fastest(user):
            times = []
            for _ in range(6):
                c = SmtpConn(srv.port)  # one failure per session: no error delay
                self.addCleanup(c.close)
                c.ehlo()
                start = time.monotonic()
                self.assertReply(c.cmd("AUTH PLAIN " + plain(user, "wrong")), 535)
                times.append(time.monotonic() - start)
                c.close()
            return min(times)
        known = fastest("ann@example.test")
        c = SmtpConn(srv.port)
        self.addCleanup(c.close)
        c.ehlo()
        self.assertReply(c.cmd("AUTH PLAIN " + plain("clear@example.test", "pw")), 235)
        for user in ("nobody@example.test", "locked@example.test", "clear@example.test"):
            other = fastest(user)
            self.assertLess(abs(other - known), max(0.02, known / 3),
                            "%s: %.1f ms, a known user: %.1f ms" % (user, other * 1000,
                                                                     known * 1000))

    def test_plain_text_refused_outside_the_cleartext_networks(self):
        srv = self.start_server(config={"smtp_auth": "yes"})
        c = SmtpConn(srv.port)
        self.addCleanup(c.close)
        r = c.ehlo()
        self.assertFalse([l for l in r.lines if l.startswith("AUTH")], r)
        self.assertReply(c.cmd("AUTH LOGIN"), 538, "5.7.11")

    def test_sender_check_off(self):
        port = free_port()
        srv = self.start_server(tls=True, config={
            "submission_listen": "127.0.0.1:%d" % port, "auth_sender_check": "no"})
        c = SmtpConn(port)
        self.addCleanup(c.close)
        c.ehlo()
        c.starttls()
        c.ehlo()
        self.assertReply(c.cmd("AUTH PLAIN " + plain("alice@example.test", "secret")), 235)
        self.assertReply(c.cmd("MAIL FROM:<bob@example.test>"), 250)

    def test_reload_gives_the_auth_process_the_new_users(self):
        port = free_port()
        srv = self.start_server(tls=True, config={"submission_listen": "127.0.0.1:%d" % port})
        srv.wait_log(r"auth: 5 users with passwords")
        auth = srv.role_pids("auth")
        self.assertEqual(len(auth), 1)

        def login(user, password):
            c = SmtpConn(port)
            try:
                c.ehlo()
                c.starttls()
                c.ehlo()
                return c.cmd("AUTH PLAIN " + plain(user, password))
            finally:
                c.close()
        self.assertReply(login("gina@example.test", "new"), 535)
        with open(srv.users_path, "a") as f:
            f.write("gina@example.test:{PLAIN}new::::::\n")
        offset = srv.log_size()
        srv.reload(wait_old=True)
        srv.wait_log(r"auth: 6 users with passwords", since=offset)
        self.assertReply(login("gina@example.test", "new"), 235)
        self.assertEqual(srv.role_pids("auth"), auth, "the auth process is kept over reloads")


class AuthProcessTest(PosternTestCase):
    """The session's side of the wait, and the auth process going away."""

    @classmethod
    def setUpClass(cls):
        cls.sub_port = free_port()
        cls.srv = cls.start_class_server(tls=True, config={
            "submission_listen": "127.0.0.1:%d" % cls.sub_port,
            "smtp_auth": "yes", "auth_cleartext_networks": "127.0.0.0/8",
            "auth_client_ban_failures": "100"})
        cls.srv.wait_log(r"auth ready")

    def session(self):
        c = SmtpConn(self.srv.port)
        self.addCleanup(c.close)
        c.ehlo()
        return c

    def test_pipelined_commands_wait_for_the_login(self):
        c = self.session()
        c.send("AUTH PLAIN %s\r\nMAIL FROM:<alice@example.test>\r\nRCPT TO:<x@remote.test>\r\n"
               "RSET\r\n" % plain("alice@example.test", "secret"))
        r = c.replies(4)
        self.assertEqual([x.code for x in r], [235, 250, 250, 250], r)

    def test_cleartext_login_is_esmtpa_in_received(self):
        c = self.session()
        self.assertReply(c.cmd("AUTH PLAIN " + plain("bob@example.test", "secret")), 235)
        self.assertReply(c.cmd("MAIL FROM:<bob@example.test>"), 250)
        self.assertReply(c.cmd("RCPT TO:<carol@example.test>"), 250)
        self.assertReply(c.cmd("DATA"), 354)
        qid = self.send_data_queued(c, make_message("esmtpa", sender="bob@example.test",
                                                     to="carol@example.test") + ".\r\n")
        _, data = self.srv.wait_delivery("carol", qid)
        head, _ = split_message(data)
        self.assertIn("with ESMTPA id", unfold(head))
        self.assertNotIn("authenticated as", head)  # received_auth_user = no

    def test_client_gone_while_its_password_is_checked(self):
        for _ in range(20):
            c = SmtpConn(self.srv.port)
            c.ehlo()
            c.send("AUTH PLAIN %s\r\n" % plain("alice@example.test", "secret"))
            c.close()
        self.assertReply(self.session().cmd("AUTH PLAIN " + plain("alice@example.test",
                                                                    "secret")), 235)
        self.assertNoPanic(self.srv)

    def test_auth_process_killed_454_then_restarted(self):
        offset = self.srv.log_size()
        old = self.srv.kill_role("auth")
        wait_until_gone = time.monotonic() + scaled(5)
        while os.path.exists("/proc/%d" % old) and time.monotonic() < wait_until_gone:
            try:
                with open("/proc/%d/stat" % old) as f:
                    if f.read().split(") ")[1][0] == "Z":
                        break
            except FileNotFoundError:
                break
            time.sleep(0.02)
        c = self.session()
        r = c.cmd("AUTH PLAIN " + plain("alice@example.test", "secret"))
        # the worker's connection is gone: a temporary failure, unless the
        # supervisor was quicker and the new auth process answered
        self.assertIn(r.code, (454, 235), r)
        if r.code == 454:
            self.assertEqual(r.status, "4.7.0")
        self.srv.wait_log(r"auth ready", since=offset)
        self.assertRegex(self.srv.log_since(offset), r"auth process pid %d killed by signal 9"
                         % old)
        d = self.session()
        self.assertReply(d.cmd("AUTH PLAIN " + plain("alice@example.test", "secret")), 235,
                         "2.7.0")

"""
test_tls_keyholder.py - TLS with the private key out of the processes that
parse the network (issue 11): the key holder alone has the key and signs
the handshakes the smtp workers do, with RSA and ECDSA keys, for Python's
smtplib, `openssl s_client` (TLS 1.3 and 1.2, every signature scheme the
key holder serves) and swaks; no smtp worker holds the key in its memory;
no RSA key exchange; TLS 1.1 refused unless tls_min_version allows it;
a killed key holder makes the next handshakes fail cleanly (the worker
goes on, plain sessions and messages are not affected) and is started
again, after which handshakes work; a certificate and key replaced on
disk are used by new sessions after SIGHUP, while a session of the old
generation still gets the old certificate from the old key holder; a
key type the key holder cannot use (Ed25519) is refused at start.
"""
import os
import re
import shutil
import signal
import smtplib
import ssl
import subprocess
import unittest

from harness import (DOMAIN, PosternTestCase, SmtpConn, client_tls_context, make_certificate,
                     make_message, memory_holds, private_key_needles, process_alive,
                     queue_id_of, scaled, smtplib_send, starttls_peer_certificate, tls_files,
                     wait_until)


def certificate_der(cert_path):
    with open(cert_path) as f:
        return ssl.PEM_cert_to_DER_cert(f.read())


def s_client(port, *options, timeout=None):
    """`openssl s_client -starttls smtp` with options: (exit status, output)."""
    p = subprocess.run(["openssl", "s_client", "-starttls", "smtp", "-brief",
                        "-connect", "127.0.0.1:%d" % port] + list(options),
                       input=b"QUIT\r\n", stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       timeout=timeout or scaled(20))
    return p.returncode, p.stdout.decode("utf-8", "replace")


def old_tls_context(version):
    """A client context that offers exactly TLS version (and allows it)."""
    ctx = client_tls_context()
    ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
    ctx.minimum_version = version
    ctx.maximum_version = version
    return ctx


class KeyHolderCases:
    """The handshakes, for the key type KEY ("rsa" or "ec")."""

    KEY = "rsa"
    SIGALGS = ()       # TLS 1.2 signature schemes to try one by one
    SUITE_WORD = ""    # in the TLS 1.2 cipher suite's name

    @classmethod
    def setUpClass(cls):
        cls.srv = cls.start_class_server(tls=cls.KEY)

    def test_smtplib_starttls_delivers_with_the_certificate(self):
        der, version = starttls_peer_certificate(self.srv.port)
        self.assertEqual(der, certificate_der(self.srv.settings["tls_cert"]))
        self.assertEqual(version, "TLSv1.3")
        qid = smtplib_send(self.srv.port, "sender@remote.test", ["alice@" + DOMAIN],
                           make_message(subject="over tls"), tls=True)
        _, data = self.srv.wait_delivery("alice", qid)
        self.assertRegex(data.decode("utf-8", "replace"), r"\(TLSv1\.3:TLS_AES_\w+\)")

    def test_openssl_s_client_tls13_and_tls12(self):
        rc, out = s_client(self.srv.port)
        self.assertEqual(rc, 0, out)
        self.assertIn("Protocol version: TLSv1.3", out)
        rc, out = s_client(self.srv.port, "-tls1_2")
        self.assertEqual(rc, 0, out)
        self.assertIn("Protocol version: TLSv1.2", out)
        self.assertRegex(out, r"Ciphersuite: ECDHE-%s-" % self.SUITE_WORD)

    def test_every_tls12_signature_scheme(self):
        for sigalg in self.SIGALGS:
            rc, out = s_client(self.srv.port, "-tls1_2", "-sigalgs", sigalg)
            self.assertEqual(rc, 0, "%s: %s" % (sigalg, out))
            self.assertIn("Protocol version: TLSv1.2", out)

    def test_swaks_delivers_over_tls(self):
        p = subprocess.run(["swaks", "--server", "127.0.0.1:%d" % self.srv.port, "--tls",
                            "--from", "sender@remote.test", "--to", "bob@" + DOMAIN,
                            "--helo", "client.test", "--header", "Subject: swaks tls"],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           timeout=scaled(30))
        out = p.stdout.decode("utf-8", "replace")
        self.assertEqual(p.returncode, 0, out)
        self.assertIn("TLS started", out)
        m = re.search(r"<~  (250 .*queued as .*)", out)
        self.assertIsNotNone(m, out)
        qid = queue_id_of(m.group(1))
        self.srv.wait_delivery("bob", qid)

    def test_no_smtp_worker_holds_the_key(self):
        for _ in range(4):
            starttls_peer_certificate(self.srv.port)
        needles = private_key_needles(self.srv.settings["tls_key"])
        workers = self.srv.role_pids("smtp")
        self.assertTrue(workers)
        for pid in workers:
            self.assertEqual(memory_holds(pid, needles), set(),
                             "smtp worker %d holds the private key" % pid)
        self.assertTrue(memory_holds(self.srv.role_pids("keyholder")[0], needles),
                        "the probe does not find the key in the key holder")


class RsaKeyTest(KeyHolderCases, PosternTestCase):
    KEY = "rsa"
    SIGALGS = ("RSA+SHA256", "RSA+SHA384", "RSA+SHA512", "rsa_pss_rsae_sha256",
               "rsa_pss_rsae_sha384", "rsa_pss_rsae_sha512")
    SUITE_WORD = "RSA"

    def test_rsa_key_exchange_is_not_offered(self):
        rc, out = s_client(self.srv.port, "-tls1_2", "-cipher", "AES128-SHA:AES256-GCM-SHA384")
        self.assertNotEqual(rc, 0, out)
        self.assertNotIn("Protocol version", out)
        # the worker goes on
        self.assertEqual(starttls_peer_certificate(self.srv.port)[1], "TLSv1.3")


class EcdsaKeyTest(KeyHolderCases, PosternTestCase):
    KEY = "ec"
    SIGALGS = ("ECDSA+SHA256", "ECDSA+SHA384", "ECDSA+SHA512")
    SUITE_WORD = "ECDSA"


class TlsVersionTest(PosternTestCase):
    """TLS 1.2 or newer by default; tls_min_version moves the floor."""

    def handshake(self, srv, context):
        return starttls_peer_certificate(srv.port, context=context)[1]

    def test_default_refuses_tls11_accepts_tls12(self):
        srv = self.start_server(tls=True)
        for version in (ssl.TLSVersion.TLSv1, ssl.TLSVersion.TLSv1_1):
            with self.assertRaises((ssl.SSLError, smtplib.SMTPServerDisconnected,
                                    ConnectionResetError)):
                self.handshake(srv, old_tls_context(version))
        self.assertEqual(self.handshake(srv, old_tls_context(ssl.TLSVersion.TLSv1_2)),
                         "TLSv1.2")
        rc, out = s_client(srv.port, "-tls1_1", "-cipher", "DEFAULT:@SECLEVEL=0")
        self.assertNotEqual(rc, 0, out)

    def test_tls13_only(self):
        srv = self.start_server(tls=True, config={"tls_min_version": "TLSv1.3"})
        with self.assertRaises((ssl.SSLError, smtplib.SMTPServerDisconnected,
                                ConnectionResetError)):
            self.handshake(srv, old_tls_context(ssl.TLSVersion.TLSv1_2))
        self.assertEqual(self.handshake(srv, client_tls_context()), "TLSv1.3")

    def test_tls11_when_allowed(self):
        srv = self.start_server(tls=True, config={"tls_min_version": "TLSv1.1"})
        rc, out = s_client(srv.port, "-tls1_1", "-cipher", "DEFAULT:@SECLEVEL=0")
        self.assertEqual(rc, 0, out)
        self.assertIn("Protocol version: TLSv1.1", out)

    def test_unknown_version_is_a_config_error(self):
        srv = self.start_server(start=False, tls=True, config={"tls_min_version": "SSLv3"})
        rc, text = srv.serve_refused()
        self.assertNotEqual(rc, 0)
        self.assertRegex(text, r"postern\.conf:\d+: .*tls_min_version")


class UnsupportedKeyTest(PosternTestCase):
    """A key the key holder cannot sign with is refused when postern
    starts, with the file named, not by roles that keep restarting."""

    def test_ed25519_key_is_refused_at_start(self):
        srv = self.start_server(start=False)
        cert, key = os.path.join(srv.dir, "ed.crt"), os.path.join(srv.dir, "ed.key")
        make_certificate(cert, key, "ed25519")
        srv.settings.update(tls_cert=cert, tls_key=key)
        srv.write_config()
        rc, text = srv.serve_refused()
        self.assertNotEqual(rc, 0)
        self.assertIn("%s: a key of type ED25519: the key holder signs with RSA and ECDSA "
                      "keys only" % key, text)


class KeyHolderRestartTest(PosternTestCase):
    """The key holder dies: handshakes fail cleanly meanwhile, nothing else
    does, and it is started again."""

    def send_tls(self, srv, user, subject):
        return smtplib_send(srv.port, "sender@remote.test", [user + "@" + DOMAIN],
                            make_message(subject=subject), tls=True)

    def test_handshakes_fail_cleanly_until_it_is_back(self):
        srv = self.start_server(tls=True)
        before = self.send_tls(srv, "alice", "before")
        workers = sorted(srv.role_pids("smtp"))
        holder = srv.role_pids("keyholder")[0]
        offset = srv.log_size()
        # Hold the supervisor so that it cannot start the key holder
        # again yet, then kill it.
        os.kill(srv.proc.pid, signal.SIGSTOP)
        try:
            os.kill(holder, signal.SIGKILL)
            wait_until(lambda: not process_alive(holder), scaled(5), what="key holder gone")
            for _ in range(2):
                with self.assertRaises((ssl.SSLError, smtplib.SMTPServerDisconnected,
                                        ConnectionResetError)):
                    starttls_peer_certificate(srv.port)
            # Plain sessions and the workers go on, mail is accepted.
            plain = smtplib_send(srv.port, "sender@remote.test", ["bob@" + DOMAIN],
                                 make_message(subject="plain meanwhile"))
            self.assertEqual(sorted(srv.role_pids("smtp")), workers)
        finally:
            os.kill(srv.proc.pid, signal.SIGCONT)
        srv.wait_log(r"key holder pid %d killed by signal 9" % holder, since=offset)
        srv.wait_log(r"key holder ready", since=offset)
        self.assertIn("TLS key holder", srv.log_since(offset))
        after = self.send_tls(srv, "carol", "after")
        for user, qid in (("alice", before), ("bob", plain), ("carol", after)):
            srv.wait_delivery(user, qid)
        self.assertEqual(sorted(srv.role_pids("smtp")), workers)
        self.assertNoPanic(srv)

    def test_handshake_right_after_a_kill_waits_or_fails_cleanly(self):
        srv = self.start_server(tls=True)
        offset = srv.log_size()
        srv.kill_role("keyholder")
        try:
            self.assertEqual(starttls_peer_certificate(srv.port)[1], "TLSv1.3")
        except (ssl.SSLError, smtplib.SMTPServerDisconnected, ConnectionResetError):
            pass  # it was not back within the worker's wait
        srv.wait_log(r"key holder ready", since=offset)
        qid = self.send_tls(srv, "dave", "after a kill")
        srv.wait_delivery("dave", qid)


class ReloadCertificateTest(PosternTestCase):
    """SIGHUP: new sessions get the certificate now on disk; a session of
    the old generation still gets the old one (its key holder stays until
    the session ends)."""

    def test_new_certificate_after_sighup(self):
        srv = self.start_server(start=False, tls=True)
        cert, key = os.path.join(srv.dir, "mx.crt"), os.path.join(srv.dir, "mx.key")
        rsa_cert, rsa_key = tls_files("rsa")
        shutil.copy(rsa_cert, cert)
        shutil.copy(rsa_key, key)
        srv.settings.update(tls_cert=cert, tls_key=key)
        srv.write_config()
        srv.start()
        old_der = certificate_der(cert)
        self.assertEqual(starttls_peer_certificate(srv.port)[0], old_der)
        # A session of the current generation, still without TLS.
        old_session = SmtpConn(srv.port)
        self.addCleanup(old_session.close)
        old_session.ehlo()
        make_certificate(cert, key, "ec", cn="new.example")
        new_der = certificate_der(cert)
        self.assertNotEqual(new_der, old_der)
        m = srv.reload()
        self.assertIn("starting generation", m.group(0))
        wait_until(lambda: starttls_peer_certificate(srv.port)[0] == new_der, scaled(10),
                   what="the new certificate on new sessions")
        # The old generation's session: the old certificate, and its
        # signatures still come (from the old key holder).
        old_session.starttls()
        self.assertEqual(old_session.sock.getpeercert(binary_form=True), old_der)
        old_session.ehlo()
        self.assertReply(old_session.cmd("QUIT"), 221)
        old_session.close()
        wait_until(lambda: len(srv.role_pids("keyholder")) == 1, scaled(10),
                   what="the old key holder to stop after its last worker")
        self.assertEqual(starttls_peer_certificate(srv.port)[0], new_der)


if __name__ == "__main__":
    unittest.main()

"""
test_dovecot.py - postern paired with a real Dovecot (Debian
dovecot-imapd) as README's "Reading the mail with Dovecot" describes:
messages delivered over SMTP (plain and STARTTLS) are read over IMAP with
Python's imaplib, with postern's Return-Path:, Delivered-To: and
Received: on top and a size Dovecot agrees with; a message Dovecot marked
read (moved to cur/ with flags) stays so while postern keeps delivering
into the same Maildir, and Dovecot sees the new mail.

Dovecot is not optional here: if it is missing the tests fail, saying
how to install it (tools/install-deps.sh does).
"""
import email
import email.policy
import grp
import os
import re
import uuid

from dovecot_peer import DovecotPeer
from harness import (HOSTNAME, PosternTestCase, make_message, scaled, smtplib_send,
                     wait_until)

SENDER = "sender@remote.test"
FILE_NAME_RE = re.compile(r"\.Q([0-9A-F]{19})\..*,W=(\d+)(?::2,([A-Za-z]*))?$")


class DovecotPairingTest(PosternTestCase):

    @classmethod
    def setUpClass(cls):
        cls.srv = cls.start_class_server(tls=True)
        # The Maildirs belong to postern's mail_owner: Dovecot's mail_uid
        # and mail_gid are taken from the owner of a delivered Maildir.
        # The users file is root's, mode 0600; Dovecot's auth process
        # reads it as "dovecot", so it gets the group, as the README says.
        if os.geteuid() == 0:
            os.chown(cls.srv.users_path, 0, grp.getgrnam("dovecot").gr_gid)
            os.chmod(cls.srv.users_path, 0o640)
        qid = smtplib_send(cls.srv.port, SENDER, ["postmaster@example.test"],
                           make_message(subject="first", to="postmaster@example.test"))
        cls.srv.wait_delivery("admin", qid)
        st = os.stat(os.path.dirname(cls.srv.maildir("admin")))
        cls.dovecot = DovecotPeer(cls.srv.mail_root, cls.srv.users_path,
                                  st.st_uid, st.st_gid)
        cls.addClassCleanup(cls.dovecot.stop)
        cls.dovecot.start()

    def setUp(self):
        super().setUp()
        self._dovecot_log_offset = self.dovecot.log_size()

    def tearDown(self):
        problems = self.dovecot.problems_since(self._dovecot_log_offset)
        if problems:
            self.fail("Dovecot logged problems:\n" + "\n".join(problems[:40]))
        super().tearDown()

    # -- helpers --

    def deliver(self, user, subject, body, tls=False):
        """Send one message with smtplib; wait for its Maildir file.
        Returns (queue id, file name)."""
        rcpt = "%s@example.test" % user
        qid = smtplib_send(self.srv.port, SENDER, [rcpt],
                           make_message(subject=subject, body=body, to=rcpt), tls=tls)
        name, _ = self.srv.wait_delivery(user, qid)
        return qid, name

    def imap(self, user):
        imap = self.dovecot.login("%s@example.test" % user)
        self.addCleanup(self._logout, imap)
        return imap

    @staticmethod
    def _logout(imap):
        try:
            imap.logout()
        except Exception:
            pass

    def ok(self, result):
        typ, data = result
        self.assertEqual(typ, "OK", data)
        return data

    def fetch(self, imap, uid, items):
        """FETCH by UID; returns (response text, literal bytes or None)."""
        data = self.ok(imap.uid("FETCH", str(uid), items))
        for part in data:
            if isinstance(part, tuple):
                return part[0].decode(), part[1]
        self.assertTrue(data and data[0], "UID %s not found: %r" % (uid, data))
        return data[0].decode(), None

    def uid_of_subject(self, imap, subject):
        data = self.ok(imap.uid("SEARCH", "HEADER", "Subject", '"%s"' % subject))
        uids = data[0].split()
        self.assertEqual(len(uids), 1, "messages with Subject %s: %r" % (subject, data))
        return int(uids[0])

    def assert_postern_message(self, raw, user, qid, subject, body, protocol):
        """What postern added on top, and the message itself, as Dovecot
        serves it (CRLF line ends)."""
        lines = raw.split(b"\r\n")
        self.assertEqual(lines[0], ("Return-Path: <%s>" % SENDER).encode())
        self.assertEqual(lines[1], ("Delivered-To: %s@example.test" % user).encode())
        msg = email.message_from_bytes(raw, policy=email.policy.default)
        self.assertEqual(msg["Subject"], subject)
        received = " ".join(str(msg.get_all("Received")[0]).split())
        # ESMTPS names the TLS version and cipher in parentheses.
        self.assertRegex(received, r"by %s \(postern\) with %s(?: \([^)]*\))? id %s\b"
                         % (re.escape(HOSTNAME), protocol, qid))
        self.assertEqual(raw.split(b"\r\n\r\n", 1)[1], body.encode())

    def assert_sizes_agree(self, imap, uid, raw, file_name):
        """Dovecot's RFC822.SIZE is the message's CRLF size, and the W=
        postern wrote into the file name says the same."""
        text, _ = self.fetch(imap, uid, "(RFC822.SIZE)")
        size = int(re.search(r"RFC822\.SIZE (\d+)", text).group(1))
        self.assertEqual(size, len(raw))
        self.assertEqual(int(FILE_NAME_RE.search(file_name).group(2)), size, file_name)

    def read_one(self, user, qid, file_name, subject, body, protocol):
        imap = self.imap(user)
        self.ok(imap.select("INBOX"))
        uid = self.uid_of_subject(imap, subject)
        _, raw = self.fetch(imap, uid, "(BODY.PEEK[])")
        self.assert_postern_message(raw, user, qid, subject, body, protocol)
        self.assert_sizes_agree(imap, uid, raw, file_name)
        return imap, uid

    # -- tests --

    def test_message_sent_in_plain_text_is_read_over_imap(self):
        subject = "plain " + uuid.uuid4().hex
        body = "Hello Alice,\r\n\r\nthis came in over plain SMTP.\r\n"
        qid, name = self.deliver("alice", subject, body)
        self.read_one("alice", qid, name, subject, body, "ESMTP")

    def test_message_sent_over_starttls_is_read_over_imap(self):
        subject = "tls " + uuid.uuid4().hex
        body = "Hello Bob,\r\n\r\nthis came in over STARTTLS.\r\n"
        qid, name = self.deliver("bob", subject, body, tls=True)
        self.read_one("bob", qid, name, subject, body, "ESMTPS")

    def test_delivery_continues_after_dovecot_marks_a_message_read(self):
        user = "carol"
        first = "first " + uuid.uuid4().hex
        qid1, name1 = self.deliver(user, first, "One.\r\n")
        imap, uid1 = self.read_one(user, qid1, name1, first, "One.\r\n", "ESMTP")
        self.ok(imap.uid("STORE", str(uid1), "+FLAGS", r"(\Seen)"))

        # Dovecot moved the file from new/ to cur/ and put the flag in its name.
        def moved_and_flagged():
            for n in os.listdir(self.srv.maildir(user, "cur")):
                m = FILE_NAME_RE.search(n)
                if m and m.group(1) == qid1 and "S" in (m.group(3) or ""):
                    return n
            return None
        cur_name = wait_until(moved_and_flagged, scaled(10),
                              what="%s in cur/ with flag S" % qid1)
        self.assertTrue(cur_name.startswith(name1 + ":2,"), cur_name)
        self.assertEqual(self.srv.files_for(user, qid1), [], "still in new/")

        # postern keeps delivering into the Maildir Dovecot now also writes.
        second = "second " + uuid.uuid4().hex
        qid2, name2 = self.deliver(user, second, "Two.\r\n", tls=True)
        self.assertIn(name2, os.listdir(self.srv.maildir(user, "new")))

        # The open session is told about it ...
        def second_seen_by_open_session():
            self.ok(imap.noop())
            data = self.ok(imap.uid("SEARCH", "HEADER", "Subject", '"%s"' % second))
            return data[0].split()
        wait_until(second_seen_by_open_session, scaled(10), interval=0.2,
                   what="the open IMAP session to see %s" % qid2)
        # ... and a new one finds both, only the first read.
        fresh = self.imap(user)
        self.ok(fresh.select("INBOX"))
        uid2 = self.uid_of_subject(fresh, second)
        _, raw2 = self.fetch(fresh, uid2, "(BODY.PEEK[])")
        self.assert_postern_message(raw2, user, qid2, second, "Two.\r\n", "ESMTPS")
        flags1, _ = self.fetch(fresh, self.uid_of_subject(fresh, first), "(FLAGS)")
        flags2, _ = self.fetch(fresh, uid2, "(FLAGS)")
        self.assertIn(r"\Seen", flags1)
        self.assertNotIn(r"\Seen", flags2)
        self.assertEqual(self.ok(fresh.uid("SEARCH", "UNSEEN"))[0].split(),
                         [str(uid2).encode()])

    def test_unknown_password_is_refused(self):
        """Dovecot checks the password field of postern's users file."""
        with self.assertRaises(AssertionError):
            self.dovecot.login("alice@example.test", "wrong")


if __name__ == "__main__":
    import unittest
    unittest.main()

"""
test_pop3_dovecot.py - postern's POP3 server and Dovecot's IMAP server
(Debian dovecot-imapd) on the same Maildirs, both ways: what postern
delivered and its POP3 session moved into cur/ is read over IMAP; the
flags Dovecot sets (a rename of the file) and the messages it expunges
are what postern's POP3 shows next, with the same unique ids; a message
Dovecot expunges while a POP3 session holds the mailbox answers -ERR and
the session still ends well; POP3 deletions are gone for Dovecot too.

Dovecot is not optional here: if it is missing the tests fail, saying
how to install it (tools/install-deps.sh does).
"""
import grp
import os
import poplib
import uuid

from dovecot_peer import DovecotPeer
from harness import (PosternTestCase, client_tls_context, make_message, scaled,
                     smtplib_send)
from test_pop3 import pop3_settings, port_of

SENDER = "sender@remote.test"


class Pop3DovecotTest(PosternTestCase):

    @classmethod
    def setUpClass(cls):
        cls.srv = cls.start_class_server(tls=True, config=pop3_settings())
        cls.pop3_port = port_of(cls.srv, "pop3_listen")
        if os.geteuid() == 0:
            os.chown(cls.srv.users_path, 0, grp.getgrnam("dovecot").gr_gid)
            os.chmod(cls.srv.users_path, 0o640)
        qid = smtplib_send(cls.srv.port, SENDER, ["admin@example.test"],
                           make_message(subject="first", to="admin@example.test"))
        cls.srv.wait_delivery("admin", qid)
        st = os.stat(os.path.dirname(cls.srv.maildir("admin")))
        cls.dovecot = DovecotPeer(cls.srv.mail_root, cls.srv.users_path, st.st_uid, st.st_gid)
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

    def deliver(self, user, subject):
        rcpt = "%s@example.test" % user
        qid = smtplib_send(self.srv.port, SENDER, [rcpt],
                           make_message(subject=subject, body="About %s.\r\n" % subject,
                                        to=rcpt))
        return self.srv.wait_delivery(user, qid)[0]

    def pop3(self, user):
        p = poplib.POP3("127.0.0.1", self.pop3_port, timeout=scaled(15))
        self.addCleanup(self._close, p)
        p.stls(context=client_tls_context())
        p.user("%s@example.test" % user)
        p.pass_("secret")
        return p

    @staticmethod
    def _close(p):
        try:
            p.close()
        except Exception:
            pass

    def imap(self, user):
        imap = self.dovecot.login("%s@example.test" % user)
        self.addCleanup(self._logout, imap)
        typ, data = imap.select("INBOX")
        self.assertEqual(typ, "OK", data)
        return imap

    @staticmethod
    def _logout(imap):
        try:
            imap.logout()
        except Exception:
            pass

    def imap_subjects(self, imap):
        typ, data = imap.uid("SEARCH", "ALL")
        self.assertEqual(typ, "OK", data)
        out = {}
        for uid in data[0].split():
            typ, parts = imap.uid("FETCH", uid, "(FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
            self.assertEqual(typ, "OK", parts)
            subject = parts[0][1].decode().split(":", 1)[1].strip()
            out[subject] = (uid.decode(), parts[0][0].decode())
        return out

    def subject_of(self, p, n):
        _, lines, _ = p.top(n, 0)
        for line in lines:
            if line.lower().startswith(b"subject:"):
                return line.split(b":", 1)[1].strip().decode()
        self.fail("no Subject in message %d" % n)

    # -- tests --

    def test_both_ways(self):
        user = "alice"
        tag = uuid.uuid4().hex[:8]
        subjects = ["one " + tag, "two " + tag, "three " + tag]
        names = [self.deliver(user, s) for s in subjects]

        # POP3 first: new/ -> cur/, ids are the base names.
        p = self.pop3(user)
        ids = {int(l.split()[0]): l.split()[1].decode() for l in p.uidl()[1]}
        self.assertEqual(sorted(ids.values()), sorted(names))
        by_subject = {self.subject_of(p, n): ids[n] for n in ids}
        p.quit()
        self.assertEqual(os.listdir(self.srv.maildir(user, "new")), [])

        # Dovecot reads them from cur/, marks one read and expunges another.
        imap = self.imap(user)
        seen = self.imap_subjects(imap)
        self.assertEqual(sorted(seen), sorted(subjects))
        self.assertEqual(imap.uid("STORE", seen[subjects[0]][0], "+FLAGS", r"(\Seen)")[0], "OK")
        self.assertEqual(imap.uid("STORE", seen[subjects[1]][0], "+FLAGS", r"(\Deleted)")[0],
                         "OK")
        self.assertEqual(imap.expunge()[0], "OK")
        imap.logout()
        cur = os.listdir(self.srv.maildir(user, "cur"))
        self.assertIn(by_subject[subjects[0]] + ":2,S", cur)

        # POP3 sees Dovecot's changes, with the same ids.
        p = self.pop3(user)
        self.assertEqual(p.stat()[0], 2)
        again = {int(l.split()[0]): l.split()[1].decode() for l in p.uidl()[1]}
        self.assertEqual(sorted(again.values()),
                         sorted([by_subject[subjects[0]], by_subject[subjects[2]]]))
        for n, uid in again.items():
            _, lines, _ = p.retr(n)
            self.assertIn(("Subject: %s" % [s for s in subjects if by_subject[s] == uid][0])
                          .encode(), lines)
        # POP3 deletes the third: Dovecot no longer has it.
        third = [n for n, uid in again.items() if uid == by_subject[subjects[2]]][0]
        p.dele(third)
        p.quit()
        imap = self.imap(user)
        left = self.imap_subjects(imap)
        self.assertEqual(list(left), [subjects[0]])
        self.assertIn(r"\Seen", left[subjects[0]][1])

    def test_expunged_while_a_pop3_session_holds_the_mailbox(self):
        user = "bob"
        tag = uuid.uuid4().hex[:8]
        subjects = ["keep " + tag, "gone " + tag]
        for s in subjects:
            self.deliver(user, s)
        p = self.pop3(user)
        self.assertEqual(p.stat()[0], 2)
        order = {self.subject_of(p, n): n for n in (1, 2)}
        imap = self.imap(user)
        seen = self.imap_subjects(imap)
        self.assertEqual(imap.uid("STORE", seen[subjects[1]][0], "+FLAGS", r"(\Deleted)")[0],
                         "OK")
        self.assertEqual(imap.uid("STORE", seen[subjects[0]][0], "+FLAGS", r"(\Flagged)")[0],
                         "OK")
        self.assertEqual(imap.expunge()[0], "OK")
        with self.assertRaisesRegex(poplib.error_proto, "removed by another client"):
            p.retr(order[subjects[1]])
        # The other was renamed by Dovecot (a flag): still readable.
        _, lines, _ = p.retr(order[subjects[0]])
        self.assertIn(("Subject: %s" % subjects[0]).encode(), lines)
        p.dele(order[subjects[1]])
        self.assertTrue(p.quit().startswith(b"+OK"))
        cur = os.listdir(self.srv.maildir(user, "cur"))
        self.assertEqual(len(cur), 1)
        self.assertTrue(cur[0].endswith(":2,FS"), cur)  # Dovecot's F, then postern's S


if __name__ == "__main__":
    import unittest
    unittest.main()

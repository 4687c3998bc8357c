"""
test_quota.py - mailbox quotas as a user and a sender see them: the
Maildir++ maildirsize postern keeps (and Dovecot reads), 552 5.2.2 at RCPT
for a mailbox within quota_reject_margin of its quota or without room for
the SIZE= announced, the exemptions (postmaster, <>, MAILER-DAEMON) and
their end at quota + quota_grace (and a local postmaster claimed from
outside mynetworks without AUTH getting none), the
immediate bounce of a message that passed RCPT but does not fit at
delivery, recalculation of a removed or broken maildirsize, the per-user
rule (userdb_quota_rule) and the global default (mailbox_quota), aliases
checked on their final mailboxes; the quota reader each smtp worker
starts (its account, descriptors and memory; failing open when it is
gone; replaced on reload); and the same maildirsize shared with a real
Dovecot (doveadm quota get, quota recalc, expunge).
"""
import base64
import grp
import os
import pwd
import re
import shutil
import signal
import subprocess
import unittest

from dovecot_peer import DovecotPeer
from harness import (IS_ROOT, PosternServer, PosternTestCase, SmtpConn, free_port,
                     make_message, scaled, smtplib_send, wait_until)

DOMAIN = "example.test"
KB = 1024

# user -> extra fields of its users_file line
USERS = {
    "alice": "userdb_quota_rule=*:storage=100k",
    "bob": "userdb_quota_rule=*:storage=100k",
    "carol": "userdb_quota_rule=*:bytes=102400",
    "dave": "userdb_quota_rule=*:storage=100k",
    "erin": "userdb_quota_rule=*:storage=100",        # bare number: kilobytes
    "frank": "",                                       # mailbox_quota applies
    "grace": "userdb_quota_rule=*:storage=0",          # unlimited, whatever the default
    "sender": "userdb_quota_rule=*:storage=0",         # a local sender for bounces
    "admin": "",
}
ALIASES = {"postmaster": ["admin"], "list": ["grace", "dave"]}


def write_users(srv, users):
    fd = os.open(srv.users_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with open(fd, "w") as f:
        for user, extra in users.items():
            f.write("%s@%s:{PLAIN}secret::::::%s\n" % (user, DOMAIN, extra))


def mail_ids():
    """uid, gid of the Maildirs' owner (the harness's mail_owner)."""
    if not IS_ROOT:
        return os.getuid(), os.getgid()
    pw = pwd.getpwnam("mail")
    return pw.pw_uid, pw.pw_gid


def maildir_of(srv, user):
    return os.path.join(srv.mail_root, DOMAIN, user, "Maildir")


def make_maildir(srv, user):
    """The Maildir's folders, owned by mail_owner as postern makes them."""
    uid, gid = mail_ids()
    path = srv.mail_root
    for part in (DOMAIN, user, "Maildir"):
        path = os.path.join(path, part)
        os.makedirs(path, mode=0o700, exist_ok=True)
        os.chown(path, uid, gid)
    for sub in ("tmp", "new", "cur"):
        p = os.path.join(path, sub)
        os.makedirs(p, mode=0o700, exist_ok=True)
        os.chown(p, uid, gid)
    return path


def fill(srv, user, size, name="1700000000.M1P1.fill", folder="cur"):
    """The mailbox holds one message of size bytes (read: in cur/) and no
    maildirsize: the next reader recounts."""
    md = make_maildir(srv, user)
    for sub in ("new", "cur"):
        for n in os.listdir(os.path.join(md, sub)):
            os.unlink(os.path.join(md, sub, n))
    fname = "%s,S=%d%s" % (name, size, ":2,S" if folder == "cur" else "")
    path = os.path.join(md, folder, fname)
    with open(path, "wb") as f:
        f.write(b"Subject: filler\n\n" + b"x" * (size - 18) + b"\n")
    os.chown(path, *mail_ids())
    remove_maildirsize(srv, user)
    return path


def remove_maildirsize(srv, user):
    try:
        os.unlink(os.path.join(maildir_of(srv, user), "maildirsize"))
    except FileNotFoundError:
        pass


def read_maildirsize(srv, user):
    """(limits line, summed bytes, summed count, number of usage lines)."""
    with open(os.path.join(maildir_of(srv, user), "maildirsize")) as f:
        text = f.read()
    assert text.endswith("\n"), repr(text)
    lines = text.split("\n")[:-1]
    total_b = total_c = 0
    for line in lines[1:]:
        b, c = line.split()
        total_b += int(b)
        total_c += int(c)
    return lines[0], total_b, total_c, len(lines) - 1


def mailbox_bytes(srv, user):
    """What the mailbox holds: the sum of the S= of new/ and cur/."""
    total = count = 0
    for sub in ("new", "cur"):
        d = os.path.join(maildir_of(srv, user), sub)
        for n in os.listdir(d) if os.path.isdir(d) else []:
            m = re.search(r",S=(\d+)", n)
            total += int(m.group(1)) if m else os.path.getsize(os.path.join(d, n))
            count += 1
    return total, count


def body_of(size):
    line = "0123456789" * 7 + "\r\n"
    return line * (size // len(line) + 1)


class QuotaServer(PosternTestCase):
    """One server for the RCPT and delivery cases: every user's quota is
    100 KiB (alice, bob, dave), the default margin 25 KiB."""

    @classmethod
    def setUpClass(cls):
        srv = PosternServer(name=cls.__name__, users=list(USERS), aliases=ALIASES,
                            config={"mailbox_quota": "50k"})
        write_users(srv, USERS)
        cls.addClassCleanup(cls._class_cleanup, srv)
        srv.start()
        cls.class_server = cls.srv = srv

    def rcpt_reply(self, rcpt, sender="someone@remote.test", mail_params=""):
        with SmtpConn(self.srv.port) as c:
            c.ehlo()
            self.assertReply(c.cmd("MAIL FROM:<%s>%s" % (sender, mail_params)), 250)
            return c.cmd("RCPT TO:<%s>" % rcpt)

    def assert_full(self, reply, rcpt):
        self.assertReply(reply, 552, "5.2.2")
        self.assertIn("mailbox full", reply.text)
        self.assertIn(rcpt, reply.text)

    # -- delivery and maildirsize --

    def test_under_quota_delivered_and_counted(self):
        remove_maildirsize(self.srv, "alice")
        qid = smtplib_send(self.srv.port, "x@remote.test", ["alice@example.test"],
                           make_message("first", body_of(5 * KB)))
        self.srv.wait_delivery("alice", qid)
        limits, used, count, _ = read_maildirsize(self.srv, "alice")
        self.assertEqual(limits, "102400S")
        self.assertEqual((used, count), mailbox_bytes(self.srv, "alice"))
        qid2 = smtplib_send(self.srv.port, "x@remote.test", ["alice@example.test"],
                            make_message("second", body_of(3 * KB)))
        self.srv.wait_delivery("alice", qid2)
        limits, used2, count2, lines = read_maildirsize(self.srv, "alice")
        self.assertEqual((used2, count2), mailbox_bytes(self.srv, "alice"))
        self.assertEqual(count2, count + 1)
        self.assertGreaterEqual(lines, 2, "the second copy is an appended delta line")

    def test_recalculated_after_removal_or_damage(self):
        fill(self.srv, "carol", 10 * KB)
        qid = smtplib_send(self.srv.port, "x@remote.test", ["carol@example.test"],
                           make_message("after removal", body_of(2 * KB)))
        self.srv.wait_delivery("carol", qid)
        limits, used, count, _ = read_maildirsize(self.srv, "carol")
        self.assertEqual(limits, "102400S", "bytes=102400 is 102400 bytes")
        self.assertEqual((used, count), mailbox_bytes(self.srv, "carol"))
        self.assertEqual(count, 2)
        # A damaged file (a line that is no usage) is recounted too.
        with open(os.path.join(maildir_of(self.srv, "carol"), "maildirsize"), "a") as f:
            f.write("garbage\n")
        qid = smtplib_send(self.srv.port, "x@remote.test", ["carol@example.test"],
                           make_message("after damage", body_of(2 * KB)))
        self.srv.wait_delivery("carol", qid)
        limits, used, count, _ = read_maildirsize(self.srv, "carol")
        self.assertEqual((used, count), mailbox_bytes(self.srv, "carol"))
        self.assertEqual(count, 3)

    def test_global_default_and_user_rules(self):
        # frank has no rule: mailbox_quota (50k) applies.
        fill(self.srv, "frank", 30 * KB)
        self.assert_full(self.rcpt_reply("frank@example.test"), "frank@example.test")
        _, used, _, _ = read_maildirsize(self.srv, "frank")
        limits, _, _, _ = read_maildirsize(self.srv, "frank")
        self.assertEqual(limits, "51200S")
        self.assertEqual(used, 30 * KB)
        # erin's "storage=100" counts kilobytes, as in Dovecot: 100 KiB.
        fill(self.srv, "erin", 30 * KB)
        self.assertReply(self.rcpt_reply("erin@example.test"), 250)
        self.assertEqual(read_maildirsize(self.srv, "erin")[0], "102400S")
        # grace's own "storage=0" means unlimited over the default: no
        # maildirsize is kept for her at all.
        fill(self.srv, "grace", 200 * KB)
        self.assertReply(self.rcpt_reply("grace@example.test"), 250)
        qid = smtplib_send(self.srv.port, "x@remote.test", ["grace@example.test"],
                           make_message("unlimited", body_of(KB)))
        self.srv.wait_delivery("grace", qid)
        self.assertFalse(os.path.exists(os.path.join(maildir_of(self.srv, "grace"),
                                                     "maildirsize")))

    # -- RCPT --

    def test_within_margin_refused_at_rcpt(self):
        fill(self.srv, "bob", 80 * KB)  # 20 KiB free < 25 KiB margin
        r = self.rcpt_reply("bob@example.test")
        self.assert_full(r, "bob@example.test")
        self.srv.wait_log(r"reject: RCPT .*to=<bob@example\.test> code=552 5\.2\.2 "
                          r"reason=mailbox_full")
        fill(self.srv, "bob", 70 * KB)  # 30 KiB free: fine
        self.assertReply(self.rcpt_reply("bob@example.test"), 250)

    def test_deletion_without_a_delta_seen_within_a_minute(self):
        # The user deletes mail behind everyone's back (a shell, or a
        # Dovecot without its quota plugin): maildirsize still says full.
        path = fill(self.srv, "bob", 90 * KB)
        self.assert_full(self.rcpt_reply("bob@example.test"), "bob@example.test")
        os.unlink(path)
        self.assert_full(self.rcpt_reply("bob@example.test"), "bob@example.test")
        # Once the file is more than a minute old, a refusal is checked
        # against the messages first.
        size_file = os.path.join(maildir_of(self.srv, "bob"), "maildirsize")
        old = os.path.getmtime(size_file) - 120
        os.utime(size_file, (old, old))
        self.assertReply(self.rcpt_reply("bob@example.test"), 250)
        self.assertEqual(read_maildirsize(self.srv, "bob")[1:3], (0, 0))

    def test_size_that_does_not_fit_refused_at_rcpt(self):
        fill(self.srv, "dave", 40 * KB)  # 60 KiB free
        self.assert_full(self.rcpt_reply("dave@example.test", mail_params=" SIZE=70000"),
                         "dave@example.test")
        self.assertReply(self.rcpt_reply("dave@example.test", mail_params=" SIZE=50000"), 250)

    def test_aliases_checked_on_their_final_mailboxes(self):
        fill(self.srv, "dave", 90 * KB)
        self.assert_full(self.rcpt_reply("list@example.test"), "list@example.test")
        fill(self.srv, "dave", 10 * KB)
        self.assertReply(self.rcpt_reply("list@example.test"), 250)

    def test_postmaster_and_null_sender_let_through(self):
        fill(self.srv, "bob", 99 * KB)
        for sender in ("", "postmaster@example.test", "PostMaster@example.test",
                       "MAILER-DAEMON@remote.test"):
            with self.subTest(sender=sender):
                self.assertReply(self.rcpt_reply("bob@example.test", sender=sender), 250)
        # A remote postmaster is no exemption.
        self.assert_full(self.rcpt_reply("bob@example.test",
                                         sender="postmaster@remote.test"),
                         "bob@example.test")
        # And the exempt mail is delivered, past the quota.
        qid = smtplib_send(self.srv.port, "", ["bob@example.test"],
                           make_message("a bounce", body_of(4 * KB)))
        self.srv.wait_delivery("bob", qid)
        self.srv.wait_log(r"%s: to=<bob@example\.test> .*status=sent" % qid)
        _, used, _, _ = read_maildirsize(self.srv, "bob")
        self.assertGreater(used, 100 * KB)

    def test_exempt_senders_held_to_quota_plus_grace(self):
        # bob's quota is 100 KiB; quota_grace's default 10% lets the
        # exempt senders 10 KiB past it, no further.
        limit = 110 * KB
        fill(self.srv, "bob", limit - 500)
        self.assertReply(self.rcpt_reply("bob@example.test", sender=""), 250)
        self.assertReply(self.rcpt_reply("bob@example.test", sender="",
                                         mail_params=" SIZE=400"), 250)
        self.assert_full(self.rcpt_reply("bob@example.test", sender="",
                                         mail_params=" SIZE=600"), "bob@example.test")
        fill(self.srv, "bob", limit)
        for sender in ("", "postmaster@example.test", "MAILER-DAEMON@remote.test"):
            with self.subTest(sender=sender):
                self.assert_full(self.rcpt_reply("bob@example.test", sender=sender),
                                 "bob@example.test")
        self.srv.wait_log(r"reject: RCPT .*from=<> to=<bob@example\.test> code=552 5\.2\.2 "
                          r"reason=mailbox_full .*quota=%d \(with grace\)" % limit)

    def test_null_sender_past_the_grace_at_delivery(self):
        # RCPT passes (no SIZE=: 5 KiB of the grace is free) but the
        # message does not fit in quota + grace: refused at once, nothing
        # kept in the queue; a report to <> is the double bounce to the
        # postmaster, as for any failed mail from <>.
        fill(self.srv, "dave", 105 * KB)
        qid = smtplib_send(self.srv.port, "", ["dave@example.test"],
                           make_message("a big bounce", body_of(8 * KB)))
        self.srv.wait_log(r"%s: to=<dave@example\.test> .*status=bounced" % qid)
        self.srv.wait_log(r"%s: sender is <>: double bounce \S+ sent to <postmaster" % qid)
        self.srv.wait_log(r"%s: removed" % qid)
        self.assertNotRegex(self.srv.log(),
                            r"%s: to=<dave@example\.test> .*status=deferred" % qid)
        self.assertEqual(self.srv.files_for("dave", qid), [], "no copy in the mailbox")
        self.assertNotIn(qid, self.srv.spool_files("queue") + self.srv.spool_files("deferred"))
        self.assertEqual(mailbox_bytes(self.srv, "dave"), (105 * KB, 1))
        # One that fits in the grace is delivered.
        qid = smtplib_send(self.srv.port, "", ["dave@example.test"],
                           make_message("a small bounce", body_of(2 * KB)))
        self.srv.wait_delivery("dave", qid)
        self.assertGreater(read_maildirsize(self.srv, "dave")[1], 100 * KB)

    def test_too_big_at_delivery_bounces_at_once(self):
        fill(self.srv, "alice", 60 * KB)  # 40 KiB free: RCPT passes (no SIZE=)
        qid = smtplib_send(self.srv.port, "sender@example.test", ["alice@example.test"],
                           make_message("too big", body_of(50 * KB),
                                        sender="sender@example.test"))
        self.srv.wait_log(r"%s: to=<alice@example\.test> .*status=bounced" % qid)
        self.srv.wait_log(r"%s: removed" % qid)
        log = self.srv.log()
        self.assertNotRegex(log, r"%s: to=<alice@example\.test> .*status=deferred" % qid)
        self.assertEqual(self.srv.files_for("alice", qid), [], "no copy in the mailbox")
        self.assertNotIn(qid, self.srv.spool_files("queue") + self.srv.spool_files("deferred"))
        # The sender has the report, with the status 5.2.2.
        md_new = os.path.join(maildir_of(self.srv, "sender"), "new")

        def report():
            for n in os.listdir(md_new) if os.path.isdir(md_new) else []:
                data = open(os.path.join(md_new, n), "rb").read()
                if qid.encode() in data and b"multipart/report" in data:
                    return data
            return None
        data = wait_until(report, scaled(10), what="the bounce of %s" % qid)
        self.assertIn(b"Status: 5.2.2", data)
        self.assertIn(b"Final-Recipient: rfc822; alice@example.test", data)
        self.assertIn(b"mailbox full", data)

    def test_multi_recipient_each_on_its_own(self):
        fill(self.srv, "alice", 60 * KB)   # 40 KiB free
        fill(self.srv, "carol", 10 * KB)   # 90 KiB free
        qid = smtplib_send(self.srv.port, "sender@example.test",
                           ["alice@example.test", "carol@example.test"],
                           make_message("two", body_of(50 * KB), sender="sender@example.test"))
        self.srv.wait_delivery("carol", qid)
        self.srv.wait_log(r"%s: to=<alice@example\.test> .*status=bounced" % qid)
        self.assertEqual(self.srv.files_for("alice", qid), [])
        self.assertEqual(read_maildirsize(self.srv, "carol")[1],
                         mailbox_bytes(self.srv, "carol")[0])


class QuotaGraceSettings(PosternTestCase):
    """quota_grace other than its default: 0 (the exempt senders get no
    more than the quota), an absolute size, and a client outside
    mynetworks that claims a local postmaster."""

    def start(self, tls=False, **config):
        users = {"alice": "userdb_quota_rule=*:storage=100k", "admin": ""}
        srv = self.start_server(start=False, users=list(users), aliases={"postmaster": ["admin"]},
                                tls=tls, config=config)
        write_users(srv, users)
        srv.start()
        return srv

    def rcpt(self, srv, sender, mail_params=""):
        with SmtpConn(srv.port) as c:
            c.ehlo()
            self.assertReply(c.cmd("MAIL FROM:<%s>%s" % (sender, mail_params)), 250)
            return c.cmd("RCPT TO:<alice@%s>" % DOMAIN)

    def test_no_grace(self):
        srv = self.start(quota_grace="0")
        fill(srv, "alice", 99 * KB)
        # within the quota a bounce still needs no margin ...
        self.assertReply(self.rcpt(srv, ""), 250)
        self.assertReply(self.rcpt(srv, "x@remote.test"), 552, "5.2.2")
        # ... but nothing goes past it
        self.assertReply(self.rcpt(srv, "", " SIZE=2000"), 552, "5.2.2")
        qid = smtplib_send(srv.port, "", ["alice@%s" % DOMAIN],
                           make_message("bounce", body_of(2 * KB)))
        srv.wait_log(r"%s: to=<alice@example\.test> .*status=bounced" % qid)
        self.assertEqual(srv.files_for("alice", qid), [])
        fill(srv, "alice", 100 * KB)
        for sender in ("", "postmaster@example.test", "MAILER-DAEMON@remote.test"):
            with self.subTest(sender=sender):
                self.assertReply(self.rcpt(srv, sender), 552, "5.2.2")

    def test_absolute_grace(self):
        srv = self.start(quota_grace="20k")
        fill(srv, "alice", 115 * KB)
        self.assertReply(self.rcpt(srv, ""), 250)
        self.assertReply(self.rcpt(srv, "", " SIZE=%d" % (5 * KB)), 250)
        self.assertReply(self.rcpt(srv, "", " SIZE=%d" % (5 * KB + 1)), 552, "5.2.2")
        self.assertReply(self.rcpt(srv, "x@remote.test"), 552, "5.2.2")
        qid = smtplib_send(srv.port, "", ["alice@%s" % DOMAIN],
                           make_message("bounce", body_of(3 * KB)))
        srv.wait_delivery("alice", qid)
        fill(srv, "alice", 120 * KB)
        self.assertReply(self.rcpt(srv, ""), 552, "5.2.2")

    def test_postmaster_claimed_from_outside(self):
        # 127.0.0.1 is not in mynetworks here, and the client does not
        # authenticate: its postmaster@<local domain> is a forgery and
        # gets what anyone gets; <> and MAILER-DAEMON keep the grace.
        srv = self.start(mynetworks="192.0.2.0/24")
        fill(srv, "alice", 99 * KB)
        self.assertReply(self.rcpt(srv, "postmaster@example.test"), 552, "5.2.2")
        self.assertReply(self.rcpt(srv, ""), 250)
        self.assertReply(self.rcpt(srv, "MAILER-DAEMON@remote.test"), 250)

    def test_postmaster_after_auth_keeps_the_grace(self):
        # Outside mynetworks, but logged in (submission, STARTTLS): the
        # postmaster is real and keeps the grace.
        sub_port = free_port()
        srv = self.start(tls=True, mynetworks="192.0.2.0/24", auth_sender_check="no",
                         submission_listen="127.0.0.1:%d" % sub_port, auth_failure_delay="0")
        fill(srv, "alice", 99 * KB)
        with SmtpConn(sub_port) as c:
            c.ehlo()
            c.starttls()
            c.ehlo()
            login = base64.b64encode(b"\0admin@example.test\0secret").decode()
            self.assertReply(c.cmd("AUTH PLAIN " + login), 235)
            self.assertReply(c.cmd("MAIL FROM:<postmaster@example.test>"), 250)
            self.assertReply(c.cmd("RCPT TO:<alice@%s>" % DOMAIN), 250)
            self.assertReply(c.cmd("RSET"), 250)
            # an ordinary sender with the same login gets no grace
            self.assertReply(c.cmd("MAIL FROM:<admin@example.test>"), 250)
            self.assertReply(c.cmd("RCPT TO:<alice@%s>" % DOMAIN), 552, "5.2.2")

    def test_postmaster_from_mynetworks_keeps_the_grace(self):
        srv = self.start()
        fill(srv, "alice", 99 * KB)
        self.assertReply(self.rcpt(srv, "postmaster@example.test"), 250)


def quota_readers(srv, n=2):
    """The quota readers (one per smtp worker), once each has logged."""
    return wait_until(lambda: len(srv.role_pids("quota")) >= n and srv.role_pids("quota"),
                      scaled(10), what="%d quota readers" % n)


def parent_of(pid):
    with open("/proc/%d/stat" % pid) as f:
        return int(f.read().rsplit(")", 1)[1].split()[1])


@unittest.skipUnless(IS_ROOT, "needs root: the roles switch accounts only when started as root")
class QuotaReaderTest(PosternTestCase):
    """The process that lets the smtp worker know a mailbox's usage: one
    per worker, its child, mail_owner, no listener, no secret file, only
    its socket, no TLS key in its memory; and when it is gone, RCPT lets
    mail through and the delivery still enforces the quota."""

    @classmethod
    def setUpClass(cls):
        srv = PosternServer(name=cls.__name__, users=list(USERS), aliases=ALIASES, tls=True,
                            config={"mailbox_quota": "50k"})
        write_users(srv, USERS)
        cls.addClassCleanup(cls._class_cleanup, srv)
        srv.start()
        cls.class_server = cls.srv = srv
        srv.wait_roles(smtp=2, qmgr=1)

    def test_accounts_descriptors_and_no_key(self):
        from harness import memory_holds, private_key_needles
        from test_privsep import (MAIL, descriptors, listening_socket_inodes, no_new_privs,
                                  proc_ids)
        readers = quota_readers(self.srv)
        workers = self.srv.role_pids("smtp")
        self.assertEqual(sorted(parent_of(p) for p in readers), sorted(workers),
                         "one reader per smtp worker, its child")
        listeners = listening_socket_inodes()
        secrets = (self.srv.settings["tls_key"], self.srv.users_path, self.srv.aliases_path)
        needles = private_key_needles(self.srv.settings["tls_key"])
        self.assertTrue(memory_holds(self.srv.role_pids("keyholder")[0], needles),
                        "the probe does not find the key in the key holder")
        for pid in readers:
            uids, gids, groups = proc_ids(pid)
            self.assertEqual(uids, [MAIL.pw_uid] * 4, "reader %d" % pid)
            self.assertEqual(gids, [MAIL.pw_gid] * 4, "reader %d" % pid)
            self.assertEqual(groups, [], "reader %d" % pid)
            self.assertEqual(os.stat("/proc/%d/status" % pid).st_uid, 0, "%d is dumpable" % pid)
            self.assertEqual(no_new_privs(pid), 1, "reader %d lacks NoNewPrivs" % pid)
            fds = descriptors(pid)
            self.assertFalse(set(fds.values()) & listeners, "reader %d: %r" % (pid, fds))
            self.assertFalse([t for t in fds.values() if t in secrets], "reader %d: %r" % (pid, fds))
            others = {fd: t for fd, t in fds.items() if fd > 2}
            self.assertEqual(len(others), 1, "reader %d holds %r" % (pid, others))
            self.assertTrue(list(others.values())[0].startswith("socket:"), others)
            self.assertEqual(memory_holds(pid, needles), set(),
                             "reader %d holds the TLS key" % pid)

    def test_reader_gone_fails_open_and_delivery_still_bounces(self):
        fill(self.srv, "dave", 90 * KB)
        for pid in quota_readers(self.srv):
            os.kill(pid, signal.SIGKILL)
        self.srv.wait_log(r"quota reader: gone; RCPT quota checks are off")
        wait_until(lambda: self.srv.log().count("RCPT quota checks are off") >= 2,
                   scaled(10), what="both workers noticing")
        qid = smtplib_send(self.srv.port, "sender@example.test", ["dave@example.test"],
                           make_message("past the quota", body_of(20 * KB),
                                        sender="sender@example.test"))
        self.srv.wait_log(r"%s: to=<dave@example\.test> .*status=bounced" % qid)
        self.assertEqual(self.srv.files_for("dave", qid), [])


class QuotaDovecot(DovecotPeer):
    """Dovecot with its maildir quota backend on postern's Maildirs and
    users file (the same userdb_quota_rule fields), driven by doveadm."""

    def write_config(self, mail_root, users_file, mail_uid, mail_gid):
        super().write_config(mail_root, users_file, mail_uid, mail_gid)
        with open(self.conf_path, "a") as f:
            f.write("mail_plugins = quota\nplugin {\n  quota = maildir:User quota\n}\n")

    def doveadm(self, *args):
        p = subprocess.run(["doveadm", "-c", self.conf_path] + list(args),
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           timeout=scaled(30))
        if p.returncode != 0:
            raise AssertionError("doveadm %s: status %d: %s%s" % (
                " ".join(args), p.returncode, p.stdout.decode(), p.stderr.decode()))
        return p.stdout.decode()

    def quota(self, user):
        """{(type): (value, limit)} from doveadm quota get (STORAGE in KiB)."""
        out = {}
        for line in self.doveadm("-f", "tab", "quota", "get", "-u", user).splitlines()[1:]:
            name, kind, value, limit = line.split("\t")[:4]
            out[kind] = (int(value), None if limit == "-" else int(limit))
        return out


@unittest.skipUnless(shutil.which("doveadm"), "Dovecot (dovecot-core) is not installed")
class DovecotQuotaTest(PosternTestCase):
    """postern and Dovecot keep one maildirsize: Dovecot trusts the file
    postern wrote (its limits line, its sums), recounts to the same
    usage, and postern honours the deltas Dovecot appends."""

    USERS = {"alice": "userdb_quota_rule=*:storage=100k",
             "bob": "userdb_quota_rule=*:storage=1M:messages=3",
             "admin": ""}

    def setUp(self):
        super().setUp()
        self.srv = self.start_server(start=False, users=list(self.USERS),
                                     aliases={"postmaster": ["admin"]})
        write_users(self.srv, self.USERS)
        self.srv.start()
        if IS_ROOT:  # Dovecot's auth process reads the users file as "dovecot"
            os.chown(self.srv.users_path, 0, grp.getgrnam("dovecot").gr_gid)
            os.chmod(self.srv.users_path, 0o640)
        uid, gid = mail_ids()
        self.dovecot = QuotaDovecot(self.srv.mail_root, self.srv.users_path, uid, gid)
        self.addCleanup(self.dovecot.stop)
        self.dovecot.start()

    def deliver(self, user, size):
        qid = smtplib_send(self.srv.port, "x@remote.test", ["%s@example.test" % user],
                           make_message("for dovecot", body_of(size)))
        self.srv.wait_delivery(user, qid)
        self.srv.wait_log(r"%s: removed" % qid)

    def maildirsize_text(self, user):
        with open(os.path.join(maildir_of(self.srv, user), "maildirsize")) as f:
            return f.read()

    def test_both_agree_on_usage(self):
        self.deliver("alice", 10 * KB)
        self.deliver("alice", 20 * KB)
        ours = self.maildirsize_text("alice")
        _, used, count, lines = read_maildirsize(self.srv, "alice")
        self.assertEqual(lines, 3, "the first count (empty) and two deltas: %r" % ours)
        q = self.dovecot.quota("alice@example.test")
        self.assertEqual(q["STORAGE"], ((used + 1023) // 1024, 100))
        self.assertEqual(q["MESSAGE"], (count, None))
        self.assertEqual(self.maildirsize_text("alice"), ours,
                         "Dovecot trusted postern's file and left it as it was")
        # Dovecot's own recount comes to the same numbers and limits line.
        self.dovecot.doveadm("quota", "recalc", "-u", "alice@example.test")
        limits, used2, count2, lines2 = read_maildirsize(self.srv, "alice")
        self.assertEqual((limits, used2, count2, lines2), ("102400S", used, count, 1),
                         self.maildirsize_text("alice"))

    def test_messages_limit_written_as_dovecot_writes_it(self):
        self.deliver("bob", 2 * KB)
        ours = self.maildirsize_text("bob")
        self.assertTrue(ours.startswith("1048576S,3C\n"), ours)
        self.assertEqual(self.dovecot.quota("bob@example.test")["MESSAGE"], (1, 3))
        self.assertEqual(self.maildirsize_text("bob"), ours)
        self.deliver("bob", 2 * KB)
        self.deliver("bob", 2 * KB)
        # Three messages kept out of three: RCPT refuses a fourth.
        with SmtpConn(self.srv.port) as c:
            c.ehlo()
            self.assertReply(c.cmd("MAIL FROM:<x@remote.test>"), 250)
            r = c.cmd("RCPT TO:<bob@example.test>")
            self.assertReply(r, 552, "5.2.2")

    def test_dovecot_expunge_frees_room_for_postern(self):
        fill(self.srv, "alice", 90 * KB)
        with SmtpConn(self.srv.port) as c:
            c.ehlo()
            self.assertReply(c.cmd("MAIL FROM:<x@remote.test>"), 250)
            self.assertReply(c.cmd("RCPT TO:<alice@example.test>"), 552, "5.2.2")
        self.assertEqual(read_maildirsize(self.srv, "alice")[1], 90 * KB)
        # The user deletes the mail through Dovecot (IMAP, or here doveadm):
        # Dovecot appends a negative delta to the file postern wrote.
        self.dovecot.doveadm("expunge", "-u", "alice@example.test", "mailbox", "INBOX", "all")
        text = self.maildirsize_text("alice")
        self.assertRegex(text, r"\n-%d -1\n$" % (90 * KB), text)
        with SmtpConn(self.srv.port) as c:
            c.ehlo()
            self.assertReply(c.cmd("MAIL FROM:<x@remote.test>"), 250)
            self.assertReply(c.cmd("RCPT TO:<alice@example.test>"), 250)
        self.assertEqual(self.maildirsize_text("alice"), text,
                         "postern read Dovecot's delta without recounting")


class QuotaReloadTest(PosternTestCase):
    """A quota changed in the users file applies after SIGHUP, and a
    quota set where there was none starts the readers; the old
    generation's readers leave with their workers."""

    def test_quota_changes_on_reload(self):
        users = {"alice": "userdb_quota_rule=*:storage=100k", "admin": ""}
        srv = self.start_server(start=False, users=list(users), aliases={})
        write_users(srv, users)
        srv.start()
        fill(srv, "alice", 90 * KB)
        with SmtpConn(srv.port) as c:
            c.ehlo()
            self.assertReply(c.cmd("MAIL FROM:<x@remote.test>"), 250)
            self.assertReply(c.cmd("RCPT TO:<alice@example.test>"), 552, "5.2.2")
        old_readers = quota_readers(srv)
        users["alice"] = "userdb_quota_rule=*:storage=1M"
        write_users(srv, users)
        srv.reload(wait_old=True)
        self.assertFalse(any(os.path.exists("/proc/%d" % p) for p in old_readers),
                         "the old readers left with their workers, which reaped them")
        with SmtpConn(srv.port) as c:
            c.ehlo()
            self.assertReply(c.cmd("MAIL FROM:<x@remote.test>"), 250)
            self.assertReply(c.cmd("RCPT TO:<alice@example.test>"), 250)
        self.assertEqual(read_maildirsize(srv, "alice")[0], "1048576S")

    def test_domain_default_between_user_rule_and_global(self):
        # example.test's default (domains_file) applies to alice, who has
        # no rule of her own; bob's own rule and mailbox_quota do not move.
        users = {"alice": "", "bob": "userdb_quota_rule=*:storage=1M", "admin": ""}
        srv = self.start_server(start=False, users=list(users), aliases={},
                                config={"mailbox_quota": "10M",
                                        "domains_file": "domains"})
        write_users(srv, users)
        with open(os.path.join(srv.dir, "domains"), "w") as f:
            f.write("%s quota=60k\n" % DOMAIN)
        srv.start()
        fill(srv, "alice", 40 * KB)  # 20 KiB free of 60: within the margin
        fill(srv, "bob", 40 * KB)
        with SmtpConn(srv.port) as c:
            c.ehlo()
            self.assertReply(c.cmd("MAIL FROM:<x@remote.test>"), 250)
            self.assertReply(c.cmd("RCPT TO:<alice@%s>" % DOMAIN), 552, "5.2.2")
            self.assertReply(c.cmd("RCPT TO:<bob@%s>" % DOMAIN), 250)
        self.assertEqual(read_maildirsize(srv, "alice")[0], "61440S")

    def test_no_quota_no_reader(self):
        srv = self.start_server(users=["alice", "admin"], aliases={})
        srv.wait_roles(smtp=2, qmgr=1)
        qid = smtplib_send(srv.port, "x@remote.test", ["alice@example.test"],
                           make_message("no quota"))
        srv.wait_delivery("alice", qid)
        self.assertEqual(srv.role_pids("quota"), [])
        self.assertFalse(os.path.exists(os.path.join(maildir_of(srv, "alice"), "maildirsize")))

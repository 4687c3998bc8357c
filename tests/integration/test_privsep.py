"""
test_privsep.py - privilege separation as an administrator can check it
(issue 5): each process runs as its account (supervisor root, smtp
workers and queue manager `user`, local delivery `mail_owner`), the
account that parses SMTP can open neither a Maildir nor the users file,
Maildirs belong to mail_owner, the local delivery agent dying restarts
the pair without losing mail, and postern refuses the configurations
that would give a role root or the mailboxes to the SMTP parsers.

Run as root (as in CI): user = nobody, mail_owner = Debian's "mail".
"""
import grp
import os
import pwd
import re
import shutil
import signal
import stat
import subprocess
import time
import unittest

from harness import (IS_ROOT, PosternServer, PosternTestCase, make_message, process_alive,
                     scaled, smtplib_send, wait_until)

NOBODY = pwd.getpwnam("nobody")
MAIL = pwd.getpwnam("mail")


def proc_ids(pid):
    """(uids, gids) of a process: the real, effective, saved and fs ids."""
    with open("/proc/%d/status" % pid) as f:
        text = f.read()
    uids = [int(x) for x in re.search(r"^Uid:\s+(.*)$", text, re.M).group(1).split()]
    gids = [int(x) for x in re.search(r"^Gid:\s+(.*)$", text, re.M).group(1).split()]
    groups = re.search(r"^Groups:[ \t]*(.*)$", text, re.M).group(1).split()
    return uids, gids, [int(g) for g in groups]


def as_account(account, *argv):
    """Run argv with the uid and gid of account and no other group."""
    return subprocess.run(["setpriv", "--reuid=%d" % account.pw_uid,
                           "--regid=%d" % account.pw_gid, "--clear-groups"] + list(argv),
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=scaled(10))


@unittest.skipUnless(IS_ROOT, "needs root: the roles switch accounts only when started as root")
class RoleAccountsTest(PosternTestCase):

    @classmethod
    def setUpClass(cls):
        cls.srv = cls.start_class_server()
        cls.srv.wait_roles(smtp=2, qmgr=1)
        wait_until(lambda: cls.srv.role_pids("local"), scaled(10), what="the local agent")

    def assert_account(self, pid, account, role):
        uids, gids, groups = proc_ids(pid)
        self.assertEqual(uids, [account.pw_uid] * 4, "%s pid %d uids" % (role, pid))
        self.assertEqual(gids, [account.pw_gid] * 4, "%s pid %d gids" % (role, pid))
        self.assertEqual(groups, [], "%s pid %d keeps supplementary groups" % (role, pid))
        # Not dumpable: /proc/PID/status then belongs to root, and another
        # process of the same account can neither ptrace it nor read it.
        self.assertEqual(os.stat("/proc/%d/status" % pid).st_uid, 0,
                         "%s pid %d is dumpable" % (role, pid))

    def test_each_role_runs_as_its_account(self):
        srv = self.srv
        uids, _, _ = proc_ids(srv.pid)
        self.assertEqual(uids, [0, 0, 0, 0], "the supervisor")
        smtp, qmgr, local = srv.role_pids("smtp"), srv.role_pids("qmgr"), srv.role_pids("local")
        self.assertEqual(len(smtp), 2)
        self.assertEqual(len(qmgr), 1)
        self.assertEqual(len(local), 1)
        for pid in smtp:
            self.assert_account(pid, NOBODY, "smtp worker")
        self.assert_account(qmgr[0], NOBODY, "queue manager")
        self.assert_account(local[0], MAIL, "local delivery agent")
        # The agent is the queue manager's child, not the supervisor's.
        with open("/proc/%d/stat" % local[0]) as f:
            ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        self.assertEqual(ppid, qmgr[0])

    def test_mailboxes_belong_to_mail_owner_and_workers_cannot_open_them(self):
        srv = self.srv
        qid = smtplib_send(srv.port, "x@remote.test", ["bob@example.test"],
                           make_message("owned by mail_owner"))
        name, _ = srv.wait_delivery("bob", qid)
        mail_file = os.path.join(srv.maildir("bob"), name)
        for path in (srv.mail_root, os.path.dirname(srv.maildir("bob")), mail_file):
            st = os.stat(path)
            self.assertEqual((st.st_uid, st.st_gid), (MAIL.pw_uid, MAIL.pw_gid), path)
            self.assertEqual(st.st_mode & 0o077, 0, "%s is open to others" % path)
        # The smtp workers' account cannot open a mailbox nor the users file.
        p = as_account(NOBODY, "cat", mail_file)
        self.assertNotEqual(p.returncode, 0, "user nobody could read %s" % mail_file)
        p = as_account(NOBODY, "cat", srv.users_path)
        self.assertNotEqual(p.returncode, 0, "user nobody could read the users file")
        p = as_account(NOBODY, "ls", srv.maildir("bob"))
        self.assertNotEqual(p.returncode, 0)
        # ...while mail_owner can (so the refusals above mean something).
        p = as_account(MAIL, "cat", mail_file)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn(b"Subject: owned by mail_owner", p.stdout)

    def test_spool_belongs_to_user(self):
        for folder in ["", "incoming", "queue", "deferred", "hold", "quarantine", "corrupt"]:
            st = os.stat(os.path.join(self.srv.spool_dir, folder))
            self.assertEqual(st.st_uid, NOBODY.pw_uid, folder)
            self.assertEqual(stat.S_IMODE(st.st_mode), 0o700, folder)


@unittest.skipUnless(IS_ROOT, "needs root")
class LocalAgentRestartTest(PosternTestCase):

    def test_killed_agent_restarts_the_pair_and_mail_flows(self):
        srv = self.start_server()
        wait_until(lambda: srv.role_pids("local"), scaled(10), what="the local agent")
        old_qmgr, old_agent = srv.role_pids("qmgr")[0], srv.role_pids("local")[0]
        offset = srv.log_size()
        os.kill(old_agent, signal.SIGKILL)
        srv.wait_log(r"local delivery agent pid %d: closed its socket; the deliveries in "
                     r"flight are deferred and the queue manager exits so that the "
                     r"supervisor restarts both" % old_agent, since=offset)
        srv.wait_log(r"local delivery agent pid %d killed by signal 9" % old_agent, since=offset)
        srv.wait_log(r"queue manager pid %d exited with status 1" % old_qmgr, since=offset)
        wait_until(lambda: [p for p in srv.role_pids("local") if p != old_agent],
                   scaled(10), what="a new local agent")
        qid = smtplib_send(srv.port, "x@remote.test", ["carol@example.test"],
                           make_message("after the agent died"))
        srv.wait_delivery("carol", qid)
        self.assertEqual(len(srv.files_for("carol", qid)), 1)
        self.assertEqual(srv.stop(), 0)

    def test_agent_follows_a_killed_queue_manager(self):
        srv = self.start_server()
        wait_until(lambda: srv.role_pids("local"), scaled(10), what="the local agent")
        old_qmgr, old_agent = srv.role_pids("qmgr")[0], srv.role_pids("local")[0]
        os.kill(old_qmgr, signal.SIGKILL)
        wait_until(lambda: not process_alive(old_agent), scaled(5),
                   what="the old agent to die with its queue manager")
        qid = smtplib_send(srv.port, "x@remote.test", ["dave@example.test"],
                           make_message("after the queue manager died"))
        srv.wait_delivery("dave", qid, timeout=scaled(15))
        self.assertEqual(srv.stop(), 0)


@unittest.skipUnless(IS_ROOT, "needs root")
class RefusedAccountsTest(PosternTestCase):

    def refused(self, config, *patterns):
        srv = self.start_server(start=False, config=config)
        rc, log = srv.serve_refused()
        self.assertEqual(rc, 1, log)
        for pattern in patterns:
            self.assertRegex(log, pattern)
        self.assertNotIn("listening", log)
        self.assertFalse(os.path.exists(srv.spool_dir), "spool created before refusing")
        return log

    def test_empty_user_as_root(self):
        self.refused({"user": ""}, r"postern\.conf: user: empty, but postern is started as "
                     r"root and no role may run as root")

    def test_empty_mail_owner_as_root(self):
        self.refused({"mail_owner": ""}, r"postern\.conf: mail_owner: empty")

    def test_root_account_refused(self):
        log = self.refused({"user": "root", "mail_owner": "root"},
                           r"postern\.conf: user: account \"root\" has uid 0")
        self.assertRegex(log, r"mail_owner: account \"root\" has uid 0")

    def test_same_account_for_both_refused(self):
        self.refused({"mail_owner": "nobody"},
                     r"user and mail_owner: both are uid %d, but they must differ"
                     % NOBODY.pw_uid)

    def test_unknown_account_refused(self):
        self.refused({"mail_owner": "no-such-account-here"},
                     r"mail_owner: account \"no-such-account-here\" does not exist")

    def test_users_file_uid_that_is_not_mail_owner(self):
        srv = self.start_server(start=False)
        with open(srv.users_path, "a") as f:
            f.write("erin@example.test:{PLAIN}x:%d:%d::::\n" % (NOBODY.pw_uid, MAIL.pw_gid))
            f.write("fred@example.test:{PLAIN}x:mail:mail::::\n")
        rc, log = srv.serve_refused()
        self.assertEqual(rc, 1, log)
        self.assertRegex(log, r"%s:6: uid \"%d\" is not the one of mail_owner mail \(uid %d\): "
                         r"postern writes every mailbox as mail_owner"
                         % (re.escape(srv.users_path), NOBODY.pw_uid, MAIL.pw_uid))
        self.assertNotRegex(log, r"users:7:")
        self.assertNotIn("listening", log)


if __name__ == "__main__":
    unittest.main()

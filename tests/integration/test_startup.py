"""
test_startup.py - what postern checks before it serves (issue 5, defects
4, 10 and 12): a symbolic link planted in the spool is never followed by
the root supervisor, folders a role cannot reach or write stop the start
(or the reload) with a message naming the path and the account instead of
a server that says "listening" and answers 451, the open-file limit is
raised or the start refused, check-config reports the problems of every
stage at once, and without root everything runs as the invoking user.
"""
import os
import pwd
import re
import shutil
import signal
import stat
import subprocess
import time
import unittest

from harness import (IS_ROOT, POSTERN_BIN, PosternServer, PosternTestCase, free_port, make_message,
                     scaled, smtplib_send, wait_until)

NOBODY = pwd.getpwnam("nobody")


def run_as_nobody(*argv):
    return subprocess.run(["setpriv", "--reuid=%d" % NOBODY.pw_uid,
                           "--regid=%d" % NOBODY.pw_gid, "--clear-groups"] + list(argv),
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=scaled(10))


def owner_and_mode(path):
    st = os.lstat(path)
    return st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)


@unittest.skipUnless(IS_ROOT, "needs root: the supervisor is root only then")
class SymlinkInSpoolTest(PosternTestCase):
    """Defect 4: the root supervisor chowned spool folders by path, so a
    link planted by a compromised role gave that role any root file."""

    def test_planted_links_are_never_followed(self):
        srv = self.start_server()
        target_dir = os.path.join(srv.dir, "root-folder")
        target_file = os.path.join(srv.dir, "root-file")
        os.mkdir(target_dir, 0o755)
        with open(target_file, "w") as f:
            f.write("root's\n")
        os.chmod(target_file, 0o644)
        before = (owner_and_mode(target_dir), owner_and_mode(target_file))
        # As the unprivileged user (what a compromised role could do):
        hold = os.path.join(srv.spool_dir, "hold")
        quarantine = os.path.join(srv.spool_dir, "quarantine")
        p = run_as_nobody("sh", "-c", "rmdir %s %s && ln -s %s %s && ln -s %s %s" % (
            hold, quarantine, target_dir, hold, target_file, quarantine))
        self.assertEqual(p.returncode, 0, p.stderr)
        # Reload: refused, the running generation goes on.
        offset = srv.log_size()
        m = srv.reload()
        self.assertIn("keeping the running one", m.group(0))
        log = srv.log_since(offset)
        self.assertRegex(log, r"spool_dir %s: is a symbolic link" % re.escape(hold))
        self.assertRegex(log, r"spool_dir %s: is a symbolic link" % re.escape(quarantine))
        self.assertEqual((owner_and_mode(target_dir), owner_and_mode(target_file)), before)
        qid = smtplib_send(srv.port, "x@remote.test", ["alice@example.test"],
                           make_message("after the refused reload"))
        srv.wait_delivery("alice", qid)
        # Restart: refused too, nothing changed.
        self.assertEqual(srv.stop(), 0)
        rc, log = srv.serve_refused()
        self.assertEqual(rc, 1, log)
        self.assertRegex(log, r"spool_dir %s: is a symbolic link" % re.escape(hold))
        self.assertEqual((owner_and_mode(target_dir), owner_and_mode(target_file)), before)
        self.assertEqual(os.stat(target_dir).st_uid, 0)


@unittest.skipUnless(IS_ROOT, "needs root")
class UnreachableFolderTest(PosternTestCase):
    """Defect 10: a spool or mail_root the roles cannot reach gave a
    server that listened and answered 451 to everything."""

    def private_parent(self, srv):
        private = os.path.join(srv.dir, "private")
        os.mkdir(private, 0o700)  # root's, closed to everyone else
        return private

    def test_spool_under_a_root_only_folder(self):
        srv = self.start_server(start=False, config={"spool_dir": "private/spool"})
        self.private_parent(srv)
        rc, log = srv.serve_refused()
        self.assertEqual(rc, 1, log)
        self.assertRegex(log, r"spool_dir %s: not reachable as user nobody: Permission denied"
                         % re.escape(os.path.join(srv.dir, "private", "spool")))
        self.assertNotIn("listening", log)

    def test_mail_root_under_a_root_only_folder(self):
        srv = self.start_server(start=False, config={"mail_root": "private/mail"})
        self.private_parent(srv)
        rc, log = srv.serve_refused()
        self.assertEqual(rc, 1, log)
        self.assertRegex(log, r"mail_root %s: not reachable as user mail: Permission denied"
                         % re.escape(os.path.join(srv.dir, "private", "mail")))
        self.assertNotIn("listening", log)

    def test_existing_folder_of_the_wrong_owner(self):
        srv = self.start_server(start=False)
        os.mkdir(srv.mail_root, 0o755)  # root's, as an old installation left it
        rc, log = srv.serve_refused()
        self.assertEqual(rc, 1, log)
        self.assertRegex(log, r"mail_root %s: not writable by user mail \(owner uid 0, "
                         r"mode 0755\)" % re.escape(srv.mail_root))
        self.assertEqual(os.stat(srv.mail_root).st_uid, 0, "an existing folder was chowned")

    def test_reload_to_an_unreachable_folder_keeps_running(self):
        srv = self.start_server()
        self.private_parent(srv)
        srv.settings["mail_root"] = "private/mail"
        srv.write_config()
        offset = srv.log_size()
        m = srv.reload()
        self.assertIn("keeping the running one", m.group(0))
        self.assertRegex(srv.log_since(offset), r"mail_root .*/private/mail: not reachable "
                         r"as user mail")
        qid = smtplib_send(srv.port, "x@remote.test", ["bob@example.test"],
                           make_message("old generation still delivers"))
        srv.wait_delivery("bob", qid)
        self.assertEqual(srv.stop(), 0)

    def test_users_file_readable_by_user_is_warned_about(self):
        srv = self.start_server(start=False)
        os.chmod(srv.users_path, 0o644)
        srv.start()
        srv.wait_log(r"warning: users_file %s: readable by user nobody, which runs the smtp "
                     r"workers, but it holds password hashes: make it mode 0600 owned by root "
                     r"\(or 0640 root:dovecot when Dovecot reads the same file\)"
                     % re.escape(srv.users_path))
        self.assertEqual(srv.stop(), 0)


class DescriptorLimitTest(PosternTestCase):
    """Start-up half of defect 12: worker_connections must fit the
    open-file limit (two descriptors per session in DATA)."""

    def test_limit_that_cannot_be_met_is_refused(self):
        with open("/proc/sys/fs/nr_open") as f:
            nr_open = int(f.read())
        if nr_open >= 2000064:
            self.skipTest("fs.nr_open is %d: worker_connections cannot exceed it" % nr_open)
        srv = self.start_server(start=False, config={"worker_connections": "1000000"})
        rc, log = srv.serve_refused()
        self.assertEqual(rc, 1, log)
        # It is what the workers need that exceeds the kernel's ceiling.
        expected = (r"worker_connections: 1000000 sessions per smtp worker need 2000064 open "
                    r"files \(two per session plus 64\), more than the kernel lets any process "
                    r"open \(fs\.nr_open = %d\): set worker_connections to at most %d"
                    % (nr_open, (nr_open - 64) // 2))
        self.assertRegex(log, expected)
        self.assertNotIn("listening", log)
        p = srv.run_cli("check-config")
        self.assertEqual(p.returncode, 1)
        self.assertRegex(p.stderr.decode(), expected)

    @unittest.skipUnless(IS_ROOT, "needs root to run check-config as another user")
    def test_limit_an_ordinary_user_cannot_raise(self):
        srv = self.start_server(start=False, config={"worker_connections": "3000"})
        p = subprocess.run(["prlimit", "--nofile=256:256", "setpriv",
                            "--reuid=%d" % NOBODY.pw_uid, "--regid=%d" % NOBODY.pw_gid,
                            "--clear-groups", POSTERN_BIN, "check-config", "-c", srv.conf_path],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=scaled(20))
        err = p.stderr.decode()
        self.assertEqual(p.returncode, 1, err)
        self.assertIn("worker_connections: 3000 sessions per smtp worker need 6064 open files "
                      "(two per session plus 64), but the limit is 256: lower "
                      "worker_connections or raise the limit", err)
        self.assertNotIn("nr_open", err)

    def limits_of_workers(self, srv):
        out = []
        for pid in srv.role_pids("smtp"):
            with open("/proc/%d/limits" % pid) as f:
                m = re.search(r"^Max open files\s+(\d+)\s+(\d+)", f.read(), re.M)
            out.append((int(m.group(1)), int(m.group(2))))
        return out

    def test_soft_limit_raised_to_the_hard_one(self):
        srv = self.start_server(start=False, config={"worker_connections": "3000"})
        srv.command_prefix = ["prlimit", "--nofile=256:8000"]
        srv.start()
        srv.wait_roles(smtp=2, qmgr=1)
        self.assertEqual(self.limits_of_workers(srv), [(8000, 8000)] * 2)
        self.assertEqual(srv.stop(), 0)

    @unittest.skipUnless(IS_ROOT, "only root may raise the hard limit")
    def test_root_raises_the_hard_limit(self):
        probe = subprocess.run(["prlimit", "--nofile=256:256", "sh", "-c", "ulimit -Hn 8000"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if probe.returncode != 0:
            self.skipTest("this root lacks CAP_SYS_RESOURCE (a container)")
        srv = self.start_server(start=False, config={"worker_connections": "3000"})
        srv.command_prefix = ["prlimit", "--nofile=256:256"]
        srv.start()
        srv.wait_roles(smtp=2, qmgr=1)
        self.assertEqual(self.limits_of_workers(srv), [(6064, 6064)] * 2)
        self.assertEqual(srv.stop(), 0)


class CheckConfigStagesTest(PosternTestCase):
    """check-config reports every problem it can find, of every stage."""

    def setUp(self):
        super().setUp()
        self.srv = PosternServer(name="checkstages")
        self.addCleanup(self.srv.remove)

    def test_paths_that_are_not_folders(self):
        for path in (self.srv.spool_dir, self.srv.mail_root):
            with open(path, "w") as f:
                f.write("not a folder\n")
        p = self.srv.run_cli("check-config")
        err = p.stderr.decode()
        self.assertEqual(p.returncode, 1, err)
        self.assertRegex(err, r"spool_dir %s: exists but is not a folder"
                         % re.escape(self.srv.spool_dir))
        self.assertRegex(err, r"mail_root %s: exists but is not a folder"
                         % re.escape(self.srv.mail_root))
        rc, log = self.srv.serve_refused()
        self.assertEqual(rc, 1, log)
        self.assertRegex(log, r"spool_dir %s: exists but is not a folder"
                         % re.escape(self.srv.spool_dir))

    def test_problems_of_several_stages_in_one_run(self):
        with open(self.srv.conf_path, "a") as f:
            f.write("bogus_key = 1\n")
        with open(self.srv.users_path, "a") as f:
            f.write("this line has no colon\n")
            f.write("zed@example.test:{PLAIN}x:4242:::::\n")
        with open(self.srv.mail_root, "w") as f:
            f.write("not a folder\n")
        p = self.srv.run_cli("check-config")
        err = p.stderr.decode()
        self.assertEqual(p.returncode, 1, err)
        self.assertRegex(err, r"(?m)^%s:\d+: unknown key \"bogus_key\"" % re.escape(self.srv.conf_path))
        self.assertRegex(err, r"(?m)^%s:6: expected user@domain" % re.escape(self.srv.users_path))
        self.assertRegex(err, r"(?m)^%s:7: uid \"4242\" is not the one of .*postern writes "
                         r"every mailbox as mail_owner" % re.escape(self.srv.users_path))
        self.assertRegex(err, r"mail_root %s: exists but is not a folder"
                         % re.escape(self.srv.mail_root))
        self.assertNotIn(": ok", p.stdout.decode())

    def test_two_listener_keys_on_one_address(self):
        # serve would retry bind for 10 s and end with "Address already
        # in use", naming neither key; check-config names both.
        srv = self.srv
        other = free_port()
        srv.settings["auth_cleartext_networks"] = "127.0.0.0/8"
        srv.settings["submission_listen"] = "127.0.0.1:%d" % srv.port
        srv.settings["pop3_listen"] = "127.0.0.1:%d" % other
        srv.settings["pop3s_listen"] = "127.0.0.1:0%d" % other
        srv.settings["smtps_listen"] = "0.0.0.0:%d" % other  # the any-address too
        srv.write_config()
        p = srv.run_cli("check-config")
        err = p.stderr.decode()
        self.assertEqual(p.returncode, 1, err)
        conf = re.escape(srv.conf_path)
        self.assertRegex(err, r"(?m)^%s:\d+: listen 127\.0\.0\.1:%d and submission_listen "
                         r"127\.0\.0\.1:%d: the same address:port cannot serve two "
                         r"listener keys$" % (conf, srv.port, srv.port))
        self.assertRegex(err, r"(?m)^%s:\d+: pop3_listen 127\.0\.0\.1:%d and pop3s_listen "
                         r"127\.0\.0\.1:0%d: " % (conf, other, other))
        self.assertRegex(err, r"(?m)^%s:\d+: smtps_listen 0\.0\.0\.0:%d and pop3_listen "
                         % (conf, other))
        self.assertNotRegex(err, r"listen 127\.0\.0\.1:%d and smtps_listen" % srv.port)
        self.assertNotIn(": ok", p.stdout.decode())

    def test_log_file_in_a_missing_folder(self):
        # check-config said ok, then serve stopped at "log_file ...: No
        # such file or directory".
        srv = self.srv
        missing = os.path.join(srv.dir, "no-such-folder")
        srv.settings["log_to"] = "file"
        srv.settings["log_file"] = os.path.join(missing, "postern.log")
        srv.write_config()
        p = srv.run_cli("check-config")
        err = p.stderr.decode()
        self.assertEqual(p.returncode, 1, err)
        self.assertRegex(err, r"(?m)^%s:\d+: log_file %s/postern\.log: its folder %s does not "
                         r"exist" % (re.escape(srv.conf_path), re.escape(missing),
                                     re.escape(missing)))
        self.assertFalse(os.path.exists(missing))
        # Once the folder is there, check-config is content.
        os.mkdir(missing)
        p = srv.run_cli("check-config")
        self.assertEqual(p.returncode, 0, p.stderr.decode())

    def test_check_config_creates_nothing(self):
        p = self.srv.run_cli("check-config")
        self.assertEqual(p.returncode, 0, p.stderr.decode())
        self.assertFalse(os.path.exists(self.srv.spool_dir))
        self.assertFalse(os.path.exists(self.srv.mail_root))

    @unittest.skipUnless(IS_ROOT, "needs root")
    def test_unknown_user_still_gets_its_spool_checked(self):
        # The folders are checked as the role's account; without one,
        # what does not depend on it is still reported.
        with open(self.srv.spool_dir, "w") as f:
            f.write("not a folder\n")
        self.srv.settings.update({"user": "no-such-account-here",
                                  "mail_root": "/etc/passwd"})
        self.srv.write_config()
        p = self.srv.run_cli("check-config")
        err = p.stderr.decode()
        self.assertEqual(p.returncode, 1, err)
        self.assertIn('user: account "no-such-account-here" does not exist', err)
        self.assertRegex(err, r"(?m)^spool_dir %s: exists but is not a folder$"
                         % re.escape(self.srv.spool_dir))
        self.assertRegex(err, r"(?m)^mail_root /etc/passwd: exists but is not a folder$")
        self.assertNotIn("check process failed", err)

    @unittest.skipUnless(IS_ROOT, "needs root")
    def test_users_file_warning_before_the_spool_exists(self):
        os.chmod(self.srv.users_path, 0o644)
        p = self.srv.run_cli("check-config")
        err = p.stderr.decode()
        self.assertEqual(p.returncode, 0, err)  # a warning, not a problem
        self.assertRegex(err, r"(?m)^warning: users_file %s: readable by user nobody"
                         % re.escape(self.srv.users_path))
        self.assertFalse(os.path.exists(self.srv.spool_dir))

    def test_hint_fits_a_file_in_the_path(self):
        afile = os.path.join(self.srv.dir, "afile")
        with open(afile, "w") as f:
            f.write("a file, not a folder\n")
        self.srv.settings["mail_root"] = "afile/mail"
        self.srv.write_config()
        p = self.srv.run_cli("check-config")
        err = p.stderr.decode()
        self.assertEqual(p.returncode, 1, err)
        self.assertRegex(err, r"(?m)^mail_root %s/mail: not reachable as user \w+: Not a "
                         r"directory \(%s is a file, not a folder\)$"
                         % (re.escape(afile), re.escape(afile)))
        self.assertNotIn("searchable", err)
        rc, log = self.srv.serve_refused()
        self.assertEqual(rc, 1, log)
        self.assertRegex(log, r"mail_root %s/mail: cannot create it for \w+: Not a directory "
                         r"\(%s is a file, not a folder\)" % (re.escape(afile), re.escape(afile)))
        self.assertNotIn("exists but is not a folder", log)

    @unittest.skipUnless(IS_ROOT, "needs root")
    def test_accounts_checked(self):
        self.srv.settings.update({"user": "", "mail_owner": "no-such-account-here"})
        self.srv.write_config()
        p = self.srv.run_cli("check-config")
        err = p.stderr.decode()
        self.assertEqual(p.returncode, 1, err)
        self.assertIn("user: empty, but postern is started as root", err)
        self.assertIn('mail_owner: account "no-such-account-here" does not exist', err)


class StartupLogTest(PosternTestCase):
    """Serving, the start-up and reload checks log like everything else
    (time, role, level); check-config prints them plainly."""

    LOG_LINE = r"(?m)^\d{4}-\d\d-\d\dT[\d:.]+Z postern/master\[\d+\]: %s: %s$"

    def test_starting_comes_before_listening(self):
        srv = self.start_server()
        log = srv.log()
        starting = log.index("info: postern starting:")
        listening = log.index("info: listening on 127.0.0.1:%d" % srv.port)
        self.assertLess(starting, listening, log)
        self.assertEqual(srv.stop(), 0)

    def test_refused_start_and_reload_are_logged(self):
        srv = self.start_server(start=False)
        afile = os.path.join(srv.dir, "afile")
        with open(afile, "w") as f:
            f.write("a file, not a folder\n")
        srv.settings["spool_dir"] = "afile"
        srv.write_config()
        rc, log = srv.serve_refused()
        self.assertEqual(rc, 1, log)
        self.assertRegex(log, self.LOG_LINE % ("error", r"spool_dir %s: exists but is not a "
                                               r"folder" % re.escape(afile)))
        self.assertRegex(log, self.LOG_LINE % ("error", "postern cannot work with this "
                                               "configuration: not starting"))
        srv.settings["spool_dir"] = "spool"
        srv.write_config()
        srv.start()
        srv.write_config(extra_text="no_such_key = 1\n")
        offset = srv.log_size()
        srv.reload()
        srv.wait_log(r"reload: .*keeping the running one", since=offset)
        self.assertRegex(srv.log_since(offset), self.LOG_LINE % (
            "error", r"%s:\d+: unknown key \"no_such_key\"" % re.escape(srv.conf_path)))
        # check-config keeps the plain FILE:LINE form.
        p = srv.run_cli("check-config")
        self.assertRegex(p.stderr.decode(), r"(?m)^%s:\d+: unknown key \"no_such_key\"$"
                         % re.escape(srv.conf_path))
        self.assertEqual(srv.stop(), 0)

    def test_reload_names_the_listener_keys_that_changed(self):
        # Only pop3_listen changes: the warning named "listen" before.
        srv = self.start_server()
        srv.settings["pop3_listen"] = "127.0.0.1:%d" % free_port()
        srv.write_config()
        offset = srv.log_size()
        srv.reload()
        m = srv.wait_log(r"reload: \S+ changed; keeping the bound sockets until a restart",
                         since=offset)
        self.assertIn("reload: pop3_listen changed;", m.group(0))
        srv.settings["listen"] = "127.0.0.1:%d" % free_port()
        srv.settings["pop3_listen"] = None
        srv.write_config()
        offset = srv.log_size()
        srv.reload()
        m = srv.wait_log(r"reload: .* changed; keeping the bound sockets", since=offset)
        self.assertIn("reload: listen, pop3_listen changed;", m.group(0))
        self.assertEqual(srv.stop(), 0)


@unittest.skipUnless(IS_ROOT, "needs root to start a server as another user")
class NotRootTest(PosternTestCase):
    """Started by an ordinary user, every process runs as that user; user
    and mail_owner only have to name accounts (a warning otherwise)."""

    def test_everything_runs_as_the_invoking_user(self):
        srv = self.start_server(start=False, config={"user": "no-such-account-here",
                                                      "mail_owner": "mail"})
        for root, dirs, files in os.walk(srv.dir):
            for name in [root] + [os.path.join(root, n) for n in files]:
                os.chown(name, NOBODY.pw_uid, NOBODY.pw_gid)
        os.chown(srv.log_path if os.path.exists(srv.log_path) else srv.dir,
                 NOBODY.pw_uid, NOBODY.pw_gid)
        srv.command_prefix = ["setpriv", "--reuid=%d" % NOBODY.pw_uid,
                              "--regid=%d" % NOBODY.pw_gid, "--clear-groups"]
        srv.start()
        srv.wait_log(r"warning: .*postern\.conf: user: account \"no-such-account-here\" does "
                     r"not exist \(ignored: postern is not started as root, so every process "
                     r"runs as nobody\)")
        qid = smtplib_send(srv.port, "x@remote.test", ["alice@example.test"],
                           make_message("no root at all"))
        name, _ = srv.wait_delivery("alice", qid)
        self.assertEqual(os.stat(os.path.join(srv.maildir("alice"), name)).st_uid,
                         NOBODY.pw_uid)
        wait_until(lambda: len(srv.role_pids("local")) == 4, scaled(10),
                   what="the local agents (delivery_lanes = 4 by default)")
        roles = srv.role_pids("smtp") + srv.role_pids("qmgr") + srv.role_pids("local")
        self.assertEqual(len(roles), 2 + 1 + 4)
        for pid in [srv.pid] + roles:
            with open("/proc/%d/status" % pid) as f:
                uids = re.search(r"^Uid:\s+(.*)$", f.read(), re.M).group(1).split()
            self.assertEqual(uids, [str(NOBODY.pw_uid)] * 4)
        # No account switch happened, so only the explicit PR_SET_DUMPABLE
        # makes the roles non-dumpable (their /proc files belong to root);
        # the supervisor itself is left as it is.
        for pid in roles:
            self.assertEqual(os.stat("/proc/%d/status" % pid).st_uid, 0, "pid %d" % pid)
        self.assertEqual(os.stat("/proc/%d/status" % srv.pid).st_uid, NOBODY.pw_uid)
        self.assertEqual(srv.stop(), 0)


if __name__ == "__main__":
    unittest.main()

"""
test_accounts.py - `postern user` and `postern domain` against a running
server: the real commands edit users_file and domains_file, the server
notices the change by itself and reloads, and smtplib then finds the new
user (delivered), the removed user (550 5.1.1), a new domain (local: 550
for an unknown address) and its catch-all (delivered to the catch-all's
mailbox). Passwords come from standard input or a terminal (a pty),
never from the command line; the hashes are yescrypt in the form Dovecot
reads (checked with doveadm pw and with a real Dovecot IMAP login); the
files keep their comments, unknown fields, mode and owner; a broken
line, or one the running server would refuse (a relative quota rule, a
foreign gid), is reported as FILE:LINE and nothing changes; `user show`
names the quota in force and where it comes from (own rule, domain
default, mailbox_quota).
"""
import grp
import json
import os
import pty
import re
import select
import shutil
import smtplib
import stat
import subprocess
import time

from dovecot_peer import DovecotPeer
from harness import (IS_ROOT, POSTERN_BIN, PosternTestCase, make_message, process_alive,
                     scaled, smtplib_send, wait_until)

SENDER = "sender@remote.test"
HASH_RE = re.compile(r"^([^:]+):\{CRYPT\}(\$y\$[^:]+):")


class AccountsTest(PosternTestCase):

    def setUp(self):
        super().setUp()
        self.srv = self.start_server(start=False, config={"domains_file": "domains"})
        self.domains_path = os.path.join(self.srv.dir, "domains")
        with open(self.domains_path, "w") as f:
            f.write("# local domains besides local_domains\n")
        with open(self.srv.users_path, "a") as f:
            f.write("# keep this comment\n")
            f.write("keep@example.test:{PLAIN}secret::::::userdb_mail=maildir:~/Mail "
                    "nopassword\n")
        self.srv.start()

    # -- helpers --

    def cli(self, *args, password=None, expect_rc=0):
        """Run postern with -c; password (str) goes to standard input."""
        p = subprocess.run([POSTERN_BIN] + list(args) + ["-c", self.srv.conf_path],
                           input=(password + "\n") if password is not None else "",
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           universal_newlines=True, timeout=scaled(30))
        if expect_rc is not None:
            self.assertEqual(p.returncode, expect_rc,
                             "postern %s: status %d\nstdout: %s\nstderr: %s"
                             % (" ".join(args), p.returncode, p.stdout, p.stderr))
        return p

    def mark(self):
        """Before a change: the log offset and the processes of the
        running generation (the anvil and the auth process stay over
        reloads: known once they have logged)."""
        self.srv.wait_log(r"postern/anvil\[\d+\]: info: anvil ready")
        self.srv.wait_log(r"postern/auth\[\d+\]: info: auth ready")
        kept = set(self.srv.role_pids("anvil")) | set(self.srv.role_pids("auth"))
        return self.srv.log_size(), [p for p in self.srv.children() if p not in kept]

    def changed_and_reloaded(self, mark):
        """Wait until the server noticed the change made since mark and
        its new generation is the only one serving."""
        offset, old = mark
        # (two files changed within one look are one reload, logged with the first)
        self.srv.wait_log(r"changed: reloading the tables", since=offset)
        self.srv.wait_log(r"reload: \d+ users, \d+ aliases; starting generation", since=offset)
        wait_until(lambda: not any(process_alive(p) for p in old), scaled(15),
                   what="the old generation to exit")
        self.srv.wait_roles()

    def rcpt_reply(self, rcpt):
        with smtplib.SMTP("127.0.0.1", self.srv.port, timeout=scaled(15)) as s:
            s.ehlo("client.test")
            s.mail(SENDER)
            code, text = s.rcpt(rcpt)
            s.rset()
            return code, text.decode()

    def send(self, rcpt, subject):
        return smtplib_send(self.srv.port, SENDER, [rcpt], make_message(subject=subject, to=rcpt))

    def users_text(self):
        with open(self.srv.users_path) as f:
            return f.read()

    # -- users --

    def test_added_user_receives_mail_without_a_restart(self):
        code, text = self.rcpt_reply("newbie@example.test")
        self.assertEqual(code, 550, text)
        mark = self.mark()
        p = self.cli("user", "add", "Newbie@Example.test", "--quota", "10M", password="n3w pass")
        self.assertIn("added user newbie@example.test", p.stdout)
        self.changed_and_reloaded(mark)
        qid = self.send("newbie@example.test", "welcome")
        self.srv.wait_delivery("newbie", qid)

        text = self.users_text()
        line = [l for l in text.splitlines() if l.startswith("newbie@example.test:")]
        self.assertEqual(len(line), 1, text)
        self.assertRegex(line[0], HASH_RE)
        self.assertTrue(line[0].endswith("::::::userdb_quota_rule=*:storage=10M"), line[0])
        self.assertNotIn("n3w pass", text)
        # the other lines are as they were, comments and unknown fields too
        self.assertIn("# keep this comment\n", text)
        self.assertIn("keep@example.test:{PLAIN}secret::::::userdb_mail=maildir:~/Mail "
                      "nopassword\n", text)
        self.assertEqual(stat.S_IMODE(os.stat(self.srv.users_path).st_mode), 0o600)

    def test_hash_is_yescrypt_that_dovecot_verifies(self):
        if shutil.which("doveadm") is None:
            self.fail("doveadm is missing: install dovecot-core (tools/install-deps.sh)")
        self.cli("user", "add", "hashme@example.test", password="correct horse")
        m = HASH_RE.search([l for l in self.users_text().splitlines()
                            if l.startswith("hashme@")][0])
        hashed = "{CRYPT}" + m.group(2)
        ok = subprocess.run(["doveadm", "pw", "-t", hashed, "-p", "correct horse"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            universal_newlines=True, timeout=scaled(30))
        self.assertEqual(ok.returncode, 0, ok.stdout)
        self.assertIn("(verified)", ok.stdout)
        bad = subprocess.run(["doveadm", "pw", "-t", hashed, "-p", "wrong"],
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             universal_newlines=True, timeout=scaled(30))
        self.assertNotEqual(bad.returncode, 0, bad.stdout)

    def test_passwd_changes_only_the_hash(self):
        self.cli("user", "add", "pat@example.test", "--quota", "1G", password="first")
        before = [l for l in self.users_text().splitlines() if l.startswith("pat@")][0]
        p = self.cli("user", "passwd", "pat@example.test", "--stdin", password="second")
        self.assertIn("changed the password of pat@example.test", p.stdout)
        after = [l for l in self.users_text().splitlines() if l.startswith("pat@")][0]
        self.assertNotEqual(before, after)
        self.assertEqual(before.split(":", 2)[0], after.split(":", 2)[0])
        self.assertTrue(after.endswith("::::::userdb_quota_rule=*:storage=1G"), after)

    def test_deleted_user_gets_550(self):
        qid = self.send("bob@example.test", "before")
        self.srv.wait_delivery("bob", qid)
        mark = self.mark()
        p = self.cli("user", "del", "bob@example.test")
        self.assertIn("deleted user bob@example.test", p.stdout)
        self.assertIn("is kept", p.stdout)
        self.changed_and_reloaded(mark)
        code, text = self.rcpt_reply("bob@example.test")
        self.assertEqual(code, 550, text)
        self.assertIn("5.1.1", text)
        self.assertNotIn("bob@example.test:", self.users_text())
        # the mailbox is kept
        self.assertEqual(len(self.srv.maildir_new("bob")), 1)

    def test_password_is_never_taken_from_the_command_line(self):
        before = self.users_text()
        for argv in (["--password", "x"], ["--password=x"], ["-p", "x"]):
            p = self.cli("user", "add", "cmdline@example.test", *argv, expect_rc=2)
            self.assertIn("never taken from the command line", p.stderr)
        self.assertEqual(self.users_text(), before)

    def test_empty_password_is_refused(self):
        before = self.users_text()
        p = self.cli("user", "add", "empty@example.test", password="", expect_rc=1)
        self.assertIn("no password", p.stderr)
        self.assertEqual(self.users_text(), before)

    def test_password_with_a_nul_byte_is_refused(self):
        # crypt(3) would hash the bytes before the NUL only: a password
        # weaker than the one typed, and one no SASL client can send
        before = self.users_text()
        p = self.cli("user", "add", "nul@example.test", password="weak\0strong part",
                     expect_rc=1)
        self.assertIn("NUL", p.stderr)
        self.assertEqual(self.users_text(), before)

    def test_prompt_on_the_terminal_asks_twice_without_echo(self):
        out, rc = self.run_on_pty(["user", "add", "tty@example.test"], ["tty pass", "tty pass"])
        self.assertEqual(rc, 0, out)
        self.assertIn("New password for tty@example.test:", out)
        self.assertIn("Repeat the password:", out)
        self.assertNotIn("tty pass", out)
        self.assertIn("tty@example.test:{CRYPT}$y$", self.users_text())

        before = self.users_text()
        out, rc = self.run_on_pty(["user", "add", "tty2@example.test"], ["one", "two"])
        self.assertEqual(rc, 1, out)
        self.assertIn("differ", out)
        self.assertEqual(self.users_text(), before)

    def run_on_pty(self, args, answers):
        """postern on a new pseudo-terminal (its controlling terminal);
        each answer is typed after a prompt. Returns (output, status)."""
        pid, fd = pty.fork()
        if pid == 0:
            try:
                os.execv(POSTERN_BIN, [POSTERN_BIN] + args + ["-c", self.srv.conf_path])
            finally:
                os._exit(127)
        out = b""
        deadline = time.monotonic() + scaled(30)
        pending = list(answers)
        try:
            while time.monotonic() < deadline:
                r, _, _ = select.select([fd], [], [], 0.1)
                if r:
                    try:
                        chunk = os.read(fd, 4096)
                    except OSError:
                        break
                    if not chunk:
                        break
                    out += chunk
                if pending and out.rstrip().endswith(b":"):
                    time.sleep(0.1)  # echo is switched off right after the prompt
                    os.write(fd, (pending.pop(0) + "\n").encode())
                    out += b"\n"
        finally:
            _, status = os.waitpid(pid, 0)
            os.close(fd)
        return out.decode("utf-8", "replace"), os.waitstatus_to_exitcode(status)

    def test_show_names_scheme_and_quota_never_the_hash(self):
        self.cli("user", "add", "show@example.test", "--quota", "250M", password="pw")
        p = self.cli("user", "show", "show@example.test")
        self.assertIn("password: yescrypt", p.stdout)
        self.assertIn("quota:    250M", p.stdout)
        self.assertIn("/example.test/show/Maildir", p.stdout)
        self.assertNotIn("$y$", p.stdout)
        self.assertNotIn("{CRYPT}", p.stdout)
        p = self.cli("user", "show", "keep@example.test")
        self.assertIn("password: PLAIN", p.stdout)
        self.assertNotIn("secret", p.stdout)
        self.assertIn("extra:    userdb_mail=maildir:~/Mail nopassword", p.stdout)
        p = self.cli("user", "show", "show@example.test", "--json")
        shown = json.loads(p.stdout)
        self.assertEqual(shown["user"], "show@example.test")
        self.assertEqual(shown["password_scheme"], "yescrypt")
        self.assertEqual((shown["quota"], shown["quota_from"], shown["quota_rule"]),
                         (250 << 20, "user", "*:storage=250M"))
        self.assertTrue(shown["mailbox"].endswith("/example.test/show/Maildir"))
        self.assertNotIn("$y$", p.stdout)
        p = self.cli("user", "list", "--json")
        listed = json.loads(p.stdout)
        self.assertIn({"user": "show@example.test", "quota": 250 << 20, "quota_from": "user"},
                      listed)
        self.assertIn({"user": "alice@example.test", "quota": None, "quota_from": None},
                      listed)
        p = self.cli("user", "list")
        self.assertEqual(p.stdout.split(), sorted(
            ["alice@example.test", "bob@example.test", "carol@example.test",
             "dave@example.test", "admin@example.test", "keep@example.test",
             "show@example.test"]))

    def test_show_names_the_quota_that_applies_and_where_it_comes_from(self):
        # mailbox_quota applies to a user without a rule of their own in a
        # domain without a default (the administrator saw "quota: none")
        with open(self.srv.conf_path, "a") as f:
            f.write("mailbox_quota = 100M\n")
        self.cli("domain", "add", "example.org", "--quota", "1G")
        self.cli("user", "add", "own@example.org", "--quota", "5M", password="pw")
        self.cli("user", "add", "dom@example.org", password="pw")
        self.cli("user", "add", "free@example.test", "--quota", "0", password="pw")
        expect = {
            "alice@example.test": ("100M (mailbox_quota in %s)" % self.srv.conf_path,
                                   100 << 20, "mailbox_quota"),
            "dom@example.org": ("1G (the default of example.org)", 1 << 30, "domain"),
            "own@example.org": ("5M (the user's own rule)", 5 << 20, "user"),
            "free@example.test": ("no limit (the user's own rule)", None, "user"),
        }
        listed = json.loads(self.cli("user", "list", "--json").stdout)
        for user, (text, size, source) in expect.items():
            with self.subTest(user=user):
                p = self.cli("user", "show", user)
                self.assertIn("quota:    %s\n" % text, p.stdout)
                shown = json.loads(self.cli("user", "show", user, "--json").stdout)
                self.assertEqual((shown["quota"], shown["quota_from"]), (size, source))
                self.assertIn({"user": user, "quota": size, "quota_from": source}, listed)
        # without mailbox_quota, a user with no rule in a domain without a
        # default has no limit: "none", null
        with open(self.srv.conf_path) as f:
            conf = f.read().replace("mailbox_quota = 100M\n", "")
        with open(self.srv.conf_path, "w") as f:
            f.write(conf)
        p = self.cli("user", "show", "alice@example.test")
        self.assertIn("quota:    none\n", p.stdout)
        shown = json.loads(self.cli("user", "show", "alice@example.test", "--json").stdout)
        self.assertEqual((shown["quota"], shown["quota_from"]), (None, None))

    def test_show_names_a_message_limit(self):
        self.cli("user", "quota", "carol@example.test", "64k")
        with open(self.srv.users_path) as f:
            text = f.read().replace("userdb_quota_rule=*:storage=64K",
                                    "userdb_quota_rule=*:storage=64K:messages=30")
        with open(self.srv.users_path, "w") as f:
            f.write(text)
        p = self.cli("user", "show", "carol@example.test")
        self.assertIn("quota:    64K (the user's own rule)\nmessages: at most 30", p.stdout)
        shown = json.loads(self.cli("user", "show", "carol@example.test", "--json").stdout)
        self.assertEqual((shown["quota"], shown["quota_messages"], shown["quota_rule"]),
                         (64 << 10, 30, "*:storage=64K:messages=30"))

    def test_quota_set_and_removed(self):
        self.cli("user", "quota", "carol@example.test", "64k")
        line = [l for l in self.users_text().splitlines() if l.startswith("carol@")][0]
        self.assertEqual(line, "carol@example.test:{PLAIN}secret::::::"
                               "userdb_quota_rule=*:storage=64K")
        self.cli("user", "quota", "carol@example.test", "none")
        line = [l for l in self.users_text().splitlines() if l.startswith("carol@")][0]
        self.assertEqual(line, "carol@example.test:{PLAIN}secret::::::")
        p = self.cli("user", "quota", "carol@example.test", "lots", expect_rc=2)
        self.assertIn("not a size", p.stderr)

    def test_broken_line_is_named_and_nothing_changes(self):
        with open(self.srv.users_path, "a") as f:
            f.write("this line has no colon\n")
        before = self.users_text()
        line_no = before.count("\n")
        p = self.cli("user", "add", "x@example.test", password="pw", expect_rc=1)
        self.assertIn("%s:%d: expected user@domain:{SCHEME}password" % (self.srv.users_path,
                                                                        line_no), p.stderr)
        self.assertEqual(self.users_text(), before)

    def hand_add_line_the_server_refuses(self, line, why):
        """Append line to users_file by hand and wait until the server
        has refused to reload it (it keeps serving the old users)."""
        offset = self.srv.log_size()
        with open(self.srv.users_path, "a") as f:
            f.write(line + "\n")
        self.srv.wait_log(why, since=offset)
        self.srv.wait_log(r"reload: configuration has errors, keeping the running one",
                          since=offset)
        return self.users_text()

    def test_edits_of_a_file_the_server_refuses_are_refused(self):
        # (the administrator's report: "added user" printed, the user never live)
        cases = [
            ("hank@example.test:{PLAIN}x::::::userdb_quota_rule=*:storage=+10M",
             "relative quota limits"),
            ("gus@example.test:{PLAIN}x::1234:::::", 'gid "1234"'),
        ]
        for bad, why in cases:
            with self.subTest(line=bad):
                with open(self.srv.users_path) as f:
                    clean = f.read()
                before = self.hand_add_line_the_server_refuses(bad, why)
                line_no = before.count("\n")
                edits = [(("user", "add", "ivy@example.test"), "pw"),
                         (("user", "add", "ivy@example.test", "--quota", "10M"), "pw"),
                         (("user", "quota", "alice@example.test", "1G"), None),
                         (("user", "passwd", "alice@example.test"), "new"),
                         (("user", "del", "bob@example.test"), None)]
                for args, password in edits:
                    p = self.cli(*args, password=password, expect_rc=1)
                    self.assertRegex(p.stderr, r"(?m)^%s:%d: .*%s" % (
                        re.escape(self.srv.users_path), line_no, re.escape(why)), args)
                    self.assertIn("nothing changed", p.stderr)
                    self.assertNotIn("added user", p.stdout)
                    self.assertEqual(self.users_text(), before, args)
                # the server still serves the users it had, and no ivy
                self.assertEqual(self.rcpt_reply("bob@example.test")[0], 250)
                self.assertEqual(self.rcpt_reply("ivy@example.test")[0], 550)
                # once the line is removed, the same command works and goes live
                mark = self.mark()
                with open(self.srv.users_path, "w") as f:
                    f.write(clean)
                self.changed_and_reloaded(mark)

    def test_removing_the_refused_line_is_what_user_del_may_do(self):
        before = self.hand_add_line_the_server_refuses(
            "hank@example.test:{PLAIN}x::::::userdb_quota_rule=*:storage=-5M",
            "relative quota limits")
        mark = self.mark()
        p = self.cli("user", "del", "hank@example.test")
        self.assertIn("deleted user hank@example.test", p.stdout)
        self.assertNotIn("hank@", self.users_text())
        self.assertEqual(len(self.users_text().splitlines()), len(before.splitlines()) - 1)
        self.changed_and_reloaded(mark)
        p = self.cli("user", "add", "ivy@example.test", password="pw")
        self.assertIn("added user ivy@example.test", p.stdout)

    def test_quota_that_is_no_whole_kilobyte_stays_in_bytes(self):
        # a bare number in "*:storage=" counts kilobytes: 1000 bytes are 1000B
        self.cli("user", "add", "tiny@example.test", "--quota", "1000", password="pw")
        line = [l for l in self.users_text().splitlines() if l.startswith("tiny@")][0]
        self.assertTrue(line.endswith("userdb_quota_rule=*:storage=1000B"), line)
        shown = json.loads(self.cli("user", "show", "tiny@example.test", "--json").stdout)
        self.assertEqual((shown["quota"], shown["quota_from"]), (1000, "user"))

    def test_refusals_name_the_reason(self):
        p = self.cli("user", "add", "alice@example.test", password="pw", expect_rc=1)
        self.assertRegex(p.stderr, r"users:\d+: user alice@example.test exists already")
        p = self.cli("user", "add", "team@example.test", password="pw", expect_rc=1)
        self.assertIn("is an alias", p.stderr)
        p = self.cli("user", "add", "someone@elsewhere.test", password="pw", expect_rc=1)
        self.assertIn("elsewhere.test is not a local domain", p.stderr)
        p = self.cli("user", "del", "nobody@example.test", expect_rc=1)
        self.assertIn("no user nobody@example.test", p.stderr)
        p = self.cli("user", "add", "not-an-address", password="pw", expect_rc=2)
        self.assertIn("not an address", p.stderr)

    # -- domains --

    def test_new_domain_is_local_and_its_catch_all_takes_unknown_addresses(self):
        mark = self.mark()
        p = self.cli("domain", "add", "example.org", "--quota", "1G")
        self.assertIn("added domain example.org", p.stdout)
        self.changed_and_reloaded(mark)
        code, text = self.rcpt_reply("nobody@example.org")
        self.assertEqual(code, 550, text)  # local now: unknown users are refused

        mark = self.mark()
        self.cli("domain", "set", "example.org", "--catch-all", "alice@example.test")
        self.changed_and_reloaded(mark)
        qid = self.send("nobody@example.org", "caught")
        _, data = self.srv.wait_delivery("alice", qid)
        self.assertIn(b"Subject: caught", data)
        self.srv.wait_log(r"to=<alice@example.test> orig_to=<nobody@example.org>.*"
                          r"status=sent")

        with open(self.domains_path) as f:
            text = f.read()
        self.assertIn("# local domains besides local_domains\n", text)
        self.assertRegex(text, r"example\.org +quota=1G catch_all=alice@example\.test\n")
        p = self.cli("domain", "list")
        self.assertIn("example.org", p.stdout)
        self.assertIn("quota=1G catch_all=alice@example.test", p.stdout)
        self.assertRegex(p.stdout, r"example\.test +local_domains")
        p = self.cli("domain", "list", "--json")
        self.assertEqual(json.loads(p.stdout), [
            {"domain": "example.org", "from": "domains_file", "quota": 1 << 30,
             "catch_all": "alice@example.test"},
            {"domain": "example.test", "from": "local_domains", "quota": None,
             "catch_all": None}])

        # a user of the domain gets its own mail, not the catch-all
        mark = self.mark()
        self.cli("user", "add", "real@example.org", password="pw")
        self.changed_and_reloaded(mark)
        qid = self.send("real@example.org", "own")
        self.srv.wait_delivery("real@example.org", qid)
        p = self.cli("user", "show", "real@example.org")
        self.assertIn("quota:    1G (the default of example.org)", p.stdout)

        # deleting the catch-all's user says what happens to that mail
        self.cli("domain", "set", "example.org", "--catch-all", "real@example.org")
        p = self.cli("user", "del", "real@example.org")
        self.assertRegex(p.stderr, r"warning: .*domains:2: real@example.org was the catch-all "
                                   r"of example.org")

    def test_domain_with_users_is_not_deleted(self):
        self.cli("domain", "add", "example.net")
        self.cli("user", "add", "u@example.net", password="pw")
        p = self.cli("domain", "del", "example.net", expect_rc=1)
        self.assertIn("still has 1 user", p.stderr)
        self.cli("user", "del", "u@example.net")
        mark = self.mark()
        self.cli("domain", "del", "example.net")
        self.changed_and_reloaded(mark)
        p = self.cli("domain", "list")
        self.assertNotIn("example.net", p.stdout)
        p = self.cli("domain", "del", "example.test", expect_rc=1)
        self.assertIn("is in local_domains", p.stderr)

    def test_broken_domains_file_is_named_and_the_server_keeps_running(self):
        offset = self.srv.log_size()
        with open(self.domains_path, "a") as f:
            f.write("bad..domain\n")
        self.srv.wait_log(r"domains:2: not a valid domain name", since=offset)
        self.srv.wait_log(r"reload: configuration has errors, keeping the running one",
                          since=offset)
        p = self.cli("domain", "add", "example.org", expect_rc=1)
        self.assertIn("domains:2: not a valid domain name", p.stderr)
        qid = self.send("alice@example.test", "still serving")
        self.srv.wait_delivery("alice", qid)


class AccountsWithDovecotTest(PosternTestCase):
    """The users file `postern user` writes is the one Dovecot reads: a
    user added with the command logs in to Dovecot's IMAP with that
    password and reads the mail postern delivered; the file keeps the
    group Dovecot reads it with."""

    def test_dovecot_logs_in_with_the_password_set_by_postern(self):
        srv = self.start_server()
        if IS_ROOT:
            os.chown(srv.users_path, 0, grp.getgrnam("dovecot").gr_gid)
            os.chmod(srv.users_path, 0o640)
        offset = srv.log_size()
        subprocess.run([POSTERN_BIN, "user", "add", "imap@example.test", "--stdin", "--quota",
                        "10M", "-c", srv.conf_path], input="imap pass\n",
                       universal_newlines=True, check=True, timeout=scaled(30),
                       stdout=subprocess.PIPE)
        srv.wait_log(r"reload: \d+ users", since=offset)
        srv.wait_roles()
        qid = None
        deadline = time.monotonic() + scaled(15)
        while qid is None:
            try:
                qid = smtplib_send(srv.port, SENDER, ["imap@example.test"],
                                   make_message(subject="for imap", to="imap@example.test"))
            except (AssertionError, smtplib.SMTPException):
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        srv.wait_delivery("imap", qid)
        st = os.stat(srv.users_path)
        if IS_ROOT:
            self.assertEqual(st.st_gid, grp.getgrnam("dovecot").gr_gid)
        self.assertEqual(stat.S_IMODE(st.st_mode), 0o640 if IS_ROOT else 0o600)
        maildir_owner = os.stat(os.path.dirname(srv.maildir("imap")))
        dovecot = DovecotPeer(srv.mail_root, srv.users_path, maildir_owner.st_uid,
                              maildir_owner.st_gid)
        self.addCleanup(dovecot.stop)
        dovecot.start()
        # Dovecot's userdb sees the quota rule postern wrote
        user = subprocess.run(["doveadm", "-c", dovecot.conf_path, "user", "imap@example.test"],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              universal_newlines=True, timeout=scaled(30))
        self.assertEqual(user.returncode, 0, user.stdout)
        self.assertRegex(user.stdout, r"(?m)^quota_rule\s+\*:storage=10M$")
        imap = dovecot.login("imap@example.test", "imap pass")
        try:
            typ, data = imap.select("INBOX")
            self.assertEqual(typ, "OK")
            self.assertEqual(int(data[0]), 1)
            typ, data = imap.fetch("1", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
            self.assertIn(b"for imap", data[0][1])
        finally:
            imap.logout()

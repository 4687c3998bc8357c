"""
test_quarantine.py - the quarantine and the administrator's notices
(issue 7) against the real server:

* postern quarantine / postern hold list, show, release, delete, --json,
  on messages the test tool spool_put commits into quarantine/ and hold/
  with the queue writer, as the smtp worker does for those verdicts
  (tests/tools/spool_put.c): a release is delivered exactly once and at
  once (the wake-up FIFO, not the hour-long scan), also when the queue
  manager was not running; delete; planted FIFOs and links; files keep
  their owner;
* retention: the queue manager's scan removes quarantine entries older
  than quarantine_retention and logs it; hold/ never expires;
* notices: one queued by tests/tools/notice_put (the code the workers'
  commit threads run) reaches the administrator's Maildir with the
  template's placeholders filled; a template with a mistake is refused
  by check-config and serve with FILE:LINE;
* over SMTP, once the antivirus of issue 7 is merged (skipped until the
  binary knows clamav_db_dir and etc/clamav-test exists): a virus
  quarantined, the administrator told, the (forged) sender not, the
  release delivered once; a refused virus told; the rate bound; and,
  with a content rule that quarantines, the sender told only when
  notify_sender = yes.
"""
import json
import os
import pwd
import re
import subprocess
import time
import unittest

from harness import (DOMAIN, IS_ROOT, POSTERN_BIN, REPO, PosternTestCase, SmtpConn,
                     make_message, scaled, wait_until)

TOOLS = os.path.join(os.path.dirname(POSTERN_BIN), "tools")
DAY = 86400

EICAR = (r"X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*")


def tool(name):
    path = os.path.join(TOOLS, name)
    if not os.path.exists(path):
        raise AssertionError("%s missing: run make tools (or make check-integration)" % path)
    return path


def spool_owner():
    return pwd.getpwnam("nobody") if IS_ROOT else None


def put(srv, folder="quarantine", message=b"Subject: held for review\n\nbody\n",
        sender="sender@remote.test", rcpts=("alice@example.test",), age=None,
        text="virus found: Eicar-Test-Signature", hits=("virus:Eicar-Test-Signature",),
        reason="virus", check="scan"):
    """Commit message into folder with a q note, as the smtp worker does;
    its file then belongs to the spool's owner, like the worker's. Returns
    the queue id."""
    args = [tool("spool_put"), srv.spool_dir, folder, "--sender", sender,
            "--check", check, "--reason", reason, "--text", text]
    for r in rcpts:
        args += ["--rcpt", r]
    for h in hits:
        args += ["--hit", h]
    if age is not None:
        args += ["--age", str(age)]
    p = subprocess.run(args, input=message, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       timeout=scaled(10), check=True)
    qid = p.stdout.decode().strip()
    owner = spool_owner()
    if owner is not None:
        os.chown(os.path.join(srv.spool_dir, folder, qid), owner.pw_uid, owner.pw_gid)
    return qid


class QuarantineCommandTest(PosternTestCase):

    def start(self, **config):
        # A scan only every hour: anything delivered sooner was announced.
        settings = {"queue_scan_interval": "1h"}
        settings.update(config)
        return self.start_server(config=settings)

    def cli(self, srv, *args, rc=0):
        try:
            p = srv.run_cli(*args, timeout=scaled(10))
        except subprocess.TimeoutExpired:
            self.fail("postern %s hung" % " ".join(args))
        out, err = p.stdout.decode("utf-8", "replace"), p.stderr.decode("utf-8", "replace")
        if rc is not None:
            self.assertEqual(p.returncode, rc, "postern %s: %s\n%s" % (" ".join(args), out, err))
        return out, err

    def cli_json(self, srv, *args, rc=0):
        out, err = self.cli(srv, *(args + ("--json",)), rc=rc)
        try:
            return json.loads(out)
        except ValueError as e:
            self.fail("not one JSON document (%s): %r" % (e, out))

    def test_release_is_delivered_once_and_at_once(self):
        srv = self.start()
        qid = put(srv, rcpts=("alice@example.test", "bob@example.test"))
        out, _ = self.cli(srv, "quarantine", "list")
        self.assertRegex(out, r"(?m)^%s  \S+Z +\d+  <sender@remote\.test> -> "
                              r"<alice@example\.test> <bob@example\.test>  virus found: "
                              r"Eicar-Test-Signature \(scan\)$" % qid)
        self.assertIn("1 message in quarantine", out)
        time.sleep(0.5)
        self.assertEqual(srv.files_for("alice", qid), [], "delivered while quarantined")
        t0 = time.monotonic()
        out, _ = self.cli(srv, "quarantine", "release", qid)
        self.assertIn("%s: released into the queue (the queue manager starts its delivery now)"
                      % qid, out)
        _, data = srv.wait_delivery("alice", qid, timeout=scaled(10))
        srv.wait_delivery("bob", qid)
        self.assertLess(time.monotonic() - t0, scaled(10), "waited for a scan")
        self.assertIn(b"\nSubject: held for review\n", b"\n" + data)
        srv.wait_log(r"%s: released into the queue" % qid)
        srv.wait_log(r"%s: removed" % qid)
        time.sleep(1.5)
        self.assertEqual(len(srv.files_for("alice", qid)), 1)
        self.assertEqual(len(srv.files_for("bob", qid)), 1)
        self.assertEqual(srv.spool_files("quarantine"), [])
        self.assertEqual(srv.spool_files("queue"), [])
        # released once: a second release finds nothing
        _, err = self.cli(srv, "quarantine", "release", qid, rc=1)
        self.assertIn("no message %s in " % qid, err)
        self.assertEqual(srv.stop(), 0)

    def test_release_while_the_server_is_down(self):
        srv = self.start()
        qid = put(srv)
        self.assertEqual(srv.stop(), 0)
        out, _ = self.cli(srv, "quarantine", "release", qid)
        self.assertIn("no queue manager answered: it is delivered after the next queue scan "
                      "or start", out)
        self.assertIn(qid, srv.spool_files("queue"))
        srv.start()
        srv.wait_delivery("alice", qid)
        time.sleep(1)
        self.assertEqual(len(srv.files_for("alice", qid)), 1)

    def test_delete(self):
        srv = self.start()
        keep, gone = put(srv), put(srv, message=b"Subject: to delete\n\nx\n")
        out, _ = self.cli(srv, "quarantine", "delete", gone)
        self.assertEqual(out, "%s: deleted\n" % gone)
        self.assertEqual(srv.spool_files("quarantine"), [keep])
        doc = self.cli_json(srv, "quarantine", "delete", gone, rc=1)
        self.assertEqual(doc["results"][0]["done"], False)
        self.assertIn("no message", doc["results"][0]["error"])
        time.sleep(0.5)
        self.assertEqual(srv.files_for("alice", gone), [])

    def test_json(self):
        srv = self.start()
        qid = put(srv, message=b"Subject: =?utf-8?q?caf=C3=A9?= \"menu\"\n\tfolded\n\nx\n",
                  sender="", text='rule "no_exe" \\ matched', reason="content_rule",
                  hits=("rule:no_exe", "attachment:menu.pdf.exe"))
        doc = self.cli_json(srv, "quarantine", "list")
        self.assertEqual(doc["folder"], "quarantine")
        self.assertEqual(doc["count"], 1)
        self.assertEqual(doc["errors"], [])
        m = doc["messages"][0]
        self.assertEqual(m["id"], qid)
        self.assertEqual(m["sender"], "")
        self.assertEqual(m["recipients"], ["alice@example.test"])
        self.assertEqual(m["subject"], '=?utf-8?q?caf=C3=A9?= "menu" folded')
        self.assertEqual(m["verdict"], "quarantine")
        self.assertEqual(m["reason"], "content_rule")
        self.assertEqual(m["text"], 'rule "no_exe" \\ matched')
        self.assertEqual(m["hits"], ["rule:no_exe", "attachment:menu.pdf.exe"])
        arrival = m["arrival_us"] / 1e6
        self.assertLess(abs(arrival - time.time()), 60)
        self.assertEqual(m["expires"], time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                                     time.gmtime(int(arrival) + 30 * DAY)))
        shown = self.cli_json(srv, "quarantine", "show", qid)
        self.assertEqual(shown["id"], qid)
        self.assertTrue(shown["headers"].startswith("Subject: =?utf-8?q?caf=C3=A9?="))
        doc = self.cli_json(srv, "quarantine", "release", qid)
        self.assertEqual(doc, {"command": "release", "folder": "quarantine",
                               "results": [{"id": qid, "done": True,
                                            "queue_manager_told": True, "error": None}],
                               "errors": []})
        srv.wait_delivery("alice", qid)
        doc = self.cli_json(srv, "quarantine", "show", qid, rc=1)
        self.assertIn("no message %s" % qid, doc["errors"][0]["error"])

    def test_hold_is_its_own_folder_and_never_expires(self):
        srv = self.start(queue_scan_interval="1s")
        held = put(srv, folder="hold", age=400 * DAY, text="held by a rule", reason="hold",
                   hits=())
        out, _ = self.cli(srv, "hold", "list")
        self.assertIn(held, out)
        self.assertIn("1 message in hold", out)
        out, _ = self.cli(srv, "quarantine", "list")
        self.assertNotIn(held, out)
        self.cli(srv, "quarantine", "release", held, rc=1)
        out, _ = self.cli(srv, "hold", "show", held)
        self.assertIn("verdict: hold\n", out)
        self.assertIn("expires: never\n", out)
        time.sleep(2.5)  # scans pass, hold/ is never expired
        self.assertEqual(srv.spool_files("hold"), [held])
        self.cli(srv, "hold", "release", held)
        srv.wait_delivery("alice", held)

    @unittest.skipUnless(IS_ROOT, "needs root: the files belong to another account")
    def test_root_keeps_the_owner(self):
        srv = self.start()
        qid = put(srv)
        nobody = spool_owner()
        path = os.path.join(srv.spool_dir, "quarantine", qid)
        self.assertEqual(os.stat(path).st_uid, nobody.pw_uid)
        self.cli(srv, "quarantine", "release", qid)
        # delivered by the queue manager running as nobody: it could open it
        srv.wait_delivery("alice", qid)

    def test_planted_entries_are_neither_followed_nor_waited_on(self):
        srv = self.start()
        qdir = os.path.join(srv.spool_dir, "quarantine")
        fifo, link = "0000000000000000F1F", "0000000000000000111"
        os.mkfifo(os.path.join(qdir, fifo), 0o600)
        os.symlink("/etc/passwd", os.path.join(qdir, link))
        real = put(srv)
        out, err = self.cli(srv, "quarantine", "list", rc=1)
        self.assertIn(real, out)
        self.assertIn("quarantine/%s: is a FIFO, not a queue file: not read" % fifo, err)
        self.assertIn("quarantine/%s: is a symbolic link, not a queue file: not read" % link, err)
        self.assertNotIn("root:", out + err)
        self.cli(srv, "quarantine", "release", fifo, link, rc=1)
        self.cli(srv, "quarantine", "delete", fifo, link, rc=1)
        self.assertTrue(os.path.islink(os.path.join(qdir, link)))
        self.assertEqual(srv.spool_files("queue"), [])

    def test_usage(self):
        srv = self.start()
        _, err = self.cli(srv, "quarantine", "show", "not-an-id", rc=2)
        self.assertIn('"not-an-id" is not a queue id', err)
        self.cli(srv, "quarantine", rc=2)
        self.cli(srv, "quarantine", "release", rc=2)
        self.cli(srv, "hold", "purge", rc=2)


class RetentionTest(PosternTestCase):

    def test_old_entries_expire_young_ones_stay(self):
        srv = self.start_server(config={"quarantine_retention": "30d"})  # scans every 1s
        old = put(srv, age=31 * DAY, text="virus found: Old-One")
        young = put(srv, age=29 * DAY)
        m = srv.wait_log(r"%s: quarantine expired \(arrived (\S+)\): removed "
                         r"from=<sender@remote\.test> nrcpt=1 size=\d+ reason=virus found: "
                         r"Old-One" % old, timeout=scaled(10))
        self.assertEqual(m.group(1), time.strftime("%Y-%m-%dT", time.gmtime(
            time.time() - 31 * DAY)) + m.group(1)[11:])
        time.sleep(2)
        self.assertEqual(srv.spool_files("quarantine"), [young])
        self.assertNotIn("%s: quarantine expired" % young, srv.log())
        self.assertEqual(srv.files_for("alice", old), [])

    def test_zero_keeps_for_ever(self):
        srv = self.start_server(config={"quarantine_retention": "0"})
        old = put(srv, age=3000 * DAY)
        time.sleep(2.5)
        self.assertEqual(srv.spool_files("quarantine"), [old])


class NoticeTemplateTest(PosternTestCase):
    """A notice reaches the administrator's Maildir with its placeholders
    filled (queued by notice_put, as a worker's commit thread does)."""

    TEMPLATE = ("Subject: [{hostname}] {action} {queue_id}: {virus}\n"
                "X-Postern-Notice: {reason}\n"
                "\n"
                "Sender {sender} to {recipients}, subject \"{subject}\".\n"
                "Virus {virus}, rule {rule}, attachment {attachment}, client {client} "
                "({helo}), check {check}.\n"
                "{next_steps}\n")

    def test_notice_in_the_admin_maildir(self):
        srv = self.start_server(start=False, config={
            "notify_admin": "admin@" + DOMAIN, "notify_template": "notice.txt"})
        with open(os.path.join(srv.dir, "notice.txt"), "w") as f:
            f.write(self.TEMPLATE)
        srv.start()
        p = subprocess.run([tool("notice_put"), srv.conf_path, "quarantined",
                            "6617EFE92D921002845", "forged@remote.test",
                            "Your invoice\x1b[2J", "virus found: Eicar-Test-Signature",
                            "virus:Eicar-Test-Signature", "attachment:invoice.pdf.exe"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=scaled(10))
        self.assertEqual(p.returncode, 0, p.stderr)
        notice = p.stdout.decode().strip()
        owner = spool_owner()
        if owner is not None:
            os.chown(os.path.join(srv.spool_dir, "queue", notice), owner.pw_uid, owner.pw_gid)
        _, data = srv.wait_delivery("admin", notice)  # the 1 s scan finds it
        text = data.decode("utf-8")
        head, _, body = text.partition("\n\n")
        self.assertIn("\nReturn-Path: <>\n", "\n" + head)
        self.assertIn("\nFrom: Mail Gateway <MAILER-DAEMON@mx.example.test>\n", head)
        self.assertIn("\nTo: <admin@example.test>\n", head)
        self.assertIn("\nAuto-Submitted: auto-generated\n", head)
        self.assertIn("\nSubject: [mx.example.test] quarantined 6617EFE92D921002845: "
                      "Eicar-Test-Signature\n", head)
        self.assertIn("\nX-Postern-Notice: virus found: Eicar-Test-Signature", head)
        self.assertIn('Sender forged@remote.test to alice@example.test, subject '
                      '"Your invoice [2J".\n', body)
        self.assertIn("Virus Eicar-Test-Signature, rule (none), attachment invoice.pdf.exe, "
                      "client 192.0.2.66 (sender.example), check scan.\n", body)
        self.assertIn("postern quarantine release 6617EFE92D921002845", body)
        self.assertNotIn("\x1b", text)
        # nothing went to the (forged) sender's domain or anyone else
        self.assertEqual(sorted(srv.all_maildir_files()), ["admin@example.test"])

    def test_bad_template_is_refused_with_file_and_line(self):
        srv = self.start_server(start=False, config={
            "notify_admin": "admin@" + DOMAIN, "notify_template": "notice.txt"})
        path = os.path.join(srv.dir, "notice.txt")
        with open(path, "w") as f:
            f.write("Subject: ok\n\nThe virus {virus_name} was found.\n")
        p = srv.run_cli("check-config")
        self.assertEqual(p.returncode, 1)
        self.assertIn("%s:3: unknown placeholder {virus_name}" % path, p.stderr.decode())
        rc, log = srv.serve_refused()
        self.assertNotEqual(rc, 0)
        self.assertIn("%s:3: unknown placeholder {virus_name}" % path, log)

    def test_bad_notify_admin_is_refused(self):
        srv = self.start_server(start=False, config={"notify_admin": "postmaster"})
        p = srv.run_cli("check-config")
        self.assertEqual(p.returncode, 1)
        self.assertIn('notify_admin: "postmaster" is not an address', p.stderr.decode())


# ---- over SMTP, with the antivirus of issue 7 --------------------------------------

CLAMAV_TEST_DB = os.path.join(REPO, "etc", "clamav-test")


def antivirus_available():
    """The binary knows the antivirus keys and the test signatures exist."""
    if not os.path.isdir(CLAMAV_TEST_DB):
        return False
    with subprocess.Popen([POSTERN_BIN, "help"], stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE) as p:
        out, _ = p.communicate(timeout=10)
    return b" scan " in out


def virus_message(sender, to, subject):
    return ("From: <%s>\r\nTo: <%s>\r\nSubject: %s\r\nMIME-Version: 1.0\r\n"
            "Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n"
            "Content-Type: text/plain\r\n\r\nsee attached\r\n--b\r\n"
            "Content-Type: application/octet-stream\r\n"
            "Content-Disposition: attachment; filename=eicar.com\r\n\r\n%s\r\n--b--\r\n"
            % (sender, to, subject, EICAR))


@unittest.skipUnless(antivirus_available(),
                     "the antivirus of issue 7 is not merged yet (clamav_db_dir, "
                     "etc/clamav-test)")
class VirusOverSmtpTest(PosternTestCase):

    def av_server(self, **config):
        settings = {"clamav_db_dir": CLAMAV_TEST_DB, "notify_admin": "admin@" + DOMAIN,
                    "queue_scan_interval": "1h"}
        settings.update(config)
        return self.start_server(config=settings)

    def send_virus(self, srv, subject="Invoice", sender="bob@example.test"):
        c = SmtpConn(srv.port, timeout=scaled(30))
        self.addCleanup(c.close)
        c.ehlo()
        self.start_data(c, sender, ["alice@example.test"])
        body = virus_message(sender, "alice@example.test", subject)
        c.send(body.replace("\r\n.", "\r\n..") + "\r\n.\r\n")
        return c.reply(timeout=scaled(30))

    def admin_notices(self, srv, n, timeout=None):
        return wait_until(lambda: len(srv.maildir_new("admin")) >= n and srv.maildir_new("admin"),
                          timeout or scaled(15), what="%d notice(s) for admin" % n)

    def read_notice(self, srv, name):
        with open(os.path.join(srv.maildir("admin"), name), "rb") as f:
            return f.read().decode("utf-8", "replace")

    def test_quarantined_virus_admin_told_sender_not_release_once(self):
        # The sender is a local user, so a notice to it would be visible.
        srv = self.av_server(virus_action="quarantine")
        r = self.send_virus(srv, subject="Quarterly figures")
        self.assertReply(r, 250)
        qid = re.search(r"queued as ([0-9A-F]{19})", r.text).group(1)
        self.assertEqual(srv.spool_files("quarantine"), [qid])
        p = srv.run_cli("quarantine", "list", "--json")
        m = json.loads(p.stdout)["messages"][0]
        self.assertEqual(m["id"], qid)
        self.assertEqual(m["subject"], "Quarterly figures")
        self.assertTrue(any(h.startswith("virus:") for h in m["hits"]), m)
        self.assertIn("virus", m["text"])
        name = self.admin_notices(srv, 1)[0]
        text = self.read_notice(srv, name)
        virus = [h[6:] for h in m["hits"] if h.startswith("virus:")][0]
        self.assertIn("quarantined", text)
        self.assertIn("  Virus:       %s\n" % virus, text)
        self.assertIn("  Subject:     Quarterly figures\n", text)
        self.assertIn("  Queue id:    %s\n" % qid, text)
        time.sleep(1)
        self.assertEqual(srv.maildir_new("bob"), [], "a virus notice went to the sender")
        self.assertEqual(srv.files_for("alice", qid), [])
        p = srv.run_cli("quarantine", "release", qid)
        self.assertEqual(p.returncode, 0, p.stderr)
        _, data = srv.wait_delivery("alice", qid)
        # Released without a second scan, and marked for its reader.
        head = data.split(b"\n\n", 1)[0].replace(b"\r\n", b"\n")
        self.assertIn(b"\nX-Postern-Virus: %s\n" % virus.encode(), b"\n" + head + b"\n")
        self.assertIn(b"\nSubject: Quarterly figures\n", b"\n" + head + b"\n")
        time.sleep(1)
        self.assertEqual(len(srv.files_for("alice", qid)), 1)

    def test_refused_virus_admin_told(self):
        srv = self.av_server(virus_action="reject")
        r = self.send_virus(srv, subject="Refused one")
        self.assertEqual(r.code, 550)
        name = self.admin_notices(srv, 1)[0]
        text = self.read_notice(srv, name)
        self.assertIn("refused", text)
        self.assertIn("  Subject:     Refused one\n", text)
        self.assertEqual(srv.spool_files("quarantine"), [])
        self.assertEqual(srv.maildir_new("bob"), [])

    def test_notify_sender_yes_still_spares_a_virus_sender(self):
        srv = self.av_server(virus_action="quarantine", notify_sender="yes")
        self.assertReply(self.send_virus(srv), 250)
        self.admin_notices(srv, 1)
        time.sleep(1.5)
        self.assertEqual(srv.maildir_new("bob"), [])

    def test_burst_is_bounded(self):
        srv = self.av_server(virus_action="reject", notify_rate_limit="2", workers="1")
        for i in range(5):
            self.assertEqual(self.send_virus(srv, subject="burst %d" % i).code, 550)
        self.admin_notices(srv, 2)
        time.sleep(scaled(3))
        self.assertEqual(len(srv.maildir_new("admin")), 2)
        self.assertEqual(len(re.findall(r"notice held back", srv.log())), 3)


@unittest.skipUnless(antivirus_available(), "needs the content pipeline of issue 7")
class SenderNoticeTest(PosternTestCase):
    """notify_sender = yes over SMTP: the sender of a message a content
    rule quarantined is told, as the administrator is; with the default
    (no) only the administrator is."""

    RULES = 'rule review\n    header Subject /\\[review\\]/\n    quarantine "held for review"\n'

    def rules_server(self, **config):
        settings = {"content_rules_file": "content-rules", "notify_admin": "admin@" + DOMAIN,
                    "queue_scan_interval": "1h"}
        settings.update(config)
        srv = self.start_server(start=False, config=settings)
        path = os.path.join(srv.dir, "content-rules")
        with open(path, "w") as f:
            f.write(self.RULES)
        os.chmod(path, 0o644)
        srv.start()
        return srv

    def quarantine_one(self, srv):
        with SmtpConn(srv.port, timeout=scaled(30)) as c:
            c.ehlo()
            self.start_data(c, "bob@" + DOMAIN, ["alice@" + DOMAIN])
            qid = self.send_data_queued(c, make_message(subject="[review] plans") + ".\r\n")
        wait_until(lambda: srv.spool_files("quarantine") == [qid], scaled(10),
                   what="the message in quarantine")
        return qid

    def notices(self, srv, user, n):
        return wait_until(lambda: len(srv.maildir_new(user)) >= n and srv.maildir_new(user),
                          scaled(15), what="%d notice(s) for %s" % (n, user))

    def read(self, srv, user, name):
        with open(os.path.join(srv.maildir(user), name), "rb") as f:
            return f.read().decode("utf-8", "replace")

    def test_sender_told_when_configured(self):
        srv = self.rules_server(notify_sender="yes")
        qid = self.quarantine_one(srv)
        for user in ("admin", "bob"):
            text = self.read(srv, user, self.notices(srv, user, 1)[0])
            self.assertIn("quarantined", text)
            self.assertIn("  Rule:        review\n", text)
            self.assertIn("  Subject:     [review] plans\n", text)
            self.assertIn(qid, text)
        self.assertEqual(srv.maildir_new("alice"), [])

    def test_sender_not_told_by_default(self):
        srv = self.rules_server()
        self.quarantine_one(srv)
        self.notices(srv, "admin", 1)
        time.sleep(1.5)
        self.assertEqual(srv.maildir_new("bob"), [])


if __name__ == "__main__":
    unittest.main()

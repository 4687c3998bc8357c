"""
test_queue_tools.py - "postern queue list|show|flush|requeue|hold|release|
delete" against a running server: what an administrator sees (text and
--json), that each command does what it says while the queue manager
runs, that a message being worked on is "busy" rather than changed under
it, and that holds, releases and flushes racing with deliveries neither
lose nor duplicate a message. A temporary failure is made by putting a
file where bob's Maildir folder would be.
"""
import fcntl
import json
import os
import pwd
import re
import signal
import threading
import time

from harness import (IS_ROOT, PosternTestCase, make_message, scaled, smtplib_send,
                     wait_until)


class QueueToolsTest(PosternTestCase):

    def setUp(self):
        super().setUp()
        # a long retry time: only a flush makes the queue manager try again soon
        self.srv = self.start_server(
            users=["alice", "bob", "carol"], start=False,
            config={"queue_retry_min": "1h", "queue_retry_max": "2h",
                    "delay_warning_time": "0"})
        self.boxes = {u: os.path.join(self.srv.mail_root, "example.test", u)
                      for u in ("bob", "alice")}
        for user, box in self.boxes.items():
            os.makedirs(box)
            with open(os.path.join(box, "Maildir"), "w") as f:
                f.write("not a folder\n")
        if IS_ROOT:
            mail = pwd.getpwnam("mail")
            for d in [self.srv.mail_root, os.path.dirname(self.boxes["bob"])] + \
                    list(self.boxes.values()):
                os.chown(d, mail.pw_uid, mail.pw_gid)
        self.srv.start()

    def unblock_bob(self):
        os.unlink(os.path.join(self.boxes["bob"], "Maildir"))

    def cli(self, *args, rc=0):
        p = self.srv.run_cli("queue", *args)
        out, err = p.stdout.decode(), p.stderr.decode()
        self.assertEqual(p.returncode, rc, (args, out, err))
        return out, err

    def cli_json(self, *args, rc=0):
        out, _ = self.cli(*(list(args) + ["--json"]), rc=rc)
        return json.loads(out)

    def deferred_message(self, subject="waits", to="bob"):
        rcpt = to + "@example.test"
        qid = smtplib_send(self.srv.port, "carol@example.test", [rcpt],
                           make_message(subject, sender="carol@example.test", to=rcpt))
        self.srv.wait_log(r"%s: to=<%s> .*status=deferred" % (qid, rcpt))
        wait_until(lambda: qid in self.srv.spool_files("deferred"), scaled(10),
                   what="deferred file")
        return qid

    def attempts_logged(self, qid):
        return len(re.findall(r"%s: to=<bob@example.test> .*status=deferred" % qid,
                              self.srv.log()))

    def test_list_and_show(self):
        qid = self.deferred_message("listed")
        out, _ = self.cli("list")
        line = [l for l in out.splitlines() if l.startswith(qid)]
        self.assertEqual(len(line), 1, out)
        self.assertRegex(line[0], r"^%s  deferred\s+\d+  \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ  "
                         r"<carol@example.test>  -> <bob@example.test>  next \S+ "
                         r"\(attempts 1: 4\.\d\.\d " % qid)
        self.assertIn("1 message (0 in queue, 1 deferred, 0 held)", out)
        doc = self.cli_json("list")
        self.assertEqual(doc["count"], 1)
        m = doc["messages"][0]
        self.assertEqual((m["id"], m["state"], m["sender"], m["recipients"], m["attempts"]),
                         (qid, "deferred", "carol@example.test", ["bob@example.test"], 1))
        self.assertRegex(m["last_error"], r"^4\.\d\.\d ")
        self.assertRegex(m["next_attempt"], r"^\d{4}-\d\d-\d\dT")
        self.assertGreater(m["size"], 0)
        doc = self.cli_json("show", qid)
        self.assertEqual(doc["recipients"], [{"address": "bob@example.test",
                                              "status": "pending", "notify": None,
                                              "orcpt": None}])
        self.assertIn("Subject: listed", doc["headers"])
        out, _ = self.cli("show", qid)
        self.assertIn("state: deferred", out)
        self.assertIn("recipient: <bob@example.test> pending", out)

    def test_show_dsn_request(self):
        import smtplib
        with smtplib.SMTP("127.0.0.1", self.srv.port, timeout=scaled(15)) as s:
            s.ehlo("client.test")
            s.mail("carol@example.test", ["RET=HDRS", "ENVID=id-7"])
            s.rcpt("bob@example.test", ["NOTIFY=FAILURE,DELAY", "ORCPT=rfc822;Bob@Example.Test"])
            code, text = s.data(make_message("dsn shown"))
            qid = re.search(r"queued as ([0-9A-F]{19})", text.decode()).group(1)
        self.srv.wait_log(r"%s: to=<bob@example.test> .*status=deferred" % qid)
        doc = self.cli_json("show", qid)
        self.assertEqual((doc["ret"], doc["envid"]), ("HDRS", "id-7"))
        self.assertEqual(doc["recipients"][0]["notify"], "FAILURE,DELAY")
        self.assertEqual(doc["recipients"][0]["orcpt"], "rfc822;Bob@Example.Test")
        out, _ = self.cli("show", qid)
        self.assertIn("recipient: <bob@example.test> pending notify=FAILURE,DELAY "
                      "orcpt=rfc822;Bob@Example.Test", out)

    def test_flush_retries_now(self):
        qid = self.deferred_message("flushed")
        n = self.attempts_logged(qid)
        out, _ = self.cli("flush", qid)
        self.assertIn("%s: due now" % qid, out)
        self.srv.wait_log(r"%s: retrying now, as a command asked" % qid)
        wait_until(lambda: self.attempts_logged(qid) == n + 1, scaled(10), what="new attempt")
        # flush of everything, after the mailbox is fixed: delivered
        self.unblock_bob()
        doc = self.cli_json("flush")
        self.assertEqual(doc["done"], [qid])
        self.srv.wait_delivery("bob", qid)
        self.srv.wait_log(r"%s: removed" % qid)
        out, _ = self.cli("flush")
        self.assertIn("nothing to flush", out)

    def test_requeue_restarts_the_schedule(self):
        qid = self.deferred_message("requeued")
        self.cli("flush", qid)
        wait_until(lambda: self.attempts_logged(qid) == 2, scaled(10), what="second attempt")
        wait_until(lambda: qid in self.srv.spool_files("deferred"), scaled(10),
                   what="deferred again")
        out, _ = self.cli("requeue", qid)
        self.assertIn("%s: requeued" % qid, out)
        wait_until(lambda: self.attempts_logged(qid) == 3, scaled(10), what="third attempt")
        last = re.findall(r"%s: to=<bob@example.test> .*attempts=(\d+) status=deferred" % qid,
                          self.srv.log())
        self.assertEqual(last[-1], "1", last)

    def test_hold_release_delete(self):
        qid = self.deferred_message("held")
        out, _ = self.cli("hold", qid)
        self.assertIn("%s: held" % qid, out)
        self.assertEqual(self.srv.spool_files("hold"), [qid])
        self.assertEqual(self.srv.spool_files("deferred"), [])
        doc = self.cli_json("list")
        self.assertEqual([(m["id"], m["state"]) for m in doc["messages"]], [(qid, "held")])
        # nothing flushes or requeues a held message
        self.cli("flush", qid, rc=1)
        # held: not delivered even once the mailbox works
        self.unblock_bob()
        time.sleep(scaled(1.5))
        self.assertEqual(self.srv.files_for("bob", qid), [])
        out, _ = self.cli("release", qid)
        self.srv.wait_delivery("bob", qid)
        self.srv.wait_log(r"%s: removed" % qid)
        self.assertEqual(len(self.srv.files_for("bob", qid)), 1)
        # delete one, then --all
        ids = [self.deferred_message("gone %d" % i, to="alice") for i in range(3)]
        doc = self.cli_json("delete", ids[0])
        self.assertEqual(doc, {"command": "delete", "done": [ids[0]], "errors": []})
        out, _ = self.cli("delete", "--all")
        self.assertEqual(sorted(re.findall(r"^([0-9A-F]{19}): deleted$", out, re.M)),
                         sorted(ids[1:]))
        self.assertEqual(self.srv.spool_files("deferred"), [])
        out, err = self.cli("delete", ids[0], rc=1)
        self.assertIn("no message %s" % ids[0], err)
        self.cli("delete", "not-an-id", rc=1)
        self.cli("hold", rc=2)

    def test_busy_message_is_left_alone(self):
        qid = self.deferred_message("busy")
        path = os.path.join(self.srv.spool_dir, "deferred", qid)
        fd = os.open(path, os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            for cmd in ("delete", "hold", "flush", "requeue"):
                out, err = self.cli(cmd, qid, rc=1)
                self.assertIn("busy", err)
            doc = self.cli_json("list")
            self.assertEqual(doc["messages"][0]["state"], "active")
        finally:
            os.close(fd)
        self.assertEqual(self.srv.spool_files("deferred"), [qid])


class QueueToolsRaceTest(PosternTestCase):
    """Holds, releases and flushes racing with deliveries: every message
    ends up delivered exactly once."""

    def test_no_loss_no_duplicate(self):
        srv = self.start_server(users=["alice"])
        ids = []
        stop = threading.Event()
        held_total = []
        outcomes = set()

        def meddle():
            # hold each message the moment its 250 came back, racing the
            # queue manager that was told about it at the same time
            done = 0
            while not stop.is_set() or done < len(ids):
                fresh = ids[done:]
                if not fresh:
                    time.sleep(0.005)
                    continue
                done += len(fresh)
                p = srv.run_cli("queue", "hold", *fresh)
                text = p.stdout.decode() + p.stderr.decode()
                held_total.extend(re.findall(r"^([0-9A-F]{19}): held \(", text, re.M))
                outcomes.update(w for w in ("held (", "busy", "no message") if w in text)
                srv.run_cli("queue", "flush")
                held = srv.spool_files("hold")
                if held:
                    srv.run_cli("queue", "release", *held)

        # a backlog first: the queue manager stopped while 20 messages
        # arrive, then it goes on while the commands work on them and 20 more
        qmgr = srv.role_pids("qmgr")[0]
        os.kill(qmgr, signal.SIGSTOP)
        try:
            for i in range(20):
                ids.append(smtplib_send(srv.port, "carol@remote.test", ["alice@example.test"],
                                        make_message("race %d" % i)))
            t = threading.Thread(target=meddle)
            t.start()
            time.sleep(0.05)
        finally:
            os.kill(qmgr, signal.SIGCONT)
        try:
            for i in range(20, 40):
                ids.append(smtplib_send(srv.port, "carol@remote.test", ["alice@example.test"],
                                        make_message("race %d" % i)))
        finally:
            stop.set()
            t.join()
        self.assertGreater(len(held_total), 0, "the race never held a message: %r" % outcomes)
        held = srv.spool_files("hold")
        if held:
            p = srv.run_cli("queue", "release", *held)
            self.assertEqual(p.returncode, 0, p.stderr.decode())
        for qid in ids:
            srv.wait_delivery("alice", qid, timeout=scaled(20))
        wait_until(lambda: not srv.spool_files("queue") and not srv.spool_files("deferred")
                   and not srv.spool_files("hold"), scaled(20), what="an empty spool")
        time.sleep(0.5)
        for qid in ids:
            self.assertEqual(len(srv.files_for("alice", qid)), 1, qid)

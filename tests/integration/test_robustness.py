"""
test_robustness.py - the server as an operator sees it: kill -9 at random
moments never loses or duplicates an acknowledged message, SIGTERM drains
gracefully (a message in DATA still completes) and exits 0, SIGHUP reloads
config/users/aliases without dropping sessions (and keeps the old config
when the new one is broken), crashed roles are restarted, check-config
reports problems as FILE:LINE, and "postern queue" shows deferred mail.
"""
import os
import pwd
import random
import re
import signal
import socket
import subprocess
import threading
import time
import unittest

from harness import (IS_ROOT, POSTERN_BIN, PosternServer, PosternTestCase, SmtpClosed, SmtpConn,
                     make_message, process_alive, queue_id_of, raw_send, scaled, smtplib_send,
                     wait_until)

QID_IN_NAME = re.compile(r"\.Q([0-9A-F]{19})\.")


class KillNineDurabilityTest(PosternTestCase):
    """RFC 5321 6.1 and ARCHITECTURE principle 2: after a crash at any
    instant every acknowledged message is delivered exactly once."""

    THREADS = 8
    MESSAGES = 400
    USERS = ["alice", "bob", "carol", "dave"]

    def test_kill9_during_load_loses_and_duplicates_nothing(self):
        srv = self.start_server(users=self.USERS + ["admin"])
        rng = random.Random(os.environ.get("POSTERN_SEED") or time.time())
        accepted = []           # (qid, [rcpts], token)
        lock = threading.Lock()
        attempts = [0]
        done = threading.Event()
        killer_done = threading.Event()
        per_thread = self.MESSAGES // self.THREADS
        errors = []

        def client(tid):
            crng = random.Random(tid * 7919 + 1)
            conn = None
            n = 0
            deadline = time.monotonic() + scaled(150)
            # The quota, and on until the killer is through (at most twice it).
            while ((n < per_thread or not killer_done.is_set()) and n < 2 * per_thread
                   and time.monotonic() < deadline):
                try:
                    if conn is None:
                        conn = SmtpConn(srv.port, timeout=scaled(10))
                        conn.ehlo("load%d.test" % tid)
                    rcpts = crng.sample(self.USERS, crng.choice((1, 1, 2)))
                    token = "T%02d-%04d-%08x" % (tid, n, crng.getrandbits(32))
                    r = conn.cmd("MAIL FROM:<load%d@remote.test>" % tid)
                    if r.code != 250:
                        raise SmtpClosed("MAIL got %r" % r)
                    n += 1
                    with lock:
                        attempts[0] += 1
                    for rc in rcpts:
                        r = conn.cmd("RCPT TO:<%s@example.test>" % rc)
                        if r.code != 250:
                            raise SmtpClosed("RCPT got %r" % r)
                    r = conn.cmd("DATA")
                    if r.code != 354:
                        raise SmtpClosed("DATA got %r" % r)
                    body = ("Subject: durability %s\r\n\r\n" % token +
                            ("line %s\r\n" % ("x" * crng.randint(0, 200))) * crng.randint(1, 30) +
                            "END-%s\r\n.\r\n" % token)
                    conn.send(body)
                    r = conn.reply()
                    if r.code == 250:
                        with lock:
                            accepted.append((queue_id_of(r.text), rcpts, token))
                    if n % 7 == 0:
                        conn.cmd("QUIT")
                        conn.close()
                        conn = None
                except (OSError, SmtpClosed, AssertionError):
                    if conn is not None:
                        conn.close()
                    conn = None
                    time.sleep(0.02)
            if conn is not None:
                conn.close()

        def killer():
            kinds = ["all", "all", "worker", rng.choice(["worker", "qmgr", "all"])]
            rng.shuffle(kinds)
            # Random moments, at least 40 messages apart, all before the end.
            span = self.MESSAGES - 80 - 40 * len(kinds)
            marks = sorted(rng.sample(range(span), len(kinds)))
            marks = [30 + m + 40 * i for i, m in enumerate(marks)]
            for kind, mark in zip(kinds, marks):
                try:
                    wait_until(lambda: attempts[0] >= mark or done.is_set(), scaled(150),
                               interval=0.001, what="load progress")
                    if done.is_set():
                        break
                    time.sleep(rng.random() * 0.05)
                    if True:
                        if kind == "all":
                            srv.kill9_all()
                            time.sleep(rng.random() * 0.2)
                            srv.start()
                        elif kind == "worker":
                            srv.wait_roles(smtp=1, qmgr=0)
                            srv.kill_role("smtp")
                        else:
                            srv.wait_roles(smtp=0, qmgr=1)
                            srv.kill_role("qmgr")
                        kills.append((kind, mark))
                except Exception as e:  # reported by the main thread
                    errors.append("killer (%s at %d): %r" % (kind, mark, e))
                    break
            killer_done.set()

        kills = []
        threads = [threading.Thread(target=client, args=(i,), daemon=True)
                   for i in range(self.THREADS)]
        kt = threading.Thread(target=killer, daemon=True)
        for t in threads:
            t.start()
        kt.start()
        for t in threads:
            t.join(scaled(200))
        done.set()
        kt.join(scaled(60))
        self.assertFalse(any(t.is_alive() for t in threads + [kt]), "load threads hang")
        self.assertEqual(errors, [])
        self.assertGreaterEqual(len(kills), 3, "the killer ran %r" % kills)
        self.assertGreater(len(accepted), self.MESSAGES // 2,
                           "too few messages accepted (%d)" % len(accepted))

        # One more crash at the end, then restart and let the queue drain.
        srv.kill9_all()
        srv.start()
        expected = {}
        for qid, rcpts, token in accepted:
            self.assertNotIn(qid, expected, "queue id %s given out twice" % qid)
            expected[qid] = (rcpts, token)

        def index():
            found = {}
            for user in self.USERS:
                for name in srv.maildir_new(user):
                    m = QID_IN_NAME.search(name)
                    if m:
                        found.setdefault((user, m.group(1)), []).append(name)
            return found

        def all_delivered():
            found = index()
            return all((u, q) in found for q, (rcpts, _) in expected.items() for u in rcpts)

        try:
            wait_until(all_delivered, scaled(90), interval=0.25, what="all accepted messages")
        except AssertionError:
            found = index()
            missing = sorted((q, u) for q, (rcpts, _) in expected.items()
                             for u in rcpts if (u, q) not in found)
            self.fail("%d acknowledged deliveries missing after restart, e.g. %r; kills=%r\n%s"
                      % (len(missing), missing[:10], kills, srv.log_tail(40)))
        wait_until(lambda: not srv.spool_files("queue") and not srv.spool_files("deferred"),
                   scaled(30), what="empty queue")
        found = index()
        dups = {k: v for k, v in found.items() if len(v) > 1}
        self.assertEqual(dups, {}, "messages delivered twice to the same mailbox (kills=%r)" % kills)
        for qid, (rcpts, token) in expected.items():
            for user in rcpts:
                with open(os.path.join(srv.maildir(user), found[(user, qid)][0]), "rb") as f:
                    data = f.read()
                self.assertIn(("Subject: durability %s\n" % token).encode(), data)
                self.assertTrue(data.endswith(("END-%s\n" % token).encode()),
                                "truncated copy of %s for %s" % (qid, user))
                self.assertIn(("Delivered-To: %s@example.test\n" % user).encode(), data)
        # Messages whose 250 was lost in a crash may be delivered too, but
        # only to their own recipients and only once (checked above).
        self.assertEqual(srv.spool_files("corrupt"), [])
        self.assertNotIn("status=bounced", srv.log())
        self.assertEqual(srv.stop(), 0)


class SignalTest(PosternTestCase):

    def test_sigterm_lets_message_in_data_finish(self):
        srv = self.start_server(config={"shutdown_timeout": "10s"})
        busy = self.open_session(srv)
        self.start_data(busy, "late@remote.test", ["alice@example.test"])
        busy.send(b"Subject: in flight at SIGTERM\r\n\r\nfirst half\r\n")
        idle = self.open_session(srv)
        time.sleep(0.2)
        srv.send_signal(signal.SIGTERM)
        r = idle.reply(timeout=scaled(5))
        self.assertReply(r, 421, "4.3.2")
        self.assertTrue(idle.closed_by_server(scaled(5)))
        time.sleep(0.5)
        self.assertTrue(srv.running(), "server must wait for the transaction")
        busy.send(b"second half\r\n.\r\n")
        r = busy.reply(timeout=scaled(5))
        self.assertReply(r, 250, "2.0.0")
        qid = queue_id_of(r.text)
        rc = srv.proc.wait(scaled(20))
        self.assertEqual(rc, 0, srv.log_tail())
        self.assertRaises(OSError, socket.create_connection, ("127.0.0.1", srv.port), 2)
        srv.start()
        _, data = srv.wait_delivery("alice", qid)
        self.assertTrue(data.endswith(b"\n\nfirst half\nsecond half\n"), data)
        self.assertEqual(srv.stop(), 0)

    def test_sigterm_unfinished_data_times_out(self):
        srv = self.start_server(config={"shutdown_timeout": "2s"})
        c = self.open_session(srv)
        self.start_data(c, "never@remote.test", ["alice@example.test"])
        c.send(b"Subject: never finished\r\n\r\n")
        start = time.monotonic()
        srv.send_signal(signal.SIGTERM)
        rc = srv.proc.wait(scaled(20))
        self.assertEqual(rc, 0, srv.log_tail())
        self.assertLess(time.monotonic() - start, scaled(10))
        srv.start()
        time.sleep(1)
        self.assertEqual(srv.maildir_new("alice"), [])
        self.assertEqual(srv.spool_files("queue") + srv.spool_files("deferred"), [])
        self.assertEqual(srv.stop(), 0)

    def test_sigterm_idle_server_exits_zero_quickly(self):
        srv = self.start_server()
        start = time.monotonic()
        self.assertEqual(srv.stop(), 0)
        self.assertLess(time.monotonic() - start, scaled(5))
        self.assertRegex(srv.log(), r"postern stopped")

    def assert_clean_stop(self, srv, offset, rc):
        """The stop logged no trouble and started no role again."""
        log = srv.log_since(offset)
        self.assertEqual(rc, 0, log)
        trouble = [l for l in log.splitlines()
                   if re.search(r": (warning|error|fatal|panic): |exited with status|"
                                r"killed by signal|smtp worker ready|queue manager started", l)]
        self.assertEqual(trouble, [], "the stop was not clean:\n" + log)
        self.assertRegex(log, r"postern/master\[\d+\]: info: postern stopped\n")

    def test_sigint_to_the_process_group_stops_cleanly(self):
        # Ctrl-C on "make run" (README): SIGINT reaches the supervisor and
        # every role at once. It used to log the roles' exits as crashes,
        # start a worker again in the middle of the stop, and let the queue
        # manager die of the supervisor's SIGTERM.
        srv = self.start_server()
        for round_ in range(6):
            if round_ > 0:
                srv.start()
            srv.wait_roles(smtp=2, qmgr=1)
            wait_until(lambda: len(srv.role_pids("local")) == 4, scaled(10),
                       what="the local delivery agents")
            if round_ % 2 == 1:  # with a delivery just done, and a session open
                qid = smtplib_send(srv.port, "x@remote.test", ["alice@example.test"],
                                   make_message("before Ctrl-C %d" % round_))
                srv.wait_delivery("alice", qid)
                c = self.open_session(srv)
            kids = srv.children()
            offset = srv.log_size()
            os.killpg(srv.pid, signal.SIGINT)
            rc = srv.proc.wait(scaled(20))
            srv.stop()  # only the harness's bookkeeping: it has exited
            self.assert_clean_stop(srv, offset, rc)
            self.assertFalse([p for p in kids if process_alive(p)], "roles left behind")

    def test_sigterm_to_the_supervisor_stops_cleanly(self):
        srv = self.start_server()
        for round_ in range(4):
            if round_ > 0:
                srv.start()
            srv.wait_roles(smtp=2, qmgr=1)
            offset = srv.log_size()
            self.assertEqual(srv.stop(), 0)
            self.assert_clean_stop(srv, offset, 0)


class ReloadTest(PosternTestCase):

    def test_transaction_survives_reload(self):
        srv = self.start_server()
        c = self.open_session(srv)
        self.assertReply(c.cmd("MAIL FROM:<hup@remote.test>"), 250)
        self.assertReply(c.cmd("RCPT TO:<alice@example.test>"), 250)
        m = srv.reload()
        self.assertRegex(m.group(0), r"reload: \d+ users")
        time.sleep(0.3)
        self.assertReply(c.cmd("RCPT TO:<bob@example.test>"), 250)
        self.assertReply(c.cmd("DATA"), 354)
        qid = self.send_data_queued(c, b"Subject: across reload\r\n\r\nstill here\r\n.\r\n")
        srv.wait_delivery("alice", qid)
        srv.wait_delivery("bob", qid)
        self.assertEqual(srv.stop(), 0)

    def test_idle_session_survives_reload(self):
        # "SIGHUP reloads ... without dropping open sessions": a session
        # that said EHLO before the reload can send a message after it.
        srv = self.start_server()
        c = self.open_session(srv)
        m = srv.reload()
        self.assertRegex(m.group(0), r"reload: \d+ users")
        time.sleep(0.3)
        try:
            pending = c.pending(0.2)
        except SmtpClosed as e:
            self.fail("the open session was closed by the reload: %s" % e)
        self.assertEqual(pending, b"", "the open session was sent %r on reload" % pending)
        r = raw_send(c, "idle@remote.test", ["alice@example.test"],
                     b"Subject: idle across reload\r\n\r\nok\r\n.\r\n")
        self.assertReply(r, 250)
        srv.wait_delivery("alice", queue_id_of(r.text))

    def test_new_user_and_alias_after_reload(self):
        srv = self.start_server()
        c = self.open_session(srv)
        self.assertReply(c.cmd("MAIL FROM:<x@remote.test>"), 250)
        self.assertReply(c.cmd("RCPT TO:<newbie@example.test>"), 550, "5.1.1")
        self.assertReply(c.cmd("RCPT TO:<crew@example.test>"), 550, "5.1.1")
        c.cmd("QUIT")
        srv.users.append("newbie")
        srv.aliases["crew"] = ["newbie", "carol"]
        srv.write_users()
        srv.write_aliases()
        m = srv.reload(wait_old=True)
        self.assertRegex(m.group(0), r"reload: 6 users, 3 aliases")
        qid = smtplib_send(srv.port, "x@remote.test", ["newbie@example.test"],
                           make_message("welcome"))
        _, data = srv.wait_delivery("newbie", qid)
        self.assertIn(b"Delivered-To: newbie@example.test\n", data)
        qid = smtplib_send(srv.port, "x@remote.test", ["crew@example.test"],
                           make_message("crew"))
        srv.wait_delivery("newbie", qid)
        srv.wait_delivery("carol", qid)
        self.assertEqual(srv.stop(), 0)

    def test_settings_change_on_reload(self):
        srv = self.start_server(config={"message_size_limit": "50000"})
        with SmtpConn(srv.port) as c:
            self.assertIn("SIZE 50000", c.ehlo().lines)
        srv.settings["message_size_limit"] = "60000"
        srv.write_config()
        m = srv.reload(wait_old=True)
        self.assertRegex(m.group(0), r"reload: \d+ users")
        for _ in range(5):
            with SmtpConn(srv.port) as c:
                self.assertIn("SIZE 60000", c.ehlo().lines)

    def test_connection_during_reload_is_served(self):
        # Clients that connect while a reload happens must be served by
        # one generation or the other, not greeted and then dropped.
        srv = self.start_server()
        stop = threading.Event()
        results = []

        def hammer():
            while not stop.is_set():
                try:
                    with SmtpConn(srv.port, timeout=scaled(5)) as c:
                        r = c.cmd("EHLO hammer.test")
                        r2 = c.cmd("MAIL FROM:<h@remote.test>") if r.code == 250 else r
                        results.append((r.code, r2.code, r2.text))
                except (OSError, SmtpClosed, AssertionError) as e:
                    results.append((0, 0, repr(e)))
                time.sleep(0.01)
        threads = [threading.Thread(target=hammer, daemon=True) for _ in range(6)]
        for t in threads:
            t.start()
        time.sleep(0.2)
        for _ in range(8):
            srv.reload(wait_old=True)
            time.sleep(0.1)
        stop.set()
        for t in threads:
            t.join(scaled(10))
        bad = [r for r in results if r[:2] != (250, 250)]
        self.assertGreater(len(results), 20)
        self.assertEqual(bad, [], "%d of %d sessions opened around a reload were refused"
                         % (len(bad), len(results)))

    def test_bad_config_on_reload_keeps_running_one(self):
        srv = self.start_server()
        srv.write_config(extra_text="no_such_key = 1\n")
        offset = srv.log_size()
        srv.reload()
        m = srv.wait_log(r"reload: .*(errors|keep).*", since=offset)
        self.assertIn("keep", m.group(0))
        self.assertRegex(srv.log_since(offset), r"postern\.conf:\d+: unknown key \"no_such_key\"")
        self.assertTrue(srv.running())
        qid = smtplib_send(srv.port, "x@remote.test", ["alice@example.test"],
                           make_message("after failed reload"))
        srv.wait_delivery("alice", qid)
        # A broken users file is refused the same way.
        srv.write_config()
        with open(srv.users_path, "a") as f:
            f.write("this line has no colon\n")
        offset = srv.log_size()
        srv.reload()
        srv.wait_log(r"reload: .*keep", since=offset)
        self.assertRegex(srv.log_since(offset), r"users:\d+: ")
        qid = smtplib_send(srv.port, "x@remote.test", ["bob@example.test"],
                           make_message("still the old tables"))
        srv.wait_delivery("bob", qid)
        srv.write_users()
        m = srv.reload()
        self.assertRegex(m.group(0), r"reload: 5 users")
        self.assertEqual(srv.stop(), 0)

    def test_many_retiring_generations(self):
        # Each reload leaves the previous smtp worker serving the session
        # held open on it, so generations pile up: the supervisor's table
        # of children grows past its first size (16 entries; it used to be
        # a fixed 512) and a current worker that dies is still replaced.
        srv = self.start_server(config={"workers": "1"})
        srv.wait_roles(smtp=1, qmgr=1)
        held = []
        for generation in range(2, 18):  # 16 retiring, 1 current worker, 1 qmgr
            offset = srv.log_size()
            c = SmtpConn(srv.port)
            self.addCleanup(c.close)
            c.ehlo()
            held.append(c)
            m = srv.reload()
            self.assertIn("starting generation %d" % generation, m.group(0))
            srv.wait_log(r"reload: retiring, 1 sessions continue", since=offset)
        srv.wait_roles(smtp=17, qmgr=1)
        current = int(re.findall(r"postern/smtp\[(\d+)\]: info: smtp worker ready",
                                 srv.log())[-1])
        os.kill(current, signal.SIGKILL)
        srv.wait_log(r"smtp worker pid %d killed by signal 9" % current)
        qid = smtplib_send(srv.port, "x@remote.test", ["alice@example.test"],
                           make_message("after sixteen reloads"))
        srv.wait_delivery("alice", qid)
        for c in held:  # every retired generation still serves its session
            self.assertReply(c.cmd("NOOP"), 250)
            self.assertReply(c.cmd("QUIT"), 221)
        wait_until(lambda: len(srv.role_pids("smtp")) == 1, scaled(10),
                   what="the retired workers to exit")
        self.assertEqual(srv.stop(), 0)
        self.assertNotIn("too many child processes", srv.log())


class RoleRestartTest(PosternTestCase):

    def test_smtp_worker_killed_is_replaced(self):
        srv = self.start_server()
        srv.wait_roles(smtp=2, qmgr=1)
        victim = srv.kill_role("smtp")
        srv.wait_log(r"smtp worker pid %d killed by signal 9" % victim)

        def serving():
            try:
                with SmtpConn(srv.port, timeout=2) as c:
                    return c.ehlo().code == 250
            except (OSError, SmtpClosed):
                return False
        wait_until(serving, scaled(5), what="SMTP service after a worker crash")
        wait_until(lambda: len(srv.role_pids("smtp")) == 2 and victim not in srv.role_pids("smtp"),
                   scaled(8), what="a replacement smtp worker")
        qid = smtplib_send(srv.port, "x@remote.test", ["alice@example.test"],
                           make_message("after worker crash"))
        srv.wait_delivery("alice", qid)
        self.assertEqual(srv.stop(), 0)

    def test_all_smtp_workers_killed_connection_waits(self):
        srv = self.start_server()
        srv.wait_roles(smtp=2, qmgr=1)
        for pid in srv.role_pids("smtp"):
            os.kill(pid, signal.SIGKILL)
        # The listening socket belongs to the supervisor: a client that
        # connects now is greeted once the replacements are up.
        c = SmtpConn(srv.port, timeout=scaled(10))
        self.addCleanup(c.close)
        self.assertEqual(c.greeting.code, 220)
        c.ehlo()
        r = raw_send(c, "x@remote.test", ["bob@example.test"], b"Subject: s\r\n\r\nb\r\n.\r\n")
        self.assertReply(r, 250)
        srv.wait_delivery("bob", queue_id_of(r.text))
        self.assertEqual(srv.stop(), 0)

    def test_qmgr_killed_is_replaced_and_delivers(self):
        srv = self.start_server()
        srv.wait_roles(smtp=2, qmgr=1)
        victim = srv.kill_role("qmgr")
        qid = smtplib_send(srv.port, "x@remote.test", ["carol@example.test"],
                           make_message("while qmgr is down"))
        srv.wait_log(r"queue manager pid %d killed by signal 9" % victim)
        srv.wait_delivery("carol", qid, timeout=scaled(15))
        self.assertEqual(len(srv.files_for("carol", qid)), 1)
        self.assertEqual(srv.stop(), 0)


class CheckConfigTest(PosternTestCase):

    BASE = [
        "hostname = mx.example.test",
        "listen = 127.0.0.1:2599",
        # As root the roles need accounts (postern refuses to run them as root).
        "user = %s" % ("nobody" if IS_ROOT else ""),
        "mail_owner = %s" % ("mail" if IS_ROOT else ""),
        "spool_dir = spool",
        "mail_root = mail",
        "local_domains = example.test",
        "users_file = users",
        "aliases_file = aliases",
    ]

    def setUp(self):
        super().setUp()
        self.srv = PosternServer(name="checkconfig")
        self.addCleanup(self.srv.remove)

    def check(self, lines):
        with open(self.srv.conf_path, "w") as f:
            f.write("\n".join(lines) + "\n")
        p = self.srv.run_cli("check-config")
        return p.returncode, p.stdout.decode(), p.stderr.decode()

    def assert_error_at(self, bad_line, pattern):
        lines = self.BASE + [bad_line]
        rc, out, err = self.check(lines)
        self.assertEqual(rc, 1, (out, err))
        self.assertRegex(err, r"(?m)^%s:%d: %s" % (re.escape(self.srv.conf_path), len(lines),
                                                   pattern))
        self.assertNotIn(": ok", out)

    def test_good_config(self):
        rc, out, err = self.check(self.BASE + ["message_size_limit = 5M",
                                               "command_timeout = 2m"])
        self.assertEqual(rc, 0, err)
        self.assertIn("hostname = mx.example.test", out)
        self.assertIn("message_size_limit = 5242880", out)
        self.assertIn("command_timeout = 120", out)
        self.assertNotIn("error_limit", out, "defaults are not printed")
        self.assertEqual(out.strip().splitlines()[-1],
                         "%s: ok (5 users, 2 aliases)" % self.srv.conf_path)

    def test_the_harness_config_is_valid(self):
        p = self.srv.run_cli("check-config")
        self.assertEqual(p.returncode, 0, p.stderr.decode())

    def test_unknown_key(self):
        self.assert_error_at("no_such_key = 1", r'unknown key "no_such_key"')

    def test_bad_size_value(self):
        self.assert_error_at("message_size_limit = lots", r"message_size_limit: ")

    def test_value_out_of_range(self):
        self.assert_error_at("command_line_limit = 100", r"command_line_limit: .*range")

    def test_bad_duration(self):
        self.assert_error_at("command_timeout = 5 minutes", r"command_timeout: ")

    def test_bad_enum(self):
        self.assert_error_at("bare_newline = sometimes", r"bare_newline: ")

    def test_bad_listen(self):
        for value in ("127.0.0.1", "localhost:25", "127.0.0.1:0", "127.0.0.1:70000",
                      "::1:25", "[::1]25", "300.1.1.1:25"):
            with self.subTest(listen=value):
                lines = [l for l in self.BASE if not l.startswith("listen")]
                lines.append("listen = " + value)
                rc, out, err = self.check(lines)
                self.assertEqual(rc, 1, (value, out, err))
                self.assertRegex(err, r"(?m)^%s:%d: listen: " % (re.escape(self.srv.conf_path),
                                                                len(lines)))

    def test_bad_network(self):
        self.assert_error_at("mynetworks = 10.0.0.0/33", r"mynetworks: ")

    def test_duplicate_key(self):
        self.assert_error_at("hostname = other.example.test", r"hostname: set twice \(first on line 1\)")

    def test_several_errors_all_reported(self):
        lines = self.BASE + ["bogus = 1", "workers = many", "error_limit = 0"]
        rc, _, err = self.check(lines)
        self.assertEqual(rc, 1)
        for n in range(len(self.BASE) + 1, len(lines) + 1):
            self.assertRegex(err, r"(?m)^%s:%d: " % (re.escape(self.srv.conf_path), n))

    def test_missing_users_file(self):
        lines = [l for l in self.BASE if not l.startswith("users_file")] + \
            ["users_file = does-not-exist"]
        rc, out, err = self.check(lines)
        self.assertEqual(rc, 1, out)
        self.assertIn("users_file %s: cannot read: No such file or directory"
                      % os.path.join(self.srv.dir, "does-not-exist"), err)

    def test_tables_that_are_folders_name_their_key(self):
        lines = [l for l in self.BASE if not l.startswith(("users_file", "aliases_file"))] + \
            ["users_file = /tmp", "aliases_file = /"]
        rc, out, err = self.check(lines)
        self.assertEqual(rc, 1, out)
        self.assertIn("users_file /tmp: cannot read: Is a directory", err)
        self.assertIn("aliases_file /: cannot read: Is a directory", err)

    def test_bad_users_and_aliases_lines(self):
        with open(self.srv.users_path, "a") as f:
            f.write("no-at-sign:{PLAIN}x::::::\n")
        with open(self.srv.aliases_path, "a") as f:
            f.write("broken alias line without colon\n")
        rc, _, err = self.check(self.BASE)
        self.assertEqual(rc, 1)
        self.assertRegex(err, r"(?m)^%s:6: " % re.escape(self.srv.users_path))
        self.assertRegex(err, r"(?m)^%s:3: " % re.escape(self.srv.aliases_path))

    def test_tls_cert_without_key(self):
        rc, _, err = self.check(self.BASE + ["tls_cert = /nonexistent/cert.pem"])
        self.assertEqual(rc, 1)
        self.assertIn("tls_cert", err)

    def test_serve_refuses_bad_config(self):
        with open(self.srv.conf_path, "a") as f:
            f.write("no_such_key = 1\n")
        p = self.srv.run_cli("serve")
        self.assertNotEqual(p.returncode, 0)
        self.assertIn("unknown key", p.stderr.decode())


class QueueCommandTest(PosternTestCase):

    def test_queue_list_and_show_deferred_remote_message(self):
        srv = self.start_server()  # default mynetworks: 127.0.0.1 may relay
        qid = smtplib_send(srv.port, "alice@example.test", ["user@remote.test"],
                           make_message("waiting for a relay", sender="alice@example.test",
                                        to="user@remote.test"))
        srv.wait_log(r"%s: to=<user@remote.test> .*status=deferred" % qid)
        wait_until(lambda: qid in srv.spool_files("deferred"), scaled(5), what="deferred file")
        p = srv.run_cli("queue", "list")
        out = p.stdout.decode()
        self.assertEqual(p.returncode, 0, (out, p.stderr.decode()))
        line = [l for l in out.splitlines() if l.startswith(qid)]
        self.assertEqual(len(line), 1, out)
        self.assertIn("deferred", line[0])
        self.assertIn("<alice@example.test>", line[0])
        self.assertIn("<user@remote.test>", line[0])
        p = srv.run_cli("queue", "show", qid)
        out = p.stdout.decode()
        self.assertEqual(p.returncode, 0, (out, p.stderr.decode()))
        self.assertIn("queue_id: %s" % qid, out)
        self.assertIn("sender: <alice@example.test>", out)
        self.assertIn("recipient: <user@remote.test> pending", out)
        self.assertIn("Subject: waiting for a relay", out)
        p = srv.run_cli("queue", "show", "0" * 19)
        self.assertEqual(p.returncode, 1)
        p = srv.run_cli("queue", "show", "not-an-id")
        self.assertNotEqual(p.returncode, 0)
        self.assertEqual(srv.stop(), 0)

    @unittest.skipUnless(IS_ROOT, "needs root to run the command as the spool's owner")
    def test_queue_commands_need_no_tls_key(self):
        # The spool's owner (user = nobody) may look at the queue; the TLS
        # key, readable by root only, is none of the queue commands' business.
        srv = self.start_server(tls=True)
        qid = smtplib_send(srv.port, "alice@example.test", ["user@remote.test"],
                           make_message("listed by the spool owner", sender="alice@example.test",
                                        to="user@remote.test"))
        wait_until(lambda: qid in srv.spool_files("deferred"), scaled(10), what="deferred file")
        self.assertEqual(os.stat(srv.settings["tls_key"]).st_mode & 0o077, 0,
                         "the test key must be private for this test to mean something")
        account = pwd.getpwnam("nobody")
        nobody = ["setpriv", "--reuid=%d" % account.pw_uid, "--regid=%d" % account.pw_gid,
                  "--clear-groups"]
        for args in (["queue", "list"], ["queue", "show", qid]):
            p = subprocess.run(nobody + [POSTERN_BIN] + args + ["-c", srv.conf_path],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               timeout=scaled(20))
            err = p.stderr.decode()
            self.assertEqual(p.returncode, 0, err)
            self.assertNotIn("tls_key", err)
            self.assertIn(qid, p.stdout.decode())
        # serve and check-config still insist on the key being readable.
        p = subprocess.run(nobody + [POSTERN_BIN, "check-config", "-c", srv.conf_path],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=scaled(20))
        self.assertEqual(p.returncode, 1)
        self.assertRegex(p.stderr.decode(), r"postern\.conf: tls_key: cannot read .*: "
                         r"Permission denied")
        self.assertEqual(srv.stop(), 0)


if __name__ == "__main__":
    unittest.main()

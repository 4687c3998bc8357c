"""
test_queue_spool.py - the spool as the queue manager's clean-up sees it:
a transaction that is slow but alive keeps its incoming/ file however old
the file looks, because its receiver holds the file's lock until the
commit is over (issue 5, defect 11). A commit whose fsync of queue/
fails after the rename is answered 451 and never delivered, so the
client's retry is the only copy (defect 8; tests/unit/test_queue_commit.c
has the same race against the queue manager alone, step by step). And
the spool as "postern queue" run by
root sees it: whatever the unprivileged user planted there (a FIFO, a
symbolic link) is refused with a message, never waited on or followed.
"""
import os
import pwd
import shutil
import subprocess
import tempfile
import time
import unittest

from harness import (IS_ROOT, PRELOAD_DIR, PosternTestCase, make_message, queue_id_of,
                     raw_send, scaled, smtplib_send, wait_until)


class SlowTransactionTest(PosternTestCase):

    def test_old_looking_incoming_file_of_live_session_is_kept(self):
        srv = self.start_server()  # queue_scan_interval = 1s
        c = self.open_session(srv)
        self.start_data(c, "slow@remote.test", ["alice@example.test"])
        c.send(b"Subject: slow but alive\r\n\r\nfirst part\r\n")
        names = wait_until(lambda: srv.spool_files("incoming"), scaled(5),
                           what="the incoming file of the open transaction")
        self.assertEqual(len(names), 1, names)
        path = os.path.join(srv.spool_dir, "incoming", names[0])
        past = time.time() - 3 * 86400  # far older than the 2 hour limit
        os.utime(path, (past, past))
        offset = srv.log_size()
        # Several periodic scans run meanwhile (each one cleans incoming/).
        time.sleep(scaled(3.5))
        self.assertTrue(os.path.exists(path), "the clean-up removed a live "
                        "transaction's file; log:\n" + srv.log_since(offset))
        c.send(b"second part\r\n.\r\n")
        r = c.reply()
        self.assertReply(r, 250, "2.0.0")
        qid = queue_id_of(r.text)
        _, data = srv.wait_delivery("alice", qid)
        self.assertTrue(data.endswith(b"\n\nfirst part\nsecond part\n"), data)
        self.assertNotIn("removed stale incoming file", srv.log())
        self.assertEqual(srv.stop(), 0)

    def test_abandoned_incoming_file_is_still_removed(self):
        srv = self.start_server()
        path = os.path.join(srv.spool_dir, "incoming", "0000000000005000005")
        with open(path, "wb") as f:
            f.write(b"half a message whose receiver died")
        past = time.time() - 3 * 3600
        os.utime(path, (past, past))
        srv.wait_log(r"0000000000005000005: removed stale incoming file", timeout=scaled(5))
        self.assertFalse(os.path.exists(path))
        self.assertEqual(srv.stop(), 0)


class FailedCommitTest(PosternTestCase):
    """Defect 8 through the real server: the fsync of queue/ fails after
    the file was renamed into it, and slowly enough that the queue
    manager's scan (every second) finds the file meanwhile. The client is
    told 451, so it will send the message again: the failed copy must
    never be delivered, or the retry makes a duplicate. A test-only
    LD_PRELOAD library (preload/failsync.c) makes the fsync fail while a
    marker file exists."""

    def test_failed_queue_fsync_answers_451_and_never_delivers(self):
        lib = os.path.join(PRELOAD_DIR, "failsync.so")
        self.assertTrue(os.path.exists(lib), "%s missing: run make check-integration" % lib)
        marker_dir = tempfile.mkdtemp(prefix="postern-failsync-")
        os.chmod(marker_dir, 0o755)  # the worker looks for the marker as its own user
        self.addCleanup(shutil.rmtree, marker_dir, True)
        marker = os.path.join(marker_dir, "fail")
        srv = self.start_server(config={"workers": "1"},  # queue_scan_interval = 1s
                                env={"LD_PRELOAD": lib, "POSTERN_TEST_FAIL_SYNC": marker,
                                     "POSTERN_TEST_FAIL_SYNC_MS": "2500"})
        message = b"Subject: sent twice, wanted once\r\n\r\nbody\r\n.\r\n"
        c = self.open_session(srv)
        open(marker, "w").close()
        r = raw_send(c, "twice@remote.test", ["alice@example.test"], message)
        os.unlink(marker)
        self.assertReply(r, 451, "4.3.0")
        srv.wait_log(r"fsync .*/queue: Input/output error")
        time.sleep(scaled(1.5))  # a notification or a scan would deliver it now
        self.assertEqual(srv.maildir_new("alice"), [], "the refused copy was delivered")
        self.assertEqual(srv.spool_files("queue") + srv.spool_files("deferred"), [])
        # The client retries, as the 451 told it to: one copy arrives.
        r = raw_send(c, "twice@remote.test", ["alice@example.test"], message)
        self.assertReply(r, 250, "2.0.0")
        qid = queue_id_of(r.text)
        srv.wait_delivery("alice", qid)
        srv.wait_log(r"%s: removed" % qid)
        time.sleep(scaled(1.5))
        self.assertEqual(len(srv.maildir_new("alice")), 1, srv.maildir_new("alice"))
        self.assertEqual(srv.stop(), 0)


class PlantedEntriesTest(PosternTestCase):
    """The spool's folders belong to `user`: a compromised role can put
    anything there, and the administrator's "postern queue" (often run as
    root) must neither hang on it nor follow it."""

    FIFO_ID = "0000000000000000F1F"
    LINK_ID = "0000000000000000111"

    def plant(self, srv):
        deferred = os.path.join(srv.spool_dir, "deferred")
        fifo = os.path.join(deferred, self.FIFO_ID)
        link = os.path.join(deferred, self.LINK_ID)
        os.mkfifo(fifo, 0o600)
        os.symlink("/etc/passwd", link)
        if IS_ROOT:  # as the unprivileged user would have made them
            nobody = pwd.getpwnam("nobody")
            for path in (fifo, link):
                os.lchown(path, nobody.pw_uid, nobody.pw_gid)

    def run_queue(self, srv, *args):
        try:
            return srv.run_cli("queue", *args, timeout=scaled(10))
        except subprocess.TimeoutExpired:
            self.fail("postern queue %s hung on a planted entry" % " ".join(args))

    def test_fifo_and_link_in_deferred(self):
        srv = self.start_server()
        qid = smtplib_send(srv.port, "alice@example.test", ["user@remote.test"],
                           make_message("a real deferred message", sender="alice@example.test",
                                        to="user@remote.test"))
        wait_until(lambda: qid in srv.spool_files("deferred"), scaled(10), what="deferred file")
        self.assertEqual(srv.stop(), 0)  # the queue manager would move them aside
        self.plant(srv)
        p = self.run_queue(srv, "list")
        out, err = p.stdout.decode(), p.stderr.decode()
        self.assertEqual(p.returncode, 1, (out, err))
        self.assertRegex(out, r"(?m)^%s  deferred .*<alice@example\.test>  -> <user@remote\.test>"
                         % qid)
        self.assertRegex(out, r"(?m)^%s  deferred  \(unreadable\)$" % self.FIFO_ID)
        self.assertRegex(out, r"(?m)^%s  deferred  \(unreadable\)$" % self.LINK_ID)
        self.assertRegex(out, r"(?m)^3 messages \(0 in queue, 3 deferred, 0 held\)$")
        self.assertIn("deferred/%s: is a FIFO, not a queue file: not read" % self.FIFO_ID, err)
        self.assertIn("deferred/%s: is a symbolic link, not a queue file: not read"
                      % self.LINK_ID, err)
        self.assertNotIn("root:", out + err)  # /etc/passwd was not read
        p = self.run_queue(srv, "show", self.FIFO_ID)
        self.assertEqual(p.returncode, 1)
        self.assertIn("is a FIFO, not a queue file", p.stderr.decode())
        p = self.run_queue(srv, "show", qid)
        self.assertEqual(p.returncode, 0, p.stderr.decode())
        self.assertIn("Subject: a real deferred message", p.stdout.decode())


if __name__ == "__main__":
    unittest.main()

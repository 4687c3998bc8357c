"""
test_queue_spool.py - the spool as the queue manager's clean-up sees it:
a transaction that is slow but alive keeps its incoming/ file however old
the file looks, because its receiver holds the file's lock until the
commit is over (issue 5, defect 11; the commit side, defect 8, is
tests/unit/test_queue_commit.c).
"""
import os
import time
import unittest

from harness import PosternTestCase, queue_id_of, scaled, wait_until


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


if __name__ == "__main__":
    unittest.main()

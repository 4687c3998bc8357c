"""
test_async.py - the session waits without stalling the worker (issue 6):
a commit held up by a slow disk (a test-only LD_PRELOAD library makes
fdatasync of queue files sleep) does not hold up the replies of other
sessions served by the same smtp worker, and the slow message is still
acknowledged only once it is durable; a client that resets the
connection while its message is being committed does not make the
worker forget the message it is committing.
"""
import os
import re
import socket
import struct
import threading
import time

from harness import (PRELOAD_DIR, PosternTestCase, SmtpConn, queue_id_of, scaled)

SLOW_MS = 3000


class SlowDiskTest(PosternTestCase):

    def start_slow_server(self):
        lib = os.path.join(PRELOAD_DIR, "slowsync.so")
        self.assertTrue(os.path.exists(lib), "%s missing: run make check-integration" % lib)
        return self.start_server(config={"workers": "1"},
                                 env={"LD_PRELOAD": lib,
                                      "POSTERN_TEST_SLOW_SYNC_MS": str(SLOW_MS)})

    def test_other_sessions_answered_during_a_slow_commit(self):
        srv = self.start_slow_server()
        slow = self.open_session(srv)
        self.start_data(slow, "slow@remote.test", ["alice@example.test"])
        slow.send(b"Subject: slow disk\r\n\r\nbody\r\n.\r\n")
        sent = time.monotonic()
        time.sleep(0.2)  # the commit is now sleeping in fdatasync
        # Another session of the same (only) worker is served meanwhile.
        t0 = time.monotonic()
        other = SmtpConn(srv.port)  # the greeting, too, comes from that worker
        self.addCleanup(other.close)
        other.ehlo()
        self.assertEqual(other.cmd("NOOP").code, 250)
        self.assertReply(other.cmd("MAIL FROM:<quick@remote.test>"), 250)
        self.assertReply(other.cmd("RCPT TO:<bob@example.test>"), 250)
        quick = time.monotonic() - t0
        self.assertLess(quick, scaled(1.0), "replies took %.2f s during a slow commit" % quick)
        r = slow.reply(timeout=scaled(10))
        self.assertReply(r, 250)
        self.assertGreaterEqual(time.monotonic() - sent, SLOW_MS / 1000.0 - 0.05,
                                "250 before the file was on disk")
        srv.wait_delivery("alice", queue_id_of(r.text))

    def test_concurrent_commits_all_complete(self):
        srv = self.start_slow_server()
        ids, errors = [], []

        def send(n):
            try:
                with SmtpConn(srv.port, timeout=scaled(20)) as c:
                    c.ehlo()
                    self.start_data(c, "c%d@remote.test" % n, ["carol@example.test"])
                    c.send(b"Subject: concurrent %d\r\n\r\nbody\r\n.\r\n" % n)
                    r = c.reply(timeout=scaled(20))
                    ids.append(queue_id_of(r.text))
            except Exception as e:  # reported below
                errors.append(repr(e))
        threads = [threading.Thread(target=send, args=(n,)) for n in range(8)]
        start = time.monotonic()
        for t in threads:
            t.start()
        for t in threads:
            t.join(scaled(30))
        took = time.monotonic() - start
        self.assertEqual(errors, [])
        self.assertEqual(len(set(ids)), 8)
        # 4 commit threads: 8 slow syncs take about 2 rounds, not 8.
        self.assertLess(took, scaled(8 * SLOW_MS / 1000.0 * 0.75))
        for qid in ids:
            srv.wait_delivery("carol", qid)

    def test_client_reset_during_the_commit(self):
        # The periodic scan would find the file only after an hour: the
        # worker itself must announce what it committed.
        lib = os.path.join(PRELOAD_DIR, "slowsync.so")
        srv = self.start_server(config={"workers": "1", "queue_scan_interval": "1h"},
                                env={"LD_PRELOAD": lib,
                                     "POSTERN_TEST_SLOW_SYNC_MS": str(SLOW_MS)})
        c = self.open_session(srv)
        self.start_data(c, "gone@remote.test", ["alice@example.test"])
        c.send(b"Subject: client gone\r\n\r\nbody\r\n.\r\n")
        time.sleep(0.3)  # the commit is now sleeping in fdatasync
        c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        c.close()  # a reset: the session ends before the reply
        m = srv.wait_log(r"(\w+): accepted from=<gone@remote\.test> .* unanswered=yes "
                         r"client=127\.0\.0\.1", timeout=scaled(10))
        srv.wait_delivery("alice", m.group(1), timeout=scaled(10))
        self.assertNotIn("found without notification", srv.log())
        self.assertEqual(srv.stop(), 0)

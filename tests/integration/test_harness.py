"""
test_harness.py - checks of the test harness itself: kill9_all() leaves
no process of the server behind, and a sanitizer report or panic in a
server log fails the test that ran the server.
"""
import time
import unittest

import harness
from harness import PosternServer, PosternTestCase, process_alive, scaled


class HarnessTest(PosternTestCase):

    def test_kill9_all_kills_the_whole_tree(self):
        srv = self.start_server()
        srv.wait_roles(smtp=2, qmgr=1)
        pids = [srv.pid] + srv.children()
        self.assertGreaterEqual(len(pids), 4, pids)
        srv.kill9_all()
        for p in pids:
            self.assertFalse(process_alive(p), "pid %d survived kill9_all" % p)
        self.assertFalse(srv.running())
        # The same folder and port can be started again.
        srv.start()
        self.assertEqual(srv.stop(), 0)

    def test_sanitizer_report_fails_the_test(self):
        srv = PosternServer(name="sanitizer-check")
        srv.start()
        with open(srv.log_path, "a") as f:
            f.write("==4242==ERROR: AddressSanitizer: heap-use-after-free on address 0x1\n")
        with self.assertRaises(AssertionError) as cm:
            harness._finish_server(srv)
        self.assertIn("AddressSanitizer", str(cm.exception))
        self.assertFalse(srv.running())
        srv.remove()

    def test_panic_line_is_detected(self):
        srv = PosternServer(name="panic-check")
        try:
            with open(srv.log_path, "a") as f:
                f.write("2026-01-01T00:00:00.000Z postern/smtp[12]: panic: command X has no table entry\n")
                f.write("src/x.c:1:2: runtime error: signed integer overflow\n")
            self.assertEqual(len(srv.sanitizer_problems()), 2)
        finally:
            srv.remove()

    def test_wait_until_is_bounded(self):
        start = time.monotonic()
        with self.assertRaises(AssertionError):
            harness.wait_until(lambda: False, 0.3, what="nothing")
        self.assertLess(time.monotonic() - start, scaled(2))


if __name__ == "__main__":
    unittest.main()

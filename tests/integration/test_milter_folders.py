"""
test_milter_folders.py - which folders "postern milter" makes and needs
(issue 12, the milter server): it runs no delivery agent, so it neither
creates mail_root for mail_owner (serve's default, /var/lib/postern/mail,
appeared on machines that only ever ran the milter) nor refuses to start
over a mail_root it would never open; it does make its spool for user.
"postern serve" with the same configuration still creates mail_root.

Runs "postern milter" with scan = no (no pipeline to load), on a unix
socket in a folder user may write; needs root only as the other tests do.
"""
import os

from harness import PosternServer, PosternTestCase
from test_milter_server import MilterServer


class MilterModeFolders(PosternTestCase):

    def test_milter_does_not_create_mail_root(self):
        srv = MilterServer("milter-folders", config={"scan": "no"})
        self.assertFalse(os.path.exists(srv.mail_root))
        srv.start()
        try:
            self.assertTrue(os.path.isdir(srv.spool_dir),
                            "postern milter did not make its spool_dir")
            self.assertFalse(os.path.exists(srv.mail_root),
                             "postern milter created mail_root %s, which it never "
                             "opens" % srv.mail_root)
        finally:
            srv.stop()

    def test_milter_starts_over_a_mail_root_it_does_not_use(self):
        # A mail_root that serve could not use (here a file, not a folder)
        # is no reason for the milter not to start.
        srv = MilterServer("milter-folders-file", config={"scan": "no"})
        with open(srv.mail_root, "w") as f:
            f.write("not a folder\n")
        srv.start()
        srv.stop()

    def test_serve_still_creates_mail_root(self):
        srv = PosternServer("serve-folders", config={"scan": "no"})
        srv.start()
        try:
            self.assertTrue(os.path.isdir(srv.mail_root))
        finally:
            srv.stop()


if __name__ == "__main__":
    import unittest
    unittest.main()

"""
test_milter_folders.py - which folders "postern milter" makes and needs
(issue 12, the milter server): it runs no delivery agent, so it neither
creates mail_root for mail_owner (serve's default, /var/lib/postern/mail,
appeared on machines that only ever ran the milter) nor refuses to start
over a mail_root it would never open; it does make its spool for user.
"postern serve" with the same configuration still creates mail_root.
A unix milter_listen in a folder user cannot write, or in no folder, is
said by check-config and stops the start, naming the folder, instead of
a milter process that fails to listen, without saying why, every second;
a socket that cannot be made for another reason (here a full file
system) is named with the reason and the folder, and stops the start.

Runs "postern milter" with scan = no (no pipeline to load), on a unix
socket in a folder user may write; needs root only as the other tests do.
"""
import os
import pwd
import re
import subprocess

from harness import POSTERN_BIN, PosternServer, PosternTestCase, scaled
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

    def postern(self, srv, command):
        r = subprocess.run([POSTERN_BIN, command, "-c", srv.conf_path], cwd=srv.dir,
                           stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, timeout=scaled(30))
        return r.returncode, r.stdout.decode()

    def test_socket_folder_user_cannot_write(self):
        srv = MilterServer("milter-sockdir", config={"scan": "no"})
        self.addCleanup(srv.remove)
        os.chown(srv.sock_dir, 0, 0)  # root's, mode 0755: user cannot make the socket
        want = ("milter_listen unix:%s: user %s cannot create the socket in %s: "
                % (srv.sock_path, srv.settings["user"] or os.environ.get("USER", ""),
                   srv.sock_dir))
        rc, out = self.postern(srv, "check-config")
        self.assertNotEqual(rc, 0, out)
        self.assertIn(want, out)
        rc, out = self.postern(srv, "milter")
        self.assertEqual(rc, 1, out)
        self.assertIn(want, out)
        self.assertIn("not starting", out)

    def test_socket_folder_missing(self):
        srv = MilterServer("milter-nosockdir", config={"scan": "no"})
        self.addCleanup(srv.remove)
        os.rmdir(srv.sock_dir)
        rc, out = self.postern(srv, "milter")
        self.assertEqual(rc, 1, out)
        self.assertIn("milter_listen unix:%s: the socket's folder %s does not exist"
                      % (srv.sock_path, srv.sock_dir), out)

    def test_socket_that_cannot_be_made_says_why(self):
        # A folder user may write, on a file system without a free inode:
        # was "cannot listen on PATH.new-PID" without a reason, and a
        # milter process started again every second.
        srv = MilterServer("milter-sockfull", config={"scan": "no"})
        self.addCleanup(srv.remove)
        nobody = pwd.getpwnam("nobody")
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k,nr_inodes=1,mode=0755,"
                            "uid=%d,gid=%d" % (nobody.pw_uid, nobody.pw_gid), "tmpfs",
                            srv.sock_dir], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        if r.returncode != 0:
            self.skipTest("cannot mount a tmpfs here: %s" % r.stdout.decode().strip())
        self.addCleanup(subprocess.run, ["umount", srv.sock_dir])
        rc, out = self.postern(srv, "milter")
        self.assertEqual(rc, 1, out)
        self.assertRegex(out, r"milter_listen unix:%s: cannot listen on %s\.new-\d+: No space "
                         r"left on device \(the milter process, as user, makes the socket in "
                         r"the folder %s, whose file system is full\)"
                         % (re.escape(srv.sock_path), re.escape(srv.sock_path),
                            re.escape(srv.sock_dir)))
        self.assertIn("not starting", out)

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

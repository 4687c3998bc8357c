"""
dovecot_peer.py - a private Dovecot IMAP server (Debian dovecot-imapd)
reading the Maildirs of a postern test server, the way README's "Reading
the mail with Dovecot" pairs them: passwd-file passdb and userdb on
postern's users file, mail_location = maildir:<mail_root>/%d/%n/Maildir,
mail_uid/mail_gid = the owner of the Maildirs.

DovecotPeer owns a temporary folder with its own configuration (no
system configuration is read: dovecot -c FILE), base_dir, state_dir and
log, listens on a free loopback port, runs in the foreground in its own
process group, and is always stopped by stop(). When Dovecot is not
installed, start() fails with a message saying how to install it: the
tests that need it must not pass by skipping.
"""
import grp
import imaplib
import os
import pwd
import shutil
import socket
import tempfile
import time

from peer_process import PeerProcess
from harness import IS_ROOT, free_port, scaled

DOVECOT_CANDIDATES = ("/usr/sbin/dovecot",)
DEBIAN_IMAP_BINARY = "/usr/lib/dovecot/imap"  # package dovecot-imapd
NOT_INSTALLED = ("%s: the Dovecot pairing tests need the Debian package dovecot-imapd "
                 "(tools/install-deps.sh, run by make check, installs it)")


def dovecot_binary():
    found = shutil.which("dovecot") or next(
        (p for p in DOVECOT_CANDIDATES if os.access(p, os.X_OK)), None)
    if found is None:
        raise AssertionError(NOT_INSTALLED % "Dovecot is not installed")
    if os.path.isdir(os.path.dirname(DEBIAN_IMAP_BINARY)) and \
            not os.access(DEBIAN_IMAP_BINARY, os.X_OK):
        raise AssertionError(NOT_INSTALLED % "Dovecot's IMAP server is not installed")
    return found


class DovecotPeer(PeerProcess):
    """A Dovecot IMAP server on 127.0.0.1:<free port> for one postern
    server's mail_root and users file."""

    NAME = "Dovecot"
    STDERR_NAME = "dovecot.stderr"
    STOP_GRACE = 15

    def __init__(self, mail_root, users_file, mail_uid, mail_gid):
        self.binary = dovecot_binary()
        self.dir = tempfile.mkdtemp(prefix="postern-it-dovecot-")
        os.chmod(self.dir, 0o755)  # Dovecot's unprivileged processes enter it
        self.conf_path = os.path.join(self.dir, "dovecot.conf")
        self.log_path = os.path.join(self.dir, "dovecot.log")
        self.port = free_port()
        self.proc = None
        self.write_config(mail_root, users_file, mail_uid, mail_gid)

    def write_config(self, mail_root, users_file, mail_uid, mail_gid):
        # Run as root, Dovecot's auth process reads the users file as
        # default_internal_user (dovecot) and imap runs as mail_uid. Run
        # as another user, every process is that user and none chroots.
        me = None if IS_ROOT else pwd.getpwuid(os.geteuid())
        lines = [
            "# written by tests/integration/dovecot_peer.py",
            "base_dir = %s/run" % self.dir,
            "state_dir = %s/state" % self.dir,
            "log_path = %s" % self.log_path,
            "protocols = imap",
            "listen = 127.0.0.1",
            "ssl = no",
            "disable_plaintext_auth = no",
            "auth_mechanisms = plain",
            # The Maildirs belong to a system user (uid below 500).
            "first_valid_uid = 1",
            "first_valid_gid = 1",
            "mail_uid = %d" % mail_uid,
            "mail_gid = %d" % mail_gid,
            "mail_location = maildir:%s/%%d/%%n/Maildir" % mail_root,
            "passdb {",
            "  driver = passwd-file",
            "  args = %s" % users_file,
            "}",
            "userdb {",
            "  driver = passwd-file",
            "  args = %s" % users_file,
            "}",
            "service imap-login {",
            "  inet_listener imap {",
            "    address = 127.0.0.1",
            "    port = %d" % self.port,
            "  }",
            "  inet_listener imaps {",
            "    port = 0",
            "  }",
            "}",
        ]
        if me is not None:
            group = grp.getgrgid(os.getegid()).gr_name
            lines += ["default_internal_user = %s" % me.pw_name,
                      "default_internal_group = %s" % group,
                      "default_login_user = %s" % me.pw_name,
                      "service anvil {", "  chroot =", "}",
                      "service imap-login {", "  chroot =", "}"]
        os.makedirs(os.path.join(self.dir, "state"))
        with open(self.conf_path, "w") as f:
            f.write("\n".join(lines) + "\n")

    # -- process --

    def start(self, timeout=None):
        timeout = timeout if timeout is not None else scaled(20)
        return self.launch([self.binary, "-F", "-c", self.conf_path], self._greets, timeout,
                           "Dovecot's IMAP greeting on port %d" % self.port)

    def _greets(self):
        if self.proc.poll() is not None:
            raise AssertionError("dovecot exited with status %s at start; log:\n%s"
                                 % (self.proc.returncode, self.log_tail()))
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=2) as s:
                return s.recv(512).startswith(b"* OK")
        except OSError:
            return False

    # -- log --

    def log_size(self):
        try:
            return os.path.getsize(self.log_path)
        except FileNotFoundError:
            return 0

    def problems_since(self, offset):
        """Error, Fatal and Panic lines Dovecot logged after offset."""
        try:
            with open(self.log_path, "rb") as f:
                f.seek(offset)
                text = f.read().decode("utf-8", "replace")
        except FileNotFoundError:
            return []
        return [l for l in text.splitlines()
                if any(m in l for m in (" Error: ", " Fatal: ", " Panic: "))]

    # -- IMAP --

    def login(self, user, password="secret"):
        """An IMAP session logged in as user (caller logs out)."""
        deadline = time.monotonic() + scaled(10)
        while True:
            try:
                imap = imaplib.IMAP4("127.0.0.1", self.port, timeout=scaled(15))
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        try:
            imap.login(user, password)
        except imaplib.IMAP4.error as e:
            imap.shutdown()
            raise AssertionError("IMAP login as %s failed: %s; Dovecot log:\n%s"
                                 % (user, e, self.log_tail()))
        return imap

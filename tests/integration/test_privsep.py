"""
test_privsep.py - privilege separation as an administrator can check it
(issue 5): each process runs as its account (supervisor root, smtp
workers and queue manager `user`, the local delivery agents, one per
delivery lane, `mail_owner`), the account that parses SMTP can open
neither a Maildir nor the users file, Maildirs belong to mail_owner, a
local delivery agent dying restarts the queue manager and all its agents
without losing mail, and postern refuses the configurations that would
give a role root or the mailboxes to the SMTP parsers. With content
scanning on (issue 7), the scan master and its scanners run as `user`,
hold no listening socket and no descriptor of the TLS key or the
tables, and a scanner holds nothing but its socket to the master; no
process but the key holder has the TLS key in its memory, live or
freed (issue 11: not even the smtp workers, which ask the key holder for
their signatures); the key holder runs as `user`, non-dumpable, with no
listener and no file open, serves only its own account and ends a
connection at the first malformed request. With every role on (scan
master and scanners, anvil, relay agent too), no process but the
supervisor runs as root, and no process but the auth process (issue 11:
the one that checks passwords) holds a password hash of the users file,
before or after a reload (its memory is read through /proc).

Run as root (as in CI): user = nobody, mail_owner = Debian's "mail".
"""
import grp
import os
import pwd
import re
import shutil
import signal
import stat
import subprocess
import sys
import time
import unittest

from harness import (IS_ROOT, REPO, PosternServer, PosternTestCase, descendants,
                     make_message, memory_holds, private_key_needles, process_alive, scaled,
                     smtplib_send, starttls_peer_certificate, wait_until)

NOBODY = pwd.getpwnam("nobody")
MAIL = pwd.getpwnam("mail")


def proc_ids(pid):
    """(uids, gids) of a process: the real, effective, saved and fs ids."""
    with open("/proc/%d/status" % pid) as f:
        text = f.read()
    uids = [int(x) for x in re.search(r"^Uid:\s+(.*)$", text, re.M).group(1).split()]
    gids = [int(x) for x in re.search(r"^Gid:\s+(.*)$", text, re.M).group(1).split()]
    groups = re.search(r"^Groups:[ \t]*(.*)$", text, re.M).group(1).split()
    return uids, gids, [int(g) for g in groups]


def no_new_privs(pid):
    """The NoNewPrivs flag of a process (1: exec cannot gain privileges)."""
    with open("/proc/%d/status" % pid) as f:
        return int(re.search(r"^NoNewPrivs:\s+(\d)", f.read(), re.M).group(1))


def as_account(account, *argv):
    """Run argv with the uid and gid of account and no other group."""
    return subprocess.run(["setpriv", "--reuid=%d" % account.pw_uid,
                           "--regid=%d" % account.pw_gid, "--clear-groups"] + list(argv),
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=scaled(10))


@unittest.skipUnless(IS_ROOT, "needs root: the roles switch accounts only when started as root")
class RoleAccountsTest(PosternTestCase):

    LANES = 3

    @classmethod
    def setUpClass(cls):
        cls.srv = cls.start_class_server(config={"delivery_lanes": str(cls.LANES)})
        cls.srv.wait_roles(smtp=2, qmgr=1)
        wait_until(lambda: len(cls.srv.role_pids("local")) == cls.LANES, scaled(10),
                   what="the local agents")

    def assert_account(self, pid, account, role):
        uids, gids, groups = proc_ids(pid)
        self.assertEqual(uids, [account.pw_uid] * 4, "%s pid %d uids" % (role, pid))
        self.assertEqual(gids, [account.pw_gid] * 4, "%s pid %d gids" % (role, pid))
        self.assertEqual(groups, [], "%s pid %d keeps supplementary groups" % (role, pid))
        # Not dumpable: /proc/PID/status then belongs to root, and another
        # process of the same account can neither ptrace it nor read it.
        self.assertEqual(os.stat("/proc/%d/status" % pid).st_uid, 0,
                         "%s pid %d is dumpable" % (role, pid))
        # No set-user-id program or file capability can give it back.
        self.assertEqual(no_new_privs(pid), 1, "%s pid %d lacks NoNewPrivs" % (role, pid))

    def test_each_role_runs_as_its_account(self):
        srv = self.srv
        uids, _, _ = proc_ids(srv.pid)
        self.assertEqual(uids, [0, 0, 0, 0], "the supervisor")
        self.assertEqual(no_new_privs(srv.pid), 0, "the supervisor stays as it was started")
        smtp, qmgr, local = srv.role_pids("smtp"), srv.role_pids("qmgr"), srv.role_pids("local")
        self.assertEqual(len(smtp), 2)
        self.assertEqual(len(qmgr), 1)
        self.assertEqual(len(local), self.LANES, "one agent per delivery lane")
        for pid in smtp:
            self.assert_account(pid, NOBODY, "smtp worker")
        self.assert_account(qmgr[0], NOBODY, "queue manager")
        for pid in local:
            self.assert_account(pid, MAIL, "local delivery agent")
            # Each agent is the queue manager's child, not the supervisor's.
            with open("/proc/%d/stat" % pid) as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            self.assertEqual(ppid, qmgr[0], "parent of agent %d" % pid)
            # ...and holds its own socket only: no other lane's, no pipe
            # end of the smtp workers' (notify, flow).
            sockets = [os.readlink("/proc/%d/fd/%s" % (pid, fd))
                       for fd in os.listdir("/proc/%d/fd" % pid)]
            self.assertEqual(len([s for s in sockets if s.startswith("socket:")]), 1,
                             "agent %d descriptors: %r" % (pid, sockets))
            self.assertEqual([s for s in sockets if s.startswith("pipe:")], [],
                             "agent %d descriptors: %r" % (pid, sockets))

    def test_mailboxes_belong_to_mail_owner_and_workers_cannot_open_them(self):
        srv = self.srv
        qid = smtplib_send(srv.port, "x@remote.test", ["bob@example.test"],
                           make_message("owned by mail_owner"))
        name, _ = srv.wait_delivery("bob", qid)
        mail_file = os.path.join(srv.maildir("bob"), name)
        for path in (srv.mail_root, os.path.dirname(srv.maildir("bob")), mail_file):
            st = os.stat(path)
            self.assertEqual((st.st_uid, st.st_gid), (MAIL.pw_uid, MAIL.pw_gid), path)
            self.assertEqual(st.st_mode & 0o077, 0, "%s is open to others" % path)
        # The smtp workers' account cannot open a mailbox nor the users file.
        p = as_account(NOBODY, "cat", mail_file)
        self.assertNotEqual(p.returncode, 0, "user nobody could read %s" % mail_file)
        p = as_account(NOBODY, "cat", srv.users_path)
        self.assertNotEqual(p.returncode, 0, "user nobody could read the users file")
        p = as_account(NOBODY, "ls", srv.maildir("bob"))
        self.assertNotEqual(p.returncode, 0)
        # ...while mail_owner can (so the refusals above mean something).
        p = as_account(MAIL, "cat", mail_file)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn(b"Subject: owned by mail_owner", p.stdout)

    def test_spool_belongs_to_user(self):
        for folder in ["", "incoming", "queue", "deferred", "hold", "quarantine", "corrupt"]:
            st = os.stat(os.path.join(self.srv.spool_dir, folder))
            self.assertEqual(st.st_uid, NOBODY.pw_uid, folder)
            self.assertEqual(stat.S_IMODE(st.st_mode), 0o700, folder)


def descriptors(pid):
    """{fd: what it points to} of a process, from /proc."""
    out = {}
    for fd in os.listdir("/proc/%d/fd" % pid):
        try:
            out[int(fd)] = os.readlink("/proc/%d/fd/%s" % (pid, fd))
        except OSError:
            pass
    return out


def listening_socket_inodes():
    """Inodes of every TCP socket in the LISTEN state (IPv4 and IPv6)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                next(f)
                for line in f:
                    fields = line.split()
                    if fields[3] == "0A":
                        inodes.add("socket:[%s]" % fields[9])
        except OSError:
            pass
    return inodes


@unittest.skipUnless(IS_ROOT, "needs root: the roles switch accounts only when started as root")
class ScanRolesTest(PosternTestCase):
    """The scan master and the scanners that parse hostile mail: `user`,
    no listener, no TLS key, no table; a scanner holds its socket only."""

    @classmethod
    def setUpClass(cls):
        cls.srv = cls.start_class_server(tls=True, config={
            "clamav_db_dir": os.path.join(REPO, "etc", "clamav-test"),
            "content_rules_file": os.path.join(REPO, "etc", "content-rules.example"),
            "scan_workers": "2"})
        cls.srv.wait_log(r"scan master ready")

    def scan_processes(self):
        master = self.srv.role_pids("scan")
        self.assertEqual(len(master), 1, self.srv.log_tail())
        scanners = wait_until(lambda: len(descendants(master[0])) == 2 and
                              descendants(master[0]), scaled(10), what="two scanners")
        return master[0], scanners

    def test_accounts_and_descriptors(self):
        master, scanners = self.scan_processes()
        listeners = listening_socket_inodes()
        secrets = (self.srv.settings["tls_key"], self.srv.users_path, self.srv.aliases_path)
        for pid in [master] + scanners:
            uids, gids, groups = proc_ids(pid)
            self.assertEqual(uids, [NOBODY.pw_uid] * 4, "pid %d" % pid)
            self.assertEqual(gids, [NOBODY.pw_gid] * 4, "pid %d" % pid)
            self.assertEqual(groups, [], "pid %d" % pid)
            self.assertEqual(os.stat("/proc/%d/status" % pid).st_uid, 0, "%d is dumpable" % pid)
            self.assertEqual(no_new_privs(pid), 1, "pid %d lacks NoNewPrivs" % pid)
            fds = descriptors(pid)
            self.assertFalse(set(fds.values()) & listeners,
                             "pid %d holds a listening socket: %r" % (pid, fds))
            self.assertFalse([t for t in fds.values() if t in secrets],
                             "pid %d holds a secret file: %r" % (pid, fds))
        for pid in scanners:
            # Standard input (/dev/null), the log as stdout and stderr, and
            # the socket to its master: nothing of the master's or the
            # supervisor's (a pipe, another scanner's socket).
            others = {fd: t for fd, t in descriptors(pid).items() if fd > 2}
            self.assertEqual(len(others), 1, "scanner %d holds %r" % (pid, others))
            self.assertTrue(list(others.values())[0].startswith("socket:"), others)


@unittest.skipUnless(IS_ROOT, "needs root: the roles switch accounts only when started as root")
class KeyHolderRoleTest(PosternTestCase):
    """The key holder (issue 11): `user`, non-dumpable, NoNewPrivs, no
    listener of the network, no file open (the key is read and closed);
    it takes connections only from processes of its own account and ends
    one at the first malformed request, and goes on serving."""

    @classmethod
    def setUpClass(cls):
        cls.srv = cls.start_class_server(tls=True)

    def holder(self):
        pids = self.srv.role_pids("keyholder")
        self.assertEqual(len(pids), 1, self.srv.log_tail())
        return pids[0]

    def socket_path(self):
        private = os.path.join(self.srv.spool_dir, "private")
        names = [n for n in os.listdir(private) if re.fullmatch(r"keyholder-[0-9a-f]{16}\.sock", n)]
        self.assertEqual(len(names), 1, names)
        return os.path.join(private, names[0])

    def test_account_and_descriptors(self):
        pid = self.holder()
        uids, gids, groups = proc_ids(pid)
        self.assertEqual(uids, [NOBODY.pw_uid] * 4)
        self.assertEqual(gids, [NOBODY.pw_gid] * 4)
        self.assertEqual(groups, [])
        self.assertEqual(os.stat("/proc/%d/status" % pid).st_uid, 0, "it is dumpable")
        self.assertEqual(no_new_privs(pid), 1)
        fds = descriptors(pid)
        self.assertFalse(set(fds.values()) & listening_socket_inodes(),
                         "the key holder holds a listening TCP socket: %r" % fds)
        # Standard input (/dev/null), the log as stdout and stderr, then
        # only sockets and the event loop's descriptors: no file.
        files = [t for fd, t in fds.items() if fd > 2 and t.startswith("/")]
        self.assertEqual(files, [], "the key holder holds files: %r" % fds)

    def ask(self, packet, uid=NOBODY.pw_uid, gid=NOBODY.pw_gid):
        """Send packet to the key holder from a process of uid; what it
        answers (b"" if it closes the connection)."""
        code = ("import socket, sys\n"
                "s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)\n"
                "s.settimeout(10)\n"
                "s.connect(sys.argv[1])\n"
                "try:\n"
                "    s.send(bytes.fromhex(sys.argv[2]))\n"
                "    sys.stdout.write(s.recv(2000).hex())\n"
                "except (BrokenPipeError, ConnectionResetError):\n"
                "    pass  # closed before it could read or answer\n")
        p = subprocess.run(["setpriv", "--reuid=%d" % uid, "--regid=%d" % gid, "--clear-groups",
                            sys.executable, "-c", code, self.socket_path(), packet.hex()],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=scaled(20))
        self.assertEqual(p.returncode, 0, p.stderr)
        return bytes.fromhex(p.stdout.decode())

    def test_malformed_request_ends_the_connection_only(self):
        pid = self.holder()
        offset = self.srv.log_size()
        self.assertEqual(self.ask(b"\x07junk"), b"")
        self.srv.wait_log(r"a worker's connection ended: unknown message type", since=offset)
        # A well-formed request for a key it does not hold is answered.
        request = b"\x01" + b"\0\0\0\x05" + bytes(32) + b"\x03" + b"\0\x20" + bytes(32)
        self.assertEqual(self.ask(request), b"\x81\0\0\0\x05\x01\0\0")
        self.assertEqual(self.holder(), pid)
        self.assertEqual(starttls_peer_certificate(self.srv.port)[1], "TLSv1.3")

    def test_other_accounts_are_refused(self):
        offset = self.srv.log_size()
        request = b"\x01" + b"\0\0\0\x05" + bytes(32) + b"\x03" + b"\0\x20" + bytes(32)
        self.assertEqual(self.ask(request, uid=0, gid=0), b"")
        self.srv.wait_log(r"connection refused: not from a process of this account",
                          since=offset)


# The supervisor once decoded the TLS key, and the freed copies OpenSSL
# does not clear (the PEM text, the DER, the primes) reached every role it
# forked (SSL_CTX_free clears only the live key). Then only the smtp
# workers decoded it; now only the key holder does (issue 11), and the
# supervisor checks it in a child that exits.
@unittest.skipUnless(IS_ROOT, "needs root: reads other accounts' process memory")
class ScanRolesKeyTest(PosternTestCase):
    """The TLS private key is in no memory but the key holder's, live or
    freed: not the smtp workers' (even after handshakes), the supervisor's,
    the scan processes', the anvil's, the queue manager's or its agents'.
    Scanning with the MIME limits only, so that no signature loading
    happens to reuse (and so hide) the freed copies."""

    @classmethod
    def setUpClass(cls):
        cls.srv = cls.start_class_server(tls=True, config={"scan": "yes", "scan_workers": "2"})
        cls.srv.wait_log(r"scan master ready")

    def test_no_tls_key_in_memory(self):
        for _ in range(4):  # handshakes on both workers, most likely
            starttls_peer_certificate(self.srv.port)
        needles = private_key_needles(self.srv.settings["tls_key"])
        workers = self.srv.role_pids("smtp")
        self.assertEqual(len(workers), 2)
        for pid in workers:
            self.assertEqual(memory_holds(pid, needles), set(),
                             "smtp worker pid %d holds the TLS key" % pid)
        # The probe finds the key where it must be: the key holder signs.
        self.assertTrue(memory_holds(self.srv.role_pids("keyholder")[0], needles),
                        "the probe does not find the key in the key holder")
        master = self.srv.role_pids("scan")[0]
        scanners = wait_until(lambda: len(descendants(master)) == 2 and descendants(master),
                              scaled(10), what="two scanners")
        for pid in [master] + scanners:
            self.assertEqual(memory_holds(pid, needles), set(), "pid %d holds the TLS key" % pid)
        others = [self.srv.proc.pid]
        for role in ("anvil", "qmgr", "local", "relay"):
            others += self.srv.role_pids(role)
        for pid in others:
            self.assertEqual(memory_holds(pid, needles), set(),
                             "pid %d (not the key holder) holds the TLS key" % pid)

    def test_reload_keeps_the_key_out_of_the_supervisor(self):
        m = self.srv.reload(wait_old=True)
        self.assertIn("starting generation", m.group(0))
        needles = private_key_needles(self.srv.settings["tls_key"])
        self.assertEqual(memory_holds(self.srv.proc.pid, needles), set())


def writable_memory(pid):
    """The contents of pid's writable mappings (where data made at run
    time can be), one bytes object each. Mappings over 1 GiB are left
    out: only AddressSanitizer's shadow is that large, and it holds
    nothing of ours."""
    with open("/proc/%d/maps" % pid) as f:
        maps = f.read().splitlines()
    with open("/proc/%d/mem" % pid, "rb", buffering=0) as mem:
        for line in maps:
            fields = line.split()
            start, end = (int(x, 16) for x in fields[0].split("-"))
            if not fields[1].startswith("rw") or end - start > 1 << 30:
                continue
            try:
                mem.seek(start)
                yield mem.read(end - start)
            except OSError:  # a mapping gone or not readable meanwhile
                continue


def found_in_memory(pid, needles):
    """Which of needles (bytes) pid's writable memory holds."""
    found = set()
    for chunk in writable_memory(pid):
        found.update(n for n in needles if n in chunk)
    return found


# Each role's log name, and the account it runs as (the scanners do not
# log: they are found as the scan master's children).
ROLE_ACCOUNTS = {"smtp": NOBODY, "qmgr": NOBODY, "relay": NOBODY, "scan": NOBODY,
                 "anvil": NOBODY, "auth": NOBODY, "keyholder": NOBODY, "local": MAIL}


@unittest.skipUnless(IS_ROOT, "needs root")
class EveryProcessTest(PosternTestCase):
    """Every process of a server with every role on (content scanning,
    the anvil, the relay agent, local delivery, TLS and so the key
    holder): none runs as root or
    keeps a group, and none but the auth process holds a password hash of
    the users file."""

    def start_every_role(self, users_text=None):
        srv = self.start_server(start=False, tls=True,
                                config={"scan": "yes", "scan_workers": "2",
                                        "delivery_lanes": "2"})
        if users_text is not None:
            with open(srv.users_path, "w") as f:
                f.write(users_text)
        srv.start()
        self.wait_every_role(srv)
        return srv

    def wait_every_role(self, srv, since=0):
        srv.wait_roles(smtp=2, qmgr=1)
        srv.wait_log(r"scan master ready", since=since)
        wait_until(lambda: all(srv.role_pids(r) for r in ROLE_ACCOUNTS) and
                   len(srv.role_pids("smtp")) == 2 and
                   len(descendants(srv.role_pids("scan")[0])) == 2, scaled(10),
                   what="every role and two scanners")

    def test_no_process_but_the_supervisor_runs_as_root(self):
        srv = self.start_every_role()
        scanners = descendants(srv.role_pids("scan")[0])
        expected = {pid: (role, account) for role, account in ROLE_ACCOUNTS.items()
                    for pid in srv.role_pids(role)}
        expected.update((pid, ("scanner", NOBODY)) for pid in scanners)
        self.assertEqual(sorted(srv.children()), sorted(expected),
                         "a process whose role is unknown runs under the supervisor")
        for pid, (role, account) in expected.items():
            uids, gids, groups = proc_ids(pid)
            self.assertEqual(uids, [account.pw_uid] * 4, "%s pid %d uids" % (role, pid))
            self.assertEqual(gids, [account.pw_gid] * 4, "%s pid %d gids" % (role, pid))
            self.assertEqual(groups, [], "%s pid %d keeps supplementary groups" % (role, pid))
            self.assertEqual(no_new_privs(pid), 1, "%s pid %d lacks NoNewPrivs" % (role, pid))
            self.assertEqual(os.stat("/proc/%d/status" % pid).st_uid, 0,
                             "%s pid %d is dumpable" % (role, pid))

    def test_no_role_holds_a_password_hash(self):
        # Hashes no other file or process of the server contains.
        token = os.urandom(12).hex()
        hashes = {u: "$6$%s$%s-%s" % (token[:8], u, token) for u in ("alice", "bob")}
        srv = self.start_every_role("".join("%s@example.test:{SHA512-CRYPT}%s::::::\n" % uh
                                            for uh in hashes.items()))
        qid = smtplib_send(srv.port, "x@remote.test", ["alice@example.test"],
                           make_message("the worker looked alice up"))
        srv.wait_delivery("alice", qid)
        for generation in ("first", "after a reload"):
            if generation != "first":
                offset = srv.log_size()
                srv.reload(wait_old=True)
                self.wait_every_role(srv, since=offset)
            pids = srv.children()
            self.assertGreaterEqual(len(pids), 10, "%s: %r" % (generation, pids))
            needles = {h.encode(): user for user, h in hashes.items()}
            auth = srv.role_pids("auth")
            self.assertEqual(len(auth), 1, generation)
            for pid in pids:
                found = found_in_memory(pid, list(needles) + [b"alice@example.test"])
                if pid in auth:
                    # the one process that checks passwords holds them
                    self.assertEqual(found & set(needles), set(needles),
                                     "%s: the auth process pid %d" % (generation, pid))
                    continue
                for h in found & set(needles):
                    self.fail("%s: pid %d (%s) holds %s's password hash"
                              % (generation, pid, proc_role(srv, pid), needles[h]))
                # The memory was really read: the workers hold the addresses.
                if pid in srv.role_pids("smtp"):
                    self.assertIn(b"alice@example.test", found, "smtp worker pid %d" % pid)


def proc_role(srv, pid):
    for role in ROLE_ACCOUNTS:
        if pid in srv.role_pids(role):
            return role
    return "a scanner"


@unittest.skipUnless(IS_ROOT, "needs root")
class LocalAgentRestartTest(PosternTestCase):

    LANES = 4

    def start_with_agents(self):
        srv = self.start_server(config={"delivery_lanes": str(self.LANES)})
        wait_until(lambda: len(srv.role_pids("local")) == self.LANES and
                   len(srv.role_pids("qmgr")) == 1, scaled(10),
                   what="the queue manager and its local agents")
        return srv

    def test_killed_agent_restarts_the_pair_and_mail_flows(self):
        srv = self.start_with_agents()
        old_qmgr, old_agents = srv.role_pids("qmgr")[0], srv.role_pids("local")
        victim = old_agents[-1]
        offset = srv.log_size()
        os.kill(victim, signal.SIGKILL)
        srv.wait_log(r"local delivery agent pid %d \(lane \d+\): closed its socket; the "
                     r"deliveries in flight are deferred and the queue manager exits so that "
                     r"the supervisor restarts it with new agents" % victim, since=offset)
        srv.wait_log(r"local delivery agent pid %d killed by signal 9" % victim, since=offset)
        srv.wait_log(r"queue manager pid %d exited with status 1" % old_qmgr, since=offset)
        # The other agents of the old queue manager ended with it.
        wait_until(lambda: not any(process_alive(p) for p in old_agents), scaled(10),
                   what="the old agents to exit")
        wait_until(lambda: len(srv.role_pids("local")) == self.LANES, scaled(10),
                   what="new local agents")
        qid = smtplib_send(srv.port, "x@remote.test", ["carol@example.test"],
                           make_message("after the agent died"))
        srv.wait_delivery("carol", qid)
        self.assertEqual(len(srv.files_for("carol", qid)), 1)
        self.assertEqual(srv.stop(), 0)

    def test_agent_follows_a_killed_queue_manager(self):
        srv = self.start_with_agents()
        old_qmgr, old_agents = srv.role_pids("qmgr")[0], srv.role_pids("local")
        os.kill(old_qmgr, signal.SIGKILL)
        wait_until(lambda: not any(process_alive(p) for p in old_agents), scaled(5),
                   what="the old agents to die with their queue manager")
        qid = smtplib_send(srv.port, "x@remote.test", ["dave@example.test"],
                           make_message("after the queue manager died"))
        srv.wait_delivery("dave", qid, timeout=scaled(15))
        self.assertEqual(srv.stop(), 0)


@unittest.skipUnless(IS_ROOT, "needs root")
class RefusedAccountsTest(PosternTestCase):

    def refused(self, config, *patterns):
        srv = self.start_server(start=False, config=config)
        rc, log = srv.serve_refused()
        self.assertEqual(rc, 1, log)
        for pattern in patterns:
            self.assertRegex(log, pattern)
        self.assertNotIn("listening", log)
        self.assertFalse(os.path.exists(srv.spool_dir), "spool created before refusing")
        return log

    def account_with_root_group(self):
        """A throw-away system account whose primary group is 0, removed
        at cleanup (and any left by an earlier run that was killed)."""
        for line in open("/etc/passwd"):
            name = line.split(":", 1)[0]
            m = re.match(r"postern-gid0-(\d+)$", name)
            if m and not process_alive(int(m.group(1))):
                subprocess.run(["userdel", name], stderr=subprocess.DEVNULL)
        name = "postern-gid0-%d" % os.getpid()
        p = subprocess.run(["useradd", "--system", "--no-create-home", "--home-dir",
                            "/nonexistent", "--shell", "/usr/sbin/nologin", "--gid", "0", name],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=scaled(30))
        self.assertEqual(p.returncode, 0, p.stdout)
        self.addCleanup(subprocess.run, ["userdel", name], timeout=scaled(30))
        self.assertEqual(pwd.getpwnam(name).pw_gid, 0)
        return name

    def test_account_with_root_group_refused(self):
        name = self.account_with_root_group()
        self.refused({"user": name}, r"postern\.conf: user: account \"%s\" has primary "
                     r"group 0 \(root's group\)" % name)
        self.refused({"mail_owner": name}, r"postern\.conf: mail_owner: account \"%s\" has "
                     r"primary group 0" % name)

    def test_empty_user_as_root(self):
        self.refused({"user": ""}, r"postern\.conf: user: empty, but postern is started as "
                     r"root and no role may run as root")

    def test_empty_mail_owner_as_root(self):
        self.refused({"mail_owner": ""}, r"postern\.conf: mail_owner: empty")

    def test_root_account_refused(self):
        log = self.refused({"user": "root", "mail_owner": "root"},
                           r"postern\.conf: user: account \"root\" has uid 0")
        self.assertRegex(log, r"mail_owner: account \"root\" has uid 0")

    def test_same_account_for_both_refused(self):
        self.refused({"mail_owner": "nobody"},
                     r"user and mail_owner: both are uid %d, but they must differ"
                     % NOBODY.pw_uid)

    def test_unknown_account_refused(self):
        self.refused({"mail_owner": "no-such-account-here"},
                     r"mail_owner: account \"no-such-account-here\" does not exist")

    def test_users_file_uid_that_is_not_mail_owner(self):
        srv = self.start_server(start=False)
        with open(srv.users_path, "a") as f:
            f.write("erin@example.test:{PLAIN}x:%d:%d::::\n" % (NOBODY.pw_uid, MAIL.pw_gid))
            f.write("fred@example.test:{PLAIN}x:mail:mail::::\n")
        rc, log = srv.serve_refused()
        self.assertEqual(rc, 1, log)
        self.assertRegex(log, r"%s:6: uid \"%d\" is not the one of mail_owner mail \(uid %d\): "
                         r"postern writes every mailbox as mail_owner"
                         % (re.escape(srv.users_path), NOBODY.pw_uid, MAIL.pw_uid))
        self.assertNotRegex(log, r"users:7:")
        self.assertNotIn("listening", log)


if __name__ == "__main__":
    unittest.main()

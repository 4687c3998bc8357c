"""
test_pop3.py - postern's POP3 server against Python's poplib: mail is
delivered over SMTP with smtplib, then read over STLS (pop3_listen) and
implicit TLS (pop3s_listen): STAT and LIST sizes as sent, UIDL, TOP,
RETR of a message whose lines start with '.', DELE applied only at QUIT,
unique ids unchanged in the next session, the Seen flag for what RETR
sent, a second session on the same mailbox refused with [IN-USE],
logins refused before TLS, the client allow-list (pop3_clients) and the
idle timeout. Logins are checked by the auth process against the
users file (password "secret").
"""
import base64
import os
import poplib
import re
import signal
import socket
import struct
import subprocess
import time
import uuid

import unittest

from harness import (IS_ROOT, POSTERN_BIN, PosternTestCase, client_tls_context, descendants, free_port,
                     make_message, memory_holds, private_key_needles, process_alive, scaled,
                     smtplib_send, wait_until)
from test_privsep import MAIL, NOBODY, no_new_privs, proc_ids

SENDER = "sender@remote.test"
W_RE = re.compile(r",W=(\d+)")
FD_LIMIT = 70


def pop3_settings(**extra):
    settings = {"pop3_listen": "127.0.0.1:%d" % free_port(),
                "pop3s_listen": "127.0.0.1:%d" % free_port()}
    settings.update(extra)
    return settings


def port_of(srv, key):
    return int(srv.settings[key].rsplit(":", 1)[1])


class Pop3Test(PosternTestCase):

    @classmethod
    def setUpClass(cls):
        cls.srv = cls.start_class_server(tls=True, config=pop3_settings())
        cls.pop3_port = port_of(cls.srv, "pop3_listen")
        cls.pop3s_port = port_of(cls.srv, "pop3s_listen")

    # -- helpers --

    def deliver(self, user, subject, body):
        rcpt = "%s@example.test" % user
        qid = smtplib_send(self.srv.port, SENDER, [rcpt],
                           make_message(subject=subject, body=body, to=rcpt))
        name, data = self.srv.wait_delivery(user, qid)
        return name, data

    def stls_session(self, user):
        p = poplib.POP3("127.0.0.1", self.pop3_port, timeout=scaled(15))
        self.addCleanup(self._close, p)
        p.stls(context=client_tls_context())
        p.user("%s@example.test" % user)
        p.pass_("secret")
        return p

    def pop3s_session(self):
        p = poplib.POP3_SSL("127.0.0.1", self.pop3s_port, context=client_tls_context(),
                            timeout=scaled(15))
        self.addCleanup(self._close, p)
        return p

    @staticmethod
    def _close(p):
        try:
            p.close()
        except Exception:
            pass

    @staticmethod
    def wire(stored):
        """A stored message (LF line ends) as POP3 sends it, unstuffed."""
        return stored.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")

    def uidl_map(self, p):
        out = {}
        for line in p.uidl()[1]:
            num, uid = line.decode().split()
            out[int(num)] = uid
        return out

    # -- tests --

    def test_read_delete_and_ids_stay(self):
        user = "alice"
        body = ".starts with a dot\r\n..two dots\r\nplain\r\n.\r\nlast\r\n"
        stored = []
        for i in range(3):
            name, data = self.deliver(user, "m%d %s" % (i, uuid.uuid4().hex), body)
            stored.append((name, data))
        p = self.stls_session(user)
        count, size = p.stat()
        self.assertEqual(count, 3)
        sizes = [int(W_RE.search(name).group(1)) for name, _ in stored]
        self.assertEqual(size, sum(sizes))
        listing = {int(l.split()[0]): int(l.split()[1]) for l in p.list()[1]}
        self.assertEqual(listing, {1: sizes[0], 2: sizes[1], 3: sizes[2]})
        for n, (name, data) in enumerate(stored, 1):
            self.assertEqual(len(self.wire(data)), sizes[n - 1])
        ids = self.uidl_map(p)
        self.assertEqual(ids[1], stored[0][0])  # the base of the file name

        # RETR: poplib undoes the stuffing; the lines are the stored ones.
        resp, lines, octets = p.retr(2)
        self.assertTrue(resp.startswith(b"+OK"), resp)
        self.assertEqual(b"\r\n".join(lines) + b"\r\n", self.wire(stored[1][1]))
        self.assertIn(b".starts with a dot", lines)
        self.assertIn(b"..two dots", lines)
        self.assertIn(b".", lines)

        # TOP 0: the header section and the blank line only.
        _, top, _ = p.top(1, 0)
        self.assertEqual(b"\r\n".join(top) + b"\r\n",
                         self.wire(stored[0][1]).split(b"\r\n\r\n", 1)[0] + b"\r\n\r\n")

        p.dele(1)
        with self.assertRaises(poplib.error_proto):
            p.retr(1)
        self.assertEqual(p.stat()[0], 2)
        # Deletions wait for QUIT: the file is still there.
        self.assertEqual(len(os.listdir(self.srv.maildir(user, "cur"))), 3)
        self.assertEqual(os.listdir(self.srv.maildir(user, "new")), [])
        p.quit()

        cur = sorted(os.listdir(self.srv.maildir(user, "cur")))
        self.assertEqual(len(cur), 2)
        # RETR sent message 2: Seen, as Dovecot's POP3 marks it; 3 was not.
        self.assertIn(stored[1][0] + ":2,S", cur)
        self.assertIn(stored[2][0] + ":2,", cur)

        p2 = self.stls_session(user)
        self.assertEqual(p2.stat()[0], 2)
        again = self.uidl_map(p2)
        self.assertEqual(again, {1: ids[2], 2: ids[3]})
        p2.dele(1)
        p2.dele(2)
        p2.quit()
        self.assertEqual(os.listdir(self.srv.maildir(user, "cur")), [])

    def test_pop3s_and_auth_plain(self):
        user = "bob"
        name, data = self.deliver(user, "over pop3s", "Hello over implicit TLS.\r\n")
        p = self.pop3s_session()
        self.assertTrue(p.getwelcome().startswith(b"+OK"))
        capa = p.capa()
        self.assertIn("SASL", capa)
        self.assertIn("PLAIN", capa["SASL"])
        self.assertNotIn("STLS", capa)
        token = base64.b64encode(b"\0bob@example.test\0secret").decode()
        self.assertTrue(p._shortcmd("AUTH PLAIN " + token).startswith(b"+OK"))
        self.assertEqual(p.stat()[0], 1)
        _, lines, _ = p.retr(1)
        self.assertEqual(b"\r\n".join(lines) + b"\r\n", self.wire(data))
        p.quit()

    def test_wrong_password_and_second_session(self):
        user = "carol"
        self.deliver(user, "locked", "x\r\n")
        p = poplib.POP3("127.0.0.1", self.pop3_port, timeout=scaled(15))
        self.addCleanup(self._close, p)
        p.stls(context=client_tls_context())
        p.user("carol@example.test")
        with self.assertRaisesRegex(poplib.error_proto, r"\[AUTH\]"):
            p.pass_("wrong")
        first = self.stls_session(user)
        self.assertEqual(first.stat()[0], 1)
        second = poplib.POP3("127.0.0.1", self.pop3_port, timeout=scaled(15))
        self.addCleanup(self._close, second)
        second.stls(context=client_tls_context())
        second.user("carol@example.test")
        with self.assertRaisesRegex(poplib.error_proto, r"\[IN-USE\]"):
            second.pass_("secret")
        first.quit()
        second.user("carol@example.test")
        second.pass_("secret")
        self.assertEqual(second.stat()[0], 1)
        second.quit()

    def test_cleartext_login_refused(self):
        p = poplib.POP3("127.0.0.1", self.pop3_port, timeout=scaled(15))
        self.addCleanup(self._close, p)
        capa = p.capa()
        self.assertIn("STLS", capa)
        self.assertNotIn("USER", capa)
        self.assertNotIn("SASL", capa)
        with self.assertRaisesRegex(poplib.error_proto, r"\[AUTH\].*STLS"):
            p.user("alice@example.test")
        with self.assertRaisesRegex(poplib.error_proto, r"\[AUTH\]"):
            p._shortcmd("AUTH PLAIN " + base64.b64encode(b"\0alice@example.test\0secret")
                        .decode())
        p.quit()


@unittest.skipUnless(IS_ROOT, "needs root: the roles switch accounts")
class Pop3PrivilegeTest(PosternTestCase):
    """The pop3 worker runs as user (nobody here), the mailbox agent as
    mail_owner (mail); neither keeps a group nor can gain privileges, and
    neither holds the TLS private key (the key holder signs the
    handshakes), not even after a TLS session."""

    def test_accounts_and_key(self):
        srv = self.start_server(tls=True, config=pop3_settings())
        srv.wait_log(r"mailbox agent ready")
        worker = wait_until(lambda: srv.role_pids("pop3"), scaled(10), what="the pop3 worker")
        agents = [p for p in descendants(worker[0])]
        self.assertEqual(len(agents), 1, agents)
        self.assertEqual(srv.role_pids("maildrop"), agents)
        for pid, account in ((worker[0], NOBODY), (agents[0], MAIL)):
            uids, gids, groups = proc_ids(pid)
            self.assertEqual(set(uids), {account.pw_uid}, pid)
            self.assertEqual(set(gids), {account.pw_gid}, pid)
            self.assertEqual(groups, [], pid)
            self.assertEqual(no_new_privs(pid), 1, pid)
        p = poplib.POP3_SSL("127.0.0.1", port_of(srv, "pop3s_listen"),
                            context=client_tls_context(), timeout=scaled(15))
        self.assertIn("SASL", p.capa())  # a whole handshake was made
        p.quit()
        needles = private_key_needles(srv.settings["tls_key"])
        self.assertEqual(memory_holds(agents[0], needles), set(),
                         "the mailbox agent holds the TLS key")
        self.assertEqual(memory_holds(worker[0], needles), set(),
                         "the pop3 worker holds the TLS key")
        self.assertTrue(memory_holds(srv.role_pids("keyholder")[0], needles),
                        "the probe does not find the key in the key holder")


def ticket_key_of(pid):
    """The key of the login tickets in the memory of the supervisor pid,
    read at the address of its symbol `ticket_key` (src/server/master.c):
    the symbol's value, plus where the binary is mapped when it is a
    position-independent executable."""
    with open(POSTERN_BIN, "rb") as f:
        pie = struct.unpack("<H", f.read(18)[16:18])[0] == 3  # ET_DYN
    out = subprocess.run(["nm", POSTERN_BIN], capture_output=True, text=True,
                         check=True).stdout
    value = next(int(f[0], 16) for f in (line.split() for line in out.splitlines())
                 if len(f) == 3 and f[2] == "ticket_key" and f[1] in "bBdD")
    base = 0
    if pie:
        exe = os.path.realpath("/proc/%d/exe" % pid)
        with open("/proc/%d/maps" % pid) as maps:
            base = next(int(f[0].split("-")[0], 16) for f in (line.split() for line in maps)
                        if len(f) >= 6 and f[5] == exe and int(f[2], 16) == 0)
    with open("/proc/%d/mem" % pid, "rb", 0) as mem:
        mem.seek(base + value)
        return mem.read(32)


class Pop3TicketKeyTest(PosternTestCase):
    """The key of the login tickets the mailbox agent asks for is held by
    the supervisor, the auth process and the mailbox agent only: the pop3
    worker, which parses the network, wiped its copy (else it could make
    tickets and open any mailbox), and so did every other role. It stays
    the same over a reload: logins work on in the new generation."""

    def login(self, srv):
        p = poplib.POP3("127.0.0.1", port_of(srv, "pop3_listen"), timeout=scaled(15))
        try:
            p.user("alice@example.test")
            p.pass_("secret")
            self.assertEqual(p.stat()[0], 1)
            p.quit()
        finally:
            p.close()

    def check_holders(self, srv, generation):
        key = ticket_key_of(srv.pid)
        self.assertNotEqual(key, bytes(32), "%s: the supervisor has no key" % generation)
        worker = wait_until(lambda: srv.role_pids("pop3"), scaled(10), what="the pop3 worker")
        self.assertEqual(len(worker), 1, worker)
        agents = descendants(worker[0])
        holders = set(srv.role_pids("auth")) | set(agents)
        self.assertEqual(len(holders), 2, "%s: %r" % (generation, holders))
        for pid in holders:
            self.assertEqual(memory_holds(pid, [key]), {key},
                             "%s: the probe does not find the key in pid %d" % (generation, pid))
        others = [pid for pid in srv.children() if pid not in holders]
        self.assertIn(worker[0], others)
        for pid in others:
            self.assertEqual(memory_holds(pid, [key]), set(),
                             "%s: pid %d holds the key of the login tickets" % (generation, pid))

    def test_only_auth_and_agent_hold_the_key(self):
        srv = self.start_server(tls=True, config=pop3_settings(
            pop3_cleartext_networks="127.0.0.0/8"))
        srv.wait_log(r"mailbox agent ready")
        qid = smtplib_send(srv.port, SENDER, ["alice@example.test"],
                           make_message(subject="k", body="key", to="alice@example.test"))
        srv.wait_delivery("alice", qid)
        self.login(srv)
        self.check_holders(srv, "first")
        offset = srv.log_size()
        srv.reload(wait_old=True)
        srv.wait_log(r"mailbox agent ready", since=offset)
        self.login(srv)
        self.check_holders(srv, "after a reload")


class Pop3RestartTest(PosternTestCase):
    """A pop3 worker killed in the middle of a session takes its mailbox
    agent with it (the lock goes with the agent: nothing was deleted); the
    supervisor starts a new pair, and the mailbox opens again at once."""

    def test_killed_worker_is_replaced(self):
        srv = self.start_server(tls=True, config=pop3_settings(
            pop3_cleartext_networks="127.0.0.0/8"))
        port = port_of(srv, "pop3_listen")
        qid = smtplib_send(srv.port, SENDER, ["dave@example.test"],
                           make_message(subject="kept", to="dave@example.test"))
        srv.wait_delivery("dave", qid)
        p = poplib.POP3("127.0.0.1", port, timeout=scaled(15))
        self.addCleanup(Pop3Test._close, p)
        p.user("dave@example.test")
        p.pass_("secret")
        p.dele(1)
        worker = srv.role_pids("pop3")[0]
        agent = descendants(worker)[0]
        os.kill(worker, signal.SIGKILL)
        wait_until(lambda: not process_alive(agent), scaled(10), what="the agent to follow")
        wait_until(lambda: [w for w in srv.role_pids("pop3") if w != worker], scaled(15),
                   what="a new pop3 worker")
        q = wait_until(lambda: self._login(port), scaled(15), what="a login after the restart")
        self.addCleanup(Pop3Test._close, q)
        self.assertEqual(q.stat()[0], 1)  # the DELE without QUIT removed nothing
        q.quit()

    @staticmethod
    def _login(port):
        try:
            q = poplib.POP3("127.0.0.1", port, timeout=scaled(15))
        except (OSError, poplib.error_proto):
            return None
        try:
            q.user("dave@example.test")
            q.pass_("secret")
            return q
        except (OSError, poplib.error_proto):
            Pop3Test._close(q)
            return None


class Pop3GoneDuringOpenTest(PosternTestCase):
    """A client that vanishes (a reset) while its mailbox is being opened
    leaves no lock behind: the agent, stopped here so the reset lands
    right then, is told to close the maildrop it opens for nobody, and
    the next login to that mailbox works (it used to get [IN-USE] until
    the pop3 worker was restarted)."""

    def test_reset_while_opening(self):
        srv = self.start_server(tls=True, config=pop3_settings(
            pop3_cleartext_networks="127.0.0.0/8"))
        port = port_of(srv, "pop3_listen")
        qid = smtplib_send(srv.port, SENDER, ["dave@example.test"],
                           make_message(subject="kept", to="dave@example.test"))
        srv.wait_delivery("dave", qid)
        worker = srv.role_pids("pop3")[0]
        agent = descendants(worker)[0]
        offset = srv.log_size()
        os.kill(agent, signal.SIGSTOP)
        try:
            s = socket.create_connection(("127.0.0.1", port), timeout=scaled(15))
            f = s.makefile("rb")
            self.assertTrue(f.readline().startswith(b"+OK"))
            s.sendall(b"USER dave@example.test\r\nPASS secret\r\n")
            self.assertTrue(f.readline().startswith(b"+OK"))  # USER
            srv.wait_log(r"login: user=dave@example\.test .*service=pop3 .*status=ok",
                         since=offset)
            time.sleep(scaled(0.5))  # the verdict reaches the worker: OPEN is sent
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            f.close()
            s.close()  # a reset, not an orderly end
            srv.wait_log(r"disconnect client=127\.0\.0\.1 ", since=offset)
        finally:
            os.kill(agent, signal.SIGCONT)
        p = poplib.POP3("127.0.0.1", port, timeout=scaled(15))
        self.addCleanup(Pop3Test._close, p)
        p.user("dave@example.test")
        p.pass_("secret")
        self.assertEqual(p.stat()[0], 1)
        p.quit()


class Pop3ProtocolEdgesTest(PosternTestCase):
    """The edges of RFC 1939, 2595 and 5034 over a raw socket: commands
    pipelined after STLS are dropped (the CVE-2011-0411 class), STLS
    twice, message numbers 0, too large, too long and deleted, TOP with a
    huge line count, PASS before USER, AUTH PLAIN for another user, and
    LIST sizes equal to the bytes RETR sends for a file other software
    wrote (CRLF and LF mixed, a dot line, no newline at the end)."""

    @classmethod
    def setUpClass(cls):
        cls.srv = cls.start_class_server(tls=True, config=pop3_settings())
        cls.port = port_of(cls.srv, "pop3_listen")

    def connect(self):
        s = socket.create_connection(("127.0.0.1", self.port), timeout=scaled(15))
        self.addCleanup(s.close)
        f = s.makefile("rb")
        self.assertTrue(f.readline().startswith(b"+OK"))
        return s, f

    def cmd(self, s, f, line):
        s.sendall(line + b"\r\n")
        return f.readline()

    @staticmethod
    def multiline(f):
        out = []
        while True:
            line = f.readline()
            if line == b".\r\n":
                return b"".join(out)
            out.append(line)

    def tls(self, s):
        t = client_tls_context().wrap_socket(s)
        self.addCleanup(t.close)
        return t, t.makefile("rb")

    def test_commands_pipelined_after_stls_are_dropped(self):
        s, f = self.connect()
        # In clear text, after STLS: a USER (which would be kept) and a
        # NOOP (which would be answered first over TLS).
        s.sendall(b"STLS\r\nUSER alice@example.test\r\nNOOP\r\n")
        self.assertTrue(f.readline().startswith(b"+OK"))
        t, tf = self.tls(s)
        # The first reply over TLS is the CAPA's, and PASS has no USER.
        self.assertEqual(self.cmd(t, tf, b"CAPA"), b"+OK capabilities follow\r\n")
        capa = self.multiline(tf)
        self.assertNotIn(b"STLS", capa)
        self.assertIn(b"USER", capa)
        self.assertTrue(self.cmd(t, tf, b"PASS secret").startswith(b"-ERR"))
        self.assertTrue(self.cmd(t, tf, b"STLS").startswith(b"-ERR"))  # TLS is on
        self.assertTrue(self.cmd(t, tf, b"QUIT").startswith(b"+OK"))

    def test_arguments_and_numbers(self):
        user = "dave@example.test"
        qid = smtplib_send(self.srv.port, SENDER, [user], make_message(to=user))
        self.srv.wait_delivery("dave", qid)
        cur = self.srv.maildir("dave", "cur")
        # Written by other software: LF and CRLF, a dot line, no final newline.
        odd = b"Subject: odd\r\n\r\nline one\n.\r\n..x\nlast line"
        path = os.path.join(cur, "1.odd.host:2,")
        with open(path, "wb") as out:
            out.write(odd)
        if IS_ROOT:
            os.chown(path, MAIL.pw_uid, MAIL.pw_gid)
        s, f = self.connect()
        t, tf = self.tls(s) if self.cmd(s, f, b"STLS").startswith(b"+OK") else (None, None)
        # AUTH PLAIN as another user (authzid) is refused; as oneself it is not.
        other = base64.b64encode(b"bob@example.test\0dave@example.test\0secret")
        self.assertTrue(self.cmd(t, tf, b"AUTH PLAIN " + other).startswith(b"-ERR"))
        self.assertTrue(self.cmd(t, tf, b"PASS secret").startswith(b"-ERR"))  # no USER
        same = base64.b64encode(b"dave@example.test\0dave@example.test\0secret")
        self.assertTrue(self.cmd(t, tf, b"AUTH PLAIN " + same).startswith(b"+OK 2 "))
        for bad in (b"RETR 0", b"RETR 3", b"RETR -1", b"RETR 1x", b"LIST 99999999999",
                    b"DELE", b"TOP 1", b"RETR 1 2", b"USER dave@example.test"):
            self.assertTrue(self.cmd(t, tf, bad).startswith(b"-ERR"), bad)
        listing = {}
        self.assertTrue(self.cmd(t, tf, b"LIST").startswith(b"+OK"))
        for line in self.multiline(tf).splitlines():
            num, size = line.split()
            listing[int(num)] = int(size)
        uids = self.cmd(t, tf, b"UIDL 1"), self.cmd(t, tf, b"UIDL 2")
        self.assertNotEqual(uids[0].split()[2], uids[1].split()[2])
        sent = {}
        for n in (1, 2):
            self.assertTrue(self.cmd(t, tf, b"RETR %d" % n).startswith(b"+OK"))
            sent[n] = self.multiline(tf)
            self.assertEqual(len(sent[n].replace(b"\r\n..", b"\r\n.")), listing[n])
        # Message 1 is the oldest: the file written here.
        self.assertEqual(sent[1], b"Subject: odd\r\n\r\nline one\r\n..\r\n...x\r\n"
                                  b"last line\r\n")
        self.assertTrue(self.cmd(t, tf, b"TOP 1 9999999999").startswith(b"+OK"))
        self.assertEqual(self.multiline(tf), sent[1])
        self.assertTrue(self.cmd(t, tf, b"DELE 1").startswith(b"+OK"))
        for bad in (b"RETR 1", b"TOP 1 0", b"DELE 1", b"LIST 1", b"UIDL 1"):
            self.assertTrue(self.cmd(t, tf, bad).startswith(b"-ERR"), bad)
        self.assertEqual(self.cmd(t, tf, b"STAT"), b"+OK 1 %d\r\n" % listing[2])
        self.assertTrue(self.cmd(t, tf, b"RSET").startswith(b"+OK"))
        self.assertTrue(self.cmd(t, tf, b"QUIT").startswith(b"+OK"))
        self.assertEqual(len(os.listdir(cur)), 2)


class Pop3ReloadTest(PosternTestCase):
    """SIGHUP: a session that is open goes on with the old pop3 worker
    (and its agent, which still holds the mailbox), a new session is
    served by the new generation; the old worker leaves after the QUIT."""

    def test_session_survives_a_reload(self):
        srv = self.start_server(tls=True, config=pop3_settings(
            pop3_cleartext_networks="127.0.0.0/8"))
        port = port_of(srv, "pop3_listen")
        qid = smtplib_send(srv.port, SENDER, ["dave@example.test"],
                           make_message(subject="before the reload", to="dave@example.test"))
        srv.wait_delivery("dave", qid)
        p = poplib.POP3("127.0.0.1", port, timeout=scaled(15))
        self.addCleanup(Pop3Test._close, p)
        p.user("dave@example.test")
        p.pass_("secret")
        old_worker = srv.role_pids("pop3")
        self.assertIn("starting generation", srv.reload().group(0))
        wait_until(lambda: len(srv.role_pids("pop3")) == 2, scaled(10),
                   what="the new pop3 worker")
        self.assertEqual(p.stat()[0], 1)
        _, lines, _ = p.retr(1)
        self.assertIn(b"Subject: before the reload", lines)
        other = poplib.POP3("127.0.0.1", port, timeout=scaled(15))
        self.addCleanup(Pop3Test._close, other)
        other.user("carol@example.test")
        other.pass_("secret")
        self.assertEqual(other.stat()[0], 0)
        other.quit()
        p.dele(1)
        p.quit()
        wait_until(lambda: not any(pid in srv.children() for pid in old_worker), scaled(10),
                   what="the old pop3 worker to exit")
        self.assertEqual(os.listdir(srv.maildir("dave", "cur")), [])


class Pop3QuotaTest(PosternTestCase):
    """POP3 deletions give the quota back: after QUIT, maildirsize (Maildir++,
    as Dovecot keeps it) counts the messages removed, and a message that
    did not fit before is accepted."""

    def test_deletions_update_maildirsize(self):
        from test_quota import read_maildirsize, write_users
        srv = self.start_server(tls=True, start=False, config=pop3_settings(
            pop3_cleartext_networks="127.0.0.0/8", quota_reject_margin="0"))
        write_users(srv, {"alice": "userdb_quota_rule=*:storage=8k", "admin": ""})
        srv.start()
        big = "x" * 3000 + "\r\n"
        names = []
        for i in range(2):
            qid = smtplib_send(srv.port, SENDER, ["alice@example.test"],
                               make_message(subject="fill %d" % i, body=big,
                                            to="alice@example.test"))
            names.append(srv.wait_delivery("alice", qid)[0])
        _, used, count, _ = read_maildirsize(srv, "alice")
        self.assertEqual(count, 2)
        # A third one (SIZE= announced) does not fit: 552 at RCPT.
        size = ["SIZE=%d" % len(big)]
        with self.assertRaisesRegex(AssertionError, "552"):
            smtplib_send(srv.port, SENDER, ["alice@example.test"],
                         make_message(subject="too much", body=big, to="alice@example.test"),
                         mail_options=size)
        p = poplib.POP3("127.0.0.1", port_of(srv, "pop3_listen"), timeout=scaled(15))
        self.addCleanup(Pop3Test._close, p)
        p.user("alice@example.test")
        p.pass_("secret")
        p.dele(1)
        p.quit()
        _, after, count_after, _ = read_maildirsize(srv, "alice")
        first_size = int(re.search(r",S=(\d+)", names[0]).group(1))
        self.assertEqual((after, count_after), (used - first_size, 1))
        qid = smtplib_send(srv.port, SENDER, ["alice@example.test"],
                           make_message(subject="fits again", body=big, to="alice@example.test"),
                           mail_options=size)
        srv.wait_delivery("alice", qid)


class Pop3ThrottleTest(PosternTestCase):
    """Failed POP3 logins count in the auth process like SMTP AUTH ones:
    past auth_client_ban_failures the client is refused for a while, even
    with the right password, and told to come back later."""

    def test_banned_after_failures(self):
        srv = self.start_server(tls=True, config=pop3_settings(
            pop3_cleartext_networks="127.0.0.0/8", auth_failure_delay="0",
            auth_client_ban_failures="2", auth_ban_time="10m"))
        port = port_of(srv, "pop3_listen")
        for _ in range(2):
            p = poplib.POP3("127.0.0.1", port, timeout=scaled(15))
            self.addCleanup(Pop3Test._close, p)
            p.user("alice@example.test")
            with self.assertRaisesRegex(poplib.error_proto, r"\[AUTH\]"):
                p.pass_("wrong")
        p = poplib.POP3("127.0.0.1", port, timeout=scaled(15))
        self.addCleanup(Pop3Test._close, p)
        p.user("alice@example.test")
        with self.assertRaisesRegex(poplib.error_proto, r"\[SYS/TEMP\]"):
            p.pass_("secret")
        srv.wait_log(r"client=127\.0\.0\.1 user=alice@example\.test login throttled")
        self.assertNotIn("secret", srv.log())  # passwords are never logged


class Pop3ClientsTest(PosternTestCase):
    """pop3_clients: POP3 only from the listed networks."""

    def test_client_outside_the_list_is_refused(self):
        srv = self.start_server(tls=True, config=pop3_settings(pop3_clients="192.0.2.0/24"))
        with self.assertRaisesRegex(poplib.error_proto, r"SYS/PERM"):
            poplib.POP3("127.0.0.1", port_of(srv, "pop3_listen"), timeout=scaled(15))
        # pop3s: no TLS is spent on it, the connection just closes.
        with socket.create_connection(("127.0.0.1", port_of(srv, "pop3s_listen")),
                                      timeout=scaled(15)) as s:
            self.assertEqual(s.recv(100), b"")
        srv.wait_log(r"client=127\.0\.0\.1 reject: not in pop3_clients")
        # SMTP is not affected.
        qid = smtplib_send(srv.port, SENDER, ["dave@example.test"], make_message(to="dave@example.test"))
        srv.wait_delivery("dave", qid)


class Pop3LimitTest(PosternTestCase):
    """pop3_connection_limit: the session over the limit is told and closed."""

    def test_connection_limit(self):
        srv = self.start_server(tls=True, config=pop3_settings(pop3_connection_limit="2"))
        port = port_of(srv, "pop3_listen")
        first = poplib.POP3("127.0.0.1", port, timeout=scaled(15))
        self.addCleanup(Pop3Test._close, first)
        second = poplib.POP3("127.0.0.1", port, timeout=scaled(15))
        self.addCleanup(Pop3Test._close, second)
        with self.assertRaisesRegex(poplib.error_proto, r"\[SYS/TEMP\]"):
            poplib.POP3("127.0.0.1", port, timeout=scaled(15))
        srv.wait_log(r"reject: pop3_connection_limit \(2\) reached")
        first.quit()
        wait_until(lambda: self._greeted(port), scaled(10), what="room for a new session")
        second.quit()

    @staticmethod
    def _greeted(port):
        try:
            p = poplib.POP3("127.0.0.1", port, timeout=scaled(15))
        except poplib.error_proto:
            return False
        p.quit()
        return True


class Pop3RefusalsHoldNoDescriptorsTest(PosternTestCase):
    """Connections over pop3_connection_limit are refused without taking
    the descriptors the sessions need: a burst of them, accepted in one
    go, used to hold one descriptor each until the next turns of the
    loop, and a message the agent opened then could not be received
    (its descriptor cut off), which ended the worker and every session
    on it. Here the worker's descriptor limit is made tight and the burst
    and the agent's answer to a RETR arrive together."""

    def test_burst_of_refusals_during_a_retr(self):
        srv = self.start_server(start=False, tls=True, config=pop3_settings(
            pop3_cleartext_networks="127.0.0.0/8", pop3_connection_limit="1",
            worker_connections="2"))
        # Just what the pop3 worker asks for (1 * 6 + 64): a burst of
        # refusals exhausts it.
        srv.command_prefix = ["prlimit", "--nofile=%d:%d" % (FD_LIMIT, FD_LIMIT)]
        srv.start()
        port = port_of(srv, "pop3_listen")
        qid = smtplib_send(srv.port, SENDER, ["dave@example.test"],
                           make_message(subject="wanted", to="dave@example.test"))
        srv.wait_delivery("dave", qid)
        p = poplib.POP3("127.0.0.1", port, timeout=scaled(15))
        self.addCleanup(Pop3Test._close, p)
        p.user("dave@example.test")
        p.pass_("secret")
        worker = srv.role_pids("pop3")[0]
        agent = descendants(worker)[0]
        burst = []
        os.kill(agent, signal.SIGSTOP)
        try:
            p.sock.sendall(b"RETR 1\r\n")
            time.sleep(scaled(0.5))  # the worker asks the (stopped) agent
            os.kill(worker, signal.SIGSTOP)
            try:
                for _ in range(FD_LIMIT + 10):  # waiting in the listener's backlog
                    burst.append(socket.create_connection(("127.0.0.1", port),
                                                          timeout=scaled(15)))
                os.kill(agent, signal.SIGCONT)
                time.sleep(scaled(0.5))  # its answer waits in the socket too
            finally:
                os.kill(worker, signal.SIGCONT)
        finally:
            os.kill(agent, signal.SIGCONT)
            for c in burst:
                self.addCleanup(c.close)
        self.assertIn(b"Subject: wanted", p._getlongresp()[1])  # RETR's answer, whole
        p.quit()
        self.assertIn(worker, srv.role_pids("pop3"))
        self.assertNotIn("mailbox agent broke the protocol", srv.log())
        for c in burst:
            c.settimeout(scaled(15))
            self.assertTrue(c.recv(200).startswith(b"-ERR [SYS/TEMP]"))


class Pop3TimeoutTest(PosternTestCase):
    """An idle session is closed without a reply (RFC 1939 autologout)."""

    def test_idle_session_is_closed(self):
        srv = self.start_server(tls=True, config=pop3_settings(pop3_idle_timeout="2s"))
        with socket.create_connection(("127.0.0.1", port_of(srv, "pop3_listen")),
                                      timeout=scaled(15)) as s:
            f = s.makefile("rb")
            self.assertTrue(f.readline().startswith(b"+OK"))
            started = time.monotonic()
            s.sendall(b"NOOP\r\n")
            self.assertTrue(f.readline().startswith(b"-ERR"))  # not logged in
            self.assertEqual(f.read(), b"")  # closed, nothing said
            waited = time.monotonic() - started
        self.assertGreaterEqual(waited, 1.5)
        self.assertLess(waited, scaled(10))
        srv.wait_log(r"client=127\.0\.0\.1 timeout after idle time")


if __name__ == "__main__":
    unittest.main()

"""
test_concurrency.py - open sessions counted across all smtp workers by
the anvil (issue 9): client_connection_limit per client network and
connection_limit in total hold whichever worker a connection lands on
(the tests steer connections to each of the two workers by stopping the
other), 421 4.7.0 beyond; a worker killed while it holds sessions leaves
no count behind; an anvil killed and started again learns the open
sessions back from the workers; the client network is the /24 when
client_ipv4_prefix says so; a flood of a few hundred connections on
loopback: the server keeps answering, the limit holds, no descriptor
leaks.
"""
import os
import signal
import smtplib
import socket
import time
import unittest

from harness import PosternTestCase, SmtpConn, make_message, scaled, wait_until
from limits_helpers import (LIMITS_BASE, connect_from, only_worker, open_fds, smtp_workers,
                            worker_of)


def conf(**kw):
    c = dict(LIMITS_BASE)
    c.update({k: str(v) for k, v in kw.items()})
    return c


class ConnectionLimitTest(PosternTestCase):

    def open_on(self, srv, pid, n):
        """n sessions accepted by worker pid (asserted), greeted."""
        conns = []
        offset = srv.log_size()
        with only_worker(srv, pid):
            for _ in range(n):
                c = SmtpConn(srv.port, greet=False)
                self.addCleanup(c.close)
                conns.append(c)
            # The kernel completes a connection before any worker accepts
            # it: the others stay stopped until pid has logged each one,
            # or a resumed worker could take it first.
            for c in conns:
                self.assertEqual(worker_of(srv, c, offset), pid)
        return conns

    def assert_refused(self, c, status="4.7.0"):
        r = c.reply()
        self.assertEqual((r.code, r.status), (421, status), r)
        self.assertTrue(c.closed_by_server(scaled(5)))
        return r

    def test_client_limit_counts_both_workers(self):
        srv = self.start_server(config=conf(client_connection_limit=3))
        a, b = smtp_workers(srv)
        on_a = self.open_on(srv, a, 2)
        for c in on_a:
            self.assertEqual(c.reply().code, 220)
        on_b = self.open_on(srv, b, 2)
        self.assertEqual(on_b[0].reply().code, 220)  # the third of the client
        r = self.assert_refused(on_b[1])          # the fourth, on the other worker
        self.assertIn("too many connections from your network", r.text)
        srv.wait_log(r"smtp\[%d\]: info: limits: network=127\.0\.0\.1/32 sessions=4 \(all: 4\) "
                     r"refused: client_connection_limit" % b)
        # one of worker a's sessions ends: worker b has room again
        on_a[0].cmd("QUIT")
        on_a[0].close()
        time.sleep(0.3)
        with only_worker(srv, b):
            c = SmtpConn(srv.port)
            self.addCleanup(c.close)
        self.assertEqual(c.greeting.code, 220)

    def test_total_limit_counts_both_workers(self):
        srv = self.start_server(config=conf(client_connection_limit=0, connection_limit=2))
        a, b = smtp_workers(srv)
        first = self.open_on(srv, a, 1)[0]
        self.assertEqual(first.reply().code, 220)
        other = connect_from(srv, "127.0.0.2", greet=False)  # another client
        self.addCleanup(other.close)
        self.assertEqual(other.reply().code, 220)
        third = self.open_on(srv, b, 1)[0]
        r = self.assert_refused(third)
        self.assertIn("too many connections, try again later", r.text)

    def test_the_client_network_is_the_prefix(self):
        srv = self.start_server(config=conf(client_connection_limit=2, client_ipv4_prefix=24))
        held = [connect_from(srv, "127.0.0.1"), connect_from(srv, "127.0.0.2")]
        for c in held:
            self.addCleanup(c.close)
            self.assertEqual(c.greeting.code, 220)
        third = connect_from(srv, "127.0.0.3", greet=False)  # same /24
        self.addCleanup(third.close)
        self.assert_refused(third)
        elsewhere = connect_from(srv, "127.0.1.1")             # another /24
        self.addCleanup(elsewhere.close)
        self.assertEqual(elsewhere.greeting.code, 220)

    def test_ipv6_clients_count_by_their_64(self):
        srv = self.start_server(ipv6=True, config=conf(client_connection_limit=1))
        first = SmtpConn(srv.port6, host="::1", family=socket.AF_INET6)
        self.addCleanup(first.close)
        self.assertEqual(first.greeting.code, 220)
        second = SmtpConn(srv.port6, host="::1", family=socket.AF_INET6, greet=False)
        self.addCleanup(second.close)
        self.assert_refused(second)
        srv.wait_log(r"limits: network=::/64 sessions=2 \(all: 2\) refused: "
                     r"client_connection_limit")
        # IPv4 is another network
        with SmtpConn(srv.port) as v4:
            self.assertEqual(v4.greeting.code, 220)

    def test_sessions_of_a_retiring_generation_still_count(self):
        srv = self.start_server(config=conf(client_connection_limit=2))
        held = [SmtpConn(srv.port) for _ in range(2)]
        for c in held:
            self.addCleanup(c.close)
            self.assertEqual(c.greeting.code, 220)
        old = set(srv.role_pids("smtp"))
        srv.reload()
        wait_until(lambda: len(set(srv.role_pids("smtp")) - old) == 2, scaled(10),
                   what="the new generation's workers")
        time.sleep(0.3)
        offset = srv.log_size()
        late = SmtpConn(srv.port, greet=False)  # served by the new generation
        self.addCleanup(late.close)
        self.assert_refused(late)
        self.assertNotIn(worker_of(srv, late, offset), old)
        for c in held:  # the old sessions go on, and their end frees room
            c.ehlo()
            c.cmd("QUIT")
            c.close()
        time.sleep(0.3)
        with SmtpConn(srv.port) as c:
            self.assertEqual(c.greeting.code, 220)

    def test_ignored_networks_are_never_limited(self):
        srv = self.start_server(config=conf(client_connection_limit=1,
                                            limits_ignore_networks="127.0.0.0/8"))
        conns = [SmtpConn(srv.port) for _ in range(4)]
        for c in conns:
            self.addCleanup(c.close)
            self.assertEqual(c.greeting.code, 220)

    def test_a_killed_worker_leaves_no_count(self):
        srv = self.start_server(config=conf(client_connection_limit=2))
        a, b = smtp_workers(srv)
        for c in self.open_on(srv, a, 2):
            self.assertEqual(c.reply().code, 220)
        # worker a holds both sessions of the client and dies
        os.kill(a, signal.SIGKILL)
        srv.wait_log(r"smtp worker pid %d killed by signal 9" % a)
        wait_until(lambda: len([p for p in srv.role_pids("smtp") if p != a]) == 2,
                   scaled(10), what="a new smtp worker")
        srv.wait_log(r"anvil\[\d+\]: info: a worker disconnected: 2 open sessions forgotten")
        conns = [SmtpConn(srv.port) for _ in range(2)]
        for c in conns:
            self.addCleanup(c.close)
            self.assertEqual(c.greeting.code, 220, "a count of the dead worker was left")

    def test_an_anvil_started_again_learns_the_open_sessions(self):
        srv = self.start_server(config=conf(client_connection_limit=2))
        smtp_workers(srv)
        held = [SmtpConn(srv.port) for _ in range(2)]
        for c in held:
            self.addCleanup(c.close)
            self.assertEqual(c.greeting.code, 220)
        anvil = srv.role_pids("anvil")[0]
        offset = srv.log_size()
        os.kill(anvil, signal.SIGKILL)
        srv.wait_log(r"anvil pid %d killed by signal 9" % anvil, since=offset)
        srv.wait_log(r"anvil ready", since=offset)
        # the workers tell the new anvil about their two sessions
        wait_until(lambda: srv.log_since(offset).count("told it about 1 open session") +
                   2 * srv.log_since(offset).count("told it about 2 open sessions") >= 2,
                   scaled(10), what="the sessions told again")
        third = SmtpConn(srv.port, greet=False)
        self.addCleanup(third.close)
        self.assert_refused(third)


class ConnectionFloodTest(PosternTestCase):

    def test_a_flood_of_connections(self):
        limit, flood = 40, 300
        srv = self.start_server(config=conf(client_connection_limit=limit))
        workers = smtp_workers(srv)
        fds_before = {p: open_fds(p) for p in workers}
        socks = []
        try:
            for _ in range(flood):
                s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                s.settimeout(scaled(20))
                s.connect(("127.0.0.1", srv.port))
                socks.append(s)
            greeted = refused = 0
            for s in socks:
                line = b""
                while not line.endswith(b"\n"):
                    chunk = s.recv(512)
                    if not chunk:
                        break
                    line += chunk
                if line.startswith(b"220 "):
                    greeted += 1
                elif line.startswith(b"421 4.7.0"):
                    refused += 1
            self.assertEqual(greeted, limit)
            self.assertEqual(refused, flood - limit)
            # the server keeps answering another client, and delivers
            with smtplib.SMTP("127.0.0.1", srv.port, local_hostname="other.test",
                              timeout=scaled(15), source_address=("127.0.0.2", 0)) as s:
                s.sendmail("during@remote.test", ["alice@example.test"],
                           make_message(subject="during the flood"))
            srv.wait_log(r"from=<during@remote\.test> size=\d+ nrcpt=1 ")
        finally:
            for s in socks:
                s.close()
        # every count went with its connection: a new burst of `limit` fits
        def settled():
            return all(open_fds(p) <= fds_before[p] + 2 for p in workers)
        wait_until(settled, scaled(15), what="the workers' descriptors back to %r" % fds_before)
        again = [SmtpConn(srv.port) for _ in range(limit)]
        for c in again:
            self.addCleanup(c.close)
            self.assertEqual(c.greeting.code, 220)


if __name__ == "__main__":
    unittest.main()

"""
test_metrics.py - the metrics role (metrics_listen): Prometheus text at
GET /metrics only, scraped with real HTTP clients (Python's urllib and,
when installed, curl), counters that move with what the server does
(connections, transactions, refusals by stage and check, deliveries,
scan verdicts and times, DNS query times), queue sizes, processes and
memory per role, an unprivileged process, and refusals of anything but
GET /metrics, also of oversized requests, after which it still serves.
"""
import base64
import os
import poplib
import re
import shutil
import smtplib
import socket
import subprocess
import time
import unittest
import urllib.error
import urllib.request

from harness import (IS_ROOT, PosternServer, PosternTestCase, SmtpConn, client_tls_context,
                     free_port, make_message, scaled, smtplib_send, wait_until)
from test_content_rules import needs_pipeline, pipeline_available as pipeline_in_build

SAMPLE_RE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? (\S+)$')
LABEL_RE = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')

RULES = r"""# written by tests/integration/test_metrics.py
rule subject-reject
    header Subject /\[reject-me\]/
    reject "Refused by the metrics test"
"""


def parse_exposition(text):
    """The samples of a Prometheus text exposition: {(name, frozenset of
    label pairs): value}; every line is a comment (HELP/TYPE) or a sample,
    and every sampled family has its HELP and TYPE before it."""
    samples, typed, helped = {}, {}, set()
    for line in text.splitlines():
        if line.startswith("# HELP "):
            helped.add(line.split()[2])
            continue
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split()
            typed[name] = kind
            continue
        m = SAMPLE_RE.match(line)
        if m is None:
            raise AssertionError("not a sample line: %r" % line)
        name = m.group(1)
        family = re.sub(r"_(bucket|sum|count)$", "", name) if name not in typed else name
        if family not in typed or family not in helped:
            raise AssertionError("%s has no HELP or TYPE before it" % name)
        labels = frozenset(LABEL_RE.findall(m.group(2) or ""))
        samples[(name, labels)] = float(m.group(3))
    return samples, typed


def value(samples, name, **labels):
    """The sum of the samples of name whose labels include labels."""
    want = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and want <= set(ls))


class MetricsTest(PosternTestCase):
    """One server with metrics_listen, content rules and a DNS blocklist
    asked of a DNS server that does not answer."""

    @classmethod
    def setUpClass(cls):
        cls.metrics_port = free_port()
        silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # reads nothing: timeouts
        silent.bind(("127.0.0.1", 0))
        cls.addClassCleanup(silent.close)
        srv = PosternServer(name=cls.__name__, config={
            "metrics_listen": "127.0.0.1:%d" % cls.metrics_port,
            "mynetworks": "10.99.0.0/16",  # the test client is looked up in the list
            "relay_domains": "elsewhere.test",
            "dnsbl_sites": "list.metrics.test",
            "dns_servers": "127.0.0.1:%d" % silent.getsockname()[1],
            "dns_timeout": "1s",
            "dnsbl_timeout": "1s",
        })
        if pipeline_in_build():
            srv.settings["content_rules_file"] = "content-rules"
            with open(os.path.join(srv.dir, "content-rules"), "w") as f:
                f.write(RULES)
            os.chmod(os.path.join(srv.dir, "content-rules"), 0o644)
            srv.write_config()
        cls.addClassCleanup(cls._class_cleanup, srv)
        srv.start()
        cls.class_server = srv
        srv.wait_log(r"metrics: serving GET /metrics")

    @property
    def srv(self):
        return self.class_server

    @property
    def url(self):
        return "http://127.0.0.1:%d/metrics" % self.metrics_port

    def scrape(self):
        with urllib.request.urlopen(self.url, timeout=scaled(10)) as r:
            self.assertEqual(r.status, 200)
            self.assertTrue(r.headers["Content-Type"].startswith("text/plain; version=0.0.4"))
            return parse_exposition(r.read().decode("utf-8"))[0]

    def wait_metric(self, name, at_least, **labels):
        """Scrape until name{labels} reaches at_least; the samples."""
        last = {}

        def reached():
            last["s"] = self.scrape()
            return value(last["s"], name, **labels) >= at_least
        wait_until(reached, scaled(10), what="%s%r >= %s" % (name, labels, at_least))
        return last["s"]

    def test_format_and_families(self):
        samples, typed = parse_exposition(
            urllib.request.urlopen(self.url, timeout=scaled(10)).read().decode())
        for name, kind in [("postern_smtp_connections_total", "counter"),
                           ("postern_smtp_transactions_total", "counter"),
                           ("postern_smtp_rejections_total", "counter"),
                           ("postern_deliveries_total", "counter"),
                           ("postern_scan_verdicts_total", "counter"),
                           ("postern_scan_duration_seconds", "histogram"),
                           ("postern_dns_query_duration_seconds", "histogram"),
                           ("postern_queue_messages", "gauge"),
                           ("postern_processes", "gauge"),
                           ("postern_resident_memory_bytes", "gauge")]:
            self.assertEqual(typed.get(name), kind, name)
        # a histogram's buckets are cumulative and end with +Inf == _count
        buckets = sorted(((float(dict(ls)["le"]), v) for (n, ls), v in samples.items()
                          if n == "postern_dns_query_duration_seconds_bucket"))
        self.assertEqual(buckets[-1][0], float("inf"))
        self.assertEqual([v for _, v in buckets], sorted(v for _, v in buckets))
        self.assertEqual(buckets[-1][1], samples[("postern_dns_query_duration_seconds_count",
                                                  frozenset())])
        for state in ("incoming", "queue", "deferred", "hold", "quarantine"):
            self.assertIn(("postern_queue_messages", frozenset({("state", state)})), samples)

    def test_counters_move_with_mail(self):
        before = self.scrape()
        smtplib_send(self.srv.port, "sender@remote.test", ["alice@example.test"],
                     make_message(subject="counted"))
        after = self.wait_metric("postern_deliveries_total",
                                 value(before, "postern_deliveries_total", transport="local",
                                       status="sent") + 1, transport="local", status="sent")
        for name in ("postern_smtp_connections_total", "postern_smtp_transactions_total",
                     "postern_smtp_messages_accepted_total",
                     "postern_smtp_recipients_accepted_total"):
            self.assertGreaterEqual(value(after, name), value(before, name) + 1, name)
        # the DNS blocklist was asked of a server that never answers
        self.assertGreater(value(after, "postern_dns_queries_total"), 0)
        after = self.wait_metric("postern_dns_timeouts_total", 1)
        self.assertGreater(value(after, "postern_dns_query_duration_seconds_count"), 0)
        self.assertGreater(value(after, "postern_dns_query_duration_seconds_bucket", le="+Inf"),
                           value(after, "postern_dns_query_duration_seconds_bucket", le="0.5"))

    def test_refused_recipient_and_connection_counted(self):
        before = self.scrape()
        with SmtpConn(self.srv.port) as c:
            c.ehlo()
            self.assertReply(c.cmd("MAIL FROM:<sender@remote.test>"), 250)
            r = c.cmd("RCPT TO:<nobody-here@example.test>")
            self.assertEqual(r.code, 550, r)
        samples = self.wait_metric(
            "postern_smtp_rejections_total",
            value(before, "postern_smtp_rejections_total", stage="rcpt", **{"class": "5xx"}) + 1,
            stage="rcpt", **{"class": "5xx"})
        rcpt = [dict(ls) for (n, ls), v in samples.items()
                if n == "postern_smtp_rejections_total" and dict(ls)["stage"] == "rcpt" and v > 0]
        self.assertTrue(any(l["check"] and l["reason"] for l in rcpt), rcpt)
        # relaying refused: the restriction that refused is the check
        with SmtpConn(self.srv.port) as c:
            c.ehlo()
            self.assertReply(c.cmd("MAIL FROM:<sender@remote.test>"), 250)
            r = c.cmd("RCPT TO:<someone@not-ours.test>")
            self.assertEqual(r.code // 100, 5, r)
        self.wait_metric("postern_smtp_rejections_total",
                         value(before, "postern_smtp_rejections_total",
                               check="reject_unauth_destination") + 1,
                         stage="rcpt", check="reject_unauth_destination")

    @needs_pipeline
    def test_scan_verdicts_and_times(self):
        before = self.scrape()
        with self.assertRaises(AssertionError):
            smtplib_send(self.srv.port, "sender@remote.test", ["alice@example.test"],
                         make_message(subject="[reject-me] please"))
        smtplib_send(self.srv.port, "sender@remote.test", ["alice@example.test"],
                     make_message(subject="plain"))
        after = self.wait_metric("postern_scan_verdicts_total",
                                 value(before, "postern_scan_verdicts_total") + 2)
        self.assertGreaterEqual(value(after, "postern_scan_verdicts_total", verdict="reject"),
                                value(before, "postern_scan_verdicts_total", verdict="reject") + 1)
        self.assertGreaterEqual(value(after, "postern_scan_duration_seconds_count"),
                                value(before, "postern_scan_duration_seconds_count") + 2)
        self.assertGreater(value(after, "postern_scan_duration_seconds_sum"),
                           value(before, "postern_scan_duration_seconds_sum"))
        self.assertGreaterEqual(
            value(after, "postern_smtp_rejections_total", stage="end-of-data"),
            value(before, "postern_smtp_rejections_total", stage="end-of-data") + 1)

    def test_deferred_relay_delivery_and_queue_size(self):
        before = self.scrape()
        smtplib_send(self.srv.port, "sender@remote.test", ["someone@elsewhere.test"],
                     make_message(subject="for a relay that refuses"))
        after = self.wait_metric(
            "postern_deliveries_total",
            value(before, "postern_deliveries_total", transport="relay", status="deferred") + 1,
            transport="relay", status="deferred")
        self.assertGreaterEqual(value(after, "postern_queue_messages", state="deferred") +
                                value(after, "postern_queue_messages", state="queue"), 1)

    def test_counters_survive_reload(self):
        """The segment outlives generations: a reload neither resets the
        counters nor restarts the metrics role."""
        pid = self.srv.role_pids("metrics")
        smtplib_send(self.srv.port, "sender@remote.test", ["bob@example.test"], make_message())
        before = self.scrape()
        self.srv.reload(wait_old=True)
        self.srv.wait_roles()
        after = self.scrape()
        for name in ("postern_smtp_connections_total", "postern_smtp_messages_accepted_total"):
            self.assertGreaterEqual(value(after, name), value(before, name), name)
        self.assertEqual(self.srv.role_pids("metrics"), pid)
        self.assertEqual(value(after, "postern_processes", role="smtp"), 2)

    def test_processes_and_memory_per_role(self):
        samples = self.scrape()
        self.assertEqual(value(samples, "postern_processes", role="master"), 1)
        self.assertEqual(value(samples, "postern_processes", role="metrics"), 1)
        self.assertEqual(value(samples, "postern_processes", role="qmgr"), 1)
        self.assertEqual(value(samples, "postern_processes", role="smtp"), 2)
        self.assertGreaterEqual(value(samples, "postern_processes", role="local"), 1)
        for role in ("master", "smtp", "qmgr", "metrics"):
            self.assertGreater(value(samples, "postern_resident_memory_bytes", role=role),
                               1 << 20, role)
        if pipeline_in_build():
            # The scan master and the scanners it forks, each counted.
            self.assertEqual(value(samples, "postern_processes", role="scan"), 1)
            self.assertGreaterEqual(value(samples, "postern_processes", role="scanner"), 1)
            self.assertGreater(value(samples, "postern_resident_memory_bytes", role="scanner"),
                               1 << 20)

    @unittest.skipUnless(IS_ROOT, "the roles change accounts only when started as root")
    def test_metrics_role_is_unprivileged(self):
        pids = self.srv.role_pids("metrics")
        self.assertEqual(len(pids), 1, self.srv.log_tail())
        with open("/proc/%d/status" % pids[0]) as f:
            uids = [l for l in f if l.startswith("Uid:")][0].split()[1:]
        self.assertEqual(set(uids), {str(65534)})  # nobody, the harness's user

    def test_only_get_metrics(self):
        base = "http://127.0.0.1:%d" % self.metrics_port
        for path in ("/", "/metrics/", "/metricsx", "/../metrics", "/favicon.ico"):
            with self.assertRaises(urllib.error.HTTPError) as e:
                urllib.request.urlopen(base + path, timeout=scaled(10))
            self.assertEqual(e.exception.code, 404, path)
        for method in ("POST", "PUT", "DELETE", "OPTIONS"):
            req = urllib.request.Request(self.url, method=method, data=b"" if method in
                                         ("POST", "PUT") else None)
            with self.assertRaises(urllib.error.HTTPError) as e:
                urllib.request.urlopen(req, timeout=scaled(10))
            self.assertEqual(e.exception.code, 405, method)
            self.assertEqual(e.exception.headers["Allow"], "GET, HEAD")
        with urllib.request.urlopen(urllib.request.Request(self.url, method="HEAD"),
                                    timeout=scaled(10)) as r:
            self.assertEqual(r.status, 200)
        # a query string names the same resource
        with urllib.request.urlopen(self.url + "?x=1", timeout=scaled(10)) as r:
            self.assertEqual(r.status, 200)

    def test_oversized_and_garbage_requests(self):
        def raw(data):
            with socket.create_connection(("127.0.0.1", self.metrics_port),
                                          timeout=scaled(10)) as s:
                try:
                    s.sendall(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass
                out = b""
                try:
                    while True:
                        chunk = s.recv(65536)
                        if not chunk:
                            break
                        out += chunk
                except (ConnectionResetError, socket.timeout):
                    pass
                return out
        huge = b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20000 + b"\r\n\r\n"
        out = raw(huge)
        self.assertFalse(out.startswith(b"HTTP/1.1 200"), out[:100])
        body = raw(b"POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n" +
                   b"x" * 1000)
        self.assertFalse(body.startswith(b"HTTP/1.1 200"), body[:100])
        out = raw(b"\x16\x03\x01\x02\x00garbage that is no HTTP\r\n\r\n")
        self.assertFalse(out.startswith(b"HTTP/1.1 200"), out[:100])
        # many connections at once that say nothing: it still answers
        idle = [socket.create_connection(("127.0.0.1", self.metrics_port)) for _ in range(40)]
        try:
            self.scrape()
        finally:
            for s in idle:
                s.close()
        self.scrape()
        self.assertTrue(self.srv.running())

    @unittest.skipUnless(shutil.which("curl"), "curl is not installed")
    def test_curl_scrape(self):
        out = subprocess.run(["curl", "-sS", "--fail", "--max-time", str(scaled(10)),
                              "-D", "-", self.url], capture_output=True,
                             timeout=scaled(20))
        self.assertEqual(out.returncode, 0, out.stderr)
        head, _, body = out.stdout.decode().partition("\r\n\r\n")
        self.assertTrue(head.startswith("HTTP/1.1 200"), head)
        self.assertRegex(head, r"(?i)content-type: text/plain; version=0\.0\.4")
        samples, _ = parse_exposition(body)
        self.assertGreaterEqual(value(samples, "postern_smtp_connections_total"), 1)
        out = subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}",
                              "-X", "POST", self.url], capture_output=True, text=True,
                             timeout=scaled(20))
        self.assertEqual(out.stdout, "405")


class MetricsConnectRefusalTest(PosternTestCase):
    def test_refused_connection_counted(self):
        """A client that talks before the banner (greet_pause) is refused
        at connect: counted with its stage and check."""
        port = free_port()
        srv = self.start_server(config={"metrics_listen": "127.0.0.1:%d" % port,
                                        "greet_pause": "1s"})
        url = "http://127.0.0.1:%d/metrics" % port
        with socket.create_connection(("127.0.0.1", srv.port), timeout=scaled(10)) as s:
            s.sendall(b"EHLO early.test\r\n")
            data = b""
            while b"\n" not in data:
                chunk = s.recv(4096)
                if not chunk:
                    break
                data += chunk
        self.assertTrue(data.startswith(b"554 5.5.1"), data)

        def counted():
            text = urllib.request.urlopen(url, timeout=scaled(10)).read().decode()
            samples, _ = parse_exposition(text)
            return value(samples, "postern_smtp_rejections_total", stage="connect",
                         check="early_talker", reason="early_talker", **{"class": "5xx"}) == 1
        wait_until(counted, scaled(10), what="the early talker counted")


class MetricsLoginTest(PosternTestCase):
    def test_logins_counted_by_service_and_result(self):
        """The auth process counts every login it decides."""
        port = free_port()
        srv = self.start_server(config={"metrics_listen": "127.0.0.1:%d" % port,
                                        "smtp_auth": "yes",
                                        "auth_cleartext_networks": "127.0.0.0/8",
                                        "auth_failure_delay": "0"})
        url = "http://127.0.0.1:%d/metrics" % port

        def plain(user, password):
            return base64.b64encode(("\0%s\0%s" % (user, password)).encode()).decode()
        with SmtpConn(srv.port) as c:
            c.ehlo()
            self.assertReply(c.cmd("AUTH PLAIN " + plain("alice@example.test", "wrong")), 535)
            self.assertReply(c.cmd("AUTH PLAIN " + plain("alice@example.test", "secret")), 235)

        def counted():
            samples, _ = parse_exposition(urllib.request.urlopen(url, timeout=scaled(10))
                                          .read().decode())
            return (value(samples, "postern_auth_logins_total", service="smtp", result="ok"),
                    value(samples, "postern_auth_logins_total", service="smtp",
                          result="failed"))
        wait_until(lambda: counted() == (1, 1), scaled(10), what="one login of each counted")



class MetricsSubmissionTest(PosternTestCase):
    def test_mail_refusals_and_smtps_logins(self):
        """MAIL refused for want of a login (530) or for a sender the
        login does not own (553) is counted like any other refusal; a
        login over smtps is counted as smtps, not submission."""
        port, sub_port, smtps_port = free_port(), free_port(), free_port()
        srv = self.start_server(tls=True, config={
            "metrics_listen": "127.0.0.1:%d" % port,
            "submission_listen": "127.0.0.1:%d" % sub_port,
            "smtps_listen": "127.0.0.1:%d" % smtps_port,
            "auth_failure_delay": "0"})
        url = "http://127.0.0.1:%d/metrics" % port
        with SmtpConn(sub_port) as c:
            c.ehlo()
            self.assertReply(c.cmd("MAIL FROM:<alice@example.test>"), 530, "5.7.0")
        s = smtplib.SMTP_SSL("127.0.0.1", smtps_port, local_hostname="client.test",
                             timeout=scaled(15), context=client_tls_context())
        self.addCleanup(s.close)
        s.ehlo()
        self.assertEqual(s.login("alice@example.test", "secret")[0], 235)
        self.assertEqual(s.mail("bob@example.test")[0], 553)
        srv.wait_log(r"login: user=alice@example\.test client=127\.0\.0\.1 service=smtps ")

        def counts():
            samples, _ = parse_exposition(urllib.request.urlopen(url, timeout=scaled(10))
                                          .read().decode())
            return (value(samples, "postern_smtp_rejections_total", stage="mail",
                          check="auth", reason="auth_required", **{"class": "5xx"}),
                    value(samples, "postern_smtp_rejections_total", stage="mail",
                          check="auth_sender_check", reason="sender_not_owned",
                          **{"class": "5xx"}),
                    value(samples, "postern_auth_logins_total", service="smtps", result="ok"),
                    value(samples, "postern_auth_logins_total", service="submission"))
        wait_until(lambda: counts() == (1, 1, 1, 0), scaled(10),
                   what="the two MAIL refusals and one smtps login counted")

class MetricsPop3Test(PosternTestCase):
    def test_pop3_sessions_retrievals_and_deletions_counted(self):
        """The pop3 role records into the same segment: a session that
        reads and deletes, and a client outside pop3_clients."""
        port, pop3_port = free_port(), free_port()
        srv = self.start_server(config={"metrics_listen": "127.0.0.1:%d" % port,
                                        "pop3_listen": "127.0.0.1:%d" % pop3_port,
                                        "pop3_cleartext_networks": "127.0.0.0/8"})
        url = "http://127.0.0.1:%d/metrics" % port
        for subject in ("one", "two"):
            qid = smtplib_send(srv.port, "x@remote.test", ["alice@example.test"],
                               make_message(subject))
            srv.wait_delivery("alice", qid)
        p = poplib.POP3("127.0.0.1", pop3_port, timeout=scaled(15))
        p.user("alice@example.test")
        p.pass_("secret")
        p.retr(1)
        p.retr(2)
        p.dele(1)
        p.quit()

        def counts():
            samples, _ = parse_exposition(urllib.request.urlopen(url, timeout=scaled(10))
                                          .read().decode())
            return tuple(value(samples, "postern_pop3_%s_total" % n)
                         for n in ("connections", "messages_retrieved", "messages_deleted",
                                   "connections_refused"))
        wait_until(lambda: counts() == (1, 2, 1, 0), scaled(10),
                   what="one session, two retrievals, one deletion")


class MetricsOffTest(PosternTestCase):
    def test_no_listener_without_metrics_listen(self):
        srv = self.start_server()
        self.assertEqual(srv.role_pids("metrics"), [])
        self.assertNotRegex(srv.log(), r"postern/metrics\[|metrics on http")

    def test_bad_metrics_listen_refused(self):
        srv = self.start_server(start=False, config={
            "metrics_listen": "127.0.0.1:%d, 127.0.0.1:%d" % (free_port(), free_port())})
        out = srv.run_cli("check-config")
        self.assertNotEqual(out.returncode, 0)
        self.assertIn(b"metrics_listen takes one address:port", out.stdout + out.stderr)


if __name__ == "__main__":
    unittest.main()

"""
test_dns.py - the DNS layer (src/dns/) against a private unbound
(unbound_peer.py), driven by the test tool dns_query (tests/tools/
dns_query.c: the real resolver on a libevent loop, one JSON line per
step): every record type, negative answers and their TTLs, a refusing
server, a name that times out, a dead server, the cache (what unbound
was asked shows what was not asked again), shared queries, TTL expiry,
the cache's bound, cancellation (the tool exits 3 if a cancelled
callback comes), TCP for a truncated answer, forward-confirmed reverse
DNS and "can this domain take mail".
"""
import json
import os
import subprocess
import time
import unittest

from harness import POSTERN_BIN, scaled
from unbound_peer import UnboundPeer, dead_port

TOOLS = os.path.join(os.path.dirname(POSTERN_BIN), "tools")


def dns_query(server, *steps, timeout_ms=1500, extra=()):
    tool = os.path.join(TOOLS, "dns_query")
    if not os.path.exists(tool):
        raise AssertionError("%s missing: run make tools (or make check-integration)" % tool)
    args = [tool, "--timeout-ms", str(timeout_ms)] + list(extra)
    if server is not None:
        args += ["--server", server]
    proc = subprocess.run(args + list(steps), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          timeout=scaled(60))
    if proc.returncode != 0:
        raise AssertionError("dns_query exited with %d: %s\n%s" % (
            proc.returncode, proc.stderr.decode("utf-8", "replace"),
            proc.stdout.decode("utf-8", "replace")))
    return [json.loads(line) for line in proc.stdout.decode().splitlines()]


class DnsResolverTest(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        u = UnboundPeer(negative_ttl=60)
        u.zone("rr.test")
        u.record("host.rr.test 300 IN A 192.0.2.1")
        u.record("host.rr.test 300 IN A 192.0.2.2")
        u.record("host.rr.test 300 IN AAAA 2001:db8::1")
        u.record("short.rr.test 1 IN A 192.0.2.3")
        u.record("mx.rr.test 120 IN MX 20 backup.rr.test.")
        u.record("mx.rr.test 120 IN MX 10 primary.rr.test.")
        u.record('txt.rr.test 300 IN TXT "v=spf1 " "-all"')
        u.record('txt.rr.test 300 IN TXT "second record"')
        for i in range(6):  # more than 512 bytes: truncated over UDP, asked again over TCP
            u.txt("big.rr.test", "record %d %s" % (i, "z" * 150))
        u.zone("2.0.192.in-addr.arpa")
        u.record("10.2.0.192.in-addr.arpa 300 IN PTR mail.fc.test.")
        u.record("11.2.0.192.in-addr.arpa 300 IN PTR a.fc.test.")
        u.record("11.2.0.192.in-addr.arpa 300 IN PTR b.fc.test.")
        u.record("12.2.0.192.in-addr.arpa 300 IN PTR nowhere.drop.test.")
        u.zone("8.b.d.0.1.0.0.2.ip6.arpa")
        u.record("0.1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa "
                 "300 IN PTR v6.fc.test.")
        u.zone("fc.test")
        u.record("mail.fc.test 300 IN A 192.0.2.10")
        u.record("a.fc.test 300 IN A 198.51.100.1")
        u.record("b.fc.test 300 IN A 192.0.2.11")
        u.record("v6.fc.test 300 IN AAAA 2001:db8::10")
        u.zone("mail.test")
        u.record("mx.mail.test 300 IN MX 10 in.mail.test.")
        u.record("in.mail.test 300 IN A 192.0.2.20")
        u.record("aonly.mail.test 300 IN A 192.0.2.21")
        u.record("v6only.mail.test 300 IN AAAA 2001:db8::21")
        u.record("nullmx.mail.test 300 IN MX 0 .")
        u.record("txtonly.mail.test 300 IN TXT \"nothing for mail\"")
        u.drop("drop.test")
        u.refuse("refuse.test")
        cls.unbound = u.start()

    @classmethod
    def tearDownClass(cls):
        cls.unbound.stop()

    def ask(self, *steps, **kw):
        return dns_query(self.unbound.server, *steps, **kw)

    def test_record_types(self):
        a, aaaa, mx, txt, ptr = self.ask("A:host.rr.test", "AAAA:HOST.rr.test.",
                                         "MX:mx.rr.test", "TXT:txt.rr.test",
                                         "PTR:11.2.0.192.in-addr.arpa")
        self.assertEqual((a["status"], sorted(a["records"]), a["ttl"]),
                         ("found", ["192.0.2.1", "192.0.2.2"], 300))
        self.assertEqual(aaaa["records"], ["2001:db8::1"])
        self.assertEqual(sorted(mx["records"]), ["10 primary.rr.test", "20 backup.rr.test"])
        self.assertEqual(mx["ttl"], 120)
        # The strings of one record are joined; two records stay two.
        self.assertEqual(sorted(txt["records"]), ["second record", "v=spf1 -all"])
        self.assertEqual(sorted(ptr["records"]), ["a.fc.test", "b.fc.test"])

    def test_negative_answers_carry_the_soa_minimum(self):
        nx, nodata = self.ask("A:absent.rr.test", "MX:host.rr.test")
        self.assertEqual((nx["status"], nx["ttl"]), ("nxdomain", 60))
        self.assertEqual((nodata["status"], nodata["ttl"]), ("nodata", 60))
        capped, = self.ask("A:absent2.rr.test", extra=("--negative-ttl", "5"))
        self.assertEqual((capped["status"], capped["ttl"]), ("nxdomain", 5))

    def test_invalid_name_is_not_asked(self):
        bad, long_label = self.ask("A:bad..rr.test", "A:%s.rr.test" % ("x" * 64))
        self.assertEqual(bad["status"], "nxdomain")
        self.assertEqual(long_label["status"], "nxdomain")
        self.assertEqual(self.unbound.queries("bad..rr.test"), [])
        self.assertFalse(any(q[0].startswith("xxxx") for q in self.unbound.queries()))

    def test_refusing_server_is_a_temporary_failure(self):
        r, = self.ask("A:x.refuse.test")
        self.assertEqual(r["status"], "tempfail")
        self.assertLess(r["ms"], 1000)

    def test_name_that_times_out(self):
        r, = self.ask("A:slow.drop.test", timeout_ms=1000)
        self.assertEqual(r["status"], "timeout")
        self.assertGreaterEqual(r["ms"], 900)
        self.assertLess(r["ms"], scaled(1600))

    def test_dead_server_ends_within_the_timeout(self):
        start = time.monotonic()
        r, = dns_query("127.0.0.1:%d" % dead_port(), "A:host.rr.test", timeout_ms=1000)
        self.assertIn(r["status"], ("tempfail", "timeout"))
        self.assertLess(time.monotonic() - start, scaled(3))

    def test_second_lookup_comes_from_the_cache(self):
        first, second, stats = self.ask("A:cache1.rr.test", "A:cache1.rr.test", "stats")
        self.assertEqual(first["status"], second["status"])
        self.assertEqual(len(self.unbound.queries("cache1.rr.test", "A")), 1)
        self.assertEqual((stats["sent"], stats["cache_hits"]), (1, 1))
        h1, h2, stats = self.ask("A:host.rr.test", "A:host.rr.test", "stats")
        self.assertEqual(h2["records"], h1["records"])
        self.assertEqual(stats["cache_hits"], 1)

    def test_lookups_in_flight_share_one_query(self):
        out = self.ask("A:shared.rr.test+A:shared.rr.test+A:SHARED.rr.test", "stats")
        self.assertEqual([o["status"] for o in out[:3]], ["nxdomain"] * 3)
        self.assertEqual((out[3]["sent"], out[3]["shared"]), (1, 2))
        self.assertEqual(len(self.unbound.queries("shared.rr.test", "A")), 1)

    def test_ttl_expiry_asks_again(self):
        self.ask("A:short.rr.test", "sleep:1200", "A:short.rr.test")
        self.assertEqual(len(self.unbound.queries("short.rr.test", "A")), 2)
        self.ask("A:neg.rr.test", "sleep:1200", "A:neg.rr.test", extra=("--negative-ttl", "1"))
        self.assertEqual(len(self.unbound.queries("neg.rr.test", "A")), 2)

    def test_cache_is_bounded(self):
        self.ask("A:lru1.rr.test", "A:lru2.rr.test", "A:lru3.rr.test", "A:lru1.rr.test",
                 "A:lru3.rr.test", extra=("--cache", "2"))
        self.assertEqual(len(self.unbound.queries("lru1.rr.test", "A")), 2)
        self.assertEqual(len(self.unbound.queries("lru3.rr.test", "A")), 1)

    def test_failures_are_not_cached(self):
        self.ask("A:y.refuse.test", "A:y.refuse.test")
        self.assertEqual(len(self.unbound.queries("y.refuse.test", "A")), 4)  # 2 tries each

    def test_cancelled_lookups_never_call_back(self):
        out = self.ask("cancel@0:A:c1.drop.test", "cancel@100:A:c2.drop.test",
                       "cancel@0:A:host.rr.test", "A:host.rr.test", "sleep:1200",
                       "free-pending:A:c3.drop.test", "A:host.rr.test", timeout_ms=1000)
        self.assertEqual([o["status"] for o in out],
                         ["cancelled", "cancelled", "cancelled", "found", "freed", "found"])

    def test_truncated_answer_is_asked_again_over_tcp(self):
        r, = self.ask("TXT:big.rr.test")
        self.assertEqual(r["status"], "found")
        self.assertEqual(len(r["records"]), 6)
        self.assertEqual(len(self.unbound.queries("big.rr.test", "TXT")), 2)

    def test_forward_confirmed_reverse_dns(self):
        out = self.ask("fcrdns:192.0.2.10", "fcrdns:192.0.2.11", "fcrdns:192.0.2.13",
                       "fcrdns:192.0.2.12", "fcrdns:2001:db8::10", "fcrdns:::ffff:192.0.2.10",
                       timeout_ms=1000)
        got = [(o["status"], o["name"]) for o in out]
        self.assertEqual(got, [
            ("confirmed", "mail.fc.test"),
            ("confirmed", "b.fc.test"),        # the second PTR name resolves back
            ("no_ptr", ""),
            ("tempfail", "nowhere.drop.test"),  # its forward lookup timed out
            ("confirmed", "v6.fc.test"),
            ("confirmed", "mail.fc.test"),      # IPv4-mapped counts as IPv4
        ])

    def test_domain_can_receive_mail(self):
        out = self.ask("domain:mx.mail.test", "domain:aonly.mail.test",
                       "domain:v6only.mail.test", "domain:nullmx.mail.test",
                       "domain:txtonly.mail.test", "domain:absent.mail.test",
                       "domain:x.refuse.test", "domain:bad..name", timeout_ms=1000)
        self.assertEqual([o["status"] for o in out],
                         ["ok", "ok", "ok", "null_mx", "unknown", "unknown", "tempfail",
                          "unknown"])

    def test_server_spellings(self):
        # c-ares takes "[v6]" only with a port: the resolver drops the
        # brackets of one written without (a regression test).
        spellings = ["127.0.0.1:%d" % self.unbound.port]
        if self.unbound.ipv6:
            spellings.append("[::1]:%d" % self.unbound.port)
        for server in spellings:
            r, = dns_query(server, "A:host.rr.test")
            self.assertEqual(r["status"], "found", server)
        for server in ("[::1]", "::1", "127.0.0.1"):  # port 53: nobody there
            r, = dns_query(server, "A:host.rr.test", timeout_ms=500)
            self.assertIn(r["status"], ("tempfail", "timeout"), server)

    def test_system_resolver_is_the_default(self):
        # No --server: c-ares reads /etc/resolv.conf; an invalid name is
        # answered without asking anyone, so this needs no network.
        r, = dns_query(None, "A:bad..name")
        self.assertEqual(r["status"], "nxdomain")


if __name__ == "__main__":
    unittest.main()

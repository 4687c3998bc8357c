"""
test_maps.py - the maps of the access restrictions against the real
server: file:, cidr: (IPv4 and IPv6 clients) and regexp: tables and every
result they may give (OK, DUNNO, REJECT, DEFER, a reply of their own,
DISCARD, HOLD, WARN), the lookup order of an address, the reload of a map
whose file changes (no SIGHUP: the workers look at the file), a changed
file with a mistake (logged as FILE:LINE, the loaded version kept), a
reload (SIGHUP) refused for a broken map, and serve refusing to start on
one.
"""
import os
import re
import time
import unittest

from harness import (PosternServer, PosternTestCase, SmtpConn, have_ipv6_loopback, make_message, scaled,
                     smtplib_send, wait_until)

OUTSIDE = {"mynetworks": "10.99.0.0/16", "error_limit": "100"}


def write(srv, name, text, age=None):
    """Write a map file atomically (rename), dated age seconds back."""
    path = os.path.join(srv.dir, name)
    with open(path + ".tmp", "w") as f:
        f.write(text)
    if age is not None:
        t = time.time() - age
        os.utime(path + ".tmp", (t, t))
    os.rename(path + ".tmp", path)
    return path


class MapServer(PosternTestCase):

    def server(self, config, maps, start=True, **kw):
        settings = dict(OUTSIDE)
        settings.update(config)
        srv = self.start_server(config=settings, start=False, **kw)
        for name, text in maps.items():
            write(srv, name, text)
        if start:
            srv.start()
        return srv

    def rcpt(self, srv, sender="sender@remote.test", rcpt="alice@example.test",
             host="127.0.0.1", port=None, family=None):
        kw = {"host": host}
        if family is not None:
            kw["family"] = family
        c = SmtpConn(port or srv.port, **kw)
        self.addCleanup(c.close)
        c.ehlo("client.example.org")
        self.assertEqual(c.cmd("MAIL FROM:<%s>" % sender).code, 250)
        return c.cmd("RCPT TO:<%s>" % rcpt)


class ResultsTest(MapServer):
    """Every result of an access map, from a file: map of senders."""

    SENDERS = ("ok@remote.test          OK\n"
               "dunno@remote.test       DUNNO\n"
               "reject@remote.test      REJECT\n"
               "rejtext@remote.test     reject not from you\n"
               "defer@remote.test       DEFER\n"
               "deftext@remote.test     DEFER busy, later\n"
               "own5@remote.test        553 5.7.3 your own words\n"
               "own4@remote.test        452 4.3.1 full, later\n"
               "discard@remote.test     DISCARD\n"
               "hold@remote.test        HOLD check first\n"
               "warn@remote.test        WARN note this\n"
               "numeric@remote.test     200\n")

    @classmethod
    def setUpClass(cls):
        srv = PosternServer(name=cls.__name__, config=dict(OUTSIDE, **{
            "sender_restrictions": "check_sender_access file:senders, "
                                   "check_client_access cidr:fallback.cidr",
        }))
        write(srv, "senders", cls.SENDERS)
        # A second map after the first: only reached on DUNNO or no key.
        write(srv, "fallback.cidr", "127.0.0.0/8 REJECT second map\n")
        cls.addClassCleanup(cls._class_cleanup, srv)
        srv.start()
        cls.class_server = cls.srv = srv

    def test_refusals(self):
        cases = [
            ("reject@remote.test", 554, "5.7.1", "<reject@remote.test>: Sender address "
             "refused: Access denied"),
            ("rejtext@remote.test", 554, "5.7.1", "Sender address refused: not from you"),
            ("defer@remote.test", 450, "4.7.1", "Sender address refused: Try again later"),
            ("deftext@remote.test", 450, "4.7.1", "Sender address refused: busy, later"),
            ("own5@remote.test", 553, "5.7.3", "Sender address refused: your own words"),
            ("own4@remote.test", 452, "4.3.1", "Sender address refused: full, later"),
            ("dunno@remote.test", 554, "5.7.1", "second map"),
            ("nokey@remote.test", 554, "5.7.1", "second map"),
        ]
        for sender, code, status, text in cases:
            with self.subTest(sender=sender):
                r = self.rcpt(self.srv, sender=sender)
                self.assertReply(r, code, status)
                self.assertIn(text, r.text)

    def test_ok_and_numeric_permit(self):
        for sender in ("ok@remote.test", "numeric@remote.test"):
            qid = smtplib_send(self.srv.port, sender, ["alice@example.test"],
                               make_message("permitted"))
            self.srv.wait_delivery("alice", qid)

    def test_discard_ends_the_walk_hold_and_warn_do_not(self):
        qid = smtplib_send(self.srv.port, "discard@remote.test", ["alice@example.test"],
                           make_message("discard"))
        self.srv.wait_log(r"%s: discarded from=<discard@remote\.test>" % qid)
        self.assertEqual(self.srv.maildir_new("alice"), [])
        # HOLD and WARN let the next restriction speak: here it refuses.
        r = self.rcpt(self.srv, sender="hold@remote.test")
        self.assertReply(r, 554, "5.7.1")
        self.assertIn("second map", r.text)
        self.srv.wait_log(r"hold: RCPT .*key=hold@remote\.test: check first")
        r = self.rcpt(self.srv, sender="warn@remote.test")
        self.assertReply(r, 554, "5.7.1")
        self.srv.wait_log(r"warning: [0-9A-F]{19}: warn: RCPT .*key=warn@remote\.test: "
                          r"note this")
        self.assertEqual(self.srv.spool_files("hold"), [])


class LookupOrderTest(MapServer):
    """user@domain, then the domain and its parents, then user@; file:
    maps only. regexp: and cidr: maps see whole keys."""

    def test_address_lookup_order(self):
        srv = self.server({"recipient_restrictions": "check_recipient_access file:rcpts, "
                                                     "reject_unauth_destination",
                           "relay_domains": "relay.test, deep.sub.relay.test"},
                          {"rcpts": "alice@example.test   OK\n"
                                    "relay.test           550 5.7.1 parent domain\n"
                                    "sub.relay.test       550 5.7.1 nearer parent\n"
                                    "boss@                550 5.7.1 no boss mail\n"
                                    "bob@relay.test       DUNNO\n"})
        self.assertIn("nearer parent", self.rcpt(srv, rcpt="x@deep.sub.relay.test").text)
        self.assertIn("parent domain", self.rcpt(srv, rcpt="x@relay.test").text)
        self.assertIn("no boss mail", self.rcpt(srv, rcpt="boss@example.test").text)
        self.assertIn("no boss mail", self.rcpt(srv, rcpt="boss@far.test").text)
        self.assertReply(self.rcpt(srv, rcpt="bob@relay.test"), 250)  # full address first
        self.assertReply(self.rcpt(srv, rcpt="alice@example.test"), 250)
        r = self.rcpt(srv, rcpt="alice@far.test")
        self.assertReply(r, 554, "5.7.1")
        self.assertIn("Relay access denied", r.text)
        srv.wait_log(r"reject: RCPT .*to=<x@deep\.sub\.relay\.test> code=550 5\.7\.1 "
                     r"reason=check_recipient_access restriction=check_recipient_access "
                     r"list=recipient_restrictions map=file:\S+/rcpts key=sub\.relay\.test")

    def test_regexp_map_with_captures(self):
        srv = self.server({"sender_restrictions": "check_sender_access regexp:senders.re"},
                          {"senders.re": "# first match wins\n"
                                         "/^(.+)@(bulk|spam)\\.test$/   REJECT $1 via $2\n"
                                         "/^news@/i                     DUNNO\n"
                                         "!/\\.test$/                   550 5.7.1 .test only\n"})
        r = self.rcpt(srv, sender="offers@bulk.test")
        self.assertReply(r, 554, "5.7.1")
        self.assertIn("<offers@bulk.test>: Sender address refused: offers via bulk", r.text)
        self.assertIn("spam", self.rcpt(srv, sender="x@SPAM.test").text)  # case-insensitive
        self.assertReply(self.rcpt(srv, sender="news@bulk.test"), 554)  # first match
        r = self.rcpt(srv, sender="x@example.org")
        self.assertReply(r, 550, "5.7.1")
        self.assertIn(".test only", r.text)
        self.assertReply(self.rcpt(srv, sender="x@friends.test"), 250)

    @unittest.skipUnless(have_ipv6_loopback(), "no IPv6 loopback")
    def test_cidr_map_ipv4_and_ipv6(self):
        import socket
        srv = self.server({"client_restrictions": "check_client_access cidr:clients.cidr"},
                          {"clients.cidr": "::1/128        550 5.7.1 six\n"
                                           "127.0.0.0/8    DUNNO\n"
                                           "0.0.0.0/0      REJECT everyone else\n"},
                          ipv6=True)
        self.assertReply(self.rcpt(srv), 250)
        r = self.rcpt(srv, host="::1", port=srv.port6, family=socket.AF_INET6)
        self.assertReply(r, 550, "5.7.1")
        self.assertIn("<::1>: Client address refused: six", r.text)

    def test_file_map_client_networks(self):
        srv = self.server({"client_restrictions": "check_client_access file:clients"},
                          {"clients": "127.0.0 REJECT by network prefix\n"})
        r = self.rcpt(srv)
        self.assertReply(r, 554, "5.7.1")
        self.assertIn("by network prefix", r.text)
        srv.wait_log(r"reject: RCPT .*map=file:\S+/clients key=127\.0\.0\b")


class ReloadTest(MapServer):
    """A changed map file is read again by the workers, without SIGHUP."""

    def test_changed_file_is_reloaded(self):
        srv = self.server({"sender_restrictions": "check_sender_access file:senders"},
                          {"senders": "someone@remote.test REJECT first version\n"})
        self.assertIn("first version", self.rcpt(srv, sender="someone@remote.test").text)
        write(srv, "senders", "someone@remote.test REJECT second version\n", age=5)
        # At most a second between looks, per worker (there are two).
        wait_until(lambda: "second version" in
                   self.rcpt(srv, sender="someone@remote.test").text,
                   scaled(10), interval=0.2, what="the new version")
        srv.wait_log(r"map file:\S+/senders: reloaded \(1 entries\)")
        for _ in range(4):  # every worker has it now, or soon
            wait_until(lambda: "second version" in
                       self.rcpt(srv, sender="someone@remote.test").text,
                       scaled(10), interval=0.2, what="the new version everywhere")

    def test_broken_change_keeps_the_loaded_version(self):
        srv = self.server({"client_restrictions": "check_client_access cidr:c.cidr"},
                          {"c.cidr": "127.0.0.1 REJECT loaded\n"})
        self.assertIn("loaded", self.rcpt(srv).text)
        path = write(srv, "c.cidr", "127.0.0.1 DUNNO\n127.0.0.2/8 OK\n", age=5)
        # A lookup looks at the file (at most once a second per worker).
        problem = re.compile(r"warning: %s:2: \"127\.0\.0\.2/8\": address has bits set "
                             r"beyond the prefix length" % re.escape(path))
        wait_until(lambda: self.rcpt(srv) and problem.search(srv.log()), scaled(10),
                   interval=0.3, what="the problem in the log")
        srv.wait_log(r"map cidr:\S+: the changed file has problems: keeping the version "
                     r"loaded before")
        time.sleep(1.5)
        for _ in range(4):
            self.assertIn("loaded", self.rcpt(srv).text)
        write(srv, "c.cidr", "127.0.0.1 DUNNO\n", age=5)
        wait_until(lambda: self.rcpt(srv).code == 250, scaled(10), interval=0.2,
                   what="the fixed version")

    def test_sighup_with_a_broken_map_keeps_the_running_generation(self):
        srv = self.server({"client_restrictions": "check_client_access file:clients"},
                          {"clients": "127.0.0.1 REJECT still here\n"})
        with open(srv.conf_path, "a") as f:
            f.write("sender_restrictions = check_sender_access file:missing\n")
        offset = srv.log_size()
        m = srv.reload()
        self.assertIn("keeping the running one", m.group(0))
        log = srv.log_since(offset)
        self.assertIn("/missing: cannot read: No such file or directory", log)
        self.assertIn("sender_restrictions: check_sender_access file:missing: the map cannot "
                      "be used", log)
        self.assertIn("still here", self.rcpt(srv).text)

    def test_serve_refuses_a_broken_map(self):
        srv = self.server({"helo_restrictions": "check_helo_access file:helos"},
                          {"helos": "good.example OK\nbad.example REJECTED\n"}, start=False)
        rc, log = srv.serve_refused()
        self.assertNotEqual(rc, 0)
        self.assertIn("%s:2: unknown action" % os.path.join(srv.dir, "helos"), log)


if __name__ == "__main__":
    unittest.main()

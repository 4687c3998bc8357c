"""
test_queue_edits.py - queue file version 4 (a milter's end-of-message
changes: header fields inserted at an index, changed and removed by
occurrence, the body replaced) end to end, independent of the milter
client that writes them: a queue file with those records is put in
hold/ or quarantine/ by hand, as the smtp worker would have committed
it, and what an administrator and a recipient see is checked - the
commands' view (postern queue show, postern quarantine show), the copy
delivered into the Maildir after a release, the message a relay peer
receives, and the message a bounce returns with RET=FULL.
"""
import os
import re
import struct
import time

from harness import PosternTestCase, scaled, wait_until
from sink_peer import ScriptedPeer

CONTENT = (b"Received: from client.test by mx.example.test (postern)\n"
           b"From: alice@example.test\n"
           b"To: bob@example.test\n"
           b"Subject: original\n"
           b"X-Scanned: old\n"
           b"  folded old\n"
           b"\n"
           b"the original body, which must not be seen\n")

# what the changes below make of CONTENT's header section
EDITED_HEADERS = (b"X-Milter-Top: 0\n"
                  b"Received: from client.test by mx.example.test (postern)\n"
                  b"From: alice@example.test\n"
                  b"X-Milter-Ins: 3\n"
                  b"To: bob@example.test\n"
                  b"Subject: [changed] original\n"
                  b"X-Status: added\n"
                  b"X-Added: at the end\n")
NEW_BODY = b"a new body\nfrom the milter\n" + (b"x" * 70 + b"\n") * 1000 + b"end\n"


def rec(kind, payload):
    return kind.encode() + struct.pack(">I", len(payload)) + payload


def change(name, occurrence, field):
    return rec("c", struct.pack(">IB", occurrence, len(name)) + name + field)


def trailer():
    return (rec("i", struct.pack(">I", 0) + b"X-Milter-Top: 0")
            + rec("i", struct.pack(">I", 3) + b"X-Milter-Ins: 3")
            + change(b"subject", 1, b"Subject: [changed] original")
            + change(b"X-Scanned", 1, b"")
            + change(b"X-Nowhere", 1, b"")
            # no such occurrence: added at the end (smfi_chgheader)
            + change(b"X-Status", 1, b"X-Status: added")
            + rec("h", b"\x01X-Added: at the end")
            + rec("b", struct.pack(">Q", 5)) + b"lost\n"
            + rec("b", struct.pack(">Q", len(NEW_BODY))) + NEW_BODY)


def new_queue_id():
    return "%013X%06X" % (int(time.time() * 1e6), os.getpid() & 0xFFFFFF)


def queue_file(qid, sender, rcpts, note=None, ret=b"\x00"):
    """A version 4 queue file as the writer makes it."""
    b = b"PSTNQF\x00\x04"
    b += rec("T", struct.pack(">Q", int(time.time() * 1e6)))
    b += rec("I", qid.encode())
    b += rec("C", b"192.0.2.9") + rec("H", b"client.test") + rec("P", b"ESMTP")
    b += rec("F", b"\x00") + rec("S", sender.encode())
    b += rec("N", b"\x00" + ret)
    for r in rcpts:
        b += rec("R", b"P" + r.encode())
    b += rec("A", struct.pack(">IQ", 0, 0) + b"\x00" * 116) + rec("W", b"\x00" * 8)
    b += rec("M", struct.pack(">Q", len(CONTENT))) + CONTENT
    b += trailer()
    if note is not None:
        b += note
    return b + rec("E", b"")


def note():
    def s(t):
        return struct.pack(">H", len(t)) + t
    return rec("q", b"Q" + s(b"milter") + s(b"quarantine") + s(b"held by a milter")
               + struct.pack(">H", 0))


class QueueEditsTest(PosternTestCase):

    def put(self, srv, folder, data):
        qid = new_queue_id()
        path = os.path.join(srv.spool_dir, folder, qid)
        with open(path, "wb") as f:
            f.write(data(qid))
        st = os.stat(os.path.join(srv.spool_dir, folder))
        os.chown(path, st.st_uid, st.st_gid)
        os.chmod(path, 0o600)
        return qid

    def cli(self, srv, *args):
        p = srv.run_cli(*args)
        self.assertEqual(p.returncode, 0, (args, p.stdout, p.stderr))
        return p.stdout.decode()

    def assertEdited(self, message):
        head, sep, body = message.partition(b"\n\n")
        self.assertEqual(body, NEW_BODY)
        self.assertTrue(head.endswith(EDITED_HEADERS.rstrip(b"\n")), head)
        self.assertNotIn(b"original body", message)
        self.assertNotIn(b"X-Scanned", message)
        self.assertNotIn(b"X-Nowhere", message)

    def test_show_release_deliver(self):
        srv = self.start_server(users=["alice", "bob"])
        qid = self.put(srv, "hold", lambda q: queue_file(q, "alice@example.test",
                                                         ["bob@example.test"]))
        out = self.cli(srv, "queue", "show", qid)
        self.assertIn("version: 4", out)
        self.assertIn("header_insert: at 0: X-Milter-Top: 0", out)
        self.assertIn("header_change: subject (occurrence 1): Subject: [changed] original", out)
        self.assertIn("header_delete: X-Scanned (occurrence 1)", out)
        self.assertIn("body_replaced: %d bytes" % len(NEW_BODY), out)
        headers = out.split("\n\n", 1)[1].encode()
        self.assertEqual(headers, EDITED_HEADERS + b"\n")
        size = len(CONTENT.split(b"\n\n")[0]) + 2 + len(NEW_BODY)
        self.assertIn("message_size: %d" % size, out)
        self.assertRegex(self.cli(srv, "queue", "list"),
                         r"%s\s+held\s+%d\s" % (qid, size))
        self.cli(srv, "queue", "release", qid)
        name, data = srv.wait_delivery("bob", qid)
        self.assertTrue(data.startswith(b"Return-Path: <alice@example.test>\n"
                                        b"Delivered-To: bob@example.test\n"), data[:200])
        self.assertEdited(data)
        # the Maildir size is the size of the copy as written
        m = re.search(r",S=(\d+),W=(\d+)$", name)
        self.assertEqual(int(m.group(1)), len(data))
        self.assertEqual(int(m.group(2)), len(data) + data.count(b"\n"))

    def test_quarantine_show_and_release(self):
        srv = self.start_server(users=["alice", "bob"])
        qid = self.put(srv, "quarantine", lambda q: queue_file(q, "alice@example.test",
                                                               ["bob@example.test"],
                                                               note=note()))
        out = self.cli(srv, "quarantine", "show", qid)
        self.assertIn("subject: [changed] original", out)
        self.assertIn("X-Milter-Ins: 3", out)
        self.assertNotIn("X-Scanned", out)
        self.cli(srv, "quarantine", "release", qid)
        _, data = srv.wait_delivery("bob", qid)
        self.assertEdited(data)

    def test_relayed_message_carries_the_changes(self):
        peer = ScriptedPeer()
        self.addCleanup(peer.stop)
        srv = self.start_server(users=["alice"], config={
            "relayhost": "[127.0.0.1]:%d" % peer.port, "relay_command_timeout": "10s",
            "relay_connect_timeout": "5s", "destination_backoff": "0"})
        qid = self.put(srv, "hold", lambda q: queue_file(q, "alice@example.test",
                                                         ["x@remote.test"]))
        self.cli(srv, "queue", "release", qid)
        wait_until(lambda: peer.received, scaled(30), what="relayed message")
        mail, rcpts, data = peer.received[0]
        self.assertEqual((mail, rcpts), ("alice@example.test", ["x@remote.test"]))
        self.assertEdited(data.replace(b"\r\n", b"\n"))

    def test_bounce_returns_the_changed_message(self):
        srv = self.start_server(users=["alice"])
        qid = self.put(srv, "hold", lambda q: queue_file(q, "alice@example.test",
                                                         ["nobody@example.test"],
                                                         ret=b"F"))
        self.cli(srv, "queue", "release", qid)
        srv.wait_log(r"%s: to=<nobody@example.test>.*status=bounced" % qid)
        def bounce():
            for n in srv.maildir_new("alice"):
                with open(os.path.join(srv.maildir("alice"), n), "rb") as f:
                    data = f.read()
                if b"multipart/report" in data:
                    return data
            return None
        data = wait_until(bounce, scaled(20), what="bounce")
        self.assertIn(b"Content-Type: message/rfc822", data)
        self.assertIn(b"Subject: [changed] original\n", data)
        self.assertIn(b"a new body\nfrom the milter\n", data)
        self.assertNotIn(b"original body", data)

"""
test_milter_postfix.py - the test milter (tests/milter/test_milter.c)
proved against a real MTA before the milter client tests trust it: a
private Postfix (postfix_peer.py) with smtpd_milters pointing at it
relays what it accepts to a scripted SMTP peer, so each reply the
milter gives shows up as the SMTP reply a client gets from Postfix, and
each change it asks for at the end of the message shows up in what
Postfix sends on (headers inserted, changed and deleted, body replaced,
recipients added and removed, sender changed). Its log must show every
stage with the arguments and macros Postfix sent. The milter listens on
a unix socket (smtpd_milters = unix:...), and for one test on TCP.

Needs root and the Debian packages postfix and libmilter-dev.
"""
import re
import smtplib

from harness import PosternTestCase, scaled, wait_until
from milter_peer import TestMilter, milter_unusable
from postfix_peer import PostfixPeer, postfix_unusable
from sink_peer import ScriptedPeer

MESSAGE = ("From: alice@example.test\r\n"
           "To: bob@remote.test\r\n"
           "Subject: milter test\r\n"
           "X-Old: one\r\n"
           "X-Old: two\r\n"
           "\r\n"
           "the original body\r\n")

MODS = """
mod addheader X-Added at the end
mod insheader 0 X-Inserted at the top
mod chgheader Subject 1 changed by the milter
mod delheader X-Old 2
mod chgheader X-Old 1 folded\\n\\tvalue
mod addrcpt <carol@remote.test>
mod addrcpt_par <dave@remote.test> NOTIFY=NEVER
mod delrcpt <bob@remote.test>
mod chgfrom <bounces@example.test>
mod replacebody new body line 1\\nnew body line 2\\n
eom continue
"""


class MilterPostfixTest(PosternTestCase):
    # the milter listens on a unix socket, except for these tests (TCP)
    INET_TESTS = {"test_every_change_reaches_the_next_hop"}

    def setUp(self):
        super().setUp()
        why = postfix_unusable() or milter_unusable()
        if why:
            self.skipTest(why)
        self.peer = ScriptedPeer()
        self.addCleanup(self.peer.stop)
        self.milter = TestMilter(inet=self._testMethodName in self.INET_TESTS)
        self.addCleanup(self.milter.remove)
        self.postfix = PostfixPeer(self.peer.port, "none", name="milter", extra_main={
            "smtpd_milters": self.milter.spec,
            "milter_default_action": "tempfail",
            "milter_protocol": "6",
        })
        self.addCleanup(self.postfix.destroy)
        self.postfix.start()

    def smtp(self):
        s = smtplib.SMTP("127.0.0.1", self.postfix.smtpd_port, local_hostname="client.test",
                         timeout=scaled(30))
        self.addCleanup(s.close)
        return s

    def send(self, rcpts=("bob@remote.test", "erin@remote.test")):
        s = self.smtp()
        s.ehlo()
        self.assertEqual(s.mail("alice@example.test")[0], 250)
        for r in rcpts:
            self.assertEqual(s.rcpt(r)[0], 250)
        return s.data(MESSAGE)

    def test_every_change_reaches_the_next_hop(self):
        self.milter.set_script(MODS)
        code, text = self.send()
        self.assertEqual(code, 250, text)
        wait_until(lambda: self.peer.received, scaled(30), what="relayed message")
        mail, rcpts, data = self.peer.received[0]
        self.assertEqual(mail, "bounces@example.test")
        self.assertEqual(sorted(rcpts), ["carol@remote.test", "dave@remote.test",
                                         "erin@remote.test"])
        head, _, body = data.decode().partition("\r\n\r\n")
        self.assertEqual(body, "new body line 1\r\nnew body line 2\r\n")
        lines = head.split("\r\n")
        self.assertEqual(lines[0], "X-Inserted: at the top")
        self.assertIn("Subject: changed by the milter", lines)
        self.assertEqual(lines[-1], "X-Added: at the end")
        self.assertIn("X-Old: folded\r\n\tvalue", head)
        self.assertNotIn("X-Old: two", head)
        self.assertNotIn("original body", data.decode())
        # every result of the changes was a success
        eom = self.milter.events("eom")[-1]
        self.assertEqual([rc for _, rc in eom["mods"]], [0] * 10, eom["mods"])

    def test_the_log_shows_each_stage_with_its_macros(self):
        code, _ = self.send(rcpts=("bob@remote.test",))
        self.assertEqual(code, 250)
        self.milter.wait_event("close")
        ev = self.milter.events()
        stages = [e["stage"] for e in ev]
        for st in ("negotiate", "connect", "helo", "envfrom", "envrcpt", "data", "header",
                   "eoh", "body", "eom", "close"):
            self.assertIn(st, stages)
        self.assertLess(stages.index("connect"), stages.index("helo"))
        self.assertLess(stages.index("envrcpt"), stages.index("data"))
        self.assertLess(stages.index("eoh"), stages.index("body"))
        connect = self.milter.events("connect")[0]
        self.assertEqual(connect["args"][1], "127.0.0.1")
        self.assertEqual(connect["macros"].get("{client_addr}"), "127.0.0.1")
        self.assertEqual(connect["macros"].get("j"), "sender.postfix-peer.test")
        self.assertEqual(self.milter.events("helo")[0]["args"], ["client.test"])
        self.assertEqual(self.milter.events("envfrom")[0]["args"][0], "<alice@example.test>")
        self.assertEqual(self.milter.events("envrcpt")[0]["args"][0], "<bob@remote.test>")
        headers = [e["args"] for e in self.milter.events("header")]
        self.assertIn(["Subject", "milter test"], headers)
        body = "".join(e["args"][0] for e in self.milter.events("body"))
        self.assertEqual(body, "the original body\r\n")
        eom = self.milter.events("eom")[0]
        self.assertRegex(eom["macros"].get("i", ""), r"^[0-9A-Za-z]+$")

    def test_replies_at_each_stage(self):
        self.milter.set_script("""
            envfrom@refused reply 553 5.7.9 the milter refuses this sender
            envrcpt@bad reject
            envrcpt@later tempfail
            eom mlreply 550 5.7.0 first line|second line
        """)
        s = self.smtp()
        s.ehlo()
        code, text = s.mail("refused@example.test")
        self.assertEqual((code, text), (553, b"5.7.9 the milter refuses this sender"))
        s.rset()
        self.assertEqual(s.mail("alice@example.test")[0], 250)
        code, text = s.rcpt("bad@remote.test")
        self.assertEqual(code, 550, text)
        self.assertRegex(text.decode(), r"^5\.7\.1 ")
        code, text = s.rcpt("later@remote.test")
        self.assertEqual(code, 451, text)
        self.assertEqual(s.rcpt("bob@remote.test")[0], 250)
        code, text = s.data(MESSAGE)
        self.assertEqual(code, 550)
        self.assertEqual(text, b"5.7.0 first line\n5.7.0 second line")
        self.assertEqual(self.peer.received, [])

    def test_tempfail_and_quarantine_at_the_end(self):
        self.milter.set_script("eom tempfail")
        code, text = self.send()
        self.assertEqual(code, 451, text)
        self.milter.set_script("mod quarantine held for a human\neom continue")
        code, text = self.send()
        self.assertEqual(code, 250, text)
        self.assertEqual(self.milter.events("eom")[-1]["mods"], [["quarantine", 0]])
        # Postfix keeps a quarantined message on hold: never relayed
        try:
            wait_until(lambda: re.search(r"milter-hold: END-OF-MESSAGE", self.postfix.log()),
                       scaled(20), what="postfix hold log line")
        except AssertionError as e:
            raise AssertionError("%s; postfix log:\n%s" % (e, self.postfix.log_tail(30)))
        self.assertEqual(self.peer.received, [])

    def test_discard_and_skip(self):
        self.milter.set_script("eom discard")
        code, text = self.send()
        self.assertEqual(code, 250, text)
        wait_until(lambda: "milter-discard" in self.postfix.log(), scaled(20),
                   what="postfix discard log line")
        # skip: the rest of a long body is not sent to the milter, the
        # message goes on whole
        self.milter.set_script("body skip")
        big = MESSAGE.replace("the original body\r\n", ("z" * 76 + "\r\n") * 4000)
        s = self.smtp()
        s.ehlo()
        s.mail("alice@example.test")
        s.rcpt("bob@remote.test")
        code, text = s.data(big)
        self.assertEqual(code, 250, text)
        wait_until(lambda: self.peer.received, scaled(30), what="relayed message")
        self.assertEqual(len(self.peer.received), 1, "the discarded one never left")
        self.assertEqual(self.peer.received[0][2].count(b"z" * 76), 4000)
        last = max(e["conn"] for e in self.milter.events("body"))
        self.assertEqual(len([e for e in self.milter.events("body") if e["conn"] == last]), 1)

"""
test_milter_scripted.py - postern as the MTA of milters (issue 12, the
milter client) against the scripted test milter: postern with
`milters = unix:...` (or inet:) pointing at tests/milter/test_milter.c
(proved against a real Postfix by test_milter_postfix.py), driven by a
script per test. (test_milter_client.py runs a real milter, opendkim.)

What a user sees is checked: every reply at every stage gives the SMTP
reply an SMTP client (smtplib, or a raw dialogue; also over STARTTLS)
gets, at the command the stage belongs to; a custom reply code and text
comes through as the milter set it, multi-line too; discard and
quarantine answer 250 and deliver nothing (quarantine lands in `postern
quarantine list`); every change at the end of the message shows up in
the Maildir copy and its envelope (recipients added and removed,
the sender changed in Return-Path:, the body replaced, header fields
inserted, changed and deleted); what postern tells the milter (stages,
macros {i}, j, {client_addr}, {auth_authen}, {tls_version}, headers,
body) is what the milter logs; two milters run in the order listed; a
milter that is down gets milter_default_action.
"""
import json
import os
import smtplib
import time

from harness import (PosternTestCase, SmtpConn, client_tls_context, free_port, queue_id_of,
                     scaled, split_message, wait_until)
from milter_peer import TestMilter, milter_unusable

USERS = ["alice", "bob", "carol", "dave", "erin", "admin"]
SENDER = "alice@example.test"

MESSAGE = ("From: <alice@example.test>\r\n"
           "To: <bob@example.test>\r\n"
           "Subject: milter client\r\n"
           "X-Old: one\r\n"
           "X-Old: two\r\n"
           "\r\n"
           "the original body\r\n"
           "second line\r\n")

# where the refusal of each stage must reach the client
STAGE_STEP = {
    # a refusal of the connection or of HELO may wait for MAIL or RCPT, as
    # Postfix's smtpd_delay_reject does (the client learns why, from the
    # command that would start a transaction)
    "connect": ("greeting", "ehlo", "mail", "rcpt"),
    "helo": ("ehlo", "mail", "rcpt"),
    "envfrom": ("mail",),
    "envrcpt": ("rcpt",),
    "data": ("data",),
    "header": ("end",),
    "eoh": ("end",),
    "body": ("end",),
    "eom": ("end",),
}


def wire(message):
    """The DATA section of message: dot-stuffed, ending CRLF.CRLF."""
    lines = message.split("\r\n")
    if lines[-1] == "":
        lines.pop()
    return "".join(("." + l if l.startswith(".") else l) + "\r\n" for l in lines) + ".\r\n"


class MilterClientCase(PosternTestCase):

    def setUp(self):
        super().setUp()
        why = milter_unusable()
        if why:
            self.fail(why)

    def milter(self, script="", inet=False, name="milter", script_in_env=False):
        m = TestMilter(script, inet=inet, name=name, script_in_env=script_in_env)
        self.addCleanup(m.remove)
        return m

    def server(self, milters, action="tempfail", config=None, **kwargs):
        settings = {"milters": ", ".join(m if isinstance(m, str) else m.spec for m in milters),
                    "milter_default_action": action}
        settings.update(config or {})
        return self.start_server(users=USERS, config=settings, **kwargs)

    def dialogue(self, srv, rcpts=("bob@example.test",), message=MESSAGE, tls=False,
                 port=None, login=None):
        """One transaction. Returns (step, Reply): the first step whose
        reply is not a success ("greeting", "ehlo", "mail", "rcpt" when no
        recipient was taken, "data", "end"), or ("done", the 250 after the
        data). self.rcpt_replies keeps every RCPT reply."""
        self.rcpt_replies = {}
        c = SmtpConn(port or srv.port, timeout=scaled(30))
        self.addCleanup(c.close)
        if c.greeting.code != 220:
            return "greeting", c.greeting
        r = c.cmd("EHLO client.test")
        if r.code != 250:
            return "ehlo", r
        if tls:
            c.starttls()
            r = c.cmd("EHLO client.test")
            if r.code != 250:
                return "ehlo", r
        if login is not None:
            import base64
            token = base64.b64encode(("\0%s\0%s" % login).encode()).decode()
            r = c.cmd("AUTH PLAIN " + token)
            self.assertEqual(r.code, 235, r)
        r = c.cmd("MAIL FROM:<%s>" % SENDER)
        if r.code != 250:
            return "mail", r
        last = None
        for rcpt in rcpts:
            last = c.cmd("RCPT TO:<%s>" % rcpt)
            self.rcpt_replies[rcpt] = last
        if not any(r.code == 250 for r in self.rcpt_replies.values()):
            return "rcpt", last
        r = c.cmd("DATA")
        if r.code != 354:
            return "data", r
        c.send(wire(message))
        r = c.reply()
        if r.code != 250:
            return "end", r
        try:
            c.cmd("QUIT")
        except OSError:
            pass
        return "done", r

    def quiet_then_nothing_for(self, srv, user, qid):
        """Nothing of qid arrives for user (waited for a while)."""
        time.sleep(scaled(2))
        self.assertEqual(srv.files_for(user, qid), [])


class RepliesTest(MilterClientCase):
    """One server, one milter; its script changes between sessions."""

    @classmethod
    def setUpClass(cls):
        why = milter_unusable()
        if why:
            raise AssertionError(why)
        cls.the_milter = TestMilter(name="replies")
        cls.addClassCleanup(cls.the_milter.remove)
        cls.srv = cls.start_class_server(users=USERS, tls=True, config={
            "milters": cls.the_milter.spec, "milter_default_action": "tempfail"})

    def script(self, text):
        self.the_milter.set_script(text)

    def test_reject_and_tempfail_at_every_stage(self):
        for stage, steps in STAGE_STEP.items():
            for action, klass in (("reject", 5), ("tempfail", 4)):
                with self.subTest(stage=stage, action=action):
                    self.script("%s %s" % (stage, action))
                    step, r = self.dialogue(self.srv)
                    self.assertIn(step, steps, (stage, action, step, r))
                    self.assertEqual(r.code // 100, klass, (stage, action, r))
                    self.assertRegex(r.status, r"^%d\.\d+\.\d+$" % klass, r)

    def test_same_replies_over_starttls(self):
        self.script("envfrom reject")
        step, r = self.dialogue(self.srv, tls=True)
        self.assertEqual((step, r.code // 100), ("mail", 5), r)
        self.script("eom tempfail")
        step, r = self.dialogue(self.srv, tls=True)
        self.assertEqual((step, r.code // 100), ("end", 4), r)
        # smtplib, as a user's client would see it
        self.script("envrcpt@carol reject")
        with smtplib.SMTP("127.0.0.1", self.srv.port, local_hostname="client.test",
                          timeout=scaled(30)) as s:
            s.ehlo()
            s.starttls(context=client_tls_context())
            s.ehlo()
            self.assertEqual(s.mail(SENDER)[0], 250)
            self.assertEqual(s.rcpt("carol@example.test")[0] // 100, 5)
            self.assertEqual(s.rcpt("bob@example.test")[0], 250)
            code, text = s.data(MESSAGE)
            self.assertEqual(code, 250, text)
            qid = queue_id_of(text.decode())
        _, data = self.srv.wait_delivery("bob", qid)
        self.assertIn(b"Subject: milter client", data)

    def test_custom_replies(self):
        self.script("envrcpt@carol reply 450 4.2.1 carol is away, try later\n"
                    "eom reply 554 5.7.3 the test milter says no")
        step, r = self.dialogue(self.srv, rcpts=("carol@example.test", "bob@example.test"))
        self.assertEqual((self.rcpt_replies["carol@example.test"].code,
                          self.rcpt_replies["carol@example.test"].text),
                         (450, "4.2.1 carol is away, try later"))
        self.assertEqual(self.rcpt_replies["bob@example.test"].code, 250)
        self.assertEqual((step, r.code, r.text), ("end", 554, "5.7.3 the test milter says no"))
        self.script("eom mlreply 550 5.7.0 first line|second line|third line")
        step, r = self.dialogue(self.srv)
        self.assertEqual((step, r.code), ("end", 550))
        self.assertEqual(r.lines, ["5.7.0 first line", "5.7.0 second line",
                                   "5.7.0 third line"])

    def test_accept_skip_progress_deliver(self):
        for script in ("envfrom accept", "envrcpt accept", "eom accept", "eom progress",
                       "body skip", "eoh continue", "connect continue"):
            with self.subTest(script=script):
                self.script(script)
                step, r = self.dialogue(self.srv)
                self.assertEqual(step, "done", (script, r))
                _, data = self.srv.wait_delivery("bob", queue_id_of(r.text))
                self.assertIn(b"the original body", data)

    def test_skip_stops_the_body(self):
        self.script("body skip")
        big = MESSAGE.replace("second line\r\n", ("y" * 76 + "\r\n") * 4000)
        before = len(self.the_milter.events("body"))
        step, r = self.dialogue(self.srv, message=big)
        self.assertEqual(step, "done", r)
        _, data = self.srv.wait_delivery("bob", queue_id_of(r.text))
        self.assertEqual(data.count(b"y" * 76), 4000)
        # more than one chunk's worth, but the milter got only the first
        self.assertEqual(len(self.the_milter.events("body")) - before, 1)

    def test_discard_delivers_nothing(self):
        for stage in ("envfrom", "envrcpt", "eom"):
            with self.subTest(stage=stage):
                self.script("%s discard" % stage)
                step, r = self.dialogue(self.srv)
                self.assertEqual(step, "done", r)
                self.quiet_then_nothing_for(self.srv, "bob", queue_id_of(r.text))

    def test_quarantine_lands_in_the_quarantine(self):
        self.script("mod quarantine held by the test milter\neom continue")
        step, r = self.dialogue(self.srv)
        self.assertEqual(step, "done", r)
        qid = queue_id_of(r.text)
        p = self.srv.run_cli("quarantine", "list", "--json")
        self.assertEqual(p.returncode, 0, p.stderr)
        ids = [m["id"] for m in json.loads(p.stdout)["messages"]]
        self.assertIn(qid, ids)
        self.quiet_then_nothing_for(self.srv, "bob", qid)
        p = self.srv.run_cli("quarantine", "show", qid)
        self.assertIn(b"held by the test milter", p.stdout)


MODS = """
mod addheader X-Added at the end
mod insheader 0 X-Inserted at the top
mod chgheader Subject 1 changed by the milter
mod delheader X-Old 2
mod chgheader X-Old 1 folded\\n\\tvalue
mod addrcpt <dave@example.test>
mod addrcpt_par <admin@example.test> NOTIFY=NEVER
mod delrcpt <carol@example.test>
mod chgfrom <erin@example.test>
mod replacebody the new body\\nfrom the milter\\n
eom continue
"""


class ChangesTest(MilterClientCase):

    def test_every_change_in_the_maildir_and_envelope(self):
        milter = self.milter(MODS)
        srv = self.server([milter])
        step, r = self.dialogue(srv, rcpts=("bob@example.test", "carol@example.test"))
        self.assertEqual(step, "done", r)
        qid = queue_id_of(r.text)
        eom = milter.wait_event("eom")[-1]
        self.assertEqual([rc for _, rc in eom["mods"]], [0] * 10, eom["mods"])
        for user in ("bob", "dave", "admin"):
            _, data = srv.wait_delivery(user, qid)
            head, body = split_message(data)
            lines = head.split("\n")
            self.assertEqual(lines[0], "Return-Path: <erin@example.test>", user)
            self.assertEqual(lines[2], "X-Inserted: at the top")
            self.assertTrue(lines[3].startswith("Received: "), lines[:5])
            self.assertIn("Subject: changed by the milter", lines)
            self.assertNotIn("Subject: milter client", lines)
            self.assertIn("X-Old: folded\n\tvalue", head)
            self.assertNotIn("X-Old: two", head)
            self.assertEqual(lines[-1], "X-Added: at the end")
            self.assertEqual(body, b"the new body\nfrom the milter\n")
        time.sleep(scaled(1))
        self.assertEqual(srv.files_for("carol", qid), [])

    def test_large_replaced_body(self):
        milter = self.milter("mod replacebody_repeat 3000 a line of the new body, 40 bytes\\n\n"
                             "eom continue")
        srv = self.server([milter])
        step, r = self.dialogue(srv)
        self.assertEqual(step, "done", r)
        _, data = srv.wait_delivery("bob", queue_id_of(r.text))
        _, body = split_message(data)
        self.assertEqual(body, b"a line of the new body, 40 bytes\n" * 3000)

    def test_what_the_milter_is_told(self):
        sub_port = free_port()
        milter = self.milter(inet=True)
        srv = self.server([milter], tls=True, config={
            "submission_listen": "127.0.0.1:%d" % sub_port, "auth_failure_delay": "0"})
        step, r = self.dialogue(srv, tls=True, port=sub_port,
                                login=("alice@example.test", "secret"))
        self.assertEqual(step, "done", r)
        qid = queue_id_of(r.text)
        # the events of this session's milter conversation (the harness's
        # start-up probe had one of its own), once it is closed
        conn = milter.wait_event("envfrom")[-1]["conn"]
        wait_until(lambda: [e for e in milter.events("close") if e["conn"] == conn],
                   scaled(20), what="the end of the milter conversation")
        ev = [e for e in milter.events() if e["conn"] == conn]
        def of(stage):
            return [e for e in ev if e["stage"] == stage]
        stages = [e["stage"] for e in ev]
        order = ["connect", "helo", "envfrom", "envrcpt", "data", "header", "eoh", "body",
                 "eom", "close"]
        firsts = sorted(set(stages), key=stages.index)
        self.assertEqual([s for s in firsts if s in order], order, stages)
        # EHLO again after STARTTLS: helo again, on the same conversation
        self.assertEqual(len(of("helo")), 2, stages)
        connect = of("connect")[0]
        self.assertEqual(connect["args"][1], "127.0.0.1")
        self.assertEqual(connect["macros"].get("{client_addr}"), "127.0.0.1")
        self.assertEqual(connect["macros"].get("j"), "mx.example.test")
        self.assertNotIn("{tls_version}", of("helo")[0]["macros"])
        helo = of("helo")[-1]
        self.assertEqual(helo["args"], ["client.test"])
        self.assertRegex(helo["macros"].get("{tls_version}", ""), r"^TLSv1\.[23]$")
        envfrom = of("envfrom")[0]
        self.assertEqual(envfrom["args"][0], "<alice@example.test>")
        self.assertEqual(envfrom["macros"].get("{auth_authen}"), "alice@example.test")
        self.assertEqual(of("envrcpt")[0]["args"][0], "<bob@example.test>")
        headers = [e["args"] for e in of("header")]
        self.assertIn(["Subject", "milter client"], headers)
        self.assertIn(["X-Old", "two"], headers)
        body = "".join(e["args"][0] for e in of("body"))
        self.assertEqual(body, "the original body\r\nsecond line\r\n")
        self.assertEqual(of("eom")[0]["macros"].get("i"), qid)


class SeveralMiltersTest(MilterClientCase):

    def test_two_milters_in_order(self):
        first = self.milter("envrcpt@carol reject\nmod addheader X-First-Milter yes\n"
                            "eom continue", name="first")
        second = self.milter("mod addheader X-Second-Milter yes\neom continue",
                             inet=True, name="second")
        srv = self.server([first, second])
        step, r = self.dialogue(srv, rcpts=("carol@example.test", "bob@example.test"))
        self.assertEqual(step, "done", r)
        self.assertEqual(self.rcpt_replies["carol@example.test"].code // 100, 5)
        _, data = srv.wait_delivery("bob", queue_id_of(r.text))
        head, _ = split_message(data)
        self.assertLess(head.index("X-First-Milter: yes"), head.index("X-Second-Milter: yes"))
        # the second milter never heard of the recipient the first refused
        rcpts = [e["args"][0] for e in second.events("envrcpt")]
        self.assertEqual(rcpts, ["<bob@example.test>"])

    def test_a_refusal_by_the_first_stops_the_second(self):
        # (this one reads its script from the environment)
        first = self.milter("envfrom reject", name="first", script_in_env=True)
        second = self.milter(name="second")
        srv = self.server([first, second])
        step, r = self.dialogue(srv)
        self.assertEqual((step, r.code // 100), ("mail", 5), r)
        time.sleep(scaled(0.5))
        self.assertEqual(second.events("envfrom"), [])


class DefaultActionTest(MilterClientCase):
    """A milter that is not there: milter_default_action decides."""

    def missing(self):
        d = self.milter().dir  # a folder that exists, a socket that does not
        return "unix:" + os.path.join(d, "nobody-listens.sock")

    def test_tempfail(self):
        srv = self.server([self.missing()], action="tempfail")
        step, r = self.dialogue(srv)
        self.assertNotEqual(step, "done", r)
        self.assertEqual(r.code // 100, 4, r)

    def test_reject(self):
        srv = self.server([self.missing()], action="reject")
        step, r = self.dialogue(srv)
        self.assertNotEqual(step, "done", r)
        self.assertEqual(r.code // 100, 5, r)

    def test_continue(self):
        srv = self.server([self.missing()], action="continue")
        step, r = self.dialogue(srv)
        self.assertEqual(step, "done", r)
        srv.wait_delivery("bob", queue_id_of(r.text))

    def test_down_after_start(self):
        milter = self.milter("mod addheader X-Seen yes\neom continue", inet=True)
        srv = self.server([milter], action="tempfail")
        step, r = self.dialogue(srv)
        self.assertEqual(step, "done", r)
        milter.stop()
        step, r = self.dialogue(srv)
        self.assertNotEqual(step, "done", r)
        self.assertEqual(r.code // 100, 4, r)

"""
test_spam_default_rules.py - postern's own default spam rules
(etc/spam-rules.cf, issue 8) as an administrator uses them: named by
spam_rules_file, read strictly, run by `postern scan` (the same pipeline
as the scanners).

Checked: check-config takes the file; GTUBE is refused (550 5.7.1) with
the default scores; a message with the tricks the rules are for (an
address in the From name, a Message-ID without @, no Date, a Subject
encoded though plain ASCII and one with look-alike letters, links to an
IP address, through a shortener, to a punycode host, with text naming
another domain, hidden text, obfuscated drug words, a placeholder of
bulk-mail software) is refused, or with no refusal score tagged, with
those rules named; an ordinary reply
between two people is not; and SpamAssassin itself lints the file clean
(with tools/eval/PosternEvals.pm, which gives it postern's own eval
tests), which shows the file is SpamAssassin's syntax.
"""
import base64
import json
import os
import shutil
import subprocess
import tempfile

from harness import POSTERN_BIN, REPO, PosternTestCase, scaled

RULES = os.path.join(REPO, "etc", "spam-rules.cf")


def crlf(text):
    return text.replace("\r\n", "\n").replace("\n", "\r\n").encode()


HAM = crlf("""\
From: Alice Example <alice@example.test>
To: Bob Example <bob@example.test>
Subject: Re: minutes of Tuesday's meeting
Date: Tue, 03 Sep 2024 10:15:00 +0200
Message-ID: <20240903101500.1234@example.test>
In-Reply-To: <20240902170000.99@example.test>
MIME-Version: 1.0
Content-Type: text/plain; charset=us-ascii

Hi Bob,

thanks for the notes. I added two points about the build server and the
release date; could you check them before Thursday?

Alice
""")

GTUBE = crlf("""\
From: tester@example.test
To: bob@example.test
Subject: test
Date: Tue, 03 Sep 2024 10:15:00 +0200
Message-ID: <gtube.1@example.test>

XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X
""")


def tricks_message():
    subject = base64.b64encode(b"Your account is locked").decode()
    return crlf("""\
From: "service@bank.example" <x9@elsewhere.example>
To: bob@example.test
Subject: =?utf-8?B?%s?=
Message-ID: nobracketnoat
MIME-Version: 1.0
Content-Type: text/html; charset=utf-8

<html><body>
<p>Cheap v1agra here: <a href="http://192.0.2.7/login">http://www.bank.example/login</a>,
<a href="http://xn--bnk-sla.example/">our branch</a>, <a href="http://bit.ly/x1">more</a>. {%%RAND}</p>
<p style="display:none">words nobody sees, words nobody sees, words nobody sees</p>
</body></html>
""" % subject)


def lookalike_message():
    # "pаypal" with a Cyrillic a, encoded as a sender's mail client would
    subject = base64.b64encode("p\u0430ypal account".encode()).decode()
    return crlf("""\
From: a@b.example
To: bob@example.test
Subject: =?utf-8?B?%s?=
Date: Tue, 03 Sep 2024 10:15:00 +0200
Message-ID: <look.1@b.example>

Please confirm.
""" % subject)


class DefaultSpamRulesTest(PosternTestCase):
    """`postern scan` with spam_rules_file = etc/spam-rules.cf."""

    def setUp(self):
        super().setUp()
        self.srv = self.start_server(start=False, config={"spam_rules_file": RULES})

    def scan(self, data):
        path = os.path.join(self.srv.dir, "msg.eml")
        with open(path, "wb") as f:
            f.write(data)
        p = subprocess.run([POSTERN_BIN, "scan", "--json", "-c", self.srv.conf_path, path],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=scaled(30))
        self.assertIn(p.returncode, (0, 1), p.stderr.decode())
        return json.loads(p.stdout.decode().splitlines()[0])

    def spam_status(self, verdict):
        fields = [h for h in verdict["headers"] if h.lower().startswith("x-spam-status:")]
        self.assertEqual(len(fields), 1, verdict)
        return fields[0]

    def rules_hit(self, verdict):
        return {h[5:] for h in verdict["hits"] if h.startswith("spam:") and "=" not in h}

    def test_check_config_takes_the_file(self):
        p = subprocess.run([POSTERN_BIN, "check-config", "-c", self.srv.conf_path],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=scaled(30))
        out = p.stdout.decode() + p.stderr.decode()
        self.assertNotIn("spam-rules.cf:", out)  # a problem would be named FILE:LINE
        self.assertRegex(out, r"spam: \d+ rules")

    def test_gtube_is_refused(self):
        v = self.scan(GTUBE)
        self.assertEqual(v["action"], "reject")
        self.assertEqual(v["code"], 550)
        self.assertEqual(v["status"], "5.7.1")
        self.assertIn("PST_GTUBE", self.rules_hit(v))

    def test_ordinary_reply_is_ham(self):
        v = self.scan(HAM)
        self.assertEqual(v["action"], "accept")
        self.assertRegex(self.spam_status(v), r"^X-Spam-Status: No, score=\d+\.\d")
        self.assertFalse(self.rules_hit(v) - {"PST_RCVD_FORGED_HTML"}, v["hits"])

    def test_tricks_are_tagged_by_name(self):
        v = self.scan(tricks_message())
        self.assertEqual(v["action"], "reject")  # above spam_reject_score (15)
        self.srv.settings["spam_reject_score"] = "0"  # never refused: tagged
        self.srv.write_config()
        v = self.scan(tricks_message())
        self.assertEqual(v["action"], "tag")
        self.assertRegex(self.spam_status(v), r"^X-Spam-Status: Yes, score=")
        hit = self.rules_hit(v)
        for rule in ("PST_FROM_NAME_ADDR", "PST_MSGID_NO_AT", "PST_NO_DATE", "PST_SUBJ_ENCODED_ASCII",
                     "PST_HTML_ONLY", "PST_URI_IP", "PST_URI_SHORTENER", "PST_URI_PUNYCODE",
                     "PST_URI_TEXT_MISMATCH", "PST_HTML_HIDDEN_STYLE", "PST_OBFU_DRUG",
                     "PST_TEMPLATE_LEFTOVER"):
            self.assertIn(rule, hit)

    def test_lookalike_subject(self):
        v = self.scan(lookalike_message())
        self.assertIn("PST_SUBJ_LOOKALIKE", self.rules_hit(v))

    def test_spamassassin_lints_the_file(self):
        if shutil.which("spamassassin") is None:
            self.skipTest("spamassassin (Debian package) is not installed")
        with tempfile.TemporaryDirectory() as d:
            rules, site = os.path.join(d, "rules"), os.path.join(d, "site")
            os.mkdir(rules)
            os.mkdir(site)
            for f in os.listdir("/etc/spamassassin"):
                if f.endswith(".pre"):
                    shutil.copy(os.path.join("/etc/spamassassin", f), site)
            with open(os.path.join(site, "zz_postern.pre"), "w") as f:
                f.write("loadplugin PosternEvals %s\n" % os.path.join(REPO, "tools", "eval", "PosternEvals.pm"))
            # the list of top-level domains SpamAssassin's link parser needs
            os.symlink("/usr/share/spamassassin/20_aux_tlds.cf", os.path.join(rules, "20_aux_tlds.cf"))
            os.symlink(RULES, os.path.join(rules, "50_postern.cf"))
            p = subprocess.run(["spamassassin", "--lint", "--configpath=" + rules, "--siteconfigpath=" + site],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=scaled(120))
            self.assertEqual(p.returncode, 0, p.stderr.decode())

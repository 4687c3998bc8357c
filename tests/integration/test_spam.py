"""
test_spam.py - spam scoring as a user sees it (issue 8), over STARTTLS as
most senders send: GTUBE is refused during DATA with 550 5.7.1; ham is
delivered with "X-Spam-Status: No, ..."; spam is delivered tagged with
SpamAssassin's fields and the subject prefix; X-Spam-* fields that arrive
with a message are gone from the delivered copy. Then Bayes: after
`postern learn`, `postern scan` puts a message in a BAYES band, and
SpamAssassin's own rule files from the Debian package load, with the
summary of what was skipped in the log.

The rules of the SMTP tests are a small file of our own, so that the
scores are known exactly.
"""
import os
import re
import subprocess
import tempfile
import unittest

from harness import (POSTERN_BIN, PosternServer, PosternTestCase, SmtpConn, queue_id_of,
                     scaled, split_message, unfold)

SA_RULES = "/usr/share/spamassassin"
CORPUS = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))), "..", "shared", "corpus", "train")
GTUBE = "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X"

RULES = r"""
# postern's tests: a few rules with known scores
body     T_GTUBE        /XJS\*C4JDBQADN1\.NSBN3\*2IDNEN\*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL\*C\.34X/
describe T_GTUBE        The test string every spam filter knows
score    T_GTUBE        1000
header   T_PILLS        Subject =~ /cheap pills/i
describe T_PILLS        Sells pills in the Subject
score    T_PILLS        4.0
body     T_CLICK        /click here now/i
describe T_CLICK        Pushes to click
score    T_CLICK        2.5
body     T_BAYES_99     eval:check_bayes('0.99', '1.00')
score    T_BAYES_99     0 0 3.5 3.5
body     T_BAYES_00     eval:check_bayes('0.00', '0.01')
score    T_BAYES_00     0 0 -1.5 -1.5
body     T_FOLDING_NEEDS_A_RATHER_LONG_NAME_1 /fold the status/
score    T_FOLDING_NEEDS_A_RATHER_LONG_NAME_1 0.1
body     T_FOLDING_NEEDS_A_RATHER_LONG_NAME_2 /fold the status/
score    T_FOLDING_NEEDS_A_RATHER_LONG_NAME_2 0.1
body     T_FOLDING_NEEDS_A_RATHER_LONG_NAME_3 /fold the status/
score    T_FOLDING_NEEDS_A_RATHER_LONG_NAME_3 0.1
"""


def rules_file(testcase_class):
    """RULES in a file the scan master (an unprivileged user) can read,
    removed when the class is done."""
    fd, path = tempfile.mkstemp(prefix="postern-spam-rules-", suffix=".cf")
    with os.fdopen(fd, "w") as f:
        f.write(RULES)
    os.chmod(path, 0o644)
    testcase_class.addClassCleanup(os.unlink, path)
    return path


def message(subject, body, extra=""):
    return ("From: <sender@remote.test>\r\nTo: <alice@example.test>\r\n"
            "Subject: %s\r\nDate: Mon, 30 Nov 2026 10:00:00 +0000\r\n"
            "Message-ID: <%s@remote.test>\r\n%s\r\n%s\r\n"
            % (subject, abs(hash((subject, body))), extra, body))


def header_values(head, name):
    out = []
    for line in unfold(head).splitlines():
        if line.lower().startswith(name.lower() + ":"):
            out.append(line.split(":", 1)[1].strip())
    return out


class SpamSmtpTest(PosternTestCase):

    @classmethod
    def setUpClass(cls):
        cls.srv = cls.start_class_server(users=["alice"], tls=True, config={
            "spam_rules_file": rules_file(cls), "spam_subject_prefix": "****SPAM****",
            "spam_report": "yes"})

    def send(self, data):
        c = SmtpConn(self.srv.port, timeout=scaled(30))
        self.addCleanup(c.close)
        c.ehlo()
        c.starttls()
        c.ehlo()
        self.start_data(c, "sender@remote.test", ["alice@example.test"])
        c.send(data + ".\r\n")
        return c.reply()

    def delivered(self, data):
        r = self.send(data)
        self.assertReply(r, 250)
        _, raw = self.srv.wait_delivery("alice", queue_id_of(r.text))
        head, body = split_message(raw)
        return head, body

    def test_gtube_is_refused_during_data(self):
        r = self.send(message("hello", "Here it is:\r\n" + GTUBE))
        self.assertReply(r, 550, "5.7.1")
        self.assertIn("refused as spam", r.text)
        self.assertRegex(self.srv.log(), r"scan action=reject reason=spam")

    def test_ham_is_delivered_with_status_no_and_forged_fields_removed(self):
        head, _ = self.delivered(message(
            "lunch", "Noon at the usual place?",
            extra="X-Spam-Flag: YES\r\nX-Spam-Status: Yes, score=99 forged\r\n"))
        self.assertEqual(header_values(head, "X-Spam-Flag"), [])
        status = header_values(head, "X-Spam-Status")
        self.assertEqual(len(status), 1, head)
        self.assertTrue(status[0].startswith("No, score=0.0 required=5.0 tests=none"), status)
        self.assertEqual(header_values(head, "X-Spam-Score"), ["0.0"])
        self.assertEqual(header_values(head, "Subject"), ["lunch"])

    def test_spam_is_tagged_with_fields_and_subject_prefix(self):
        head, body = self.delivered(message("Cheap pills", "Click here now!"))
        self.assertEqual(header_values(head, "X-Spam-Flag"), ["YES"])
        self.assertEqual(header_values(head, "X-Spam-Score"), ["6.5"])
        self.assertEqual(header_values(head, "X-Spam-Level"), ["******"])
        status = header_values(head, "X-Spam-Status")[0]
        self.assertRegex(status, r"^Yes, score=6\.5 required=5\.0 tests=T_CLICK,T_PILLS ")
        self.assertIn("autolearn=disabled", status)
        report = header_values(head, "X-Spam-Report")[0]
        self.assertIn("4.0 T_PILLS Sells pills in the Subject", report)
        self.assertEqual(header_values(head, "Subject"), ["****SPAM**** Cheap pills"])
        self.assertIn(b"Click here now!", body)

    def test_a_folded_status_keeps_every_comma(self):
        head, _ = self.delivered(message("long names", "Please fold the status line."))
        self.assertRegex(head, r"X-Spam-Status: No, [^\n]*,\n\t", "not folded after a comma")
        status = header_values(head, "X-Spam-Status")[0]
        tests = "".join(status.split("tests=", 1)[1].split(" autolearn=")[0].split())
        self.assertEqual(tests.split(","), ["T_FOLDING_NEEDS_A_RATHER_LONG_NAME_%d" % i
                                            for i in (1, 2, 3)])

    def test_scan_prints_a_folded_status_on_one_line(self):
        path = os.path.join(self.srv.dir, "fold.eml")
        with open(path, "w") as f:
            f.write(message("long names", "Please fold the status line.").replace("\r\n", "\n"))
        p = subprocess.run([POSTERN_BIN, "scan", "-c", self.srv.conf_path, path],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           universal_newlines=True, timeout=scaled(60))
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        self.assertEqual(len(p.stdout.splitlines()), 1, p.stdout)
        status = re.search(r'header="X-Spam-Status: ([^"]*)"', p.stdout)
        self.assertIsNotNone(status, p.stdout)
        self.assertNotIn("?", status.group(1))
        self.assertIn("T_FOLDING_NEEDS_A_RATHER_LONG_NAME_1,", status.group(1))
        self.assertIn("_NAME_3 autolearn=", status.group(1))


@unittest.skipUnless(os.path.isdir(CORPUS), "needs ../shared/corpus/train")
class BayesScanTest(PosternTestCase):
    """postern learn, then postern scan: the Bayes band moves."""

    def test_learning_moves_the_bayes_band(self):
        srv = PosternServer(name="BayesScanTest", config={
            "spam_rules_file": rules_file(type(self)), "bayes_dir": "bayes",
            "bayes_min_learned": "20", "bayes_autolearn": "no"})
        self.addCleanup(srv.remove)
        spam = sorted(os.listdir(os.path.join(CORPUS, "spam")))
        ham = sorted(os.listdir(os.path.join(CORPUS, "ham")))
        held = os.path.join(CORPUS, "spam", spam[0])
        scan = [POSTERN_BIN, "scan", "-c", srv.conf_path, held]
        before = subprocess.run(scan, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                universal_newlines=True, timeout=scaled(60))
        self.assertNotIn("T_BAYES_99", before.stdout, before.stdout + before.stderr)
        for label, names in (("spam", spam[1:201]), ("ham", ham[:200])):
            p = subprocess.run([POSTERN_BIN, "learn", "-c", srv.conf_path, "--" + label] +
                               [os.path.join(CORPUS, label, n) for n in names],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               universal_newlines=True, timeout=scaled(300))
            self.assertEqual(p.returncode, 0, p.stderr)
        after = subprocess.run(scan, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               universal_newlines=True, timeout=scaled(60))
        self.assertIn("spam:T_BAYES_99", after.stdout, after.stdout + after.stderr)
        self.assertIn("X-Spam-Status:", after.stdout)


@unittest.skipUnless(os.path.isdir(SA_RULES), "needs the spamassassin package's rules")
class SpamAssassinRulesTest(PosternTestCase):

    def test_debian_rules_load_and_catch_gtube(self):
        srv = PosternServer(name="SpamAssassinRulesTest", config={
            "spam_rules_dirs": SA_RULES})
        self.addCleanup(srv.remove)
        path = os.path.join(srv.dir, "gtube.eml")
        with open(path, "w") as f:
            f.write(message("hi", GTUBE).replace("\r\n", "\n"))
        p = subprocess.run([POSTERN_BIN, "scan", "-c", srv.conf_path, path],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           universal_newlines=True, timeout=scaled(120))
        self.assertEqual(p.returncode, 1, p.stdout + p.stderr)
        self.assertIn("reject code=550 status=5.7.1 reason=spam", p.stdout)
        self.assertIn("spam:GTUBE", p.stdout)
        self.assertRegex(p.stderr, r"20_html_tests\.cf: \d+ rules skipped: ")
        self.assertRegex(p.stderr, r"spam: \d{4} rules, tag at 5\.0")


if __name__ == "__main__":
    unittest.main()

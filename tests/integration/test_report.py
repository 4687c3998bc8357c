"""
test_report.py - postern report on the log of a real server run.

A server with the test virus signatures, a small spam rule set and a
sender access map receives, from smtplib clients, messages whose fate is
known in advance: clean ones delivered, one tagged as spam, one
quarantined, two refused by the sender restriction, one refused for an
unknown user, one refused as a virus (EICAR), one bounced (an alias to
a missing mailbox; its bounce is delivered to the sender) and one that
asks for a success report (NOTIFY=SUCCESS, delivered to its sender). The report's
text, JSON and HTML must all show those counts; the same log read
gzip-compressed, split into a rotated pair and from standard input gives
the same JSON; lines that are not postern's are counted with FILE:LINE,
never fatal; the HTML page renders in headless Chromium with its charts.
"""
import gzip
import json
import os
import re
import shutil
import smtplib
import struct
import subprocess
import sys
import tempfile
import unittest
import zlib

from harness import (POSTERN_BIN, REPO, SANITIZED, PosternServer, PosternTestCase, make_message, scaled, smtplib_send,
                     wait_until)
from clamd_peer import TEST_SIGNATURES
import test_spam

# The EICAR test file, from two halves: no file of the tree is a test virus.
EICAR = "X5O!P%@AP[4\\PZX54(P^)7CC)7}$" + "EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"
EICAR_NAME = "Postern.Test.EICAR.UNOFFICIAL"

# What the run below must produce.
KNOWN = {"received": 7, "delivered": 8, "deferred": 0, "bounced": 1, "rejected": 4,
         "quarantined": 1}


def png_colour_counts(data, colours):
    """How many pixels of an 8-bit RGB or RGBA PNG (not interlaced, as
    Chromium writes its screenshots) have each of the colours
    ("#rrggbb"), within a small tolerance for anti-aliasing."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat = 8, b""
    while pos < len(data):
        n, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + n]
        if kind == b"IHDR":
            width, height, depth, ctype, _, _, interlace = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat += body
        pos += 12 + n
    assert depth == 8 and ctype in (2, 6) and interlace == 0, (depth, ctype, interlace)
    bpp = 3 if ctype == 2 else 4
    raw, stride = zlib.decompress(idat), width * bpp
    prev, rows, i = bytearray(stride), [], 0
    for _ in range(height):
        ftype, line = raw[i], bytearray(raw[i + 1:i + 1 + stride])
        i += 1 + stride
        for x in range(stride):
            a = line[x - bpp] if x >= bpp else 0
            b, c = prev[x], prev[x - bpp] if x >= bpp else 0
            if ftype == 1:
                line[x] = (line[x] + a) & 255
            elif ftype == 2:
                line[x] = (line[x] + b) & 255
            elif ftype == 3:
                line[x] = (line[x] + (a + b) // 2) & 255
            elif ftype == 4:
                pa, pb, pc = abs(b - c), abs(a - c), abs(a + b - 2 * c)
                line[x] = (line[x] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        rows.append(bytes(line))
        prev = line
    want = {c: tuple(int(c[k:k + 2], 16) for k in (1, 3, 5)) for c in colours}
    counts = dict.fromkeys(colours, 0)
    for row in rows:
        for x in range(0, stride, bpp):
            px = row[x:x + 3]
            for name, rgb in want.items():
                if all(abs(px[k] - rgb[k]) <= 8 for k in range(3)):
                    counts[name] += 1
    return counts


def chromium():
    for name in ("chromium", "chromium-browser"):
        path = shutil.which(name)
        if path:
            return path
    return None


class ReportTest(PosternTestCase):

    @classmethod
    def setUpClass(cls):
        fd, rules = tempfile.mkstemp(prefix="postern-report-rules-", suffix=".cf")
        with os.fdopen(fd, "w") as f:
            f.write(test_spam.RULES)
        os.chmod(rules, 0o644)
        cls.addClassCleanup(os.unlink, rules)
        aliases = {"postmaster": ["admin"], "broken": ["nosuchuser"]}
        srv = PosternServer(name=cls.__name__, aliases=aliases, config={
            "clamav_db_dir": TEST_SIGNATURES, "spam_rules_file": rules,
            "spam_tag_score": "3", "spam_quarantine_score": "6",
            "spam_reject_score": "100",
            "sender_restrictions": "check_sender_access file:senders"})
        cls.addClassCleanup(cls._class_cleanup, srv)
        with open(os.path.join(srv.dir, "senders"), "w") as f:
            f.write("bad@spammer.test REJECT go away\n")
        srv.start()
        cls.class_server = srv
        cls.run_traffic(srv)
        cls.log = srv.log_path
        cls.tmp = tempfile.mkdtemp(prefix="postern-report-")
        cls.addClassCleanup(shutil.rmtree, cls.tmp, True)

    @classmethod
    def run_traffic(cls, srv):
        def send(sender, rcpts, msg):
            try:
                return smtplib_send(srv.port, sender, rcpts, msg)
            except (smtplib.SMTPRecipientsRefused, smtplib.SMTPDataError,
                    smtplib.SMTPSenderRefused, AssertionError):
                return None
        ok = [send("sender@remote.test", ["alice@example.test"], make_message("one")),
              send("sender@remote.test", ["alice@example.test", "bob@example.test"],
                   make_message("two")),
              send("other@else.test", ["bob@example.test"], make_message("three")),
              send("sender@remote.test", ["alice@example.test"],
                   make_message("cheap pills", "hello\r\n")),          # tagged, 4.0
              send("sender@remote.test", ["alice@example.test"],
                   make_message("cheap pills", "click here now\r\n")),  # quarantined, 6.5
              send("carol@example.test", ["broken@example.test"], make_message("bounce"))]
        assert all(ok), ok
        # A delivery status notification of success (RFC 3461 NOTIFY=SUCCESS):
        # delivered to bob, and the report delivered to carol.
        with smtplib.SMTP("127.0.0.1", srv.port, local_hostname="client.test",
                          timeout=scaled(15)) as c:
            c.sendmail("carol@example.test", ["bob@example.test"],
                       make_message("confirm").encode(), rcpt_options=["NOTIFY=SUCCESS"])
        refused = [send("bad@spammer.test", ["alice@example.test"], make_message("x")),
                   send("bad@spammer.test", ["bob@example.test"], make_message("y")),
                   send("sender@remote.test", ["nobody@example.test"], make_message("z")),
                   send("sender@remote.test", ["alice@example.test"],
                        make_message("eicar", EICAR + "\r\n"))]
        assert refused == [None] * 4, refused
        # Every delivery (and the bounce's) is logged before the report runs.
        wait_until(lambda: len(re.findall(r"status=sent", srv.log())) >= KNOWN["delivered"]
                   and "status=bounced" in srv.log()
                   and len(re.findall(r": removed\n", srv.log())) >= 8,
                   scaled(20), what="deliveries logged")

    def report(self, *args, stdin=None):
        p = subprocess.run([POSTERN_BIN, "report"] + list(args), input=stdin,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=scaled(30))
        self.assertEqual(p.returncode, 0, p.stderr)
        return p.stdout.decode("utf-8")

    def known_json(self, *args, stdin=None):
        doc = json.loads(self.report("--json", *args, stdin=stdin))
        return doc, {k: doc[k] for k in KNOWN}

    def test_json_counts_are_the_known_ones(self):
        doc, counts = self.known_json(self.log)
        self.assertEqual(counts, KNOWN)
        rej = doc["rejections"]
        names = lambda rows: {r["name"]: r["count"] for r in rows}
        self.assertEqual(names(rej["by_reason"]),
                         {"check_sender_access": 2, "unknown_user": 1, "virus": 1})
        self.assertEqual(names(rej["by_restriction"]),
                         {"check_sender_access": 2, "reject_unlisted_recipient": 1})
        self.assertEqual(names(rej["by_virus"]), {EICAR_NAME: 1})
        self.assertEqual(names(rej["by_stage"]), {"RCPT": 3, "end-of-data": 1})
        self.assertEqual(names(doc["scan"]["scan_actions"]),
                         {"accept": 5, "tag": 1, "quarantine": 1, "reject": 1})
        self.assertEqual((doc["bounce_notices"], doc["success_notices"]), (1, 1))
        self.assertEqual(names(doc["scan"]["rules_hit"]), {"spam:T_PILLS": 2, "spam:T_CLICK": 1})
        self.assertEqual(names(doc["top"]["senders"]),
                         {"sender@remote.test": 4, "other@else.test": 1,
                          "carol@example.test": 2})
        self.assertEqual(names(doc["top"]["recipients"]),
                         {"alice@example.test": 3, "bob@example.test": 3,
                          "carol@example.test": 2})
        self.assertEqual(names(doc["top"]["sender_domains"]),
                         {"remote.test": 4, "else.test": 1, "example.test": 2})
        self.assertEqual(names(doc["top"]["rejected_clients"]), {"127.0.0.1": 4})
        # the accepted line names the client (issue 13): messages by client
        self.assertEqual(names(doc["top"]["message_clients"]), {"127.0.0.1": KNOWN["received"]})
        scores = {b["bucket"]: b["count"] for b in doc["histograms"]["spam_score"]}
        self.assertEqual((scores["4 - 5"], scores["6 - 7"]), (1, 1))
        self.assertEqual(sum(b["count"] for b in doc["histograms"]["size"]), KNOWN["received"])
        self.assertEqual(sum(b["count"] for b in doc["histograms"]["delay"]),
                         KNOWN["delivered"])
        self.assertEqual(sum(h["received"] for h in doc["hourly"]), KNOWN["received"])
        self.assertEqual(sum(h["rejected"] for h in doc["hourly"]), KNOWN["rejected"])
        self.assertTrue(doc["top_counts_exact"])
        # The harness's own marker lines are the only ones not understood.
        markers = sum(1 for l in open(self.log, encoding="utf-8", errors="replace")
                      if l.startswith("--- test harness"))
        self.assertEqual(doc["lines"]["not_understood"], markers, doc["lines"]["samples"])

    def test_text_shows_the_same_counts(self):
        text = self.report(self.log)
        for key, title in (("received", "Received"), ("delivered", "Delivered"),
                           ("deferred", "Deferred"), ("bounced", "Bounced"),
                           ("rejected", "Rejected"), ("quarantined", "Quarantined")):
            self.assertRegex(text, r"(?m)^  %s +%d$" % (title, KNOWN[key]))
        self.assertRegex(text, r"(?m)^ +1  %s$" % re.escape(EICAR_NAME))
        self.assertRegex(text, r"(?m)^ +2  check_sender_access$")

    def test_html_shows_the_same_counts(self):
        html = self.report("--html", self.log)
        for key, value in KNOWN.items():
            self.assertRegex(html, r'<tr id="count-%s"><td>[^<]*</td><td class="n">%d</td>'
                             % (key, value))
        self.assertGreaterEqual(html.count("<svg"), 5)
        self.assertNotIn("<script", html)
        self.assertNotRegex(html, r'(src|href)="(https?:)?//')

    def test_gzip_rotated_and_stdin_agree(self):
        with open(self.log, "rb") as f:
            data = f.read()
        gz = os.path.join(self.tmp, "postern.log.gz")
        with gzip.open(gz, "wb") as f:
            f.write(data)
        lines = data.splitlines(keepends=True)
        half = len(lines) // 2
        older = os.path.join(self.tmp, "postern.log.1.gz")
        newer = os.path.join(self.tmp, "postern.log")
        with gzip.open(older, "wb") as f:
            f.write(b"".join(lines[:half]))
        with open(newer, "wb") as f:
            f.write(b"".join(lines[half:]))
        self.assertEqual(self.known_json(gz)[1], KNOWN)
        self.assertEqual(self.known_json(older, newer)[1], KNOWN)
        self.assertEqual(self.known_json("-", stdin=data)[1], KNOWN)
        self.assertEqual(self.known_json(stdin=gzip.compress(data))[1], KNOWN)

    def test_lines_not_understood_are_counted_not_fatal(self):
        path = os.path.join(self.tmp, "mixed.log")
        with open(self.log, "rb") as f:
            data = f.read()
        junk = (b"garbage that is no log line\n"
                b"2026-11-30T10:00:00.000Z postern/qmgr[1]: info: 0123456789ABCDEF012: "
                b"a kind of event nobody wrote yet\n" + b"x" * 20000 + b"\n\xff\xfe\x00\n")
        with open(path, "wb") as f:
            f.write(junk + data)
        doc, counts = self.known_json(path)
        self.assertEqual(counts, KNOWN)
        markers = data.count(b"--- test harness")
        self.assertEqual(doc["lines"]["not_understood"], markers + 4)
        self.assertEqual(doc["lines"]["too_long"], 1)
        wheres = [s["where"] for s in doc["lines"]["samples"]]
        self.assertEqual(wheres[:4], ["%s:%d" % (path, n) for n in (1, 2, 3, 4)])
        text = self.report(path)
        self.assertIn("%s:2: 2026-11-30T10:00:00.000Z postern/qmgr[1]" % path, text)

    def test_memory_does_not_grow_with_distinct_senders(self):
        """300,000 messages from 300,000 senders plus one frequent sender:
        the tables stay bounded (space-saving), the frequent sender is
        still found first, and the counts say they are no longer exact."""
        path = os.path.join(self.tmp, "many-senders.log")
        heavy = 0
        with open(path, "w") as f:
            for i in range(300000):
                sender = "heavy@frequent.test" if i % 20 == 0 else "u%d@d%d.test" % (i, i)
                heavy += i % 20 == 0
                f.write("2026-11-30T10:%02d:00.000Z postern/smtp[1]: info: %019X: accepted "
                        "from=<%s> size=1000 nrcpt=1 protocol=ESMTP delay=0.001 flow=0.000 "
                        "commit=0.001\n" % (i % 60, i + 1, sender))
        out_path, err_path = path + ".json", path + ".err"
        # The peak RSS the kernel keeps for a process counts the image it
        # was forked from, before its exec: forked from this test runner
        # (which has grown over the whole suite) it would measure the
        # runner. So a small fresh Python forks the report and tells its
        # peak (wait4 gives the child's own).
        trampoline = ("import os, sys\n"
                      "out = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT | os.O_TRUNC)\n"
                      "err = os.open(sys.argv[2], os.O_WRONLY | os.O_CREAT | os.O_TRUNC)\n"
                      "pid = os.fork()\n"
                      "if pid == 0:\n"
                      "    os.dup2(out, 1); os.dup2(err, 2)\n"
                      "    os.execv(sys.argv[3], sys.argv[3:])\n"
                      "_, st, ru = os.wait4(pid, 0)\n"
                      "print(os.waitstatus_to_exitcode(st), ru.ru_maxrss)\n")
        try:
            r = subprocess.run([sys.executable, "-c", trampoline, out_path, err_path,
                                POSTERN_BIN, "report", "--json", path],
                               stdout=subprocess.PIPE, universal_newlines=True,
                               timeout=scaled(120))
        except subprocess.TimeoutExpired:
            self.fail("postern report took more than %ds" % scaled(120))
        status, maxrss_kb = (int(x) for x in r.stdout.split())
        with open(err_path) as f:
            self.assertEqual(status, 0, f.read())
        with open(out_path) as f:
            out = f.read()
        doc = json.loads(out)
        self.assertEqual(doc["received"], 300000)
        self.assertEqual(doc["top"]["senders"][0]["name"], "heavy@frequent.test")
        self.assertGreaterEqual(doc["top"]["senders"][0]["count"], heavy)
        self.assertFalse(doc["top_counts_exact"])
        self.assertEqual(doc["lines"]["not_understood"], 0)
        if not SANITIZED:
            self.assertLess(maxrss_kb, 64 * 1024, "peak RSS in KB")

    def test_options_anywhere_and_usage_errors(self):
        doc = json.loads(self.report(self.log, "--top", "2", "--json"))
        self.assertEqual({k: doc[k] for k in KNOWN}, KNOWN)
        self.assertEqual(len(doc["rejections"]["by_reason"]), 2)
        for args in (["--top", "0"], ["--top"], ["--bogus"], ["--top", "x", self.log]):
            p = subprocess.run([POSTERN_BIN, "report"] + args, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                               timeout=scaled(30))
            self.assertEqual(p.returncode, 2, args)
            self.assertIn(b"postern report: ", p.stderr)
            self.assertEqual(p.stdout, b"")

    def test_unreadable_file_is_an_error_naming_it(self):
        missing = os.path.join(self.tmp, "no-such.log")
        p = subprocess.run([POSTERN_BIN, "report", missing], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, timeout=scaled(30))
        self.assertEqual(p.returncode, 1)
        self.assertIn(missing.encode(), p.stderr)
        bad = os.path.join(self.tmp, "corrupt.log.gz")
        with open(bad, "wb") as f:
            f.write(gzip.compress(b"2026-11-30T10:00:00.000Z postern/smtp[1]: info: x\n" * 50)[:60])
        p = subprocess.run([POSTERN_BIN, "report", bad], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, timeout=scaled(30))
        self.assertEqual(p.returncode, 1, p.stderr)
        self.assertRegex(p.stderr.decode(), re.escape(bad) + r":\d+: unexpected end of file")
        self.assertNotIn(b"<fd:", p.stderr)

    @unittest.skipUnless(chromium(), "needs chromium (tools/install-deps.sh installs it)")
    def test_html_renders_in_headless_chromium_with_charts(self):
        page = os.path.join(self.tmp, "report.html")
        with open(page, "w", encoding="utf-8") as f:
            f.write(self.report("--html", self.log))
        shot = os.path.join(self.tmp, "report.png")
        profile = tempfile.mkdtemp(prefix="postern-chromium-")
        self.addCleanup(shutil.rmtree, profile, True)
        # --no-sandbox: Chromium's sandbox refuses to run as root.
        base = [chromium(), "--headless", "--no-sandbox", "--disable-gpu",
                "--user-data-dir=" + profile, "--window-size=1000,2000"]
        dom = subprocess.run(base + ["--dump-dom", "file://" + page], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, timeout=scaled(90))
        if dom.returncode != 0 and b"sandbox" in dom.stderr.lower():
            self.skipTest("chromium cannot run here: %s" % dom.stderr[-300:])
        self.assertEqual(dom.returncode, 0, dom.stderr[-2000:])
        rendered = dom.stdout.decode("utf-8")
        # The DOM as Chromium built it: the charts are SVG elements with bars.
        self.assertGreaterEqual(len(re.findall(r"<svg\b", rendered)), 5)
        self.assertGreaterEqual(len(re.findall(r"<rect\b", rendered)), 24 * 5)
        self.assertIn("Traffic per hour (UTC)", rendered)
        self.assertRegex(rendered, r'<tr id="count-received"><td>[^<]*</td><td class="n">%d<'
                         % KNOWN["received"])
        p = subprocess.run(base + ["--screenshot=" + shot, "file://" + page],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=scaled(90))
        self.assertEqual(p.returncode, 0, p.stderr[-2000:])
        with open(shot, "rb") as f:
            png = f.read()
        # The charts were painted: bars in the colours of the received
        # series (traffic per hour and the size histogram), of the
        # rejections by reason, and of the spam score histogram.
        counts = png_colour_counts(png, ["#3b7dd8", "#e03131", "#f08c00"])
        for colour, pixels in counts.items():
            self.assertGreater(pixels, 200, "too few %s pixels in the screenshot: %s"
                               % (colour, counts))


class GoldenOutputTest(unittest.TestCase):
    """The text and JSON reports of tests/data/report/sample.log, byte for
    byte (tests/data/report/README says how to write them again after a
    deliberate change)."""

    DATA = os.path.join(REPO, "tests", "data", "report")

    def check(self, args, golden):
        sample = os.path.join("tests", "data", "report", "sample.log")
        p = subprocess.run([POSTERN_BIN, "report"] + args + [sample], cwd=REPO,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=scaled(30))
        self.assertEqual(p.returncode, 0, p.stderr)
        got = p.stdout.decode("utf-8").replace(sample, "SAMPLE")
        with open(os.path.join(self.DATA, golden), encoding="utf-8") as f:
            self.assertEqual(got, f.read())

    def test_text(self):
        self.check([], "sample.txt")

    def test_json(self):
        self.check(["--json"], "sample.json")


if __name__ == "__main__":
    unittest.main()

"""
test_learn.py - `postern learn` (Bayes, issue 8) on real mail: ham of the
shared corpus (../shared/corpus/train, beside the checkout) learned from a
Maildir, spam from an mbox file; --stats shows the counts; the held-out
messages (every tenth, never learned) are classified with --classify:
spam high, ham low. Then, on small stores of their own: learning the same
message twice changes nothing, --forget takes one back, a message learned
as the other class moves over, too little learned means no verdict,
standard input, the errors and exit statuses, and, as root, that the
store belongs to `user` while files only root can read are still learned.

The corpus is for development and cross-validation only; the tests that
need it are skipped when it is not there.
"""
import os
import re
import shutil
import subprocess

from harness import IS_ROOT, POSTERN_BIN, REPO, PosternTestCase, PosternServer, scaled

CORPUS = os.path.join(os.path.dirname(REPO), "shared", "corpus", "train")
HELD_OUT = 10   # every tenth message is kept aside, never learned


def corpus_split(label):
    """(learned, held out) file paths of one class, in name order."""
    folder = os.path.join(CORPUS, label)
    names = sorted(os.listdir(folder))
    held = [os.path.join(folder, n) for i, n in enumerate(names) if i % HELD_OUT == 0]
    learn = [os.path.join(folder, n) for i, n in enumerate(names) if i % HELD_OUT != 0]
    return learn, held


def message(subject, body, msgid):
    return ("From: Someone <someone@example.org>\nTo: you@example.test\n"
            "Subject: %s\nMessage-ID: <%s@example.org>\nDate: Mon, 1 Jan 2024 00:00:00 +0000\n"
            "\n%s\n" % (subject, msgid, body))


class LearnTest(PosternTestCase):

    @classmethod
    def make_config(cls, name, **settings):
        srv = PosternServer(name=name, config=dict({"bayes_dir": "bayes"}, **settings))
        cls.addClassCleanup(srv.remove)
        return srv

    def learn(self, srv, *args, stdin=None):
        return subprocess.run([POSTERN_BIN, "learn", "-c", srv.conf_path] + list(args),
                              input=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              timeout=scaled(300))

    def stats(self, srv):
        p = self.learn(srv, "--stats")
        self.assertEqual(p.returncode, 0, p.stderr)
        return dict(l.split(": ", 1) for l in p.stdout.decode().splitlines())

    def probabilities(self, output):
        return [float(m) for m in re.findall(r": bayes=([0-9.]+) ", output)]


class CorpusTest(LearnTest):
    """Learn most of the corpus once, classify the rest."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        if not os.path.isdir(CORPUS):
            raise __import__("unittest").SkipTest("no corpus at %s" % CORPUS)
        cls.srv = cls.make_config(cls.__name__)
        ham, cls.held_ham = corpus_split("ham")
        spam, cls.held_spam = corpus_split("spam")
        # ham in a Maildir (half in cur/, half in new/, and a tmp/ file
        # that must be left alone); spam in one mbox file
        cls.maildir = os.path.join(cls.srv.dir, "Maildir")
        for sub in ("cur", "new", "tmp"):
            os.makedirs(os.path.join(cls.maildir, sub))
        for i, path in enumerate(ham):
            shutil.copy(path, os.path.join(cls.maildir, "cur" if i % 2 else "new",
                                           "%d.host:2," % i))
        with open(os.path.join(cls.maildir, "tmp", "half-written"), "w") as f:
            f.write(message("not delivered yet", "tmp/ is not read", "tmp"))
        cls.mbox = os.path.join(cls.srv.dir, "spam.mbox")
        with open(cls.mbox, "wb") as out:
            for path in spam:
                with open(path, "rb") as f:
                    data = f.read()
                if not data.startswith(b"From "):   # a few of the corpus have no From_ line
                    out.write(b"From spam@corpus.test Thu Aug 22 12:36:23 2002\n")
                out.write(data if data.endswith(b"\n") else data + b"\n")
                out.write(b"\n")
        cls.n_ham, cls.n_spam = len(ham), len(spam)
        run = lambda *a: subprocess.run(
            [POSTERN_BIN, "learn", "-c", cls.srv.conf_path] + list(a),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=scaled(600))
        cls.ham_run = run("--ham", cls.maildir)
        cls.spam_run = run("--spam", "--progress", cls.mbox)

    def test_learning_reports_what_it_did(self):
        for p in (self.ham_run, self.spam_run):
            self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn("%d messages: %d learned as ham, 0 already learned" % (self.n_ham, self.n_ham),
                      self.ham_run.stdout.decode())
        self.assertIn("%d messages: %d learned as spam" % (self.n_spam, self.n_spam),
                      self.spam_run.stdout.decode())
        # no progress line without a terminal or --progress; with --progress,
        # one a second at most once the run has lasted a second
        self.assertNotIn("messages, ", self.ham_run.stderr.decode())
        seconds = float(re.search(r"; ([0-9.]+) s", self.spam_run.stdout.decode()).group(1))
        lines = re.findall(r"postern learn: \d+ messages, \d+/s\n", self.spam_run.stderr.decode())
        if seconds > 1.5:
            self.assertTrue(lines, self.spam_run.stderr)
        self.assertLessEqual(len(lines), seconds + 1)

    def test_stats(self):
        st = self.stats(self.srv)
        self.assertEqual(st["spam"], str(self.n_spam))
        self.assertEqual(st["ham"], str(self.n_ham))
        self.assertTrue(st["ready"].startswith("yes"), st)
        self.assertEqual(st["messages"], "%d learned records" % (self.n_ham + self.n_spam))
        self.assertGreater(int(st["tokens"].split()[0]), 10000)
        self.assertRegex(st["size"], r"^[0-9.]+ MiB used of a [0-9.]+ MiB map$")
        self.assertEqual(st["bayes_dir"], os.path.join(self.srv.dir, "bayes"))

    def test_held_out_spam_is_high_and_ham_low(self):
        p = self.learn(self.srv, "--classify", *self.held_spam)
        self.assertEqual(p.returncode, 1, p.stderr)  # at least one looks like spam
        spam = self.probabilities(p.stdout.decode())
        p = self.learn(self.srv, "--classify", *self.held_ham)
        self.assertIn(p.returncode, (0, 1), p.stderr)
        ham = self.probabilities(p.stdout.decode())
        self.assertEqual(len(spam), len(self.held_spam))
        self.assertEqual(len(ham), len(self.held_ham))
        caught = sum(x >= 0.9 for x in spam) / len(spam)
        flagged = sum(x >= 0.9 for x in ham) / len(ham)
        cleared = sum(x <= 0.1 for x in ham) / len(ham)
        print("\n    held out: %d spam, %.1f %% at 0.9 or more; %d ham, %.1f %% at 0.9 or more, "
              "%.1f %% at 0.1 or less" % (len(spam), 100 * caught, len(ham), 100 * flagged,
                                          100 * cleared))
        self.assertGreaterEqual(caught, 0.85)
        self.assertLessEqual(flagged, 0.03)
        self.assertGreaterEqual(cleared, 0.9)
        # the status says whether any message looked like spam
        self.assertEqual(p.returncode, 1 if any(x >= 0.5 for x in ham) else 0)


class SmallStoreTest(LearnTest):
    """A store of a few messages per test."""

    def setUp(self):
        super().setUp()
        self.srv = self.make_config(self._testMethodName, bayes_min_learned="2")
        self.files = []
        for i in range(3):
            path = os.path.join(self.srv.dir, "m%d.eml" % i)
            with open(path, "w") as f:
                f.write(message("offer %d" % i, "Cheap watches, number %d, buy now" % i, "m%d" % i))
            self.files.append(path)

    def test_twice_forget_and_switch(self):
        p = self.learn(self.srv, "--spam", *self.files)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn("3 messages: 3 learned as spam, 0 already learned", p.stdout.decode())
        p = self.learn(self.srv, "--spam", *self.files)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn("3 messages: 0 learned as spam, 3 already learned", p.stdout.decode())
        before = self.stats(self.srv)
        self.assertEqual((before["spam"], before["ham"]), ("3", "0"))
        # a copy with CRLF line ends and a Received field more is the same message
        with open(self.files[0]) as f:
            copy = "Received: from relay.example.net\n" + f.read()
        p = self.learn(self.srv, "--spam", "-", stdin=copy.replace("\n", "\r\n").encode())
        self.assertIn("1 message: 0 learned as spam, 1 already learned", p.stdout.decode())
        # forgotten: gone; forgotten again: status 1, said so
        p = self.learn(self.srv, "--forget", self.files[0])
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn("1 message: 1 forgotten, 0 never learned", p.stdout.decode())
        self.assertEqual(self.stats(self.srv)["spam"], "2")
        p = self.learn(self.srv, "--spam", "--forget", self.files[0])
        self.assertEqual(p.returncode, 1, p.stderr)
        self.assertIn("0 forgotten, 1 never learned", p.stdout.decode())
        # learned as ham now: moved over
        p = self.learn(self.srv, "--ham", self.files[1])
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn("0 learned as ham, 0 already learned, 1 moved from spam", p.stdout.decode())
        st = self.stats(self.srv)
        self.assertEqual((st["spam"], st["ham"], st["messages"]), ("1", "1", "2 learned records"))

    def test_too_little_learned_to_classify(self):
        p = self.learn(self.srv, "--classify", self.files[0])
        self.assertEqual(p.returncode, 2)
        self.assertIn("Bayes has learned 0 spam and 0 ham messages, fewer than "
                      "bayes_min_learned (2) of each: it cannot classify yet", p.stderr.decode())
        self.assertEqual(p.stdout, b"")
        self.assertEqual(self.stats(self.srv)["ready"], "no (bayes_min_learned = 2 of each)")
        self.learn(self.srv, "--spam", self.files[0], self.files[1])
        ham = [os.path.join(self.srv.dir, "h%d.eml" % i) for i in range(2)]
        for i, path in enumerate(ham):
            with open(path, "w") as f:
                f.write(message("meeting %d" % i, "The agenda for the meeting, item %d" % i,
                                "h%d" % i))
        self.learn(self.srv, "--ham", *ham)
        p = self.learn(self.srv, "--classify", self.files[2])
        self.assertEqual(p.returncode, 1, p.stderr)
        self.assertRegex(p.stdout.decode(), r"^%s: bayes=0\.9\d+ tokens=\d+ known=\d+ used=\d+\n"
                         % re.escape(self.files[2]))

    def test_errors_and_statuses(self):
        p = self.learn(self.srv, "--spam", self.files[0], os.path.join(self.srv.dir, "missing"))
        self.assertEqual(p.returncode, 2)
        self.assertIn("missing: cannot read: No such file or directory", p.stderr.decode())
        self.assertIn("1 message: 1 learned as spam", p.stdout.decode())
        empty = os.path.join(self.srv.dir, "empty")
        open(empty, "w").close()
        p = self.learn(self.srv, "--spam", empty)
        self.assertEqual(p.returncode, 1)
        self.assertIn("empty: empty, left out", p.stderr.decode())
        for args, text in ((["--spam"], "name at least one message FILE"),
                           (["--spam", "--ham", "x"], "choose one of"),
                           (["--bogus", "x"], "unknown option --bogus"),
                           (["--stats", "x"], "take no FILE"),
                           ([], "say what to do")):
            p = self.learn(self.srv, *args)
            self.assertEqual(p.returncode, 2, args)
            self.assertIn(text, p.stderr.decode(), args)
        self.srv.settings["message_size_limit"] = "2k"
        self.srv.write_config()
        big = os.path.join(self.srv.dir, "big.eml")
        with open(big, "w") as f:
            f.write(message("big", "x" * 3000, "big"))
        p = self.learn(self.srv, "--ham", big)
        self.assertEqual(p.returncode, 1)
        self.assertIn("larger than message_size_limit (2048 bytes), left out", p.stderr.decode())
        self.srv.settings["bayes_dir"] = ""
        self.srv.write_config()
        p = self.learn(self.srv, "--stats")
        self.assertEqual(p.returncode, 2)
        self.assertIn("bayes_dir is not set: Bayes is off", p.stderr.decode())

    def test_expire_now(self):
        self.learn(self.srv, "--ham", *self.files)
        p = self.learn(self.srv, "--expire")
        self.assertEqual(p.returncode, 0, p.stderr)
        # everything was learned today: nothing is old enough to go
        self.assertRegex(p.stdout.decode(), r"^postern learn: 0 tokens expired, \d+ kept\n$")
        self.assertRegex(self.stats(self.srv)["last expiry"], r"^\d{4}-\d\d-\d\d$")

    def test_root_learns_as_user(self):
        if not IS_ROOT:
            self.skipTest("needs root: only then does postern learn change account")
        # only root can read the messages; the store is made for `user`
        # (nobody, the harness's) and belongs to it
        secret = os.path.join(self.srv.dir, "secret")
        os.mkdir(secret, 0o700)
        for path in self.files:
            os.chmod(path, 0o600)
            shutil.copy(path, secret)
        p = self.learn(self.srv, "--spam", secret)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn("3 learned as spam", p.stdout.decode())
        store = os.path.join(self.srv.dir, "bayes")
        nobody = __import__("pwd").getpwnam("nobody")
        for name in ("", "data.mdb", "lock.mdb"):
            st = os.stat(os.path.join(store, name))
            self.assertEqual(st.st_uid, nobody.pw_uid, name)
        self.assertEqual(os.stat(store).st_mode & 0o777, 0o700)

    def test_warns_when_not_run_as_user(self):
        if not IS_ROOT:
            self.skipTest("needs root, to run postern learn as another account")
        # user is nobody (the harness's); run as daemon: the store would be
        # daemon's, which the scanners (nobody) cannot read: said so
        os.chmod(self.srv.dir, 0o777)
        for path in self.files:
            os.chmod(path, 0o644)
        p = subprocess.run(["setpriv", "--reuid=daemon", "--regid=daemon", "--clear-groups",
                            POSTERN_BIN, "learn", "-c", self.srv.conf_path, "--ham",
                            self.files[0]],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=scaled(60))
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn("warning: running as uid 1, not as user nobody: the scanners, which run "
                      "as nobody, need to read %s" % os.path.join(self.srv.dir, "bayes"),
                      p.stderr.decode())
        # run as user itself: no warning, but, as warned, daemon's store
        # is out of its reach
        os.chmod(os.path.join(self.srv.dir, "bayes"), 0o777)
        p = subprocess.run(["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups",
                            POSTERN_BIN, "learn", "-c", self.srv.conf_path, "--ham",
                            self.files[1]],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=scaled(60))
        self.assertNotIn("warning", p.stderr.decode())
        self.assertEqual(p.returncode, 2)
        self.assertIn("cannot open the Bayes store: Permission denied", p.stderr.decode())

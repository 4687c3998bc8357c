#!/usr/bin/env python3
"""run_eval.py - `make eval`: how well postern tells spam from ham, by
k-fold cross-validation on the labelled corpus, next to SpamAssassin 4 on
the same folds in the same run.

For each fold (folds.py: stratified, fixed by a seeded shuffle) the other
folds are the training set and the fold is the test set:

  postern   Bayes learns the training set (`postern learn --spam/--ham`,
            a fresh bayes_dir per fold); then every test message is scored
            by `postern scan --json` in four configurations:
              rules        postern's own rules (etc/spam-rules.cf)
              rules+bayes  the same, with Bayes
              rules+sa     postern's rules and SpamAssassin's installed ones
                           (spam_rules_dirs = /usr/share/spamassassin)
              all          rules+sa with Bayes
  SpamAssassin  ../shared/anchors/08_sa_accuracy.sh on the same training
            and test sets: sa-learn on the training set, spamd -L (no
            network tests), untrained (rules only) and trained.

Every test message is scored once per configuration; the folds' results
are pooled, and each configuration reports the spam recall and the ham
false-positive rate at the default threshold (5.0), and the lowest
threshold at which at most 0.1 % of the ham scores at or above it, with
the recall there. The table goes to stdout and OUT/results.txt; per
message scores and rules to OUT/hits-CONFIG.tsv (the format of
fit_scores.py), per-rule hit counts to OUT/rule-hits.txt.

    run_eval.py [--k 5] [--folds N] [--limit N] [--only postern|sa] ...

--folds N runs only the first N folds, --limit N scores at most N test
messages per fold (ham and spam in the corpus's ratio): both for quick
runs while developing; the numbers of such a run are not comparable.

Input: the corpus (messages are untrusted: postern parses them as an
unprivileged user, SpamAssassin as debian-spamd). Runs as root (the
SpamAssassin half starts spamd and switches users; postern scan and
learn become the configuration's user) or, with --only postern, as
anyone.
"""
import argparse
import collections
import datetime
import json
import os
import pwd
import re
import shutil
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fit_scores  # noqa: E402
import folds  # noqa: E402

REPO = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
THRESHOLD = 5.0
FP_BOUND = 0.001
SCAN_BATCH = 200  # files per `postern scan` run (each is opened before scanning)

POSTERN_CONFIGS = [
    # name, SpamAssassin's rules too, Bayes
    ("rules", False, False),
    ("rules+bayes", False, True),
    ("rules+sa", True, False),
    ("all", True, True),
]
SA_MODES = [("sa-untrained", "untrained", 0), ("sa-trained", "trained", 2)]
SA_PIDFILE = "/run/spamd-anchor-acc.pid"  # the anchor's spamd (08_sa_accuracy.sh)


def log(msg):
    print("[%s] %s" % (time.strftime("%H:%M:%S"), msg), file=sys.stderr, flush=True)


# ---- the corpus and the folds ------------------------------------------------------

def prepare_corpus(src, dst):
    """dst/{ham,spam}: the messages of src without their mbox "From " line
    (the first line, when it is one), readable by every user. Kept between
    runs while the file names match."""
    for label in ("ham", "spam"):
        s, d = os.path.join(src, label), os.path.join(dst, label)
        want = sorted(f for f in os.listdir(s) if not f.startswith("."))
        if os.path.isdir(d) and sorted(os.listdir(d)) == want:
            continue
        shutil.rmtree(d, ignore_errors=True)
        os.makedirs(d)
        for f in want:
            with open(os.path.join(s, f), "rb") as fh:
                data = fh.read()
            if data.startswith(b"From "):
                nl = data.find(b"\n")
                data = data[nl + 1:] if nl >= 0 else b""
            with open(os.path.join(d, f), "wb") as fh:
                fh.write(data)
    for root, dirs, files in os.walk(dst):
        os.chmod(root, 0o755)
        for f in files:
            os.chmod(os.path.join(root, f), 0o644)


def limited(names, n):
    return names if n is None else names[:n]


def make_folds(corpus, out, k, seed, selected, limit):
    """Per selected fold i: out/folds/fI/{train,test}/{ham,spam}/ of hard
    links to the corpus (postern learn reads no symbolic links in a
    folder). Returns [(i, dir, {label: [test names]})]."""
    split = folds.split(corpus, k, seed)
    total = sum(len(v) for v in split.values())
    result = []
    for i in selected:
        fd = os.path.join(out, "folds", "f%d" % i)
        shutil.rmtree(fd, ignore_errors=True)
        tests = {}
        for label in ("ham", "spam"):
            # the fold's test messages in a shuffled order, so that a limit keeps a sample
            rank = folds.assign(split[label], len(split[label]), "%s:order:%s" % (seed, label))
            order = sorted((n for n, f in split[label].items() if f == i), key=rank.get)
            lim = None if limit is None else max(1, round(limit * len(split[label]) / total))
            tests[label] = limited(order, lim)
            train = sorted(n for n, f in split[label].items() if f != i)
            for part, names in (("test", tests[label]), ("train", train)):
                d = os.path.join(fd, part, label)
                os.makedirs(d)
                for n in names:
                    os.link(os.path.join(corpus, label, n), os.path.join(d, n))
        result.append((i, fd, tests))
    for root, dirs, files in os.walk(os.path.join(out, "folds")):
        os.chmod(root, 0o755)
    return result


# ---- postern -----------------------------------------------------------------------

def run_user():
    """The account postern's commands become when run as root: the
    configuration's `user`. "postern" when it exists, else nobody."""
    if os.geteuid() != 0:
        return None
    for name in ("postern", "nobody"):
        try:
            return pwd.getpwnam(name)
        except KeyError:
            pass
    return None


def write_config(path, rules, sa_dirs, bayes_dir, user):
    lines = ["# written by tools/eval/run_eval.py for one fold of make eval",
             "spam_rules_file = %s" % rules,
             "spam_tag_score = %.1f" % THRESHOLD,
             # every message gets its score: nothing refused or quarantined for it
             "spam_reject_score = 0",
             "spam_quarantine_score = 0"]
    if sa_dirs:
        lines.append("spam_rules_dirs = %s" % sa_dirs)
    if bayes_dir:
        # learning is the training set's alone: scanning the test set learns nothing
        lines += ["bayes_dir = %s" % bayes_dir, "bayes_autolearn = no"]
    if user:
        lines.append("user = %s" % user.pw_name)
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")


SCORE_RE = re.compile(r"\bscore=(-?\d+(?:\.\d+)?)")


def parse_verdict(obj):
    """(score, [rule names]) of a `postern scan --json` line. The score is
    printed to one decimal; X-Spam-Status says exactly whether it reached
    the tag score, so a "No" printed as 5.0 (4.95 to 4.999...) counts just
    under it."""
    score, rules, status = None, [], None
    for h in obj.get("hits", []):
        if not h.startswith("spam:"):
            continue
        v = h[5:]
        if v.startswith("score="):
            score = float(v[6:])
        elif "=" not in v:
            rules.append(v)
    for h in obj.get("headers", []):
        if h.lower().startswith("x-spam-status:"):
            status = h.split(":", 1)[1].strip().lower().startswith("yes")
            m = SCORE_RE.search(h)
            if m and score is None:
                score = float(m.group(1))
    if score is not None and status is False and score >= THRESHOLD:
        score = THRESHOLD - 0.001
    if score is None:
        raise RuntimeError("%s: no spam score in the verdict: %s" % (obj.get("file"), json.dumps(obj)[:300]))
    return score, sorted(set(rules))


def postern_run(args, cmd, log_path):
    with open(log_path, "a") as lf:
        lf.write("$ %s\n" % " ".join(cmd))
        lf.flush()
        p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=lf, cwd=REPO)
    return p


def postern_fold(args, i, fd, tests, user):
    """Learn the fold's training set, then score its test set in each
    configuration: {config: [(label, name, score, rules)]}."""
    wd = os.path.join(args.out, "postern", "f%d" % i)
    shutil.rmtree(wd, ignore_errors=True)
    os.makedirs(wd)
    bayes = os.path.join(wd, "bayes")
    os.makedirs(bayes)
    if user:
        os.chown(wd, user.pw_uid, user.pw_gid)
        os.chown(bayes, user.pw_uid, user.pw_gid)
    log_path = os.path.join(wd, "postern.log")
    confs = {}
    for name, with_sa, with_bayes in POSTERN_CONFIGS:
        path = os.path.join(wd, name.replace("+", "-") + ".conf")
        write_config(path, args.rules, args.sa_rules if with_sa else None, bayes if with_bayes else None, user)
        confs[name] = path
    t0 = time.time()
    for label in ("spam", "ham"):
        p = postern_run(args, [args.postern, "learn", "-c", confs["rules+bayes"], "--" + label,
                               os.path.join(fd, "train", label)], log_path)
        if p.returncode != 0:
            raise RuntimeError("fold %d: postern learn --%s failed (exit %d); see %s" %
                               (i, label, p.returncode, log_path))
        with open(log_path, "ab") as lf:
            lf.write(p.stdout)
    log("fold %d: postern learn: %.1f s" % (i, time.time() - t0))
    files = [(label, n, os.path.join(fd, "test", label, n)) for label in ("ham", "spam") for n in tests[label]]
    out = {}
    for name, _, _ in POSTERN_CONFIGS:
        t0 = time.time()
        by_path = {}
        for b in range(0, len(files), SCAN_BATCH):
            batch = files[b:b + SCAN_BATCH]
            p = postern_run(args, [args.postern, "scan", "--json", "-c", confs[name]] + [f[2] for f in batch],
                            log_path)
            for line in p.stdout.decode("utf-8", "replace").splitlines():
                obj = json.loads(line)
                if "error" in obj:
                    raise RuntimeError("fold %d %s: %s: %s" % (i, name, obj.get("file"), obj["error"]))
                by_path[obj["file"]] = parse_verdict(obj)
            if p.returncode not in (0, 1, 2) or len(by_path) < b + len(batch):
                raise RuntimeError("fold %d %s: postern scan failed (exit %d, %d of %d verdicts); see %s" %
                                   (i, name, p.returncode, len(by_path), b + len(batch), log_path))
        out[name] = [(label, n) + by_path[path] for label, n, path in files]
        log("fold %d: postern scan %-11s %d messages in %.1f s" % (i, name, len(files), time.time() - t0))
    return out


# ---- SpamAssassin ------------------------------------------------------------------

def sa_fold(args, i, fd):
    """08_sa_accuracy.sh on the fold: {mode: [(label, name, score, rules)]},
    the scores exact (recomputed from the rules hit and SpamAssassin's
    score table, as the anchor does)."""
    ao = os.path.join(args.out, "sa", "f%d" % i)
    shutil.rmtree(ao, ignore_errors=True)
    os.makedirs(ao)
    env = dict(os.environ, TRAIN_DIR=os.path.join(fd, "train"), TEST_DIR=os.path.join(fd, "test"),
               ANCHOR_OUT=ao, SA_ACC_PORT=str(args.sa_port), SPAMD_CHILDREN="2", CONC="2")
    t0 = time.time()
    with open(os.path.join(ao, "run.log"), "w") as lf:
        p = subprocess.run(["bash", os.path.join(args.anchors, "08_sa_accuracy.sh")], env=env,
                           stdout=lf, stderr=subprocess.STDOUT)
    if p.returncode != 0:
        raise RuntimeError("fold %d: 08_sa_accuracy.sh failed (exit %d); see %s/run.log" % (i, p.returncode, ao))
    log("fold %d: SpamAssassin (train + 2 scorings): %.1f s" % (i, time.time() - t0))
    w = os.path.join(ao, "sa_acc")
    table = collections.defaultdict(dict)
    with open(os.path.join(w, "scores.tsv")) as f:
        for line in f:
            s, r, v = line.rstrip("\n").split("\t")
            table[int(s)][r] = float(v)
    out = {}
    for name, mode, scoreset in SA_MODES:
        rows = []
        with open(os.path.join(w, "scores-%s.tsv" % mode), encoding="latin-1") as f:
            for line in f:
                label, n, _isspam, _sc, _thr, _lat, syms = line.rstrip("\n").split("\t")
                rules = [x for x in syms.split(",") if x]
                exact = round(sum(table[scoreset].get(x, 0.0) for x in rules), 3)
                rows.append((label, n, exact, rules))
        out[name] = rows
    return out


# ---- the rules' scores, fitted without the test fold -------------------------------

def refitted(rules_file, rows, fold_of):
    """The scores of postern's own rules were fitted on the whole corpus,
    so "rules" and "rules+bayes" score each test message with scores that
    saw it. Here each fold is scored again with scores fitted (by
    fit_scores.py, with the ham weights recorded in the file) on the
    other folds only: {"rules refit": rows, "rules+bayes refit": rows}."""
    weights = fit_scores.read_weights(rules_file) or (80.0, 40.0)
    problem = fit_scores.Problem([(label, n, rules) for label, n, _s, rules in rows], rules_file,
                                 log=lambda _msg: None)
    out = {"rules refit": problem.cross_validated(0, weights[0], fold_of)}
    if problem.rows2 is not None:
        out["rules+bayes refit"] = problem.cross_validated(2, weights[1], fold_of)
    return out


# ---- measures and the table --------------------------------------------------------

def measures(rows):
    ham = sorted((r[2] for r in rows if r[0] == "ham"), reverse=True)
    spam = [r[2] for r in rows if r[0] == "spam"]
    nh, ns = len(ham), len(spam)
    fp = sum(s >= THRESHOLD for s in ham)
    tp = sum(s >= THRESHOLD for s in spam)
    allowed = int(FP_BOUND * nh)            # ham allowed at or above the threshold
    if nh == 0:
        t = THRESHOLD
    elif allowed >= nh:
        t = min(ham)
    else:
        t = round(ham[allowed] + 0.001, 3)  # the lowest threshold (0.001 steps) leaving `allowed` above
    fp_t = sum(s >= t for s in ham)
    tp_t = sum(s >= t for s in spam)
    return {"n_ham": nh, "n_spam": ns, "recall": tp / max(1, ns), "tp": tp, "fp_rate": fp / max(1, nh),
            "fp": fp, "thr": t, "recall_t": tp_t / max(1, ns), "tp_t": tp_t, "fp_t": fp_t}


def table(results, title):
    lines = [title, "",
             "| configuration | spam recall at %.1f | ham FP at %.1f | threshold for ham FP <= %.1f %% "
             "| spam recall there |" % (THRESHOLD, THRESHOLD, FP_BOUND * 100),
             "|---|---|---|---|---|"]
    for name, rows in results:
        m = measures(rows)
        lines.append("| %s | %.2f %% (%d/%d) | %.2f %% (%d/%d) | %.3f (%d ham at or above) | %.2f %% (%d/%d) |" % (
            name, 100 * m["recall"], m["tp"], m["n_spam"], 100 * m["fp_rate"], m["fp"], m["n_ham"],
            m["thr"], m["fp_t"], 100 * m["recall_t"], m["tp_t"], m["n_spam"]))
    return lines


def write_hits(path, rows):
    with open(path, "w") as f:
        for label, n, score, rules in rows:
            f.write("%s\t%s\t%.3f\t%s\n" % (label, n, score, ",".join(rules)))


def rule_hits(rows, prefix=None):
    c = {"ham": collections.Counter(), "spam": collections.Counter()}
    for label, _n, _s, rules in rows:
        for r in rules:
            if prefix is None or r.startswith(prefix):
                c[label][r] += 1
    names = sorted(set(c["ham"]) | set(c["spam"]), key=lambda r: (-c["spam"][r], c["ham"][r], r))
    return [(r, c["spam"][r], c["ham"][r]) for r in names]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--corpus", default=os.path.join(os.path.dirname(REPO), "shared", "corpus", "train"))
    ap.add_argument("--out", default=os.path.join(REPO, "build", "eval"))
    ap.add_argument("--k", type=int, default=folds.DEFAULT_K)
    ap.add_argument("--seed", default=folds.DEFAULT_SEED)
    ap.add_argument("--folds", type=int, help="run only the first N folds")
    ap.add_argument("--limit", type=int, help="score at most about N test messages per fold")
    ap.add_argument("--only", choices=("postern", "sa"), help="run one half only")
    ap.add_argument("--postern", default=os.path.join(REPO, "build", "postern"))
    ap.add_argument("--rules", default=os.path.join(REPO, "etc", "spam-rules.cf"))
    ap.add_argument("--sa-rules", default="/usr/share/spamassassin")
    ap.add_argument("--anchors", default=os.environ.get("ANCHORS", os.path.join(os.path.dirname(REPO), "shared", "anchors")))
    ap.add_argument("--sa-port", type=int, default=7841)
    args = ap.parse_args()
    args.out = os.path.abspath(args.out)
    args.rules = os.path.abspath(args.rules)
    args.postern = os.path.abspath(args.postern)

    if args.only != "postern" and os.geteuid() != 0:
        sys.exit("run_eval: the SpamAssassin half needs root (it starts spamd as debian-spamd); "
                 "use --only postern")
    if args.only != "sa" and not os.access(args.postern, os.X_OK):
        sys.exit("run_eval: %s not found: run make first" % args.postern)
    if args.only != "postern":
        if not os.path.exists(os.path.join(args.anchors, "08_sa_accuracy.sh")):
            sys.exit("run_eval: %s/08_sa_accuracy.sh not found (set ANCHORS=...)" % args.anchors)
        missing = [p for p in ("spamd", "spamc", "sa-learn") if shutil.which(p) is None]
        if missing:
            sys.exit("run_eval: %s not found: the SpamAssassin half needs the Debian packages "
                     "spamassassin, spamd and spamc (make deps installs them)" % ", ".join(missing))
        if os.path.exists(SA_PIDFILE):
            sys.exit("run_eval: %s exists: another SpamAssassin accuracy run (08_sa_accuracy.sh) "
                     "seems to be going on" % SA_PIDFILE)
    os.makedirs(args.out, exist_ok=True)
    os.chmod(args.out, 0o755)

    t_start = time.time()
    corpus = os.path.join(args.out, "corpus")
    prepare_corpus(args.corpus, corpus)
    selected = list(range(args.k if args.folds is None else min(args.folds, args.k)))
    fold_dirs = make_folds(corpus, args.out, args.k, args.seed, selected, args.limit)
    user = run_user()

    pooled = collections.defaultdict(list)
    fold_of = {}
    for i, fd, tests in fold_dirs:
        fold_of.update({n: i for label in tests for n in tests[label]})
        log("fold %d (of 0-%d): %d ham, %d spam to score" % (i, args.k - 1, len(tests["ham"]), len(tests["spam"])))
        if args.only != "sa":
            for name, rows in postern_fold(args, i, fd, tests, user).items():
                pooled[name] += rows
        if args.only != "postern":
            for name, rows in sa_fold(args, i, fd).items():
                pooled[name] += rows

    order = ([n for n, _, _ in POSTERN_CONFIGS] if args.only != "sa" else []) + \
            ([n for n, _, _ in SA_MODES] if args.only != "postern" else [])
    if "rules+bayes" in pooled and len(selected) > 1:
        t0 = time.time()
        for name, rows in refitted(args.rules, pooled["rules+bayes"], fold_of).items():
            pooled[name] = rows
            order.insert(order.index(name.replace(" refit", "")) + 1, name)
        log("scores refitted per fold: %.1f s" % (time.time() - t0))
    names = {"rules": "postern, own rules", "rules+bayes": "postern, own rules + Bayes",
             "rules+sa": "postern, own + SpamAssassin's rules", "all": "postern, own + SpamAssassin's rules + Bayes",
             "sa-untrained": "SpamAssassin 4 (spamd -L), Bayes untrained",
             "sa-trained": "SpamAssassin 4 (spamd -L), Bayes trained",
             "rules refit": "postern, own rules, scores fitted without the test fold",
             "rules+bayes refit": "postern, own rules + Bayes, scores fitted without the test fold"}
    some = pooled[order[0]]
    nh = sum(r[0] == "ham" for r in some)
    ns = sum(r[0] == "spam" for r in some)
    partial = args.folds is not None and args.folds < args.k or args.limit is not None
    title = ("make eval, %s: %d-fold cross-validation on %s (%s%d ham, %d spam scored, each once; seed %s); "
             "%.0f s" % (datetime.datetime.now().strftime("%Y-%m-%d %H:%M"), args.k, args.corpus,
                         "PARTIAL RUN, folds %s: " % ",".join(map(str, selected)) if partial else "",
                         nh, ns, args.seed, time.time() - t_start))
    lines = table([(names[n], pooled[n]) for n in order], title)
    for n in order:
        write_hits(os.path.join(args.out, "hits-%s.tsv" % n.replace("+", "-").replace(" ", "-")), pooled[n])
    text = "\n".join(lines) + "\n"
    print(text)
    with open(os.path.join(args.out, "results.txt"), "w") as f:
        f.write(text)
    # rule statistics: postern's own rules over all folds
    base = "rules" if "rules" in pooled else None
    if base:
        with open(os.path.join(args.out, "rule-hits.txt"), "w") as f:
            f.write("# postern's own rules (configuration 'rules'), hits over the %d test sets: rule, spam, ham\n"
                    % len(selected))
            for r, s, h in rule_hits(pooled[base]):
                f.write("%-30s %5d %5d\n" % (r, s, h))


if __name__ == "__main__":
    main()

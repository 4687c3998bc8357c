#!/usr/bin/env python3
"""fit_scores.py - fit the scores of postern's own spam rules
(etc/spam-rules.cf) to the labelled corpus, with k-fold cross-validation,
for both score sets postern uses: without Bayes (set 0) and with it
(set 2, where the file's Bayes band rules count too).

    fit_scores.py HITS.tsv [--bayes PROBS] [--cf etc/spam-rules.cf] [--write]

HITS.tsv holds one message a line, "LABEL<TAB>PATH<TAB>SCORE<TAB>RULES"
(LABEL ham or spam, RULES comma-separated): what tools/eval/sa_hits.pl
prints, and what run_eval.py keeps of postern's verdicts
(build/eval/hits-rules.tsv without Bayes, hits-rules-bayes.tsv with it).
The Bayes band rules of the .cf (eval:check_bayes) are taken from RULES
when they are there, or computed from --bayes, a file of "PATH<TAB>P" or
"PATH: bayes=P" lines (the output of `postern learn --classify` run on
each fold after learning the others). Without either, only set 0 is
fitted. Only the rules of the .cf count; fixed scores (GTUBE's 1000) and
the rules that hit fewer than --min-hits messages keep the score written
by hand (marked "# by hand" in the file).

The model is SpamAssassin's: a message's score is the sum of the scores
of the rules it hits, spam from 5.0. The scores minimise a logistic loss
around that threshold in which a ham message counts HAM_WEIGHT times a
spam message (false positives cost more than misses), plus a small L2
term, each score within bounds (rules 0.1 to --max, Bayes bands -5 to 5, a
higher band never scoring less than a lower one):
projected gradient descent with Adam steps. For each candidate ham weight
the corpus's k folds (folds.py, the same as make eval's) are fitted on
k-1 folds and measured on the fold left out; the weight with the best
recall whose pooled false-positive rate at 5.0 stays within --max-fp is
chosen (or, if none does, the one with the fewest false positives), and
the scores are then fitted on the whole corpus with it. --write puts them
into the .cf file's score lines: "score NAME S0 S0 S2 S2".

Input: the hits file and the rules file (ours). No privileges.
"""
import argparse
import math
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import folds  # noqa: E402

THRESHOLD = 5.0
BAND_BOUNDS = (-5.0, 5.0)
KINDS = ("header", "body", "rawbody", "uri", "full", "meta", "mimeheader")
BAYES_RE = re.compile(r"eval:check_bayes\(\s*'?([\d.]+)'?\s*,\s*'?([\d.]+|undef)'?\s*\)")


def read_hits(path):
    rows = []
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            parts = line.rstrip("\n").split("\t")
            if len(parts) < 4:
                continue
            label, p, _score, rules = parts[:4]
            rows.append((label, os.path.basename(p), [r for r in rules.split(",") if r]))
    return rows


def read_cf_rules(path):
    """The scored rules of the .cf (not __sub-rules) in file order; those
    whose score is fixed (>= 100, or "# by hand" on its line); the scores
    written ({name: [s0, s1, s2, s3]}); the Bayes bands ({name: (lo, hi)})."""
    names, fixed, current, bands = [], set(), {}, {}
    with open(path) as f:
        for line in f:
            w = line.split()
            if len(w) >= 2 and w[0] in KINDS and not w[1].startswith("__") and w[1] not in names:
                names.append(w[1])
                m = BAYES_RE.search(line)
                if m:
                    bands[w[1]] = (float(m.group(1)), 1.0 if m.group(2) == "undef" else float(m.group(2)))
            if len(w) >= 3 and w[0] == "score" and w[1] in names:
                vals = []
                for v in w[2:6]:
                    if v.startswith("#"):
                        break
                    try:
                        vals.append(float(v))
                    except ValueError:
                        break
                if vals:
                    current[w[1]] = vals * 4 if len(vals) == 1 else (vals + vals[-1:] * 4)[:4]
                    if vals[0] >= 100 or "# by hand" in line:
                        fixed.add(w[1])
    return names, fixed, current, bands


def read_bayes(path):
    """{basename: probability} from "PATH<TAB>P" or "PATH: bayes=P ..." lines."""
    out = {}
    with open(path) as f:
        for line in f:
            m = re.match(r"(\S+?):? bayes=([\d.]+)", line) or re.match(r"(\S+)\t([\d.]+)\s*$", line)
            if m:
                out[os.path.basename(m.group(1))] = float(m.group(2))
    return out


def band_of(p, bands):
    """The band rule that hits at probability p (check_bayes: lo < p <= hi,
    lo 0 taking 0 itself), or None."""
    for name, (lo, hi) in bands.items():
        if (p > lo or (lo == 0 and p >= 0)) and p <= hi:
            return name
    return None


def non_decreasing(values):
    """The closest non-decreasing sequence (least squares: pool adjacent
    violators)."""
    blocks = []  # [sum, count]
    for v in values:
        blocks.append([v, 1])
        while len(blocks) > 1 and blocks[-2][0] / blocks[-2][1] > blocks[-1][0] / blocks[-1][1]:
            s, c = blocks.pop()
            blocks[-1][0] += s
            blocks[-1][1] += c
    out = []
    for s, c in blocks:
        out += [s / c] * c
    return out


def fit(rows, features, ham_weight, bounds, l2, iters=1500, lr=0.05, fixed_scores=None, ordered=()):
    """Scores (dict) of the features minimising the weighted logistic
    loss, each within bounds[feature] = (lo, hi); the rules of
    fixed_scores count with their score; the scores of the features in
    `ordered` (the Bayes bands, lowest first) never decrease along it."""
    idx = {r: i for i, r in enumerate(features)}
    fixed_scores = fixed_scores or {}
    lo = [bounds[r][0] for r in features]
    hi = [bounds[r][1] for r in features]
    data = [([idx[r] for r in rules if r in idx], 1 if label == "spam" else 0,
             sum(fixed_scores.get(r, 0.0) for r in rules if r not in idx)) for label, _, rules in rows]
    n_spam = sum(y for _, y, _ in data) or 1
    n_ham = (len(data) - n_spam) or 1
    w = [min(hi[i], max(lo[i], 1.0 if lo[i] >= 0 else 0.0)) for i in range(len(features))]
    m = [0.0] * len(features)
    v = [0.0] * len(features)
    b1, b2, eps = 0.9, 0.999, 1e-8
    for t in range(1, iters + 1):
        g = [2 * l2 * x for x in w]
        for xs, y, base in data:
            s = base + sum(w[i] for i in xs) - THRESHOLD
            if y:   # spam: loss log(1 + e^-s)
                d = -1.0 / (1.0 + math.exp(s)) if s > -30 else -1.0
                d /= n_spam
            else:   # ham: loss ham_weight * log(1 + e^s)
                d = 1.0 / (1.0 + math.exp(-s)) if s < 30 else 1.0
                d *= ham_weight / n_ham
            if d != 0.0:
                for i in xs:
                    g[i] += d
        for i in range(len(w)):
            m[i] = b1 * m[i] + (1 - b1) * g[i]
            v[i] = b2 * v[i] + (1 - b2) * g[i] * g[i]
            step = lr * (m[i] / (1 - b1 ** t)) / (math.sqrt(v[i] / (1 - b2 ** t)) + eps)
            w[i] = min(hi[i], max(lo[i], w[i] - step))
        if ordered:
            oi = [idx[r] for r in ordered]
            for i, val in zip(oi, non_decreasing([w[i] for i in oi])):
                w[i] = val
    return {r: round(w[i], 2) + 0.0 for i, r in enumerate(features)}


def score_of(rules, scores, fixed_scores):
    return sum(scores.get(r, fixed_scores.get(r, 0.0)) for r in rules)


def measure(scored):
    """scored: [(label, score)] -> (recall at 5, FP rate at 5, FP count, n ham,
    threshold for FP <= 0.1 %, recall there)."""
    ham = sorted((s for label, s in scored if label == "ham"), reverse=True)
    spam = [s for label, s in scored if label == "spam"]
    fp = sum(s >= THRESHOLD for s in ham)
    tp = sum(s >= THRESHOLD for s in spam)
    allowed = int(0.001 * len(ham))
    t = ham[allowed] + 0.001 if allowed < len(ham) else THRESHOLD
    tp_t = sum(s >= t for s in spam)
    return tp / max(1, len(spam)), fp / max(1, len(ham)), fp, len(ham), t, tp_t / max(1, len(spam))


class Problem:
    """The fitting problem of one hits file and one .cf: the rows without
    Bayes (set 0) and with it (set 2, or None), the rules fitted, the
    scores kept (fixed, and rare rules'), each score's bounds."""

    def __init__(self, rows, cf, bayes=None, min_hits=8, hi=3.5, log=print, band_hi=BAND_BOUNDS[1]):
        self.names, self.fixed, self.current, self.bands = read_cf_rules(cf)
        bands = self.bands
        # set 2's rows: the band from the hits, or from the probabilities
        self.rows2 = None
        if any(r in bands for _, _, rules in rows for r in rules):
            self.rows2 = rows
        elif bayes:
            prob = read_bayes(bayes)
            missing = [n for _, n, _ in rows if n not in prob]
            if missing:
                raise ValueError("%d messages have no Bayes probability in %s (e.g. %s)" %
                                 (len(missing), bayes, missing[0]))
            self.rows2 = [(label, n, rules + [b for b in [band_of(prob[n], bands)] if b])
                          for label, n, rules in rows]
        self.rows0 = [(label, n, [r for r in rules if r not in bands]) for label, n, rules in rows]
        self.hits = {}
        for _, _, rules in self.rows0:
            for r in rules:
                self.hits[r] = self.hits.get(r, 0) + 1
        rare = [r for r in self.names if r not in self.fixed and r not in bands
                and self.hits.get(r, 0) < min_hits]
        for r in rare:
            log("note: %s hits %d messages (fewer than %d): keeps its score %.2f, set by hand" %
                (r, self.hits.get(r, 0), min_hits, self.current.get(r, [1.0])[0]))
        self.rules0 = [r for r in self.names if r not in self.fixed and r not in rare and r not in bands]
        self.order = sorted(bands, key=lambda b: bands[b])
        kept = list(self.fixed) + rare
        self.fixed_scores = {0: {r: self.current.get(r, [1.0])[0] for r in kept},
                             2: {r: self.current.get(r, [1.0] * 4)[2] for r in kept}}
        self.bounds = {r: (0.1, hi) for r in self.rules0}
        self.bounds.update({b: (BAND_BOUNDS[0], band_hi) for b in bands})

    def setup(self, scoreset):
        if scoreset == 0:
            return self.rows0, self.rules0, ()
        return self.rows2, self.rules0 + self.order, self.order

    def fit(self, scoreset, rows, ham_weight, l2, iters):
        _, features, ordered = self.setup(scoreset)
        return fit(rows, features, ham_weight, self.bounds, l2, iters,
                   fixed_scores=self.fixed_scores[scoreset], ordered=ordered)

    def cross_validated(self, scoreset, ham_weight, fold_of, l2=0.0005, iters=600):
        """Each message scored with scores fitted on the folds it is not
        in: [(label, name, score, rules)]."""
        rows, _, _ = self.setup(scoreset)
        out = []
        for k in sorted(set(fold_of[n] for _, n, _ in rows)):
            sc = self.fit(scoreset, [r for r in rows if fold_of[r[1]] != k], ham_weight, l2, iters)
            out += [(label, n, score_of(rules, sc, self.fixed_scores[scoreset]), rules)
                    for label, n, rules in rows if fold_of[n] == k]
        return out


def fit_set(problem, scoreset, fold_of, args, title):
    """Cross-validate each ham weight, pick one, fit on everything."""
    best = None
    for hw in [float(x) for x in args.weights.split(",")]:
        pooled = problem.cross_validated(scoreset, hw, fold_of, args.l2, args.iters)
        rec, fpr, fp, nh, t, rec_t = measure([(label, sc) for label, _, sc, _ in pooled])
        print("%s, ham weight %5.1f: cross-validated recall at 5.0 %.4f, FP %.4f (%d/%d ham); "
              "FP <= 0.1 %% from %.2f, recall there %.4f" % (title, hw, rec, fpr, fp, nh, t, rec_t), flush=True)
        key = (fpr <= args.max_fp, rec if fpr <= args.max_fp else -fpr)
        if best is None or key > best[0]:
            best = (key, hw)
    hw = best[1]
    rows, _, _ = problem.setup(scoreset)
    scores = problem.fit(scoreset, rows, hw, args.l2, args.iters)
    fixed = problem.fixed_scores[scoreset]
    rec, fpr, fp, nh, _, _ = measure([(label, score_of(rules, scores, fixed)) for label, _, rules in rows])
    print("%s: chosen ham weight %.1f; fitted on all %d messages: recall %.4f, FP %d/%d (not cross-validated)" %
          (title, hw, len(rows), rec, fp, nh))
    return scores, hw


def fold_map(rows, k, seed):
    """{name: fold} as make eval deals the corpus (folds.py)."""
    fold_of = {}
    for label in ("ham", "spam"):
        fold_of.update(folds.assign([n for lab, n, _ in rows if lab == label], k, "%s:%s" % (seed, label)))
    return fold_of


WEIGHTS_RE = re.compile(r"^# fit_scores: ham weight ([\d.]+) without Bayes, ([\d.]+) with Bayes", re.M)


def read_weights(cf):
    """The ham weights the .cf's scores were fitted with (its "# fit_scores:"
    line), or None."""
    m = WEIGHTS_RE.search(open(cf).read())
    return (float(m.group(1)), float(m.group(2))) if m else None


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("hits")
    ap.add_argument("--bayes", help="per-message Bayes probabilities, for set 2")
    ap.add_argument("--cf", default=os.path.join(os.path.dirname(__file__), "..", "..", "etc", "spam-rules.cf"))
    ap.add_argument("--write", action="store_true", help="write the fitted scores into the .cf")
    ap.add_argument("--k", type=int, default=folds.DEFAULT_K)
    ap.add_argument("--seed", default=folds.DEFAULT_SEED)
    ap.add_argument("--weights", default="10,20,40,80,160", help="ham weights to try")
    ap.add_argument("--max", type=float, default=3.5, dest="hi", help="highest score of one rule")
    ap.add_argument("--band-max", type=float, default=BAND_BOUNDS[1], help="highest score of a Bayes band")
    ap.add_argument("--l2", type=float, default=0.0005)
    ap.add_argument("--max-fp", type=float, default=0.001, help="pooled FP rate allowed at 5.0")
    ap.add_argument("--iters", type=int, default=600)
    ap.add_argument("--min-hits", type=int, default=8,
                    help="rules hitting fewer messages keep the score written by hand")
    args = ap.parse_args()

    rows = read_hits(args.hits)
    try:
        problem = Problem(rows, args.cf, args.bayes, args.min_hits, args.hi, band_hi=args.band_max)
    except ValueError as e:
        sys.exit("fit_scores: %s" % e)
    fold_of = fold_map(rows, args.k, args.seed)
    s0, w0 = fit_set(problem, 0, fold_of, args, "without Bayes")
    s2, w2 = None, None
    if problem.rows2 is not None:
        s2, w2 = fit_set(problem, 2, fold_of, args, "with Bayes")
    else:
        print("no Bayes band in the hits and no --bayes: set 2 keeps its scores")
    lines = {}
    for r in problem.rules0 + problem.order:
        old = problem.current.get(r, [1.0] * 4)
        a = s0[r] if r in s0 else 0.0
        b = s2[r] if s2 is not None else old[2]
        lines[r] = (a, a, b, b)
        print("score %-26s %5.2f %5.2f %5.2f %5.2f  (%d hits)" % ((r,) + lines[r] + (problem.hits.get(r, 0),)))
    if args.write:
        write_scores(args.cf, lines, (w0, w2 if w2 is not None else (read_weights(args.cf) or (0, 0))[1]))
        print("wrote the scores into", args.cf)


def fmt(v):
    return "%.2f" % v if v != 0 else "0"


def write_scores(path, scores, weights):
    """Replace each fitted rule's score line, or add one after its
    describe; record the ham weights in the "# fit_scores:" line."""
    text_all = open(path).read()
    mark = "# fit_scores: ham weight %g without Bayes, %g with Bayes (make eval refits with them)" % weights
    if WEIGHTS_RE.search(text_all):
        text_all = re.sub(r"^# fit_scores: .*$", mark, text_all, count=1, flags=re.M)
    else:
        text_all = text_all.replace("\n# ---- the test string", "\n" + mark + "\n\n# ---- the test string", 1)
    lines = text_all.split("\n")
    have = set()
    text = lambda r: "score    %-20s %s" % (r, " ".join(fmt(v) for v in scores[r]))  # noqa: E731
    for i, line in enumerate(lines):
        w = line.split()
        if len(w) >= 3 and w[0] == "score" and w[1] in scores:
            lines[i] = text(w[1])
            have.add(w[1])
    out = []
    for line in lines:
        out.append(line)
        w = line.split()
        if len(w) >= 2 and w[0] == "describe" and w[1] in scores and w[1] not in have:
            out.append(text(w[1]))
            have.add(w[1])
    open(path, "w").write("\n".join(out))


if __name__ == "__main__":
    main()

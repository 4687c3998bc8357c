#!/usr/bin/env python3
"""fit_scores.py - fit the scores of postern's own spam rules
(etc/spam-rules.cf) to the labelled corpus, with k-fold cross-validation.

    fit_scores.py HITS.tsv [--cf etc/spam-rules.cf --write] [--k 5]

HITS.tsv holds one message a line, "LABEL<TAB>PATH<TAB>SCORE<TAB>RULES"
(LABEL ham or spam, RULES comma-separated): what tools/eval/sa_hits.pl
prints, and what run_eval.py keeps of postern's verdicts
(build/eval/hits-*.tsv). Only the rules of the .cf file are fitted (the
others in RULES are ignored); fixed scores (GTUBE) are left alone.

The model is SpamAssassin's: a message's score is the sum of the scores
of the rules it hits, spam from 5.0. The scores minimise a logistic loss
around that threshold in which a ham message counts HAM_WEIGHT times a
spam message (false positives cost more than misses), plus a small L2
term, each score kept within [MIN, MAX] (projected gradient descent,
Adam steps). For each candidate ham weight the corpus's k folds
(folds.py, the same as make eval's) are fitted on k-1 folds and measured
on the fold left out; the weight with the best recall whose pooled
false-positive rate at 5.0 stays within --max-fp is chosen, and the
scores are then fitted on the whole corpus with it. --write puts them
into the .cf file's score lines.

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
    """Scored rule names of the .cf (not __sub-rules), the fixed ones (a
    score >= 100, or "# by hand" after it), and the scores written."""
    names, fixed, current = [], set(), {}
    kinds = ("header", "body", "rawbody", "uri", "full", "meta", "mimeheader")
    with open(path) as f:
        for line in f:
            w = line.split()
            if len(w) >= 2 and w[0] in kinds and not w[1].startswith("__") and w[1] not in names:
                names.append(w[1])
            if len(w) >= 3 and w[0] == "score":
                try:
                    current[w[1]] = float(w[2])
                except ValueError:
                    continue
                if current[w[1]] >= 100 or "# by hand" in line:
                    fixed.add(w[1])
    return names, fixed, current


def fit(rows, features, ham_weight, lo, hi, l2, iters=1500, lr=0.05, fixed_scores=None):
    """Scores (dict) of the features minimising the weighted logistic
    loss, projected to [lo, hi]; the rules of fixed_scores count with
    their score."""
    idx = {r: i for i, r in enumerate(features)}
    fixed_scores = fixed_scores or {}
    data = [([idx[r] for r in rules if r in idx], 1 if label == "spam" else 0,
             sum(fixed_scores.get(r, 0.0) for r in rules if r not in idx)) for label, _, rules in rows]
    n_spam = sum(y for _, y, _ in data) or 1
    n_ham = (len(data) - n_spam) or 1
    w = [min(hi, max(lo, 1.0))] * len(features)
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
            w[i] = min(hi, max(lo, w[i] - step))
    return {r: round(w[i], 2) for i, r in enumerate(features)}


def score_of(rules, scores, fixed_scores):
    return sum(scores.get(r, fixed_scores.get(r, 0.0)) for r in rules)


def measure(scored):
    """scored: [(label, score)] -> (recall at 5, FP rate at 5, fp count, n_ham, n_spam)."""
    ham = [s for label, s in scored if label == "ham"]
    spam = [s for label, s in scored if label == "spam"]
    fp = sum(s >= THRESHOLD for s in ham)
    tp = sum(s >= THRESHOLD for s in spam)
    return tp / max(1, len(spam)), fp / max(1, len(ham)), fp, len(ham), len(spam)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("hits")
    ap.add_argument("--cf", default=os.path.join(os.path.dirname(__file__), "..", "..", "etc", "spam-rules.cf"))
    ap.add_argument("--write", action="store_true", help="write the fitted scores into the .cf")
    ap.add_argument("--k", type=int, default=folds.DEFAULT_K)
    ap.add_argument("--seed", default=folds.DEFAULT_SEED)
    ap.add_argument("--weights", default="3,6,10,20,40", help="ham weights to try")
    ap.add_argument("--min", type=float, default=0.1, dest="lo")
    ap.add_argument("--max", type=float, default=3.5, dest="hi")
    ap.add_argument("--l2", type=float, default=0.0005)
    ap.add_argument("--max-fp", type=float, default=0.001, help="pooled FP rate allowed at 5.0")
    ap.add_argument("--iters", type=int, default=1500)
    ap.add_argument("--min-hits", type=int, default=8,
                    help="rules hitting fewer messages keep the score written by hand")
    args = ap.parse_args()

    rows = read_hits(args.hits)
    names, fixed, current = read_cf_rules(args.cf)
    hits = {}
    for _, _, rules in rows:
        for r in rules:
            hits[r] = hits.get(r, 0) + 1
    # too rare in the corpus to measure: the score written by hand stays
    rare = [r for r in names if r not in fixed and hits.get(r, 0) < args.min_hits]
    features = [r for r in names if r not in fixed and r not in rare]
    fixed_scores = {r: current.get(r, 1.0) for r in list(fixed) + rare}
    for r in rare:
        print("note: %s hits %d messages (fewer than %d): keeps its score %.2f, set by hand" %
              (r, hits.get(r, 0), args.min_hits, current.get(r, 1.0)))
    fold_of = {}
    for label in ("ham", "spam"):
        fold_of.update(folds.assign([n for lab, n, _ in rows if lab == label], args.k,
                                    "%s:%s" % (args.seed, label)))

    best = None
    for hw in [float(x) for x in args.weights.split(",")]:
        pooled = []
        for k in range(args.k):
            train = [r for r in rows if fold_of[r[1]] != k]
            test = [r for r in rows if fold_of[r[1]] == k]
            sc = fit(train, features, hw, args.lo, args.hi, args.l2, args.iters, fixed_scores=fixed_scores)
            pooled += [(label, score_of(rules, sc, fixed_scores)) for label, _, rules in test]
        rec, fpr, fp, nh, ns = measure(pooled)
        print("ham weight %5.1f: cross-validated recall at 5.0 %.4f, FP rate %.4f (%d/%d ham)" %
              (hw, rec, fpr, fp, nh), flush=True)
        ok = fpr <= args.max_fp
        key = (ok, rec if ok else -fpr)
        if best is None or key > best[0]:
            best = (key, hw)
    hw = best[1]
    scores = fit(rows, features, hw, args.lo, args.hi, args.l2, args.iters, fixed_scores=fixed_scores)
    rec, fpr, fp, nh, ns = measure([(label, score_of(rules, scores, fixed_scores)) for label, _, rules in rows])
    print("chosen ham weight %.1f; fitted on all %d messages: recall %.4f, FP %d/%d (not cross-validated)" %
          (hw, len(rows), rec, fp, nh))
    for r in sorted(features, key=lambda r: -scores[r]):
        print("score %-28s %5.2f" % (r, scores[r]))
    if args.write:
        write_scores(args.cf, scores)
        print("wrote the scores into", args.cf)


def write_scores(path, scores):
    """Replace each fitted rule's score line, or add one after its describe."""
    lines = open(path).read().split("\n")
    have = set()
    for i, line in enumerate(lines):
        w = line.split()
        if len(w) >= 3 and w[0] == "score" and w[1] in scores:
            lines[i] = re.sub(r"^(score\s+\S+\s+)\S+", lambda m: m.group(1) + "%.2f" % scores[w[1]], line)
            have.add(w[1])
    out = []
    for line in lines:
        out.append(line)
        w = line.split()
        if len(w) >= 2 and w[0] == "describe" and w[1] in scores and w[1] not in have:
            out.append("score    %-20s %.2f" % (w[1], scores[w[1]]))
            have.add(w[1])
    open(path, "w").write("\n".join(out))


if __name__ == "__main__":
    main()

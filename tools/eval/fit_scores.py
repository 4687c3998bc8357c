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


def fit_set(rows, features, bounds, fixed_scores, fold_of, args, title, ordered=()):
    """Cross-validate each ham weight, pick one, fit on everything."""
    best = None
    for hw in [float(x) for x in args.weights.split(",")]:
        pooled = []
        for k in range(args.k):
            train = [r for r in rows if fold_of[r[1]] != k]
            sc = fit(train, features, hw, bounds, args.l2, args.iters, fixed_scores=fixed_scores,
                     ordered=ordered)
            pooled += [(label, score_of(rules, sc, fixed_scores)) for label, n, rules in rows if fold_of[n] == k]
        rec, fpr, fp, nh, t, rec_t = measure(pooled)
        print("%s, ham weight %5.1f: cross-validated recall at 5.0 %.4f, FP %.4f (%d/%d ham); "
              "FP <= 0.1 %% from %.2f, recall there %.4f" % (title, hw, rec, fpr, fp, nh, t, rec_t), flush=True)
        key = (fpr <= args.max_fp, rec if fpr <= args.max_fp else -fpr)
        if best is None or key > best[0]:
            best = (key, hw)
    hw = best[1]
    scores = fit(rows, features, hw, bounds, args.l2, args.iters, fixed_scores=fixed_scores, ordered=ordered)
    rec, fpr, fp, nh, _, _ = measure([(label, score_of(rules, scores, fixed_scores)) for label, _, rules in rows])
    print("%s: chosen ham weight %.1f; fitted on all %d messages: recall %.4f, FP %d/%d (not cross-validated)" %
          (title, hw, len(rows), rec, fp, nh))
    return scores


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
    ap.add_argument("--l2", type=float, default=0.0005)
    ap.add_argument("--max-fp", type=float, default=0.001, help="pooled FP rate allowed at 5.0")
    ap.add_argument("--iters", type=int, default=600)
    ap.add_argument("--min-hits", type=int, default=8,
                    help="rules hitting fewer messages keep the score written by hand")
    args = ap.parse_args()

    rows = read_hits(args.hits)
    names, fixed, current, bands = read_cf_rules(args.cf)
    # set 2's rows: the band from the hits, or from the probabilities
    rows2 = None
    if any(r in bands for _, _, rules in rows for r in rules):
        rows2 = rows
    elif args.bayes:
        prob = read_bayes(args.bayes)
        missing = [n for _, n, _ in rows if n not in prob]
        if missing:
            sys.exit("fit_scores: %d messages have no Bayes probability in %s (e.g. %s)" %
                     (len(missing), args.bayes, missing[0]))
        rows2 = [(label, n, rules + [b for b in [band_of(prob[n], bands)] if b]) for label, n, rules in rows]
    rows0 = [(label, n, [r for r in rules if r not in bands]) for label, n, rules in rows]

    hits = {}
    for _, _, rules in rows0:
        for r in rules:
            hits[r] = hits.get(r, 0) + 1
    rare = [r for r in names if r not in fixed and r not in bands and hits.get(r, 0) < args.min_hits]
    for r in rare:
        print("note: %s hits %d messages (fewer than %d): keeps its score %.2f, set by hand" %
              (r, hits.get(r, 0), args.min_hits, current.get(r, [1.0])[0]))
    rules0 = [r for r in names if r not in fixed and r not in rare and r not in bands]
    fold_of = {}
    for label in ("ham", "spam"):
        fold_of.update(folds.assign([n for lab, n, _ in rows if lab == label], args.k,
                                    "%s:%s" % (args.seed, label)))

    fixed0 = {r: current.get(r, [1.0])[0] for r in list(fixed) + rare}
    bounds = {r: (0.1, args.hi) for r in rules0}
    s0 = fit_set(rows0, rules0, bounds, fixed0, fold_of, args, "without Bayes")
    s2 = None
    if rows2 is not None:
        fixed2 = {r: current.get(r, [1.0] * 4)[2] for r in list(fixed) + rare}
        bounds.update({b: BAND_BOUNDS for b in bands})
        order = sorted(bands, key=lambda b: bands[b])
        s2 = fit_set(rows2, rules0 + order, bounds, fixed2, fold_of, args, "with Bayes", ordered=order)
    else:
        print("no Bayes band in the hits and no --bayes: set 2 keeps its scores")
    lines = {}
    for r in rules0 + list(bands):
        old = current.get(r, [1.0] * 4)
        a = s0[r] if r in s0 else 0.0
        b = s2[r] if s2 is not None else old[2]
        lines[r] = (a, a, b, b)
        print("score %-26s %5.2f %5.2f %5.2f %5.2f  (%d hits)" % ((r,) + lines[r] + (hits.get(r, 0),)))
    if args.write:
        write_scores(args.cf, lines)
        print("wrote the scores into", args.cf)


def fmt(v):
    return "%.2f" % v if v != 0 else "0"


def write_scores(path, scores):
    """Replace each fitted rule's score line, or add one after its describe."""
    lines = open(path).read().split("\n")
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

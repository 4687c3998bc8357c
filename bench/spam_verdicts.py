#!/usr/bin/env python3
"""spam_verdicts.py - what each system of bench/spam.sh said of the set.

Usage: spam_verdicts.py postern|spamc|rspamc OUTPUT NMSG

Reads one system's output of one round over the benchmark's set, whose
files are named NNNNN-ham.eml and NNNNN-spam.eml, and prints one line:

    SCORED ERRORS HAM HAM_CALLED SPAM SPAM_CALLED DETAIL...

SCORED       messages the system gave a verdict with a score
ERRORS       messages it failed on (or lines it could not read)
HAM, SPAM    messages of each class among the scored
*_CALLED     of those, how many the system called spam
DETAIL       free text for the record (Bayes hits, actions)

"Called spam" is each system's own verdict: postern scan, score >= 5
(spam_tag_score's default, the action "tag"); spamc -c, exit status 1
(spamd's required_score, 5); rspamc, an action other than "no action"
(rspamd's greylist starts at 4, add header at 6, reject at 15).
Output formats read:
  postern  `postern scan` lines: "FILE: ACTION ... hits=spam:score=N,spam:RULE,..."
  spamc    pipe_bench.py's JSON line: "by_kind": {"ham": {"0": n, "1": m}, ...}
  rspamc   rspamc's blocks: "Results for file: FILE (T seconds)", "Action: A",
           "Score: S / R"
The outputs are the benchmark's own; a line that fits none of these counts
as an error rather than being guessed at.
"""
import json
import re
import sys


def kind_of(path):
    m = re.search(r"(?:^|/)\d+-(ham|spam)\.eml$", path)
    return m.group(1) if m else None


def tally():
    return {"scored": 0, "errors": 0, "ham": 0, "spam": 0, "ham_called": 0, "spam_called": 0}


def add(t, kind, called):
    if kind is None:
        t["errors"] += 1
        return
    t["scored"] += 1
    t[kind] += 1
    t[kind + "_called"] += bool(called)


def postern(text):
    t, bayes = tally(), 0
    line_re = re.compile(r"^(.*?): (accept|tag|reject|tempfail|discard|quarantine)\b(.*)$")
    for line in text.splitlines():
        m = line_re.match(line)
        score = re.search(r"(?:^| )hits=spam:score=(-?[0-9.]+)", m.group(3)) if m else None
        if not score:
            t["errors"] += 1
            continue
        add(t, kind_of(m.group(1)), float(score.group(1)) >= 5.0)
        bayes += bool(re.search(r",spam:[A-Z_]*BAYES_\d+", m.group(3)))
    return t, "messages with a Bayes rule hit: %d" % bayes


def spamc(text):
    t = tally()
    j = json.loads(text.strip().splitlines()[-1])
    for kind, codes in j.get("by_kind", {}).items():
        for code, n in codes.items():
            for _ in range(n):
                if code in ("0", "1") and kind in ("ham", "spam"):
                    add(t, kind, code == "1")
                else:
                    t["errors"] += 1
    return t, "exit codes %s (0 ham, 1 spam, others errors)" % json.dumps(j.get("exit_codes", {}), sort_keys=True)


def rspamc(text):
    t, actions, ge5 = tally(), {}, 0
    current = None
    for line in text.splitlines():
        m = re.match(r"^Results for file: (.*) \([0-9.]+ seconds\)$", line)
        if m:
            if current is not None:  # a block without its score
                t["errors"] += 1
            current = {"file": m.group(1)}
            continue
        if current is None:
            continue
        m = re.match(r"^Action: (.*)$", line)
        if m:
            current["action"] = m.group(1)
            continue
        m = re.match(r"^Score: (-?[0-9.]+) / ", line)
        if m and "action" in current:
            a = current["action"]
            actions[a] = actions.get(a, 0) + 1
            ge5 += float(m.group(1)) >= 5.0
            add(t, kind_of(current["file"]), a != "no action")
            current = None
    if current is not None:
        t["errors"] += 1
    return t, "actions %s; score >= 5: %d" % (json.dumps(actions, sort_keys=True), ge5)


def main():
    if len(sys.argv) != 4 or sys.argv[1] not in ("postern", "spamc", "rspamc"):
        sys.exit("usage: spam_verdicts.py postern|spamc|rspamc OUTPUT NMSG")
    with open(sys.argv[2], encoding="utf-8", errors="replace") as f:
        text = f.read()
    try:
        t, detail = globals()[sys.argv[1]](text)
    except (ValueError, IndexError, AttributeError) as e:
        t, detail = tally(), "unreadable output: %s" % e
        t["errors"] = int(sys.argv[3])
    print(t["scored"], t["errors"], t["ham"], t["ham_called"], t["spam"], t["spam_called"], detail)


if __name__ == "__main__":
    main()

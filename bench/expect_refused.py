#!/usr/bin/env python3
"""
expect_refused.py - which messages of the anchors' set a scanning postern
must refuse, from two independent sources:

  * the set's manifest.tsv (columns file, kind, bytes): the messages of
    kind "eicar" carry the EICAR test file and must be refused as a virus;
  * `postern scan --json` over the same files with the benchmark's
    configuration: what the pipeline (content rules + antivirus) says.

Usage: expect_refused.py MANIFEST VERDICTS_JSONL OUT

Writes OUT: one line per message that must be refused, "FILE<TAB>CODE<TAB>
REASON" (FILE without its folder, CODE the reply to the end of data). A
message refused by a content rule (reason other than "virus") counts as
expected too, and is listed on stdout, so that the benchmark reports it
instead of quietly weakening the rules.

Prints a summary on stdout. Exit status 1 (and the reasons on stdout)
when the two sources disagree about viruses (an EICAR message not
refused as a virus, a virus found in a message the manifest calls
clean), when a verdict is an error or a failed scan, or when a message
gets an action other than accept, tag or reject (the latency check only
knows 250 and 5xx); 0 otherwise.
"""
import json
import os
import sys


def main(manifest, verdicts, out_path):
    kinds = {}
    with open(manifest) as f:
        for n, line in enumerate(f):
            cols = line.rstrip("\n").split("\t")
            if n == 0 or len(cols) < 2:
                continue
            kinds[cols[0]] = cols[1]
    seen, expected, problems, by_rule = {}, [], [], []
    with open(verdicts) as f:
        for line in f:
            v = json.loads(line)
            name = os.path.basename(v["file"])
            seen[name] = v
    for name in sorted(kinds):
        v = seen.get(name)
        kind = kinds[name]
        if v is None:
            problems.append("%s: no verdict from postern scan" % name)
            continue
        if "error" in v or v.get("failed"):
            problems.append("%s: postern scan failed: %s" % (name, v.get("error") or v.get("reason")))
            continue
        action, reason = v.get("action"), v.get("reason", "")
        if kind == "eicar" and not (action == "reject" and reason == "virus"):
            problems.append("%s: carries EICAR but postern scan says %s %s" % (name, action, reason))
        if kind != "eicar" and reason == "virus":
            problems.append("%s (%s): a virus found in a message without one: %s" %
                            (name, kind, ",".join(v.get("hits", []))))
        if action == "reject":
            expected.append("%s\t%d\t%s" % (name, v["code"], reason))
            if reason != "virus":
                by_rule.append("%s (%s): %d %s %s, hits %s" % (
                    name, kind, v["code"], v.get("status", ""), reason, ",".join(v.get("hits", []))))
        elif action not in ("accept", "tag"):
            problems.append("%s: action %s (the benchmark expects accept, tag or reject)" % (name, action))
    extra = sorted(set(seen) - set(kinds))
    if extra:
        problems.append("verdicts for files not in the manifest: %s" % " ".join(extra[:5]))
    with open(out_path, "w") as out:
        out.write("".join(e + "\n" for e in expected))
    n_virus = sum(1 for e in expected if e.endswith("\tvirus"))
    print("postern scan over the %d-message set: %d refused as a virus (manifest: %d EICAR), "
          "%d refused by a content rule, %d accepted" % (
              len(kinds), n_virus, sum(1 for k in kinds.values() if k == "eicar"),
              len(by_rule), len(kinds) - len(expected)))
    for r in by_rule:
        print("  refused by a rule: " + r)
    for p in problems:
        print("  PROBLEM: " + p)
    return 1 if problems else 0


if __name__ == "__main__":
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    sys.exit(main(*sys.argv[1:]))

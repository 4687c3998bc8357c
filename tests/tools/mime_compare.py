#!/usr/bin/env python3
"""
mime_compare.py - compare the MIME parser of src/mime, through the test
tool build/tests/mime_dump, with Python's email package (policy
email.policy.default, which decodes RFC 2047 words in filenames as mail
clients do), and with the expected dumps of our own test messages.

    python3 tests/tools/mime_compare.py --dump build/tests/mime_dump \
        [--corpus DIR] [--update-golden] [-v]

1. tests/data/mime/*.eml (our own messages): the dump must equal NAME.json
   (every field but the libmagic type, which varies with libmagic's
   version), and agree with Python's package.
2. The shared corpus (default ../shared/corpus beside the checkout, or
   $POSTERN_CORPUS; skipped with a message when absent, as in CI): every
   message of mime/ and every 7th of train/ham and train/spam must parse
   with no problem bit but "malformed", and agree with Python's package.

"Agree" means the same parts in the same order (count, content type,
filename), and for base64 parts the same decoded bytes. The differences
accepted, each for a reason, are named by the rules in ACCEPTED below and
counted in the output. The last line is "mime-compare: N passed, N failed,
N skipped" (one test per message; the corpus counts as one skipped test
when absent).

Untrusted input: the messages (parsed by mime_dump and by Python). Runs as
whoever runs the tests.
"""
import argparse
import email
import email.policy
import hashlib
import json
import os
import re
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
DATA = os.path.join(ROOT, "tests", "data", "mime")

# message/* types that hold a whole message; the others (delivery-status,
# partial, external-body, ...) are reports or fragments, leaves for us and
# for mail clients, while Python parses each as header blocks.
ENCAPSULATING = ("message/rfc822", "message/global", "message/news")

ACCEPTED = {
    "reused-boundary":
        "a multipart declares its parent's boundary: Python lets the outer "
        "multipart take the lines (the inner one loses its parts, later parts "
        "fall into the epilogue); we, like MimeKit and Thunderbird, give them to "
        "the innermost one first, so every part Python sees we see too",
    "byte-order-mark":
        "the message starts with a UTF-8 byte order mark: Python reads it as part "
        "of the first field name and finds no header section; we skip it, as "
        "MimeKit does",
    "junk-header-line":
        "a header section holds a line without a colon: Python ends the section "
        "there and reads the rest as body; we, like Thunderbird and MimeKit, skip "
        "the line and read on, so a Content-Type after it is not hidden",
    "rfc2231-filename-first":
        "a field has both filename and filename* (or name and name*): Python "
        "gives the first one written, we give the RFC 2231 one, as RFC 2231 "
        "section 4 intends and clients show",
    "unquoted-value-with-spaces":
        "an unquoted filename holds spaces (name=my file.exe): Python's default "
        "policy stops at the first space, we keep the value up to the ';' as its "
        "compat32 policy does, so the extension stays visible",
    "base64-after-padding":
        "base64 goes on after '=' padding: Python stops at the padding, we decode "
        "what follows too (as Thunderbird does), so a scanner sees every byte",
}

BOUNDARY_RE = re.compile(rb'boundary\s*=\s*"?([^";\r\n]+)', re.I)


def run_dump(dump, files):
    """Our parse of each file: {path: dump object}."""
    out = {}
    for i in range(0, len(files), 200):
        chunk = files[i:i + 200]
        res = subprocess.run([dump] + chunk, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             check=False)
        if res.returncode != 0:
            raise RuntimeError("%s failed (%d): %s" % (dump, res.returncode,
                                                         res.stderr.decode(errors="replace")))
        for line in res.stdout.decode("utf-8").splitlines():
            obj = json.loads(line)
            obj["parts"].sort(key=lambda p: p["index"])
            out[obj["file"]] = obj
    return out


def python_filename(part):
    try:
        return part.get_filename()
    except Exception:  # a header the default policy cannot parse
        return None


def has_both_forms(part):
    for field, name in (("content-disposition", "filename"), ("content-type", "name")):
        value = str(part.get(field, "")).lower()
        plain = re.search(r"(^|[;\s])%s\s*=" % name, value)
        extended = re.search(r"(^|[;\s])%s\*" % name, value)
        if plain and extended:
            return True
    return False


def python_parts(raw):
    """Python's parts in order, message/* reports and fragments as leaves."""
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    parts = []

    def walk(m, parent):
        ctype = m.get_content_type()
        cte = str(m.get("content-transfer-encoding", "7bit")).strip().lower()
        entry = {"content_type": ctype, "filename": python_filename(m), "parent": parent,
                 "both_forms": has_both_forms(m), "cte": cte, "obj": m,
                 "junk": any(type(d).__name__ == "MissingHeaderBodySeparatorDefect"
                             for d in m.defects)}
        parts.append(entry)
        index = len(parts) - 1
        if not m.is_multipart():
            return
        if ctype.startswith("message/") and (ctype not in ENCAPSULATING or
                                             cte not in ("7bit", "8bit", "binary")):
            return
        for sub in m.get_payload():
            walk(sub, index)

    walk(msg, -1)
    return parts


def our_parts(dump):
    """Our parts, without uuencoded blocks found in text (children of a leaf):
    Python's package does not look for them."""
    parts = dump["parts"]
    by_index = {p["index"]: p for p in parts}
    return [p for p in parts
            if p["parent"] < 0 or by_index[p["parent"]]["multipart"] or
            by_index[p["parent"]]["message"]]


def reuses_boundary(raw):
    seen = [b.strip() for b in BOUNDARY_RE.findall(raw)]
    return len(seen) != len(set(seen))


def compare(path, dump, accepted):
    """Differences with Python's package that no accepted rule explains."""
    raw = open(path, "rb").read()
    mine = our_parts(dump)
    theirs = python_parts(raw)
    whole_message_rule = None
    if raw.startswith(b"\xef\xbb\xbf"):
        whole_message_rule = "byte-order-mark"
    elif reuses_boundary(raw):
        whole_message_rule = "reused-boundary"
    elif any(p["junk"] for p in theirs):
        whole_message_rule = "junk-header-line"
    problems = []
    if whole_message_rule is not None:
        # The structures may differ; every attachment name Python sees, we see.
        ours = [p["filename"] for p in mine if p["filename"]]
        for p in theirs:
            if p["filename"] and p["filename"] not in ours and not p["both_forms"]:
                problems.append("Python sees attachment %r, we do not" % p["filename"])
        if [p["content_type"] for p in mine] != [p["content_type"] for p in theirs]:
            accepted[whole_message_rule] = accepted.get(whole_message_rule, 0) + 1
        return problems
    if len(mine) != len(theirs):
        problems.append("%d parts, Python %d: ours %s, Python's %s" % (
            len(mine), len(theirs), [p["content_type"] for p in mine],
            [p["content_type"] for p in theirs]))
        return problems
    for a, b in zip(mine, theirs):
        where = "part %d" % a["index"]
        if a["content_type"] != b["content_type"]:
            problems.append("%s: type %s, Python %s" % (where, a["content_type"],
                                                         b["content_type"]))
        if a["filename"] != b["filename"]:
            if b["both_forms"]:
                accepted["rfc2231-filename-first"] = accepted.get("rfc2231-filename-first",
                                                                  0) + 1
            elif (a["filename"] and b["filename"] and
                  a["filename"].startswith(b["filename"] + " ")):
                accepted["unquoted-value-with-spaces"] = accepted.get(
                    "unquoted-value-with-spaces", 0) + 1
            else:
                problems.append("%s: filename %r, Python %r" % (where, a["filename"],
                                                                 b["filename"]))
        if a["encoding"] == "base64" and not a["multipart"] and not a["message"]:
            payload = b["obj"].get_payload(decode=True)
            if payload is not None and hashlib.sha256(payload).hexdigest() != a["sha256"]:
                if len(payload) < a["decoded_size"] and b"=" in raw:
                    accepted["base64-after-padding"] = accepted.get("base64-after-padding",
                                                                    0) + 1
                else:
                    problems.append("%s: %d decoded bytes differ from Python's %d" % (
                        where, a["decoded_size"], len(payload)))
    return problems


GOLDEN_FIELDS = ("index", "depth", "parent", "content_type", "charset", "disposition",
                 "filename", "encoding", "multipart", "message", "decoded_size", "sha256")


def golden_of(dump):
    return {"problems": dump["problems"],
            "parts": [{k: p.get(k) for k in GOLDEN_FIELDS} for p in dump["parts"]]}


def corpus_files(corpus):
    files = []
    for root, _, names in sorted(os.walk(os.path.join(corpus, "mime"))):
        files += [os.path.join(root, n) for n in sorted(names) if n != "PROVENANCE.txt"]
    for group in ("ham", "spam"):
        folder = os.path.join(corpus, "train", group)
        names = sorted(os.listdir(folder)) if os.path.isdir(folder) else []
        files += [os.path.join(folder, n) for n in names[::7]]
    return files


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dump", required=True, help="path of build/tests/mime_dump")
    ap.add_argument("--corpus", default=os.environ.get(
        "POSTERN_CORPUS", os.path.join(os.path.dirname(ROOT), "shared", "corpus")))
    ap.add_argument("--update-golden", action="store_true",
                    help="write tests/data/mime/*.json from the current parse")
    ap.add_argument("-v", "--verbose", action="store_true")
    args = ap.parse_args()

    passed = failed = skipped = 0
    accepted = {}

    ours = sorted(os.path.join(DATA, n) for n in os.listdir(DATA) if n.endswith(".eml"))
    dumps = run_dump(args.dump, ours)
    for path in ours:
        name = os.path.basename(path)
        got = golden_of(dumps[path])
        golden_path = path[:-4] + ".json"
        if args.update_golden:
            with open(golden_path, "w") as f:
                json.dump(got, f, indent=1, ensure_ascii=False, sort_keys=True)
                f.write("\n")
        problems = []
        if not os.path.exists(golden_path):
            problems.append("no %s (run with --update-golden)" % os.path.basename(golden_path))
        else:
            with open(golden_path) as f:
                want = json.load(f)
            if want != got:
                problems.append("differs from %s:\n      want %s\n      got  %s" % (
                    os.path.basename(golden_path), json.dumps(want, ensure_ascii=False),
                    json.dumps(got, ensure_ascii=False)))
        problems += compare(path, dumps[path], accepted)
        if problems:
            failed += 1
            print("FAIL %s" % name)
            for p in problems:
                print("    %s" % p)
        else:
            passed += 1
            if args.verbose:
                print("ok   %s %s" % (name, dumps[path]["problems"]))

    if not os.path.isdir(os.path.join(args.corpus, "mime")):
        print("mime-compare: corpus %s not present: comparison on the shared corpus skipped "
              "(our own messages in tests/data/mime were compared)" % args.corpus)
        skipped += 1
    else:
        files = corpus_files(args.corpus)
        dumps = run_dump(args.dump, files)
        malformed = 0
        for path in files:
            dump = dumps[path]
            problems = ["problem %s" % p for p in dump["problems"] if p != "malformed"]
            malformed += "malformed" in dump["problems"]
            try:
                problems += compare(path, dump, accepted)
            except Exception as e:  # Python's package gave up: nothing to compare
                print("note %s: Python's email package failed: %r" % (path, e))
            rel = os.path.relpath(path, args.corpus)
            if problems:
                failed += 1
                print("FAIL %s" % rel)
                for p in problems:
                    print("    %s" % p)
            else:
                passed += 1
                if args.verbose:
                    print("ok   %s %s" % (rel, dump["problems"]))
        print("mime-compare: %d corpus messages, %d marked malformed" % (len(files), malformed))
    for rule, count in sorted(accepted.items()):
        print("mime-compare: accepted %d x %s: %s" % (count, rule, ACCEPTED[rule]))
    print("mime-compare: %d passed, %d failed, %d skipped" % (passed, failed, skipped))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

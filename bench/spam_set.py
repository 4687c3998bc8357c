#!/usr/bin/env python3
"""spam_set.py - the spam benchmark's message set and its training set.

Usage: spam_set.py CORPUS OUTDIR SIZE

CORPUS holds ham/ and spam/ (one message per file, the labelled corpus of
make eval). SIZE messages are picked, ham and spam in the corpus'
proportion, evenly spread over each class' files in name order (so every
part of the corpus is in it, and the same corpus always gives the same
set), and copied to OUTDIR/set/ as NNNNN-ham.eml and NNNNN-spam.eml: the
names the anchors' clients (pipe_bench.py, smtp_replay.py) take, which
read the class from the name. The numbering follows a hash of the
original name, so ham and spam are mixed and each half of the set holds
both. Every other message is copied to OUTDIR/train/ham/ and
OUTDIR/train/spam/: what Bayes learns, never a message of the set.
OUTDIR/set-crlf/ holds the same files with CRLF line ends, as SMTP carries
them (an SMTP client that sends a file as it is would send bare LFs, which
postern refuses). OUTDIR/set-manifest.tsv names each set file's original.
Prints one line
of counts. Reads only the corpus; writes only below OUTDIR (which must
not hold set/ or train/ yet).
"""
import hashlib
import os
import shutil
import sys


def files_of(folder):
    return sorted(f for f in os.listdir(folder)
                  if not f.startswith(".") and os.path.isfile(os.path.join(folder, f)))


def spread(names, n):
    """n names evenly spread over the sorted list: the middle of each of n strata"""
    total = len(names)
    return [names[(2 * i + 1) * total // (2 * n)] for i in range(n)]


def main():
    if len(sys.argv) != 4:
        sys.exit("usage: spam_set.py CORPUS OUTDIR SIZE")
    corpus, out, size = sys.argv[1], sys.argv[2], int(sys.argv[3])
    classes = {c: files_of(os.path.join(corpus, c)) for c in ("ham", "spam")}
    total = sum(len(v) for v in classes.values())
    if size < 2 or size >= total:
        sys.exit("spam_set.py: SIZE must be from 2 to %d (the corpus has %d messages)" % (total - 1, total))
    n_spam = max(1, round(size * len(classes["spam"]) / total))
    want = {"spam": n_spam, "ham": size - n_spam}
    picked = []
    for c, names in classes.items():
        chosen = set(spread(names, want[c]))
        picked += [(c, f) for f in chosen]
        os.makedirs(os.path.join(out, "train", c))
        for f in names:
            if f not in chosen:
                shutil.copyfile(os.path.join(corpus, c, f), os.path.join(out, "train", c, f))
    picked.sort(key=lambda cf: hashlib.sha256(("%s/%s" % cf).encode()).hexdigest())
    os.makedirs(os.path.join(out, "set"))
    os.makedirs(os.path.join(out, "set-crlf"))
    nbytes = 0
    with open(os.path.join(out, "set-manifest.tsv"), "w") as man:
        man.write("file\tclass\toriginal\tbytes\n")
        for i, (c, f) in enumerate(picked, 1):
            name = "%05d-%s.eml" % (i, c)
            dst = os.path.join(out, "set", name)
            shutil.copyfile(os.path.join(corpus, c, f), dst)
            b = os.path.getsize(dst)
            with open(dst, "rb") as f:
                lines = f.read().splitlines()
            with open(os.path.join(out, "set-crlf", name), "wb") as f:
                f.write(b"".join(line.rstrip(b"\r") + b"\r\n" for line in lines))
            nbytes += b
            man.write("%s\t%s\t%s/%s\t%d\n" % (name, c, c, f, b))
    print("set %d %d %d %d train %d %d" % (size, want["ham"], want["spam"], nbytes,
                                          len(classes["ham"]) - want["ham"], len(classes["spam"]) - want["spam"]))


if __name__ == "__main__":
    main()

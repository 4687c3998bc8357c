"""folds.py - the k folds of the labelled corpus that make eval and the
score fitting share: stratified (each fold gets its share of ham and of
spam) and fixed by a seeded shuffle, so that every run splits alike.

Input: file names in a folder of the corpus (data, not parsed here).
"""
import os
import random

DEFAULT_SEED = 20260808
DEFAULT_K = 5


def corpus_files(corpus_dir):
    """{"ham": [names], "spam": [names]}: the files of corpus_dir/ham and
    corpus_dir/spam, sorted by name."""
    out = {}
    for label in ("ham", "spam"):
        d = os.path.join(corpus_dir, label)
        out[label] = sorted(f for f in os.listdir(d) if not f.startswith("."))
    return out


def assign(files, k=DEFAULT_K, seed=DEFAULT_SEED):
    """{name: fold} for the files of one label: shuffled with the seed,
    then dealt out to the k folds in turn."""
    names = sorted(files)
    random.Random("%s:%d" % (seed, k)).shuffle(names)
    return {name: i % k for i, name in enumerate(names)}


def split(corpus_dir, k=DEFAULT_K, seed=DEFAULT_SEED):
    """{label: {name: fold}} for the whole corpus (each label shuffled on
    its own, so that every fold gets ham and spam in the corpus's ratio)."""
    files = corpus_files(corpus_dir)
    return {label: assign(names, k, "%s:%s" % (seed, label)) for label, names in files.items()}

#!/usr/bin/env python3
"""
run.py - run the postern integration tests: every test_*.py in this
folder, with unittest at verbosity 2. The last line printed is exactly
"N passed, N failed, N skipped" (errors count as failed); the exit status
is 1 if anything failed.

    POSTERN_BIN=$PWD/build/postern python3 tests/integration/run.py [NAME ...]

NAME narrows the run (unittest names: test_protocol, or
test_protocol.ProtocolTest.test_ehlo). POSTERN_SANITIZED=1 makes the
timeouts generous for ASan builds (the harness fails any test whose server
log shows a sanitizer report either way).

Without NAME the modules run INTEGRATION_JOBS at a time (default: the
number of CPUs), each in its own Python process: the tests mostly wait on
servers and timers, so two CPUs nearly halve the run. The longest modules
start first, by the durations the last run left beside POSTERN_BIN
(integration-times.json), else by their number of tests. Each module's
output is printed whole when it ends; the totals are summed.
"""
import concurrent.futures
import faulthandler
import glob
import json
import os
import re
import subprocess
import sys
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import harness  # noqa: E402  (after the path is set)


class TimingResult(unittest.TextTestResult):
    """Remembers how long each test took."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.durations = []
        self._started = {}

    def startTest(self, test):
        self._started[test.id()] = time.monotonic()
        super().startTest(test)

    def stopTest(self, test):
        begun = self._started.pop(test.id(), None)
        if begun is not None:
            self.durations.append((time.monotonic() - begun, test.id()))
        super().stopTest(test)


TIMES_NAME = "integration-times.json"
RESULT_LINE = re.compile(r"^(\d+) passed, (\d+) failed, (\d+) skipped$", re.M)


def times_path():
    return os.path.join(os.path.dirname(os.path.abspath(harness.POSTERN_BIN)), TIMES_NAME)


def expected_cost(modules):
    """Seconds each module took last time (this build's file, else the
    plain build's), or its number of tests."""
    known = {}
    for path in (times_path(), os.path.join(os.path.dirname(HERE), "..", "build", TIMES_NAME)):
        try:
            with open(path) as f:
                known = json.load(f)
            break
        except (OSError, ValueError):
            continue
    cost = {}
    for m in modules:
        if m in known:
            cost[m] = float(known[m])
        else:
            with open(os.path.join(HERE, m + ".py")) as f:
                cost[m] = float(len(re.findall(r"^\s+def test_", f.read(), re.M)))
    return cost


def run_module(module):
    begun = time.monotonic()
    p = subprocess.run([sys.executable, os.path.abspath(__file__), module],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    return module, p.returncode, p.stdout.decode("utf-8", "replace"), time.monotonic() - begun


def main_parallel(jobs):
    modules = sorted(os.path.basename(p)[:-3] for p in glob.glob(os.path.join(HERE, "test_*.py")))
    cost = expected_cost(modules)
    order = sorted(modules, key=lambda m: -cost[m])
    print("postern integration tests: binary %s%s, %d modules, %d at a time" % (
        harness.POSTERN_BIN, " (sanitized)" if harness.SANITIZED else "", len(modules), jobs),
        flush=True)
    start = time.monotonic()
    totals, failed_modules, took = [0, 0, 0], [], {}
    with concurrent.futures.ThreadPoolExecutor(max_workers=jobs) as pool:
        for module, rc, out, seconds in pool.map(run_module, order):
            sys.stdout.write(out)
            took[module] = round(seconds, 1)
            m = None
            for m in RESULT_LINE.finditer(out):
                pass
            if m is None:
                failed_modules.append(module)
                print("%s: ended without a result line (exit %d)" % (module, rc))
                totals[1] += 1
            else:
                for i in range(3):
                    totals[i] += int(m.group(i + 1))
                if rc != 0:
                    failed_modules.append(module)
            sys.stdout.flush()
    try:
        with open(times_path(), "w") as f:
            json.dump(took, f, indent=0, sort_keys=True)
    except OSError:
        pass
    print("modules by duration:")
    for module in sorted(took, key=lambda k: -took[k])[:8]:
        print("  %6.1fs  %s" % (took[module], module))
    if failed_modules:
        print("modules with failures: %s" % " ".join(sorted(failed_modules)))
    sys.stderr.write("duration %.1fs\n" % (time.monotonic() - start))
    sys.stderr.flush()
    print("%d passed, %d failed, %d skipped" % tuple(totals), flush=True)
    return 1 if failed_modules else 0


def main(argv):
    jobs = int(os.environ.get("INTEGRATION_JOBS", "0") or 0) or os.cpu_count() or 1
    if not argv and jobs > 1:
        return main_parallel(jobs)
    # Last resort against a hang: dump every thread and exit.
    faulthandler.dump_traceback_later(harness.scaled(900), exit=True)
    loader = unittest.TestLoader()
    if argv:
        suite = loader.loadTestsFromNames(argv)
    else:
        suite = loader.discover(HERE, pattern="test_*.py", top_level_dir=HERE)
    print("postern integration tests: binary %s%s" % (
        harness.POSTERN_BIN, " (sanitized)" if harness.SANITIZED else ""), flush=True)
    start = time.monotonic()
    runner = unittest.TextTestRunner(verbosity=2, stream=sys.stdout,
                                     resultclass=TimingResult)
    result = runner.run(suite)
    faulthandler.cancel_dump_traceback_later()
    failed = len(result.failures) + len(result.errors) + len(result.unexpectedSuccesses)
    skipped = len(result.skipped)
    failed_tests = set()
    for test, _ in result.failures + result.errors:
        test = getattr(test, "test_case", test)  # a failed subTest: its test
        if isinstance(test, unittest.TestCase):
            failed_tests.add(test.id())
    passed = max(0, result.testsRun - skipped - len(result.expectedFailures) -
                 len(result.unexpectedSuccesses) - len(failed_tests))
    print("slowest tests:")
    for took, name in sorted(result.durations, reverse=True)[:8]:
        print("  %6.2fs  %s" % (took, name))
    sys.stdout.flush()
    sys.stderr.write("duration %.1fs\n" % (time.monotonic() - start))
    sys.stderr.flush()
    print("%d passed, %d failed, %d skipped" % (passed, failed, skipped), flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

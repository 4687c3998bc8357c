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
"""
import faulthandler
import os
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


def main(argv):
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

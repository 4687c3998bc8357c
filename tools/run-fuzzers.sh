#!/bin/sh
# run-fuzzers.sh - run each libFuzzer binary briefly over its seed corpus
# (tests/fuzz/corpus/<name>/, plus what earlier runs found, kept in
# build-fuzz/corpus/<name>/). FUZZ_SECONDS sets the time per target.
set -eu
seconds="${FUZZ_SECONDS:-15}"
passed=0
failed=0
for bin in "$@"; do
	name=$(basename "$bin")
	work="build-fuzz/corpus/$name"
	mkdir -p "$work"
	if "$bin" -max_total_time="$seconds" -max_len=4096 -timeout=10 -rss_limit_mb=2048 \
		-print_final_stats=0 "$work" "tests/fuzz/corpus/$name" >"build-fuzz/$name.log" 2>&1; then
		echo "fuzz $name: ok ($(grep -c . "$work"/* 2>/dev/null | wc -l) corpus files)"
		passed=$((passed + 1))
	else
		echo "fuzz $name: FAILED, see build-fuzz/$name.log"
		tail -40 "build-fuzz/$name.log"
		failed=$((failed + 1))
	fi
done
echo "fuzz: $passed passed, $failed failed"
[ "$failed" -eq 0 ]

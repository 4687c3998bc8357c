#!/bin/bash
# run-fuzzers.sh - run each libFuzzer binary briefly over its seed corpus
# (tests/fuzz/corpus/<name>/, plus what earlier runs found, kept in
# build-fuzz/corpus/<name>/). FUZZ_SECONDS sets the time per target;
# FUZZ_JOBS how many targets run at once (default: the number of CPUs),
# each on one CPU, so the whole run takes about targets / jobs x seconds.
set -eu
seconds="${FUZZ_SECONDS:-10}"
jobs="${FUZZ_JOBS:-$(nproc 2>/dev/null || echo 1)}"
[ "$jobs" -ge 1 ] 2>/dev/null || jobs=1

# One target: its log in build-fuzz/NAME.log, its result in build-fuzz/NAME.rc.
run_one() {
	name=$(basename "$1")
	work="build-fuzz/corpus/$name"
	mkdir -p "$work"
	rc=0
	"$1" -max_total_time="$seconds" -max_len=4096 -timeout=10 -rss_limit_mb=2048 \
		-print_final_stats=0 "$work" "tests/fuzz/corpus/$name" >"build-fuzz/$name.log" 2>&1 || rc=$?
	echo "$rc" >"build-fuzz/$name.rc"
}

running=0
for bin in "$@"; do
	rm -f "build-fuzz/$(basename "$bin").rc"
	run_one "$bin" &
	running=$((running + 1))
	if [ "$running" -ge "$jobs" ]; then
		wait -n || true # one has ended (its result is in its .rc file)
		running=$((running - 1))
	fi
done
wait

passed=0
failed=0
for bin in "$@"; do
	name=$(basename "$bin")
	work="build-fuzz/corpus/$name"
	if [ "$(cat "build-fuzz/$name.rc" 2>/dev/null || echo 1)" = 0 ]; then
		echo "fuzz $name: ok ($(ls "$work" | wc -l) corpus files)"
		passed=$((passed + 1))
	else
		echo "fuzz $name: FAILED, see build-fuzz/$name.log"
		tail -40 "build-fuzz/$name.log"
		failed=$((failed + 1))
	fi
done
echo "fuzz: $passed passed, $failed failed"
[ "$failed" -eq 0 ]

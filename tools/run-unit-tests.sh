#!/bin/bash
# run-unit-tests.sh - run each cmocka test binary given as argument, one
# per CPU at a time (UNIT_JOBS; most of their time is spent waiting on
# timers), print each one's output in the order given, and one closing
# line "N passed, N failed, N skipped" over all of them.
set -u
jobs="${UNIT_JOBS:-$(nproc 2>/dev/null || echo 1)}"
[ "$jobs" -ge 1 ] 2>/dev/null || jobs=1
work=$(mktemp -d "${TMPDIR:-/tmp}/postern-unit.XXXXXX")
trap 'rm -rf "$work"' EXIT

# Test i: its output in $work/i.out, its exit status in $work/i.rc.
i=0
running=0
for t in "$@"; do
	i=$((i + 1))
	( "$t" >"$work/$i.out" 2>&1; echo $? >"$work/$i.rc" ) &
	running=$((running + 1))
	if [ "$running" -ge "$jobs" ]; then
		wait -n || true
		running=$((running - 1))
	fi
done
wait

passed=0
failed=0
skipped=0
i=0
for t in "$@"; do
	i=$((i + 1))
	out=$(cat "$work/$i.out")
	rc=$(cat "$work/$i.rc" 2>/dev/null || echo 1)
	printf '%s\n' "$out"
	p=$(printf '%s\n' "$out" | sed -n 's/^\[  PASSED  \] \([0-9]*\) test.*/\1/p' | tail -1)
	f=$(printf '%s\n' "$out" | sed -n 's/^\[  FAILED  \] \([0-9]*\) test.*/\1/p' | tail -1)
	s=$(printf '%s\n' "$out" | sed -n 's/^\[  SKIPPED \] \([0-9]*\) test.*/\1/p' | tail -1)
	passed=$((passed + ${p:-0}))
	failed=$((failed + ${f:-0}))
	skipped=$((skipped + ${s:-0}))
	if [ "$rc" -ne 0 ] && [ "${f:-0}" -eq 0 ]; then
		echo "$t: exited with status $rc" >&2
		failed=$((failed + 1))
	fi
done
echo "unit: $passed passed, $failed failed, $skipped skipped"
[ "$failed" -eq 0 ]

#!/bin/sh
# SPDX-License-Identifier: MIT
# Runs the unit tests (cmocka binaries) and the integration scripts, one by one,
# each with a time limit, and prints "N passed, N failed, N skipped".
# A test that exits 77 skipped; a skip fails the run unless SLUICE_ALLOW_SKIP=1,
# because a skipped test is not a passing one.
# Usage: tests/run.sh [unit|integration|escape|all] [NAME-FILTER]
set -u
cd "$(dirname "$0")/.." || exit 2
B=${B:-build}
what=${1:-all}
filter=${2:-}
logdir=$B/test-logs
mkdir -p "$logdir"
pass=0 fail=0 skip=0 failed="" skipped=""

run_one() { # name cmd...
	name=$1; shift
	case "$name" in *"$filter"*) ;; *) return 0 ;; esac
	log=$logdir/$(echo "$name" | tr '/' '_').log
	start=$(date +%s)
	timeout -k 10 "${SLUICE_TEST_TIMEOUT:-600}" "$@" >"$log" 2>&1
	rc=$?
	secs=$(( $(date +%s) - start ))
	case $rc in
	0) pass=$((pass + 1)); printf 'PASS  %-45s %4ss\n' "$name" "$secs" ;;
	77) skip=$((skip + 1)); skipped="$skipped $name"; printf 'SKIP  %-45s %4ss  (%s)\n' "$name" "$secs" "$(tail -n 1 "$log")" ;;
	*) fail=$((fail + 1)); failed="$failed $name"; printf 'FAIL  %-45s %4ss  rc=%s, log: %s\n' "$name" "$secs" "$rc" "$log"
	   tail -n 25 "$log" | sed 's/^/      | /' ;;
	esac
}

if [ "$what" = all ] || [ "$what" = unit ]; then
	for t in "$B"/tests/unit/test_*; do
		[ -x "$t" ] || continue
		run_one "unit/$(basename "$t")" "$t"
	done
fi
for kind in integration escape; do
	if [ "$what" = all ] || [ "$what" = $kind ]; then
		for t in tests/$kind/test_*.sh; do
			[ -f "$t" ] || continue
			run_one "$kind/$(basename "$t" .sh)" bash "$t"
		done
	fi
done

echo
[ -n "$failed" ] && echo "failed:$failed"
[ -n "$skipped" ] && echo "skipped:$skipped"
echo "$pass passed, $fail failed, $skip skipped"
[ "$fail" -eq 0 ] || exit 1
if [ "$skip" -gt 0 ] && [ "${SLUICE_ALLOW_SKIP:-0}" != 1 ]; then
	echo "tests/run.sh: $skip test(s) skipped; a skip is not a pass (set SLUICE_ALLOW_SKIP=1 to accept)" >&2
	exit 1
fi
[ $((pass + fail + skip)) -gt 0 ] || { echo "tests/run.sh: no test ran" >&2; exit 1; }
exit 0

#!/bin/sh
# SPDX-License-Identifier: MIT
# Runs the unit tests (cmocka binaries) and the integration scripts, one by one,
# each with a time limit, and prints "N passed, N failed, N skipped".
# A test that exits 77 skipped; a skip fails the run unless SLUICE_ALLOW_SKIP=1,
# because a skipped test is not a passing one.
# Usage: tests/run.sh [unit|integration|escape|all] [NAME-FILTER]
# "all" (make test) also repeats the integration and escape tests with ASan+UBSan
# binaries and runs a subset with sluiced under valgrind (SLUICE_NO_SAN=1 skips that).
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

# The same integration and escape tests again, with sluice and sluiced built
# with ASan+UBSan (any report fails the run), then a functional subset with
# sluiced under valgrind's memcheck (any error fails the run). Tests that build
# their own sanitizer binaries or only parse files are not repeated.
SAN_SKIP="test_fuzz_smoke test_sanitizers test_compose"
VG_TESTS="test_broker_basic test_broker_ops test_broker_dns test_broker_internal test_secrets_e2e test_policy_e2e test_kernel_run test_escape_http"
san_pass() {
	rm -rf "$logdir/san" && mkdir -p "$logdir/san"
	echo "-- ASan+UBSan build (make B=build-san SAN=1 all)"
	make -s B=build-san SAN=1 all >"$logdir/san/build.log" 2>&1 || {
		fail=$((fail + 1)); failed="$failed san/build"; tail -n 20 "$logdir/san/build.log"; return; }
	for t in tests/integration/test_*.sh tests/escape/test_*.sh; do
		n=$(basename "$t" .sh)
		case " $SAN_SKIP " in *" $n "*) continue ;; esac
		ASAN_OPTIONS="log_path=$PWD/$logdir/san/asan:detect_leaks=1" \
		UBSAN_OPTIONS="log_path=$PWD/$logdir/san/ubsan:print_stacktrace=1" \
		B=build-san run_one "asan/$n" bash "$t"
	done
	if ls "$logdir"/san/asan.* "$logdir"/san/ubsan.* >/dev/null 2>&1; then
		fail=$((fail + 1)); failed="$failed asan/reports"
		echo "FAIL  sanitizer reports:"; head -n 40 "$logdir"/san/asan.* "$logdir"/san/ubsan.* 2>/dev/null | sed 's/^/      | /'
	fi
}
vg_pass() {
	command -v valgrind >/dev/null || { fail=$((fail + 1)); failed="$failed valgrind/missing"; echo "FAIL  valgrind is not installed (make deps)"; return; }
	rm -rf "$logdir/vg" && mkdir -p "$logdir/vg"
	for n in $VG_TESTS; do
		t=tests/integration/$n.sh; [ -f "$t" ] || t=tests/escape/$n.sh
		SL_VALGRIND="$PWD/$logdir/vg" run_one "valgrind/$n" bash "$t"
	done
	bad=$(grep -L "ERROR SUMMARY: 0 errors" "$logdir"/vg/vg.*.log 2>/dev/null)
	nlogs=$(ls "$logdir"/vg/vg.*.log 2>/dev/null | wc -l)
	if [ "$nlogs" = 0 ]; then
		fail=$((fail + 1)); failed="$failed valgrind/none"; echo "FAIL  no sluiced ran under valgrind"
	elif [ -n "$bad" ]; then
		fail=$((fail + 1)); failed="$failed valgrind/errors"
		echo "FAIL  memcheck errors in sluiced:"; for f in $bad; do grep -E "ERROR SUMMARY|Invalid|uninitialised|definitely" "$f" | head -n 8 | sed "s#^#      | $(basename "$f"): #"; done
	else
		echo "      memcheck: $nlogs sluiced run(s), 0 errors"
	fi
}
if [ "$what" = all ] && [ "${SLUICE_NO_SAN:-0}" != 1 ]; then
	san_pass
	vg_pass
fi

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

#!/bin/bash
# SPDX-License-Identifier: MIT
# Runs libFuzzer targets one after the other, FUZZ_SECONDS each, from the
# committed seeds in fuzz/corpus/<t> plus what earlier runs found in
# $FUZZ_B/corpus/<t> (libFuzzer writes new inputs only to the first corpus
# dir, so the committed seeds never change). Crashes, leaks and timeouts land
# in $FUZZ_B/crashes/<t>/; a summary line per target goes to stdout and to
# $FUZZ_B/report.txt. Exit status 1 when any target found something.
# Usage: FUZZ_B=build-fuzz FUZZ_SECONDS=60 fuzz/run.sh [TARGET...]
set -u
cd "$(dirname "$0")/.." || exit 2
FUZZ_B=${FUZZ_B:-build-fuzz}
secs=${FUZZ_SECONDS:-60}
[ $# -gt 0 ] || set -- $(ls fuzz/fuzz_*.c | sed 's|fuzz/fuzz_||;s|\.c$||')
report=$FUZZ_B/report.txt
mkdir -p "$FUZZ_B/logs"
bad=""
printf '%-16s %8s %12s %10s %s\n' target seconds executions exec/s result | tee "$report"
for t in "$@"; do
	bin=$FUZZ_B/fuzz_$t
	[ -x "$bin" ] || { echo "fuzz/run.sh: $bin is not built (run make fuzz-bins)" >&2; bad="$bad $t"; continue; }
	work=$FUZZ_B/corpus/$t crashes=$FUZZ_B/crashes/$t log=$FUZZ_B/logs/$t.log
	mkdir -p "$work" "$crashes" "fuzz/corpus/$t"
	dict=()
	[ -f "fuzz/$t.dict" ] && dict=(-dict="fuzz/$t.dict")
	before=$(ls "$crashes" | wc -l)
	start=$(date +%s)
	# UB is fatal (built with -fno-sanitize-recover); leaks count as findings.
	ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1} \
	UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1} \
	timeout -k 5 $((secs + 60)) "$bin" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 \
		-print_final_stats=1 -artifact_prefix="$crashes/" "${dict[@]}" "$work" "fuzz/corpus/$t" >"$log" 2>&1
	rc=$?
	took=$(( $(date +%s) - start ))
	execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
	eps=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -n 1)
	after=$(ls "$crashes" | wc -l)
	if [ "$rc" = 0 ] && [ "$after" = "$before" ]; then
		res=ok
	else
		res="FOUND (rc=$rc): $(ls -t "$crashes" | head -n 1), log $log"
		bad="$bad $t"
		grep -m 3 -E 'ERROR: |runtime error|invariant broken' "$log" | sed 's/^/    /' >&2
	fi
	printf '%-16s %8s %12s %10s %s\n' "$t" "$took" "${execs:-?}" "${eps:-?}" "$res" | tee -a "$report"
done
[ -z "$bad" ] || { echo "fuzz/run.sh: findings in:$bad (reproduce: $FUZZ_B/fuzz_<t> <file>)" >&2; exit 1; }

#!/bin/bash
# SPDX-License-Identifier: MIT
# Builds the libFuzzer targets (build-fuzz/) and runs each for a few seconds
# over its committed seed corpus: any crash, sanitizer report, leak or broken
# invariant fails. Fuzzing for longer is `make fuzz`.
set -u
cd "$(dirname "$0")/../.." || exit 2
secs=${FUZZ_SMOKE_SECONDS:-5}
FB=build-fuzz-smoke
T=$(mktemp -d /tmp/sluice-test-fuzz.XXXXXX)
trap 'rm -rf "$T"' EXIT
log() { printf '[fuzz_smoke] %s\n' "$*" >&2; }

command -v clang >/dev/null || { log "FAIL: clang is not installed (scripts/deps.sh)"; exit 1; }
ls /usr/lib/llvm-*/lib/clang/*/lib/linux/libclang_rt.fuzzer-x86_64.a >/dev/null 2>&1 ||
	{ log "FAIL: libFuzzer runtime missing: apt-get install libclang-rt-14-dev"; exit 1; }
targets=$(ls fuzz/fuzz_*.c | sed 's|fuzz/fuzz_||;s|\.c$||')
[ -n "$targets" ] || { log "FAIL: no fuzz targets"; exit 1; }

make --no-print-directory -j2 FUZZ_B=$FB fuzz-bins >"$T/build.log" 2>&1 ||
	{ tail -n 30 "$T/build.log"; log "FAIL: fuzz targets do not build"; exit 1; }
for t in $targets; do
	[ -x "$FB/fuzz_$t" ] || { log "FAIL: $FB/fuzz_$t missing after the build"; exit 1; }
	[ -n "$(ls fuzz/corpus/$t 2>/dev/null)" ] || { log "FAIL: no seed corpus in fuzz/corpus/$t"; exit 1; }
done
# A fresh work corpus each time: the smoke run starts from the committed seeds only.
rm -rf "$FB/corpus" "$FB/crashes"
FUZZ_B=$FB FUZZ_SECONDS=$secs fuzz/run.sh $targets || { log "FAIL: fuzzing found something (see above)"; exit 1; }
# Each target must really have run inputs, not exited at start-up.
while read -r t s execs rest; do
	[ "$t" = target ] && continue
	case $execs in ''|*[!0-9]*) log "FAIL: $t: no execution count"; exit 1 ;; esac
	[ "$execs" -ge 100 ] || { log "FAIL: $t ran only $execs inputs"; exit 1; }
done <"$FB/report.txt"
log "PASS: $(echo $targets | wc -w) targets, ${secs}s each"
exit 0

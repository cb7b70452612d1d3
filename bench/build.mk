# SPDX-License-Identifier: MIT
# make bench: bench/bench.sh (setup, BENCH_REPS runs of BENCH_D seconds per case and target, report
# into $(B)/bench/report.md, teardown). A build failure does not stop the peers from being measured:
# sluice is then reported as "not available" with the reason, never with a number.
BENCH_D    ?= 5
BENCH_REPS ?= 1

bench: deps
	$(Q)mkdir -p $(B)/bench && rm -f $(B)/bench/build-failed
	$(Q)$(MAKE) --no-print-directory all || { touch $(B)/bench/build-failed; \
		echo "bench: 'make all' failed; measuring the peers only" >&2; }
	$(Q)BENCH_D=$(BENCH_D) BENCH_REPS=$(BENCH_REPS) OUT=$(abspath $(B))/bench \
		BENCH_BUILD_FAILED=$$(test -f $(B)/bench/build-failed && echo 1) bench/bench.sh all

# make bench-idle: broker RSS per idle TLS connection, N (10000) of them opened inside `sluice run`
# by a Python client; report into $(B)/bench/idle.md.
.PHONY: bench-idle
bench-idle: all
	$(Q)OUT=$(abspath $(B))/bench bash bench/idle.sh

# SPDX-License-Identifier: MIT
# sluice: non-recursive build. Each part declares its targets in <dir>/build.mk;
# this file holds the shared flags and the user-facing targets.
.DEFAULT_GOAL := all
.DELETE_ON_ERROR:
.SECONDARY:

B        ?= build
CC       ?= gcc
CLANG    ?= clang
BPFTOOL  ?= bpftool
ARCH     := $(shell uname -m | sed 's/x86_64/x86/;s/aarch64/arm64/;s/ppc64le/powerpc/;s/mips.*/mips/')

LLHTTP_SRC := /usr/share/llhttp
LLHTTP_INC := /usr/share/include/llhttp

# SAN=1 builds everything with ASan+UBSan (tests use it; see tests/build.mk).
SAN_FLAGS := -fsanitize=address,undefined -fno-omit-frame-pointer
CFLAGS_BASE := -std=gnu11 -g -O2 -Wall -Wextra -Werror -Wno-unused-parameter \
	-D_GNU_SOURCE -Iinclude -Icommon -Ipolicy -Ibroker -I$(B) -I$(LLHTTP_INC)
ifeq ($(SAN),1)
CFLAGS_BASE += $(SAN_FLAGS)
LDFLAGS_BASE += $(SAN_FLAGS)
endif
CFLAGS  ?=
CFLAGS  += $(CFLAGS_BASE)
LDFLAGS += $(LDFLAGS_BASE)

ifeq ($(V),1)
Q :=
msg :=
else
Q := @
msg = @printf '  %-8s %s\n' "$(1)" "$(2)";
endif

ALL_BINS :=
UNIT_TESTS :=

include common/build.mk
include policy/build.mk
include bpf/build.mk
include user/build.mk
include broker/build.mk
include tests/build.mk
-include fuzz/build.mk
-include bench/build.mk

.PHONY: all deps demo test test-unit test-integration bench fuzz clean help check

all: $(ALL_BINS)

help:
	@echo "make            build bpf objects, skeletons, sluice (CLI) and sluiced (broker) into $(B)/"
	@echo "make deps       install the Debian packages sluice needs (apt-get, as root)"
	@echo "make demo       deps + build + a sandboxed command against a local HTTPS server"
	@echo "make test       deps + build + unit and integration tests (root; skips count as failures)"
	@echo "make bench      direct vs sluice vs nginx vs haproxy vs mitmproxy, one run"
	@echo "make fuzz       run each libFuzzer target for FUZZ_SECONDS (default 60)"
	@echo "V=1 shows full commands; SAN=1 builds with ASan+UBSan"

deps:
	$(Q)scripts/deps.sh

demo: deps
	$(Q)$(MAKE) --no-print-directory all
	$(Q)scripts/demo.sh

test: deps
	$(Q)$(MAKE) --no-print-directory all test-bins
	$(Q)tests/run.sh

test-unit: all test-bins
	$(Q)tests/run.sh unit

test-integration: all test-bins
	$(Q)tests/run.sh integration

check: test

clean:
	rm -rf $(B)

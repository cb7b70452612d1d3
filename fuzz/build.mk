# SPDX-License-Identifier: MIT
# libFuzzer targets (clang, ASan+UBSan, UB is fatal). The parts' libraries are
# rebuilt in their own tree, $(FUZZ_B), with coverage instrumentation
# (-fsanitize=fuzzer-no-link); each fuzz/fuzz_<name>.c links against them.
#   make fuzz                 every target for FUZZ_SECONDS from fuzz/corpus/<name>
#   make fuzz FUZZ_TARGETS=dns FUZZ_SECONDS=600
#   make fuzz-bins            build only
# New inputs found go to $(FUZZ_B)/corpus/<name> (the committed seeds stay
# small), crashes to $(FUZZ_B)/crashes/<name>/, a summary to $(FUZZ_B)/report.txt.
FUZZ_B       ?= build-fuzz
FUZZ_SECONDS ?= 60
FUZZ_CC      ?= clang
FUZZ_ALL     := $(patsubst fuzz/fuzz_%.c,%,$(wildcard fuzz/fuzz_*.c))
FUZZ_TARGETS ?= $(FUZZ_ALL)
FUZZ_BINS    := $(FUZZ_ALL:%=$(FUZZ_B)/fuzz_%)
FUZZ_LIBS    := $(FUZZ_B)/libsluicebroker.a $(FUZZ_B)/libsluicepolicy.a $(FUZZ_B)/libsluicecommon.a
FUZZ_SAN     := -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer
# Recoverable UBSan would print and carry on: a fuzzer must stop on it. clang
# warns (gcc does not) about broker/ca.c's flexible-array sentinel; silenced
# here only, the main build is gcc's.
FUZZ_LIB_CFLAGS := -fsanitize=fuzzer-no-link -fno-sanitize-recover=all \
	-Wno-gnu-variable-sized-type-not-at-end

.PHONY: fuzz fuzz-bins fuzz-libs FORCE
FORCE:

# The sub-make decides whether the libraries are stale; the stamp only moves
# when one of them did, so the fuzzers relink only then.
$(FUZZ_B)/.libs.stamp: FORCE
	$(Q)CFLAGS="$(FUZZ_LIB_CFLAGS)" $(MAKE) --no-print-directory B=$(FUZZ_B) CC=$(FUZZ_CC) SAN=1 $(FUZZ_LIBS)
	$(Q)for l in $(FUZZ_LIBS); do [ -f $@ ] && [ ! $$l -nt $@ ] || { touch $@; break; }; done

$(FUZZ_B)/fuzz_%: fuzz/fuzz_%.c $(wildcard fuzz/*.h) $(FUZZ_B)/.libs.stamp
	$(call msg,FUZZ-LD,$@)
	$(Q)$(FUZZ_CC) -std=gnu11 -g -O1 -Wall -Wextra -Werror -Wno-unused-parameter -D_GNU_SOURCE \
		-Iinclude -Icommon -Ipolicy -Ibroker -Ifuzz -I$(LLHTTP_INC) $(FUZZ_SAN) $< -o $@ \
		$(FUZZ_LIBS) -lssl -lcrypto -lyaml -lz -lpthread

fuzz-bins: $(FUZZ_BINS)

fuzz: fuzz-bins
	$(Q)FUZZ_B=$(FUZZ_B) FUZZ_SECONDS=$(FUZZ_SECONDS) fuzz/run.sh $(FUZZ_TARGETS)

# SPDX-License-Identifier: MIT
# Every tests/unit/test_*.c becomes $(B)/tests/unit/test_* linked against the
# parts' static libraries (unused objects are not pulled in) and cmocka.
# Unit tests are always built with ASan+UBSan.
UNIT_SRCS  := $(wildcard tests/unit/test_*.c)
UNIT_TESTS := $(UNIT_SRCS:tests/unit/%.c=$(B)/tests/unit/%)
TEST_LIBS  := $(B)/libsluiceuser.a $(B)/libsluicebroker.a $(B)/libsluicepolicy.a $(B)/libsluicecommon.a
SYS_LIBS   := -lssl -lcrypto -lyaml -lbpf -lelf -lz -lpthread

$(B)/tests/unit/%: tests/unit/%.c $(TEST_LIBS) $(wildcard tests/unit/*.h)
	$(call msg,TEST-CC,$@)
	$(Q)mkdir -p $(@D)
	$(Q)$(CC) $(filter-out $(SAN_FLAGS),$(CFLAGS)) $(SAN_FLAGS) -Itests/unit -Iuser $< -o $@ \
		$(TEST_LIBS) $(SYS_LIBS) -lcmocka $(SAN_FLAGS)

.PHONY: test-bins
test-bins: $(UNIT_TESTS)

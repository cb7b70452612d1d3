# SPDX-License-Identifier: MIT
COMMON_SRCS := $(wildcard common/*.c)
COMMON_OBJS := $(COMMON_SRCS:%.c=$(B)/%.o)

$(B)/common/%.o: common/%.c $(wildcard common/*.h include/*.h)
	$(call msg,CC,$@)
	$(Q)mkdir -p $(@D)
	$(Q)$(CC) $(CFLAGS) -c $< -o $@

$(B)/libsluicecommon.a: $(COMMON_OBJS)
	$(call msg,AR,$@)
	$(Q)ar rcs $@ $^

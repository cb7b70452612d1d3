# SPDX-License-Identifier: MIT
USER_SRCS := $(filter-out user/main.c,$(wildcard user/*.c))
USER_OBJS := $(USER_SRCS:%.c=$(B)/%.o)

# user objects include the BPF skeletons
$(B)/user/%.o: user/%.c $(wildcard user/*.h policy/*.h include/*.h common/*.h) $(BPF_SKELS)
	$(call msg,CC,$@)
	$(Q)mkdir -p $(@D)
	$(Q)$(CC) $(CFLAGS) -c $< -o $@

$(B)/libsluiceuser.a: $(USER_OBJS)
	$(call msg,AR,$@)
	$(Q)mkdir -p $(@D)
	$(Q)rm -f $@ && ar rcs $@ $^

$(B)/sluice: user/main.c $(B)/libsluiceuser.a $(B)/libsluicepolicy.a $(B)/libsluicecommon.a
	$(call msg,LINK,$@)
	$(Q)$(CC) $(CFLAGS) $< -o $@ $(B)/libsluiceuser.a $(B)/libsluicepolicy.a $(B)/libsluicecommon.a \
		-lbpf -lelf -lz -lyaml -lssl -lcrypto $(LDFLAGS)

ifneq ($(wildcard user/main.c),)
ALL_BINS += $(B)/sluice
endif

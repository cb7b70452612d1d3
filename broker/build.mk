# SPDX-License-Identifier: MIT
# sluiced: everything in broker/ but main.c goes into libsluicebroker.a (the
# unit tests link it), with Debian's llhttp C sources compiled in.
BROKER_SRCS := $(filter-out broker/main.c,$(wildcard broker/*.c))
BROKER_OBJS := $(BROKER_SRCS:%.c=$(B)/%.o)
LLHTTP_OBJS := $(B)/llhttp/llhttp.o $(B)/llhttp/api.o $(B)/llhttp/http.o

$(B)/broker/%.o: broker/%.c $(wildcard broker/*.h policy/*.h include/*.h common/*.h)
	$(call msg,CC,$@)
	$(Q)mkdir -p $(@D)
	$(Q)$(CC) $(CFLAGS) -c $< -o $@

# Third-party code: built as shipped, without our warning flags.
$(B)/llhttp/%.o: $(LLHTTP_SRC)/%.c
	$(call msg,CC,$@)
	$(Q)mkdir -p $(@D)
	$(Q)$(CC) $(filter-out -W%,$(CFLAGS)) -w -c $< -o $@

$(B)/libsluicebroker.a: $(BROKER_OBJS) $(LLHTTP_OBJS)
	$(call msg,AR,$@)
	$(Q)rm -f $@ && ar rcs $@ $^

$(B)/sluiced: broker/main.c $(B)/libsluicebroker.a $(B)/libsluicepolicy.a $(B)/libsluicecommon.a
	$(call msg,LINK,$@)
	$(Q)$(CC) $(CFLAGS) $< -o $@ $(B)/libsluicebroker.a $(B)/libsluicepolicy.a $(B)/libsluicecommon.a \
		-lssl -lcrypto -lyaml -lbpf -lelf -lz -lpthread $(LDFLAGS)

ifneq ($(wildcard broker/main.c),)
ALL_BINS += $(B)/sluiced
endif

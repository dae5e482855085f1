# CassMail — build, run and test.
#
#   make            programs into build/ (C11, -Wall -Wextra -Werror)
#   make run        a local single-node Cassandra 0.7.0 with the schema, a demo user and the servers
#   make test       every test (unit, end-to-end against real Cassandra); ends "N passed, N failed"
#   make gen        regenerate gen-c_glib/ from thrift/cassandra.thrift
#   make clean      remove build/ (run/ and .cache/ are kept; `make distclean` removes them too)
#   make install    PREFIX=/usr/local DESTDIR= : programs, sample configuration
#
# `make run` and `make test` first run tools/setup, which installs the Debian packages and fetches
# Cassandra's jars from Maven Central; it is quick when everything is already there.

CC       ?= gcc
PKGS     := glib-2.0 gobject-2.0 thrift_c_glib openssl uuid
CPPFLAGS += -D_GNU_SOURCE -Isrc -Igen-c_glib
CFLAGS   ?= -O2 -g
CFLAGS   += -std=c11 -Wall -Wextra -Werror $(SAN)
# Generated stubs are not ours to fix; they build without -Werror's extras.
GEN_CFLAGS = -std=c11 -O2 -g -w $(SAN)
LDLIBS   += $(shell pkg-config --libs $(PKGS) 2>/dev/null)
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)

PREFIX  ?= /usr/local
DESTDIR ?=
B       := build

LIB_SRCS := $(wildcard src/util/*.c src/cass/*.c src/store/*.c src/net/*.c src/smtp/*.c src/pop3/*.c)
GEN_SRCS := $(wildcard gen-c_glib/*.c)
LIB_OBJS := $(LIB_SRCS:%.c=$(B)/obj/%.o)
GEN_OBJS := $(GEN_SRCS:%.c=$(B)/obj/%.o)
LIB      := $(B)/libcassmail.a

# Programs: src/cmd/NAME.c and tools/NAME.c each become build/NAME.
CMD_SRCS := $(wildcard src/cmd/*.c) $(wildcard tools/*.c) $(wildcard tools/bench/*.c)
PROGS    := $(addprefix $(B)/,$(basename $(notdir $(CMD_SRCS))))

# Unit tests: test/unit/test-NAME.c become build/test/test-NAME (linked with the library;
# test/unit/support/*.c holds test-only helpers such as the in-memory store).
UNIT_SRCS    := $(wildcard test/unit/test-*.c)
UNIT_SUPPORT := $(wildcard test/unit/support/*.c)
UNIT_BINS    := $(UNIT_SRCS:test/unit/%.c=$(B)/test/%)
# End-to-end helpers in C (need a running Cassandra; driven by the pytest suite).
E2E_SRCS     := $(wildcard test/e2e/*.c)
E2E_BINS     := $(E2E_SRCS:test/e2e/%.c=$(B)/test/%)

# Keep object files that pattern rules made on the way.
.SECONDARY:

.PHONY: all gen run test test-fast clean distclean install setup stop
all: $(PROGS) $(UNIT_BINS) $(E2E_BINS)

$(B)/obj/gen-c_glib/%.o: gen-c_glib/%.c
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(PKG_CFLAGS) $(GEN_CFLAGS) -c $< -o $@

$(B)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(PKG_CFLAGS) $(CFLAGS) -MMD -MP -c $< -o $@

$(LIB): $(LIB_OBJS) $(GEN_OBJS)
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^

$(B)/%: $(B)/obj/src/cmd/%.o $(LIB)
	$(CC) $(CFLAGS) $< $(LIB) $(LDLIBS) -o $@

$(B)/%: $(B)/obj/tools/%.o $(LIB)
	$(CC) $(CFLAGS) $< $(LIB) $(LDLIBS) -o $@

$(B)/%: $(B)/obj/tools/bench/%.o $(LIB)
	$(CC) $(CFLAGS) $< $(LIB) $(LDLIBS) -o $@

$(B)/test/%: $(B)/obj/test/unit/%.o $(UNIT_SUPPORT:%.c=$(B)/obj/%.o) $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $^ $(LDLIBS) -o $@

$(B)/test/%: $(B)/obj/test/e2e/%.o $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $^ $(LDLIBS) -o $@

-include $(shell find $(B)/obj -name '*.d' 2>/dev/null)

gen:
	rm -rf gen-c_glib && mkdir -p gen-c_glib
	thrift --gen c_glib -out gen-c_glib thrift/cassandra.thrift

setup:
	@tools/setup

run: setup all
	@tools/run-local

stop:
	@tools/run-local --stop

test: setup all
	@test/run

clean:
	rm -rf $(B)

distclean: clean
	-tools/cluster stop >/dev/null 2>&1
	rm -rf run .cache

install: all
	install -d $(DESTDIR)$(PREFIX)/sbin $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/share/cassmail \
	           $(DESTDIR)$(PREFIX)/etc/cassmail
	for p in cassmail-smtpd cassmail-pop3d cassmail-admin; do \
	  [ -x $(B)/$$p ] && install -m 755 $(B)/$$p $(DESTDIR)$(PREFIX)/sbin/; done; true
	install -m 755 $(B)/cassmail-tokens $(DESTDIR)$(PREFIX)/bin/
	install -m 644 config/cassmail.conf $(DESTDIR)$(PREFIX)/etc/cassmail/cassmail.conf.sample
	install -m 644 config/cassandra.yaml $(DESTDIR)$(PREFIX)/share/cassmail/

# CassMail — build, run and test.
#
#   make            programs into build/ (C11, -Wall -Wextra -Werror)
#   make run        a local single-node Cassandra 0.7.0 with the schema, a demo user and the servers
#   make test       every test (unit, end-to-end against real Cassandra); ends "N passed, N failed"
#   make test-ring  only the failover tests on a 3-node ring (part of make test; some minutes)
#   make gen        regenerate gen-c_glib/ from thrift/cassandra.thrift
#   make clean      remove build/ (run/ and .cache/ are kept; `make distclean` removes them too)
#   make install    PREFIX=/usr/local DESTDIR= SYSCONFDIR=/etc : programs, man pages, sample
#                   configuration, launcher files (xinetd, inetd, systemd) under share/cassmail
#   make fuzz       each libFuzzer harness (test/fuzz) for FUZZ_SECONDS (default 60) seconds
#   make test-asan  everything built with AddressSanitizer and UBSan into build/asan, then the
#                   end-to-end suite against those programs
#
#   make fresh-check  the README's first steps on a fresh Debian 12 root (tools/fresh-check; root,
#                   network to Debian's mirror and Maven Central; FRESH_ARGS passes options)
#
# `make run` and `make test` first run tools/setup, which installs the Debian packages and fetches
# Cassandra's jars from Maven Central; it is quick when everything is already there. The build
# then runs in a second make, so that what pkg-config says is read only after setup installed the
# libraries (this make reads the Makefile before setup runs: on a fresh machine its pkg-config
# answers nothing).

CC       ?= gcc
PKGS     := glib-2.0 gobject-2.0 thrift_c_glib openssl uuid
CPPFLAGS += -D_GNU_SOURCE -Isrc -Igen-c_glib
CFLAGS   ?= -O2 -g
CFLAGS   += -std=c11 -Wall -Wextra -Werror $(SAN)
# Generated stubs are not ours to fix; they build without -Werror's extras.
GEN_CFLAGS = -std=c11 -O2 -g -w $(SAN)
# Asked when a recipe first needs them (not when make reads this file), then kept: empty until
# tools/setup installed the -dev packages (see pkg-check).
PKG_LIBS   = $(eval PKG_LIBS := $$(shell pkg-config --libs $(PKGS) 2>/dev/null))$(PKG_LIBS)
PKG_CFLAGS = $(eval PKG_CFLAGS := $$(shell pkg-config --cflags $(PKGS) 2>/dev/null))$(PKG_CFLAGS)
LDLIBS     += $(PKG_LIBS)

PREFIX     ?= /usr/local
DESTDIR    ?=
SYSCONFDIR ?= /etc
B          := build

LIB_SRCS := $(wildcard src/util/*.c src/cass/*.c src/store/*.c src/net/*.c src/relay/*.c src/smtp/*.c \
              src/pop3/*.c src/imap/*.c)
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
# They find their data files (test/unit/data, test/fuzz/corpus) from the tree's top, whatever the
# working directory they run in.
$(UNIT_SRCS:%.c=$(B)/obj/%.o): CPPFLAGS += -DCASSMAIL_TOP='"$(CURDIR)"'
# End-to-end helpers in C (need a running Cassandra; driven by the pytest suite), each linked
# with test/e2e/support/*.c (what they share).
E2E_SRCS     := $(wildcard test/e2e/*.c)
E2E_SUPPORT  := $(wildcard test/e2e/support/*.c)
E2E_BINS     := $(E2E_SRCS:test/e2e/%.c=$(B)/test/%)

# Keep object files that pattern rules made on the way.
.SECONDARY:

.PHONY: all gen run test clean distclean install setup stop fuzz fuzz-build test-asan \
        pkg-check fresh-check
all: $(PROGS) $(UNIT_BINS) $(E2E_BINS)

# pkg-check - before the first compile: the libraries pkg-config must know, or what to do
$(LIB_OBJS) $(GEN_OBJS) $(CMD_SRCS:%.c=$(B)/obj/%.o) $(UNIT_SRCS:%.c=$(B)/obj/%.o) \
  $(UNIT_SUPPORT:%.c=$(B)/obj/%.o) $(E2E_SRCS:%.c=$(B)/obj/%.o) \
  $(E2E_SUPPORT:%.c=$(B)/obj/%.o): | pkg-check
pkg-check:
	@[ -n "$(PKG_CFLAGS)" ] || { echo "make: pkg-config knows none of $(PKGS): run tools/setup" \
	  "first (make run and make test do), then make again" >&2; exit 1; }

$(B)/obj/gen-c_glib/%.o: gen-c_glib/%.c
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(PKG_CFLAGS) $(GEN_CFLAGS) -c $< -o $@

$(B)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(PKG_CFLAGS) $(CFLAGS) -MMD -MP -c $< -o $@

$(LIB): $(LIB_OBJS) $(GEN_OBJS)
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^

$(patsubst src/cmd/%.c,$(B)/%,$(wildcard src/cmd/*.c)): $(B)/%: $(B)/obj/src/cmd/%.o $(LIB)
	$(CC) $(CFLAGS) $< $(LIB) $(LDLIBS) -o $@

$(patsubst tools/%.c,$(B)/%,$(wildcard tools/*.c)): $(B)/%: $(B)/obj/tools/%.o $(LIB)
	$(CC) $(CFLAGS) $< $(LIB) $(LDLIBS) -o $@

$(patsubst tools/bench/%.c,$(B)/%,$(wildcard tools/bench/*.c)): $(B)/%: $(B)/obj/tools/bench/%.o $(LIB)
	$(CC) $(CFLAGS) $< $(LIB) $(LDLIBS) -o $@

$(UNIT_BINS): $(B)/test/%: $(B)/obj/test/unit/%.o $(UNIT_SUPPORT:%.c=$(B)/obj/%.o) $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $^ $(LDLIBS) -o $@

$(E2E_BINS): $(B)/test/%: $(B)/obj/test/e2e/%.o $(E2E_SUPPORT:%.c=$(B)/obj/%.o) $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $^ $(LDLIBS) -o $@

-include $(shell find $(B)/obj -name '*.d' 2>/dev/null)

gen:
	rm -rf gen-c_glib && mkdir -p gen-c_glib
	thrift --gen c_glib -out gen-c_glib thrift/cassandra.thrift

setup:
	@tools/setup

# run, test, test-ring, test-asan: setup, then the build in a make of its own (see the top).
SUBMAKE := $(MAKE) --no-print-directory
run:
	@tools/setup
	@$(SUBMAKE) all
	@tools/run-local

stop:
	@tools/run-local --stop

test:
	@tools/setup
	@$(SUBMAKE) all fuzz-build
	@test/run

# The failover cases on a 3-node ring alone (they are part of `make test` too).
.PHONY: test-ring
test-ring:
	@tools/setup
	@$(SUBMAKE) all
	@test/run test/e2e/test_failover.py

clean:
	rm -rf $(B)

distclean: clean
	-tools/cluster stop >/dev/null 2>&1
	rm -rf run .cache

# install - programs (sbin: the servers and cassmail-admin; bin: cassmail-tokens), man pages,
# the sample configuration (also as SYSCONFDIR/cassmail/cassmail.conf when there is none yet) and
# the launcher files, their paths rewritten for PREFIX and SYSCONFDIR.
SHARE   := $(PREFIX)/share/cassmail
MANDIR  ?= $(PREFIX)/share/man
LAUNCH  := config/inetd.conf $(wildcard config/xinetd.d/* config/systemd/* config/cron.d/*)
install: all
	install -d $(DESTDIR)$(PREFIX)/sbin $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(SHARE)/xinetd.d \
	           $(DESTDIR)$(SHARE)/systemd $(DESTDIR)$(SHARE)/cron.d $(DESTDIR)$(SYSCONFDIR)/cassmail \
	           $(DESTDIR)$(MANDIR)/man1 $(DESTDIR)$(MANDIR)/man5 $(DESTDIR)$(MANDIR)/man8
	install -m 755 $(B)/cassmail-smtpd $(B)/cassmail-pop3d $(B)/cassmail-imapd $(B)/cassmail-admin \
	           $(DESTDIR)$(PREFIX)/sbin/
	install -m 755 $(B)/cassmail-tokens $(DESTDIR)$(PREFIX)/bin/
	install -m 644 man/*.1 $(DESTDIR)$(MANDIR)/man1/
	install -m 644 man/*.5 $(DESTDIR)$(MANDIR)/man5/
	install -m 644 man/*.8 $(DESTDIR)$(MANDIR)/man8/
	install -m 644 config/cassmail.conf config/cassandra.yaml config/log4j-server.properties \
	           $(DESTDIR)$(SHARE)/
	[ -e $(DESTDIR)$(SYSCONFDIR)/cassmail/cassmail.conf ] || \
	  install -m 644 config/cassmail.conf $(DESTDIR)$(SYSCONFDIR)/cassmail/cassmail.conf
	for f in $(LAUNCH); do \
	  sed -e 's|/usr/local/sbin/|$(PREFIX)/sbin/|g' -e 's|/etc/cassmail/|$(SYSCONFDIR)/cassmail/|g' \
	      $$f > $(DESTDIR)$(SHARE)/$${f#config/} && chmod 644 $(DESTDIR)$(SHARE)/$${f#config/} || exit 1; \
	done

# ---- fuzzing (clang's libFuzzer) -------------------------------------------------------------
# The library is built a second time with clang, coverage and the sanitizers into build/fuzz; each
# test/fuzz/fuzz-NAME.c becomes build/fuzz/fuzz-NAME. `make fuzz` runs each for FUZZ_SECONDS,
# growing build/fuzz/corpus-NAME from the seeds in test/fuzz/corpus/NAME (and, for SMTP, the
# transcripts test/smtp/*.in); a crash leaves build/fuzz/crash-NAME-* and fails the target.
FUZZ_CC      ?= clang
FUZZ_SAN     := -fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=undefined
FUZZ_B       := build/fuzz
FUZZ_NAMES   := $(patsubst test/fuzz/fuzz-%.c,%,$(wildcard test/fuzz/fuzz-*.c))
FUZZ_SECONDS ?= 60

fuzz-build:
	@$(MAKE) -s --no-print-directory B=$(FUZZ_B) CC=$(FUZZ_CC) SAN="$(FUZZ_SAN)" \
	  $(FUZZ_NAMES:%=$(FUZZ_B)/fuzz-%)

# (Used inside the build/fuzz make only: harness + common.c + in-memory store + library.)
$(B)/fuzz-%: $(B)/obj/test/fuzz/fuzz-%.o $(B)/obj/test/fuzz/common.o \
             $(B)/obj/test/unit/support/store_mem.o $(LIB)
	$(CC) $(CFLAGS) -fsanitize=fuzzer -Wl,--wrap=password_verify_dummy $^ $(LDLIBS) -lpthread -o $@

fuzz: fuzz-build
	@for f in $(FUZZ_NAMES); do \
	  mkdir -p $(FUZZ_B)/corpus-$$f; \
	  seeds=test/fuzz/corpus/$$f; [ $$f = smtp ] && seeds="$$seeds test/smtp"; \
	  echo "fuzz-$$f: $(FUZZ_SECONDS) s, log in $(FUZZ_B)/fuzz-$$f.log"; \
	  $(FUZZ_B)/fuzz-$$f -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 -max_len=8192 \
	    -artifact_prefix=$(FUZZ_B)/crash-$$f- $(FUZZ_B)/corpus-$$f $$seeds \
	    >$(FUZZ_B)/fuzz-$$f.log 2>&1; rc=$$?; \
	  grep -E '^stat::(number_of_executed_units|new_units_added)|^SUMMARY|^==[0-9]+==ERROR' \
	    $(FUZZ_B)/fuzz-$$f.log; \
	  [ $$rc = 0 ] || { echo "fuzz-$$f failed (exit $$rc): see $(FUZZ_B)/fuzz-$$f.log"; exit 1; }; \
	done

# ---- sanitizers -------------------------------------------------------------------------------
# Everything built again with ASan and UBSan into build/asan; the end-to-end suite then runs those
# programs (conftest honours CASSMAIL_BUILD). A sanitizer report in any process, forked session
# children included, goes to a file under the run folder, and conftest fails the test during
# which such a file appeared. Use the same CASSMAIL_NET/CASSMAIL_RUN as for test/run.
ASAN_B    := build/asan
ASAN_SAN  := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
# Tests that measure a session's resident memory or how many sessions the machine holds are left
# out: ASan's shadow memory and its quarantine of freed blocks (every free is held back to catch
# use after free) are what they would measure. So are the tests that run programs under valgrind
# (test_valgrind.py and any test named *memcheck*): memcheck cannot run a program built with ASan.
# A test of either kind says so in its name (bounded_memory, memory_bounded, stays_bounded,
# memcheck). `make test` runs them all on the real build.
# ASAN_TESTS picks other tests, e.g. ASAN_TESTS=test/e2e/test_smtp.py.
ASAN_LOGS  = $(or $(CASSMAIL_RUN),$(CURDIR)/run)/asan-logs
ASAN_TESTS ?= test/e2e
ASAN_DESELECT := not bounded_memory and not memory_bounded and not stays_bounded and not idle_connections \
                 and not memcheck and not test_valgrind
test-asan:
	@tools/setup
	@$(MAKE) -s --no-print-directory B=$(ASAN_B) SAN="$(ASAN_SAN)" all
	@rm -rf $(ASAN_LOGS) && mkdir -p $(ASAN_LOGS)
	@CASSMAIL_BUILD=$(CURDIR)/$(ASAN_B) CASSMAIL_SANITIZER_LOGS=$(ASAN_LOGS) \
	  ASAN_OPTIONS=exitcode=86:abort_on_error=0:detect_leaks=1:log_path=$(ASAN_LOGS)/asan \
	  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1:log_path=$(ASAN_LOGS)/ubsan \
	  LSAN_OPTIONS=exitcode=86 \
	  test/run -k "$(ASAN_DESELECT)" $(ASAN_TESTS)

# Benchmarks: the paper's evaluation re-run (tools/bench/run; method and results in
# docs/reproduction.md). Each writes docs/bench/NAME.csv and NAME.png. Pass options with
# BENCH_ARGS (e.g. BENCH_ARGS="--minutes 3") and a private ring with CASSMAIL_NET, CASSMAIL_RUN
# and CASSMAIL_JMX_BASE.
BENCH_ARGS ?=
.PHONY: bench bench-fig3 bench-fig4 bench-fig5 bench-fig6 bench-baselines bench-pop3 bench-imap bench-threads
bench-fig3 bench-fig4 bench-fig5 bench-fig6 bench-baselines bench-pop3 bench-imap bench-threads: all
	tools/bench/run $(BENCH_ARGS) $(@:bench-%=%)
bench: all
	tools/bench/run $(BENCH_ARGS) all

# The README's first steps on a fresh Debian 12 root (tools/fresh-check: as root, some minutes,
# network to Debian's mirror and Maven Central). FRESH_ARGS passes options, e.g.
# FRESH_ARGS="--root /var/tmp/cm-root --keep --test".
FRESH_ARGS ?=
fresh-check:
	tools/fresh-check $(FRESH_ARGS)

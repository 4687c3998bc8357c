# postern - build, run, test, benchmark, install.
#
#   make            build build/postern
#   make run        install missing Debian dependencies (as root), build, and run
#                   the demo gateway in the foreground on 127.0.0.1:2525
#   make check      dependencies, build, unit + integration + sanitizer + fuzz tests
#   make bench      throughput/latency side by side with smtp-sink and Postfix
#   make install    PREFIX=/usr/local DESTDIR=

SHELL    := /bin/bash
CC       ?= gcc
PREFIX   ?= /usr/local
DESTDIR  ?=
BUILD    ?= build
PKGS     := libevent libevent_openssl openssl
CSTD     := -std=c17 -D_GNU_SOURCE
WARN     := -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wformat=2 -Wvla
OPT      ?= -O2 -g
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   := $(shell pkg-config --libs $(PKGS) 2>/dev/null)
CFLAGS_ALL  = $(CSTD) $(WARN) $(OPT) $(PKG_CFLAGS) $(EXTRA_CFLAGS) -MMD -MP
LDLIBS_ALL  = $(PKG_LIBS) -lcrypt $(EXTRA_LDFLAGS)

LIB_SRCS  := $(sort $(wildcard src/lib/*.c src/mail/*.c src/policy/*.c src/queue/*.c src/smtp/*.c src/server/*.c))
MAIN_SRC  := src/postern.c
LIB_OBJS  := $(LIB_SRCS:%.c=$(BUILD)/%.o)
MAIN_OBJ  := $(MAIN_SRC:%.c=$(BUILD)/%.o)
UNIT_SRCS := $(sort $(wildcard tests/unit/test_*.c))
UNIT_BINS := $(UNIT_SRCS:tests/unit/%.c=$(BUILD)/tests/%)
FUZZ_SRCS := $(sort $(wildcard tests/fuzz/fuzz_*.c))
FUZZ_BINS := $(FUZZ_SRCS:tests/fuzz/%.c=build-fuzz/%)

.PHONY: all deps run check check-unit check-integration check-asan check-fuzz \
        fuzz bench install clean
all: $(BUILD)/postern

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) -c $< -o $@

$(BUILD)/libpostern.a: $(LIB_OBJS)
	@rm -f $@
	ar rcs $@ $^

$(BUILD)/postern: $(MAIN_OBJ) $(BUILD)/libpostern.a
	$(CC) $(OPT) $(EXTRA_CFLAGS) -o $@ $^ $(LDLIBS_ALL)

$(BUILD)/tests/%: tests/unit/%.c $(BUILD)/libpostern.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) -Isrc -o $@ $< $(BUILD)/libpostern.a $(LDLIBS_ALL) -lcmocka $(TEST_LDFLAGS)

# Unit tests that put a wrapper around a library function (ld --wrap).
$(BUILD)/tests/test_queue_commit: TEST_LDFLAGS := -Wl,--wrap=fsync_dir

deps:
	@tools/install-deps.sh

run: deps
	@$(MAKE) --no-print-directory all
	@tools/demo-setup.sh
	$(BUILD)/postern serve -c etc/postern.conf

# Every stage's closing "N passed, N failed" line is kept in
# build/check.log and summed into one last line.
check: deps
	@$(MAKE) --no-print-directory all
	@mkdir -p build && : > build/check.log
	@set -o pipefail; for stage in check-unit check-integration check-asan check-fuzz; do \
	  $(MAKE) --no-print-directory $$stage 2>&1 | tee -a build/check.log || exit 1; done
	@tools/sum-results.sh build/check.log

check-unit: $(UNIT_BINS)
	@tools/run-unit-tests.sh $(UNIT_BINS)

check-integration: $(BUILD)/postern
	POSTERN_BIN=$(CURDIR)/$(BUILD)/postern python3 tests/integration/run.py

# The same unit and integration tests with AddressSanitizer and UBSan.
check-asan:
	@$(MAKE) --no-print-directory BUILD=build-asan OPT="-O1 -g -fno-omit-frame-pointer" \
	  EXTRA_CFLAGS="-fsanitize=address,undefined -fno-sanitize-recover=all" \
	  EXTRA_LDFLAGS="-fsanitize=address,undefined" build-asan/postern check-unit
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	  POSTERN_BIN=$(CURDIR)/build-asan/postern POSTERN_SANITIZED=1 python3 tests/integration/run.py

# libFuzzer targets (clang): the library is compiled once with the
# sanitizers and coverage instrumentation, each target links against it.
FUZZ_CFLAGS   := $(CSTD) -g -O1 -fsanitize=fuzzer-no-link,address,undefined $(PKG_CFLAGS)
FUZZ_LIB_SRCS := $(filter-out src/server/%,$(LIB_SRCS))
FUZZ_LIB_OBJS := $(FUZZ_LIB_SRCS:%.c=build-fuzz/obj/%.o)
build-fuzz/obj/%.o: %.c
	@mkdir -p $(dir $@)
	clang $(FUZZ_CFLAGS) -c $< -o $@
build-fuzz/libfuzzpostern.a: $(FUZZ_LIB_OBJS)
	@rm -f $@
	ar rcs $@ $^
build-fuzz/%: tests/fuzz/%.c build-fuzz/libfuzzpostern.a
	clang $(CSTD) -g -O1 -fsanitize=fuzzer,address,undefined $(PKG_CFLAGS) -Isrc -o $@ $^ $(PKG_LIBS) -lcrypt

fuzz: $(FUZZ_BINS)
check-fuzz: $(FUZZ_BINS)
	@tools/run-fuzzers.sh $(FUZZ_BINS)

bench: deps all
	bench/run.sh

install: all
	install -d $(DESTDIR)$(PREFIX)/sbin $(DESTDIR)$(PREFIX)/share/man/man5 \
	  $(DESTDIR)$(PREFIX)/share/man/man8 $(DESTDIR)$(PREFIX)/share/doc/postern
	install -m 755 $(BUILD)/postern $(DESTDIR)$(PREFIX)/sbin/postern
	install -m 644 docs/postern.8 $(DESTDIR)$(PREFIX)/share/man/man8/postern.8
	install -m 644 docs/postern.conf.5 $(DESTDIR)$(PREFIX)/share/man/man5/postern.conf.5
	install -m 644 etc/postern.conf $(DESTDIR)$(PREFIX)/share/doc/postern/postern.conf.example
	install -m 644 etc/postern.service $(DESTDIR)$(PREFIX)/share/doc/postern/postern.service

clean:
	rm -rf build build-asan build-fuzz

-include $(LIB_OBJS:.o=.d) $(MAIN_OBJ:.o=.d)

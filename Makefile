# postern - build, run, test, benchmark, install.
#
#   make            build build/postern
#   make run        install missing Debian dependencies (as root), build, and run
#                   the demo gateway in the foreground on 127.0.0.1:2525
#   make check      dependencies, build, unit + integration + sanitizer + fuzz tests
#   make bench      throughput/latency side by side with smtp-sink and Postfix,
#                   with and without scanning; postern scan against ClamAV;
#                   spam scoring against spamd and rspamd; idle sessions' memory;
#                   DNSBL connections against postscreen;
#                   postern report against pflogsumm on a million-line log
#                   relay throughput against Postfix (bench/relay.sh)
#                   AUTH logins per second against Dovecot (bench/auth.sh)
#                   POP3 RETR throughput against Dovecot's POP3 (bench/pop3.sh)
#                   Postfix + postern milter against Postfix + the classic milters
#                   and + rspamd's milter (bench/milter.sh)
#   make eval       spam accuracy: cross-validation on the labelled corpus, next
#                   to SpamAssassin (docs/eval.md; EVAL_ARGS="--folds 2 --limit 200")
#   make install    PREFIX=/usr/local DESTDIR=   (see "Installation" below)

SHELL    := /bin/bash
CC       ?= gcc
PREFIX   ?= /usr/local
DESTDIR  ?=
BUILD    ?= build
# Installed paths. The configuration lives in /etc when PREFIX is /usr,
# under PREFIX otherwise; its path is compiled into postern as the
# default of -c.
prefix_clean   = $(patsubst %/,%,$(PREFIX))
SYSCONFDIR     ?= $(if $(filter /usr,$(prefix_clean)),/etc,$(prefix_clean)/etc)
SBINDIR        ?= $(prefix_clean)/sbin
MANDIR         ?= $(prefix_clean)/share/man
DOCDIR         ?= $(prefix_clean)/share/doc/postern
SYSTEMDUNITDIR ?= $(prefix_clean)/lib/systemd/system
CONFIG_FILE    := $(SYSCONFDIR)/postern/postern.conf
PKGS     := libevent libevent_openssl openssl libmagic libpcre2-8 libarchive libclamav lmdb \
            libxxhash libhs libcares zlib milter
CSTD     := -std=c17 -D_GNU_SOURCE
WARN     := -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wformat=2 -Wvla
OPT      ?= -O2 -g
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   := $(shell pkg-config --libs $(PKGS) 2>/dev/null)
CFLAGS_ALL  = $(CSTD) $(WARN) $(OPT) -pthread $(PKG_CFLAGS) $(EXTRA_CFLAGS) -MMD -MP
LDLIBS_ALL  = $(PKG_LIBS) -lcrypt -lm -pthread $(EXTRA_LDFLAGS)

LIB_SRCS  := $(sort $(wildcard src/lib/*.c src/map/*.c src/mail/*.c src/mime/*.c src/dns/*.c src/policy/*.c src/queue/*.c src/relay/*.c \
               src/smtp/*.c src/server/*.c src/scan/*.c src/report/*.c src/auth/*.c src/account/*.c src/pop3/*.c \
               src/milter/*.c))
MAIN_SRC  := src/postern.c
LIB_OBJS  := $(LIB_SRCS:%.c=$(BUILD)/%.o)
MAIN_OBJ  := $(MAIN_SRC:%.c=$(BUILD)/%.o)
UNIT_SRCS := $(sort $(wildcard tests/unit/test_*.c))
UNIT_BINS := $(UNIT_SRCS:tests/unit/%.c=$(BUILD)/tests/%)
TOOL_SRCS := $(sort $(wildcard tests/tools/*.c))
TOOL_BINS := $(TOOL_SRCS:tests/tools/%.c=$(BUILD)/tools/%)
FUZZ_SRCS := $(sort $(wildcard tests/fuzz/fuzz_*.c))
FUZZ_BINS := $(FUZZ_SRCS:tests/fuzz/%.c=build-fuzz/%)

.PHONY: all deps run check check-unit check-integration check-asan check-fuzz \
        fuzz bench eval install clean tools FORCE
all: $(BUILD)/postern

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) -c $< -o $@

# The default configuration path is compiled into postern.o, which is
# rebuilt whenever the path changes (make install PREFIX=/usr after make).
$(BUILD)/config-path.stamp: FORCE
	@mkdir -p $(dir $@)
	@echo '$(CONFIG_FILE)' | cmp -s - $@ 2>/dev/null || echo '$(CONFIG_FILE)' > $@
$(MAIN_OBJ): $(BUILD)/config-path.stamp
$(MAIN_OBJ): CFLAGS_ALL += -DPOSTERN_CONFIG_FILE='"$(CONFIG_FILE)"'

$(BUILD)/libpostern.a: $(LIB_OBJS)
	@rm -f $@
	ar rcs $@ $^

$(BUILD)/postern: $(MAIN_OBJ) $(BUILD)/libpostern.a
	$(CC) $(OPT) $(EXTRA_CFLAGS) -o $@ $^ $(LDLIBS_ALL)

$(BUILD)/tests/%: tests/unit/%.c $(BUILD)/libpostern.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) -Isrc -o $@ $< $(BUILD)/libpostern.a $(LDLIBS_ALL) -lcmocka $(TEST_LDFLAGS)

# Test tools (never part of postern): tests/tools/*.c -> build/tests/*
$(BUILD)/tests/mime_dump: tests/tools/mime_dump.c $(BUILD)/libpostern.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) -Isrc -o $@ $< $(BUILD)/libpostern.a $(LDLIBS_ALL)

# Test tools of the integration tests (never installed): tests/tools/*.c,
# linked with the library, e.g. spool_put writes queue files the way the
# smtp worker does. The harness finds them beside the postern binary.
$(BUILD)/tools/%: tests/tools/%.c $(BUILD)/libpostern.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) -Isrc -o $@ $< $(BUILD)/libpostern.a $(LDLIBS_ALL)
tools: $(TOOL_BINS) $(BUILD)/tests/test_milter

# The test milter (tests/milter/test_milter.c, libmilter): the milter the
# milter tests put on the other side of postern's milter client (and of
# a real Postfix, to prove it right). Never part of postern.
MILTER_CFLAGS := $(shell pkg-config --cflags milter 2>/dev/null)
MILTER_LIBS   := $(shell pkg-config --libs milter 2>/dev/null)
$(BUILD)/tests/test_milter: tests/milter/test_milter.c
	@mkdir -p $(dir $@)
	$(CC) $(CSTD) $(WARN) $(OPT) -pthread $(MILTER_CFLAGS) $(EXTRA_CFLAGS) -o $@ $< \
	  $(MILTER_LIBS) -pthread $(EXTRA_LDFLAGS)

# Unit tests that put a wrapper around a library function (ld --wrap).
$(BUILD)/tests/test_queue_commit: TEST_LDFLAGS := -Wl,--wrap=safeio_fsync_dir
$(BUILD)/tests/test_commit: TEST_LDFLAGS := -Wl,--wrap=safeio_fsync_dir
# The antivirus tests make their zip and gzip files with zlib.
$(BUILD)/tests/test_antivirus $(BUILD)/tests/test_clamd: TEST_LDFLAGS := $(shell pkg-config --libs zlib)

deps:
	@tools/install-deps.sh

run: deps
	@$(MAKE) --no-print-directory all
	@tools/demo-setup.sh
	$(BUILD)/postern serve -c etc/postern.conf

# Every stage's closing "N passed, N failed[, N skipped]" line is kept in
# build/check.log and summed into one last line that counts skipped tests
# too ("total: N passed, N failed, N skipped").
check: deps
	@$(MAKE) --no-print-directory all
	@mkdir -p build && : > build/check.log
	@set -o pipefail; for stage in check-unit check-integration check-asan check-fuzz; do \
	  $(MAKE) --no-print-directory $$stage 2>&1 | tee -a build/check.log || exit 1; done
	@tools/sum-results.sh build/check.log

# The unit tests, then the MIME parser against Python's email package on
# tests/data/mime and, when it is there, the shared corpus; and what the
# spam tests see of 200 corpus messages against SpamAssassin's own view
# (skipped when SpamAssassin or the corpus is not there).
check-unit: $(UNIT_BINS) $(BUILD)/tests/mime_dump $(BUILD)/tools/spam_text_dump
	@tools/run-unit-tests.sh $(UNIT_BINS)
	@python3 tests/tools/mime_compare.py --dump $(BUILD)/tests/mime_dump
	@python3 tests/tools/spam_text_compare.py --dump $(BUILD)/tools/spam_text_dump \
	  --count 200 --min-identical 0.97 --min-uri 0.97

# Test-only LD_PRELOAD helpers of the integration tests (never linked into
# postern): tests/integration/preload/*.c -> build/preload/*.so
PRELOAD_SRCS := $(wildcard tests/integration/preload/*.c)
PRELOADS     := $(PRELOAD_SRCS:tests/integration/preload/%.c=build/preload/%.so)
build/preload/%.so: tests/integration/preload/%.c
	@mkdir -p $(dir $@)
	$(CC) -std=c17 -Wall -Wextra -Werror -O2 -shared -fPIC -o $@ $< -ldl

# test_antivirus.py drives build/tests/test_clamd against a real clamd; the
# milter tests run build/tests/test_milter.
check-integration: $(BUILD)/postern $(PRELOADS) $(TOOL_BINS) $(BUILD)/tests/test_clamd \
                   $(BUILD)/tests/test_milter
	POSTERN_BIN=$(CURDIR)/$(BUILD)/postern python3 tests/integration/run.py

# The same unit and integration tests with AddressSanitizer and UBSan.
check-asan:
	@$(MAKE) --no-print-directory BUILD=build-asan OPT="-O1 -g -fno-omit-frame-pointer" \
	  EXTRA_CFLAGS="-fsanitize=address,undefined -fno-sanitize-recover=all" \
	  EXTRA_LDFLAGS="-fsanitize=address,undefined" build-asan/postern tools check-unit
	@$(MAKE) --no-print-directory $(PRELOADS)
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	  POSTERN_BIN=$(CURDIR)/build-asan/postern POSTERN_SANITIZED=1 python3 tests/integration/run.py

# libFuzzer targets (clang): the library is compiled once with the
# sanitizers and coverage instrumentation, each target links against it.
FUZZ_CFLAGS   := $(CSTD) -g -O1 -fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=undefined $(PKG_CFLAGS)
FUZZ_LIB_SRCS := $(filter-out src/server/%,$(LIB_SRCS))
FUZZ_LIB_OBJS := $(FUZZ_LIB_SRCS:%.c=build-fuzz/obj/%.o)
build-fuzz/obj/%.o: %.c
	@mkdir -p $(dir $@)
	clang $(FUZZ_CFLAGS) -MMD -MP -c $< -o $@
build-fuzz/libfuzzpostern.a: $(FUZZ_LIB_OBJS)
	@rm -f $@
	ar rcs $@ $^
build-fuzz/%: tests/fuzz/%.c build-fuzz/libfuzzpostern.a
	clang $(CSTD) -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined $(PKG_CFLAGS) -Isrc -o $@ $^ $(PKG_LIBS) -lcrypt -lm

fuzz: $(FUZZ_BINS)
check-fuzz: $(FUZZ_BINS)
	@tools/run-fuzzers.sh $(FUZZ_BINS)

# The parts run even when one fails; any failing fails the target.
bench: deps all
	rc=0; bench/run.sh || rc=1; bench/scan.sh || rc=1; bench/spam.sh || rc=1; bench/idle.sh || rc=1; \
	  bench/dnsbl.sh || rc=1; bench/report.sh || rc=1; bench/relay.sh || rc=1; \
	  bench/auth.sh || rc=1; bench/pop3.sh || rc=1; bench/milter.sh || rc=1; exit $$rc

# Spam accuracy (docs/eval.md): 5-fold cross-validation on ../shared/corpus/train,
# postern's rules, Bayes and SpamAssassin's rules, and SpamAssassin itself on
# the same folds; the table in build/eval/results.txt.
eval: deps all
	python3 tools/eval/run_eval.py $(EVAL_ARGS)

# Installation: the binary, the man pages, the systemd unit (its paths
# filled in), and examples for $(SYSCONFDIR)/postern: postern.conf.example,
# users.example, aliases.example, content-rules.example and
# spam-rules.cf.example (postern's own spam rules). The examples are always
# refreshed; postern.conf, users, aliases, content-rules and spam-rules.cf,
# which the administrator makes from them, are never written by make
# install.
install: all
	install -d $(DESTDIR)$(SBINDIR) $(DESTDIR)$(MANDIR)/man5 $(DESTDIR)$(MANDIR)/man8 \
	  $(DESTDIR)$(DOCDIR) $(DESTDIR)$(SYSCONFDIR)/postern $(DESTDIR)$(SYSTEMDUNITDIR)
	install -m 755 $(BUILD)/postern $(DESTDIR)$(SBINDIR)/postern
	install -m 644 docs/postern.8 $(DESTDIR)$(MANDIR)/man8/postern.8
	install -m 644 docs/postern.conf.5 $(DESTDIR)$(MANDIR)/man5/postern.conf.5
	install -m 644 docs/postern-rules.5 $(DESTDIR)$(MANDIR)/man5/postern-rules.5
	install -m 644 README.md $(DESTDIR)$(DOCDIR)/README.md
	sed -e 's|/etc/postern/|$(SYSCONFDIR)/postern/|g' etc/example/postern.conf \
	  > $(BUILD)/postern.conf.example
	install -m 644 $(BUILD)/postern.conf.example $(DESTDIR)$(SYSCONFDIR)/postern/postern.conf.example
	install -m 644 etc/example/users $(DESTDIR)$(SYSCONFDIR)/postern/users.example
	install -m 644 etc/example/aliases $(DESTDIR)$(SYSCONFDIR)/postern/aliases.example
	install -m 644 etc/content-rules.example $(DESTDIR)$(SYSCONFDIR)/postern/content-rules.example
	install -m 644 etc/spam-rules.cf $(DESTDIR)$(SYSCONFDIR)/postern/spam-rules.cf.example
	sed -e 's|@SBINDIR@|$(SBINDIR)|g' -e 's|@CONFIG_FILE@|$(CONFIG_FILE)|g' \
	  etc/postern.service.in > $(BUILD)/postern.service
	install -m 644 $(BUILD)/postern.service $(DESTDIR)$(SYSTEMDUNITDIR)/postern.service

clean:
	rm -rf build build-asan build-fuzz

-include $(LIB_OBJS:.o=.d) $(MAIN_OBJ:.o=.d) $(FUZZ_LIB_OBJS:.o=.d)

/*
 * rules.h - the content policy: the administrator's rules file
 * (content_rules_file, syntax in docs/postern-rules.5) compiled once,
 * and its judgement of one message: attachment names, extensions and
 * types, names inside archives, header fields, and the envelope.
 *
 * The stage itself is scan_rules_stage_new() in scan.h; this header is
 * what its parts share with each other, with the unit tests, the fuzz
 * targets and `postern check-config`.
 *
 * Untrusted input: the message summary (struct scan_message) and the
 * archive bytes the MIME pass kept; every walk over them is bounded in
 * count, depth, bytes and time. The rules file is the administrator's
 * and is bounded too (size, line length, rule count). Runs in the
 * unprivileged scanner processes and in the postern commands.
 */
#ifndef POSTERN_SCAN_RULES_H
#define POSTERN_SCAN_RULES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "../lib/config.h"
#include "scan.h"

/* Bounds of the rules file. */
#define SCAN_RULES_FILE_MAX (1024 * 1024) /* bytes */
#define SCAN_RULES_LINE_MAX 4096          /* bytes of one line */
#define SCAN_RULES_MAX 10000              /* rules in one file */
#define SCAN_RULES_NAME_MAX 64            /* bytes of a rule's name */
#define SCAN_RULES_TEXT_MAX 400           /* bytes of a reply text or tag field */

/*
 * Bounds of one regex match (PCRE2 match, depth and heap limits). A
 * match that reaches them counts as no match and is logged: a crafted
 * header can make a rule miss, never make a scan slow.
 */
#define SCAN_RULES_REGEX_MATCH_LIMIT 100000
#define SCAN_RULES_REGEX_DEPTH_LIMIT 1000
#define SCAN_RULES_REGEX_HEAP_KIB 4096

struct scan_rules;

/*
 * Read and compile the rules file at path. NULL when it is wrong, after
 * printing every problem to errors as "FILE:LINE: message".
 */
struct scan_rules *scan_rules_load(const char *path, FILE *errors);
/* The same for text[0..len) that came from a file called name (tests,
 * the fuzz target). */
struct scan_rules *scan_rules_parse(const char *name, const char *text, size_t len,
				    FILE *errors);
size_t scan_rules_count(const struct scan_rules *rules);
void scan_rules_free(struct scan_rules **rules);

/*
 * Judge m against every rule, in file order, filling v: the first rule
 * that matches with a blocking action (reject, tempfail, discard,
 * quarantine) sets v's action, code, status, text and reason
 * "content_rule"; every matching rule is listed in v->hits as
 * "rule:NAME" and logged; tag rules add their header field (and make an
 * ACCEPT a TAG); after the deciding rule only warn and tag rules are
 * tried, and a v that already blocks is never overridden. Never fails:
 * 0. A rule set judges one message at a time (it holds the regex
 * scratch space); each scanner process has its own copy after fork.
 */
int scan_rules_judge(struct scan_rules *rules, const struct scan_message *m,
		     struct scan_verdict *v);

/* check-config: load the configured rules file, if any, printing its
 * problems to errors; returns their number (0 when none is set). */
int scan_rules_check(const struct config *cfg, FILE *errors);

/* ---- names inside archives (rules_archive.c, libarchive) ---------------- */

struct scan_rules_archive_limits {
	size_t max_entries;        /* names listed, all nesting levels together */
	unsigned max_depth;        /* 1 = only the attached archive itself */
	uint64_t max_bytes;        /* decompressed bytes read through, all levels */
	size_t max_inner_bytes;    /* one inner archive held in memory to open it */
	uint64_t max_ms;           /* wall time for the whole listing */
};

/* The stage's bounds, per message part. */
extern const struct scan_rules_archive_limits scan_rules_archive_default_limits;

struct scan_rules_archive_member {
	char *name;       /* the path as stored, UTF-8 where the format says so */
	unsigned depth;   /* 1 = in the attached archive, 2 = in an archive in it, ... */
	bool encrypted;
};

struct scan_rules_archive_listing {
	struct scan_rules_archive_member *members;
	size_t count;
	bool encrypted;   /* an encrypted entry, or encrypted headers */
	bool unreadable;  /* damaged, not an archive, or stopped at a bound */
	char problem[128]; /* why unreadable, for the log */
	size_t entries_seen; /* what the walk used of its limits */
	uint64_t bytes_read;
};

/*
 * List the names in the archive data[0..len) and in archives inside it,
 * within limits. Never fails: what could not be read is reported in
 * unreadable/problem beside what could. Formats: zip, 7-Zip, RAR, tar,
 * cpio, cab, ISO 9660, LHA, xar, ar, and single compressed files (gzip,
 * bzip2, xz, lzma, zstd, lz4, compress) around them.
 */
void scan_rules_archive_list(const void *data, size_t len,
			     const struct scan_rules_archive_limits *limits,
			     struct scan_rules_archive_listing *out);
void scan_rules_archive_listing_free(struct scan_rules_archive_listing *l);

#endif

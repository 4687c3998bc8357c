/*
 * spam.h - spam scoring, one more stage of the content pipeline (scan.h):
 * the message as the spam tests see it (spam_text), a rule engine that
 * reads SpamAssassin's rule-file syntax (spam_rules), Bayes (spam_bayes,
 * its token store behind struct spam_store so that a Redis backend can
 * slide in), and the stage that adds them up into a score and a verdict.
 *
 * Everything here is built once in the scan master (rules compiled, the
 * store opened) and shared by the forked scanners, like the antivirus
 * engine; a scanner judges one message at a time.
 *
 * Untrusted input: the message (through spam_text), the rule files (an
 * administrator's, and SpamAssassin's as Debian installs them), the token
 * store's contents. Privilege: unprivileged scan master, scanners and
 * `postern learn` / `postern scan`.
 */
#ifndef POSTERN_SCAN_SPAM_H
#define POSTERN_SCAN_SPAM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "../lib/buf.h"
#include "../lib/strutil.h"
#include "scan.h"

/* ---- the message as the spam tests see it (spam_text.c) ----------------------- */

/* Bounds of what spam_text_build keeps (the configuration's spam_max_text). */
struct spam_text_limits {
	size_t max_body;    /* bytes of body text (and of rawbody) kept; the rest is cut */
	size_t max_uris;    /* URIs kept */
};

struct spam_uri {
	char *uri;          /* as written, decoded (entities, QP/base64), UTF-8 */
	char *host;         /* lower case, IDNA left as written; NULL if none */
	char *anchor_text;  /* the text of an HTML <a> around it, or NULL */
	bool from_html;     /* found in an href/src attribute (not in text) */
};

/* HTML facts the eval tests look at (0 when the message has no HTML). */
struct spam_html_facts {
	unsigned html_parts, text_parts;  /* leaf parts of each kind */
	size_t html_text_bytes;           /* visible text of the HTML parts */
	size_t invisible_text_bytes;      /* text in white-on-white, display:none, font-size 0... */
	unsigned images;                  /* <img> tags */
	size_t image_area;                /* sum of width x height declared */
	unsigned tags;                    /* HTML start and end tags */
	unsigned split_words;             /* a tag between two letters ("V<b></b>iagra") */
	/* letters split by tags (split_words >= 3 and >= 5 % of tags) or by
	 * zero-width characters or soft hyphens (twice or more) */
	bool has_obfuscated_words;
};

/*
 * The views SpamAssassin's rule kinds test, built once per message:
 *   header  - the message's own header fields (m->headers with part 0):
 *             raw (unfolded) and decoded (RFC 2047, UTF-8); the rule
 *             engine derives :name, :addr, ALL, ToCc, MESSAGEID from them;
 *   body    - the Subject, then the decoded text of every text part
 *             (text/plain and the other text/... types but vCards and
 *             calendars; text/html reduced to its text, hidden text
 *             included as SpamAssassin does; both parts of an
 *             alternative), converted to UTF-8, each paragraph (lines up
 *             to an empty line) joined into one line with single spaces,
 *             lines cut after a space at 2048 bytes, as SpamAssassin
 *             renders it (spam_text.c says more);
 *   rawbody - the same parts decoded from their transfer encoding but
 *             neither converted nor rendered, lines as sent;
 *   uri     - every URI of text and HTML parts, normalized;
 *   full    - the whole message as received (m->data).
 * Lines in body and rawbody end in '\n'; bounded by spam_text_limits.
 */
struct spam_text {
	const struct scan_message *msg;  /* headers, parts, data (full) */
	buf_t body;
	buf_t rawbody;
	struct spam_uri *uris;
	size_t uri_count;
	struct spam_html_facts html;
	bool body_truncated;
};

/* Build t from the MIME pass's message (which keeps the decoded bytes of
 * its text parts, scan_message.h). Never fails; t is freed by spam_text_free. */
void spam_text_build(const struct scan_message *m, const struct spam_text_limits *limits,
		     struct spam_text *t);
void spam_text_free(struct spam_text *t);

/* ---- the rule engine (spam_rules_parse.c, spam_rules.c, spam_eval.c) ---------- */

struct spam_rules;

/* Where the rules come from: files and folders (every *.cf of a folder, in
 * name order, as SpamAssassin reads them), in this order; later scores
 * override earlier ones. */
struct spam_rules_source {
	const char *const *paths;
	size_t count;
};

/*
 * Read and compile every rule (PCRE2 with JIT; the patterns also gathered
 * for one combined pass). A syntax error in a file is an error naming
 * FILE:LINE (*err_r, malloc'ed; NULL returned), except in files under a
 * folder given as SpamAssassin's (lenient): there a rule PCRE2 cannot
 * take, an unknown eval: test or plugin is skipped and counted, and one
 * summary warning per file is written to warnings (may be NULL).
 */
struct spam_rules *spam_rules_load(const struct spam_rules_source *src, FILE *warnings,
				   char **err_r);
void spam_rules_free(struct spam_rules **rules);
size_t spam_rules_count(const struct spam_rules *rules);
/* Has a loaded file changed on disk since (for the scan master's rebuild)? */
bool spam_rules_stale(const struct spam_rules *rules);

/* Which of the four score sets applies (SpamAssassin: bit 0 network
 * tests, bit 1 Bayes); postern runs no network tests: 0 or 2. */
enum spam_score_set { SPAM_SET_LOCAL = 0, SPAM_SET_BAYES = 2 };

struct spam_hit {
	const char *name;      /* the rule's name (owned by the rules) */
	double score;
	const char *describe;  /* or NULL */
};

struct spam_result {
	double score;
	struct spam_hit *hits;     /* in the order SpamAssassin lists tests=: by name */
	size_t hit_count;
	bool timed_out;            /* the budget ran out: the rules that did not run count 0 */
	bool autolearn_allowed;    /* no hit rule has tflags noautolearn */
	double learn_score;        /* the score without rules of tflags learn/noautolearn, for auto-learn */
};

/* What the eval: tests may need besides the text. */
struct spam_rules_context {
	const struct scan_envelope *env;
	double bayes_probability;  /* 0..1, or < 0 when Bayes gave none */
	enum spam_score_set set;
	uint64_t budget_us;        /* stop matching after this long; 0 = no bound */
};

/* Run every rule over t (meta rules last, in priority order) and fill r
 * (init with spam_result_init, free with spam_result_free). */
void spam_rules_run(const struct spam_rules *rules, const struct spam_text *t,
		    const struct spam_rules_context *ctx, struct spam_result *r);
void spam_result_init(struct spam_result *r);
void spam_result_free(struct spam_result *r);

/* ---- Bayes (spam_token.c, spam_bayes.c, spam_store_lmdb.c) -------------------- */

/* The token store: counts of spam and ham messages, and per token (a
 * 64-bit hash of its text) the spam and ham counts and the day it was
 * last seen. LMDB today; Redis later implements the same table. */
struct spam_token_counts {
	uint32_t spam, ham;
	uint32_t atime;  /* days since the epoch */
};

struct spam_store;
struct spam_store_ops {
	int (*totals)(struct spam_store *s, uint32_t *nspam_r, uint32_t *nham_r);
	/* Look up n tokens at once (missing ones come back zero). */
	int (*lookup)(struct spam_store *s, const uint64_t *tokens, size_t n,
		      struct spam_token_counts *out);
	/* One learning: add (or, with sign -1, take back) a message's tokens,
	 * atomically with the totals. Readers never see it half done. */
	int (*learn)(struct spam_store *s, const uint64_t *tokens, size_t n, bool spam, int sign);
	/* Remove tokens not seen since day `before` with counts below `min`. */
	int (*expire)(struct spam_store *s, uint32_t before, uint32_t min, uint64_t *removed_r);
	void (*close)(struct spam_store *s);
};
struct spam_store {
	const struct spam_store_ops *ops;
};

/* Open the LMDB store in folder dir (created when writable). Readers
 * (the scanners) open it read-only after fork; `postern learn` writes.
 * NULL with *err_r naming dir. */
struct spam_store *spam_store_lmdb_open(const char *dir, bool writable, char **err_r);

/* The tokens of a message: words of the decoded headers chosen, the body,
 * the URIs' hosts; hashed, deduplicated, at most max. */
size_t spam_tokenize(const struct spam_text *t, uint64_t *tokens, size_t max);

/* Chi-square (Robinson-Fisher) probability that a message is spam, 0..1,
 * from its tokens' counts; < 0 when too little is learned (fewer than
 * min_learned spam or ham messages). */
double spam_bayes_probability(struct spam_store *store, const uint64_t *tokens, size_t n,
			      uint32_t min_learned);

/* ---- the stage (spam.c) --------------------------------------------------------- */

/* The pipeline's constructor (scan.h's convention): 1 when spam scoring is
 * not configured, 0 with *stage_r filled, -1 with *err_r. */
int scan_spam_stage_new(const struct config *cfg, struct scan_stage *stage_r, char **err_r);

#endif

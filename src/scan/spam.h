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
 * override earlier ones. lenient[i] marks paths[i] as SpamAssassin's own
 * rules (spam_rules_dirs): read leniently, see spam_rules_load; lenient
 * NULL reads every path strictly (postern's own files). */
struct spam_rules_source {
	const char *const *paths;
	size_t count;
	const bool *lenient;
	/* The file that keeps the compiled Hyperscan databases between loads
	 * (docs/spam-rules.md), or NULL: compiled on every load. */
	const char *cache_path;
	/* JIT-compile each regex when it first runs, not at load: for a
	 * process that scans alone (postern scan), not for the scan master,
	 * whose scanners share what it compiled before forking. */
	bool lazy_jit;
};

/*
 * Read and compile every rule (PCRE2 with JIT; per text view a Hyperscan
 * database of the literals each regex needs, the prefilter that keeps
 * most regexes from running, and Hyperscan gates for the regexes without
 * such literals; docs/spam-rules.md). A problem in a strict
 * file is an error naming FILE:LINE (*err_r, malloc'ed; NULL returned).
 * In a lenient path (SpamAssassin's) a rule PCRE2 cannot take, an eval:
 * test postern does not have or a line it does not understand is skipped
 * and counted, and one summary line per file ("FILE: N rules skipped:
 * ...") is written to warnings (may be NULL); blocks for plugins postern
 * does not have are skipped as SpamAssassin skips them. A path that
 * cannot be read, and the bounds (file size, line length, rule count,
 * nesting), are errors in either mode.
 */
struct spam_rules *spam_rules_load(const struct spam_rules_source *src, FILE *warnings,
				   char **err_r);
/* The cache's name in the spool's private folder (the stage's choice). */
#define SPAM_HS_CACHE_NAME "spam-hyperscan.cache"
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

/* Run every rule over t (meta rules last, after what they read) and fill
 * r (init with spam_result_init, free with spam_result_free). One run at
 * a time per rules object: it holds the matchers' scratch space (each
 * scanner process has its own copy after fork). */
void spam_rules_run(const struct spam_rules *rules, const struct spam_text *t,
		    const struct spam_rules_context *ctx, struct spam_result *r);
void spam_result_init(struct spam_result *r);
void spam_result_free(struct spam_result *r);

/* ---- Bayes (spam_token.c, spam_bayes.c, spam_store_lmdb.c) -------------------- */

/* The token store: counts of spam and ham messages learned, per token (a
 * 64-bit hash of its text) the spam and ham counts and the day it was
 * last learned from, and a record of the messages learned (by message
 * id, spam_message_id) so that learning one twice changes nothing and it
 * can be forgotten. LMDB today; Redis later implements the same table. */
struct spam_token_counts {
	uint32_t spam, ham;
	uint32_t atime;  /* days since the epoch */
};

/* What to do with a message, and what it came to. */
enum spam_learn_as { SPAM_LEARN_HAM, SPAM_LEARN_SPAM, SPAM_LEARN_FORGET };
enum spam_learn_outcome {
	SPAM_LEARN_DONE,       /* learned (or forgotten) now */
	SPAM_LEARN_ALREADY,    /* already learned as that: nothing changed */
	SPAM_LEARN_SWITCHED,   /* had been learned as the other: moved over */
	SPAM_LEARN_UNKNOWN,    /* forget: it had never been learned */
};

struct spam_store_stats {
	uint32_t nspam, nham;      /* messages learned */
	uint64_t tokens;           /* distinct tokens kept */
	uint64_t messages;         /* learned records kept */
	uint32_t last_expire;      /* day of the last expiry; 0 = never */
	uint64_t used_bytes;       /* pages in use */
	uint64_t map_bytes;        /* the map's size (it grows when full) */
};

struct spam_store;
struct spam_store_ops {
	/* The learned message counts (both 0 when nothing was ever learned). */
	int (*totals)(struct spam_store *s, uint32_t *nspam_r, uint32_t *nham_r);
	/* Look up n tokens at once (missing ones come back zero), with the
	 * totals of the same snapshot (nspam_r, nham_r may be NULL). */
	int (*lookup)(struct spam_store *s, const uint64_t *tokens, size_t n,
		      struct spam_token_counts *out, uint32_t *nspam_r, uint32_t *nham_r);
	/* One learning of message `id`: add its tokens to the counts of `as`
	 * (or, with SPAM_LEARN_FORGET, take back what it was learned as),
	 * atomically with the totals and the learned record; a message
	 * learned as the other class is moved over. Readers never see it half
	 * done. *outcome_r (may be NULL) says which it was. */
	int (*learn)(struct spam_store *s, uint64_t id, const uint64_t *tokens, size_t n,
		     enum spam_learn_as as, enum spam_learn_outcome *outcome_r);
	/* Remove tokens not learned from since day `before` whose spam + ham
	 * count is below `min`; then, if more than max_tokens remain (0 = no
	 * bound), the least recently learned (the rarest first among equals)
	 * until max_tokens remain. Records the day as the last expiry. */
	int (*expire)(struct spam_store *s, uint32_t before, uint32_t min, uint64_t max_tokens,
		      uint64_t *removed_r);
	int (*stats)(struct spam_store *s, struct spam_store_stats *r);
	/* Why the last call that returned -1 failed (never NULL). */
	const char *(*last_error)(struct spam_store *s);
	void (*close)(struct spam_store *s);
};
struct spam_store {
	const struct spam_store_ops *ops;
};

/*
 * Open the LMDB store in folder dir. Writable (`postern learn`, and the
 * stage's auto-learn): the folder and the store are created (mode 0700)
 * when missing and checked now; the map is at least map_size bytes and
 * doubles whenever it is full. Read-only (the scanners): a store that
 * does not exist yet reads as empty (and is looked for again). Either
 * way the environment is opened on the first use in a process, and again
 * in a process forked after that: the scan master opens the handle, does
 * not use it, and each scanner gets its own environment. Any number of
 * readers and writers may use it at once: a reader never waits
 * and sees each learning whole or not at all; writers take turns.
 * NULL with *err_r (malloc'ed) naming dir. Close with s->ops->close(s).
 */
struct spam_store *spam_store_lmdb_open(const char *dir, bool writable, uint64_t map_size,
					char **err_r);

/* Tokens kept per message (spam_tokenize's max for learning and
 * classifying alike). */
#define SPAM_TOKENS_MAX 3000

/* The tokens of a message: words of the decoded headers chosen (each
 * field's with its own prefix), the body, the URIs' hosts and domains;
 * hashed (64 bits, stable: they live on disk), deduplicated, at most max,
 * the header and URI tokens first. */
size_t spam_tokenize(const struct spam_text *t, uint64_t *tokens, size_t max);

/* The id a message is learned under: a hash of its Message-ID and of the
 * bytes of its body, so that the same message learned twice (a copy with
 * other Received fields) is recognized. */
uint64_t spam_message_id(const struct scan_message *m);

/* Chi-square (Robinson-Fisher) probability that a message is spam, 0..1,
 * from its tokens' counts; < 0 when too little is learned (fewer than
 * min_learned spam or ham messages) or the store cannot be read. */
double spam_bayes_probability(struct spam_store *store, const uint64_t *tokens, size_t n,
			      uint32_t min_learned);

/* The same, saying what it is based on (for `postern learn --classify`
 * and the logs). */
struct spam_bayes_detail {
	uint32_t nspam, nham;  /* learned messages */
	size_t known;          /* tokens the store has counts for */
	size_t used;           /* the most telling of them, combined */
};
double spam_bayes_classify(struct spam_store *store, const uint64_t *tokens, size_t n,
			   uint32_t min_learned, struct spam_bayes_detail *detail_r);

/* Learn (or forget) one message: tokenize t, and learn it under
 * spam_message_id(t->msg) in one transaction (what auto-learn needs).
 * 0, or -1 when the store cannot be written. */
int spam_bayes_learn(struct spam_store *store, const struct spam_text *t,
		     enum spam_learn_as as, enum spam_learn_outcome *outcome_r);

/* Expiry policy: run expire when the last run is a day old or more, or
 * when the store holds more than max_tokens; age_days 0 = no expiry by
 * age. Tokens seen in fewer than SPAM_EXPIRE_MIN_COUNT messages expire
 * by age. *removed_r: how many went. */
#define SPAM_EXPIRE_MIN_COUNT 3
int spam_bayes_maintain(struct spam_store *store, uint32_t age_days, uint64_t max_tokens,
			bool force, uint64_t *removed_r);

/* ---- the stage (spam.c) --------------------------------------------------------- */

/* The pipeline's constructor (scan.h's convention): 1 when spam scoring is
 * not configured, 0 with *stage_r filled, -1 with *err_r. */
int scan_spam_stage_new(const struct config *cfg, struct scan_stage *stage_r, char **err_r);

#endif

/*
 * spam_rules_impl.h - the compiled form of SpamAssassin-syntax rule files,
 * shared by the reader (spam_rules_parse.c, spam_rules_build.c), the
 * expression compiler (spam_rules_expr.c), the regex analysis
 * (spam_rules_regex.c), the Hyperscan gates (spam_rules_gate.c, with the
 * compiled-database cache, spam_hs_cache.h), the matcher (spam_rules.c,
 * spam_rules_header.c) and the eval: tests (spam_eval.c). Not for other
 * modules: they use spam.h.
 *
 * Untrusted input: rule files (the administrator's, SpamAssassin's) at
 * load time; messages (through struct spam_text) at run time. Privilege:
 * the unprivileged scan master (load), the scanners (run), `postern scan`.
 */
#ifndef POSTERN_SCAN_SPAM_RULES_IMPL_H
#define POSTERN_SCAN_SPAM_RULES_IMPL_H

#define PCRE2_CODE_UNIT_WIDTH 8
#include <hs.h>
#include <pcre2.h>

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "../lib/buf.h"
#include "../lib/hashmap.h"
#include "spam.h"
#include "spam_hs_cache.h"

/* ---- bounds ------------------------------------------------------------------ */

#define SPAM_RULES_FILE_MAX (32u * 1024 * 1024)  /* bytes of one rule file */
#define SPAM_RULES_LINE_MAX (64u * 1024)         /* bytes of one line */
#define SPAM_RULES_MAX 200000                    /* rules over all files */
#define SPAM_RULES_FILES_MAX 4096                /* files read (folders' included) */
#define SPAM_RULES_INCLUDE_DEPTH 8               /* include inside include ... */
#define SPAM_RULES_IF_DEPTH 64                   /* nested if/ifplugin */
#define SPAM_RULE_NAME_MAX 127                   /* as SpamAssassin: fewer than 128 */
#define SPAM_EXPR_TOKENS_MAX 4096                /* tokens of one meta or if expression */
#define SPAM_EXPR_DEPTH_MAX 64                   /* nesting of parentheses and operators */
#define SPAM_EVAL_ARGS_MAX 16
/* PCRE2's bounds on one match (backtracking steps, depth, heap). */
#define SPAM_REGEX_MATCH_LIMIT 200000
#define SPAM_REGEX_DEPTH_LIMIT 2000
#define SPAM_REGEX_HEAP_KIB 8192
/* Literals the prefilter looks for: at least SPAM_LIT_MIN long, at most
 * SPAM_LIT_SET_MAX alternatives per regex; exact strings are combined
 * ("[ck]redit" -> 2) while the product stays within SPAM_LIT_JOIN_MAX. */
#define SPAM_LIT_MIN 3
#define SPAM_LIT_SET_MAX 256
#define SPAM_LIT_JOIN_MAX 32
#define SPAM_LIT_LEN_MAX 64
#define SPAM_LIT_VIEW_MAX 1000000  /* literals in one view's database */
/* Hyperscan gates (spam_rules_gate.c): the bytes one gate's database may
 * take, all gates together (shared by the scanners), the longest pattern
 * given one. */
#define SPAM_GATE_DB_MAX (512u * 1024)
#define SPAM_GATE_TOTAL_MAX (3u * 1024 * 1024)
#define SPAM_GATE_PATTERN_MAX (64u * 1024)
/* Occurrences of body literals kept per message for line narrowing
 * (spam_rules.c); past it, the message's body rules read the whole body. */
#define SPAM_NARROW_MAX 65536

/* The SpamAssassin version postern answers in "if version >= N" (the
 * syntax of the rule files it reads: 4.0.1) and the Perl one. */
#define SPAM_SA_VERSION 4.000001
#define SPAM_PERL_VERSION 5.036000

/* ---- rules -------------------------------------------------------------------- */

enum spam_rule_kind {
	SPAM_RK_HEADER,      /* header NAME Field =~ /re/ */
	SPAM_RK_MIMEHEADER,  /* mimeheader NAME Field =~ /re/ (the parts' header fields) */
	SPAM_RK_EXISTS,      /* header NAME exists:Field */
	SPAM_RK_BODY,
	SPAM_RK_RAWBODY,
	SPAM_RK_URI,
	SPAM_RK_FULL,
	SPAM_RK_META,
	SPAM_RK_EVAL,        /* header|body|rawbody|full|uri NAME eval:fn(args) */
};

/* The texts a literal prefilter scans, one per message each. */
enum spam_view {
	SPAM_VIEW_HEADER,      /* the message's header fields, raw and decoded, + envelope sender */
	SPAM_VIEW_MIMEHEADER,  /* the parts' header fields */
	SPAM_VIEW_BODY,
	SPAM_VIEW_RAWBODY,
	SPAM_VIEW_URI,         /* the URIs, one a line */
	SPAM_VIEW_FULL,
	SPAM_VIEW_COUNT,
	SPAM_VIEW_NONE = SPAM_VIEW_COUNT,
};

/* What a header rule looks at. */
enum spam_hdr_kind {
	SPAM_HDR_NAMED,      /* one field name (all its instances) */
	SPAM_HDR_ALL,        /* every field */
	SPAM_HDR_TOCC,       /* To and Cc */
	SPAM_HDR_MESSAGEID,  /* Message-Id, Resent-Message-Id, X-Message-Id */
	SPAM_HDR_ENVFROM,    /* the envelope sender */
};
#define SPAM_HDR_RAW 1u   /* :raw - not decoded (ALL:raw: the header section as sent) */
#define SPAM_HDR_ADDR 2u  /* :addr - the first address */
#define SPAM_HDR_NAME 4u  /* :name - the first display name */

struct spam_hdr_target {
	enum spam_hdr_kind kind;
	char *name;        /* SPAM_HDR_NAMED: the field name */
	unsigned mods;     /* SPAM_HDR_RAW | ADDR | NAME */
	bool mime;         /* the parts' fields (mimeheader), not the message's */
};

/* tflags */
#define SPAM_TF_MULTIPLE 0x001u
#define SPAM_TF_NICE 0x002u
#define SPAM_TF_LEARN 0x004u
#define SPAM_TF_NOAUTOLEARN 0x008u
#define SPAM_TF_NET 0x010u
#define SPAM_TF_NOSUBJECT 0x020u
#define SPAM_TF_USERCONF 0x040u
#define SPAM_TF_AUTOLEARN_FORCE 0x080u

/* One required literal: a match of the regex contains it (caseless: in
 * any ASCII case). */
struct spam_lit {
	char *text;
	size_t len;
	bool caseless;
};
/* A match contains at least one of these (count 0: nothing known). */
struct spam_litset {
	struct spam_lit *items;
	size_t count;
};

/* Meta and if expressions, compiled to a postfix program. */
enum spam_expr_opcode {
	SPAM_OP_NUM,   /* push num */
	SPAM_OP_RULE,  /* push the value of rule `rule` */
	SPAM_OP_NOT, SPAM_OP_NEG,
	SPAM_OP_ADD, SPAM_OP_SUB, SPAM_OP_MUL, SPAM_OP_DIV,
	SPAM_OP_LT, SPAM_OP_GT, SPAM_OP_LE, SPAM_OP_GE, SPAM_OP_EQ, SPAM_OP_NE,
	SPAM_OP_AND, SPAM_OP_OR,  /* Perl's: the deciding operand's value */
};
struct spam_expr_op {
	enum spam_expr_opcode op;
	uint32_t rule;
	double num;
};
struct spam_expr {
	struct spam_expr_op *ops;
	size_t count, cap;
};

struct spam_run;
struct spam_eval_args {
	char **str;      /* as written, quotes removed */
	double *num;     /* the number each holds (NAN when it is none) */
	size_t count;
};
/* An eval: test: its value for the message (0 = no hit; > 0 = a hit of
 * that value, which meta rules see). */
typedef double (*spam_eval_fn)(struct spam_run *run, const struct spam_eval_args *args);
struct spam_eval_def {
	const char *name;
	spam_eval_fn fn;
	unsigned min_args, max_args;
	/* May be NULL; false: arguments this test cannot serve (the rule is
	 * then treated as one with an unknown eval: test). */
	bool (*args_ok)(const struct spam_eval_args *args);
};

struct spam_file;

struct spam_rule {
	char *name;
	enum spam_rule_kind kind;
	struct spam_file *file;   /* where it was defined */
	unsigned line;
	/* regex kinds */
	char *pattern;            /* without delimiters */
	uint32_t pcre_opts;       /* PCRE2_CASELESS ... from the flags */
	pcre2_code *re;
	bool negate;              /* header !~ */
	struct spam_hdr_target hdr;  /* header, mimeheader, exists */
	size_t target;            /* index into spam_rules.targets */
	char *if_unset;           /* header [if-unset: TEXT], or NULL */
	struct spam_litset lits;  /* what the prefilter looks for */
	enum spam_view view;      /* the text it matches (SPAM_VIEW_NONE: none) */
	hs_database_t *gate;      /* Hyperscan prefilter of the regex, or NULL (spam_rules_gate.c) */
	bool narrow;              /* body: run only on the lines that hold one of its literals */
	/* meta */
	char *meta_text;
	struct spam_expr expr;
	uint32_t *deps;           /* the rules expr reads */
	size_t dep_count;
	/* eval */
	const struct spam_eval_def *eval;
	char *eval_name;
	struct spam_eval_args args;
	/* settings (score, describe, tflags, priority lines) */
	double score[4];
	char *describe;
	unsigned tflags;
	unsigned maxhits;         /* 0 = no bound */
	int priority;
	bool replace_tags;        /* named in replace_rules */
	bool dropped;             /* redefined later, or skipped */
};

/* A file read (for messages, the lenient summary and staleness). */
struct spam_file {
	char *path;
	bool lenient;
	bool is_dir;
	dev_t dev;
	ino_t ino;
	struct timespec mtime;
	off_t size;
	/* what a lenient file lost */
	unsigned skipped_eval, skipped_regex, skipped_other;
	buf_t skipped_evals;   /* the first few names, for the summary */
	char *first_regex_problem;
	char *first_other_problem;
};

struct spam_prefilter {
	hs_database_t *db;
	bool every_match;        /* db reports each occurrence (body: for line narrowing) */
	uint32_t *lit_rule;      /* literal id -> rule index */
	size_t lit_count;
	uint32_t *always;        /* rules of this view without a literal */
	size_t always_count;
	uint32_t *all;           /* every rule of this view */
	size_t all_count;
};

struct spam_rules {
	struct spam_rule *rules;  /* the active ones, in run order: non-meta by priority, then metas */
	size_t count;
	size_t first_meta;        /* rules[first_meta..count) are the metas, dependencies first */
	struct spam_hdr_target *targets;  /* distinct header targets */
	size_t target_count;
	struct spam_file **files;
	size_t file_count;
	struct spam_prefilter views[SPAM_VIEW_COUNT];
	hs_scratch_t *scratch;    /* one message at a time per process (prefilters and gates) */
	size_t gate_count;        /* rules with a gate */
	uint64_t gate_bytes;      /* their databases */
	bool plain;               /* every regex on its whole text: no prefilter, gate nor
				   * narrowing (the reference the tests compare with) */
	uint8_t *jit_pending;     /* lazy JIT: per rule, 1 until its regex is JIT-compiled */
	pcre2_match_context *mctx;
	pcre2_jit_stack *jit_stack;
	pcre2_match_data *mdata;
	hashmap_t by_name;        /* name -> rule index + 1 */
};

/* ---- the parts' entry points ----------------------------------------------- */

/* spam_rules_expr.c: compile a meta or if expression. Identifiers and
 * calls (NAME(ARG)) are handed to the resolver, which appends their ops
 * (usually one SPAM_OP_NUM or SPAM_OP_RULE). 0, or -1 with err. */
struct spam_expr_resolver {
	int (*name)(void *ctx, const char *name, size_t len, struct spam_expr *out, char *err,
		    size_t errlen);
	int (*call)(void *ctx, const char *fn, size_t fnlen, const char *arg, size_t arglen,
		    struct spam_expr *out, char *err, size_t errlen);
	void *ctx;
};
int spam_expr_compile(const char *text, const struct spam_expr_resolver *r,
		      struct spam_expr *out, char *err, size_t errlen);
void spam_expr_push(struct spam_expr *e, enum spam_expr_opcode op, uint32_t rule, double num);
/* The value (values[i]: rule i's); a division by zero makes it 0. */
double spam_expr_eval(const struct spam_expr *e, const double *values);
void spam_expr_free(struct spam_expr *e);

/* spam_rules_regex.c: "/re/flags" or "m{re}flags" at s: the pattern and
 * PCRE2 options; *end_r the byte after the flags. 0, or -1 with err.
 * Unknown flags are an error unless lenient (then g and o are ignored). */
int spam_regex_split(const char *s, char **pattern_r, uint32_t *opts_r, const char **end_r,
		     char *err, size_t errlen);
/* The literals one of which every match of the pattern contains (count 0
 * when none is known). */
void spam_regex_literals(const char *pattern, uint32_t opts, struct spam_litset *out);
void spam_litset_free(struct spam_litset *s);
/* Compile (with JIT now, or later: spam_rules_build's lazy_jit); NULL with err. */
pcre2_code *spam_regex_compile(const char *pattern, uint32_t opts, bool jit, char *err,
			       size_t errlen);

/* ---- reading (spam_rules_parse.c) and building (spam_rules_build.c) -------- */

/* Settings given by rule name, wherever the rule is (SpamAssassin keeps
 * its scores in one file and its rules in others). */
struct spam_settings {
	bool has_score;
	double score[4];
	char *describe;
	bool has_tflags;
	unsigned tflags;
	unsigned maxhits;
	bool has_priority;
	int priority;
	bool replace_tags;
};

struct spam_parse {
	FILE *warnings;
	const char *cache_path;    /* the compiled-database cache, or NULL */
	bool lazy_jit;             /* JIT-compile a regex when it first runs */
	char *err;                 /* the first error of a strict file: stop */
	struct spam_rule *rules;   /* every definition, in order */
	size_t count, cap;
	hashmap_t names;           /* name -> index + 1 of its latest definition */
	hashmap_t settings;        /* name -> struct spam_settings */
	hashmap_t replace_tag, replace_pre, replace_inter, replace_post;  /* name -> char * */
	char *replace_start, *replace_end;
	hashmap_t compat;          /* enable_compat NAME */
	struct spam_file **files;
	size_t file_count;
	/* the files being read (include inside include) */
	struct { dev_t dev; ino_t ino; } stack[SPAM_RULES_INCLUDE_DEPTH + 2];
	unsigned depth;
};

/* A problem in a rule of file f at line: in a lenient file the rule is
 * skipped and counted (what: SPAM_SKIP_*), in a strict one it is the
 * load's error. */
enum spam_skip { SPAM_SKIP_EVAL, SPAM_SKIP_REGEX, SPAM_SKIP_OTHER };
void spam_parse_problem(struct spam_parse *ps, struct spam_file *f, unsigned line,
			enum spam_skip what, const char *detail, const char *fmt, ...)
	PRINTF_LIKE(6, 7);

/* Rules from text in memory, as if read from a file called name (for the
 * fuzzer and tests; an include is read relative to name). */
struct spam_rules *spam_rules_parse_text(const char *name, const char *text, size_t len,
					 bool lenient, FILE *warnings, char **err_r);

/* spam_rules_build.c: turn what was read into the rules (NULL with ps->err
 * set when a strict file is wrong). */
struct spam_rules *spam_rules_build(struct spam_parse *ps);
/* Run every regex on its whole text, as if there were no prefilter, gate
 * or narrowing: the reference the optimised matching must agree with
 * (tests and fuzzers). */
void spam_rules_set_plain(struct spam_rules *rules, bool plain);

/* spam_rules_gate.c: a Hyperscan database to take from the cache or
 * compile, a regex's gate or a view's literal database. */
struct spam_hs_job {
	enum spam_hs_kind kind;       /* SPAM_HS_KIND_GATE or SPAM_HS_KIND_LITERALS */
	buf_t key;                    /* what the cache knows it by */
	/* a gate */
	struct spam_rule *rule;
	const char *expr;             /* into key */
	unsigned flags;
	/* a literal database */
	const char **exprs;
	unsigned *lit_flags, *ids;
	size_t *lens;
	size_t lit_count;
	/* what came of it */
	enum spam_hs_status status;
	hs_database_t *db;
	uint64_t size;                /* of db, or the size that was too large */
	uint32_t hs_ns, pcre_ns;      /* a gate's and its regex's time over the sample */
	bool compiled_now;            /* not (or no longer) in the cache */
};
/* Keys of this many bytes or more are compiled in a child process. */
#define SPAM_COMPILE_CHILD_BYTES (16u * 1024)
/* May r get a Hyperscan gate? Build the gates of the rules that qualify,
 * from the cache or compiled now (and put in it); the more jobs (literal
 * databases not in the cache) are compiled with them, and left to the
 * caller. */
bool spam_gate_eligible(const struct spam_rule *r);
void spam_gates_build(struct spam_rules *set, struct spam_hs_cache *cache,
		      struct spam_hs_job **more, size_t more_count);
/* Tests and fuzzers: give every eligible regex a gate, however it
 * measured (within the size bounds); compile in a child process whatever
 * there is. */
void spam_gates_test_all(bool all);
void spam_hs_test_child(bool always);
/* May a body rule with literals run only on the lines that hold one? Not
 * when its regex looks past the end of the subject or before where the
 * match starts (\z, \Z, \K, \G, backtracking verbs, a lookahead that may
 * match a newline). opts: the PCRE2 options it is compiled with. */
bool spam_narrow_eligible(const char *pattern, uint32_t opts);
/* Does the pattern hold the escape backslash-letter (not counting an escaped
 * backslash)? Could it turn an option on inline ((?s), (?is:...))? */
bool spam_regex_has_escape(const char *pattern, char letter);
bool spam_regex_inline_option(const char *pattern, char option);
void spam_rule_free(struct spam_rule *r);
void spam_file_free(struct spam_file *f);
void spam_parse_free(struct spam_parse *ps);

/* spam_eval.c */
const struct spam_eval_def *spam_eval_find(const char *name);
/* Is this SpamAssassin plugin (Mail::SpamAssassin::Plugin::X) one whose
 * rules postern runs (the evals it has, or the rule kind it adds)? */
bool spam_plugin_present(const char *name);
/* Is can(Package::function) true here? */
bool spam_feature_present(const char *name);

/* ---- one message ------------------------------------------------------------ */

struct spam_hdr_text {
	bool done;
	bool present;   /* the field (or pseudo-field) exists */
	buf_t text;
};

struct spam_line_ref {
	uint32_t line;
	uint32_t next;         /* index + 1 of the rule's next, 0 = none */
};

struct spam_run {
	const struct spam_rules *rules;
	const struct spam_text *t;
	const struct spam_rules_context *ctx;
	double *value;         /* per rule: 0 or the hit's value (count for multiple) */
	uint8_t *state;        /* per rule: SPAM_RUN_* */
	uint8_t *candidate;    /* per rule: the prefilter saw its literal */
	/* body line narrowing: where each line of the body starts, and per
	 * rule a list (in lines[]) of the lines that hold its literals */
	size_t *line_start;
	size_t line_count;
	struct spam_line_ref *lines;
	size_t lines_used, lines_cap;
	uint32_t *first_line, *last_line;  /* per rule: index + 1 into lines, 0 = none */
	size_t line_cursor;    /* the line of the last literal seen */
	bool narrow_off;       /* too many occurrences, or no prefilter: whole body */
	struct spam_hdr_text *hdr;  /* per target */
	buf_t view_text[SPAM_VIEW_COUNT];  /* header, mimeheader and uri views built here */
	bool view_built[SPAM_VIEW_COUNT];
	uint64_t start_us, deadline_us;    /* deadline 0: none */
	unsigned calls;        /* matches since the clock was last read */
	bool timed_out;
	/* what evals computed once */
	bool date_done;
	int64_t date;          /* the Date field, seconds since the epoch, or INT64_MIN */
	bool recv_done;
	int64_t recv_date;     /* the newest Received field's date, or INT64_MIN */
	bool upper_done;
	double upper_pct;      /* capitals among the letters of the body's word lines, or < 0 */
};
#define SPAM_RUN_PENDING 0
#define SPAM_RUN_DONE 1    /* ran (value says whether it hit) */
#define SPAM_RUN_SKIPPED 2 /* did not run (score 0 in this set, budget, a dependency) */

/* spam_rules_header.c: the text of target i for the run (cached). */
const struct spam_hdr_text *spam_run_header(struct spam_run *run, size_t target);
/* The message's fields (part 0) named name, case-insensitive: how many, and
 * the first one's decoded (or raw) value. */
size_t spam_header_count(const struct spam_text *t, const char *name);
const char *spam_header_first(const struct spam_text *t, const char *name, bool raw);
/* The first address in a field value, or its first display name, into out. */
void spam_header_addr(const char *value, buf_t *out);
void spam_header_display_name(const char *value, buf_t *out);
/* Build the header view (all fields, raw and decoded, and the sender). */
void spam_header_view(const struct spam_text *t, const struct scan_envelope *env, bool mime,
		      buf_t *out);

#endif

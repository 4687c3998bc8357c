/*
 * spam.c - the spam stage of the content pipeline (spam.h): the message's
 * text for the tests, the Bayes probability when a token store is set,
 * the rules in SpamAssassin's syntax, then a score and what it means: the
 * X-Spam-* header fields SpamAssassin's users filter on (forged incoming
 * ones removed first), an optional subject prefix, and from the
 * configured scores up a quarantine or a refusal during DATA.
 *
 * The rules are compiled once in the scan master and shared by the forked
 * scanners; the token store (LMDB) must not cross a fork, so each scanner
 * opens its own the first time it needs it.
 *
 * Untrusted input: the message (through spam_text and the rules).
 * Privilege: unprivileged scanners and `postern scan`.
 */
#include "spam.h"

#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "../lib/config.h"
#include "../lib/log.h"
#include "../lib/safeio.h"
#include "../lib/xalloc.h"
#include "scan_proto.h"
#include "../version.h"

#define SPAM_HEADER_PREFIX "X-Spam-"
#define SPAM_STARS_MAX 50
#define SPAM_FOLD_WIDTH 78
#define SPAM_REPORT_LINES 30

struct spam_stage {
	struct spam_rules *rules;
	struct spam_text_limits limits;
	double tag, quarantine, reject;
	char *subject_prefix;
	bool report;
	uint64_t budget_us;
	/* Bayes: the token store (each process opens its own environment on
	 * first use, spam_store_lmdb_open), and auto-learning. */
	struct spam_store *store;
	uint32_t bayes_min_learned;
	bool autolearn;
	double autolearn_ham, autolearn_spam;
};

/* ---- Bayes ------------------------------------------------------------------- */

static double bayes_probability(struct spam_stage *st, const struct spam_text *t)
{
	if (st->store == NULL)
		return -1;
	uint64_t *tokens = xcalloc(SPAM_TOKENS_MAX, sizeof(*tokens));
	size_t n = spam_tokenize(t, tokens, SPAM_TOKENS_MAX);
	double p = spam_bayes_probability(st->store, tokens, n, st->bayes_min_learned);
	free(tokens);
	return p;
}

/* Auto-learn, as SpamAssassin does: a message whose score without the
 * Bayes and learning rules is clearly on one side is learned as that
 * side, unless a rule that hit forbids it. Returns what the
 * X-Spam-Status field says: "ham", "spam", "no", "unavailable" (the
 * store could not be written) or "disabled". */
static const char *autolearn(const struct spam_stage *st, const struct spam_text *t,
			     const struct spam_result *r, const struct scan_envelope *env)
{
	if (!st->autolearn || st->store == NULL)
		return "disabled";
	enum spam_learn_as as;
	if (!r->autolearn_allowed || r->timed_out)
		return "no";
	if (r->learn_score >= st->autolearn_spam)
		as = SPAM_LEARN_SPAM;
	else if (r->learn_score <= st->autolearn_ham)
		as = SPAM_LEARN_HAM;
	else
		return "no";
	if (spam_bayes_learn(st->store, t, as, NULL) < 0) {
		log_warn("%s%sspam: auto-learn failed: %s", env->queue_id,
			 env->queue_id[0] != '\0' ? ": " : "", st->store->ops->last_error(st->store));
		return "unavailable";
	}
	return as == SPAM_LEARN_SPAM ? "spam" : "ham";
}

/* ---- the header fields ----------------------------------------------------------- */

/* Append sep and word to a field being built, folding before the word
 * when the line would pass SPAM_FOLD_WIDTH (sep " " becomes the fold). */
static void fold_append(buf_t *field, size_t *line_len, const char *sep, const char *word)
{
	size_t add = strlen(sep) + strlen(word);
	if (*line_len + add > SPAM_FOLD_WIDTH && *line_len > 0) {
		/* a separator that is not white space stays, before the fold:
		 * "tests=A,\n\tB" as SpamAssassin writes it */
		if (strcmp(sep, " ") != 0)
			buf_puts(field, sep);
		buf_puts(field, "\n\t");
		*line_len = 1;
	} else {
		buf_puts(field, sep);
		*line_len += strlen(sep);
	}
	buf_puts(field, word);
	*line_len += strlen(word);
}

/* "X-Spam-Status: Yes, score=8.0 required=5.0 tests=A,B,C autolearn=no
 * version=postern-V", folded as SpamAssassin folds it, within bounds. */
static void status_field(const struct spam_result *r, double required, bool spam,
			 const char *learned, buf_t *f)
{
	char head[128];
	snprintf(head, sizeof(head), "X-Spam-Status: %s, score=%.1f required=%.1f", spam ? "Yes" : "No",
		 r->score, required);
	buf_puts(f, head);
	size_t line = strlen(head);
	fold_append(f, &line, " ", "tests=");
	if (r->hit_count == 0) {
		buf_puts(f, "none");
		line += 4;
	}
	for (size_t i = 0; i < r->hit_count; i++) {
		if (f->len + 64 + strlen(r->hits[i].name) > SCAN_HEADER_TEXT_MAX - 64) {
			buf_puts(f, ",...");
			break;
		}
		if (i == 0) {
			buf_puts(f, r->hits[i].name);
			line += strlen(r->hits[i].name);
		} else {
			fold_append(f, &line, ",", r->hits[i].name);
		}
	}
	char al[32];
	snprintf(al, sizeof(al), "autolearn=%s", learned);
	fold_append(f, &line, " ", al);
	fold_append(f, &line, " ", "version=postern-" POSTERN_VERSION);
}

/* X-Spam-Report: one line per rule that hit, "pts rule description". */
static void report_field(const struct spam_result *r, buf_t *f)
{
	buf_puts(f, "X-Spam-Report:");
	for (size_t i = 0; i < r->hit_count && i < SPAM_REPORT_LINES; i++) {
		char line[200];
		snprintf(line, sizeof(line), "\n\t* %5.1f %s %s", r->hits[i].score, r->hits[i].name,
			 r->hits[i].describe != NULL ? r->hits[i].describe : "");
		for (char *p = line + 2; *p != '\0'; p++)
			if ((unsigned char)*p < 0x20 && *p != '\t')
				*p = ' ';
		if (f->len + strlen(line) > SCAN_HEADER_TEXT_MAX)
			break;
		buf_puts(f, line);
	}
	if (r->hit_count == 0)
		buf_puts(f, " none");
}

static void add_field(struct scan_verdict *v, buf_t *f)
{
	if (!scan_verdict_add_header(v, buf_cstr(f)))
		log_warn("spam: a header field was not added: %.60s", buf_cstr(f));
	buf_reset(f);
}

/* Every X-Spam-* field of the message's own header section goes: only
 * ours may say what the score is. */
static void remove_forged(const struct scan_message *m, struct scan_verdict *v)
{
	size_t plen = strlen(SPAM_HEADER_PREFIX);
	for (size_t i = 0; i < m->header_count; i++) {
		const struct scan_header *h = &m->headers[i];
		if (h->part == 0 && strncasecmp(h->name, SPAM_HEADER_PREFIX, plen) == 0 &&
		    !scan_verdict_remove_header(v, h->name))
			log_warn("spam: forged field %.60s stays (too many names)", h->name);
	}
}

/* "Subject: PREFIX old subject" in place of the message's Subject. */
static void prefix_subject(const struct spam_stage *st, const struct scan_message *m,
			   struct scan_verdict *v)
{
	const char *old = NULL;
	for (size_t i = 0; i < m->header_count && old == NULL; i++)
		if (m->headers[i].part == 0 && strcasecmp(m->headers[i].name, "Subject") == 0)
			old = m->headers[i].raw;
	while (old != NULL && (*old == ' ' || *old == '\t'))
		old++;
	buf_t f = BUF_INIT;
	buf_printf(&f, "Subject: %s%s%s", st->subject_prefix, old != NULL ? " " : "",
		   old != NULL ? old : "");
	if (scan_header_field_ok(buf_cstr(&f)) && scan_verdict_remove_header(v, "Subject"))
		scan_verdict_add_header(v, buf_cstr(&f));
	else
		log_warn("spam: the subject prefix was not added (the Subject is too long)");
	buf_free(&f);
}

static void add_fields(const struct spam_stage *st, const struct scan_message *m,
		       const struct spam_result *r, bool spam, const char *learned,
		       struct scan_verdict *v)
{
	buf_t f = BUF_INIT;
	remove_forged(m, v);
	if (spam) {
		buf_puts(&f, "X-Spam-Flag: YES");
		add_field(v, &f);
	}
	buf_printf(&f, "X-Spam-Score: %.1f", r->score);
	add_field(v, &f);
	int stars = r->score >= 1 ? (int)fmin(r->score, SPAM_STARS_MAX) : 0;
	buf_puts(&f, "X-Spam-Level: ");
	for (int i = 0; i < stars; i++)
		buf_putc(&f, '*');
	add_field(v, &f);
	status_field(r, st->tag, spam, learned, &f);
	add_field(v, &f);
	if (st->report) {
		report_field(r, &f);
		add_field(v, &f);
	}
	buf_free(&f);
	if (spam && st->subject_prefix[0] != '\0')
		prefix_subject(st, m, v);
}

/* ---- the verdict ------------------------------------------------------------------ */

static void judge(const struct spam_stage *st, const struct scan_message *m,
		  const struct spam_result *r, const char *learned, struct scan_verdict *v)
{
	char score[32];
	snprintf(score, sizeof(score), "spam:score=%.1f", r->score);
	scan_verdict_add_hit(v, score);
	for (size_t i = 0; i < r->hit_count; i++) {
		char hit[SCAN_HIT_MAX + 1];
		snprintf(hit, sizeof(hit), "spam:%s", r->hits[i].name);
		scan_verdict_add_hit(v, hit);
	}
	if (st->reject > 0 && r->score >= st->reject) {
		scan_verdict_set(v, SCAN_REJECT, 550, "5.7.1", "spam",
				 "Message refused as spam (score %.1f)", r->score);
		return;
	}
	bool spam = r->score >= st->tag;
	add_fields(st, m, r, spam, learned, v);
	if (st->quarantine > 0 && r->score >= st->quarantine)
		scan_verdict_set(v, SCAN_QUARANTINE, 0, "", "spam",
				 "spam score %.1f, required %.1f", r->score, st->tag);
	else if (spam)
		scan_verdict_set(v, SCAN_TAG, 0, "", "spam", "spam score %.1f, required %.1f",
				 r->score, st->tag);
}

static int stage_run(void *ctx, const struct scan_message *m, struct scan_verdict *v)
{
	struct spam_stage *st = ctx;
	struct spam_text t;
	spam_text_build(m, &st->limits, &t);
	struct spam_rules_context rc = { .env = m->env, .budget_us = st->budget_us };
	rc.bayes_probability = bayes_probability(st, &t);
	rc.set = rc.bayes_probability >= 0 ? SPAM_SET_BAYES : SPAM_SET_LOCAL;
	struct spam_result r;
	spam_result_init(&r);
	spam_rules_run(st->rules, &t, &rc, &r);
	if (r.timed_out)
		log_warn("%s%sspam: the rules ran out of time (spam_time_budget); the score "
			 "counts the rules that ran", m->env->queue_id,
			 m->env->queue_id[0] != '\0' ? ": " : "");
	judge(st, m, &r, autolearn(st, &t, &r, m->env), v);
	spam_result_free(&r);
	spam_text_free(&t);
	return 0;
}

static bool stage_stale(void *ctx)
{
	const struct spam_stage *st = ctx;
	return spam_rules_stale(st->rules);
}

static void stage_free(void *ctx)
{
	struct spam_stage *st = ctx;
	spam_rules_free(&st->rules);
	if (st->store != NULL)
		st->store->ops->close(st->store);
	free(st->subject_prefix);
	free(st);
}

/* ---- building ---------------------------------------------------------------------- */

/* The engine's summary lines about what it skipped in SpamAssassin's
 * files, one log line each. */
static void log_warnings(char *text)
{
	for (char *line = text, *end; line != NULL && *line != '\0'; line = end) {
		end = strchr(line, '\n');
		if (end != NULL)
			*end++ = '\0';
		if (*line != '\0')
			log_warn("spam: %s", line);
	}
}

/* Where the compiled Hyperscan databases are kept between loads: beside
 * the scan master's socket, in the spool's private folder (user's own,
 * mode 0700), when it exists; NULL (compiled at every load) when not. */
static char *cache_path(const struct config *cfg)
{
	char *dir = safeio_path_join(cfg->spool_dir, SCAN_SOCKET_FOLDER);
	struct stat st;
	char *path = NULL;
	if (lstat(dir, &st) == 0 && S_ISDIR(st.st_mode))
		path = safeio_path_join(dir, SPAM_HS_CACHE_NAME);
	free(dir);
	return path;
}

/* The rule files in the order they count: SpamAssassin's folders first,
 * then postern's own file, whose scores override theirs. */
static struct spam_rules *load_rules(const struct config *cfg, char **err_r)
{
	char *warned = NULL;
	size_t warned_len = 0;
	FILE *warnings = open_memstream(&warned, &warned_len);
	size_t n = cfg->spam_rules_dirs.count + (cfg->spam_rules_file[0] != '\0');
	const char **paths = xcalloc(n + 1, sizeof(*paths));
	bool *lenient = xcalloc(n + 1, sizeof(*lenient));
	size_t k = 0;
	for (size_t i = 0; i < cfg->spam_rules_dirs.count; i++) {
		lenient[k] = true;
		paths[k++] = cfg->spam_rules_dirs.items[i];
	}
	if (cfg->spam_rules_file[0] != '\0')
		paths[k++] = cfg->spam_rules_file;
	char *cache = cache_path(cfg);
	struct spam_rules_source src = { paths, k, lenient, cache, scan_pipeline_one_process() };
	struct spam_rules *rules = spam_rules_load(&src, warnings, err_r);
	free(cache);
	free(lenient);
	free(paths);
	if (warnings != NULL) {
		fclose(warnings);
		log_warnings(warned);
		free(warned);
	}
	return rules;
}

int scan_spam_stage_new(const struct config *cfg, struct scan_stage *stage_r, char **err_r)
{
	if (cfg->spam_rules_file[0] == '\0' && cfg->spam_rules_dirs.count == 0)
		return 1;
	struct spam_rules *rules = load_rules(cfg, err_r);
	if (rules == NULL)
		return -1;
	struct spam_stage *st = xcalloc(1, sizeof(*st));
	st->rules = rules;
	st->limits.max_body = (size_t)cfg->spam_max_text;
	st->limits.max_uris = 1000;
	st->tag = cfg->spam_tag_score;
	st->quarantine = cfg->spam_quarantine_score;
	st->reject = cfg->spam_reject_score;
	st->subject_prefix = xstrdup(cfg->spam_subject_prefix);
	st->report = cfg->spam_report == CONFIG_YES;
	st->budget_us = cfg->spam_time_budget * 1000000u;
	if (cfg->bayes_dir[0] != '\0') {
		st->autolearn = cfg->bayes_autolearn == CONFIG_YES;
		st->store = spam_store_lmdb_open(cfg->bayes_dir, st->autolearn, cfg->bayes_map_size,
						 err_r);
		if (st->store == NULL) {
			stage_free(st);
			return -1;
		}
		st->bayes_min_learned = (uint32_t)cfg->bayes_min_learned;
		st->autolearn_ham = cfg->bayes_autolearn_ham_score;
		st->autolearn_spam = cfg->bayes_autolearn_spam_score;
	}
	log_info("spam: %zu rules, tag at %.1f, quarantine at %.1f, refuse at %.1f, Bayes %s%s",
		 spam_rules_count(rules), st->tag, st->quarantine, st->reject,
		 cfg->bayes_dir[0] != '\0' ? cfg->bayes_dir : "off",
		 st->autolearn ? " (auto-learning)" : "");
	memset(stage_r, 0, sizeof(*stage_r));
	stage_r->name = "spam";
	stage_r->run = stage_run;
	stage_r->stale = stage_stale;
	stage_r->free = stage_free;
	stage_r->ctx = st;
	stage_r->ignores_types = true;  /* text parts and header fields only */
	return 0;
}

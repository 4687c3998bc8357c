/*
 * spam_rules_gate.c - Hyperscan gates for the rule regexes the literal
 * prefilter cannot help: a regex with no literal every match needs
 * (SpamAssassin's obfuscation patterns, v[_\W]{0,3}i[_\W]{0,3}a...) would
 * otherwise run through every message. Its gate is the same regex
 * compiled by Hyperscan in prefilter mode (HS_FLAG_PREFILTER: a pattern
 * it cannot take exactly is widened, so the gate matches wherever the
 * regex does, and sometimes where it does not); per message one
 * Hyperscan pass over the text tells whether the regex can match at all,
 * and only then does PCRE2 run (and count, for tflags multiple). A gate
 * never decides a hit: PCRE2 always confirms.
 *
 * Which rules get one: body, rawbody and full rules without literals
 * (their texts are what PCRE2 reads too; a body gate reads the whole
 * body, a superset of the lines PCRE2 reads, so a body regex that looks
 * at the end of the subject, \z or \Z, gets none) whose gate compiles to
 * at most SPAM_GATE_DB_MAX bytes and, over a sample of ordinary text
 * (sample_text: words, numbers, a link, a few accented letters), runs in
 * at most two thirds of the time PCRE2 takes over it (Hyperscan is slower than
 * PCRE2 on some patterns: a gate there would cost time); of those, the
 * ones that save the most time per byte of database first, while all
 * gates stay within SPAM_GATE_TOTAL_MAX. Each gate is its own database,
 * one pass per rule: a combined database of these patterns was measured
 * several times larger (22 MB for SpamAssassin's, half a minute to
 * compile) and no faster. The databases are compiled in the scan master
 * (shared with the scanners by fork), on a few threads, measured, and
 * kept with their measurements in the compiled-database cache
 * (spam_hs_cache.h), so that the next load only reads them and decides
 * alike.
 *
 * Input: the rules' patterns (rule files, an administrator's choice).
 * Privilege: the scan master, `postern scan`, check-config (as user).
 */
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "../lib/log.h"
#include "../lib/xalloc.h"
#include "spam_hs_cache.h"
#include "spam_rules_impl.h"

#define GATE_THREADS_MAX 4
#define SAMPLE_BYTES 4096
#define TIMING_ROUNDS 5

/* A gate to find or compile. */
struct gate_job {
	struct spam_rule *rule;
	buf_t key;                  /* flags (4 bytes, little-endian) + expression */
	const char *expr;           /* into key */
	unsigned flags;
	enum spam_hs_status status;
	hs_database_t *db;
	uint64_t size;              /* of db, or the size that was too large */
	uint32_t hs_ns, pcre_ns;    /* the gate's and the regex's time over the sample */
	bool compiled_now;          /* not (or no longer) in the cache */
};

bool spam_gate_eligible(const struct spam_rule *r)
{
	if (r->re == NULL || r->lits.count > 0 || r->pattern == NULL ||
	    strlen(r->pattern) > SPAM_GATE_PATTERN_MAX)
		return false;
	switch (r->kind) {
	case SPAM_RK_BODY:
		/* PCRE2 reads a line at a time, the gate the whole body: an end
		 * of subject in the regex would be at a line's end for one and
		 * not for the other */
		return !spam_regex_has_escape(r->pattern, 'z') && !spam_regex_has_escape(r->pattern, 'Z');
	case SPAM_RK_RAWBODY:
	case SPAM_RK_FULL:
		return true;
	default:
		return false;
	}
}

/* The expression and flags Hyperscan gets for r's regex. */
static void gate_job_init(struct gate_job *j, struct spam_rule *r)
{
	memset(j, 0, sizeof(*j));
	j->rule = r;
	uint32_t opts = r->pcre_opts;
	if (r->kind == SPAM_RK_BODY)
		opts |= PCRE2_MULTILINE;  /* as spam_rules_build.c compiles it */
	j->flags = HS_FLAG_PREFILTER | HS_FLAG_SINGLEMATCH;
	if (opts & PCRE2_CASELESS)
		j->flags |= HS_FLAG_CASELESS;
	if (opts & PCRE2_DOTALL)
		j->flags |= HS_FLAG_DOTALL;
	if (opts & PCRE2_MULTILINE)
		j->flags |= HS_FLAG_MULTILINE;
	unsigned char f[4] = { (unsigned char)j->flags, (unsigned char)(j->flags >> 8),
			       (unsigned char)(j->flags >> 16), (unsigned char)(j->flags >> 24) };
	buf_append(&j->key, f, sizeof(f));
	if (opts & PCRE2_EXTENDED)
		buf_puts(&j->key, "(?x)");  /* Hyperscan has no flag for it */
	buf_puts(&j->key, r->pattern);
	j->expr = buf_cstr(&j->key) + sizeof(f);
}

/* ---- compiling, on a few threads --------------------------------------------------- */

struct compile_pool {
	struct gate_job **jobs;
	size_t count;
	size_t next;
	pthread_mutex_t lock;
};

static void compile_one(struct gate_job *j)
{
	hs_compile_error_t *err = NULL;
	hs_database_t *db = NULL;
	if (hs_compile(j->expr, j->flags, HS_MODE_BLOCK, NULL, &db, &err) != HS_SUCCESS) {
		hs_free_compile_error(err);
		j->status = SPAM_HS_REJECTED;
		return;
	}
	size_t size = 0;
	hs_database_size(db, &size);
	j->size = size;
	if (size > SPAM_GATE_DB_MAX) {
		hs_free_database(db);
		j->status = SPAM_HS_TOO_LARGE;
		return;
	}
	j->db = db;
	j->status = SPAM_HS_COMPILED;
}

static void *compile_worker(void *arg)
{
	struct compile_pool *pool = arg;
	for (;;) {
		pthread_mutex_lock(&pool->lock);
		size_t i = pool->next < pool->count ? pool->next++ : pool->count;
		pthread_mutex_unlock(&pool->lock);
		if (i >= pool->count)
			return NULL;
		compile_one(pool->jobs[i]);
	}
}

static void compile_all(struct gate_job **jobs, size_t count)
{
	if (count == 0)
		return;
	long cpus = sysconf(_SC_NPROCESSORS_ONLN);
	size_t threads = cpus > 1 ? (size_t)cpus : 1;
	if (threads > GATE_THREADS_MAX)
		threads = GATE_THREADS_MAX;
	if (threads > count)
		threads = count;
	struct compile_pool pool = { jobs, count, 0, PTHREAD_MUTEX_INITIALIZER };
	pthread_t tid[GATE_THREADS_MAX];
	size_t started = 0;
	for (size_t i = 1; i < threads; i++)
		if (pthread_create(&tid[started], NULL, compile_worker, &pool) == 0)
			started++;
	compile_worker(&pool);  /* this thread works too */
	for (size_t i = 0; i < started; i++)
		pthread_join(tid[i], NULL);
	pthread_mutex_destroy(&pool.lock);
}

static double seconds_since(const struct timespec *t0)
{
	struct timespec t1;
	clock_gettime(CLOCK_MONOTONIC, &t1);
	return (double)(t1.tv_sec - t0->tv_sec) + (double)(t1.tv_nsec - t0->tv_nsec) / 1e9;
}

/* ---- measuring ------------------------------------------------------------------------ */

/*
 * Ordinary text to time a gate and its regex on: paragraphs (one a line,
 * as the body view has them) of common words, with capitals, numbers,
 * punctuation, a link, an address and a few accented letters in UTF-8.
 * Always the same (a fixed pseudo-random sequence).
 */
static void sample_text(buf_t *out)
{
	static const char *const words[] = {
		"the", "and", "for", "you", "with", "this", "that", "from", "your", "have",
		"will", "are", "our", "can", "all", "more", "about", "new", "time", "please",
		"thanks", "meeting", "report", "project", "team", "week", "today", "tomorrow",
		"attached", "document", "review", "update", "message", "information", "order",
		"account", "service", "price", "free", "offer", "customer", "support", "email",
		"list", "subscribe", "office", "number", "question", "answer", "call", "next",
		"monday", "friday", "morning", "evening", "budget", "schedule", "details",
		"caf\xc3\xa9", "na\xc3\xafve", "\xe2\x80\x93", "it\xe2\x80\x99s", "we", "is",
		"to", "of", "in", "on", "at", "be", "it", "as", "or", "by", "an", "if", "so",
	};
	uint32_t seed = 0x2545f491u;
	size_t in_paragraph = 0, in_sentence = 0;
	while (out->len < SAMPLE_BYTES) {
		seed = seed * 1103515245u + 12345u;
		uint32_t r = seed >> 8;
		if (in_sentence > 0)
			buf_putc(out, ' ');
		if (r % 41 == 0)
			buf_printf(out, "%u", r % 9973);
		else if (r % 97 == 0)
			buf_puts(out, "https://www.example.com/offers/page?id=42");
		else if (r % 89 == 0)
			buf_puts(out, "info@example.net");
		else {
			const char *w = words[r % (sizeof(words) / sizeof(words[0]))];
			if (in_sentence == 0) {
				buf_putc(out, (char)(w[0] >= 'a' && w[0] <= 'z' ? w[0] - 32 : w[0]));
				buf_puts(out, w + 1);
			} else {
				buf_puts(out, w);
			}
		}
		in_sentence++;
		in_paragraph++;
		if (in_sentence > 6 + r % 9) {
			buf_puts(out, r % 5 == 0 ? "?" : r % 7 == 0 ? "!" : ".");
			in_sentence = 0;
			if (in_paragraph > 40 + r % 30) {
				buf_putc(out, '\n');
				in_paragraph = 0;
			} else {
				buf_putc(out, ' ');
				in_sentence = 0;
			}
		} else if (r % 13 == 0) {
			buf_putc(out, ',');
		}
	}
	buf_putc(out, '\n');
}

static uint64_t thread_ns(void)
{
	struct timespec t;
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
	return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

static uint32_t clamp_ns(uint64_t ns)
{
	return ns > UINT32_MAX ? UINT32_MAX : ns == 0 ? 1 : (uint32_t)ns;
}

static int on_sample_match(unsigned int id, unsigned long long from, unsigned long long to,
			   unsigned int flags, void *ctx)
{
	(void)id;
	(void)from;
	(void)to;
	(void)flags;
	(void)ctx;
	return 1;
}

/* The gate's and the regex's best time over the sample. */
static void measure(struct gate_job *j, const buf_t *sample, hs_scratch_t **scratch,
		    pcre2_match_data *md, pcre2_match_context *mc)
{
	uint64_t best_hs = UINT64_MAX, best_re = UINT64_MAX;
	if (hs_alloc_scratch(j->db, scratch) != HS_SUCCESS) {
		j->hs_ns = UINT32_MAX;  /* never a gate */
		j->pcre_ns = 1;
		return;
	}
	(void)pcre2_jit_compile(j->rule->re, PCRE2_JIT_COMPLETE);  /* if not yet (lazy JIT) */
	for (int round = 0; round < TIMING_ROUNDS; round++) {
		uint64_t t0 = thread_ns();
		(void)hs_scan(j->db, sample->data, (unsigned)sample->len, 0, *scratch,
			      on_sample_match, NULL);
		uint64_t t1 = thread_ns();
		(void)pcre2_match(j->rule->re, (PCRE2_SPTR)sample->data, sample->len, 0, 0, md, mc);
		uint64_t t2 = thread_ns();
		if (t1 - t0 < best_hs)
			best_hs = t1 - t0;
		if (t2 - t1 < best_re)
			best_re = t2 - t1;
	}
	j->hs_ns = clamp_ns(best_hs);
	j->pcre_ns = clamp_ns(best_re);
}

static void measure_all(struct gate_job **jobs, size_t count)
{
	buf_t sample = BUF_INIT;
	sample_text(&sample);
	hs_scratch_t *scratch = NULL;
	pcre2_match_data *md = pcre2_match_data_create(1, NULL);
	pcre2_match_context *mc = pcre2_match_context_create(NULL);
	if (md == NULL || mc == NULL)
		log_fatal("spam rules: out of memory for PCRE2");
	pcre2_set_match_limit(mc, SPAM_REGEX_MATCH_LIMIT);
	pcre2_set_depth_limit(mc, SPAM_REGEX_DEPTH_LIMIT);
	for (size_t i = 0; i < count; i++)
		if (jobs[i]->status == SPAM_HS_COMPILED)
			measure(jobs[i], &sample, &scratch, md, mc);
	hs_free_scratch(scratch);
	pcre2_match_data_free(md);
	pcre2_match_context_free(mc);
	buf_free(&sample);
}

/* What the cache keeps with an entry: the two times, or the size. */
static uint64_t job_info(const struct gate_job *j)
{
	if (j->status == SPAM_HS_TOO_LARGE)
		return j->size;
	return (uint64_t)j->pcre_ns << 32 | j->hs_ns;
}

/* ---- choosing -------------------------------------------------------------------------------- */

static bool gate_every_eligible;  /* tests: whatever the measurements say */

void spam_gates_test_all(bool all)
{
	gate_every_eligible = all;
}

/* Worth a gate: at least one and a half times as fast as the regex over
 * the sample. */
static bool pays(const struct gate_job *j)
{
	return j->db != NULL &&
	       (gate_every_eligible || (uint64_t)j->hs_ns * 3 <= (uint64_t)j->pcre_ns * 2);
}

/* The time saved per byte of database, most first; then rule order. */
static int by_value(const void *a, const void *b)
{
	const struct gate_job *x = *(struct gate_job *const *)a, *y = *(struct gate_job *const *)b;
	double vx = (double)(x->pcre_ns - x->hs_ns) / (double)(x->size + 1);
	double vy = (double)(y->pcre_ns - y->hs_ns) / (double)(y->size + 1);
	if (vx != vy)
		return vx > vy ? -1 : 1;
	return x->rule < y->rule ? -1 : x->rule > y->rule;
}

/* ---- the whole ----------------------------------------------------------------------------- */

void spam_gates_build(struct spam_rules *set, struct spam_hs_cache *cache)
{
	size_t n = 0;
	for (size_t i = 0; i < set->first_meta; i++)
		n += spam_gate_eligible(&set->rules[i]);
	if (n == 0)
		return;
	struct gate_job *jobs = xcalloc(n, sizeof(*jobs));
	struct gate_job **todo = xcalloc(n, sizeof(*todo));
	size_t k = 0, missing = 0;
	for (size_t i = 0; i < set->first_meta; i++) {
		struct spam_rule *r = &set->rules[i];
		if (!spam_gate_eligible(r))
			continue;
		struct gate_job *j = &jobs[k++];
		gate_job_init(j, r);
		uint64_t info = 0;
		j->status = spam_hs_cache_get(cache, SPAM_HS_KIND_GATE, j->key.data, j->key.len,
					      &j->db, &info);
		if (j->status == SPAM_HS_TOO_LARGE) {
			j->size = info;
			/* too large for a smaller bound than today's: again */
			if (j->size <= SPAM_GATE_DB_MAX)
				j->status = SPAM_HS_MISS;
		} else if (j->status == SPAM_HS_COMPILED) {
			size_t size = 0;
			hs_database_size(j->db, &size);
			j->size = size;
			j->hs_ns = (uint32_t)info;
			j->pcre_ns = (uint32_t)(info >> 32);
		}
		if (j->status == SPAM_HS_MISS && j->db != NULL) {
			hs_free_database(j->db);
			j->db = NULL;
		}
		j->compiled_now = j->status == SPAM_HS_MISS;
		if (j->compiled_now)
			todo[missing++] = j;
	}
	struct timespec t0;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	compile_all(todo, missing);
	measure_all(todo, missing);
	double took = seconds_since(&t0);
	/* the ones worth a gate, best value first, within the budget */
	struct gate_job **worth = xcalloc(n, sizeof(*worth));
	size_t nworth = 0, too_large = 0, rejected = 0, slow = 0;
	for (size_t i = 0; i < n; i++) {
		struct gate_job *j = &jobs[i];
		if (j->compiled_now)
			spam_hs_cache_put(cache, SPAM_HS_KIND_GATE, j->key.data, j->key.len, j->status,
					  j->db, job_info(j));
		if (j->status == SPAM_HS_REJECTED)
			rejected++;
		else if (j->status == SPAM_HS_TOO_LARGE)
			too_large++;
		else if (pays(j))
			worth[nworth++] = j;
		else
			slow++;
	}
	qsort(worth, nworth, sizeof(*worth), by_value);
	size_t gates = 0;
	uint64_t total = 0;
	for (size_t i = 0; i < nworth; i++) {
		struct gate_job *j = worth[i];
		if (total + j->size > SPAM_GATE_TOTAL_MAX) {
			too_large++;
			continue;
		}
		if (hs_alloc_scratch(j->db, &set->scratch) != HS_SUCCESS)
			log_fatal("spam rules: out of memory for a Hyperscan gate");
		j->rule->gate = j->db;
		j->db = NULL;
		total += j->size;
		gates++;
	}
	for (size_t i = 0; i < n; i++) {
		hs_free_database(jobs[i].db);
		buf_free(&jobs[i].key);
	}
	set->gate_count = gates;
	set->gate_bytes = total;
	if (missing > 0)
		log_info("spam: Hyperscan gates: %zu compiled and measured in %.1f s, %zu from the "
			 "cache", missing, took, n - missing);
	log_info("spam: %zu of %zu literal-free regexes gated by Hyperscan (%.1f MB); %zu gates "
		 "too large, %zu no faster than PCRE2, %zu regexes Hyperscan cannot take", gates, n,
		 (double)total / 1048576.0, too_large, slow, rejected);
	free(worth);
	free(todo);
	free(jobs);
}

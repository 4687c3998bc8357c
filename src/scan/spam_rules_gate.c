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
 * at most two thirds of the time PCRE2 takes over it (Hyperscan is
 * slower than PCRE2 on some patterns: a gate there would cost time); of
 * those, the ones that save the most time per byte of database first,
 * while all gates stay within SPAM_GATE_TOTAL_MAX. Each gate is its own
 * database, one pass per rule: a combined database of these patterns was
 * measured several times larger (22 MB for SpamAssassin's, half a minute
 * to compile) and no faster.
 *
 * The databases (the gates, and the views' literal databases the caller
 * hands over) that the compiled-database cache (spam_hs_cache.h) lacks
 * are compiled on a few threads, and the gates measured: in a child
 * process when there is much to compile, so that Hyperscan's compiler
 * never weighs on the scan master, whose databases the scanners share
 * after fork. The cache keeps them with their measurements, so that the
 * next load only reads them and decides alike.
 *
 * Input: the rules' patterns (rule files, an administrator's choice).
 * Privilege: the scan master (and its compiler child), `postern scan`,
 * check-config (as user).
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "../lib/log.h"
#include "../lib/safeio.h"
#include "../lib/xalloc.h"
#include "spam_hs_cache.h"
#include "spam_rules_impl.h"

#define GATE_THREADS_MAX 4
#define SAMPLE_BYTES 4096
#define TIMING_ROUNDS 5

bool spam_gate_eligible(const struct spam_rule *r)
{
	if (r->re == NULL || r->lits.count > 0 || r->pattern == NULL ||
	    strlen(r->pattern) > SPAM_GATE_PATTERN_MAX)
		return false;
	/* In extended mode PCRE2 (without UTF) skips NEL (0x85) as white
	 * space, Hyperscan reads it as a byte to match: no gate then */
	if (strchr(r->pattern, '\x85') != NULL &&
	    ((r->pcre_opts & PCRE2_EXTENDED) || spam_regex_inline_option(r->pattern, 'x')))
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
static void gate_job_init(struct spam_hs_job *j, struct spam_rule *r)
{
	memset(j, 0, sizeof(*j));
	j->kind = SPAM_HS_KIND_GATE;
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
	struct spam_hs_job **jobs;
	size_t count;
	size_t next;
	pthread_mutex_t lock;
};

static void compile_one(struct spam_hs_job *j)
{
	hs_compile_error_t *err = NULL;
	hs_database_t *db = NULL;
	hs_error_t rc = j->kind == SPAM_HS_KIND_GATE
				? hs_compile(j->expr, j->flags, HS_MODE_BLOCK, NULL, &db, &err)
				: hs_compile_lit_multi(j->exprs, j->lit_flags, j->ids, j->lens,
						       (unsigned)j->lit_count, HS_MODE_BLOCK, NULL, &db,
						       &err);
	if (rc != HS_SUCCESS) {
		hs_free_compile_error(err);
		j->status = SPAM_HS_REJECTED;
		return;
	}
	size_t size = 0;
	hs_database_size(db, &size);
	j->size = size;
	if (j->kind == SPAM_HS_KIND_GATE && size > SPAM_GATE_DB_MAX) {
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

static void compile_all(struct spam_hs_job **jobs, size_t count)
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
static void measure(struct spam_hs_job *j, const buf_t *sample, hs_scratch_t **scratch,
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

static void measure_all(struct spam_hs_job **jobs, size_t count)
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
		if (jobs[i]->kind == SPAM_HS_KIND_GATE && jobs[i]->status == SPAM_HS_COMPILED)
			measure(jobs[i], &sample, &scratch, md, mc);
	hs_free_scratch(scratch);
	pcre2_match_data_free(md);
	pcre2_match_context_free(mc);
	buf_free(&sample);
}

/* ---- in a process of its own ---------------------------------------------------------------- */

static bool compile_in_a_child;  /* tests: whatever there is to compile */

void spam_hs_test_child(bool always)
{
	compile_in_a_child = always;
}

static void put32(buf_t *b, uint32_t v)
{
	unsigned char p[4] = { (unsigned char)v, (unsigned char)(v >> 8), (unsigned char)(v >> 16),
			       (unsigned char)(v >> 24) };
	buf_append(b, p, sizeof(p));
}

static uint32_t get32(const unsigned char *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* The child's answer for each job, in order: status, the two times, the
 * size, the serialized database's length and bytes. */
static void write_results(int fd, struct spam_hs_job **jobs, size_t count)
{
	buf_t out = BUF_INIT;
	for (size_t i = 0; i < count; i++) {
		const struct spam_hs_job *j = jobs[i];
		char *bytes = NULL;
		size_t len = 0;
		if (j->db != NULL && hs_serialize_database(j->db, &bytes, &len) != HS_SUCCESS)
			len = 0;
		put32(&out, (uint32_t)j->status);
		put32(&out, j->hs_ns);
		put32(&out, j->pcre_ns);
		put32(&out, (uint32_t)(j->size > UINT32_MAX ? UINT32_MAX : j->size));
		put32(&out, (uint32_t)len);
		buf_append(&out, bytes, len);
		free(bytes);
	}
	(void)safeio_write_all(fd, out.data, out.len);
	buf_free(&out);
}

/* Read the child's answer into the jobs: true if it is whole and sound
 * (each database passed hs_deserialize_database's checks); false leaves
 * every job to be compiled again. */
static bool read_results(int fd, struct spam_hs_job **jobs, size_t count)
{
	buf_t in = BUF_INIT;
	char chunk[65536];
	for (;;) {
		ssize_t n = read(fd, chunk, sizeof(chunk));
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0 || in.len + (size_t)n > SPAM_HS_CACHE_FILE_MAX)
			break;
		buf_append(&in, chunk, (size_t)n);
	}
	const unsigned char *p = (const unsigned char *)in.data;
	size_t pos = 0;
	bool ok = true;
	for (size_t i = 0; i < count && ok; i++) {
		struct spam_hs_job *j = jobs[i];
		if (in.len - pos < 20) {
			ok = false;
			break;
		}
		uint32_t status = get32(p + pos), len = get32(p + pos + 16);
		j->hs_ns = get32(p + pos + 4);
		j->pcre_ns = get32(p + pos + 8);
		j->size = get32(p + pos + 12);
		pos += 20;
		if (status > SPAM_HS_TOO_LARGE || len > in.len - pos ||
		    (status == SPAM_HS_COMPILED) != (len > 0)) {
			ok = false;
			break;
		}
		j->status = (enum spam_hs_status)status;
		if (len > 0 && hs_deserialize_database((const char *)p + pos, len, &j->db) !=
				       HS_SUCCESS) {
			j->db = NULL;
			ok = false;
		}
		pos += len;
	}
	buf_free(&in);
	if (!ok) {
		for (size_t i = 0; i < count; i++) {
			hs_free_database(jobs[i]->db);
			jobs[i]->db = NULL;
			jobs[i]->status = SPAM_HS_MISS;
		}
	}
	return ok;
}

/* Compile (and measure) in a child: Hyperscan's compiler takes tens of
 * megabytes and touches megabytes of its own code, which would stay with
 * the scan master (and be counted in every scanner's share). */
static bool compile_in_child(struct spam_hs_job **jobs, size_t count)
{
	int fds[2];
	if (pipe2(fds, O_CLOEXEC) < 0)
		return false;
	pid_t pid = fork();
	if (pid < 0) {
		close(fds[0]);
		close(fds[1]);
		return false;
	}
	if (pid == 0) {
		/* nothing of the parent's but the pipe back (the scan master's
		 * sockets stay the master's alone), and gone with it */
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (fds[1] > 3)
			close_range(3, (unsigned)fds[1] - 1, 0);
		close_range((unsigned)fds[1] + 1, ~0U, 0);
		compile_all(jobs, count);
		measure_all(jobs, count);
		write_results(fds[1], jobs, count);
		_exit(0);
	}
	close(fds[1]);
	bool ok = read_results(fds[0], jobs, count);
	close(fds[0]);
	while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
		;
	return ok;
}

/* Compile the jobs and measure the gates: in a child when there is much
 * to compile (SPAM_COMPILE_CHILD_BYTES of keys), here otherwise or when
 * the child fails. */
static void compile_jobs(struct spam_hs_job **jobs, size_t count)
{
	size_t bytes = 0;
	for (size_t i = 0; i < count; i++)
		bytes += jobs[i]->key.len;
	if (count > 0 && (bytes >= SPAM_COMPILE_CHILD_BYTES || compile_in_a_child) &&
	    compile_in_child(jobs, count))
		return;
	compile_all(jobs, count);
	measure_all(jobs, count);
}

/* What the cache keeps with an entry: the two times, or the size. */
static uint64_t job_info(const struct spam_hs_job *j)
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
static bool pays(const struct spam_hs_job *j)
{
	return j->status == SPAM_HS_COMPILED &&
	       (gate_every_eligible || (uint64_t)j->hs_ns * 3 <= (uint64_t)j->pcre_ns * 2);
}

/* The time saved per byte of database, most first; then rule order. */
static int by_value(const void *a, const void *b)
{
	const struct spam_hs_job *x = *(struct spam_hs_job *const *)a, *y = *(struct spam_hs_job *const *)b;
	double vx = (double)(x->pcre_ns - x->hs_ns) / (double)(x->size + 1);
	double vy = (double)(y->pcre_ns - y->hs_ns) / (double)(y->size + 1);
	if (vx != vy)
		return vx > vy ? -1 : 1;
	return x->rule < y->rule ? -1 : x->rule > y->rule;
}

/* ---- the whole ----------------------------------------------------------------------------- */

void spam_gates_build(struct spam_rules *set, struct spam_hs_cache *cache,
		      struct spam_hs_job **more, size_t more_count)
{
	size_t n = 0;
	for (size_t i = 0; i < set->first_meta; i++)
		n += spam_gate_eligible(&set->rules[i]);
	struct spam_hs_job *jobs = xcalloc(n + 1, sizeof(*jobs));
	struct spam_hs_job **to_compile = xcalloc(n + more_count + 1, sizeof(*to_compile));
	size_t k = 0, missing = 0;
	for (size_t i = 0; i < more_count; i++)
		to_compile[missing++] = more[i];
	for (size_t i = 0; i < set->first_meta; i++) {
		struct spam_rule *r = &set->rules[i];
		if (!spam_gate_eligible(r))
			continue;
		struct spam_hs_job *j = &jobs[k++];
		gate_job_init(j, r);
		uint64_t info = 0;
		size_t size = 0;
		/* the database itself only if it is chosen (below) */
		j->status = spam_hs_cache_peek(cache, SPAM_HS_KIND_GATE, j->key.data, j->key.len,
					       &info, &size);
		if (j->status == SPAM_HS_TOO_LARGE) {
			j->size = info;
			/* too large for a smaller bound than today's: again */
			if (j->size <= SPAM_GATE_DB_MAX)
				j->status = SPAM_HS_MISS;
		} else if (j->status == SPAM_HS_COMPILED) {
			j->size = size;
			j->hs_ns = (uint32_t)info;
			j->pcre_ns = (uint32_t)(info >> 32);
		}
		j->compiled_now = j->status == SPAM_HS_MISS;
		if (j->compiled_now)
			to_compile[missing++] = j;
	}
	struct timespec t0;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	compile_jobs(to_compile, missing);
	double took = seconds_since(&t0);
	if (n == 0) {
		free(to_compile);
		free(jobs);
		return;
	}
	/* the ones worth a gate, best value first, within the budget */
	struct spam_hs_job **worth = xcalloc(n, sizeof(*worth));
	size_t nworth = 0, too_large = 0, rejected = 0, slow = 0;
	for (size_t i = 0; i < n; i++) {
		struct spam_hs_job *j = &jobs[i];
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
		struct spam_hs_job *j = worth[i];
		if (total + j->size > SPAM_GATE_TOTAL_MAX) {
			too_large++;
			continue;
		}
		uint64_t info;
		if (j->db == NULL &&
		    spam_hs_cache_get(cache, SPAM_HS_KIND_GATE, j->key.data, j->key.len, &j->db,
				      &info) != SPAM_HS_COMPILED) {
			/* the cache's copy fails Hyperscan's check: compiled
			 * again, here, and the entry replaced */
			struct spam_hs_job *one[] = { j };
			compile_all(one, 1);
			measure_all(one, 1);
			spam_hs_cache_put(cache, SPAM_HS_KIND_GATE, j->key.data, j->key.len, j->status,
					  j->db, job_info(j));
			if (j->db == NULL)
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
		log_info("spam: %zu Hyperscan databases compiled in %.1f s (%zu gates from the "
			 "cache)", missing, took, n - (missing - more_count));
	log_info("spam: %zu of %zu literal-free regexes gated by Hyperscan (%.1f MB); %zu gates "
		 "too large, %zu no faster than PCRE2, %zu regexes Hyperscan cannot take", gates, n,
		 (double)total / 1048576.0, too_large, slow, rejected);
	free(worth);
	free(to_compile);
	free(jobs);
}

/*
 * spam_rules.c - running SpamAssassin-syntax rules over one message.
 *
 * The cost does not grow with rules x message size: per text view
 * (header fields, parts' fields, body, rawbody, URIs, the full message)
 * one Hyperscan pass looks for the literals every regex needs
 * (spam_rules_regex.c), and only the regexes whose literals are there,
 * and the few that have none, run (PCRE2, JIT). In the body that pass
 * reports every occurrence with its line, and a body regex runs only on
 * the lines that hold one of its literals (line narrowing: its matches
 * never cross a line). A regex without literals may have a Hyperscan
 * gate (spam_rules_gate.c): one pass over its text first says whether
 * it can match at all. Then the eval: tests, then the metas in
 * dependency order. spam_rules_set_plain turns all of that off (every
 * regex over its whole text): the reference the tests hold it to.
 *
 * How each kind matches (as SpamAssassin does): header rules on a field's
 * instances joined by newlines (if-unset text, or "", when absent); body
 * rules on each line of the rendered body (a paragraph a line; a match
 * may not cross lines), the Subject first unless tflags nosubject; rawbody
 * rules on the decoded text as a whole; uri rules on each URI; full rules
 * on the message as received. tflags multiple counts the matches (at most
 * maxhits) and the score counts for each.
 *
 * Bounds: PCRE2's match, depth and heap limits on every match (a match
 * that reaches them counts as no match), and ctx->budget_us, checked
 * between rules and every few matches: when it runs out, the rules not
 * run count 0, a meta reading one of them does not run, and the result
 * says timed_out.
 *
 * Untrusted input: the message's views (struct spam_text). Runs in the
 * scanners, one message at a time per process (the rules hold one
 * scratch area for Vectorscan and one for PCRE2).
 */
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "../lib/xalloc.h"
#include "spam_rules_impl.h"

/* ---- the rules object ----------------------------------------------------------- */

size_t spam_rules_count(const struct spam_rules *rules)
{
	return rules != NULL ? rules->count : 0;
}

void spam_rules_free(struct spam_rules **rulesp)
{
	struct spam_rules *set = *rulesp;
	if (set == NULL)
		return;
	for (size_t i = 0; i < set->count; i++)
		spam_rule_free(&set->rules[i]);
	free(set->rules);
	for (size_t i = 0; i < set->target_count; i++)
		free(set->targets[i].name);
	free(set->targets);
	for (size_t i = 0; i < set->file_count; i++)
		spam_file_free(set->files[i]);
	free(set->files);
	for (size_t v = 0; v < SPAM_VIEW_COUNT; v++) {
		struct spam_prefilter *pf = &set->views[v];
		hs_free_database(pf->db);
		free(pf->lit_rule);
		free(pf->always);
		free(pf->all);
	}
	hs_free_scratch(set->scratch);
	free(set->jit_pending);
	pcre2_match_data_free(set->mdata);
	pcre2_match_context_free(set->mctx);
	pcre2_jit_stack_free(set->jit_stack);
	hashmap_free(&set->by_name, NULL);
	free(set);
	*rulesp = NULL;
}

bool spam_rules_stale(const struct spam_rules *rules)
{
	for (size_t i = 0; i < rules->file_count; i++) {
		const struct spam_file *f = rules->files[i];
		struct stat sb;
		if (stat(f->path, &sb) < 0 || sb.st_dev != f->dev || sb.st_ino != f->ino ||
		    sb.st_size != f->size || sb.st_mtim.tv_sec != f->mtime.tv_sec ||
		    sb.st_mtim.tv_nsec != f->mtime.tv_nsec)
			return true;
	}
	return false;
}

/* ---- results ------------------------------------------------------------------------ */

void spam_result_init(struct spam_result *r)
{
	memset(r, 0, sizeof(*r));
	r->autolearn_allowed = true;
}

void spam_result_free(struct spam_result *r)
{
	xfree(&r->hits);
	spam_result_init(r);
}

/* ---- time ------------------------------------------------------------------------------ */

/* The budget is whole seconds (spam_time_budget): the coarse clock
 * (a few milliseconds' resolution, read without a system call) is
 * enough, and it is read before every rule. */
static uint64_t now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* Has the budget run out? Reads the clock every `every` calls. */
static bool out_of_time(struct spam_run *run, unsigned every)
{
	if (run->timed_out)
		return true;
	if (run->deadline_us == 0)
		return false;
	if (++run->calls < every)
		return false;
	run->calls = 0;
	if (now_us() >= run->deadline_us)
		run->timed_out = true;
	return run->timed_out;
}

/* ---- matching --------------------------------------------------------------------------- */

/* One match of re in s[0..len) from pos: through PCRE2's JIT entry point
 * (which skips the checks of pcre2_match: the arguments are ours) when
 * the regex was JIT-compiled, else the interpreter. */
static int match_at(const pcre2_code *re, const char *s, size_t len, size_t pos,
		    pcre2_match_data *md, pcre2_match_context *mc)
{
	int rc = pcre2_jit_match(re, (PCRE2_SPTR)s, len, pos, 0, md, mc);
	if (rc == PCRE2_ERROR_JIT_BADOPTION)
		rc = pcre2_match(re, (PCRE2_SPTR)s, len, pos, 0, md, mc);
	return rc;
}

/*
 * Count the matches of re in s[from..len), at most limit. With lines, a
 * match may not contain a newline (body rules match line by line): a
 * match that crosses one is looked for again within its first line.
 */
static unsigned count_matches(struct spam_run *run, const pcre2_code *re, const char *s,
			      size_t len, size_t from, unsigned limit, bool lines)
{
	pcre2_match_data *md = run->rules->mdata;
	unsigned n = 0;
	size_t pos = from;
	size_t end = len;  /* the subject's length for this search */
	while (n < limit && pos <= len) {
		if (out_of_time(run, 64))
			break;
		int rc = match_at(re, s, end, pos, md, run->rules->mctx);
		if (rc < 0) {
			if (end == len)
				break;  /* no match, or a limit reached */
			/* nothing within the line: go on after it */
			pos = end + 1;
			end = len;
			continue;
		}
		PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
		size_t ms = ov[0], me = ov[1];
		if (ms > me || me > end)
			break;  /* \K games: stop rather than loop */
		if (lines && end == len && memchr(s + ms, '\n', me - ms) != NULL) {
			const char *nl = memchr(s + ms, '\n', len - ms);
			end = nl ? (size_t)(nl - s) : len;
			pos = ms;
			continue;
		}
		n++;
		pos = me > ms ? me : me + 1;
		if (lines && end != len && pos > end) {
			pos = end + 1;
			end = len;
		}
	}
	return n;
}

/* A body line: [start, end), end at its newline (or the body's end). */
static void line_bounds(const struct spam_run *run, size_t line, size_t len, size_t *start_r,
			size_t *end_r)
{
	*start_r = run->line_start[line];
	*end_r = line + 1 < run->line_count ? run->line_start[line + 1] - 1 : len;
}

static int by_line(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
	return x < y ? -1 : x > y;
}

/*
 * count_matches for a body rule narrowed to the lines that hold its
 * literals (every match holds one, and no match crosses a line, so the
 * other lines have none): each of those lines searched as the subject cut
 * at its end, as count_matches searches a line after a match that
 * crossed one. The same matches, in the same order.
 */
static unsigned count_matches_in_lines(struct spam_run *run, size_t index, const pcre2_code *re,
				       const char *s, size_t len, size_t from, unsigned limit)
{
	/* the rule's lines, ascending and each once */
	size_t count = 0;
	for (uint32_t e = run->first_line[index]; e != 0; e = run->lines[e - 1].next)
		count++;
	uint32_t small[64];
	uint32_t *lines = count <= 64 ? small : xcalloc(count, sizeof(uint32_t));
	size_t k = 0;
	bool sorted = true;
	for (uint32_t e = run->first_line[index]; e != 0; e = run->lines[e - 1].next) {
		lines[k] = run->lines[e - 1].line;
		sorted = sorted && (k == 0 || lines[k] > lines[k - 1]);
		k++;
	}
	if (!sorted)
		qsort(lines, count, sizeof(uint32_t), by_line);
	pcre2_match_data *md = run->rules->mdata;
	unsigned n = 0;
	for (size_t i = 0; i < count && n < limit; i++) {
		if (i > 0 && lines[i] == lines[i - 1])
			continue;
		size_t start, end;
		line_bounds(run, lines[i], len, &start, &end);
		size_t pos = start > from ? start : from;
		while (n < limit && pos <= end) {
			if (out_of_time(run, 64))
				goto done;
			int rc = match_at(re, s, end, pos, md, run->rules->mctx);
			if (rc < 0)
				break;
			PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
			size_t ms = ov[0], me = ov[1];
			if (ms > me || me > end)
				goto done;  /* as count_matches: stop rather than loop */
			n++;
			pos = me > ms ? me : me + 1;
		}
	}
done:
	if (lines != small)
		free(lines);
	return n;
}

/* Does the rule's Hyperscan gate let it through (can its regex match
 * text at all)? Yes when Hyperscan cannot tell. */
static int on_gate_match(unsigned int id, unsigned long long from, unsigned long long to,
			 unsigned int flags, void *ctx)
{
	(void)id;
	(void)from;
	(void)to;
	(void)flags;
	*(bool *)ctx = true;
	return 1;  /* one is enough */
}

static bool gate_passes(struct spam_run *run, const struct spam_rule *r, slice_t text)
{
	if (r->gate == NULL || run->rules->plain || text.len > UINT_MAX)
		return true;
	bool hit = false;
	hs_error_t rc = hs_scan(r->gate, text.ptr, (unsigned)text.len, 0, run->rules->scratch,
				on_gate_match, &hit);
	return hit || (rc != HS_SUCCESS && rc != HS_SCAN_TERMINATED);
}

static bool is_multiple(const struct spam_rule *r)
{
	return (r->tflags & SPAM_TF_MULTIPLE) != 0;
}

static unsigned limit_of(const struct spam_rule *r)
{
	if (!is_multiple(r))
		return 1;
	return r->maxhits > 0 ? r->maxhits : UINT_MAX;
}

static bool has_subject_line(const struct spam_text *t)
{
	return spam_header_first(t, "Subject", false) != NULL;
}

static double run_regex(struct spam_run *run, const struct spam_rule *r, size_t index)
{
	const struct spam_text *t = run->t;
	if (run->rules->jit_pending != NULL && run->rules->jit_pending[index]) {
		/* lazy JIT: now that it runs (the interpreter serves if JIT cannot) */
		(void)pcre2_jit_compile(r->re, PCRE2_JIT_COMPLETE);
		run->rules->jit_pending[index] = 0;
	}
	bool candidate = run->candidate[index] != 0;
	unsigned limit = limit_of(r);
	switch (r->kind) {
	case SPAM_RK_HEADER:
	case SPAM_RK_MIMEHEADER: {
		const struct spam_hdr_text *h = spam_run_header(run, r->target);
		const char *s = h->present ? buf_cstr(&h->text) : (r->if_unset ? r->if_unset : "");
		size_t len = h->present ? h->text.len : strlen(s);
		unsigned n = candidate ? count_matches(run, r->re, s, len, 0, limit, false) : 0;
		if (r->negate)
			return n == 0 && !run->timed_out ? 1 : 0;
		return n;
	}
	case SPAM_RK_BODY: {
		slice_t body = slice_make(buf_cstr(&t->body), t->body.len);
		if (!candidate || !gate_passes(run, r, body))
			return 0;
		size_t from = 0;
		if ((r->tflags & SPAM_TF_NOSUBJECT) && has_subject_line(t)) {
			const char *nl = memchr(body.ptr, '\n', body.len);
			from = nl ? (size_t)(nl - body.ptr) + 1 : body.len;
		}
		if (r->narrow && !run->narrow_off)
			return count_matches_in_lines(run, index, r->re, body.ptr, body.len, from,
						      limit);
		return count_matches(run, r->re, body.ptr, body.len, from, limit, true);
	}
	case SPAM_RK_RAWBODY: {
		slice_t raw = slice_make(buf_cstr(&t->rawbody), t->rawbody.len);
		if (!candidate || !gate_passes(run, r, raw))
			return 0;
		return count_matches(run, r->re, raw.ptr, raw.len, 0, limit, false);
	}
	case SPAM_RK_FULL: {
		if (!candidate || t->msg == NULL || t->msg->data == NULL)
			return 0;
		slice_t full = slice_make((const char *)t->msg->data, t->msg->len);
		if (!gate_passes(run, r, full))
			return 0;
		return count_matches(run, r->re, full.ptr, full.len, 0, limit, false);
	}
	case SPAM_RK_URI: {
		if (!candidate)
			return 0;
		unsigned n = 0;
		for (size_t i = 0; i < t->uri_count && n < limit && !run->timed_out; i++) {
			const char *u = t->uris[i].uri;
			if (u != NULL)
				n += count_matches(run, r->re, u, strlen(u), 0, limit - n, false);
		}
		return n;
	}
	default:
		return 0;
	}
}

static double run_rule(struct spam_run *run, const struct spam_rule *r, size_t index)
{
	switch (r->kind) {
	case SPAM_RK_EXISTS:
		return spam_run_header(run, r->target)->present ? 1 : 0;
	case SPAM_RK_EVAL: {
		double v = r->eval->fn(run, &r->args);
		return isfinite(v) && v > 0 ? v : 0;
	}
	case SPAM_RK_META:
		return 0;  /* see run_metas */
	default:
		return run_regex(run, r, index);
	}
}

/* ---- the prefilter ------------------------------------------------------------------------ */

struct prefilter_cb {
	struct spam_run *run;
	const struct spam_prefilter *pf;
};

/* Where each line of the body starts. */
static void find_lines(struct spam_run *run)
{
	const buf_t *b = &run->t->body;
	const char *s = buf_cstr(b);
	size_t n = 1;
	for (const char *p = s; (p = memchr(p, '\n', b->len - (size_t)(p - s))) != NULL; p++)
		if ((size_t)(p - s) + 1 < b->len)
			n++;
	run->line_start = xcalloc(n, sizeof(size_t));
	run->line_count = 0;
	run->line_start[run->line_count++] = 0;
	for (const char *p = s; (p = memchr(p, '\n', b->len - (size_t)(p - s))) != NULL; p++)
		if ((size_t)(p - s) + 1 < b->len)
			run->line_start[run->line_count++] = (size_t)(p - s) + 1;
}

/* The line that holds byte pos of the body (matches come in order of
 * their end: from the last one found, forward). */
static uint32_t line_of(struct spam_run *run, size_t pos)
{
	size_t l = run->line_cursor;
	if (l >= run->line_count || run->line_start[l] > pos) {
		size_t lo = 0, hi = run->line_count;  /* the last start <= pos */
		while (hi - lo > 1) {
			size_t mid = lo + (hi - lo) / 2;
			if (run->line_start[mid] <= pos)
				lo = mid;
			else
				hi = mid;
		}
		l = lo;
	}
	while (l + 1 < run->line_count && run->line_start[l + 1] <= pos)
		l++;
	run->line_cursor = l;
	return (uint32_t)l;
}

/* Rule r's literal ends at byte `to` of the body: remember its line. */
static void add_line(struct spam_run *run, uint32_t r, unsigned long long to)
{
	uint32_t line = line_of(run, to > 0 ? (size_t)to - 1 : 0);
	uint32_t last = run->last_line[r];
	if (last != 0 && run->lines[last - 1].line == line)
		return;
	if (run->lines_used == SPAM_NARROW_MAX) {
		run->narrow_off = true;
		return;
	}
	if (run->lines_used == run->lines_cap) {
		run->lines_cap = run->lines_cap ? run->lines_cap * 2 : 256;
		run->lines = xreallocarray(run->lines, run->lines_cap, sizeof(*run->lines));
	}
	run->lines[run->lines_used] = (struct spam_line_ref){ line, 0 };
	uint32_t e = (uint32_t)++run->lines_used;
	if (last != 0)
		run->lines[last - 1].next = e;
	else
		run->first_line[r] = e;
	run->last_line[r] = e;
}

static int on_literal(unsigned int id, unsigned long long from, unsigned long long to,
		      unsigned int flags, void *vctx)
{
	(void)from;
	(void)flags;
	struct prefilter_cb *cb = vctx;
	if (id >= cb->pf->lit_count)
		return 0;
	uint32_t r = cb->pf->lit_rule[id];
	struct spam_run *run = cb->run;
	run->candidate[r] = 1;
	if (cb->pf->every_match && run->rules->rules[r].narrow && !run->narrow_off)
		add_line(run, r, to);
	return 0;
}

/* The text of view v (built into run->view_text for the composite ones,
 * once). */
static slice_t view_text(struct spam_run *run, enum spam_view v)
{
	const struct spam_text *t = run->t;
	buf_t *b = &run->view_text[v];
	if (run->view_built[v])
		return slice_make(buf_cstr(b), b->len);
	run->view_built[v] = true;
	switch (v) {
	case SPAM_VIEW_HEADER:
	case SPAM_VIEW_MIMEHEADER:
		spam_header_view(t, run->ctx->env != NULL ? run->ctx->env
				 : (t->msg != NULL ? t->msg->env : NULL), v == SPAM_VIEW_MIMEHEADER, b);
		return slice_make(buf_cstr(b), b->len);
	case SPAM_VIEW_URI:
		for (size_t i = 0; i < t->uri_count; i++) {
			if (t->uris[i].uri != NULL) {
				buf_puts(b, t->uris[i].uri);
				buf_putc(b, '\n');
			}
		}
		return slice_make(buf_cstr(b), b->len);
	case SPAM_VIEW_BODY:
		return slice_make(buf_cstr(&t->body), t->body.len);
	case SPAM_VIEW_RAWBODY:
		return slice_make(buf_cstr(&t->rawbody), t->rawbody.len);
	case SPAM_VIEW_FULL:
		if (t->msg == NULL || t->msg->data == NULL)
			return slice_make("", 0);
		return slice_make((const char *)t->msg->data, t->msg->len);
	default:
		return slice_make("", 0);
	}
}

static void prefilter(struct spam_run *run)
{
	const struct spam_rules *set = run->rules;
	run->narrow_off = set->plain;
	for (enum spam_view v = 0; v < SPAM_VIEW_COUNT; v++) {
		const struct spam_prefilter *pf = &set->views[v];
		if (pf->all_count == 0)
			continue;
		for (size_t i = 0; i < pf->always_count; i++)
			run->candidate[pf->always[i]] = 1;
		if (pf->db == NULL)
			continue;
		if (set->plain) {
			for (size_t i = 0; i < pf->all_count; i++)
				run->candidate[pf->all[i]] = 1;
			continue;
		}
		slice_t text = view_text(run, v);
		if (pf->every_match && run->first_line == NULL) {
			find_lines(run);
			run->first_line = xcalloc(set->count + 1, sizeof(uint32_t));
			run->last_line = xcalloc(set->count + 1, sizeof(uint32_t));
		}
		struct prefilter_cb cb = { run, pf };
		if (text.len > UINT_MAX ||
		    hs_scan(pf->db, text.ptr, (unsigned)text.len, 0, set->scratch, on_literal, &cb) !=
			    HS_SUCCESS) {
			/* cannot tell: every rule of the view runs, on all its text */
			for (size_t i = 0; i < pf->all_count; i++)
				run->candidate[pf->all[i]] = 1;
			if (pf->every_match)
				run->narrow_off = true;
		}
	}
}

void spam_rules_set_plain(struct spam_rules *rules, bool plain)
{
	rules->plain = plain;
}

/* ---- metas and the score ------------------------------------------------------------------ */

static void run_metas(struct spam_run *run)
{
	const struct spam_rules *set = run->rules;
	for (size_t i = set->first_meta; i < set->count; i++) {
		const struct spam_rule *r = &set->rules[i];
		bool ready = true;
		for (size_t d = 0; d < r->dep_count && ready; d++)
			ready = run->state[r->deps[d]] == SPAM_RUN_DONE;
		if (!ready) {
			run->state[i] = SPAM_RUN_SKIPPED;
			continue;
		}
		if (r->score[run->ctx->set] != 0)
			run->value[i] = spam_expr_eval(&r->expr, run->value);
		run->state[i] = SPAM_RUN_DONE;
	}
}

static int hit_by_name(const void *a, const void *b)
{
	return strcmp(((const struct spam_hit *)a)->name, ((const struct spam_hit *)b)->name);
}

static void add_up(struct spam_run *run, struct spam_result *res)
{
	const struct spam_rules *set = run->rules;
	enum spam_score_set s = run->ctx->set;
	for (size_t i = 0; i < set->count; i++) {
		const struct spam_rule *r = &set->rules[i];
		if (run->state[i] != SPAM_RUN_DONE || run->value[i] <= 0)
			continue;
		if (strncmp(r->name, "__", 2) == 0)
			continue;  /* sub-rules of metas: not scored, not listed */
		double times = (is_multiple(r) && r->kind != SPAM_RK_META && r->kind != SPAM_RK_EVAL)
				       ? run->value[i] : 1;
		double points = r->score[s] * times;
		res->hits = xreallocarray(res->hits, res->hit_count + 1, sizeof(*res->hits));
		res->hits[res->hit_count++] = (struct spam_hit){ r->name, points, r->describe };
		res->score += points;
		if (!(r->tflags & (SPAM_TF_LEARN | SPAM_TF_NOAUTOLEARN)))
			res->learn_score += points;
		if (r->tflags & SPAM_TF_NOAUTOLEARN)
			res->autolearn_allowed = false;
	}
	if (res->hit_count > 1)
		qsort(res->hits, res->hit_count, sizeof(*res->hits), hit_by_name);
}

/* ---- the entry point ------------------------------------------------------------------------ */

void spam_rules_run(const struct spam_rules *rules, const struct spam_text *t,
		    const struct spam_rules_context *ctx, struct spam_result *res)
{
	struct spam_run run = { .rules = rules, .t = t, .ctx = ctx };
	size_t n = rules->count;
	run.value = xcalloc(n + 1, sizeof(double));
	run.state = xcalloc(n + 1, 1);
	run.candidate = xcalloc(n + 1, 1);
	run.hdr = xcalloc(rules->target_count + 1, sizeof(*run.hdr));
	run.start_us = now_us();
	run.deadline_us = ctx->budget_us > 0 ? run.start_us + ctx->budget_us : 0;
	run.calls = 0;

	prefilter(&run);
	for (size_t i = 0; i < rules->first_meta; i++) {
		const struct spam_rule *r = &rules->rules[i];
		if (out_of_time(&run, 1)) {
			run.state[i] = SPAM_RUN_SKIPPED;
			continue;
		}
		bool zero = r->score[ctx->set] == 0 ||
			    ((r->tflags & SPAM_TF_LEARN) && !(ctx->set & SPAM_SET_BAYES));
		run.value[i] = zero ? 0 : run_rule(&run, r, i);
		/* a match cut short by the budget does not count as an answer */
		run.state[i] = run.timed_out && !zero ? SPAM_RUN_SKIPPED : SPAM_RUN_DONE;
		if (run.state[i] == SPAM_RUN_SKIPPED)
			run.value[i] = 0;
	}
	run_metas(&run);
	add_up(&run, res);
	res->timed_out = run.timed_out;

	for (size_t i = 0; i < rules->target_count; i++)
		buf_free(&run.hdr[i].text);
	for (size_t v = 0; v < SPAM_VIEW_COUNT; v++)
		buf_free(&run.view_text[v]);
	free(run.line_start);
	free(run.lines);
	free(run.first_line);
	free(run.last_line);
	free(run.hdr);
	free(run.value);
	free(run.state);
	free(run.candidate);
}

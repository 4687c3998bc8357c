/*
 * spam_rules_build.c - from what spam_rules_parse.c read to the rules a
 * scanner runs: the settings by name joined to their rules (default
 * scores as SpamAssassin gives them: 1, 0.01 for T_ rules, negative for
 * tflags nice), the rules that cannot score dropped (score 0 in the score
 * sets postern uses, network tests), ReplaceTags' <TAG>s expanded, every
 * regex compiled once (PCRE2, JIT), meta expressions compiled and put in
 * dependency order (a cycle is an error), header targets shared, and per
 * text view a Hyperscan literal database of the literals one of which
 * each regex needs (the prefilter: a regex whose literals are absent is
 * never run; in the body every occurrence is reported, for line
 * narrowing), taken from the compiled-database cache or compiled with the
 * gates (spam_rules_gate.c). Then one summary line per lenient file that
 * lost rules.
 *
 * Input: the parse (rule files, untrusted in their content but an
 * administrator's choice). Runs in the scan master at load.
 */
#include <fnmatch.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../lib/log.h"
#include "../lib/xalloc.h"
#include "spam_hs_cache.h"
#include "spam_rules_impl.h"

#define ERR_MAX 512
#define NO_INDEX UINT32_MAX

/* ---- settings ----------------------------------------------------------------- */

static void apply_settings(struct spam_parse *ps, struct spam_rule *r)
{
	const struct spam_settings *s = hashmap_get(&ps->settings, r->name, NULL);
	if (s != NULL) {
		if (s->describe != NULL)
			r->describe = xstrdup(s->describe);
		if (s->has_tflags) {
			r->tflags = s->tflags;
			r->maxhits = s->maxhits;
		}
		if (s->has_priority)
			r->priority = s->priority;
		r->replace_tags = s->replace_tags;
	}
	if (s != NULL && s->has_score) {
		memcpy(r->score, s->score, sizeof(r->score));
	} else {
		double v = strncmp(r->name, "T_", 2) == 0 ? 0.01 : 1.0;
		if (r->tflags & SPAM_TF_NICE)
			v = -v;
		for (size_t i = 0; i < 4; i++)
			r->score[i] = v;
	}
}

/* Can the rule count in a score set postern uses (0 and 2)? */
static bool can_score(const struct spam_rule *r)
{
	if (r->tflags & SPAM_TF_NET)
		return false;  /* postern runs no network tests */
	return r->score[SPAM_SET_LOCAL] != 0 || r->score[SPAM_SET_BAYES] != 0;
}

/* ---- ReplaceTags -------------------------------------------------------------- */

static bool tag_char(char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
	       c == '_' || c == ' ';
}

/* Expand <TAG>s in r->pattern: each known tag becomes (?:value) with the
 * rule's <pre X> before it and <post X> after it, and two adjacent tags
 * get the rule's <inter X> between them. */
static void replace_tags(struct spam_parse *ps, struct spam_rule *r)
{
	const char *start = ps->replace_start ? ps->replace_start : "<";
	const char *end = ps->replace_end ? ps->replace_end : ">";
	size_t sl = strlen(start), el = strlen(end);
	const char *pre = "", *inter = "", *post = "";
	/* the directives first: they hold for the whole rule */
	for (const char *p = strstr(r->pattern, start); p != NULL; p = strstr(p + sl, start)) {
		const char *n = p + sl;
		const char *e = n;
		while (tag_char(*e))
			e++;
		if (strncmp(e, end, el) != 0)
			continue;
		size_t len = (size_t)(e - n);
		char word[80];
		if (len >= sizeof(word))
			continue;
		memcpy(word, n, len);
		word[len] = '\0';
		const char *v;
		if (strncmp(word, "pre ", 4) == 0 && (v = hashmap_get(&ps->replace_pre, word + 4, NULL)))
			pre = v;
		else if (strncmp(word, "inter ", 6) == 0 &&
			 (v = hashmap_get(&ps->replace_inter, word + 6, NULL)))
			inter = v;
		else if (strncmp(word, "post ", 5) == 0 &&
			 (v = hashmap_get(&ps->replace_post, word + 5, NULL)))
			post = v;
	}
	buf_t out = BUF_INIT;
	bool last_was_tag = false;
	const char *p = r->pattern;
	while (*p != '\0') {
		if (strncmp(p, start, sl) == 0) {
			const char *n = p + sl;
			const char *e = n;
			while (tag_char(*e))
				e++;
			size_t len = (size_t)(e - n);
			if (len > 0 && len < 80 && strncmp(e, end, el) == 0) {
				char word[80];
				memcpy(word, n, len);
				word[len] = '\0';
				const char *v = hashmap_get(&ps->replace_tag, word, NULL);
				if (strncmp(word, "pre ", 4) == 0 || strncmp(word, "inter ", 6) == 0 ||
				    strncmp(word, "post ", 5) == 0) {
					p = e + el;  /* a directive: gone from the regex */
					continue;
				}
				if (v != NULL) {
					if (last_was_tag)
						buf_puts(&out, inter);
					buf_printf(&out, "%s(?:%s)%s", pre, v, post);
					last_was_tag = true;
					p = e + el;
					continue;
				}
			}
		}
		last_was_tag = false;
		if (*p == '\\' && p[1] != '\0')
			buf_putc(&out, *p++);
		buf_putc(&out, *p++);
	}
	free(r->pattern);
	r->pattern = buf_steal(&out);
}

/* ---- regexes ------------------------------------------------------------------- */

static enum spam_view view_of(enum spam_rule_kind k)
{
	switch (k) {
	case SPAM_RK_HEADER: return SPAM_VIEW_HEADER;
	case SPAM_RK_MIMEHEADER: return SPAM_VIEW_MIMEHEADER;
	case SPAM_RK_BODY: return SPAM_VIEW_BODY;
	case SPAM_RK_RAWBODY: return SPAM_VIEW_RAWBODY;
	case SPAM_RK_URI: return SPAM_VIEW_URI;
	case SPAM_RK_FULL: return SPAM_VIEW_FULL;
	default: return SPAM_VIEW_NONE;
	}
}

static bool compile_rule(struct spam_parse *ps, struct spam_rule *r)
{
	if (r->pattern == NULL)
		return true;
	if (r->replace_tags)
		replace_tags(ps, r);
	uint32_t opts = r->pcre_opts;
	/* body rules see one paragraph a line: ^ and $ at every line */
	if (r->kind == SPAM_RK_BODY)
		opts |= PCRE2_MULTILINE;
	char err[ERR_MAX];
	r->re = spam_regex_compile(r->pattern, opts, !ps->lazy_jit, err, sizeof(err));
	if (r->re == NULL) {
		spam_parse_problem(ps, r->file, r->line, SPAM_SKIP_REGEX, NULL, "%s: %s", r->name, err);
		return false;
	}
	r->view = view_of(r->kind);
	spam_regex_literals(r->pattern, opts, &r->lits);
	/* The header view holds each text a header rule sees, but not the
	 * joins between fields, nor the if-unset text. */
	bool header = r->kind == SPAM_RK_HEADER || r->kind == SPAM_RK_MIMEHEADER;
	bool drop = header && r->if_unset != NULL;
	for (size_t i = 0; i < r->lits.count && header && !drop; i++)
		drop = memchr(r->lits.items[i].text, '\n', r->lits.items[i].len) != NULL ||
		       memchr(r->lits.items[i].text, '\r', r->lits.items[i].len) != NULL;
	if (drop)
		spam_litset_free(&r->lits);
	return true;
}

/* ---- metas ----------------------------------------------------------------------- */

/* rules_matching() compares its glob with every rule name: bounded over
 * the whole load, so that a file of many calls cannot stall it. */
#define RULES_MATCHING_WORK_MAX 20000000u

struct meta_ctx {
	struct spam_parse *ps;
	const uint32_t *cand;   /* candidate rules (indices into ps->rules) */
	size_t cand_count;
	hashmap_t *cand_by_name;  /* name -> candidate index + 1 */
	size_t glob_work;         /* names compared by rules_matching() so far */
};

static int meta_name(void *vctx, const char *name, size_t len, struct spam_expr *out,
		     char *err, size_t errlen)
{
	struct meta_ctx *m = vctx;
	char tmp[SPAM_RULE_NAME_MAX + 1];
	if (len > SPAM_RULE_NAME_MAX) {
		snprintf(err, errlen, "rule name longer than %d", SPAM_RULE_NAME_MAX);
		return -1;
	}
	memcpy(tmp, name, len);
	tmp[len] = '\0';
	for (size_t i = 0; i < len; i++) {
		if (tmp[i] == ':') {
			snprintf(err, errlen, "bad rule name \"%s\"", tmp);
			return -1;
		}
	}
	void *v = hashmap_get(m->cand_by_name, tmp, NULL);
	if (v == NULL)
		spam_expr_push(out, SPAM_OP_NUM, 0, 0);  /* unknown or dropped: never hits */
	else
		spam_expr_push(out, SPAM_OP_RULE, (uint32_t)((uintptr_t)v - 1), 0);
	return 0;
}

static int meta_call(void *vctx, const char *fn, size_t fnlen, const char *arg, size_t arglen,
		     struct spam_expr *out, char *err, size_t errlen)
{
	struct meta_ctx *m = vctx;
	if (fnlen != 14 || strncmp(fn, "rules_matching", 14) != 0) {
		snprintf(err, errlen, "unknown function \"%.*s\" (meta knows rules_matching())",
			 (int)(fnlen > 60 ? 60 : fnlen), fn);
		return -1;
	}
	m->glob_work += m->cand_count;
	if (m->glob_work > RULES_MATCHING_WORK_MAX) {
		snprintf(err, errlen, "rules_matching() is used too often for %zu rules",
			 m->cand_count);
		return -1;
	}
	char *glob = xstrndup(arg, arglen);
	size_t n = 0;
	for (size_t i = 0; i < m->cand_count; i++) {
		const struct spam_rule *r = &m->ps->rules[m->cand[i]];
		if (fnmatch(glob, r->name, 0) != 0)
			continue;
		spam_expr_push(out, SPAM_OP_RULE, (uint32_t)i, 0);
		if (n++ > 0)
			spam_expr_push(out, SPAM_OP_ADD, 0, 0);
	}
	free(glob);
	if (n == 0)
		spam_expr_push(out, SPAM_OP_NUM, 0, 0);
	return 0;
}

/* ---- the views' prefilters ---------------------------------------------------------- */

/* The key of a view's literal database in the cache: how it is compiled
 * and every literal with its flags, in id order. */
static void literals_key(const char *const *exprs, const unsigned *flags, const size_t *lens,
			 size_t n, buf_t *key)
{
	uint32_t head[2] = { HS_MODE_BLOCK, (uint32_t)n };
	buf_puts(key, "literals");
	buf_append(key, head, sizeof(head));
	for (size_t i = 0; i < n; i++) {
		uint32_t item[2] = { flags[i], (uint32_t)lens[i] };
		buf_append(key, item, sizeof(item));
		buf_append(key, exprs[i], lens[i]);
	}
}

/* Prepare view v's prefilter: which rules always run, which literals the
 * others need; the literals' database from the cache, or a job to
 * compile it (with the gates: spam_gates_build). */
static void prefilter_prepare(struct spam_rules *set, enum spam_view v,
			      struct spam_hs_cache *cache, struct spam_hs_job *job)
{
	struct spam_prefilter *pf = &set->views[v];
	memset(job, 0, sizeof(*job));
	/* sizes first: one allocation each */
	size_t rules = 0, lits = 0;
	for (size_t i = 0; i < set->first_meta; i++) {
		if (set->rules[i].view != v)
			continue;
		rules++;
		if (lits + set->rules[i].lits.count <= SPAM_LIT_VIEW_MAX)
			lits += set->rules[i].lits.count;
	}
	if (rules == 0)
		return;
	/* In the body every occurrence counts: a body rule then reads only
	 * the lines that hold one of its literals (its matches cannot cross
	 * a line). Elsewhere the first tells enough. */
	pf->every_match = v == SPAM_VIEW_BODY;
	pf->all = xcalloc(rules, sizeof(uint32_t));
	pf->always = xcalloc(rules, sizeof(uint32_t));
	pf->lit_rule = xcalloc(lits + 1, sizeof(uint32_t));
	const char **exprs = xcalloc(lits + 1, sizeof(*exprs));
	unsigned *flags = xcalloc(lits + 1, sizeof(*flags));
	unsigned *ids = xcalloc(lits + 1, sizeof(*ids));
	size_t *lens = xcalloc(lits + 1, sizeof(*lens));
	size_t n = 0;
	for (size_t i = 0; i < set->first_meta; i++) {
		struct spam_rule *r = &set->rules[i];
		if (r->view != v)
			continue;
		pf->all[pf->all_count++] = (uint32_t)i;
		if (r->lits.count == 0 || n + r->lits.count > lits) {
			/* no literal, or the view has enough: this one always runs */
			pf->always[pf->always_count++] = (uint32_t)i;
			continue;
		}
		r->narrow = pf->every_match && spam_narrow_eligible(r->pattern, r->pcre_opts);
		for (size_t k = 0; k < r->lits.count; k++) {
			exprs[n] = r->lits.items[k].text;
			lens[n] = r->lits.items[k].len;
			flags[n] = (pf->every_match ? 0 : HS_FLAG_SINGLEMATCH) |
				   (r->lits.items[k].caseless ? HS_FLAG_CASELESS : 0);
			ids[n] = (unsigned)n;
			pf->lit_rule[n] = (uint32_t)i;
			n++;
		}
	}
	pf->lit_count = n;
	job->kind = SPAM_HS_KIND_LITERALS;
	job->exprs = exprs;
	job->lit_flags = flags;
	job->ids = ids;
	job->lens = lens;
	job->lit_count = n;
	if (n == 0)
		return;
	literals_key(exprs, flags, lens, n, &job->key);
	uint64_t info;
	job->status = spam_hs_cache_get(cache, SPAM_HS_KIND_LITERALS, job->key.data, job->key.len,
					&job->db, &info);
	job->compiled_now = job->status == SPAM_HS_MISS;
}

/* The database is there (or could not be made): the view's prefilter. */
static void prefilter_finish(struct spam_rules *set, enum spam_view v,
			     struct spam_hs_cache *cache, struct spam_hs_job *job)
{
	struct spam_prefilter *pf = &set->views[v];
	if (job->kind != SPAM_HS_KIND_LITERALS)
		return;
	if (job->compiled_now && job->status != SPAM_HS_MISS)
		spam_hs_cache_put(cache, SPAM_HS_KIND_LITERALS, job->key.data, job->key.len,
				  job->status, job->db, 0);
	if (job->lit_count > 0) {
		pf->db = job->status == SPAM_HS_COMPILED ? job->db : NULL;
		job->db = NULL;
		if (pf->db == NULL) {
			/* Not expected for plain literals; run every rule then. */
			log_warn("spam rules: the prefilter cannot be built: every regex runs");
			memcpy(pf->always, pf->all, pf->all_count * sizeof(uint32_t));
			pf->always_count = pf->all_count;
			for (size_t i = 0; i < pf->all_count; i++)
				set->rules[pf->all[i]].narrow = false;
		} else if (hs_alloc_scratch(pf->db, &set->scratch) != HS_SUCCESS) {
			log_fatal("spam rules: out of memory for the prefilter");
		}
	}
	hs_free_database(job->db);
	free(job->exprs);
	free(job->lit_flags);
	free(job->ids);
	free(job->lens);
	buf_free(&job->key);
}

/* ---- summaries ------------------------------------------------------------------------ */

static void write_summaries(struct spam_parse *ps)
{
	if (ps->warnings == NULL)
		return;
	for (size_t i = 0; i < ps->file_count; i++) {
		const struct spam_file *f = ps->files[i];
		unsigned total = f->skipped_eval + f->skipped_regex + f->skipped_other;
		if (total == 0)
			continue;
		buf_t b = BUF_INIT;
		buf_printf(&b, "%s: %u rule%s skipped:", f->path, total, total == 1 ? "" : "s");
		const char *sep = " ";
		if (f->skipped_eval > 0) {
			buf_printf(&b, "%s%u with eval: tests postern does not have (%s%s)", sep,
				   f->skipped_eval, buf_cstr(&f->skipped_evals),
				   f->skipped_evals.len >= 200 ? ", ..." : "");
			sep = "; ";
		}
		if (f->skipped_regex > 0) {
			buf_printf(&b, "%s%u regex%s PCRE2 cannot take (first: %s)", sep,
				   f->skipped_regex, f->skipped_regex == 1 ? "" : "es",
				   f->first_regex_problem);
			sep = "; ";
		}
		if (f->skipped_other > 0)
			buf_printf(&b, "%s%u line%s not understood (first: %s)", sep, f->skipped_other,
				   f->skipped_other == 1 ? "" : "s", f->first_other_problem);
		fprintf(ps->warnings, "%s\n", buf_cstr(&b));
		buf_free(&b);
	}
}

/* ---- the whole -------------------------------------------------------------------------- */

static size_t target_index(struct spam_rules *set, hashmap_t *targets,
			   const struct spam_hdr_target *tg)
{
	buf_t key = BUF_INIT;
	buf_printf(&key, "%d|%u|%d|%s", (int)tg->kind, tg->mods, (int)tg->mime,
		   tg->name != NULL ? tg->name : "");
	if (tg->kind == SPAM_HDR_NAMED)
		str_lower(key.data);
	void *v = hashmap_get(targets, buf_cstr(&key), NULL);
	size_t idx;
	if (v != NULL) {
		idx = (size_t)((uintptr_t)v - 1);
	} else {
		set->targets = xreallocarray(set->targets, set->target_count + 1,
					     sizeof(*set->targets));
		struct spam_hdr_target *t = &set->targets[set->target_count];
		*t = *tg;
		t->name = tg->name != NULL ? xstrdup(tg->name) : NULL;
		idx = set->target_count++;
		hashmap_put(targets, buf_cstr(&key), (void *)(uintptr_t)(idx + 1));
	}
	buf_free(&key);
	return idx;
}

struct order_item {
	uint32_t cand;
	int priority;
};

static int by_priority(const void *a, const void *b)
{
	const struct order_item *x = a, *y = b;
	if (x->priority != y->priority)
		return x->priority < y->priority ? -1 : 1;
	return x->cand < y->cand ? -1 : (x->cand > y->cand);
}

/* Order the metas so that each comes after the metas it reads (Kahn's
 * algorithm over the reverse edges, linear in metas and their terms);
 * those in a cycle are a problem. *out gets candidate indices. */
static size_t order_metas(struct spam_parse *ps, const uint32_t *cand, size_t cand_count,
			  uint32_t *out)
{
	size_t *pending = xcalloc(cand_count + 1, sizeof(size_t));  /* unmet meta dependencies */
	bool *is_meta = xcalloc(cand_count + 1, sizeof(bool));
	size_t *first_edge = xcalloc(cand_count + 2, sizeof(size_t));
	for (size_t i = 0; i < cand_count; i++)
		is_meta[i] = ps->rules[cand[i]].kind == SPAM_RK_META && !ps->rules[cand[i]].dropped;
	/* count, then list, the edges dependency -> reader */
	size_t edges = 0;
	for (size_t i = 0; i < cand_count; i++) {
		const struct spam_rule *r = &ps->rules[cand[i]];
		for (size_t k = 0; is_meta[i] && k < r->expr.count; k++) {
			const struct spam_expr_op *o = &r->expr.ops[k];
			if (o->op == SPAM_OP_RULE && is_meta[o->rule]) {
				first_edge[o->rule + 1]++;
				pending[i]++;
				edges++;
			}
		}
	}
	for (size_t i = 0; i < cand_count; i++)
		first_edge[i + 1] += first_edge[i];
	uint32_t *reader = xcalloc(edges + 1, sizeof(uint32_t));
	size_t *fill = xcalloc(cand_count + 1, sizeof(size_t));
	for (size_t i = 0; i < cand_count; i++) {
		const struct spam_rule *r = &ps->rules[cand[i]];
		for (size_t k = 0; is_meta[i] && k < r->expr.count; k++) {
			const struct spam_expr_op *o = &r->expr.ops[k];
			if (o->op == SPAM_OP_RULE && is_meta[o->rule])
				reader[first_edge[o->rule] + fill[o->rule]++] = (uint32_t)i;
		}
	}
	/* out doubles as the queue: metas with nothing pending, in file order */
	size_t n = 0;
	for (size_t i = 0; i < cand_count; i++)
		if (is_meta[i] && pending[i] == 0)
			out[n++] = (uint32_t)i;
	for (size_t head = 0; head < n; head++) {
		uint32_t done = out[head];
		for (size_t e = first_edge[done]; e < first_edge[done + 1]; e++)
			if (--pending[reader[e]] == 0)
				out[n++] = reader[e];
	}
	for (size_t i = 0; i < cand_count; i++) {
		if (is_meta[i] && pending[i] != 0) {
			struct spam_rule *r = &ps->rules[cand[i]];
			spam_parse_problem(ps, r->file, r->line, SPAM_SKIP_OTHER, NULL,
					   "%s: the meta rule depends on itself (through other metas)",
					   r->name);
			r->dropped = true;
		}
	}
	free(pending);
	free(is_meta);
	free(first_edge);
	free(reader);
	free(fill);
	return n;
}

static void init_matching(struct spam_rules *set)
{
	set->mctx = pcre2_match_context_create(NULL);
	set->mdata = pcre2_match_data_create(1, NULL);
	set->jit_stack = pcre2_jit_stack_create(32 * 1024, 1024 * 1024, NULL);
	if (set->mctx == NULL || set->mdata == NULL || set->jit_stack == NULL)
		log_fatal("spam rules: out of memory for PCRE2");
	pcre2_set_match_limit(set->mctx, SPAM_REGEX_MATCH_LIMIT);
	pcre2_set_depth_limit(set->mctx, SPAM_REGEX_DEPTH_LIMIT);
	pcre2_set_heap_limit(set->mctx, SPAM_REGEX_HEAP_KIB);
	pcre2_jit_stack_assign(set->mctx, NULL, set->jit_stack);
}

struct spam_rules *spam_rules_build(struct spam_parse *ps)
{
	/* 1. settings, and the rules that can count */
	uint32_t *cand = xcalloc(ps->count + 1, sizeof(uint32_t));
	size_t cand_count = 0;
	for (size_t i = 0; i < ps->count && ps->err == NULL; i++) {
		struct spam_rule *r = &ps->rules[i];
		if (r->dropped)
			continue;
		apply_settings(ps, r);
		if (!can_score(r))
			continue;
		if (!compile_rule(ps, r)) {
			r->dropped = true;
			continue;
		}
		cand[cand_count++] = (uint32_t)i;
	}
	/* 2. metas: compile against the candidates */
	hashmap_t cand_by_name = HASHMAP_INIT;
	for (size_t i = 0; i < cand_count; i++)
		hashmap_put(&cand_by_name, ps->rules[cand[i]].name, (void *)(uintptr_t)(i + 1));
	struct meta_ctx mctx = { ps, cand, cand_count, &cand_by_name, 0 };
	struct spam_expr_resolver resolver = { meta_name, meta_call, &mctx };
	for (size_t i = 0; i < cand_count && ps->err == NULL; i++) {
		struct spam_rule *r = &ps->rules[cand[i]];
		if (r->kind != SPAM_RK_META)
			continue;
		char err[ERR_MAX];
		if (spam_expr_compile(r->meta_text, &resolver, &r->expr, err, sizeof(err)) < 0) {
			spam_parse_problem(ps, r->file, r->line, SPAM_SKIP_OTHER, NULL, "%s: %s", r->name,
					   err);
			r->dropped = true;
			r->expr.count = 0;
		}
	}
	hashmap_free(&cand_by_name, NULL);
	/* 3. the order: other rules by priority, then the metas, dependencies first */
	uint32_t *metas = xcalloc(cand_count + 1, sizeof(uint32_t));
	size_t meta_count = ps->err == NULL ? order_metas(ps, cand, cand_count, metas) : 0;
	struct order_item *plain = xcalloc(cand_count + 1, sizeof(*plain));
	size_t plain_count = 0;
	for (size_t i = 0; i < cand_count; i++) {
		const struct spam_rule *r = &ps->rules[cand[i]];
		if (r->kind != SPAM_RK_META && !r->dropped)
			plain[plain_count++] = (struct order_item){ (uint32_t)i, r->priority };
	}
	qsort(plain, plain_count, sizeof(*plain), by_priority);
	if (ps->err != NULL) {
		free(cand);
		free(metas);
		free(plain);
		return NULL;
	}
	/* 4. the final array; candidate index -> final index */
	struct spam_rules *set = xcalloc(1, sizeof(*set));
	uint32_t *final_of = xcalloc(cand_count + 1, sizeof(uint32_t));
	for (size_t i = 0; i < cand_count; i++)
		final_of[i] = NO_INDEX;
	size_t total = 0;
	for (size_t i = 0; i < meta_count; i++)
		total += !ps->rules[cand[metas[i]]].dropped;
	total += plain_count;
	set->rules = xcalloc(total + 1, sizeof(*set->rules));
	for (size_t i = 0; i < plain_count; i++)
		final_of[plain[i].cand] = (uint32_t)set->count++;
	set->first_meta = set->count;
	for (size_t i = 0; i < meta_count; i++)
		if (!ps->rules[cand[metas[i]]].dropped)
			final_of[metas[i]] = (uint32_t)set->count++;
	hashmap_t targets = HASHMAP_INIT;
	for (size_t c = 0; c < cand_count; c++) {
		if (final_of[c] == NO_INDEX)
			continue;
		struct spam_rule *dst = &set->rules[final_of[c]];
		*dst = ps->rules[cand[c]];
		memset(&ps->rules[cand[c]], 0, sizeof(struct spam_rule));
		ps->rules[cand[c]].dropped = true;
		/* remap meta programs; a dropped dependency reads 0 */
		for (size_t k = 0; k < dst->expr.count; k++) {
			struct spam_expr_op *o = &dst->expr.ops[k];
			if (o->op != SPAM_OP_RULE)
				continue;
			uint32_t f = final_of[o->rule];
			if (f == NO_INDEX) {
				o->op = SPAM_OP_NUM;
				o->num = 0;
				continue;
			}
			o->rule = f;
			bool seen = false;
			for (size_t d = 0; d < dst->dep_count && !seen; d++)
				seen = dst->deps[d] == f;
			if (!seen) {
				dst->deps = xreallocarray(dst->deps, dst->dep_count + 1, sizeof(uint32_t));
				dst->deps[dst->dep_count++] = f;
			}
		}
		if (dst->kind == SPAM_RK_HEADER || dst->kind == SPAM_RK_MIMEHEADER ||
		    dst->kind == SPAM_RK_EXISTS)
			dst->target = target_index(set, &targets, &dst->hdr);
		hashmap_put(&set->by_name, dst->name, (void *)(uintptr_t)(final_of[c] + 1));
	}
	hashmap_free(&targets, NULL);
	free(cand);
	free(metas);
	free(plain);
	free(final_of);
	/* 5. files move to the rules (staleness); prefilters; matching state */
	set->files = ps->files;
	set->file_count = ps->file_count;
	write_summaries(ps);
	ps->files = NULL;
	ps->file_count = 0;
	char *why = NULL;
	struct spam_hs_cache *cache = spam_hs_cache_load(ps->cache_path, &why);
	if (why != NULL)
		log_info("spam rules: the compiled-database cache %s is not used (%s): it is "
			 "built again", ps->cache_path, why);
	free(why);
	struct spam_hs_job literals[SPAM_VIEW_COUNT];
	struct spam_hs_job *to_compile[SPAM_VIEW_COUNT];
	size_t missing = 0;
	for (enum spam_view v = 0; v < SPAM_VIEW_COUNT; v++) {
		prefilter_prepare(set, v, cache, &literals[v]);
		if (literals[v].compiled_now)
			to_compile[missing++] = &literals[v];
	}
	spam_gates_build(set, cache, to_compile, missing);
	for (enum spam_view v = 0; v < SPAM_VIEW_COUNT; v++)
		prefilter_finish(set, v, cache, &literals[v]);
	if (spam_hs_cache_save(cache, &why) < 0)
		log_info("spam rules: the compiled-database cache is not kept: %s", why);
	free(why);
	spam_hs_cache_free(&cache);
	if (ps->lazy_jit) {
		set->jit_pending = xcalloc(set->count + 1, 1);
		for (size_t i = 0; i < set->count; i++)
			set->jit_pending[i] = set->rules[i].re != NULL;
	}
	init_matching(set);
	return set;
}

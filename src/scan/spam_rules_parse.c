/*
 * spam_rules_parse.c - reading SpamAssassin-syntax rule files (the syntax
 * of Mail::SpamAssassin::Conf, written anew for postern): files and
 * folders (every *.cf, in name order), comments ("#", "\#" for a literal
 * one), if / ifplugin / else / endif, include (relative to the file,
 * bounded depth, no loops), the rule kinds (header, mimeheader, body,
 * rawbody, uri, full, meta, eval: tests) and the settings by rule name
 * (score, describe, tflags, priority, replace_*). Other SpamAssassin
 * settings (report templates, welcomelists, network options ...) are
 * accepted and ignored.
 *
 * Two modes per path (struct spam_rules_source): postern's own files are
 * strict, the first problem is the load's error "FILE:LINE: message";
 * SpamAssassin's files are lenient, a rule postern cannot take (a regex
 * PCRE2 refuses, an eval: test it does not have, a line it does not
 * understand) is skipped and counted, and spam_rules_build writes one
 * summary line per file.
 *
 * Input: files an administrator points at (bounded: SPAM_RULES_FILE_MAX
 * bytes, SPAM_RULES_LINE_MAX per line, SPAM_RULES_MAX rules, nesting
 * bounds). Runs in the unprivileged scan master before the scanners
 * fork, and in `postern scan` / check-config.
 */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <malloc.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "../lib/diag.h"
#include "../lib/safeio.h"
#include "../lib/strutil.h"
#include "../lib/xalloc.h"
#include "spam_rules_impl.h"

#define ERR_MAX 512

/* ---- problems ----------------------------------------------------------------- */

void spam_parse_problem(struct spam_parse *ps, struct spam_file *f, unsigned line,
			enum spam_skip what, const char *detail, const char *fmt, ...)
{
	char msg[ERR_MAX];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (f == NULL || !f->lenient) {
		if (ps->err == NULL) {
			buf_t b = BUF_INIT;
			if (f == NULL)
				buf_printf(&b, "%s", msg);
			else if (line > 0)
				buf_printf(&b, "%s:%u: %s", f->path, line, msg);
			else
				buf_printf(&b, "%s: %s", f->path, msg);
			ps->err = buf_steal(&b);
		}
		return;
	}
	switch (what) {
	case SPAM_SKIP_EVAL:
		f->skipped_eval++;
		if (detail != NULL && f->skipped_evals.len < 200 &&
		    strstr(buf_cstr(&f->skipped_evals), detail) == NULL)
			buf_printf(&f->skipped_evals, "%s%s", f->skipped_evals.len ? ", " : "", detail);
		break;
	case SPAM_SKIP_REGEX:
		f->skipped_regex++;
		if (f->first_regex_problem == NULL) {
			buf_t b = BUF_INIT;
			buf_printf(&b, "line %u: %s", line, msg);
			f->first_regex_problem = buf_steal(&b);
		}
		break;
	case SPAM_SKIP_OTHER:
		f->skipped_other++;
		if (f->first_other_problem == NULL) {
			buf_t b = BUF_INIT;
			buf_printf(&b, "line %u: %s", line, msg);
			f->first_other_problem = buf_steal(&b);
		}
		break;
	}
}

/* ---- small readers ------------------------------------------------------------ */

static bool is_space(char c)
{
	return c == ' ' || c == '\t';
}

static const char *skip_space(const char *s)
{
	while (is_space(*s))
		s++;
	return s;
}

/* The next word of *s (up to white space), into a malloc'ed string; NULL
 * at the end. */
static char *next_word(const char **s)
{
	const char *p = skip_space(*s);
	if (*p == '\0')
		return NULL;
	const char *b = p;
	while (*p != '\0' && !is_space(*p))
		p++;
	*s = skip_space(p);
	return xstrndup(b, (size_t)(p - b));
}

static bool rule_name_ok(const char *n)
{
	size_t len = strlen(n);
	if (len == 0 || len > SPAM_RULE_NAME_MAX || isdigit((unsigned char)n[0]))
		return false;
	for (size_t i = 0; i < len; i++)
		if (!isalnum((unsigned char)n[i]) && n[i] != '_')
			return false;
	return true;
}

static struct spam_settings *settings_of(struct spam_parse *ps, const char *name)
{
	struct spam_settings *s = hashmap_get(&ps->settings, name, NULL);
	if (s == NULL) {
		s = xcalloc(1, sizeof(*s));
		hashmap_put(&ps->settings, name, s);
	}
	return s;
}

/* ---- rule definitions ----------------------------------------------------------- */

static struct spam_rule *new_rule(struct spam_parse *ps, struct spam_file *f, unsigned line,
				  const char *name, enum spam_rule_kind kind)
{
	if (ps->count >= SPAM_RULES_MAX) {
		struct spam_file strict = *f;
		strict.lenient = false;  /* a bound, not a rule to skip */
		spam_parse_problem(ps, &strict, line, SPAM_SKIP_OTHER, NULL,
				   "more than %d rules", SPAM_RULES_MAX);
		return NULL;
	}
	if (ps->count == ps->cap) {
		ps->cap = ps->cap ? ps->cap * 2 : 256;
		ps->rules = xreallocarray(ps->rules, ps->cap, sizeof(*ps->rules));
	}
	/* A later definition replaces an earlier one of the same name. */
	void *old = hashmap_get(&ps->names, name, NULL);
	if (old != NULL)
		ps->rules[(uintptr_t)old - 1].dropped = true;
	struct spam_rule *r = &ps->rules[ps->count];
	memset(r, 0, sizeof(*r));
	r->name = xstrdup(name);
	r->kind = kind;
	r->file = f;
	r->line = line;
	r->view = SPAM_VIEW_NONE;
	ps->count++;
	hashmap_put(&ps->names, name, (void *)(uintptr_t)ps->count);
	return r;
}

/* "eval:name(args)" at s. */
static int parse_eval(struct spam_parse *ps, struct spam_file *f, unsigned line,
		      const char *name, enum spam_rule_kind declared, const char *s)
{
	(void)declared;
	const char *p = s + 5;
	const char *fn = p;
	while (isalnum((unsigned char)*p) || *p == '_')
		p++;
	size_t fnlen = (size_t)(p - fn);
	p = skip_space(p);
	if (fnlen == 0 || *p != '(') {
		spam_parse_problem(ps, f, line, SPAM_SKIP_OTHER, NULL,
				   "%s: eval: wants a function call, name(arguments)", name);
		return -1;
	}
	const char *close = strrchr(p, ')');
	if (close == NULL || *skip_space(close + 1) != '\0') {
		spam_parse_problem(ps, f, line, SPAM_SKIP_OTHER, NULL,
				   "%s: the eval: call is not closed with )", name);
		return -1;
	}
	char *fname = xstrndup(fn, fnlen);
	const struct spam_eval_def *def = spam_eval_find(fname);
	if (def == NULL) {
		spam_parse_problem(ps, f, line, SPAM_SKIP_EVAL, fname,
				   "%s: postern has no eval: test %s", name, fname);
		free(fname);
		return -1;
	}
	/* arguments: 'quoted', "quoted" or bare, separated by commas */
	struct spam_eval_args args = { 0 };
	const char *a = p + 1;
	bool bad = false;
	while (!bad) {
		a = skip_space(a);
		if (a >= close)
			break;
		buf_t arg = BUF_INIT;
		if (*a == '\'' || *a == '"') {
			char q = *a++;
			while (a < close && *a != q)
				buf_putc(&arg, *a++);
			if (a >= close)
				bad = true;
			else
				a++;
		} else {
			while (a < close && *a != ',')
				buf_putc(&arg, *a++);
			while (arg.len > 0 && is_space(arg.data[arg.len - 1]))
				arg.data[--arg.len] = '\0';
		}
		a = skip_space(a);
		if (a < close && *a != ',')
			bad = true;
		if (a < close)
			a++;
		if (args.count >= SPAM_EVAL_ARGS_MAX)
			bad = true;
		if (!bad) {
			args.str = xreallocarray(args.str, args.count + 1, sizeof(char *));
			args.num = xreallocarray(args.num, args.count + 1, sizeof(double));
			char *end;
			const char *t = buf_cstr(&arg);
			double v = strtod(t, &end);
			args.num[args.count] = (*t != '\0' && *end == '\0' && isfinite(v)) ? v : NAN;
			args.str[args.count++] = buf_steal(&arg);
		}
		buf_free(&arg);
	}
	if (!bad && (args.count < def->min_args || args.count > def->max_args))
		bad = true;
	if (!bad && def->args_ok != NULL && !def->args_ok(&args)) {
		buf_t what = BUF_INIT;
		buf_printf(&what, "%s('%.40s')", fname, args.count > 0 ? args.str[0] : "");
		for (size_t i = 0; i < args.count; i++)
			free(args.str[i]);
		free(args.str);
		free(args.num);
		spam_parse_problem(ps, f, line, SPAM_SKIP_EVAL, buf_cstr(&what),
				   "%s: postern's eval:%s cannot take these arguments", name, fname);
		buf_free(&what);
		free(fname);
		return -1;
	}
	if (bad) {
		for (size_t i = 0; i < args.count; i++)
			free(args.str[i]);
		free(args.str);
		free(args.num);
		spam_parse_problem(ps, f, line, SPAM_SKIP_OTHER, NULL,
				   "%s: eval:%s wants %u to %u arguments, quoted and separated by commas",
				   name, fname, def->min_args, def->max_args);
		free(fname);
		return -1;
	}
	struct spam_rule *r = new_rule(ps, f, line, name, SPAM_RK_EVAL);
	if (r == NULL) {
		for (size_t i = 0; i < args.count; i++)
			free(args.str[i]);
		free(args.str);
		free(args.num);
		free(fname);
		return -1;
	}
	r->eval = def;
	r->eval_name = fname;
	r->args = args;
	return 0;
}

/* "Field[:mod...]" of a header rule. */
static int parse_target(struct spam_parse *ps, struct spam_file *f, unsigned line,
			const char *name, const char *text, bool mime, struct spam_hdr_target *tg)
{
	memset(tg, 0, sizeof(*tg));
	tg->mime = mime;
	const char *colon = strchr(text, ':');
	size_t n = colon ? (size_t)(colon - text) : strlen(text);
	char *field = xstrndup(text, n);
	for (const char *m = colon; m != NULL;) {
		const char *next = strchr(m + 1, ':');
		size_t ml = next ? (size_t)(next - m - 1) : strlen(m + 1);
		if (ml == 3 && strncmp(m + 1, "raw", 3) == 0) {
			tg->mods |= SPAM_HDR_RAW;
		} else if (ml == 4 && strncmp(m + 1, "addr", 4) == 0) {
			tg->mods |= SPAM_HDR_ADDR;
		} else if (ml == 4 && strncmp(m + 1, "name", 4) == 0) {
			tg->mods |= SPAM_HDR_NAME;
		} else {
			spam_parse_problem(ps, f, line, SPAM_SKIP_OTHER, NULL,
					   "%s: unknown header modifier \":%.*s\" (postern takes :raw, "
					   ":addr and :name)", name, (int)ml, m + 1);
			free(field);
			return -1;
		}
		m = next;
	}
	/* :addr and :name work on the decoded value (SpamAssassin: :addr:raw
	 * is :addr). */
	if (tg->mods & (SPAM_HDR_ADDR | SPAM_HDR_NAME))
		tg->mods &= ~SPAM_HDR_RAW;
	bool ok = n > 0;
	for (size_t i = 0; i < n && ok; i++)
		ok = (unsigned char)field[i] > 0x20 && (unsigned char)field[i] < 0x7f;
	if (!ok) {
		spam_parse_problem(ps, f, line, SPAM_SKIP_OTHER, NULL, "%s: bad header field name",
				   name);
		free(field);
		return -1;
	}
	tg->kind = SPAM_HDR_NAMED;
	if (!mime) {
		if (strcmp(field, "ALL") == 0)
			tg->kind = SPAM_HDR_ALL;
		else if (strcmp(field, "ToCc") == 0)
			tg->kind = SPAM_HDR_TOCC;
		else if (strcmp(field, "MESSAGEID") == 0)
			tg->kind = SPAM_HDR_MESSAGEID;
		else if (strcmp(field, "EnvelopeFrom") == 0)
			tg->kind = SPAM_HDR_ENVFROM;
	} else if (strcmp(field, "ALL") == 0) {
		tg->kind = SPAM_HDR_ALL;
	}
	tg->name = field;
	return 0;
}

/* "/re/flags" at s: into r; rest_r after the flags. */
static int parse_regex(struct spam_parse *ps, struct spam_file *f, unsigned line,
		       const char *name, const char *s, char **pattern_r, uint32_t *opts_r,
		       const char **rest_r)
{
	char err[ERR_MAX];
	if (spam_regex_split(s, pattern_r, opts_r, rest_r, err, sizeof(err)) < 0) {
		spam_parse_problem(ps, f, line, SPAM_SKIP_REGEX, NULL, "%s: %s", name, err);
		return -1;
	}
	return 0;
}

static void rule_header(struct spam_parse *ps, struct spam_file *f, unsigned line,
			const char *name, const char *rest, bool mime)
{
	if (!mime && strncmp(rest, "eval:", 5) == 0) {
		(void)parse_eval(ps, f, line, name, SPAM_RK_HEADER, rest);
		return;
	}
	if (!mime && strncmp(rest, "exists:", 7) == 0) {
		const char *field = skip_space(rest + 7);
		struct spam_hdr_target tg;
		char *fieldname = next_word(&field);
		if (fieldname == NULL || *field != '\0') {
			spam_parse_problem(ps, f, line, SPAM_SKIP_OTHER, NULL,
					   "%s: exists: wants one header field name", name);
			free(fieldname);
			return;
		}
		int rc = parse_target(ps, f, line, name, fieldname, false, &tg);
		free(fieldname);
		if (rc < 0)
			return;
		struct spam_rule *r = new_rule(ps, f, line, name, SPAM_RK_EXISTS);
		if (r == NULL) {
			free(tg.name);
			return;
		}
		r->hdr = tg;
		return;
	}
	/* Field op /re/ [if-unset: text] */
	const char *p = rest;
	const char *b = p;
	while (*p != '\0' && !is_space(*p) && *p != '=' && *p != '!')
		p++;
	char *field = xstrndup(b, (size_t)(p - b));
	p = skip_space(p);
	bool negate;
	if (strncmp(p, "=~", 2) == 0) {
		negate = false;
	} else if (strncmp(p, "!~", 2) == 0) {
		negate = true;
	} else {
		spam_parse_problem(ps, f, line, SPAM_SKIP_OTHER, NULL,
				   "%s: want \"Field =~ /regex/\", \"Field !~ /regex/\", "
				   "\"exists:Field\" or \"eval:test()\"", name);
		free(field);
		return;
	}
	p = skip_space(p + 2);
	struct spam_hdr_target tg;
	int rc = parse_target(ps, f, line, name, field, mime, &tg);
	free(field);
	if (rc < 0)
		return;
	char *pattern;
	uint32_t opts;
	const char *after;
	if (parse_regex(ps, f, line, name, p, &pattern, &opts, &after) < 0) {
		free(tg.name);
		return;
	}
	after = skip_space(after);
	char *if_unset = NULL;
	if (strncmp(after, "[if-unset:", 10) == 0) {
		const char *v = skip_space(after + 10);
		const char *close = strrchr(v, ']');
		if (close == NULL || *skip_space(close + 1) != '\0') {
			spam_parse_problem(ps, f, line, SPAM_SKIP_OTHER, NULL,
					   "%s: [if-unset: text] is not closed with ]", name);
			free(tg.name);
			free(pattern);
			return;
		}
		size_t n = (size_t)(close - v);
		while (n > 0 && is_space(v[n - 1]))
			n--;
		if_unset = xstrndup(v, n);
	} else if (*after != '\0') {
		spam_parse_problem(ps, f, line, SPAM_SKIP_OTHER, NULL,
				   "%s: unexpected \"%.30s\" after the regex", name, after);
		free(tg.name);
		free(pattern);
		return;
	}
	struct spam_rule *r = new_rule(ps, f, line, name, mime ? SPAM_RK_MIMEHEADER : SPAM_RK_HEADER);
	if (r == NULL) {
		free(tg.name);
		free(pattern);
		free(if_unset);
		return;
	}
	r->hdr = tg;
	r->pattern = pattern;
	r->pcre_opts = opts;
	r->negate = negate;
	r->if_unset = if_unset;
}

static void rule_text(struct spam_parse *ps, struct spam_file *f, unsigned line,
		      const char *name, const char *rest, enum spam_rule_kind kind)
{
	if (strncmp(rest, "eval:", 5) == 0) {
		(void)parse_eval(ps, f, line, name, kind, rest);
		return;
	}
	char *pattern;
	uint32_t opts;
	const char *after;
	if (parse_regex(ps, f, line, name, rest, &pattern, &opts, &after) < 0)
		return;
	if (*skip_space(after) != '\0') {
		spam_parse_problem(ps, f, line, SPAM_SKIP_OTHER, NULL,
				   "%s: unexpected \"%.30s\" after the regex", name, skip_space(after));
		free(pattern);
		return;
	}
	struct spam_rule *r = new_rule(ps, f, line, name, kind);
	if (r == NULL) {
		free(pattern);
		return;
	}
	r->pattern = pattern;
	r->pcre_opts = opts;
}

static void rule_meta(struct spam_parse *ps, struct spam_file *f, unsigned line,
		      const char *name, const char *rest)
{
	if (*rest == '\0') {
		spam_parse_problem(ps, f, line, SPAM_SKIP_OTHER, NULL, "%s: empty meta expression",
				   name);
		return;
	}
	struct spam_rule *r = new_rule(ps, f, line, name, SPAM_RK_META);
	if (r != NULL)
		r->meta_text = xstrdup(rest);
}

/* ---- settings by name --------------------------------------------------------------- */

/* One score: "1.5", or "(1.5)" for relative. */
static bool parse_score(const char *w, double *v_r, bool *relative_r)
{
	size_t n = strlen(w);
	*relative_r = n >= 2 && w[0] == '(' && w[n - 1] == ')';
	char tmp[64];
	if (*relative_r) {
		if (n - 2 >= sizeof(tmp))
			return false;
		memcpy(tmp, w + 1, n - 2);
		tmp[n - 2] = '\0';
		w = tmp;
	}
	char *end;
	errno = 0;
	double v = strtod(w, &end);
	if (*w == '\0' || *end != '\0' || errno != 0 || !isfinite(v) || fabs(v) > 1000)
		return false;
	*v_r = v;
	return true;
}

static void set_score(struct spam_parse *ps, struct spam_file *f, unsigned line,
		      const char *name, const char *rest)
{
	double v[4];
	bool rel[4], any_rel = false;
	size_t n = 0;
	const char *p = rest;
	char *w;
	while ((w = next_word(&p)) != NULL) {
		bool ok = n < 4 && parse_score(w, &v[n], &rel[n]);
		free(w);
		if (!ok) {
			spam_parse_problem(ps, f, line, SPAM_SKIP_OTHER, NULL,
					   "%s: a score is one number, or four (for the score sets "
					   "0 to 3), between -1000 and 1000", name);
			return;
		}
		any_rel = any_rel || rel[n];
		n++;
	}
	if (n != 1 && n != 4) {
		spam_parse_problem(ps, f, line, SPAM_SKIP_OTHER, NULL,
				   "%s: a score is one number, or four (for the score sets 0 to 3)",
				   name);
		return;
	}
	struct spam_settings *s = settings_of(ps, name);
	for (size_t i = 0; i < 4; i++) {
		double x = v[n == 1 ? 0 : i];
		s->score[i] = any_rel ? (s->has_score ? s->score[i] : 0) + x : x;
	}
	s->has_score = true;
}

static void set_tflags(struct spam_parse *ps, struct spam_file *f, unsigned line,
		       const char *name, const char *rest)
{
	static const struct {
		const char *word;
		unsigned flag;
	} known[] = {
		{ "multiple", SPAM_TF_MULTIPLE }, { "nice", SPAM_TF_NICE },
		{ "learn", SPAM_TF_LEARN }, { "noautolearn", SPAM_TF_NOAUTOLEARN },
		{ "net", SPAM_TF_NET }, { "nosubject", SPAM_TF_NOSUBJECT },
		{ "userconf", SPAM_TF_USERCONF }, { "autolearn_force", SPAM_TF_AUTOLEARN_FORCE },
	};
	/* accepted, of no effect here */
	static const char *const other[] = {
		"publish", "nopublish", "noawl", "a", "ns", "domains_only", "ips_only", "notrim",
		"nolog", "dns", "range", "nice_", "nomaxhits",
	};
	unsigned flags = 0, maxhits = 0;
	const char *p = rest;
	char *w;
	while ((w = next_word(&p)) != NULL) {
		bool ok = false;
		for (size_t i = 0; i < ARRAY_LEN(known) && !ok; i++)
			if (strcmp(w, known[i].word) == 0) {
				flags |= known[i].flag;
				ok = true;
			}
		for (size_t i = 0; i < ARRAY_LEN(other) && !ok; i++)
			ok = strcmp(w, other[i]) == 0;
		if (!ok && strncmp(w, "maxhits=", 8) == 0) {
			uint64_t n;
			ok = str_parse_uint(w + 8, &n) && n > 0 && n <= 1000000;
			if (ok)
				maxhits = (unsigned)n;
		}
		if (!ok && f->lenient)
			ok = true;  /* a flag of a newer SpamAssassin */
		if (!ok) {
			spam_parse_problem(ps, f, line, SPAM_SKIP_OTHER, NULL,
					   "%s: unknown tflags word \"%s\"", name, w);
			free(w);
			return;
		}
		free(w);
	}
	struct spam_settings *s = settings_of(ps, name);
	s->has_tflags = true;
	s->tflags = flags;
	s->maxhits = maxhits;
}

static void set_priority(struct spam_parse *ps, struct spam_file *f, unsigned line,
			 const char *name, const char *rest)
{
	char *end;
	errno = 0;
	long v = strtol(rest, &end, 10);
	if (*rest == '\0' || *skip_space(end) != '\0' || errno != 0 || v < -1000000000L ||
	    v > 1000000000L) {
		spam_parse_problem(ps, f, line, SPAM_SKIP_OTHER, NULL,
				   "%s: priority wants a whole number", name);
		return;
	}
	struct spam_settings *s = settings_of(ps, name);
	s->has_priority = true;
	s->priority = (int)v;
}

/* replace_tag / replace_pre / replace_inter / replace_post NAME regex */
static void set_replace(struct spam_parse *ps, struct spam_file *f, unsigned line,
			hashmap_t *map, const char *rest)
{
	const char *p = rest;
	char *tag = next_word(&p);
	if (tag == NULL || *p == '\0') {
		spam_parse_problem(ps, f, line, SPAM_SKIP_OTHER, NULL, "want: TAG regex");
		free(tag);
		return;
	}
	free(hashmap_put(map, tag, xstrdup(p)));
	free(tag);
}

/* ---- conditionals ------------------------------------------------------------------- */

struct cond_ctx {
	struct spam_parse *ps;
};

static int cond_name(void *vctx, const char *name, size_t len, struct spam_expr *out,
		     char *err, size_t errlen)
{
	(void)vctx;
	if (len == 7 && strncmp(name, "version", 7) == 0) {
		spam_expr_push(out, SPAM_OP_NUM, 0, SPAM_SA_VERSION);
		return 0;
	}
	if (len == 12 && strncmp(name, "perl_version", 12) == 0) {
		spam_expr_push(out, SPAM_OP_NUM, 0, SPAM_PERL_VERSION);
		return 0;
	}
	snprintf(err, errlen, "unknown word \"%.*s\" in a condition", (int)(len > 60 ? 60 : len),
		 name);
	return -1;
}

static int cond_call(void *vctx, const char *fn, size_t fnlen, const char *arg, size_t arglen,
		     struct spam_expr *out, char *err, size_t errlen)
{
	struct cond_ctx *c = vctx;
	char *a = xstrndup(arg, arglen);
	bool value;
	if (fnlen == 6 && strncmp(fn, "plugin", 6) == 0) {
		value = spam_plugin_present(a);
	} else if ((fnlen == 3 && strncmp(fn, "can", 3) == 0) ||
		   (fnlen == 3 && strncmp(fn, "has", 3) == 0)) {
		static const char compat[] = "Mail::SpamAssassin::Conf::compat_";
		value = spam_feature_present(a) ||
			(strncmp(a, compat, sizeof(compat) - 1) == 0 &&
			 hashmap_contains(&c->ps->compat, a + sizeof(compat) - 1));
	} else {
		snprintf(err, errlen, "unknown function \"%.*s\" in a condition",
			 (int)(fnlen > 60 ? 60 : fnlen), fn);
		free(a);
		return -1;
	}
	free(a);
	spam_expr_push(out, SPAM_OP_NUM, 0, value ? 1 : 0);
	return 0;
}

/* The condition's truth; a condition that cannot be read is false (its
 * block is skipped, as SpamAssassin skips it), and a problem. */
static bool eval_condition(struct spam_parse *ps, struct spam_file *f, unsigned line,
			   const char *text)
{
	struct cond_ctx c = { ps };
	struct spam_expr_resolver r = { cond_name, cond_call, &c };
	struct spam_expr e = { 0 };
	char err[ERR_MAX];
	bool value = false;
	if (spam_expr_compile(text, &r, &e, err, sizeof(err)) < 0)
		spam_parse_problem(ps, f, line, SPAM_SKIP_OTHER, NULL, "if: %s", err);
	else
		value = spam_expr_eval(&e, NULL) != 0;
	spam_expr_free(&e);
	return value;
}

struct if_level {
	bool parent_taking;
	bool cond;
	bool in_else;
	unsigned line;
};

struct file_state {
	struct spam_file *f;
	struct if_level ifs[SPAM_RULES_IF_DEPTH];
	unsigned if_depth;
	bool taking;
};

static void push_if(struct spam_parse *ps, struct file_state *st, unsigned line, bool cond)
{
	if (st->if_depth >= SPAM_RULES_IF_DEPTH) {
		struct spam_file strict = *st->f;
		strict.lenient = false;
		spam_parse_problem(ps, &strict, line, SPAM_SKIP_OTHER, NULL,
				   "if nested more than %d deep", SPAM_RULES_IF_DEPTH);
		return;
	}
	struct if_level *l = &st->ifs[st->if_depth++];
	l->parent_taking = st->taking;
	l->cond = cond;
	l->in_else = false;
	l->line = line;
	st->taking = st->taking && cond;
}

/* ---- lines ---------------------------------------------------------------------------- */

static void read_path(struct spam_parse *ps, const char *path, bool lenient, bool top);

/* SpamAssassin settings postern accepts and ignores (in strict files too,
 * so that a file written for SpamAssassin loads). */
static const char *const ignored_settings[] = {
	"lang", "report", "report_contact", "report_safe", "report_charset", "add_header",
	"remove_header", "clear_headers", "clear_report_template", "unsafe_report",
	"clear_unsafe_report_template", "required_score", "required_hits", "rewrite_header",
	"loadplugin", "tryplugin", "require_version", "test", "reuse", "version_tag",
	"ok_locales", "ok_languages", "use_bayes", "use_bayes_rules", "bayes_auto_learn",
	"bayes_auto_learn_threshold_spam", "bayes_auto_learn_threshold_nonspam",
	"bayes_ignore_header", "bayes_ignore_from", "bayes_ignore_to", "trusted_networks",
	"internal_networks", "msa_networks", "clear_trusted_networks", "clear_internal_networks",
	"skip_rbl_checks", "dns_available", "use_razor2", "use_pyzor", "use_dcc",
	"redirector_pattern", "originating_ip_headers", "clear_originating_ip_headers",
	"envelope_sender_header", "normalize_charset", "body_part_scan_size",
	"rawbody_part_scan_size", "shortcircuit", "whitelist_from", "welcomelist_from",
	"blacklist_from", "blocklist_from", "unwhitelist_from", "unwelcomelist_from",
	"whitelist_to", "welcomelist_to", "more_spam_to", "all_spam_to", "util_rb_tld",
	"util_rb_2tld", "util_rb_3tld", "clear_util_rb", "freemail_domains",
	"freemail_whitelist", "freemail_welcomelist", "url_shortener", "enlist_uri_host",
	"delist_uri_host", "enlist_addrlist", "dns_local_ports_avoid", "report_hostname",
	"def_whitelist_auth", "def_welcomelist_auth", "whitelist_auth", "welcomelist_auth",
	"def_whitelist_from_rcvd", "def_welcomelist_from_rcvd", "whitelist_from_rcvd",
	"welcomelist_from_rcvd", "def_whitelist_from_dkim", "def_welcomelist_from_dkim",
	"def_whitelist_from_spf", "def_welcomelist_from_spf", "adsp_override",
	"uridnsbl_skip_domain", "bayes_stopword_en", "fns_ignore_headers", "fns_ignore_dkim",
	"fns_check", "bayes_token_sources", "score_set", "autolearn_force",
};

static bool ignored_setting(const char *key)
{
	for (size_t i = 0; i < ARRAY_LEN(ignored_settings); i++)
		if (strcmp(key, ignored_settings[i]) == 0)
			return true;
	return false;
}

static void directive_include(struct spam_parse *ps, struct file_state *st, unsigned line,
			      const char *rest)
{
	if (*rest == '\0') {
		spam_parse_problem(ps, st->f, line, SPAM_SKIP_OTHER, NULL, "include wants a file");
		return;
	}
	char *path;
	if (rest[0] == '/') {
		path = xstrdup(rest);
	} else {
		const char *slash = strrchr(st->f->path, '/');
		buf_t b = BUF_INIT;
		if (slash != NULL)
			buf_append(&b, st->f->path, (size_t)(slash - st->f->path) + 1);
		buf_puts(&b, rest);
		path = buf_steal(&b);
	}
	if (ps->depth > SPAM_RULES_INCLUDE_DEPTH) {
		spam_parse_problem(ps, st->f, line, SPAM_SKIP_OTHER, NULL,
				   "include nested more than %d deep", SPAM_RULES_INCLUDE_DEPTH);
	} else {
		/* A problem with the included file as such (missing, a loop) is
		 * the include line's (counted in a lenient file); a problem in
		 * its lines is its own. */
		size_t files_before = ps->file_count;
		read_path(ps, path, st->f->lenient, false);
		if (ps->err != NULL && ps->file_count == files_before) {
			char *inner = ps->err;
			ps->err = NULL;
			spam_parse_problem(ps, st->f, line, SPAM_SKIP_OTHER, NULL, "include: %s",
					   inner);
			free(inner);
		}
	}
	free(path);
}

static void directive(struct spam_parse *ps, struct file_state *st, unsigned line, char *key,
		      const char *rest)
{
	struct spam_file *f = st->f;
	static const struct {
		const char *word;
		enum spam_rule_kind kind;
	} kinds[] = {
		{ "body", SPAM_RK_BODY }, { "rawbody", SPAM_RK_RAWBODY }, { "uri", SPAM_RK_URI },
		{ "full", SPAM_RK_FULL },
	};
	bool needs_name = strcmp(key, "header") == 0 || strcmp(key, "mimeheader") == 0 ||
			  strcmp(key, "meta") == 0 || strcmp(key, "score") == 0 ||
			  strcmp(key, "describe") == 0 || strcmp(key, "tflags") == 0 ||
			  strcmp(key, "priority") == 0;
	for (size_t i = 0; i < ARRAY_LEN(kinds); i++)
		needs_name = needs_name || strcmp(key, kinds[i].word) == 0;
	if (needs_name) {
		const char *p = rest;
		char *name = next_word(&p);
		if (name == NULL || !rule_name_ok(name)) {
			spam_parse_problem(ps, f, line, SPAM_SKIP_OTHER, NULL,
					   "%s wants a rule name (letters, digits and _, not "
					   "starting with a digit, at most %d)", key, SPAM_RULE_NAME_MAX);
			free(name);
			return;
		}
		if (strcmp(key, "header") == 0 || strcmp(key, "mimeheader") == 0)
			rule_header(ps, f, line, name, p, key[0] == 'm');
		else if (strcmp(key, "meta") == 0)
			rule_meta(ps, f, line, name, p);
		else if (strcmp(key, "score") == 0)
			set_score(ps, f, line, name, p);
		else if (strcmp(key, "describe") == 0) {
			struct spam_settings *s = settings_of(ps, name);
			free(s->describe);
			s->describe = xstrdup(p);
		} else if (strcmp(key, "tflags") == 0)
			set_tflags(ps, f, line, name, p);
		else if (strcmp(key, "priority") == 0)
			set_priority(ps, f, line, name, p);
		else
			for (size_t i = 0; i < ARRAY_LEN(kinds); i++)
				if (strcmp(key, kinds[i].word) == 0)
					rule_text(ps, f, line, name, p, kinds[i].kind);
		free(name);
		return;
	}
	if (strcmp(key, "include") == 0) {
		directive_include(ps, st, line, rest);
	} else if (strcmp(key, "replace_tag") == 0) {
		set_replace(ps, f, line, &ps->replace_tag, rest);
	} else if (strcmp(key, "replace_pre") == 0) {
		set_replace(ps, f, line, &ps->replace_pre, rest);
	} else if (strcmp(key, "replace_inter") == 0) {
		set_replace(ps, f, line, &ps->replace_inter, rest);
	} else if (strcmp(key, "replace_post") == 0) {
		set_replace(ps, f, line, &ps->replace_post, rest);
	} else if (strcmp(key, "replace_rules") == 0) {
		const char *p = rest;
		char *w;
		while ((w = next_word(&p)) != NULL) {
			if (rule_name_ok(w))
				settings_of(ps, w)->replace_tags = true;
			free(w);
		}
	} else if (strcmp(key, "replace_start") == 0 || strcmp(key, "replace_end") == 0) {
		char **dst = key[8] == 's' ? &ps->replace_start : &ps->replace_end;
		if (*rest == '\0') {
			spam_parse_problem(ps, f, line, SPAM_SKIP_OTHER, NULL, "%s wants a string",
					   key);
			return;
		}
		free(*dst);
		*dst = xstrdup(rest);
	} else if (strcmp(key, "enable_compat") == 0) {
		if (*rest != '\0')
			hashmap_put(&ps->compat, rest, NULL);
	} else if (!ignored_setting(key) && !f->lenient) {
		spam_parse_problem(ps, f, line, SPAM_SKIP_OTHER, NULL, "unknown setting \"%s\"", key);
	}
}

/* One line: comments cut, white space trimmed (in place). */
static char *clean_line(char *s)
{
	/* "#" starts a comment unless escaped; "\#" stands for "#". */
	char *w = s;
	for (char *p = s; *p != '\0'; p++) {
		if (*p == '#' && (p == s || p[-1] != '\\'))
			break;
		if (*p == '#' && w > s && w[-1] == '\\')
			w--;
		*w++ = *p;
	}
	*w = '\0';
	while (w > s && isspace((unsigned char)w[-1]))
		*--w = '\0';
	while (isspace((unsigned char)*s))
		s++;
	return s;
}

static void parse_line(struct spam_parse *ps, struct file_state *st, unsigned line, char *text)
{
	char *s = clean_line(text);
	if (*s == '\0')
		return;
	const char *p = s;
	char *key = next_word(&p);
	for (char *k = key; *k != '\0'; k++)
		*k = *k == '-' ? '_' : (char)tolower((unsigned char)*k);
	struct spam_file *f = st->f;
	if (strcmp(key, "if") == 0 || strcmp(key, "ifplugin") == 0) {
		bool cond = false;
		if (*p == '\0') {
			spam_parse_problem(ps, f, line, SPAM_SKIP_OTHER, NULL, "%s wants a condition",
					   key);
		} else if (st->taking) {
			if (key[2] == 'p')
				cond = spam_plugin_present(p);
			else
				cond = eval_condition(ps, f, line, p);
		}
		push_if(ps, st, line, cond);
	} else if (strcmp(key, "else") == 0) {
		if (st->if_depth == 0 || st->ifs[st->if_depth - 1].in_else || *p != '\0') {
			spam_parse_problem(ps, f, line, SPAM_SKIP_OTHER, NULL,
					   "else without an if, a second else, or words after it");
		} else {
			struct if_level *l = &st->ifs[st->if_depth - 1];
			l->in_else = true;
			st->taking = l->parent_taking && !l->cond;
		}
	} else if (strcmp(key, "endif") == 0) {
		if (st->if_depth == 0 || *p != '\0') {
			spam_parse_problem(ps, f, line, SPAM_SKIP_OTHER, NULL,
					   "endif without an if, or words after it");
		} else {
			st->taking = st->ifs[--st->if_depth].parent_taking;
		}
	} else if (st->taking) {
		directive(ps, st, line, key, p);
	}
	free(key);
}

/* ---- files and folders ------------------------------------------------------------------- */

static struct spam_file *add_file(struct spam_parse *ps, const char *path, bool lenient,
				  const struct stat *sb)
{
	if (ps->file_count >= SPAM_RULES_FILES_MAX)
		return NULL;
	/* One allocation each: rules and readers keep pointers while more
	 * files are added (include). */
	ps->files = xreallocarray(ps->files, ps->file_count + 1, sizeof(*ps->files));
	struct spam_file *f = xcalloc(1, sizeof(*f));
	ps->files[ps->file_count++] = f;
	f->path = xstrdup(path);
	f->lenient = lenient;
	f->is_dir = S_ISDIR(sb->st_mode);
	f->dev = sb->st_dev;
	f->ino = sb->st_ino;
	f->mtime = sb->st_mtim;
	f->size = sb->st_size;
	return f;
}

static void parse_text(struct spam_parse *ps, struct spam_file *f, char *text, size_t len)
{
	struct file_state st = { .f = f, .taking = true };
	unsigned line = 0;
	size_t i = 0;
	while (i < len && ps->err == NULL) {
		char *nl = memchr(text + i, '\n', len - i);
		size_t end = nl ? (size_t)(nl - text) : len;
		line++;
		if (end - i > SPAM_RULES_LINE_MAX) {
			struct spam_file strict = *f;
			strict.lenient = false;
			spam_parse_problem(ps, &strict, line, SPAM_SKIP_OTHER, NULL,
					   "line longer than %u bytes", SPAM_RULES_LINE_MAX);
			break;
		}
		text[end] = '\0';
		if (memchr(text + i, '\0', end - i) != NULL && strlen(text + i) != end - i) {
			spam_parse_problem(ps, f, line, SPAM_SKIP_OTHER, NULL, "NUL byte in line");
		} else {
			if (end > i && text[end - 1] == '\r')
				text[end - 1] = '\0';
			parse_line(ps, &st, line, text + i);
		}
		i = end + 1;
	}
	if (ps->err == NULL && st.if_depth > 0)
		spam_parse_problem(ps, f, st.ifs[st.if_depth - 1].line, SPAM_SKIP_OTHER, NULL,
				   "this if has no endif before the end of the file");
}

/* A problem with a path as such (cannot be read, too big, a loop): the
 * load's error; directive_include turns it into a problem of the include
 * line (counted in a lenient file). */
static void path_problem(struct spam_parse *ps, const char *path, const char *fmt, ...)
	PRINTF_LIKE(3, 4);

static void path_problem(struct spam_parse *ps, const char *path, const char *fmt, ...)
{
	char msg[ERR_MAX];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (ps->err == NULL) {
		buf_t b = BUF_INIT;
		buf_printf(&b, "%s: %s", path, msg);
		ps->err = buf_steal(&b);
	}
}

static void read_file(struct spam_parse *ps, const char *path, bool lenient,
		      const struct stat *sb)
{
	for (unsigned i = 0; i < ps->depth; i++) {
		if (ps->stack[i].dev == sb->st_dev && ps->stack[i].ino == sb->st_ino) {
			path_problem(ps, path, "included from itself (a loop)");
			return;
		}
	}
	buf_t text = BUF_INIT;
	if (safeio_read_file(path, SPAM_RULES_FILE_MAX, &text) < 0) {
		if (errno == EFBIG)
			path_problem(ps, path, "larger than %u bytes", SPAM_RULES_FILE_MAX);
		else
			path_problem(ps, path, "cannot read: %s", strerror(errno));
		buf_free(&text);
		return;
	}
	struct spam_file *f = add_file(ps, path, lenient, sb);
	if (f == NULL) {
		path_problem(ps, path, "more than %d rule files", SPAM_RULES_FILES_MAX);
		buf_free(&text);
		return;
	}
	ps->stack[ps->depth].dev = sb->st_dev;
	ps->stack[ps->depth].ino = sb->st_ino;
	ps->depth++;
	parse_text(ps, f, text.data != NULL ? text.data : (char *)"", text.len);
	ps->depth--;
	buf_free(&text);
}

static int compare_names(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static void read_dir(struct spam_parse *ps, const char *path, bool lenient, const struct stat *sb)
{
	DIR *d = opendir(path);
	if (d == NULL) {
		path_problem(ps, path, "cannot read the folder: %s", strerror(errno));
		return;
	}
	if (add_file(ps, path, lenient, sb) == NULL) {
		closedir(d);
		path_problem(ps, path, "more than %d rule files", SPAM_RULES_FILES_MAX);
		return;
	}
	strlist_t names = { 0 };
	struct dirent *e;
	while ((e = readdir(d)) != NULL) {
		size_t n = strlen(e->d_name);
		if (n > 3 && strcmp(e->d_name + n - 3, ".cf") == 0 && e->d_name[0] != '.')
			strlist_add(&names, e->d_name);
		if (names.count > SPAM_RULES_FILES_MAX)
			break;
	}
	closedir(d);
	qsort(names.items, names.count, sizeof(char *), compare_names);
	for (size_t i = 0; i < names.count && ps->err == NULL; i++) {
		char *full = safeio_path_join(path, names.items[i]);
		struct stat fsb;
		if (stat(full, &fsb) == 0 && S_ISREG(fsb.st_mode))
			read_file(ps, full, lenient, &fsb);
		free(full);
	}
	strlist_free(&names);
}

static void read_path(struct spam_parse *ps, const char *path, bool lenient, bool top)
{
	struct stat sb;
	if (stat(path, &sb) < 0) {
		path_problem(ps, path, "cannot read: %s", strerror(errno));
		return;
	}
	if (S_ISDIR(sb.st_mode)) {
		if (!top) {
			path_problem(ps, path, "include names a folder");
			return;
		}
		read_dir(ps, path, lenient, &sb);
	} else if (S_ISREG(sb.st_mode)) {
		read_file(ps, path, lenient, &sb);
	} else {
		path_problem(ps, path, "not a file or folder");
	}
}

/* ---- the entry points ---------------------------------------------------------------------- */

void spam_rule_free(struct spam_rule *r)
{
	free(r->name);
	free(r->pattern);
	pcre2_code_free(r->re);
	hs_free_database(r->gate);
	free(r->hdr.name);
	free(r->if_unset);
	spam_litset_free(&r->lits);
	free(r->meta_text);
	spam_expr_free(&r->expr);
	free(r->deps);
	free(r->eval_name);
	for (size_t i = 0; i < r->args.count; i++)
		free(r->args.str[i]);
	free(r->args.str);
	free(r->args.num);
	free(r->describe);
	memset(r, 0, sizeof(*r));
}

void spam_file_free(struct spam_file *f)
{
	if (f == NULL)
		return;
	free(f->path);
	buf_free(&f->skipped_evals);
	free(f->first_regex_problem);
	free(f->first_other_problem);
	free(f);
}

static void free_settings(void *v)
{
	struct spam_settings *s = v;
	free(s->describe);
	free(s);
}

void spam_parse_free(struct spam_parse *ps)
{
	for (size_t i = 0; i < ps->count; i++)
		spam_rule_free(&ps->rules[i]);
	free(ps->rules);
	hashmap_free(&ps->names, NULL);
	hashmap_free(&ps->settings, free_settings);
	hashmap_free(&ps->replace_tag, free);
	hashmap_free(&ps->replace_pre, free);
	hashmap_free(&ps->replace_inter, free);
	hashmap_free(&ps->replace_post, free);
	hashmap_free(&ps->compat, NULL);
	free(ps->replace_start);
	free(ps->replace_end);
	for (size_t i = 0; i < ps->file_count; i++)
		spam_file_free(ps->files[i]);
	free(ps->files);
	free(ps->err);
	memset(ps, 0, sizeof(*ps));
}

struct spam_rules *spam_rules_load(const struct spam_rules_source *src, FILE *warnings,
				   char **err_r)
{
	struct spam_parse ps = { .warnings = warnings, .cache_path = src->cache_path,
				 .lazy_jit = src->lazy_jit };
	*err_r = NULL;
	for (size_t i = 0; i < src->count && ps.err == NULL; i++)
		read_path(&ps, src->paths[i], src->lenient != NULL && src->lenient[i], true);
	struct spam_rules *rules = NULL;
	if (ps.err == NULL)
		rules = spam_rules_build(&ps);
	if (rules == NULL) {
		*err_r = ps.err != NULL ? ps.err : xstrdup("spam rules: cannot load");
		ps.err = NULL;
	}
	spam_parse_free(&ps);
	/* Reading and compiling left much freed memory behind (more than the
	 * rules keep, with SpamAssassin's files): give it back before the
	 * scanners are forked. */
	malloc_trim(0);
	return rules;
}

struct spam_rules *spam_rules_parse_text(const char *name, const char *text, size_t len,
					 bool lenient, FILE *warnings, char **err_r)
{
	struct spam_parse ps = { .warnings = warnings };
	*err_r = NULL;
	struct stat sb;
	memset(&sb, 0, sizeof(sb));
	sb.st_mode = S_IFREG;
	struct spam_rules *rules = NULL;
	if (len > SPAM_RULES_FILE_MAX) {
		path_problem(&ps, name, "larger than %u bytes", SPAM_RULES_FILE_MAX);
	} else {
		struct spam_file *f = add_file(&ps, name, lenient, &sb);
		char *copy = xmalloc(len + 1);
		memcpy(copy, text, len);
		copy[len] = '\0';
		ps.depth = 1;
		parse_text(&ps, f, copy, len);
		free(copy);
	}
	if (ps.err == NULL)
		rules = spam_rules_build(&ps);
	if (rules == NULL) {
		*err_r = ps.err != NULL ? ps.err : xstrdup("spam rules: cannot load");
		ps.err = NULL;
	}
	spam_parse_free(&ps);
	return rules;
}

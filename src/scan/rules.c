/*
 * rules.c - the content policy stage of the scan pipeline: every rule of
 * content_rules_file (compiled by rules_parse.c) is tried on the MIME
 * pass's summary of the message - attachment names, extensions, sizes and
 * types, the names inside attached archives (rules_archive.c), header
 * fields, and the envelope - and the matching rules become one verdict.
 *
 * The first matching rule whose action blocks (reject, tempfail,
 * discard, quarantine) decides; after it only warn and tag rules are
 * tried. Every matching rule is logged and listed as "rule:NAME".
 *
 * Untrusted input: the message summary (file names, header values,
 * archive bytes). Regex matches are bounded by PCRE2's match, depth and
 * heap limits (a match that reaches them counts as no match, and is
 * logged); archive walks by the limits of rules_archive.c, shared by all
 * the parts of a message. Runs in the unprivileged scanner processes and
 * in `postern scan`.
 */
#include "rules.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../lib/buf.h"
#include "../lib/log.h"
#include "../lib/xalloc.h"
#include "rules_impl.h"

#define LOG_NAME_MAX 120 /* bytes of a file name quoted in a log line */

/* What one message is judged with. */
struct judge {
	struct scan_rules *set;
	const struct scan_message *m;
	/* Archive listings, made when a rule first needs one, per part. */
	struct scan_rules_archive_listing *listings;
	bool *listed;
	struct scan_rules_archive_limits left; /* what is left of the message's budget */
	uint64_t deadline_ms;
};

/* Where a rule matched, for the log. */
struct where {
	long part;            /* -1: not a part */
	const char *member;   /* a name inside an archive */
	const char *header;   /* a header field's name */
	const char *problem;  /* why an archive is unreadable */
};

static uint64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* ---- regexes ------------------------------------------------------------ */

static bool regex_matches(struct judge *j, const struct rule *r, const struct rule_test *t,
			  const char *s, size_t len)
{
	int rc = pcre2_match(t->regex, (PCRE2_SPTR)s, len, 0, 0, j->set->match_data,
			     j->set->match_ctx);
	if (rc >= 0)
		return true;
	if (rc == PCRE2_ERROR_NOMATCH)
		return false;
	PCRE2_UCHAR msg[120];
	pcre2_get_error_message(rc, msg, sizeof(msg));
	log_warn("%s%scontent rule %s: %s gave up on a %zu-byte value (%s): counted as no match",
		 j->m->env != NULL && j->m->env->queue_id[0] != '\0' ? j->m->env->queue_id : "",
		 j->m->env != NULL && j->m->env->queue_id[0] != '\0' ? ": " : "", r->name,
		 t->regex_text, len, (char *)msg);
	return false;
}

/* ---- names -------------------------------------------------------------- */

/* The last component of a path ("dir/x.exe", "C:\\x.exe" -> "x.exe"). */
static const char *base_name(const char *name)
{
	const char *base = name;
	for (const char *p = name; *p != '\0'; p++)
		if (*p == '/' || *p == '\\')
			base = p + 1;
	return base;
}

static bool is_trailing_junk(char c)
{
	return c == '.' || c == ' ' || c == '\t';
}

/* Length of name without the dots and spaces Windows drops at its end. */
static size_t trimmed_len(const char *name, size_t n)
{
	while (n > 0 && is_trailing_junk(name[n - 1]))
		n--;
	return n;
}

/* The extension of name[0..n): after its last dot; false if none. */
static bool extension_of(const char *name, size_t n, const char **ext_r, size_t *len_r)
{
	for (size_t i = n; i > 0; i--) {
		if (name[i - 1] == '.') {
			*ext_r = name + i;
			*len_r = n - i;
			return n - i > 0;
		}
	}
	return false;
}

static bool in_list_nocase(const strlist_t *words, const char *s, size_t n)
{
	for (size_t i = 0; i < words->count; i++)
		if (strlen(words->items[i]) == n && strncasecmp(words->items[i], s, n) == 0)
			return true;
	return false;
}

/* "invoice.pdf.exe", "photo.jpg   .scr": the last extension is listed,
 * and before it (spaces dropped) comes another that looks like a file
 * type: 1 to 5 letters and digits, at least one a letter. */
static bool has_double_extension(const char *base, const strlist_t *words)
{
	size_t n = trimmed_len(base, strlen(base));
	const char *ext;
	size_t ext_len;
	if (!extension_of(base, n, &ext, &ext_len) || !in_list_nocase(words, ext, ext_len))
		return false;
	size_t stem = (size_t)(ext - base) - 1;
	stem = trimmed_len(base, stem);
	const char *inner;
	size_t inner_len;
	if (!extension_of(base, stem, &inner, &inner_len) || inner_len > 5)
		return false;
	bool letter = false;
	for (size_t i = 0; i < inner_len; i++) {
		char c = inner[i];
		bool alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
		if (!alpha && !(c >= '0' && c <= '9'))
			return false;
		letter = letter || alpha;
	}
	return letter;
}

/* A test of names on one name (an attachment's or an archive member's). */
static bool name_test(struct judge *j, const struct rule *r, const struct rule_test *t,
		      const char *name)
{
	if (name == NULL)
		return false;
	const char *base = base_name(name);
	size_t n = strlen(base);
	const char *ext;
	size_t ext_len;
	switch (t->subject) {
	case SUBJ_EXTENSION:
		return extension_of(base, trimmed_len(base, n), &ext, &ext_len) &&
		       in_list_nocase(&t->words, ext, ext_len);
	case SUBJ_DOUBLE_EXTENSION:
		return has_double_extension(base, &t->words);
	case SUBJ_TRAILING_DOT_OR_SPACE:
		return n > 0 && is_trailing_junk(base[n - 1]);
	case SUBJ_FILENAME:
		if (t->compare == CMP_REGEX)
			return regex_matches(j, r, t, base, n);
		return in_list_nocase(&t->words, base, n);
	default:
		return false;
	}
}

/* ---- types -------------------------------------------------------------- */

/* "text/plain" against "text/plain", or "text/" and a star; parameters ignored. */
static bool type_listed(const strlist_t *words, const char *type)
{
	if (type == NULL)
		return false;
	size_t n = strcspn(type, "; \t");
	for (size_t i = 0; i < words->count; i++) {
		const char *w = words->items[i];
		size_t wl = strlen(w);
		if (wl >= 2 && w[wl - 1] == '*') {
			if (n >= wl - 1 && strncasecmp(type, w, wl - 1) == 0)
				return true;
		} else if (n == wl && strncasecmp(type, w, n) == 0) {
			return true;
		}
	}
	return false;
}

/* ---- archives ----------------------------------------------------------- */

static struct scan_rules_archive_listing *listing_of(struct judge *j, size_t part)
{
	const struct scan_part *p = &j->m->parts[part];
	if (p->archive.len == 0)
		return NULL;
	if (j->listings == NULL) {
		j->listings = xcalloc(j->m->part_count, sizeof(*j->listings));
		j->listed = xcalloc(j->m->part_count, sizeof(*j->listed));
	}
	struct scan_rules_archive_listing *l = &j->listings[part];
	if (j->listed[part])
		return l;
	j->listed[part] = true;
	uint64_t now = now_ms();
	j->left.max_ms = now < j->deadline_ms ? j->deadline_ms - now : 0;
	scan_rules_archive_list(p->archive.data, p->archive.len, &j->left, l);
	j->left.max_entries -= l->entries_seen < j->left.max_entries ? l->entries_seen
								       : j->left.max_entries;
	j->left.max_bytes -= l->bytes_read < j->left.max_bytes ? l->bytes_read
								: j->left.max_bytes;
	if (p->archive_truncated) {
		l->unreadable = true;
		if (l->problem[0] == '\0')
			snprintf(l->problem, sizeof(l->problem), "kept only in part (too large)");
	}
	return l;
}

/* ---- part tests --------------------------------------------------------- */

static bool part_test(struct judge *j, const struct rule *r, const struct rule_test *t,
		      size_t part, struct where *w)
{
	const struct scan_part *p = &j->m->parts[part];
	struct scan_rules_archive_listing *l;
	switch (t->subject) {
	case SUBJ_SIZE:
		return p->decoded_size >= t->min && p->decoded_size <= t->max;
	case SUBJ_TYPE:
		return type_listed(&t->words, p->content_type) ||
		       type_listed(&t->words, p->sniffed_type);
	case SUBJ_DECLARED_TYPE:
		return type_listed(&t->words, p->content_type);
	case SUBJ_DETECTED_TYPE:
		return type_listed(&t->words, p->sniffed_type);
	case SUBJ_ENCRYPTED_ARCHIVE:
		l = listing_of(j, part);
		return l != NULL && l->encrypted;
	case SUBJ_UNREADABLE_ARCHIVE:
		l = listing_of(j, part);
		if (l == NULL || !l->unreadable)
			return false;
		w->problem = l->problem;
		return true;
	default:
		return name_test(j, r, t, p->filename);
	}
}

/* Do all the rule's tests of names inside archives hold for one member? */
static bool member_matches(struct judge *j, const struct rule *r,
			   const struct scan_rules_archive_member *mem)
{
	for (size_t i = 0; i < r->test_count; i++)
		if (r->tests[i].in_archive && !name_test(j, r, &r->tests[i], mem->name))
			return false;
	return true;
}

static bool is_archive_flag(const struct rule_test *t)
{
	return t->subject == SUBJ_ENCRYPTED_ARCHIVE || t->subject == SUBJ_UNREADABLE_ARCHIVE;
}

/* Do all part tests hold for one part (and its archive's names)? Cheap
 * tests first: the archive is opened only when the others hold. */
static bool part_matches(struct judge *j, const struct rule *r, size_t part, bool members,
			 struct where *w)
{
	for (int pass = 0; pass < 2; pass++) {
		for (size_t i = 0; i < r->test_count; i++) {
			const struct rule_test *t = &r->tests[i];
			if (!rules_subject_is_part(t->subject) || t->in_archive ||
			    is_archive_flag(t) != (pass == 1))
				continue;
			if (!part_test(j, r, t, part, w))
				return false;
		}
	}
	if (members) {
		struct scan_rules_archive_listing *l = listing_of(j, part);
		if (l == NULL)
			return false;
		for (size_t k = 0; k < l->count; k++) {
			if (member_matches(j, r, &l->members[k])) {
				w->member = l->members[k].name;
				return true;
			}
		}
		return false;
	}
	return true;
}

/* ---- headers and envelope ----------------------------------------------- */

static bool header_test(struct judge *j, const struct rule *r, const struct rule_test *t,
			struct where *w)
{
	for (size_t i = 0; i < j->m->header_count; i++) {
		const struct scan_header *h = &j->m->headers[i];
		if (t->subject == SUBJ_HEADER && h->part != 0)
			continue;
		if (t->header_name != NULL && !str_eq_nocase(t->header_name, h->name))
			continue;
		const char *raw = h->raw != NULL ? h->raw : "";
		bool hit;
		if (t->compare == CMP_LONGER_THAN) {
			hit = strlen(raw) > t->min;
		} else {
			const char *value = t->raw || h->decoded == NULL ? raw : h->decoded;
			hit = regex_matches(j, r, t, value, strlen(value));
		}
		if (hit) {
			w->header = h->name;
			return true;
		}
	}
	return false;
}

/* "<a@b>" -> "a@b" (n bytes at *s). */
static const char *strip_brackets(const char *s, size_t *n)
{
	*n = strlen(s);
	if (*n >= 2 && s[0] == '<' && s[*n - 1] == '>') {
		*n -= 2;
		return s + 1;
	}
	return s;
}

/* An address against "user@domain", "@domain" or "" (the null sender). */
static bool address_listed(const strlist_t *words, const char *addr)
{
	size_t n;
	const char *a = strip_brackets(addr != NULL ? addr : "", &n);
	const char *at = NULL;
	for (size_t i = n; i > 0 && at == NULL; i--)
		if (a[i - 1] == '@')
			at = a + i - 1;
	for (size_t i = 0; i < words->count; i++) {
		const char *w = words->items[i];
		size_t wl = strlen(w);
		if (w[0] == '@') {
			if (at != NULL && (size_t)(a + n - at) == wl && strncasecmp(at, w, wl) == 0)
				return true;
		} else if (wl == n && strncasecmp(a, w, n) == 0) {
			return true;
		}
	}
	return false;
}

static bool text_test(struct judge *j, const struct rule *r, const struct rule_test *t,
		      const char *s, bool address)
{
	if (s == NULL)
		s = "";
	if (t->compare == CMP_REGEX) {
		size_t n = strlen(s);
		const char *v = address ? strip_brackets(s, &n) : s;
		return regex_matches(j, r, t, v, n);
	}
	return address ? address_listed(&t->words, s) : in_list_nocase(&t->words, s, strlen(s));
}

static bool client_in(const cidr_list_t *cidrs, const char *addr)
{
	if (addr == NULL)
		return false;
	if (strncasecmp(addr, "IPv6:", 5) == 0)
		addr += 5;
	struct sockaddr_in v4 = { .sin_family = AF_INET };
	struct sockaddr_in6 v6 = { .sin6_family = AF_INET6 };
	if (inet_pton(AF_INET, addr, &v4.sin_addr) == 1)
		return cidr_list_match(cidrs, (struct sockaddr *)&v4);
	if (inet_pton(AF_INET6, addr, &v6.sin6_addr) == 1)
		return cidr_list_match(cidrs, (struct sockaddr *)&v6);
	return false;
}

static bool envelope_test(struct judge *j, const struct rule *r, const struct rule_test *t)
{
	static const struct scan_envelope none = { "", "", NULL, "", "" };
	const struct scan_envelope *env = j->m->env != NULL ? j->m->env : &none;
	switch (t->subject) {
	case SUBJ_SENDER:
		return text_test(j, r, t, env->sender, true);
	case SUBJ_RECIPIENT:
		for (size_t i = 0; env->rcpts != NULL && i < env->rcpts->count; i++)
			if (text_test(j, r, t, env->rcpts->items[i], true))
				return true;
		return false;
	case SUBJ_CLIENT:
		if (t->compare == CMP_CIDRS)
			return client_in(&t->cidrs, env->client_addr);
		return text_test(j, r, t, env->client_addr, false);
	case SUBJ_HELO:
		return text_test(j, r, t, env->helo, false);
	default:
		return false;
	}
}

/* ---- one rule ----------------------------------------------------------- */

static bool rule_matches(struct judge *j, const struct rule *r, struct where *w)
{
	bool parts = false, members = false;
	for (size_t i = 0; i < r->test_count; i++) {
		const struct rule_test *t = &r->tests[i];
		if (rules_subject_is_part(t->subject)) {
			parts = true;
			members = members || t->in_archive;
			continue;
		}
		bool ok = t->subject == SUBJ_HEADER || t->subject == SUBJ_ANY_HEADER
				  ? header_test(j, r, t, w)
				  : envelope_test(j, r, t);
		if (!ok)
			return false;
	}
	if (!parts)
		return true;
	for (size_t p = 0; p < j->m->part_count; p++) {
		struct where pw = *w;
		if (part_matches(j, r, p, members, &pw)) {
			*w = pw;
			w->part = (long)p;
			return true;
		}
	}
	return false;
}

/* ---- the verdict -------------------------------------------------------- */

static bool is_blocking(enum rule_action a)
{
	return a == RULE_REJECT || a == RULE_TEMPFAIL || a == RULE_DISCARD ||
	       a == RULE_QUARANTINE;
}

static void add_once(strlist_t *l, const char *s, size_t max)
{
	for (size_t i = 0; i < l->count; i++)
		if (strcmp(l->items[i], s) == 0)
			return;
	if (l->count < max)
		strlist_add(l, s);
}

/* name, quoted for a log line and cut to LOG_NAME_MAX bytes. */
static void put_quoted(buf_t *b, const char *name)
{
	size_t n = strlen(name);
	buf_putc(b, '"');
	for (size_t i = 0; i < n && i < LOG_NAME_MAX; i++) {
		if (name[i] == '"' || name[i] == '\\')
			buf_putc(b, '\\');
		buf_putc(b, name[i]);
	}
	buf_puts(b, n > LOG_NAME_MAX ? "...\"" : "\"");
}

static void log_hit(struct judge *j, const struct rule *r, const struct where *w)
{
	buf_t line = BUF_INIT;
	const char *qid = j->m->env != NULL ? j->m->env->queue_id : "";
	if (qid != NULL && qid[0] != '\0')
		buf_printf(&line, "%s: ", qid);
	buf_printf(&line, "content rule: rule=%s action=%s", r->name, rules_action_word(r->action));
	if (w->part >= 0) {
		const struct scan_part *p = &j->m->parts[w->part];
		buf_printf(&line, " part=%ld", w->part);
		if (p->filename != NULL) {
			buf_puts(&line, " filename=");
			put_quoted(&line, p->filename);
		}
		buf_printf(&line, " type=%s", p->content_type != NULL ? p->content_type : "-");
		if (p->sniffed_type != NULL)
			buf_printf(&line, " detected=%s", p->sniffed_type);
	}
	if (w->member != NULL) {
		buf_puts(&line, " member=");
		put_quoted(&line, w->member);
	}
	if (w->problem != NULL) {
		buf_puts(&line, " archive=");
		put_quoted(&line, w->problem);
	}
	if (w->header != NULL) {
		buf_puts(&line, " header=");
		put_quoted(&line, w->header);
	}
	if (r->text != NULL && !is_blocking(r->action) && r->action != RULE_TAG)
		buf_printf(&line, " text=\"%s\"", r->text);
	log_info("%s", buf_cstr(&line));
	buf_free(&line);
}

static void decide(const struct rule *r, struct scan_verdict *v)
{
	static const enum scan_action to_scan[] = {
		[RULE_REJECT] = SCAN_REJECT, [RULE_TEMPFAIL] = SCAN_TEMPFAIL,
		[RULE_DISCARD] = SCAN_DISCARD, [RULE_QUARANTINE] = SCAN_QUARANTINE,
	};
	v->action = to_scan[r->action];
	snprintf(v->reason, sizeof(v->reason), "content_rule");
	v->code = 0;
	v->status[0] = '\0';
	if (r->action == RULE_REJECT) {
		v->code = 550;
		snprintf(v->status, sizeof(v->status), "5.7.1");
	} else if (r->action == RULE_TEMPFAIL) {
		v->code = 451;
		snprintf(v->status, sizeof(v->status), "4.7.1");
	}
	if (r->text != NULL)
		snprintf(v->text, sizeof(v->text), "%s", r->text);
	else if (r->action == RULE_REJECT)
		snprintf(v->text, sizeof(v->text), "message refused by content rule %s", r->name);
	else if (r->action == RULE_TEMPFAIL)
		snprintf(v->text, sizeof(v->text), "message deferred by content rule %s, "
			 "try again later", r->name);
	else
		snprintf(v->text, sizeof(v->text), "content rule %s", r->name);
}

static void apply(const struct rule *r, struct scan_verdict *v, bool *decided)
{
	char hit[SCAN_RULES_NAME_MAX + 8];
	snprintf(hit, sizeof(hit), "rule:%s", r->name);
	add_once(&v->hits, hit, SCAN_HITS_MAX);
	if (r->action == RULE_TAG) {
		buf_t field = BUF_INIT;
		if (r->text != NULL)
			buf_puts(&field, r->text);
		else
			buf_printf(&field, "X-Postern-Rule: %s", r->name);
		add_once(&v->headers, buf_cstr(&field), SCAN_HEADERS_MAX);
		buf_free(&field);
		if (v->action == SCAN_ACCEPT)
			v->action = SCAN_TAG;
	} else if (is_blocking(r->action) && !*decided) {
		decide(r, v);
		*decided = true;
	}
}

int scan_rules_judge(struct scan_rules *rules, const struct scan_message *m,
		     struct scan_verdict *v)
{
	struct judge j = { .set = rules, .m = m, .left = scan_rules_archive_default_limits };
	j.deadline_ms = now_ms() + j.left.max_ms;
	bool decided = v->action != SCAN_ACCEPT && v->action != SCAN_TAG;
	for (size_t i = 0; i < rules->count; i++) {
		const struct rule *r = &rules->rules[i];
		if (decided && is_blocking(r->action))
			continue;
		struct where w = { .part = -1 };
		if (!rule_matches(&j, r, &w))
			continue;
		log_hit(&j, r, &w);
		apply(r, v, &decided);
	}
	if (j.listings != NULL) {
		for (size_t p = 0; p < m->part_count; p++)
			scan_rules_archive_listing_free(&j.listings[p]);
		free(j.listings);
		free(j.listed);
	}
	return 0;
}

/* ---- the stage ---------------------------------------------------------- */

static int stage_run(void *ctx, const struct scan_message *m, struct scan_verdict *v)
{
	return scan_rules_judge(ctx, m, v);
}

static void stage_free(void *ctx)
{
	struct scan_rules *rules = ctx;
	scan_rules_free(&rules);
}

/* Load path, collecting the problems as text; their number. */
static struct scan_rules *load_collecting(const char *path, char **text_r, int *count_r)
{
	char *text = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&text, &len);
	if (f == NULL)
		log_fatal("content rules: open_memstream: out of memory");
	struct scan_rules *rules = scan_rules_load(path, f);
	fclose(f);
	int count = 0;
	for (size_t i = 0; i < len; i++)
		count += text[i] == '\n';
	*text_r = text;
	*count_r = count;
	return rules;
}

int scan_rules_stage_new(const struct config *cfg, struct scan_stage *stage_r, char **err_r)
{
	const char *path = cfg->content_rules_file;
	if (path == NULL || path[0] == '\0')
		return 1;
	char *problems;
	int count;
	struct scan_rules *rules = load_collecting(path, &problems, &count);
	if (rules == NULL) {
		/* One line for the log: the first problem and how many follow. */
		size_t first = strcspn(problems, "\n");
		buf_t err = BUF_INIT;
		buf_append(&err, problems, first);
		if (count > 1)
			buf_printf(&err, " (and %d more problem%s: postern check-config lists them)",
				   count - 1, count > 2 ? "s" : "");
		*err_r = buf_steal(&err);
		free(problems);
		return -1;
	}
	free(problems);
	log_info("content rules: %zu rule%s from %s", rules->count, rules->count == 1 ? "" : "s",
		 path);
	memset(stage_r, 0, sizeof(*stage_r));
	stage_r->name = "rules";
	stage_r->run = stage_run;
	stage_r->stale = NULL;
	stage_r->free = stage_free;
	stage_r->ctx = rules;
	return 0;
}

int scan_rules_check(const struct config *cfg, FILE *errors)
{
	const char *path = cfg->content_rules_file;
	if (path == NULL || path[0] == '\0')
		return 0;
	char *problems;
	int count;
	struct scan_rules *rules = load_collecting(path, &problems, &count);
	fputs(problems, errors);
	free(problems);
	if (rules == NULL && count == 0)
		count = 1;
	scan_rules_free(&rules);
	return count;
}

/*
 * rules_parse.c - the content rules file (docs/postern-rules.5) read and
 * compiled once, at start and on reload: "rule NAME" starts a rule, the
 * lines after it are its tests (all must hold) and its one action, with
 * an optional reply text in double quotes. Regexes are PCRE2, compiled
 * here (JIT where the machine has it) so that no scan compiles anything.
 *
 * Input: a file written by the administrator, bounded in size, line
 * length and rule count; every problem is reported as "FILE:LINE:
 * message" and the whole file is refused. Runs in the scan master (or
 * `postern scan`, check-config) before the scanners fork.
 */
#include "rules.h"

#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "../lib/buf.h"
#include "../lib/diag.h"
#include "../lib/safeio.h"
#include "../lib/xalloc.h"
#include "rules_impl.h"

#define TOKENS_MAX 4096 /* values in one test */

enum token_kind { TOK_WORD, TOK_REGEX, TOK_QUOTED };

struct token {
	enum token_kind kind;
	char *text;      /* the word, the regex without its slashes, the unquoted text */
	char flags[8];   /* regex flags */
};

/* A test or action: one line, or several joined by trailing commas. */
struct logical_line {
	struct token *toks;
	size_t count;
	unsigned line;   /* where it starts */
};

struct parser {
	const char *file;
	FILE *errors;
	int error_count;
	struct scan_rules *set;
	bool in_rule;    /* a "rule" line was seen (even a bad one) */
	bool rule_ok;    /* ... and it named the rule well: lines go to it */
	int rule_errors; /* problems in the current rule's lines */
};

static void report(struct parser *ps, unsigned line, const char *fmt, ...) PRINTF_LIKE(3, 4);

static void report(struct parser *ps, unsigned line, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	diag_vprint(ps->errors, ps->file, line, fmt, ap);
	va_end(ap);
	ps->error_count++;
	ps->rule_errors++;
}

/* ---- words -------------------------------------------------------------- */

static const char *const action_words[] = {
	[RULE_REJECT] = "reject", [RULE_TEMPFAIL] = "tempfail", [RULE_DISCARD] = "discard",
	[RULE_QUARANTINE] = "quarantine", [RULE_WARN] = "warn", [RULE_TAG] = "tag",
};

const char *rules_action_word(enum rule_action a)
{
	return (size_t)a < ARRAY_LEN(action_words) ? action_words[a] : "?";
}

/* How each test is written. */
struct test_word {
	const char *word;
	enum rule_subject subject;
	bool words, regex, cidrs, size, flag, header;
	bool archive_ok; /* may follow "in-archive" */
};

static const struct test_word test_words[] = {
	{ "extension", SUBJ_EXTENSION, .words = true, .archive_ok = true },
	{ "double-extension", SUBJ_DOUBLE_EXTENSION, .words = true, .archive_ok = true },
	{ "filename", SUBJ_FILENAME, .words = true, .regex = true, .archive_ok = true },
	{ "trailing-dot-or-space", SUBJ_TRAILING_DOT_OR_SPACE, .flag = true, .archive_ok = true },
	{ "size", SUBJ_SIZE, .size = true },
	{ "type", SUBJ_TYPE, .words = true },
	{ "declared-type", SUBJ_DECLARED_TYPE, .words = true },
	{ "detected-type", SUBJ_DETECTED_TYPE, .words = true },
	{ "encrypted-archive", SUBJ_ENCRYPTED_ARCHIVE, .flag = true },
	{ "unreadable-archive", SUBJ_UNREADABLE_ARCHIVE, .flag = true },
	{ "header", SUBJ_HEADER, .header = true },
	{ "any-header", SUBJ_ANY_HEADER, .header = true },
	{ "sender", SUBJ_SENDER, .words = true, .regex = true },
	{ "recipient", SUBJ_RECIPIENT, .words = true, .regex = true },
	{ "client", SUBJ_CLIENT, .cidrs = true, .regex = true },
	{ "helo", SUBJ_HELO, .words = true, .regex = true },
};

const char *rules_subject_word(enum rule_subject s)
{
	for (size_t i = 0; i < ARRAY_LEN(test_words); i++)
		if (test_words[i].subject == s)
			return test_words[i].word;
	return "?";
}

bool rules_subject_is_part(enum rule_subject s)
{
	return s <= SUBJ_UNREADABLE_ARCHIVE;
}

static const struct test_word *find_test_word(const char *w)
{
	for (size_t i = 0; i < ARRAY_LEN(test_words); i++)
		if (strcmp(test_words[i].word, w) == 0)
			return &test_words[i];
	return NULL;
}

static int find_action_word(const char *w)
{
	for (size_t i = 0; i < ARRAY_LEN(action_words); i++)
		if (strcmp(action_words[i], w) == 0)
			return (int)i;
	return -1;
}

/* ---- tokens ------------------------------------------------------------- */

static void line_free(struct logical_line *ll)
{
	for (size_t i = 0; i < ll->count; i++)
		free(ll->toks[i].text);
	xfree(&ll->toks);
	ll->count = 0;
}

static void add_token(struct logical_line *ll, enum token_kind kind, const char *p, size_t n)
{
	ll->toks = xreallocarray(ll->toks, ll->count + 1, sizeof(*ll->toks));
	struct token *t = &ll->toks[ll->count++];
	memset(t, 0, sizeof(*t));
	t->kind = kind;
	t->text = xstrndup(p, n);
}

static bool is_space(char c)
{
	return c == ' ' || c == '\t';
}

/* Scan "/pattern/flags" at s[0..len); returns bytes used or 0 (reported). */
static size_t scan_regex(struct parser *ps, unsigned line, const char *s, size_t len,
			 struct logical_line *ll)
{
	size_t i = 1;
	while (i < len && s[i] != '/') {
		if (s[i] == '\\')
			i++;
		i++;
	}
	if (i >= len) {
		report(ps, line, "regex not closed: it must end with / (write \\/ for a slash in it)");
		return 0;
	}
	size_t close = i++;
	size_t flags_start = i;
	while (i < len && !is_space(s[i]) && s[i] != ',')
		i++;
	if (close == 1) {
		report(ps, line, "empty regex //");
		return 0;
	}
	size_t nflags = i - flags_start;
	for (size_t k = flags_start; k < i; k++) {
		if (s[k] != 'i') {
			report(ps, line, "unknown regex flag \"%c\" (the only flag is i: ignore case)",
			       s[k]);
			return 0;
		}
	}
	add_token(ll, TOK_REGEX, s + 1, close - 1);
	struct token *t = &ll->toks[ll->count - 1];
	memcpy(t->flags, s + flags_start, nflags < sizeof(t->flags) - 1 ? nflags : 1);
	return i;
}

/* Scan "text" at s[0..len); returns bytes used or 0 (reported). */
static size_t scan_quoted(struct parser *ps, unsigned line, const char *s, size_t len,
			  struct logical_line *ll)
{
	buf_t text = BUF_INIT;
	size_t i = 1;
	for (; i < len && s[i] != '"'; i++) {
		if (s[i] == '\\') {
			if (i + 1 >= len || (s[i + 1] != '"' && s[i + 1] != '\\')) {
				report(ps, line, "in quoted text a backslash may only come before \" or \\");
				buf_free(&text);
				return 0;
			}
			i++;
		}
		buf_putc(&text, s[i]);
	}
	if (i >= len) {
		report(ps, line, "quoted text not closed with \"");
		buf_free(&text);
		return 0;
	}
	i++;
	if (i < len && !is_space(s[i]) && s[i] != '#') {
		report(ps, line, "expected a space after the closing \"");
		buf_free(&text);
		return 0;
	}
	add_token(ll, TOK_QUOTED, text.data != NULL ? text.data : "", text.len);
	buf_free(&text);
	return i;
}

/*
 * Split one physical line into ll's tokens. Values are separated by
 * white space and/or commas; '#' at the start of a token starts a
 * comment. *comma_r: the line's last value was followed by a comma (the
 * list goes on on the next line). false = a problem (reported).
 */
static bool tokenize(struct parser *ps, unsigned line, const char *s, size_t len,
		     struct logical_line *ll, bool *comma_r)
{
	size_t i = 0;
	*comma_r = false;
	while (i < len) {
		char c = s[i];
		if (is_space(c)) {
			i++;
			continue;
		}
		if (c == ',') {
			*comma_r = true;
			i++;
			continue;
		}
		if (c == '#')
			break;
		*comma_r = false;
		size_t used;
		if (c == '/') {
			used = scan_regex(ps, line, s + i, len - i, ll);
		} else if (c == '"') {
			used = scan_quoted(ps, line, s + i, len - i, ll);
		} else {
			size_t j = i;
			while (j < len && !is_space(s[j]) && s[j] != ',')
				j++;
			add_token(ll, TOK_WORD, s + i, j - i);
			used = j - i;
		}
		if (used == 0)
			return false;
		i += used;
	}
	return true;
}

/* ---- checks of values --------------------------------------------------- */

static bool valid_rule_name(const char *s)
{
	size_t n = strlen(s);
	if (n == 0 || n > SCAN_RULES_NAME_MAX)
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = s[i];
		bool alnum = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
		if (!alnum && !(i > 0 && (c == '-' || c == '_' || c == '.')))
			return false;
	}
	return true;
}

static bool printable_ascii(const char *s)
{
	for (; *s != '\0'; s++)
		if ((unsigned char)*s < 0x20 || (unsigned char)*s > 0x7e)
			return false;
	return true;
}

/* A header field name: printable ASCII without ':' (RFC 5322 2.2). */
static bool valid_field_name(const char *s, size_t n)
{
	if (n == 0 || n > 76)
		return false;
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)s[i] < 33 || (unsigned char)s[i] > 126 || s[i] == ':')
			return false;
	return true;
}

/* A tag's "Name: value". NULL = fine, else what is wrong. */
static const char *check_tag_field(const char *s)
{
	const char *colon = strchr(s, ':');
	if (colon == NULL || !valid_field_name(s, (size_t)(colon - s)))
		return "tag: the text must be a header field, \"Name: value\"";
	if (colon[1] != ' ' || colon[2] == '\0' || colon[2] == ' ')
		return "tag: write one space after the colon, then the value";
	return NULL;
}

/* ---- building tests ----------------------------------------------------- */

static struct rule *current(struct parser *ps)
{
	return &ps->set->rules[ps->set->count - 1];
}

static bool compile_regex(struct parser *ps, unsigned line, const struct token *t,
			  struct rule_test *test)
{
	int code;
	PCRE2_SIZE offset;
	uint32_t opts = PCRE2_UTF | PCRE2_MATCH_INVALID_UTF | PCRE2_NEVER_BACKSLASH_C;
	if (strchr(t->flags, 'i') != NULL)
		opts |= PCRE2_CASELESS;
	test->regex = pcre2_compile((PCRE2_SPTR)t->text, strlen(t->text), opts, &code, &offset,
				    NULL);
	if (test->regex == NULL) {
		PCRE2_UCHAR msg[160];
		pcre2_get_error_message(code, msg, sizeof(msg));
		report(ps, line, "bad regex /%s/: %s (at character %zu)", t->text, (char *)msg,
		       (size_t)offset + 1);
		return false;
	}
	/* JIT where the machine supports it; the interpreter otherwise. */
	(void)pcre2_jit_compile(test->regex, PCRE2_JIT_COMPLETE);
	buf_t text = BUF_INIT;
	buf_printf(&text, "/%s/%s", t->text, t->flags);
	test->regex_text = buf_steal(&text);
	test->compare = CMP_REGEX;
	return true;
}

/* "exe", ".EXE" -> "exe"; an extension has no dot of its own. */
static bool add_extension(struct parser *ps, unsigned line, const char *w, strlist_t *l)
{
	if (w[0] == '.')
		w++;
	if (w[0] == '\0' || strchr(w, '.') != NULL || strchr(w, '/') != NULL) {
		report(ps, line, "\"%s\" is not an extension: write exe, not file.exe (the last "
		       "part of a name, after its last dot)", w);
		return false;
	}
	strlist_add(l, w);
	str_lower(l->items[l->count - 1]);
	return true;
}

static bool add_type(struct parser *ps, unsigned line, const char *w, strlist_t *l)
{
	const char *slash = strchr(w, '/');
	if (slash == NULL || slash == w || slash[1] == '\0' || strchr(slash + 1, '/') != NULL ||
	    (strchr(w, '*') != NULL && strcmp(slash + 1, "*") != 0)) {
		report(ps, line, "\"%s\" is not a content type such as application/zip or image/*", w);
		return false;
	}
	strlist_add(l, w);
	str_lower(l->items[l->count - 1]);
	return true;
}

/* Addresses: "user@example.test", "@example.test" (the domain), "<>"
 * (the null sender). Angle brackets are optional. */
static bool add_address(struct parser *ps, unsigned line, const char *w, strlist_t *l)
{
	size_t n = strlen(w);
	if (n >= 2 && w[0] == '<' && w[n - 1] == '>') {
		w++;
		n -= 2;
	}
	char *a = xstrndup(w, n);
	bool ok = n == 0 || (strchr(a, '@') != NULL && strchr(a, '<') == NULL &&
			     strchr(a, '>') == NULL && a[n - 1] != '@');
	if (!ok)
		report(ps, line, "\"%s\" is not an address such as user@example.test, "
		       "@example.test (any address there) or <> (the null sender)", w);
	else {
		str_lower(a);
		strlist_add(l, a);
	}
	free(a);
	return ok;
}

static bool add_word(struct parser *ps, unsigned line, enum rule_subject s, const char *w,
		     strlist_t *l)
{
	switch (s) {
	case SUBJ_EXTENSION:
	case SUBJ_DOUBLE_EXTENSION:
		return add_extension(ps, line, w, l);
	case SUBJ_TYPE:
	case SUBJ_DECLARED_TYPE:
	case SUBJ_DETECTED_TYPE:
		return add_type(ps, line, w, l);
	case SUBJ_SENDER:
	case SUBJ_RECIPIENT:
		return add_address(ps, line, w, l);
	default:
		strlist_add(l, w);
		str_lower(l->items[l->count - 1]);
		return true;
	}
}

static bool parse_size_range(struct parser *ps, unsigned line, const char *w,
			     struct rule_test *test)
{
	char *copy = xstrdup(w);
	char *dash = strchr(copy, '-');
	if (dash != NULL)
		*dash = '\0';
	bool ok = str_parse_size(copy, &test->min);
	test->max = test->min;
	if (ok && dash != NULL)
		ok = str_parse_size(dash + 1, &test->max) && test->max >= test->min;
	free(copy);
	if (!ok)
		report(ps, line, "size: expected a size in bytes such as 24576 or 24k, or a range "
		       "such as 10k-20k, not \"%s\"", w);
	test->compare = CMP_SIZE_RANGE;
	return ok;
}

/* The values after the test's word: toks[0..n). */
static bool parse_values(struct parser *ps, unsigned line, const struct test_word *tw,
			 const struct token *toks, size_t n, struct rule_test *test)
{
	const char *word = tw->word;
	if (tw->flag) {
		if (n != 0)
			report(ps, line, "%s takes no value", word);
		test->compare = CMP_FLAG;
		return n == 0;
	}
	if (n == 0) {
		report(ps, line, "%s: expected %s after it", word,
		       tw->size ? "a size" : tw->regex ? "values or a /regex/" : "values");
		return false;
	}
	if (toks[0].kind == TOK_REGEX) {
		if (!tw->regex) {
			report(ps, line, "%s cannot be a regex: list the values", word);
			return false;
		}
		if (n > 1) {
			report(ps, line, "%s: one regex only, and nothing after it "
			       "(use | inside it for alternatives)", word);
			return false;
		}
		return compile_regex(ps, line, &toks[0], test);
	}
	for (size_t i = 0; i < n; i++) {
		if (toks[i].kind != TOK_WORD) {
			report(ps, line, "%s: a %s among values (mix neither regexes nor quoted "
			       "text with values)", word, toks[i].kind == TOK_REGEX ? "regex" :
			       "quoted text");
			return false;
		}
	}
	if (tw->size) {
		if (n > 1) {
			report(ps, line, "size: one size or range only");
			return false;
		}
		return parse_size_range(ps, line, toks[0].text, test);
	}
	if (tw->cidrs) {
		buf_t text = BUF_INIT;
		for (size_t i = 0; i < n; i++)
			buf_printf(&text, "%s ", toks[i].text);
		char *err = NULL;
		bool ok = cidr_list_parse(&test->cidrs, buf_cstr(&text), &err);
		if (!ok)
			report(ps, line, "client: %s (expected addresses or networks such as "
			       "192.0.2.0/24 or 2001:db8::/32, or a /regex/)",
			       err != NULL ? err : "bad network");
		free(err);
		buf_free(&text);
		test->compare = CMP_CIDRS;
		return ok;
	}
	bool ok = true;
	for (size_t i = 0; i < n; i++)
		ok = add_word(ps, line, tw->subject, toks[i].text, &test->words) && ok;
	test->compare = CMP_WORDS;
	return ok;
}

/* "header NAME longer-than N" or "header NAME [raw] /regex/". */
static bool parse_header_test(struct parser *ps, unsigned line, const struct test_word *tw,
			      const struct token *toks, size_t n, struct rule_test *test)
{
	if (n < 2 || toks[0].kind != TOK_WORD) {
		report(ps, line, "%s: expected a field name (or *) and then longer-than N or a "
		       "/regex/", tw->word);
		return false;
	}
	const char *name = toks[0].text;
	if (strcmp(name, "*") != 0) {
		if (!valid_field_name(name, strlen(name))) {
			report(ps, line, "%s: \"%s\" is not a header field name", tw->word, name);
			return false;
		}
		test->header_name = xstrdup(name);
	}
	toks++;
	n--;
	if (toks[0].kind == TOK_WORD && strcmp(toks[0].text, "longer-than") == 0) {
		if (n != 2 || toks[1].kind != TOK_WORD ||
		    !str_parse_uint(toks[1].text, &test->min)) {
			report(ps, line, "%s: longer-than expects one number of characters", tw->word);
			return false;
		}
		test->compare = CMP_LONGER_THAN;
		return true;
	}
	if (toks[0].kind == TOK_WORD && strcmp(toks[0].text, "raw") == 0) {
		test->raw = true;
		toks++;
		n--;
	}
	if (n != 1 || toks[0].kind != TOK_REGEX) {
		report(ps, line, "%s: after the field name, expected longer-than N, a /regex/ or "
		       "raw /regex/", tw->word);
		return false;
	}
	return compile_regex(ps, line, &toks[0], test);
}

static void test_free(struct rule_test *t)
{
	free(t->header_name);
	strlist_free(&t->words);
	pcre2_code_free(t->regex);
	free(t->regex_text);
	cidr_list_free(&t->cidrs);
}

static void parse_test(struct parser *ps, const struct logical_line *ll)
{
	const struct token *toks = ll->toks;
	size_t n = ll->count;
	bool in_archive = false;
	if (strcmp(toks[0].text, "in-archive") == 0) {
		in_archive = true;
		toks++;
		n--;
		if (n == 0 || toks[0].kind != TOK_WORD) {
			report(ps, ll->line, "in-archive: expected a test of names after it: extension, "
			       "double-extension, filename or trailing-dot-or-space");
			return;
		}
	}
	const struct test_word *tw = find_test_word(toks[0].text);
	if (tw == NULL) {
		report(ps, ll->line, "unknown word \"%s\": expected a test (extension, "
		       "double-extension, filename, trailing-dot-or-space, size, type, "
		       "declared-type, detected-type, encrypted-archive, unreadable-archive, "
		       "in-archive, header, any-header, sender, recipient, client, helo) or an "
		       "action (reject, tempfail, discard, quarantine, warn, tag)", toks[0].text);
		return;
	}
	if (in_archive && !tw->archive_ok) {
		report(ps, ll->line, "in-archive works with the tests of names only: extension, "
		       "double-extension, filename, trailing-dot-or-space");
		return;
	}
	struct rule_test test = { .subject = tw->subject, .in_archive = in_archive,
				  .line = ll->line };
	bool ok = tw->header ? parse_header_test(ps, ll->line, tw, toks + 1, n - 1, &test)
			     : parse_values(ps, ll->line, tw, toks + 1, n - 1, &test);
	if (!ok) {
		test_free(&test);
		return;
	}
	struct rule *r = current(ps);
	r->tests = xreallocarray(r->tests, r->test_count + 1, sizeof(*r->tests));
	r->tests[r->test_count++] = test;
}

static void parse_action(struct parser *ps, const struct logical_line *ll, int action)
{
	struct rule *r = current(ps);
	const char *word = ll->toks[0].text;
	if (r->has_action) {
		report(ps, ll->line, "a second action: rule \"%s\" already says %s on line %u",
		       r->name, rules_action_word(r->action), r->action_line);
		return;
	}
	if (ll->count > 2 || (ll->count == 2 && ll->toks[1].kind != TOK_QUOTED)) {
		report(ps, ll->line, "%s: only a text in double quotes may follow it, "
		       "e.g. %s \"%s\"", word, word,
		       action == RULE_TAG ? "X-Suspicious: yes" : "Not accepted here");
		return;
	}
	const char *text = ll->count == 2 ? ll->toks[1].text : NULL;
	if (text != NULL) {
		const char *err = NULL;
		if (!printable_ascii(text))
			err = "the text may hold only printable ASCII characters";
		else if (strlen(text) > SCAN_RULES_TEXT_MAX)
			err = "the text is too long";
		else if (text[0] == '\0')
			err = "the text is empty (leave it out to get the default)";
		else if (action == RULE_TAG)
			err = check_tag_field(text);
		if (err != NULL) {
			report(ps, ll->line, "%s: %s", word, err);
			return;
		}
	}
	r->action = (enum rule_action)action;
	r->has_action = true;
	r->action_line = ll->line;
	r->text = text != NULL ? xstrdup(text) : NULL;
}

/* ---- rules -------------------------------------------------------------- */

static void finish_rule(struct parser *ps)
{
	/* A rule whose test or action was wrong is not also said to lack one. */
	if (!ps->rule_ok || ps->rule_errors != 0)
		return;
	struct rule *r = current(ps);
	if (r->test_count == 0)
		report(ps, r->line, "rule \"%s\" has no test: say what it looks for "
		       "(e.g. extension exe)", r->name);
	if (!r->has_action)
		report(ps, r->line, "rule \"%s\" has no action: reject, tempfail, discard, "
		       "quarantine, warn or tag", r->name);
}

static void start_rule(struct parser *ps, const struct logical_line *ll)
{
	finish_rule(ps);
	ps->in_rule = true;
	ps->rule_ok = false;
	ps->rule_errors = 0;
	if (ll->count != 2 || ll->toks[1].kind != TOK_WORD) {
		report(ps, ll->line, "expected \"rule NAME\", one name");
		return;
	}
	const char *name = ll->toks[1].text;
	if (!valid_rule_name(name)) {
		report(ps, ll->line, "bad rule name \"%s\": use letters, digits, '-', '_' and '.', "
		       "starting with a letter or digit, at most %d", name, SCAN_RULES_NAME_MAX);
		return;
	}
	for (size_t i = 0; i < ps->set->count; i++) {
		if (strcmp(ps->set->rules[i].name, name) == 0) {
			report(ps, ll->line, "rule \"%s\" is already defined on line %u", name,
			       ps->set->rules[i].line);
			return;
		}
	}
	if (ps->set->count >= SCAN_RULES_MAX) {
		report(ps, ll->line, "more than %d rules", SCAN_RULES_MAX);
		return;
	}
	ps->set->rules = xreallocarray(ps->set->rules, ps->set->count + 1, sizeof(struct rule));
	struct rule *r = &ps->set->rules[ps->set->count++];
	memset(r, 0, sizeof(*r));
	r->name = xstrdup(name);
	r->line = ll->line;
	ps->rule_ok = true;
}

static void parse_logical_line(struct parser *ps, const struct logical_line *ll)
{
	const struct token *first = &ll->toks[0];
	if (first->kind != TOK_WORD) {
		report(ps, ll->line, "a line starts with a word (rule, a test or an action), "
		       "not with a %s", first->kind == TOK_REGEX ? "regex" : "quoted text");
		return;
	}
	if (strcmp(first->text, "rule") == 0) {
		start_rule(ps, ll);
		return;
	}
	if (!ps->in_rule) {
		report(ps, ll->line, "\"%s\" outside a rule: start each rule with a line "
		       "\"rule NAME\"", first->text);
		return;
	}
	if (!ps->rule_ok)
		return; /* the rule's own line was wrong: reported once there */
	int action = find_action_word(first->text);
	if (action >= 0)
		parse_action(ps, ll, action);
	else
		parse_test(ps, ll);
}

/* Does physical line s[0..len) hold a NUL byte or is it too long? */
static bool line_is_sane(struct parser *ps, unsigned line, const char *s, size_t len)
{
	if (len > SCAN_RULES_LINE_MAX) {
		report(ps, line, "line longer than %d bytes", SCAN_RULES_LINE_MAX);
		return false;
	}
	if (memchr(s, '\0', len) != NULL) {
		report(ps, line, "line contains a NUL byte");
		return false;
	}
	return true;
}

/* Does a line starting with these tokens begin something of its own
 * (a rule, a test, an action) rather than continue a list? */
static bool starts_a_line(const struct logical_line *ll)
{
	if (ll->count == 0 || ll->toks[0].kind != TOK_WORD)
		return false;
	const char *w = ll->toks[0].text;
	return strcmp(w, "rule") == 0 || strcmp(w, "in-archive") == 0 ||
	       find_action_word(w) >= 0 || find_test_word(w) != NULL;
}

static void append_tokens(struct logical_line *to, struct logical_line *from)
{
	if (from->count == 0)
		return;
	to->toks = xreallocarray(to->toks, to->count + from->count, sizeof(*to->toks));
	memcpy(to->toks + to->count, from->toks, from->count * sizeof(*from->toks));
	to->count += from->count;
	xfree(&from->toks);
	from->count = 0;
}

/* A logical line is complete: parse it unless one of its lines was wrong. */
static void flush_line(struct parser *ps, struct logical_line *ll, bool *broken)
{
	if (ll->count > 0 && !*broken)
		parse_logical_line(ps, ll);
	line_free(ll);
	*broken = false;
}

/*
 * Lines to logical lines: a line whose list ends with a comma goes on with
 * the next line, unless that one is empty or begins a rule, a test or an
 * action of its own.
 */
static void parse_text(struct parser *ps, const char *text, size_t len)
{
	struct logical_line pending = { NULL, 0, 0 }, cur = { NULL, 0, 0 };
	bool pending_broken = false, continues = false;
	unsigned lineno = 0;
	const char *p = text, *end = text + len;
	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		const char *eol = nl != NULL ? nl : end;
		size_t n = (size_t)(eol - p);
		if (n > 0 && p[n - 1] == '\r')
			n--;
		lineno++;
		cur.line = lineno;
		bool comma = false;
		bool broken = !line_is_sane(ps, lineno, p, n) ||
			      !tokenize(ps, lineno, p, n, &cur, &comma);
		if (continues && cur.count > 0 && !starts_a_line(&cur)) {
			append_tokens(&pending, &cur);
			if (pending.count > TOKENS_MAX && !pending_broken)
				report(ps, lineno, "more than %d values in one test", TOKENS_MAX);
			pending_broken = pending_broken || broken || pending.count > TOKENS_MAX;
		} else {
			flush_line(ps, &pending, &pending_broken);
			append_tokens(&pending, &cur);
			pending.line = lineno;
			pending_broken = broken;
			if (pending.count > TOKENS_MAX && !pending_broken) {
				report(ps, lineno, "more than %d values in one test", TOKENS_MAX);
				pending_broken = true;
			}
		}
		line_free(&cur);
		continues = comma;
		if (!continues)
			flush_line(ps, &pending, &pending_broken);
		p = eol + (nl != NULL ? 1 : 0);
	}
	flush_line(ps, &pending, &pending_broken);
	finish_rule(ps);
}

static void set_init(struct scan_rules *set, const char *name)
{
	memset(set, 0, sizeof(*set));
	set->path = xstrdup(name);
	set->match_ctx = pcre2_match_context_create(NULL);
	set->match_data = pcre2_match_data_create(1, NULL);
	set->jit_stack = pcre2_jit_stack_create(32 * 1024, 512 * 1024, NULL);
	if (set->match_ctx == NULL || set->match_data == NULL || set->jit_stack == NULL)
		log_fatal("content rules: out of memory for PCRE2");
	pcre2_set_match_limit(set->match_ctx, SCAN_RULES_REGEX_MATCH_LIMIT);
	pcre2_set_depth_limit(set->match_ctx, SCAN_RULES_REGEX_DEPTH_LIMIT);
	pcre2_set_heap_limit(set->match_ctx, SCAN_RULES_REGEX_HEAP_KIB);
	pcre2_jit_stack_assign(set->match_ctx, NULL, set->jit_stack);
}

struct scan_rules *scan_rules_parse(const char *name, const char *text, size_t len,
				    FILE *errors)
{
	struct scan_rules *set = xmalloc(sizeof(*set));
	set_init(set, name);
	struct parser ps = { .file = name, .errors = errors, .set = set };
	if (len > SCAN_RULES_FILE_MAX)
		report(&ps, 0, "larger than %d bytes", SCAN_RULES_FILE_MAX);
	else
		parse_text(&ps, text, len);
	if (ps.error_count != 0)
		scan_rules_free(&set);
	return set;
}

struct scan_rules *scan_rules_load(const char *path, FILE *errors)
{
	buf_t text = BUF_INIT;
	if (safeio_read_file(path, SCAN_RULES_FILE_MAX, &text) < 0) {
		if (errno == EFBIG)
			fprintf(errors, "%s: larger than %d bytes\n", path, SCAN_RULES_FILE_MAX);
		else
			fprintf(errors, "%s: cannot read: %s\n", path, strerror(errno));
		buf_free(&text);
		return NULL;
	}
	struct scan_rules *set = scan_rules_parse(path, text.data != NULL ? text.data : "",
						  text.len, errors);
	buf_free(&text);
	return set;
}

size_t scan_rules_count(const struct scan_rules *rules)
{
	return rules->count;
}

void scan_rules_free(struct scan_rules **rules)
{
	struct scan_rules *set = *rules;
	if (set == NULL)
		return;
	for (size_t i = 0; i < set->count; i++) {
		struct rule *r = &set->rules[i];
		for (size_t j = 0; j < r->test_count; j++)
			test_free(&r->tests[j]);
		free(r->tests);
		free(r->name);
		free(r->text);
	}
	free(set->rules);
	pcre2_match_data_free(set->match_data);
	pcre2_match_context_free(set->match_ctx);
	pcre2_jit_stack_free(set->jit_stack);
	free(set->path);
	free(set);
	*rules = NULL;
}

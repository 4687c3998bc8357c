/*
 * spam_rules_regex.c - the regexes of SpamAssassin rule files: Perl's
 * delimiters (/re/flags, m{re}flags, m!re!flags ...) and flags (i s m x),
 * compilation with PCRE2 (JIT where the machine has it), and the
 * analysis behind the matcher's prefilter: the literal strings one of
 * which every match must contain ("[ck]redit card" needs "credit card"
 * or "kredit card"), so that a regex whose literals are absent from a
 * message is never run.
 *
 * The analysis is conservative: anything it does not understand (a
 * class of many characters, a back-reference, a construct it does not
 * know) means "nothing known" for that piece, never a wrong literal: a
 * literal it reports is in every match. It walks the pattern once, with
 * bounded recursion (SPAM_EXPR_DEPTH_MAX) and bounded sets
 * (SPAM_LIT_SET_MAX literals of at most SPAM_LIT_LEN_MAX bytes).
 *
 * Also what a regex looks at beyond its match, for the matcher's line
 * narrowing (spam_narrow_eligible): the end of the subject, what \K
 * drops, a lookahead that could see past a line's end.
 *
 * Input: patterns from rule files (load time, scan master). Patterns are
 * byte-oriented, as SpamAssassin's are: no UTF mode.
 */
#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../lib/xalloc.h"
#include "../lib/strutil.h"
#include "spam_rules_impl.h"

/* ---- delimiters and flags ------------------------------------------------- */

static char closing_of(char open)
{
	switch (open) {
	case '{': return '}';
	case '(': return ')';
	case '[': return ']';
	case '<': return '>';
	default: return open;
	}
}

int spam_regex_split(const char *s, char **pattern_r, uint32_t *opts_r, const char **end_r,
		     char *err, size_t errlen)
{
	const char *p = s;
	char open;
	if (*p == '/') {
		open = '/';
	} else if (*p == 'm' && p[1] != '\0' && !isalnum((unsigned char)p[1]) &&
		   !isspace((unsigned char)p[1]) && p[1] != '\\') {
		open = p[1];
		p++;
	} else {
		snprintf(err, errlen, "a regex must be written /.../ or m{...}");
		return -1;
	}
	char close = closing_of(open);
	const char *start = ++p;
	int nest = 1;
	for (; *p != '\0'; p++) {
		if (*p == '\\' && p[1] != '\0') {
			p++;
			continue;
		}
		if (open != close && *p == open) {
			nest++;
		} else if (*p == close && --nest == 0) {
			break;
		}
	}
	if (*p != close) {
		snprintf(err, errlen, "the regex is not closed with %c", close);
		return -1;
	}
	if (p == start) {
		snprintf(err, errlen, "empty regex");
		return -1;
	}
	size_t len = (size_t)(p - start);
	uint32_t opts = 0;
	p++;
	for (; isalpha((unsigned char)*p); p++) {
		switch (*p) {
		case 'i': opts |= PCRE2_CASELESS; break;
		case 's': opts |= PCRE2_DOTALL; break;
		case 'm': opts |= PCRE2_MULTILINE; break;
		case 'x': opts |= PCRE2_EXTENDED; break;
		case 'g':
		case 'o':
			break;  /* meaningless here (SpamAssassin's rules carry some) */
		default:
			snprintf(err, errlen, "unknown regex flag \"%c\" (postern takes i, s, m and x)",
				 *p);
			return -1;
		}
	}
	*pattern_r = xstrndup(start, len);
	*opts_r = opts;
	*end_r = p;
	return 0;
}

pcre2_code *spam_regex_compile(const char *pattern, uint32_t opts, bool jit, char *err,
			       size_t errlen)
{
	int code;
	PCRE2_SIZE offset;
	pcre2_code *re = pcre2_compile((PCRE2_SPTR)pattern, strlen(pattern), opts, &code, &offset,
				       NULL);
	if (re == NULL) {
		PCRE2_UCHAR msg[160];
		pcre2_get_error_message(code, msg, sizeof(msg));
		snprintf(err, errlen, "bad regex at offset %zu: %s", (size_t)offset, (char *)msg);
		return NULL;
	}
	if (jit)
		(void)pcre2_jit_compile(re, PCRE2_JIT_COMPLETE);  /* the interpreter serves if JIT cannot */
	return re;
}

/* ---- what a regex looks at ------------------------------------------------------ */

bool spam_regex_has_escape(const char *pattern, char letter)
{
	for (const char *p = pattern; (p = strchr(p, '\\')) != NULL; p += 2) {
		if (p[1] == letter)
			return true;
		if (p[1] == '\0')
			break;
	}
	return false;
}

/* Escapes that may match a newline (or stand for what may: a code, a
 * back-reference, a property, quoted text). */
static bool escape_may_match_newline(char c)
{
	return strchr("nsvRWDHXCxocpPgkQ0123456789", c) != NULL;
}

/* May s[0..n) (a lookahead's body) match a newline anywhere? Read
 * conservatively: anything not understood says yes. */
static bool may_match_newline(const char *s, size_t n, bool dotall)
{
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c == '\\') {
			if (i + 1 >= n || escape_may_match_newline(s[i + 1]))
				return true;
			i++;
		} else if (c == '.') {
			if (dotall)
				return true;
		} else if (c == '[') {
			if (i + 1 < n && s[i + 1] == '^')
				return true;  /* a negated class takes newlines */
			size_t k = i + 1;
			if (k < n && s[k] == ']')
				k++;  /* a leading ] is a member */
			for (; k < n && s[k] != ']'; k++) {
				if (s[k] == '\\') {
					if (k + 1 >= n || escape_may_match_newline(s[k + 1]))
						return true;
					k++;
				} else if (s[k] == '[' && k + 1 < n && s[k + 1] == ':') {
					const char *name = s + k + 2;
					if (*name == '^' || strncmp(name, "space:", 6) == 0 ||
					    strncmp(name, "cntrl:", 6) == 0)
						return true;
					const char *e = memchr(name, ']', n - (size_t)(name - s));
					if (e == NULL)
						return true;
					k = (size_t)(e - s);
				} else if ((unsigned char)s[k] < 0x20) {
					return true;
				}
			}
			if (k >= n)
				return true;
			i = k;
		} else if (c == '(' && i + 2 < n && s[i + 1] == '?') {
			char d = s[i + 2];
			if (d == '(' || d == 'R' || d == '&' || d == 'P' || d == '+' ||
			    (d >= '0' && d <= '9') || (d == '-' && i + 3 < n && s[i + 3] >= '0' &&
							 s[i + 3] <= '9'))
				return true;  /* conditions, recursion, named references */
		} else if (c < 0x20) {
			return true;
		}
	}
	return false;
}

/* Where the group that opens at s[start] ('(') closes: its ')', or NULL. */
static const char *group_end(const char *s, size_t start)
{
	int nest = 0;
	for (size_t i = start; s[i] != '\0'; i++) {
		if (s[i] == '\\') {
			if (s[i + 1] == '\0')
				return NULL;
			i++;
		} else if (s[i] == '[') {
			size_t k = i + 1;
			if (s[k] == '^')
				k++;
			if (s[k] == ']')
				k++;
			for (; s[k] != '\0' && s[k] != ']'; k++) {
				if (s[k] == '\\' && s[k + 1] != '\0')
					k++;
				else if (s[k] == '[' && s[k + 1] == ':') {
					const char *e = strstr(s + k + 2, ":]");
					if (e == NULL)
						return NULL;
					k = (size_t)(e - s) + 1;
				}
			}
			if (s[k] == '\0')
				return NULL;
			i = k;
		} else if (s[i] == '(') {
			nest++;
		} else if (s[i] == ')' && --nest == 0) {
			return s + i;
		}
	}
	return NULL;
}

bool spam_regex_inline_option(const char *pattern, char option)
{
	for (const char *p = strstr(pattern, "(?"); p != NULL; p = strstr(p + 2, "(?")) {
		const char *q = p + 2;
		while ((*q >= 'a' && *q <= 'z') || (*q >= 'A' && *q <= 'Z') || *q == '-' || *q == '^')
			if (*q++ == option)
				return true;
	}
	return false;
}

/* Read conservatively: the text of such a construct anywhere (in a class,
 * after a backslash) is enough to say no, which only costs speed. A
 * lookahead is fine when nothing in it can match a newline: then it
 * cannot see past its line's end, where the whole body and the line cut
 * out of it differ. */
bool spam_narrow_eligible(const char *pattern, uint32_t opts)
{
	static const char escapes[] = "zZKG";
	for (const char *e = escapes; *e != '\0'; e++)
		if (spam_regex_has_escape(pattern, *e))
			return false;
	if (strstr(pattern, "(*") != NULL || strstr(pattern, "(?C") != NULL)
		return false;
	bool dotall = (opts & PCRE2_DOTALL) != 0 || spam_regex_inline_option(pattern, 's');
	bool extended = (opts & PCRE2_EXTENDED) != 0 || spam_regex_inline_option(pattern, 'x');
	if (extended && strchr(pattern, '#') != NULL)
		return false;  /* a comment could hide where a group ends */
	for (size_t i = 0; pattern[i] != '\0'; i++) {
		if (pattern[i] == '\\' && pattern[i + 1] != '\0') {
			i++;
			continue;
		}
		if (pattern[i] != '(' || pattern[i + 1] != '?' ||
		    (pattern[i + 2] != '=' && pattern[i + 2] != '!'))
			continue;
		const char *end = group_end(pattern, i);
		if (end == NULL || may_match_newline(pattern + i + 3,
						      (size_t)(end - pattern) - i - 3, dotall))
			return false;
	}
	return true;
}

/* ---- literal analysis ------------------------------------------------------ */

/*
 * What is known of a piece of a pattern:
 *   NONE  - nothing (it may match anything);
 *   EXACT - it matches exactly one of items (a finite set of strings);
 *   REQ   - every match contains one of items.
 */
enum lit_kind { LIT_NONE, LIT_EXACT, LIT_REQ };

struct lit_info {
	enum lit_kind kind;
	struct spam_lit *items;
	size_t count;
};

struct lit_parser {
	const char *s;
	size_t pos;
	bool caseless;
	bool extended;
	unsigned depth;
	bool broken;   /* something not understood: the whole pattern yields nothing */
	unsigned discard;  /* inside alternatives whose result is known to be nothing:
			    * parse them, build no sets */
};

void spam_litset_free(struct spam_litset *s)
{
	for (size_t i = 0; i < s->count; i++)
		free(s->items[i].text);
	xfree(&s->items);
	s->count = 0;
}

static void info_free(struct lit_info *a)
{
	for (size_t i = 0; i < a->count; i++)
		free(a->items[i].text);
	xfree(&a->items);
	a->count = 0;
	a->kind = LIT_NONE;
}

static struct lit_info info_none(void)
{
	struct lit_info a = { LIT_NONE, NULL, 0 };
	return a;
}

static void info_add(struct lit_info *a, const char *text, size_t len, bool caseless)
{
	/* items grow in powers of two (only info_add makes them) */
	if ((a->count & (a->count - 1)) == 0)
		a->items = xreallocarray(a->items, a->count ? a->count * 2 : 1, sizeof(*a->items));
	struct spam_lit *l = &a->items[a->count++];
	l->text = xmalloc(len + 1);
	memcpy(l->text, text, len);
	l->text[len] = '\0';
	l->len = len;
	l->caseless = caseless;
}

static struct lit_info info_empty(void)
{
	struct lit_info a = { LIT_EXACT, NULL, 0 };
	info_add(&a, "", 0, false);
	return a;
}

/* The characters of a class or a single character, as an EXACT set. */
static struct lit_info info_chars(const unsigned char *set, bool caseless)
{
	struct lit_info a = { LIT_EXACT, NULL, 0 };
	bool seen[256] = { false };
	for (int c = 0; c < 256; c++) {
		if (!set[c])
			continue;
		int key = caseless ? tolower(c) : c;
		if (seen[key])
			continue;
		seen[key] = true;
		char ch = (char)key;
		info_add(&a, &ch, 1, caseless && isalpha(c));
	}
	return a;
}

/* One character, as info_chars would give it. */
static struct lit_info info_char(int c, bool caseless)
{
	struct lit_info a = { LIT_EXACT, NULL, 0 };
	char ch = (char)(caseless ? tolower(c) : c);
	info_add(&a, &ch, 1, caseless && isalpha(c));
	return a;
}

static size_t min_len(const struct lit_info *a)
{
	size_t m = SIZE_MAX;
	for (size_t i = 0; i < a->count; i++)
		if (a->items[i].len < m)
			m = a->items[i].len;
	return a->count ? m : 0;
}

/* Which of two requirements is the better filter: longer shortest
 * literal first (a short one is found everywhere), then fewer literals. */
static bool better(const struct lit_info *a, const struct lit_info *b)
{
	if (b->kind == LIT_NONE || b->count == 0)
		return a->kind != LIT_NONE && a->count > 0;
	if (a->kind == LIT_NONE || a->count == 0)
		return false;
	size_t ma = min_len(a), mb = min_len(b);
	if (ma > 8)
		ma = 8;
	if (mb > 8)
		mb = 8;
	if (ma != mb)
		return ma > mb;
	return a->count < b->count;
}

static struct lit_info as_req(struct lit_info a)
{
	if (a.kind == LIT_EXACT)
		a.kind = LIT_REQ;
	if (a.kind == LIT_REQ && min_len(&a) == 0)
		info_free(&a);  /* "contains the empty string" says nothing */
	return a;
}

/* Can two exact sets join into one within the bounds? */
static bool can_join(const struct lit_info *a, const struct lit_info *b)
{
	if (a->kind != LIT_EXACT || b->kind != LIT_EXACT || a->count * b->count > SPAM_LIT_JOIN_MAX)
		return false;
	for (size_t i = 0; i < a->count; i++)
		for (size_t j = 0; j < b->count; j++)
			if (a->items[i].len + b->items[j].len > SPAM_LIT_LEN_MAX)
				return false;
	return true;
}

/* a then b (both consumed). */
static struct lit_info concat(struct lit_info a, struct lit_info b)
{
	if (can_join(&a, &b)) {
		{
			struct lit_info r = { LIT_EXACT, NULL, 0 };
			char tmp[2 * SPAM_LIT_LEN_MAX];
			for (size_t i = 0; i < a.count; i++) {
				for (size_t j = 0; j < b.count; j++) {
					memcpy(tmp, a.items[i].text, a.items[i].len);
					memcpy(tmp + a.items[i].len, b.items[j].text, b.items[j].len);
					info_add(&r, tmp, a.items[i].len + b.items[j].len,
						 a.items[i].caseless || b.items[j].caseless);
				}
			}
			info_free(&a);
			info_free(&b);
			return r;
		}
	}
	a = as_req(a);
	b = as_req(b);
	if (better(&b, &a)) {
		info_free(&a);
		return b;
	}
	info_free(&b);
	return a;
}

/* a or b (both consumed). */
static struct lit_info alternate(struct lit_info a, struct lit_info b)
{
	if (a.kind == LIT_NONE || b.kind == LIT_NONE || a.count + b.count > SPAM_LIT_SET_MAX) {
		info_free(&a);
		info_free(&b);
		return info_none();
	}
	if (a.kind != b.kind) {
		a = as_req(a);
		b = as_req(b);
		if (a.kind == LIT_NONE || b.kind == LIT_NONE) {
			info_free(&a);
			info_free(&b);
			return info_none();
		}
	}
	for (size_t j = 0; j < b.count; j++)
		info_add(&a, b.items[j].text, b.items[j].len, b.items[j].caseless);
	info_free(&b);
	/* Too many to join with anything (can_join) and too short to be
	 * looked for: nothing made of it can be either (unions only grow
	 * and shorten), so it says nothing, and is dropped now rather than
	 * carried through the rest of the pattern. */
	if (a.count > SPAM_LIT_JOIN_MAX && min_len(&a) < SPAM_LIT_MIN) {
		info_free(&a);
		return info_none();
	}
	return a;
}

static struct lit_info parse_alt(struct lit_parser *p);

/*
 * An escape after '\' at p->pos (the backslash already taken) that
 * stands for one byte: its value, or -1 for a class (\d, \w ...), -2 for
 * something zero-width (\b, \A ...), -3 for what cannot be known (a
 * back-reference, \p{..}).
 */
static int parse_escape(struct lit_parser *p)
{
	char c = p->s[p->pos];
	if (c == '\0') {
		p->broken = true;
		return -3;
	}
	p->pos++;
	switch (c) {
	case 'n': return '\n';
	case 'r': return '\r';
	case 't': return '\t';
	case 'f': return '\f';
	case 'e': return 0x1b;
	case 'a': return 0x07;
	case 'd': case 'D': case 'w': case 'W': case 's': case 'S':
	case 'h': case 'H': case 'v': case 'V': case 'N': case 'R': case 'X': case 'C':
		return -1;
	case 'b': case 'B': case 'A': case 'z': case 'Z': case 'G': case 'K':
		return -2;
	case 'p': case 'P':
		if (p->s[p->pos] == '{') {
			const char *e = strchr(p->s + p->pos, '}');
			p->pos = e ? (size_t)(e - p->s) + 1 : strlen(p->s);
		} else if (p->s[p->pos] != '\0') {
			p->pos++;
		}
		return -1;
	case 'x': {
		int v = 0;
		if (p->s[p->pos] == '{') {
			size_t i = p->pos + 1;
			unsigned big = 0;  /* stops growing past 0xff: only "too big" matters */
			while (str_hex_digit(p->s[i]) >= 0) {
				if (big <= 0xff)
					big = big * 16 + (unsigned)str_hex_digit(p->s[i]);
				i++;
			}
			if (p->s[i] != '}' || big > 0xff) {
				p->broken = true;
				return -3;
			}
			p->pos = i + 1;
			return (int)big;
		}
		for (int k = 0; k < 2 && str_hex_digit(p->s[p->pos]) >= 0; k++)
			v = v * 16 + str_hex_digit(p->s[p->pos++]);
		return v;
	}
	case 'c':
		if (p->s[p->pos] == '\0') {
			p->broken = true;
			return -3;
		}
		return toupper((unsigned char)p->s[p->pos++]) ^ 0x40;
	case '0': {
		int v = 0;
		for (int k = 0; k < 2 && p->s[p->pos] >= '0' && p->s[p->pos] <= '7'; k++)
			v = v * 8 + (p->s[p->pos++] - '0');
		return v;
	}
	case 'o':
		p->broken = true;  /* \o{...}: rare; not worth knowing */
		return -3;
	case 'g': case 'k': {
		/* back-references: \g1 \g-1 \g{..} \g<..> \g'..' \k<..> \k'..' \k{..} */
		char open = p->s[p->pos];
		char close = open == '{' ? '}' : open == '<' ? '>' : open == '\'' ? '\'' : 0;
		if (close != 0) {
			const char *e = strchr(p->s + p->pos + 1, close);
			if (e == NULL) {
				p->broken = true;
				return -3;
			}
			p->pos = (size_t)(e - p->s) + 1;
		} else if (c == 'g') {
			if (p->s[p->pos] == '-' || p->s[p->pos] == '+')
				p->pos++;
			while (isdigit((unsigned char)p->s[p->pos]))
				p->pos++;
		} else {
			p->broken = true;
		}
		return -3;
	}
	default:
		if (c >= '1' && c <= '9') {
			while (isdigit((unsigned char)p->s[p->pos]))
				p->pos++;
			return -3;
		}
		if (isalnum((unsigned char)c)) {
			/* An escape PCRE2 may read otherwise (\E out of \Q...). */
			if (c == 'E')
				return -2;
			p->broken = true;
			return -3;
		}
		return (unsigned char)c;  /* \. \/ \- \# ... */
	}
}

/* "[...]" with p->pos after '['. A few single bytes are an EXACT set;
 * more, a negation or a class inside make it NONE. */
static struct lit_info parse_class(struct lit_parser *p)
{
	unsigned char set[256] = { 0 };
	bool useful = true;
	bool negated = false;
	if (p->s[p->pos] == '^') {
		negated = true;
		p->pos++;
	}
	bool first = true;
	int prev = -1;  /* the last single byte, for ranges */
	for (;;) {
		char c = p->s[p->pos];
		if (c == '\0') {
			p->broken = true;
			return info_none();
		}
		if (c == ']' && !first) {
			p->pos++;
			break;
		}
		first = false;
		int v;
		if (c == '[' && p->s[p->pos + 1] == ':') {
			const char *e = strstr(p->s + p->pos + 2, ":]");
			if (e == NULL) {
				p->broken = true;
				return info_none();
			}
			p->pos = (size_t)(e - p->s) + 2;
			useful = false;
			prev = -1;
			continue;
		}
		if (c == '\\') {
			p->pos++;
			v = parse_escape(p);
			if (v == -2)
				v = 'b' == p->s[p->pos - 1] ? 0x08 : -1;  /* \b in a class is backspace */
			if (v < 0) {
				useful = false;
				prev = -1;
				continue;
			}
		} else {
			v = (unsigned char)c;
			p->pos++;
		}
		if (p->s[p->pos] == '-' && p->s[p->pos + 1] != ']' && p->s[p->pos + 1] != '\0') {
			p->pos++;
			int hi;
			if (p->s[p->pos] == '\\') {
				p->pos++;
				hi = parse_escape(p);
				if (hi < 0) {
					useful = false;
					continue;
				}
			} else {
				hi = (unsigned char)p->s[p->pos++];
			}
			if (hi < v || hi - v > 16) {
				useful = false;
				continue;
			}
			for (int k = v; k <= hi; k++)
				set[k] = 1;
			continue;
		}
		prev = v;
		set[v] = 1;
	}
	(void)prev;
	if (negated || !useful)
		return info_none();
	size_t n = 0;
	for (int k = 0; k < 256; k++) {
		if (!set[k])
			continue;
		/* Under caseless matching, both cases count once. */
		if (p->caseless && isupper(k) && set[tolower(k)])
			continue;
		n++;
	}
	if (n == 0 || n > 8)
		return info_none();
	return p->discard ? info_none() : info_chars(set, p->caseless);
}

/* Skip to the ')' closing a group whose body is not analysed (p->pos in it). */
static void skip_group(struct lit_parser *p)
{
	int nest = 1;
	while (p->s[p->pos] != '\0') {
		char c = p->s[p->pos++];
		if (c == '\\' && p->s[p->pos] != '\0') {
			p->pos++;
		} else if (c == '[') {
			/* a class may hold parentheses */
			if (p->s[p->pos] == '^')
				p->pos++;
			if (p->s[p->pos] == ']')
				p->pos++;
			while (p->s[p->pos] != '\0' && p->s[p->pos] != ']') {
				if (p->s[p->pos] == '\\' && p->s[p->pos + 1] != '\0')
					p->pos++;
				p->pos++;
			}
			if (p->s[p->pos] == ']')
				p->pos++;
		} else if (c == '(') {
			nest++;
		} else if (c == ')' && --nest == 0) {
			return;
		}
	}
	p->broken = true;
}

/* Inline options "(?i)" "(?-i:" ...: p->pos at the first letter. Sets the
 * flags and returns the character that ended them (')' or ':'), or 0. */
static char parse_options(struct lit_parser *p, bool *caseless, bool *extended)
{
	bool on = true;
	for (;;) {
		char c = p->s[p->pos];
		if (c == '\0')
			return 0;  /* the pattern ends inside the options */
		p->pos++;
		switch (c) {
		case '-': on = false; break;
		case '^': *caseless = false; *extended = false; break;
		case 'i': *caseless = on; break;
		case 'x': *extended = on; break;
		case 'm': case 's': case 'n': case 'J': case 'U': case 'a': case 'u': case 'l':
		case 'd': case 'r': case 'B': case 'I': case 'Z':
			break;
		case ')':
		case ':':
			return c;
		default:
			return 0;
		}
	}
}

/* A group after '(' (p->pos after it). */
static struct lit_info parse_group(struct lit_parser *p)
{
	bool saved_caseless = p->caseless, saved_extended = p->extended;
	struct lit_info r;
	if (p->s[p->pos] == '*') {
		/* (*VERB) or (*positive_lookahead: ...) */
		size_t i = p->pos + 1;
		while (isalpha((unsigned char)p->s[i]) || p->s[i] == '_')
			i++;
		if (p->s[i] == ')' || p->s[i] == ':') {
			p->pos = i;
			skip_group(p);
			return info_empty();
		}
		p->broken = true;
		return info_none();
	}
	if (p->s[p->pos] != '?') {
		r = parse_alt(p);
		goto close;
	}
	p->pos++;
	char c = p->s[p->pos];
	if (c == ':' || c == '|' || c == '>') {
		p->pos++;
		r = parse_alt(p);
		goto close;
	}
	if (c == '=' || c == '!' || (c == '<' && (p->s[p->pos + 1] == '=' || p->s[p->pos + 1] == '!'))) {
		skip_group(p);  /* lookaround: zero width */
		return info_empty();
	}
	if (c == '#') {
		const char *e = strchr(p->s + p->pos, ')');
		if (e == NULL) {
			p->broken = true;
			return info_none();
		}
		p->pos = (size_t)(e - p->s) + 1;
		return info_empty();
	}
	if (c == '<' || c == '\'' || (c == 'P' && p->s[p->pos + 1] == '<')) {
		char end = c == '\'' ? '\'' : '>';
		const char *e = strchr(p->s + p->pos + 1, end);
		if (e == NULL) {
			p->broken = true;
			return info_none();
		}
		p->pos = (size_t)(e - p->s) + 1;
		r = parse_alt(p);
		goto close;
	}
	if (c == 'C') {
		skip_group(p);  /* a callout */
		return info_empty();
	}
	if (isalpha((unsigned char)c) || c == '-' || c == '^') {
		bool ci = p->caseless, ext = p->extended;
		char ended = parse_options(p, &ci, &ext);
		if (ended == ')') {
			/* (?i) holds to the end of the enclosing group */
			p->caseless = ci;
			p->extended = ext;
			return info_empty();
		}
		if (ended == ':') {
			p->caseless = ci;
			p->extended = ext;
			r = parse_alt(p);
			goto close;
		}
		p->broken = true;
		return info_none();
	}
	/* conditionals, recursion, back-references by name... */
	skip_group(p);
	return info_none();
close:
	p->caseless = saved_caseless;
	p->extended = saved_extended;
	if (p->s[p->pos] != ')') {
		p->broken = true;
		info_free(&r);
		return info_none();
	}
	p->pos++;
	return r;
}

/* A quantifier at p->pos, if any: its minimum (and whether it is "?"). */
static bool parse_quantifier(struct lit_parser *p, unsigned *min_r, bool *optional_one_r)
{
	char c = p->s[p->pos];
	*optional_one_r = false;
	if (c == '*' || c == '+' || c == '?') {
		p->pos++;
		*min_r = c == '+' ? 1 : 0;
		*optional_one_r = c == '?';
	} else if (c == '{') {
		/* {n}, {n,}, {n,m}, and forms newer PCRE2 takes ({,m}, spaces):
		 * any of [0-9, ] up to '}' is read as a quantifier, which can
		 * only lose knowledge, never invent it. */
		size_t i = p->pos + 1;
		bool digit = false;
		while (isdigit((unsigned char)p->s[i]) || p->s[i] == ',' || p->s[i] == ' ') {
			digit = digit || isdigit((unsigned char)p->s[i]);
			i++;
		}
		if (p->s[i] != '}' || !digit)
			return false;
		const char *q = p->s + p->pos + 1;
		while (*q == ' ')
			q++;
		*min_r = isdigit((unsigned char)*q) ? (unsigned)strtoul(q, NULL, 10) : 0;
		p->pos = i + 1;
	} else {
		return false;
	}
	if (p->s[p->pos] == '?' || p->s[p->pos] == '+')
		p->pos++;  /* lazy, possessive */
	return true;
}

static void skip_extended_space(struct lit_parser *p)
{
	while (p->extended) {
		char c = p->s[p->pos];
		/* Perl's pattern white space, as PCRE2 has it without UTF: NEL too */
		if (c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v' ||
		    (unsigned char)c == 0x85) {
			p->pos++;
		} else if (c == '#') {
			while (p->s[p->pos] != '\0' && p->s[p->pos] != '\n')
				p->pos++;
		} else {
			break;
		}
	}
}

/* One atom with its quantifier; *end_r true at '|', ')' or the end. */
static struct lit_info parse_piece(struct lit_parser *p, bool *end_r)
{
	skip_extended_space(p);
	char c = p->s[p->pos];
	*end_r = false;
	if (c == '\0' || c == '|' || c == ')') {
		*end_r = true;
		return info_none();
	}
	struct lit_info a;
	p->pos++;
	if (c == '(') {
		a = parse_group(p);
	} else if (c == '[') {
		a = parse_class(p);
	} else if (c == '.') {
		a = info_none();
	} else if (c == '^' || c == '$') {
		a = info_empty();
	} else if (c == '\\' && p->s[p->pos] == 'Q') {
		p->pos++;
		const char *e = strstr(p->s + p->pos, "\\E");
		size_t n = e ? (size_t)(e - (p->s + p->pos)) : strlen(p->s + p->pos);
		a = (struct lit_info){ LIT_EXACT, NULL, 0 };
		if (n > SPAM_LIT_LEN_MAX) {
			a = info_none();
		} else {
			char tmp[SPAM_LIT_LEN_MAX + 1];
			for (size_t i = 0; i < n; i++)
				tmp[i] = p->caseless ? (char)tolower((unsigned char)p->s[p->pos + i])
						     : p->s[p->pos + i];
			info_add(&a, tmp, n, p->caseless);
		}
		p->pos += n + (e ? 2 : 0);
		/* \Q..\E followed by a quantifier applies it to the last byte
		 * only: keep it simple and know nothing then. */
	} else if (c == '\\') {
		int v = parse_escape(p);
		if (v == -2) {
			a = info_empty();
		} else if (v < 0) {
			a = info_none();
		} else {
			a = p->discard ? info_none() : info_char(v, p->caseless);
		}
	} else {
		a = p->discard ? info_none() : info_char((unsigned char)c, p->caseless);
	}
	skip_extended_space(p);
	unsigned min;
	bool optional_one;
	if (parse_quantifier(p, &min, &optional_one)) {
		if (min == 0) {
			if (optional_one && a.kind == LIT_EXACT) {
				/* x? : "" or x */
				a = alternate(info_empty(), a);
			} else {
				info_free(&a);
				a = info_none();
			}
		} else if (min > 1 || a.kind != LIT_NONE) {
			a = as_req(a);  /* at least once: it is there, length unknown */
		}
	}
	return a;
}

/* The better requirement of two (both consumed). */
static struct lit_info best_of(struct lit_info a, struct lit_info b)
{
	a = as_req(a);
	b = as_req(b);
	if (better(&b, &a)) {
		info_free(&a);
		return b;
	}
	info_free(&b);
	return a;
}

/*
 * A sequence of pieces: consecutive exact pieces join into one run
 * ("cred" "[iy]" "t" -> "credit", "credyt"); a piece of unknown length
 * ends the run. The sequence is exact if all of it was, else it requires
 * the best of its runs and of the requirements of its pieces.
 */
static struct lit_info parse_seq(struct lit_parser *p)
{
	struct lit_info req = info_none();
	struct lit_info run = info_empty();
	bool exact = true;
	for (;;) {
		bool end;
		struct lit_info a = parse_piece(p, &end);
		if (end || p->broken) {
			info_free(&a);
			break;
		}
		if (a.kind == LIT_EXACT) {
			if (can_join(&run, &a)) {
				run = concat(run, a);
			} else {
				/* too many combinations or too long: keep the run
				 * as a requirement, start a new one */
				exact = false;
				req = best_of(req, run);
				run = a;
			}
			continue;
		}
		exact = false;
		req = best_of(req, run);
		req = best_of(req, a);
		run = info_empty();
	}
	if (exact && !p->broken) {
		info_free(&req);
		return run;
	}
	return best_of(req, run);
}

static struct lit_info parse_alt(struct lit_parser *p)
{
	if (++p->depth > SPAM_EXPR_DEPTH_MAX) {
		p->broken = true;
		return info_none();
	}
	/* (?i) inside a group ends with the group. */
	bool saved_caseless = p->caseless, saved_extended = p->extended;
	struct lit_info acc = parse_seq(p);
	unsigned discarding = 0;
	while (!p->broken && p->s[p->pos] == '|') {
		p->pos++;
		/* once nothing is known of the alternation, nothing will be:
		 * the rest is only read through */
		if (acc.kind == LIT_NONE && discarding == 0) {
			p->discard++;
			discarding = 1;
		}
		acc = alternate(acc, parse_seq(p));
	}
	p->discard -= discarding;
	p->caseless = saved_caseless;
	p->extended = saved_extended;
	p->depth--;
	return acc;
}

void spam_regex_literals(const char *pattern, uint32_t opts, struct spam_litset *out)
{
	struct lit_parser p = {
		.s = pattern,
		.caseless = (opts & PCRE2_CASELESS) != 0,
		.extended = (opts & PCRE2_EXTENDED) != 0,
	};
	out->items = NULL;
	out->count = 0;
	struct lit_info r = parse_alt(&p);
	if (p.broken || p.s[p.pos] != '\0' || r.kind == LIT_NONE || r.count == 0 ||
	    r.count > SPAM_LIT_SET_MAX || min_len(&r) < SPAM_LIT_MIN) {
		info_free(&r);
		return;
	}
	/* Caseless literals in lower case; duplicates once. */
	for (size_t i = 0; i < r.count; i++) {
		struct spam_lit *l = &r.items[i];
		if (l->caseless)
			for (size_t k = 0; k < l->len; k++)
				l->text[k] = (char)tolower((unsigned char)l->text[k]);
	}
	out->items = r.items;
	out->count = r.count;
}

/*
 * spam_token.c - Bayes's tokenizer (spam_tokenize, spam.h): what a
 * message is made of, as 64-bit hashes.
 *
 * Tokens, each the hash of its text (a prefix naming where it came from,
 * so that "free" in the Subject and "free" in the body count apart):
 *   header fields (the message's own, decoded; filters' X-Spam-* and the
 *   like are never looked at):
 *     S:word        Subject words               F: F@ Fn:   From address, domains, name
 *     R: R@         Reply-To                    RP@         Return-Path domains
 *     T: T@ T#      To/Cc addresses, domains, how many
 *     H: H@ H:ip: H:net: H:with: H:w:   Received: hosts, domains, IPv4
 *                   addresses and /24s, protocol, other words (no dates)
 *     CT: CS: CTE: B:   Content-Type (every part), charset, transfer
 *                   encoding, the boundary's shape
 *     UA:word       User-Agent, X-Mailer        MID@        Message-ID's domain
 *     L: P: XP: O:  List-Id, Precedence, priorities, Organization
 *     HN:name       each field name present     S:none D:none T:none MID:none  absent
 *   URIs (t->uris): U@host and its parent domains, U:ip, U:s:scheme;
 *   the body (t->body): its words, unprefixed; C:word for a word in
 *   capitals; P:!!! for runs of ! ? $ *.
 *
 * Words: runs of letters and digits (any non-ASCII letter counts; Unicode
 * punctuation, symbols and spaces separate), joined across . - ' _ @
 * between two of them, across ',' between digits, with a currency sign
 * before a digit and '%' after one. Folded to lower case (ASCII,
 * Latin-1, Greek, Cyrillic). Words under 3 bytes are dropped (but "$5");
 * words over 24 bytes become "L:" + their first 8 bytes + a length class;
 * words with 5 digits or more are replaced by their shape, each run of
 * digits as '#' ("1-800-555-1212" is "#-#-#-#").
 *
 * Hash: XXH64 with a fixed seed. The hashes live on disk in the token
 * store: changing the seed, a prefix or a rule makes the learned counts
 * useless.
 *
 * Untrusted input: the message, through spam_text (bounded by its
 * limits); every token is bounded, and at most max are kept, the header
 * and URI tokens first. Privilege: scanners and `postern learn`.
 */
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <xxhash.h>

#include "../lib/xalloc.h"
#include "spam.h"
#include "spam_token.h"

#define TOKEN_SEED 0x706f737465726e31ULL  /* never change: see above */
#define TOKEN_TEXT_MAX 160
#define WORD_MIN 3
#define WORD_MAX 24
#define LONG_PREFIX 8
#define DIGITS_FOR_SHAPE 5
#define RECEIVED_MAX 20
#define ADDRESSES_MAX 50
#define URIS_MAX 500
#define FIELD_WORDS_MAX 200   /* words of one header field */
#define TOKENS_MAX_EVER (1u << 20)  /* whatever max a caller asks for */

/* ---- the set of tokens -------------------------------------------------------------- */

struct tokens {
	uint64_t *out;
	size_t max, n;
	uint64_t *slots;  /* open addressing; 0 = empty */
	size_t mask;
};

static void add_hash(struct tokens *ts, uint64_t h)
{
	if (ts->n >= ts->max)
		return;
	if (h == 0)
		h = 1;
	for (size_t i = (size_t)h & ts->mask;; i = (i + 1) & ts->mask) {
		if (ts->slots[i] == h)
			return;
		if (ts->slots[i] == 0) {
			ts->slots[i] = h;
			ts->out[ts->n++] = h;
			return;
		}
	}
}

/* The hash of prefix + text (cut to TOKEN_TEXT_MAX bytes in all). */
static uint64_t token_hash(const char *prefix, const char *text, size_t len)
{
	char b[TOKEN_TEXT_MAX];
	size_t p = strlen(prefix);
	if (p > sizeof(b))
		p = sizeof(b);
	memcpy(b, prefix, p);
	if (len > sizeof(b) - p)
		len = sizeof(b) - p;
	memcpy(b + p, text, len);
	return XXH64(b, p + len, TOKEN_SEED);
}

uint64_t spam_token_hash(const char *prefix, const char *text)
{
	uint64_t h = token_hash(prefix, text, strlen(text));
	return h != 0 ? h : 1;
}

static void add(struct tokens *ts, const char *prefix, const char *text, size_t len)
{
	add_hash(ts, token_hash(prefix, text, len));
}

static void add_str(struct tokens *ts, const char *prefix, const char *text)
{
	add(ts, prefix, text, strlen(text));
}

static bool full(const struct tokens *ts)
{
	return ts->n >= ts->max;
}

/* ---- characters ------------------------------------------------------------------------ */

/* The code point at s[i] and its length in bytes; a byte that does not
 * start valid UTF-8 is one character of its own (code point 0xFFFD). */
static size_t char_at(const unsigned char *s, size_t len, size_t i, uint32_t *cp)
{
	unsigned char c = s[i];
	if (c < 0x80) {
		*cp = c;
		return 1;
	}
	size_t n = c >= 0xF0 && c < 0xF5 ? 4 : c >= 0xE0 ? 3 : c >= 0xC2 && c < 0xE0 ? 2 : 0;
	if (n == 0 || i + n > len) {
		*cp = 0xFFFD;
		return 1;
	}
	uint32_t v = c & (n == 2 ? 0x1F : n == 3 ? 0x0F : 0x07);
	for (size_t k = 1; k < n; k++) {
		if ((s[i + k] & 0xC0) != 0x80) {
			*cp = 0xFFFD;
			return 1;
		}
		v = v << 6 | (s[i + k] & 0x3F);
	}
	*cp = v;
	return n;
}

static bool is_digit(uint32_t cp)
{
	return cp >= '0' && cp <= '9';
}

/* Letters and digits; of the rest of Unicode, all but the blocks of
 * spaces, punctuation, symbols and emoji. */
static bool is_word_char(uint32_t cp)
{
	if (cp < 0x80)
		return (cp >= 'a' && cp <= 'z') || (cp >= 'A' && cp <= 'Z') || is_digit(cp);
	return !(cp < 0xC0 || cp == 0xD7 || cp == 0xF7 || (cp >= 0x2000 && cp <= 0x2BFF) ||
		 (cp >= 0x3000 && cp <= 0x303F) || (cp >= 0xFE10 && cp <= 0xFE6F) ||
		 cp == 0xFEFF || (cp >= 0xFF00 && cp <= 0xFF0F) ||
		 (cp >= 0xFF1A && cp <= 0xFF20) || (cp >= 0x1F000 && cp <= 0x1FAFF));
}

static bool is_currency(uint32_t cp)
{
	return cp == '$' || cp == 0xA3 || cp == 0xA5 || cp == 0x20AC;
}

static bool is_joiner(uint32_t cp)
{
	return cp == '.' || cp == '-' || cp == '\'' || cp == '_' || cp == '@';
}

static uint32_t fold(uint32_t cp)
{
	if ((cp >= 'A' && cp <= 'Z') || (cp >= 0xC0 && cp <= 0xDE && cp != 0xD7) ||
	    (cp >= 0x391 && cp <= 0x3A9 && cp != 0x3A2) || (cp >= 0x410 && cp <= 0x42F))
		return cp + 0x20;
	if (cp >= 0x400 && cp <= 0x40F)
		return cp + 0x50;
	return cp;
}

static size_t put_utf8(char *out, uint32_t cp)
{
	if (cp < 0x80) {
		out[0] = (char)cp;
		return 1;
	}
	if (cp < 0x800) {
		out[0] = (char)(0xC0 | cp >> 6);
		out[1] = (char)(0x80 | (cp & 0x3F));
		return 2;
	}
	if (cp < 0x10000) {
		out[0] = (char)(0xE0 | cp >> 12);
		out[1] = (char)(0x80 | (cp >> 6 & 0x3F));
		out[2] = (char)(0x80 | (cp & 0x3F));
		return 3;
	}
	out[0] = (char)(0xF0 | cp >> 18);
	out[1] = (char)(0x80 | (cp >> 12 & 0x3F));
	out[2] = (char)(0x80 | (cp >> 6 & 0x3F));
	out[3] = (char)(0x80 | (cp & 0x3F));
	return 4;
}

/* ---- words --------------------------------------------------------------------------- */

/* The next word of s[*pos..len), as byte offsets; false at the end. */
static bool next_word(const unsigned char *s, size_t len, size_t *pos, size_t *start_r,
		      size_t *end_r)
{
	size_t i = *pos;
	uint32_t cp = 0, next;
	/* Skip to a word character, or a currency sign before a digit. */
	for (;;) {
		if (i >= len) {
			*pos = len;
			return false;
		}
		size_t n = char_at(s, len, i, &cp);
		if (is_word_char(cp))
			break;
		if (is_currency(cp) && i + n < len && is_digit(s[i + n]))
			break;
		i += n;
	}
	*start_r = i;
	uint32_t prev = 0;
	while (i < len) {
		size_t n = char_at(s, len, i, &cp);
		bool take = is_word_char(cp) || (i == *start_r && is_currency(cp));
		if (!take && i + n < len) {
			char_at(s, len, i + n, &next);
			take = (is_joiner(cp) && is_word_char(prev) && is_word_char(next)) ||
			       (cp == ',' && is_digit(prev) && is_digit(next));
		}
		if (!take && cp == '%' && is_digit(prev)) {
			i += n;
			break;
		}
		if (!take)
			break;
		prev = cp;
		i += n;
	}
	*end_r = i;
	*pos = i;
	return true;
}

/* What becomes of a word: folded, shaped or summarized into out (at
 * least TOKEN_TEXT_MAX bytes); its length, 0 to drop it. *caps_r: it
 * was written in capitals. */
static size_t word_text(const unsigned char *w, size_t len, char *out, bool *caps_r)
{
	size_t o = 0, digits = 0, upper = 0, lower = 0;
	bool in_digits = false, shape;
	for (size_t i = 0; i < len; i++)
		digits += is_digit(w[i]);
	shape = digits >= DIGITS_FOR_SHAPE;
	for (size_t i = 0; i < len && o + 4 < TOKEN_TEXT_MAX;) {
		uint32_t cp;
		size_t n = char_at(w, len, i, &cp);
		upper += cp >= 'A' && cp <= 'Z';
		lower += cp >= 'a' && cp <= 'z';
		if (shape && is_digit(cp)) {
			if (!in_digits)
				out[o++] = '#';
			in_digits = true;
		} else if (cp == 0xFFFD && n == 1) {
			out[o++] = (char)w[i];   /* a stray byte stays as it is */
			in_digits = false;
		} else {
			o += put_utf8(out + o, fold(cp));
			in_digits = false;
		}
		i += n;
	}
	*caps_r = upper >= WORD_MIN && lower == 0;
	if (o < WORD_MIN && !(o >= 2 && is_currency((unsigned char)out[0])))
		return 0;
	if (o > WORD_MAX) {
		/* "L:" + the first bytes, cut at a character's start, + a length class */
		size_t keep = LONG_PREFIX;
		while (keep > 0 && ((unsigned char)out[keep] & 0xC0) == 0x80)
			keep--;
		char cls[8];
		int c = snprintf(cls, sizeof(cls), ":%zu", o / 8 > 99 ? 99 : o / 8);
		memmove(out + 2, out, keep);
		out[0] = 'L';
		out[1] = ':';
		memcpy(out + 2 + keep, cls, (size_t)c);
		return 2 + keep + (size_t)c;
	}
	return o;
}

/* Every word of text[0..len) as prefix + word (and, for the body, its
 * capitals token); at most max words. */
static void add_words(struct tokens *ts, const char *prefix, const char *text, size_t len,
		      size_t max, bool body)
{
	const unsigned char *s = (const unsigned char *)text;
	size_t pos = 0, start, end, count = 0;
	char w[TOKEN_TEXT_MAX];
	while (count < max && !full(ts) && next_word(s, len, &pos, &start, &end)) {
		bool caps;
		size_t n = word_text(s + start, end - start, w, &caps);
		count++;
		if (n == 0)
			continue;
		add(ts, prefix, w, n);
		if (caps && body)
			add(ts, "C:", w, n);
	}
}

/* Runs of three or more of ! ? $ * in the body: "P:!!!". */
static void add_punctuation(struct tokens *ts, const char *text, size_t len)
{
	for (size_t i = 0; i < len && !full(ts);) {
		char c = text[i];
		size_t j = i;
		while (j < len && text[j] == c)
			j++;
		if (j - i >= 3 && strchr("!?$*", c) != NULL && c != '\0') {
			char run[3] = { c, c, c };
			add(ts, "P:", run, 3);
		}
		i = j;
	}
}

/* ---- header fields --------------------------------------------------------------------- */

static void lower_copy(char *out, size_t cap, const char *s, size_t len)
{
	if (len >= cap)
		len = cap - 1;
	for (size_t i = 0; i < len; i++)
		out[i] = (char)(s[i] >= 'A' && s[i] <= 'Z' ? s[i] + 32 : s[i]);
	out[len] = '\0';
}

/* prefix + domain and each parent domain of two labels or more. */
static void add_domains(struct tokens *ts, const char *prefix, const char *domain)
{
	const char *d = domain;
	for (int levels = 0; levels < 10 && strchr(d, '.') != NULL; levels++) {
		add_str(ts, prefix, d);
		d = strchr(d, '.') + 1;
	}
}

/* One address of a field: "Name <a@b>", "a@b (Name)" or "a@b". */
struct address {
	char addr[256];   /* lower case; "" when none */
	const char *name; /* the display name's bytes (not NUL-terminated) */
	size_t name_len;
};

static void parse_address(const char *s, size_t len, struct address *a)
{
	a->addr[0] = '\0';
	a->name = NULL;
	a->name_len = 0;
	const char *lt = memchr(s, '<', len);
	const char *at = NULL, *end = NULL;
	if (lt != NULL) {
		const char *gt = memchr(lt, '>', len - (size_t)(lt - s));
		at = lt + 1;
		end = gt != NULL ? gt : s + len;
		a->name = s;
		a->name_len = (size_t)(lt - s);
	} else {
		/* the first word holding '@' */
		for (size_t i = 0; i < len && at == NULL;) {
			while (i < len && (s[i] == ' ' || s[i] == '\t'))
				i++;
			size_t j = i;
			while (j < len && s[j] != ' ' && s[j] != '\t')
				j++;
			if (memchr(s + i, '@', j - i) != NULL) {
				at = s + i;
				end = s + j;
			}
			i = j;
		}
		const char *paren = memchr(s, '(', len);
		if (paren != NULL) {
			const char *close = memchr(paren, ')', len - (size_t)(paren - s));
			a->name = paren + 1;
			a->name_len = (size_t)((close != NULL ? close : s + len) - a->name);
		}
	}
	if (at != NULL && memchr(at, '@', (size_t)(end - at)) != NULL)
		lower_copy(a->addr, sizeof(a->addr), at, (size_t)(end - at));
}

/* Split an address list on commas outside quotes, angle brackets and
 * comments; call fn for each address (at most ADDRESSES_MAX). */
static size_t each_address(const char *v, void (*fn)(struct tokens *, const char *,
						     const struct address *),
			   struct tokens *ts, const char *prefix)
{
	size_t count = 0, start = 0, len = strlen(v);
	int depth = 0;
	bool quoted = false;
	for (size_t i = 0; i <= len && count < ADDRESSES_MAX; i++) {
		char c = i < len ? v[i] : ',';
		if (c == '"' && (i == 0 || v[i - 1] != '\\'))
			quoted = !quoted;
		else if (!quoted && (c == '<' || c == '('))
			depth++;
		else if (!quoted && (c == '>' || c == ')') && depth > 0)
			depth--;
		if (c != ',' || quoted || depth > 0)
			continue;
		struct address a;
		parse_address(v + start, i - start, &a);
		if (a.addr[0] != '\0') {
			fn(ts, prefix, &a);
			count++;
		}
		start = i + 1;
	}
	return count;
}

/* prefix "F": F:addr, F@domains, Fn:name words (or Fn:none). */
static void add_sender(struct tokens *ts, const char *prefix, const struct address *a)
{
	char p[8];
	snprintf(p, sizeof(p), "%s:", prefix);
	add_str(ts, p, a->addr);
	snprintf(p, sizeof(p), "%s@", prefix);
	const char *at = strrchr(a->addr, '@');
	add_domains(ts, p, at + 1);
	snprintf(p, sizeof(p), "%sn:", prefix);
	size_t before = ts->n;
	if (a->name != NULL)
		add_words(ts, p, a->name, a->name_len, FIELD_WORDS_MAX, false);
	if (ts->n == before)
		add_str(ts, p, "none");
}

static void add_recipient(struct tokens *ts, const char *prefix, const struct address *a)
{
	(void)prefix;
	add_str(ts, "T:", a->addr);
	add_domains(ts, "T@", strrchr(a->addr, '@') + 1);
}

static void add_first_sender(struct tokens *ts, const char *prefix, const char *value)
{
	struct address a;
	parse_address(value, strlen(value), &a);
	if (a.addr[0] != '\0')
		add_sender(ts, prefix, &a);
	else
		add_str(ts, prefix, ":none");
}

static bool is_ipv4(const char *s)
{
	int parts = 0, digits = 0, value = 0;
	for (;; s++) {
		if (*s >= '0' && *s <= '9') {
			value = value * 10 + (*s - '0');
			if (++digits > 3 || value > 255)
				return false;
		} else if ((*s == '.' || *s == '\0') && digits > 0) {
			parts++;
			digits = value = 0;
			if (*s == '\0')
				return parts == 4;
		} else {
			return false;
		}
	}
}

static bool is_hostname(const char *s)
{
	const char *dot = strrchr(s, '.');
	if (dot == NULL || dot == s || strlen(dot + 1) < 2)
		return false;
	for (const char *p = dot + 1; *p != '\0'; p++)
		if (!(*p >= 'a' && *p <= 'z'))
			return false;
	for (const char *p = s; *p != '\0'; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '.' ||
		      *p == '-' || *p == '_'))
			return false;
	return true;
}

/* One Received field, up to its last ';' (the date follows). */
static void add_received(struct tokens *ts, const char *v)
{
	const char *semi = strrchr(v, ';');
	size_t len = semi != NULL ? (size_t)(semi - v) : strlen(v);
	bool after_with = false;
	for (size_t i = 0; i < len && !full(ts);) {
		while (i < len && strchr(" \t\r\n()[]<>;,=", v[i]) != NULL)
			i++;
		size_t j = i;
		while (j < len && strchr(" \t\r\n()[]<>;,=", v[j]) == NULL)
			j++;
		if (j == i)
			break;
		char w[128];
		lower_copy(w, sizeof(w), v + i, j - i);
		i = j;
		if (after_with) {
			add_str(ts, "H:with:", w);
			after_with = false;
		} else if (strcmp(w, "with") == 0) {
			after_with = true;
		} else if (is_ipv4(w)) {
			add_str(ts, "H:ip:", w);
			*strrchr(w, '.') = '\0';
			add_str(ts, "H:net:", w);
		} else if (is_hostname(w)) {
			add_str(ts, "H:", w);
			add_domains(ts, "H@", w);
		} else if (strlen(w) >= 3 && strlen(w) <= 16 && strcmp(w, "from") != 0 &&
			   strcmp(w, "for") != 0 && strspn(w, "abcdefghijklmnopqrstuvwxyz-") == strlen(w)) {
			add_str(ts, "H:w:", w);
		}
	}
}

/* The value of parameter name (lower case) in a Content-Type field. */
static size_t param(const char *v, const char *name, char *out, size_t cap)
{
	size_t nlen = strlen(name);
	for (const char *p = v; (p = strchr(p, ';')) != NULL;) {
		p++;
		while (*p == ' ' || *p == '\t')
			p++;
		if (strncasecmp(p, name, nlen) != 0 || p[nlen] != '=')
			continue;
		p += nlen + 1;
		bool quoted = *p == '"';
		p += quoted;
		size_t n = 0;
		while (p[n] != '\0' && (quoted ? p[n] != '"' : p[n] != ';' && p[n] != ' '))
			n++;
		lower_copy(out, cap, p, n);
		return n;
	}
	out[0] = '\0';
	return 0;
}

static void add_content_type(struct tokens *ts, const char *v)
{
	char b[128];
	size_t n = strcspn(v, "; \t");
	lower_copy(b, sizeof(b), v, n);
	add_str(ts, "CT:", b);
	if (param(v, "charset", b, sizeof(b)) > 0)
		add_str(ts, "CS:", b);
	if (param(v, "boundary", b, sizeof(b)) > 0) {
		/* the shape of its first 16 bytes: digits and letters as classes */
		char shape[17];
		size_t o = 0;
		for (size_t i = 0; b[i] != '\0' && i < 16; i++) {
			char c = b[i];
			c = c >= '0' && c <= '9' ? '9' : c >= 'a' && c <= 'z' ? 'a' : c;
			if (o == 0 || shape[o - 1] != c || strchr("9a", c) == NULL)
				shape[o++] = c;
		}
		shape[o] = '\0';
		add_str(ts, "B:", shape);
	}
}

/* Fields written by filters on the way (ours and others'): never tokens,
 * or a message would be judged by an earlier verdict. */
static bool ignored_field(const char *name)
{
	static const char *const prefixes[] = {
		"x-spam", "x-bogosity", "x-dspam", "x-virus", "x-amavis", "x-quarantine",
		"x-postern", "x-rspamd", "x-ham-report",
	};
	for (size_t i = 0; i < ARRAY_LEN(prefixes); i++)
		if (str_has_prefix_nocase(name, prefixes[i]))
			return true;
	return false;
}

struct seen {
	bool subject, date, to, message_id;
	size_t received, recipients;
};

static void add_field(struct tokens *ts, const struct scan_header *h, struct seen *seen)
{
	const char *n = h->name, *v = h->decoded != NULL ? h->decoded : "";
	if (str_eq_nocase(n, "content-type")) {
		add_content_type(ts, v);
	} else if (str_eq_nocase(n, "content-transfer-encoding")) {
		char b[64];
		lower_copy(b, sizeof(b), v, strcspn(v, " \t;"));
		add_str(ts, "CTE:", b);
	}
	if (h->part != 0)
		return;
	char name[48];
	lower_copy(name, sizeof(name), n, strlen(n));
	add_str(ts, "HN:", name);
	if (strcmp(name, "subject") == 0) {
		seen->subject = true;
		add_words(ts, "S:", v, strlen(v), FIELD_WORDS_MAX, false);
	} else if (strcmp(name, "from") == 0) {
		add_first_sender(ts, "F", v);
	} else if (strcmp(name, "reply-to") == 0) {
		add_first_sender(ts, "R", v);
	} else if (strcmp(name, "return-path") == 0) {
		struct address a;
		parse_address(v, strlen(v), &a);
		if (a.addr[0] != '\0')
			add_domains(ts, "RP@", strrchr(a.addr, '@') + 1);
	} else if (strcmp(name, "to") == 0 || strcmp(name, "cc") == 0) {
		seen->to |= strcmp(name, "to") == 0;
		seen->recipients += each_address(v, add_recipient, ts, "T");
	} else if (strcmp(name, "received") == 0) {
		if (seen->received++ < RECEIVED_MAX)
			add_received(ts, v);
	} else if (strcmp(name, "user-agent") == 0 || strcmp(name, "x-mailer") == 0 ||
		   strcmp(name, "x-newsreader") == 0) {
		add_words(ts, "UA:", v, strlen(v), FIELD_WORDS_MAX, false);
	} else if (strcmp(name, "message-id") == 0) {
		seen->message_id = true;
		const char *at = strrchr(v, '@');
		char b[256];
		lower_copy(b, sizeof(b), at != NULL ? at + 1 : "none",
			   at != NULL ? strcspn(at + 1, "> \t") : 4);
		add_str(ts, "MID@", b);
	} else if (strcmp(name, "date") == 0) {
		seen->date = true;
	} else if (strcmp(name, "list-id") == 0) {
		add_words(ts, "L:", v, strlen(v), FIELD_WORDS_MAX, false);
	} else if (strcmp(name, "precedence") == 0) {
		add_words(ts, "P:", v, strlen(v), 2, false);
	} else if (strcmp(name, "x-priority") == 0 || strcmp(name, "x-msmail-priority") == 0 ||
		   strcmp(name, "importance") == 0) {
		char p[8];
		snprintf(p, sizeof(p), "XP:%c:", name[0] == 'x' ? name[2] : 'i');
		char b[32];
		lower_copy(b, sizeof(b), v, strcspn(v, " \t("));
		add_str(ts, p, b);
	} else if (strcmp(name, "organization") == 0) {
		add_words(ts, "O:", v, strlen(v), FIELD_WORDS_MAX, false);
	}
}

static void add_headers(struct tokens *ts, const struct scan_message *m)
{
	struct seen seen = { 0 };
	for (size_t i = 0; i < m->header_count && !full(ts); i++)
		if (m->headers[i].name != NULL && !ignored_field(m->headers[i].name))
			add_field(ts, &m->headers[i], &seen);
	for (size_t i = 0; i < m->part_count && !full(ts); i++)
		if (m->parts[i].content_type != NULL && m->parts[i].content_type[0] != '\0')
			add_str(ts, "CT:", m->parts[i].content_type);
	char count[8];
	snprintf(count, sizeof(count), "%zu", seen.recipients > 9 ? 10 : seen.recipients);
	add_str(ts, "T#", count);
	if (!seen.subject)
		add_str(ts, "S:", "none");
	if (!seen.date)
		add_str(ts, "D:", "none");
	if (!seen.to)
		add_str(ts, "T:", "none");
	if (!seen.message_id)
		add_str(ts, "MID:", "none");
}

/* ---- URIs ------------------------------------------------------------------------------ */

static void add_uris(struct tokens *ts, const struct spam_text *t)
{
	for (size_t i = 0; i < t->uri_count && i < URIS_MAX && !full(ts); i++) {
		const struct spam_uri *u = &t->uris[i];
		if (u->uri != NULL) {
			size_t n = strcspn(u->uri, ":/");
			if (u->uri[n] == ':' && n > 0 && n <= 10) {
				char scheme[12];
				lower_copy(scheme, sizeof(scheme), u->uri, n);
				add_str(ts, "U:s:", scheme);
			}
		}
		if (u->host == NULL || u->host[0] == '\0')
			continue;
		char host[256];
		lower_copy(host, sizeof(host), u->host, strlen(u->host));
		if (is_ipv4(host) || host[0] == '[') {
			add_str(ts, "U:ip", "");
			add_str(ts, "U@", host);
		} else {
			add_domains(ts, "U@", host);
			if (strchr(host, '.') == NULL)
				add_str(ts, "U@", host);
		}
	}
}

/* ---- the message ------------------------------------------------------------------------- */

size_t spam_tokenize(const struct spam_text *t, uint64_t *tokens, size_t max)
{
	if (max == 0)
		return 0;
	if (max > TOKENS_MAX_EVER)
		max = TOKENS_MAX_EVER;
	size_t cap = 16;
	while (cap < max * 2)
		cap *= 2;
	struct tokens ts = { tokens, max, 0, xcalloc(cap, sizeof(uint64_t)), cap - 1 };
	if (t->msg != NULL)
		add_headers(&ts, t->msg);
	add_uris(&ts, t);
	add_words(&ts, "", t->body.data != NULL ? t->body.data : "", t->body.len, SIZE_MAX, true);
	add_punctuation(&ts, t->body.data != NULL ? t->body.data : "", t->body.len);
	free(ts.slots);
	return ts.n;
}

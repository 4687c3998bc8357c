/*
 * mime_params.c - structured header values: the "type/subtype" or
 * disposition before the first ';', and parameters after it (RFC 2045
 * section 5.1, RFC 2183, RFC 2231: extended values "name*=charset'lang'
 * %XX..", continuations "name*0", "name*1*", in any order).
 *
 * Lenient the way mail clients are: comments are skipped, an unquoted
 * value runs to the next ';' (spaces included, so "name=my file.exe"
 * keeps its extension), an unterminated quote runs to the end, a
 * backslash escapes only '"' and '\' (Windows paths survive), RFC 2047
 * words inside a plain value are decoded (what Outlook and Gmail write),
 * and the RFC 2231 form wins over the plain one when both are there.
 * Every result is valid UTF-8: bytes that are not become U+FFFD.
 *
 * Untrusted input: Content-Type and Content-Disposition values. Runs in
 * the unprivileged scanner processes and in `postern scan`.
 */
#include "../lib/strutil.h"
#include "mime_internal.h"

#include <string.h>
#include <strings.h>

#define SEGMENTS_MAX 64 /* RFC 2231 continuations kept per parameter */

struct cursor {
	const char *s;
	size_t len, i;
};

static bool is_wsp(char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

/* Skip white space and (nested) comments. */
static void skip_cfws(struct cursor *c)
{
	while (c->i < c->len) {
		char ch = c->s[c->i];
		if (is_wsp(ch)) {
			c->i++;
		} else if (ch == '(') {
			unsigned depth = 0;
			for (; c->i < c->len; c->i++) {
				ch = c->s[c->i];
				if (ch == '\\') {
					c->i++;
				} else if (ch == '(') {
					depth++;
				} else if (ch == ')' && --depth == 0) {
					c->i++;
					break;
				}
			}
		} else {
			break;
		}
	}
}

/* Move past the next ';' outside quotes and comments (or to the end). */
static void skip_to_semicolon(struct cursor *c)
{
	while (c->i < c->len) {
		char ch = c->s[c->i];
		if (ch == ';') {
			c->i++;
			return;
		}
		if (ch == '"') {
			for (c->i++; c->i < c->len && c->s[c->i] != '"'; c->i++)
				if (c->s[c->i] == '\\')
					c->i++;
			c->i++;
		} else if (ch == '(') {
			skip_cfws(c);
		} else {
			c->i++;
		}
	}
}

bool mime_value_token(const char *value, size_t len, buf_t *out)
{
	struct cursor c = { value, len, 0 };
	size_t before = out->len;
	for (;;) {
		skip_cfws(&c);
		if (c.i >= len || value[c.i] == ';')
			break;
		char ch = value[c.i++];
		if (ch == '"')
			continue;
		if (ch >= 'A' && ch <= 'Z')
			ch = (char)(ch - 'A' + 'a');
		buf_putc(out, ch);
	}
	return out->len > before;
}

/* One "attribute=value" as written. */
struct param {
	const char *attr;
	size_t attr_len;
	const char *value; /* inside the quotes when quoted, escapes still there */
	size_t value_len;
	bool quoted;
};

/* The next parameter; false at the end. */
static bool next_param(struct cursor *c, struct param *p)
{
	while (c->i < c->len) {
		skip_cfws(c);
		if (c->i >= c->len)
			return false;
		if (c->s[c->i] == ';') {
			c->i++;
			continue;
		}
		size_t a = c->i;
		while (c->i < c->len && c->s[c->i] != '=' && c->s[c->i] != ';' &&
		       !is_wsp(c->s[c->i]) && c->s[c->i] != '(' && c->s[c->i] != '"')
			c->i++;
		p->attr = c->s + a;
		p->attr_len = c->i - a;
		skip_cfws(c);
		if (p->attr_len == 0 || c->i >= c->len || c->s[c->i] != '=') {
			skip_to_semicolon(c);
			continue;
		}
		c->i++;
		skip_cfws(c);
		if (c->i < c->len && c->s[c->i] == '"') {
			size_t v = ++c->i;
			while (c->i < c->len && c->s[c->i] != '"')
				c->i += c->s[c->i] == '\\' && c->i + 1 < c->len ? 2 : 1;
			p->value = c->s + v;
			if (c->i > c->len)
				c->i = c->len;
			p->value_len = c->i - v;
			p->quoted = true;
			if (c->i < c->len)
				c->i++; /* the closing quote */
			skip_to_semicolon(c);
		} else {
			size_t v = c->i;
			while (c->i < c->len && c->s[c->i] != ';')
				c->i++;
			size_t e = c->i;
			while (e > v && is_wsp(c->s[e - 1]))
				e--;
			p->value = c->s + v;
			p->value_len = e - v;
			p->quoted = false;
		}
		return true;
	}
	return false;
}

/* Append a value with '\"' and '\\' unescaped (other backslashes kept). */
static void unquote(const struct param *p, buf_t *out)
{
	if (!p->quoted) {
		buf_append(out, p->value, p->value_len);
		return;
	}
	for (size_t k = 0; k < p->value_len; k++) {
		char ch = p->value[k];
		if (ch == '\\' && k + 1 < p->value_len &&
		    (p->value[k + 1] == '"' || p->value[k + 1] == '\\'))
			ch = p->value[++k];
		buf_putc(out, ch);
	}
}

/* Append %XX-decoded text (a '%' that is not an escape stays). */
static void percent_decode(const char *s, size_t len, buf_t *out)
{
	for (size_t k = 0; k < len; k++) {
		int hi, lo;
		if (s[k] == '%' && k + 2 < len && (hi = str_hex_digit((unsigned char)s[k + 1])) >= 0 &&
		    (lo = str_hex_digit((unsigned char)s[k + 2])) >= 0) {
			buf_putc(out, (char)(hi * 16 + lo));
			k += 2;
		} else {
			buf_putc(out, s[k]);
		}
	}
}

struct segment {
	unsigned number;
	bool encoded;
	struct param p;
};

/* Is attr name*N or name*N*? */
static bool segment_of(const struct param *p, const char *name, size_t name_len,
		       struct segment *seg_r)
{
	if (p->attr_len < name_len + 2 || strncasecmp(p->attr, name, name_len) != 0 ||
	    p->attr[name_len] != '*')
		return false;
	size_t k = name_len + 1, digits = 0;
	unsigned n = 0;
	while (k < p->attr_len && p->attr[k] >= '0' && p->attr[k] <= '9' && digits < 5) {
		n = n * 10 + (unsigned)(p->attr[k] - '0');
		k++;
		digits++;
	}
	if (digits == 0)
		return false;
	bool encoded = k < p->attr_len && p->attr[k] == '*';
	if (k + encoded != p->attr_len)
		return false;
	seg_r->number = n;
	seg_r->encoded = encoded;
	seg_r->p = *p;
	return true;
}

/* "charset'language'text": split off the charset; false if the two
 * quotes are not there. */
static bool split_extended(const char *v, size_t len, const char **charset_r, size_t *charset_len_r,
			   const char **text_r, size_t *text_len_r)
{
	const char *q1 = memchr(v, '\'', len);
	if (q1 == NULL)
		return false;
	const char *q2 = memchr(q1 + 1, '\'', len - (size_t)(q1 + 1 - v));
	if (q2 == NULL)
		return false;
	*charset_r = v;
	*charset_len_r = (size_t)(q1 - v);
	*text_r = q2 + 1;
	*text_len_r = len - (size_t)(q2 + 1 - v);
	return true;
}

/* Bytes in charset (maybe none or unknown) to UTF-8 on out. */
static void to_utf8(struct mime_charsets *cs, const char *charset, size_t charset_len,
		    const buf_t *bytes, buf_t *out)
{
	if (charset_len == 0 ||
	    !mime_charset_to_utf8(cs, charset, charset_len, bytes->data, bytes->len, out))
		mime_utf8_sanitize(bytes->data ? bytes->data : "", bytes->len, out);
}

static void assemble_segments(struct mime_charsets *cs, struct segment *segs, size_t n, buf_t *out)
{
	/* insertion sort by number; n is small */
	for (size_t a = 1; a < n; a++)
		for (size_t b = a; b > 0 && segs[b - 1].number > segs[b].number; b--) {
			struct segment t = segs[b];
			segs[b] = segs[b - 1];
			segs[b - 1] = t;
		}
	buf_t bytes = BUF_INIT, piece = BUF_INIT;
	char charset[MIME_CHARSET_NAME_MAX + 1] = "";
	for (size_t k = 0; k < n; k++) {
		if (k > 0 && segs[k].number == segs[k - 1].number)
			continue; /* the same piece twice: the first counts */
		buf_reset(&piece);
		unquote(&segs[k].p, &piece);
		const char *text = piece.data ? piece.data : "";
		size_t text_len = piece.len;
		if (!segs[k].encoded) {
			buf_append(&bytes, text, text_len);
			continue;
		}
		const char *name;
		size_t name_len;
		/* only the first piece names the charset */
		if (k == 0 && split_extended(text, text_len, &name, &name_len, &text, &text_len) &&
		    name_len <= MIME_CHARSET_NAME_MAX) {
			memcpy(charset, name, name_len);
			charset[name_len] = '\0';
		}
		percent_decode(text, text_len, &bytes);
	}
	to_utf8(cs, charset, strlen(charset), &bytes, out);
	buf_free(&bytes);
	buf_free(&piece);
}

static bool param_get(struct mime_charsets *cs, const char *value, size_t len, const char *name,
		      bool decode_words, buf_t *out)
{
	size_t name_len = strlen(name);
	struct cursor c = { value, len, 0 };
	skip_to_semicolon(&c);
	struct param p, plain, extended;
	bool have_plain = false, have_extended = false;
	struct segment segs[SEGMENTS_MAX];
	size_t nsegs = 0;
	while (next_param(&c, &p)) {
		if (p.attr_len == name_len && strncasecmp(p.attr, name, name_len) == 0) {
			if (!have_plain)
				plain = p;
			have_plain = true;
		} else if (p.attr_len == name_len + 1 && p.attr[name_len] == '*' &&
			   strncasecmp(p.attr, name, name_len) == 0) {
			if (!have_extended)
				extended = p;
			have_extended = true;
		} else if (nsegs < SEGMENTS_MAX && segment_of(&p, name, name_len, &segs[nsegs])) {
			nsegs++;
		}
	}
	if (have_extended) {
		buf_t text = BUF_INIT, bytes = BUF_INIT;
		unquote(&extended, &text);
		const char *charset = NULL, *t = text.data ? text.data : "";
		size_t charset_len = 0, t_len = text.len;
		split_extended(t, t_len, &charset, &charset_len, &t, &t_len);
		percent_decode(t, t_len, &bytes);
		to_utf8(cs, charset, charset_len, &bytes, out);
		buf_free(&text);
		buf_free(&bytes);
		return true;
	}
	if (nsegs > 0) {
		assemble_segments(cs, segs, nsegs, out);
		return true;
	}
	if (!have_plain)
		return false;
	buf_t text = BUF_INIT;
	unquote(&plain, &text);
	if (decode_words && mime_words_maybe(buf_cstr(&text), text.len)) {
		buf_t decoded = BUF_INIT;
		mime_words_decode(cs, text.data, text.len, &decoded);
		mime_utf8_sanitize(decoded.data ? decoded.data : "", decoded.len, out);
		buf_free(&decoded);
	} else {
		mime_utf8_sanitize(text.data ? text.data : "", text.len, out);
	}
	buf_free(&text);
	return true;
}

bool mime_param_get(struct mime_charsets *cs, const char *value, size_t len, const char *name,
		    bool decode_words, buf_t *out)
{
	size_t before = out->len;
	if (!param_get(cs, value, len, name, decode_words, out))
		return false;
	mime_replace_nul(out, before);
	return true;
}

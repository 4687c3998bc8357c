/*
 * mime_words.c - RFC 2047 encoded words ("=?charset?B|Q?text?=") in
 * header values, decoded to UTF-8.
 *
 * Read as mail clients read them: a word is found anywhere, not only
 * between spaces; white space between two words disappears; adjacent
 * words in the same charset are joined before conversion, so that a
 * character split across two words survives; a word in a charset iconv
 * does not know, or a word that is not complete, stays as written. One
 * pass, linear in the value: where the closing "?=" is was found once and
 * is reused by every word that starts before it.
 *
 * Untrusted input: header values. Runs in the unprivileged scanner
 * processes and in `postern scan`.
 */
#include "../lib/strutil.h"
#include "mime.h"
#include "mime_internal.h"

#include <string.h>
#include <strings.h>

#define CHARSET_MAX 64 /* longer "charsets" are not words */

struct word {
	const char *charset;
	size_t charset_len;
	char encoding; /* 'b' or 'q' */
	const char *text;
	size_t text_len;
	size_t end; /* index just after "?=" */
};

/* Where the next "?=" at or after some index is, remembered. */
struct close_cache {
	size_t from; /* the search started here */
	size_t at;   /* and found it here; SIZE_MAX = nowhere after from */
	bool valid;
};

static size_t find_close(const char *s, size_t len, size_t start, struct close_cache *c)
{
	if (c->valid && c->from <= start && (c->at == SIZE_MAX || c->at >= start))
		return c->at;
	const char *q = start < len ? memmem(s + start, len - start, "?=", 2) : NULL;
	c->valid = true;
	c->from = start;
	c->at = q != NULL ? (size_t)(q - s) : SIZE_MAX;
	return c->at;
}

/* Is there a complete word at s[i] ("=?" already seen)? */
static bool parse_word(const char *s, size_t len, size_t i, struct close_cache *cc, struct word *w)
{
	size_t j = i + 2, start = j;
	while (j < len && j - start <= CHARSET_MAX && s[j] != '?' && (unsigned char)s[j] > ' ' &&
	       (unsigned char)s[j] < 0x7f)
		j++;
	if (j == start || j + 2 >= len || s[j] != '?' || s[j + 2] != '?')
		return false;
	char e = s[j + 1];
	if (e != 'b' && e != 'B' && e != 'q' && e != 'Q')
		return false;
	size_t t = j + 3;
	size_t close = find_close(s, len, t, cc);
	if (close == SIZE_MAX)
		return false;
	w->charset = s + start;
	w->charset_len = j - start;
	w->encoding = (e == 'b' || e == 'B') ? 'b' : 'q';
	w->text = s + t;
	w->text_len = close - t;
	w->end = close + 2;
	return true;
}

static void decode_text(const struct word *w, buf_t *raw)
{
	if (w->encoding == 'b') {
		struct mime_base64 st = { 0, 0, false };
		buf_reserve(raw, w->text_len);
		unsigned char *o = (unsigned char *)raw->data + raw->len;
		size_t n = mime_base64_decode(&st, w->text, w->text_len, o);
		n += mime_base64_finish(&st, o + n);
		raw->len += n;
		raw->data[raw->len] = '\0';
		return;
	}
	buf_reserve(raw, w->text_len);
	for (size_t k = 0; k < w->text_len; k++) {
		unsigned char c = (unsigned char)w->text[k];
		int hi, lo;
		if (c == '_') {
			c = ' ';
		} else if (c == '=' && k + 2 < w->text_len &&
			   (hi = str_hex_digit((unsigned char)w->text[k + 1])) >= 0 &&
			   (lo = str_hex_digit((unsigned char)w->text[k + 2])) >= 0) {
			c = (unsigned char)(hi * 16 + lo);
			k += 2;
		}
		raw->data[raw->len++] = (char)c;
	}
	raw->data[raw->len] = '\0';
}

/* Words of one charset waiting to be converted together. */
struct run {
	bool active;
	const char *charset;
	size_t charset_len;
	size_t first, end; /* the words' span in the value, for keeping it as written */
	buf_t raw;
};

/* NUL would cut the C string and CR/LF would start a new line wherever the
 * value is printed: U+FFFD and a space instead. */
static void clean_controls(buf_t *out, size_t from)
{
	for (size_t k = from; k < out->len; k++)
		if (out->data[k] == '\r' || out->data[k] == '\n')
			out->data[k] = ' ';
	mime_replace_nul(out, from);
}

static void flush_run(struct mime_charsets *cs, const char *s, struct run *r, buf_t *out)
{
	if (!r->active)
		return;
	size_t from = out->len;
	if (!mime_charset_to_utf8(cs, r->charset, r->charset_len, r->raw.data, r->raw.len, out))
		buf_append(out, s + r->first, r->end - r->first);
	else
		clean_controls(out, from);
	r->active = false;
	buf_reset(&r->raw);
}

static bool all_white(const char *p, size_t n)
{
	for (size_t k = 0; k < n; k++)
		if (p[k] != ' ' && p[k] != '\t' && p[k] != '\r' && p[k] != '\n')
			return false;
	return true;
}

/* The first "=?" at or after s[from], or NULL. */
static const char *find_start(const char *s, size_t len, size_t from)
{
	const char *p = s + from, *end = s + len;
	while (p + 1 < end && (p = memchr(p, '=', (size_t)(end - p - 1))) != NULL) {
		if (p[1] == '?')
			return p;
		p++;
	}
	return NULL;
}

bool mime_words_maybe(const char *value, size_t len)
{
	return find_start(value, len, 0) != NULL;
}

void mime_words_decode(struct mime_charsets *cs, const char *s, size_t len, buf_t *out)
{
	struct run run = { false, NULL, 0, 0, 0, BUF_INIT };
	struct close_cache cc = { 0, 0, false };
	size_t i = 0, literal = 0;
	bool after_word = false;
	while (i + 1 < len) {
		const char *q = find_start(s, len, i);
		if (q == NULL)
			break;
		i = (size_t)(q - s);
		struct word w;
		if (!parse_word(s, len, i, &cc, &w)) {
			i++;
			continue;
		}
		if (!(after_word && all_white(s + literal, i - literal))) {
			flush_run(cs, s, &run, out);
			buf_append(out, s + literal, i - literal);
		}
		if (run.active && (run.charset_len != w.charset_len ||
				   strncasecmp(run.charset, w.charset, w.charset_len) != 0))
			flush_run(cs, s, &run, out);
		if (!run.active) {
			run.active = true;
			run.charset = w.charset;
			run.charset_len = w.charset_len;
			run.first = i;
		}
		decode_text(&w, &run.raw);
		run.end = w.end;
		i = w.end;
		literal = i;
		after_word = true;
	}
	flush_run(cs, s, &run, out);
	buf_append(out, s + literal, len - literal);
	buf_free(&run.raw);
}

void mime_decode_words(const char *value, size_t len, buf_t *out)
{
	struct mime_charsets cs;
	memset(&cs, 0, sizeof(cs));
	mime_words_decode(&cs, value, len, out);
	mime_charsets_free(&cs);
}

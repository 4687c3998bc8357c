/*
 * dsn.c - parsing and checking the DSN envelope parameters (see dsn.h).
 *
 * RFCs: 3461 (RET, ENVID, NOTIFY, ORCPT, xtext), 6533 (the "utf-8"
 * address type: utf-8-addr-xtext and utf-8-addr-unitext), 3629 (UTF-8).
 * Untrusted input: parameter values from SMTP clients and queue files;
 * every loop is bounded by the input length and every write by the
 * output size. Privilege: unprivileged roles only.
 */
#include "dsn.h"

#include <string.h>
#include <strings.h>

static bool word_is(const char *p, size_t len, const char *word)
{
	return strlen(word) == len && strncasecmp(p, word, len) == 0;
}

bool dsn_parse_ret(const char *value, size_t len, enum dsn_ret *ret_r)
{
	if (word_is(value, len, "FULL"))
		*ret_r = DSN_RET_FULL;
	else if (word_is(value, len, "HDRS"))
		*ret_r = DSN_RET_HDRS;
	else
		return false;
	return true;
}

bool dsn_parse_notify(const char *value, size_t len, unsigned *notify_r)
{
	static const struct { const char *word; unsigned bit; } words[] = {
		{ "NEVER", DSN_NOTIFY_NEVER }, { "SUCCESS", DSN_NOTIFY_SUCCESS },
		{ "FAILURE", DSN_NOTIFY_FAILURE }, { "DELAY", DSN_NOTIFY_DELAY },
	};
	unsigned notify = 0;
	size_t pos = 0;

	for (;;) {
		const char *item = value + pos;
		const char *comma = memchr(item, ',', len - pos);
		size_t n = comma != NULL ? (size_t)(comma - item) : len - pos;
		unsigned bit = 0;
		for (size_t i = 0; i < sizeof(words) / sizeof(words[0]); i++)
			if (word_is(item, n, words[i].word))
				bit = words[i].bit;
		if (bit == 0 || (notify & bit) != 0)
			return false;
		notify |= bit;
		if (comma == NULL)
			break;
		pos += n + 1;
	}
	if (!dsn_notify_valid(notify))
		return false;
	*notify_r = notify;
	return true;
}

static int hex_value(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1; /* xtext's hexchar is upper case only */
}

/* Decode RFC 3461 xtext into out (at most max bytes, then NUL); false on
 * bad syntax, a decoded byte outside 0x20..0x7e, or too long. */
static bool xtext_decode(const char *in, size_t len, char *out, size_t max)
{
	size_t n = 0;

	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)in[i];
		if (c == '+') {
			if (len - i < 3)
				return false;
			int hi = hex_value(in[i + 1]), lo = hex_value(in[i + 2]);
			if (hi < 0 || lo < 0)
				return false;
			c = (unsigned char)(hi << 4 | lo);
			i += 2;
			if (c < 0x20 || c > 0x7e)
				return false;
		} else if (c < 0x21 || c > 0x7e || c == '=') {
			return false;
		}
		if (n >= max)
			return false;
		out[n++] = (char)c;
	}
	out[n] = '\0';
	return n > 0;
}

bool dsn_parse_envid(const char *value, size_t len, char *out)
{
	return xtext_decode(value, len, out, DSN_ENVID_MAX);
}

/* Append code point cp as UTF-8 to out[*n..max); false if it does not fit. */
static bool put_utf8(unsigned long cp, char *out, size_t *n, size_t max)
{
	unsigned char b[4];
	size_t k;

	if (cp < 0x80) {
		b[0] = (unsigned char)cp;
		k = 1;
	} else if (cp < 0x800) {
		b[0] = (unsigned char)(0xc0 | cp >> 6);
		b[1] = (unsigned char)(0x80 | (cp & 0x3f));
		k = 2;
	} else if (cp < 0x10000) {
		b[0] = (unsigned char)(0xe0 | cp >> 12);
		b[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3f));
		b[2] = (unsigned char)(0x80 | (cp & 0x3f));
		k = 3;
	} else {
		b[0] = (unsigned char)(0xf0 | cp >> 18);
		b[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3f));
		b[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3f));
		b[3] = (unsigned char)(0x80 | (cp & 0x3f));
		k = 4;
	}
	if (max - *n < k)
		return false;
	memcpy(out + *n, b, k);
	*n += k;
	return true;
}

/* "\x{HEX}" at in[0..len): 2 to 6 hex digits (either case, RFC 6533's
 * HEXPOINT), a Unicode scalar value that needed escaping (not a QCHAR).
 * Returns the bytes taken, 0 if it is not a valid escape. */
static size_t embedded_char(const char *in, size_t len, unsigned long *cp_r)
{
	unsigned long cp = 0;
	size_t i = 3;

	if (len < 6 || in[1] != 'x' || in[2] != '{')
		return 0;
	for (; i < len && in[i] != '}'; i++) {
		char c = in[i];
		int v = hex_value(c >= 'a' && c <= 'f' ? (char)(c - 'a' + 'A') : c);
		if (v < 0 || i - 3 >= 6)
			return 0;
		cp = cp << 4 | (unsigned long)v;
	}
	size_t digits = i - 3;
	if (i >= len || digits < 2 || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
		return 0;
	/* A character that could be written as itself must be. */
	if (cp > 0x20 && cp < 0x7f && cp != '+' && cp != '=' && cp != '\\')
		return 0;
	if (cp < 0x20 || cp == 0x7f || (cp >= 0x80 && cp < 0xa0))
		return 0; /* controls have no place in an address */
	*cp_r = cp;
	return i + 1;
}

/* Length of the valid UTF-8 sequence (of a non-control character) at in,
 * or 0. */
static size_t utf8_sequence(const unsigned char *in, size_t len)
{
	unsigned long cp;
	size_t k;

	if (in[0] >= 0xc2 && in[0] <= 0xdf) {
		k = 2;
		cp = in[0] & 0x1f;
	} else if (in[0] >= 0xe0 && in[0] <= 0xef) {
		k = 3;
		cp = in[0] & 0x0f;
	} else if (in[0] >= 0xf0 && in[0] <= 0xf4) {
		k = 4;
		cp = in[0] & 0x07;
	} else {
		return 0;
	}
	if (len < k)
		return 0;
	for (size_t i = 1; i < k; i++) {
		if ((in[i] & 0xc0) != 0x80)
			return 0;
		cp = cp << 6 | (in[i] & 0x3f);
	}
	bool overlong = (k == 3 && cp < 0x800) || (k == 4 && cp < 0x10000);
	if (overlong || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff) || cp < 0xa0)
		return 0;
	return k;
}

/* utf-8-addr-xtext / -unitext into out (at most max bytes, then NUL). */
static bool utf8_addr_decode(const char *in, size_t len, bool raw_ok, char *out, size_t max)
{
	size_t n = 0;

	for (size_t i = 0; i < len;) {
		unsigned char c = (unsigned char)in[i];
		if (c == '\\') {
			unsigned long cp;
			size_t used = embedded_char(in + i, len - i, &cp);
			if (used == 0 || !put_utf8(cp, out, &n, max))
				return false;
			i += used;
		} else if (c >= 0x80) {
			size_t k = raw_ok ? utf8_sequence((const unsigned char *)in + i, len - i) : 0;
			if (k == 0 || max - n < k)
				return false;
			memcpy(out + n, in + i, k);
			n += k;
			i += k;
		} else {
			/* QCHAR: 0x21..0x7e but '+', '=' and '\\' */
			if (c < 0x21 || c > 0x7e || c == '+' || c == '=' || n >= max)
				return false;
			out[n++] = (char)c;
			i++;
		}
	}
	out[n] = '\0';
	return n > 0;
}

static bool addr_type_ok(const char *p, size_t len)
{
	if (len == 0 || len > DSN_ADDR_TYPE_MAX)
		return false;
	for (size_t i = 0; i < len; i++) {
		char c = p[i];
		bool atext = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
			     (c >= '0' && c <= '9') || strchr("!#$%&'*+-/=?^_`{|}~", c) != NULL;
		if (!atext || c == '\0')
			return false;
	}
	return true;
}

bool dsn_parse_orcpt(const char *value, size_t len, bool utf8_allowed, char *out)
{
	const char *semi = memchr(value, ';', len);

	if (semi == NULL)
		return false;
	size_t tlen = (size_t)(semi - value);
	if (!addr_type_ok(value, tlen))
		return false;
	for (size_t i = 0; i < tlen; i++) {
		char c = value[i];
		out[i] = c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c;
	}
	out[tlen] = ';';
	const char *v = semi + 1;
	size_t vlen = len - tlen - 1;
	if (word_is(value, tlen, "utf-8"))
		return utf8_addr_decode(v, vlen, utf8_allowed, out + tlen + 1, DSN_ORCPT_ADDR_MAX);
	return xtext_decode(v, vlen, out + tlen + 1, DSN_ORCPT_ADDR_MAX);
}

bool dsn_notify_valid(unsigned notify)
{
	if ((notify & ~DSN_NOTIFY_ALL) != 0)
		return false;
	return (notify & DSN_NOTIFY_NEVER) == 0 || notify == DSN_NOTIFY_NEVER;
}

bool dsn_notify_wants(unsigned notify, unsigned kind)
{
	if (notify == 0)
		return kind == DSN_NOTIFY_FAILURE || kind == DSN_NOTIFY_DELAY;
	return (notify & kind) != 0;
}

void dsn_notify_format(unsigned notify, buf_t *out)
{
	static const char *const names[] = { "NEVER", "SUCCESS", "FAILURE", "DELAY" };
	bool first = true;

	for (unsigned i = 0; i < 4; i++) {
		if ((notify & (1u << i)) == 0)
			continue;
		buf_printf(out, "%s%s", first ? "" : ",", names[i]);
		first = false;
	}
}

bool dsn_envid_valid(const char *envid)
{
	size_t n = strnlen(envid, DSN_ENVID_MAX + 1);

	if (n == 0 || n > DSN_ENVID_MAX)
		return false;
	for (size_t i = 0; i < n; i++)
		if (envid[i] < 0x20 || envid[i] > 0x7e)
			return false;
	return true;
}

bool dsn_orcpt_valid(const char *orcpt)
{
	const char *semi = strchr(orcpt, ';');

	if (semi == NULL || !addr_type_ok(orcpt, (size_t)(semi - orcpt)))
		return false;
	bool utf8 = (size_t)(semi - orcpt) == 5 && strncasecmp(orcpt, "utf-8", 5) == 0;
	const unsigned char *a = (const unsigned char *)semi + 1;
	size_t len = strnlen((const char *)a, DSN_ORCPT_ADDR_MAX + 1);
	if (len == 0 || len > DSN_ORCPT_ADDR_MAX)
		return false;
	for (size_t i = 0; i < len;) {
		if (a[i] >= 0x80) {
			size_t k = utf8 ? utf8_sequence(a + i, len - i) : 0;
			if (k == 0)
				return false;
			i += k;
			continue;
		}
		if (a[i] < 0x20 || a[i] == 0x7f)
			return false;
		i++;
	}
	return true;
}

void dsn_xtext_encode(const char *s, buf_t *out)
{
	static const char hex[] = "0123456789ABCDEF";

	for (; *s != '\0'; s++) {
		unsigned char c = (unsigned char)*s;
		if (c < 0x21 || c > 0x7e || c == '+' || c == '=') {
			char e[3] = { '+', hex[c >> 4], hex[c & 15] };
			buf_append(out, e, 3);
		} else {
			buf_putc(out, (char)c);
		}
	}
}

/*
 * mime_decode.c - the body decoders of RFC 2045 (base64, section 6.8;
 * quoted-printable, section 6.7) and uuencode (the x-uuencode transfer
 * encoding and "begin MODE NAME" ... "end" blocks), each streaming: the
 * state between two pieces of input is a few bytes.
 *
 * Broken input is decoded the way mail clients decode it: base64 skips
 * characters outside its alphabet and goes on after padding; an '=' in
 * quoted-printable that starts no escape stays as written; uuencoded
 * lines shorter than their length byte says give what they have. Each
 * such repair sets the decoder's bad flag (MIME_MALFORMED).
 *
 * Untrusted input: body bytes. Runs in the unprivileged scanner processes
 * and in `postern scan`.
 */
#include "mime_internal.h"

#include <string.h>

#include "../lib/strutil.h"

enum { B64_PAD = 64, B64_SPACE = 65, B64_BAD = 66 };
#define PD B64_PAD
#define SP B64_SPACE
#define XX B64_BAD

/* Each byte's value in the base64 alphabet (RFC 2045 table 1), or what
 * else it is: padding, white space, or a character to skip. */
static const unsigned char b64_table[256] = {
	XX, XX, XX, XX, XX, XX, XX, XX, XX, SP, SP, SP, SP, SP, XX, XX,
	XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX,
	SP, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, 62, XX, XX, XX, 63,
	52, 53, 54, 55, 56, 57, 58, 59, 60, 61, XX, XX, XX, PD, XX, XX,
	XX, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14,
	15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, XX, XX, XX, XX, XX,
	XX, 26, 27, 28, 29, 30, 31, 32, 33, 34, 35, 36, 37, 38, 39, 40,
	41, 42, 43, 44, 45, 46, 47, 48, 49, 50, 51, XX, XX, XX, XX, XX,
	XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX,
	XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX,
	XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX,
	XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX,
	XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX,
	XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX,
	XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX,
	XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX,
};

#undef PD
#undef SP
#undef XX

size_t mime_base64_decode(struct mime_base64 *st, const char *in, size_t len, unsigned char *out)
{
	const unsigned char *p = (const unsigned char *)in, *end = p + len;
	unsigned char *o = out;
	uint32_t bits = st->bits;
	unsigned count = st->count;
	while (p < end) {
		/* four clean characters at a time: the common case */
		if (count == 0) {
			while (end - p >= 4) {
				unsigned a = b64_table[p[0]], b = b64_table[p[1]],
					 c = b64_table[p[2]], d = b64_table[p[3]];
				if ((a | b | c | d) >= 64)
					break;
				uint32_t v = a << 18 | b << 12 | c << 6 | d;
				o[0] = (unsigned char)(v >> 16);
				o[1] = (unsigned char)(v >> 8);
				o[2] = (unsigned char)v;
				o += 3;
				p += 4;
			}
			if (p == end)
				break;
		}
		unsigned v = b64_table[*p++];
		if (v < 64) {
			bits = bits << 6 | v;
			if (++count == 4) {
				o[0] = (unsigned char)(bits >> 16);
				o[1] = (unsigned char)(bits >> 8);
				o[2] = (unsigned char)bits;
				o += 3;
				count = 0;
				bits = 0;
			}
		} else if (v == B64_PAD) {
			/* padding ends the group: keep its whole bytes */
			if (count == 2) {
				*o++ = (unsigned char)(bits >> 4);
			} else if (count == 3) {
				*o++ = (unsigned char)(bits >> 10);
				*o++ = (unsigned char)(bits >> 2);
			} else if (count == 1) {
				st->bad = true;
			}
			count = 0;
			bits = 0;
		} else if (v == B64_BAD) {
			st->bad = true;
		}
	}
	st->bits = bits;
	st->count = count;
	return (size_t)(o - out);
}

size_t mime_base64_finish(struct mime_base64 *st, unsigned char *out)
{
	size_t n = 0;
	if (st->count == 2) {
		out[n++] = (unsigned char)(st->bits >> 4);
	} else if (st->count == 3) {
		out[n++] = (unsigned char)(st->bits >> 10);
		out[n++] = (unsigned char)(st->bits >> 2);
	}
	if (st->count != 0)
		st->bad = true; /* padding missing, or a lone character */
	st->count = 0;
	st->bits = 0;
	return n;
}

/*
 * Quoted-printable state in st->carry: carry[0] is '=' when an escape has
 * begun ("=" or "=X"); white space after it (or, without an escape, white
 * space not yet known to be trailing) follows. Trailing white space is
 * dropped at the line end (RFC 2045 rule 3); "=" with only white space
 * after it is a soft line break.
 */
static unsigned char *qp_flush_carry(struct mime_qp *st, unsigned char *o)
{
	if (st->carry_len > 0 && st->carry[0] == '=')
		st->bad = true;
	memcpy(o, st->carry, st->carry_len);
	o += st->carry_len;
	st->carry_len = 0;
	return o;
}

size_t mime_qp_decode(struct mime_qp *st, const char *in, size_t len, bool line_end,
		      unsigned char *out)
{
	unsigned char *o = out;
	for (size_t k = 0; k < len; k++) {
		unsigned char c = (unsigned char)in[k];
		if (st->carry_len == 0) {
			/* the fast path: plain characters */
			if (c != '=' && c != ' ' && c != '\t') {
				*o++ = c;
				continue;
			}
			st->carry[st->carry_len++] = (char)c;
			continue;
		}
		bool escape = st->carry[0] == '=';
		if (escape && st->carry_len == 1 && str_hex_digit(c) >= 0) {
			st->carry[st->carry_len++] = (char)c; /* "=X" */
			continue;
		}
		if (escape && st->carry_len == 2 && st->carry[1] != ' ' && st->carry[1] != '\t') {
			int lo = str_hex_digit(c);
			if (lo >= 0) {
				*o++ = (unsigned char)(str_hex_digit((unsigned char)st->carry[1]) * 16 +
						       lo);
				st->carry_len = 0;
				continue;
			}
			o = qp_flush_carry(st, o); /* "=X" and no second digit */
			k--;
			continue;
		}
		if (c == ' ' || c == '\t') {
			if (st->carry_len >= MIME_QP_CARRY)
				o = qp_flush_carry(st, o);
			st->carry[st->carry_len++] = (char)c;
			continue;
		}
		/* something else: what was kept back was data after all */
		o = qp_flush_carry(st, o);
		k--;
	}
	if (line_end) {
		if (st->carry_len > 0 && st->carry[0] == '=') {
			bool soft = true;
			for (size_t k = 1; k < st->carry_len; k++)
				if (st->carry[k] != ' ' && st->carry[k] != '\t')
					soft = false;
			if (soft)
				st->soft_break = true;
			else
				o = qp_flush_carry(st, o);
		}
		st->carry_len = 0; /* trailing white space: transport padding */
	}
	return (size_t)(o - out);
}

size_t mime_qp_finish(struct mime_qp *st, unsigned char *out)
{
	size_t n = 0;
	if (st->carry_len > 0 && st->carry[0] == '=') {
		n = (size_t)(qp_flush_carry(st, out) - out);
	}
	st->carry_len = 0;
	return n;
}

static bool is_space(char c)
{
	return c == ' ' || c == '\t' || c == '\r';
}

bool mime_uu_begin_line(const char *line, size_t len, const char **name_r, size_t *name_len_r)
{
	if (len < 10 || memcmp(line, "begin", 5) != 0 || !is_space(line[5]))
		return false;
	size_t k = 5;
	while (k < len && is_space(line[k]))
		k++;
	size_t digits = 0;
	while (k < len && line[k] >= '0' && line[k] <= '7') {
		k++;
		digits++;
	}
	if (digits < 3 || digits > 4 || k >= len || !is_space(line[k]))
		return false;
	while (k < len && is_space(line[k]))
		k++;
	size_t e = len;
	while (e > k && is_space(line[e - 1]))
		e--;
	if (e == k)
		return false;
	*name_r = line + k;
	*name_len_r = e - k;
	return true;
}

bool mime_uu_end_line(const char *line, size_t len)
{
	while (len > 0 && is_space(line[len - 1]))
		len--;
	while (len > 0 && is_space(line[0])) {
		line++;
		len--;
	}
	return len == 3 && memcmp(line, "end", 3) == 0;
}

static unsigned uu_value(struct mime_uu *st, const char *line, size_t len, size_t k)
{
	if (k >= len)
		return 0; /* a line cut short: what is missing counts as zero */
	unsigned char c = (unsigned char)line[k];
	if (c < ' ' || c > '`')
		st->bad = true;
	return (unsigned)(c - ' ') & 63;
}

size_t mime_uu_decode_line(struct mime_uu *st, const char *line, size_t len, unsigned char *out)
{
	while (len > 0 && (line[len - 1] == '\r' || line[len - 1] == '\n'))
		len--;
	if (len == 0)
		return 0;
	size_t want = (unsigned)((unsigned char)line[0] - ' ') & 63, n = 0;
	if (want > 0 && len < 1 + (want * 4 + 2) / 3)
		st->bad = true;
	for (size_t k = 1; n < want; k += 4) {
		uint32_t v = uu_value(st, line, len, k) << 18 |
			     uu_value(st, line, len, k + 1) << 12 |
			     uu_value(st, line, len, k + 2) << 6 | uu_value(st, line, len, k + 3);
		out[n++] = (unsigned char)(v >> 16);
		if (n < want)
			out[n++] = (unsigned char)(v >> 8);
		if (n < want)
			out[n++] = (unsigned char)v;
	}
	return n;
}

/*
 * sasl.c - strict base64 and the SASL PLAIN and LOGIN messages (see
 * sasl.h; RFC 4648, 4616, 4954, 5034). Untrusted input: all of it.
 * Privilege: the smtp and pop3 workers.
 */
#include "sasl.h"

#include <string.h>

static const char b64_alphabet[] =
	"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static int b64_value(unsigned char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '+')
		return 62;
	if (c == '/')
		return 63;
	return -1;
}

bool sasl_base64_decode(const char *text, size_t len, unsigned char *out, size_t out_max,
			size_t *out_len_r)
{
	size_t o = 0;
	*out_len_r = 0;
	if (len == 1 && text[0] == '=')
		return true; /* the empty response */
	if (len % 4 != 0)
		return false;
	for (size_t i = 0; i < len; i += 4) {
		const unsigned char *q = (const unsigned char *)text + i;
		bool last = i + 4 == len;
		int v[4];
		size_t pad = 0;
		for (size_t k = 0; k < 4; k++) {
			if (q[k] == '=' && last && k >= 2) {
				pad++;
				v[k] = 0;
				continue;
			}
			if (pad > 0)
				return false; /* data after padding */
			v[k] = b64_value(q[k]);
			if (v[k] < 0)
				return false;
		}
		uint32_t bits = (uint32_t)v[0] << 18 | (uint32_t)v[1] << 12 | (uint32_t)v[2] << 6 |
				(uint32_t)v[3];
		/* canonical: the bits the padding leaves over are zero */
		if ((pad == 1 && (bits & 0xff) != 0) || (pad == 2 && (bits & 0xffff) != 0))
			return false;
		size_t n = 3 - pad;
		if (o + n > out_max)
			return false;
		unsigned char bytes[3] = { (unsigned char)(bits >> 16), (unsigned char)(bits >> 8),
					   (unsigned char)bits };
		memcpy(out + o, bytes, n);
		o += n;
	}
	*out_len_r = o;
	return true;
}

void sasl_base64_encode(const void *data, size_t len, buf_t *out)
{
	const unsigned char *p = data;
	for (size_t i = 0; i < len; i += 3) {
		size_t n = len - i < 3 ? len - i : 3;
		uint32_t bits = (uint32_t)p[i] << 16;
		if (n > 1)
			bits |= (uint32_t)p[i + 1] << 8;
		if (n > 2)
			bits |= p[i + 2];
		char q[4] = { b64_alphabet[bits >> 18 & 63], b64_alphabet[bits >> 12 & 63],
			      n > 1 ? b64_alphabet[bits >> 6 & 63] : '=',
			      n > 2 ? b64_alphabet[bits & 63] : '=' };
		buf_append(out, q, 4);
	}
}

/* Copy field (n bytes, NUL-free) into out of max bytes; false if too long. */
static bool take(const unsigned char *field, size_t n, char *out, size_t max)
{
	if (n > max)
		return false;
	memcpy(out, field, n);
	out[n] = '\0';
	return true;
}

enum sasl_status sasl_plain_decode(const char *text, size_t len, struct sasl_credentials *c)
{
	unsigned char raw[SASL_DECODED_MAX];
	size_t n;
	enum sasl_status st = SASL_OK;
	memset(c, 0, sizeof(*c));
	if (!sasl_base64_decode(text, len, raw, sizeof(raw), &n))
		return SASL_BAD_BASE64;
	/* authzid NUL authcid NUL passwd: exactly two NULs */
	unsigned char *nul1 = memchr(raw, '\0', n);
	unsigned char *nul2 = nul1 != NULL ? memchr(nul1 + 1, '\0', n - (size_t)(nul1 + 1 - raw))
					   : NULL;
	if (nul1 == NULL || nul2 == NULL ||
	    memchr(nul2 + 1, '\0', n - (size_t)(nul2 + 1 - raw)) != NULL) {
		st = SASL_BAD_MESSAGE;
	} else {
		size_t zlen = (size_t)(nul1 - raw);
		size_t ulen = (size_t)(nul2 - nul1 - 1);
		size_t plen = n - (size_t)(nul2 + 1 - raw);
		if (ulen == 0 || plen == 0)
			st = SASL_BAD_MESSAGE;
		else if (!take(nul1 + 1, ulen, c->user, AUTH_USER_MAX) ||
			 !take(nul2 + 1, plen, c->password, AUTH_PASSWORD_MAX))
			st = SASL_TOO_LONG;
		else if (zlen > 0 && (zlen != ulen || memcmp(raw, nul1 + 1, zlen) != 0))
			st = SASL_PROXY;
	}
	explicit_bzero(raw, sizeof(raw));
	if (st != SASL_OK)
		sasl_credentials_wipe(c);
	return st;
}

enum sasl_status sasl_login_decode(const char *text, size_t len, char *out, size_t max)
{
	unsigned char raw[SASL_DECODED_MAX];
	size_t n;
	enum sasl_status st = SASL_OK;
	out[0] = '\0';
	if (!sasl_base64_decode(text, len, raw, sizeof(raw), &n))
		return SASL_BAD_BASE64;
	if (n == 0 || memchr(raw, '\0', n) != NULL)
		st = SASL_BAD_MESSAGE;
	else if (!take(raw, n, out, max))
		st = SASL_TOO_LONG;
	explicit_bzero(raw, sizeof(raw));
	return st;
}

void sasl_credentials_wipe(struct sasl_credentials *c)
{
	explicit_bzero(c, sizeof(*c));
}

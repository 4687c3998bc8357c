/*
 * mime_charset.c - text in a declared charset to UTF-8, for RFC 2047
 * encoded words, RFC 2231 parameters and text bodies (mime_text_to_utf8,
 * for the spam tests). glibc's iconv does the work; a few labels mail
 * programs write are read the way mail clients and web browsers read them
 * (the WHATWG Encoding Standard's choices: ISO-8859-1 and US-ASCII as
 * windows-1252, GB2312 as GB18030, Shift_JIS as Windows-31J, KS C 5601 as
 * CP949). Bytes a charset does not allow become U+FFFD, as in clients;
 * nothing is dropped silently.
 *
 * Untrusted input: charset names and bytes from header fields and text
 * parts. Runs in the unprivileged scanner processes and in `postern scan`.
 */
#include "mime_internal.h"

#include <errno.h>
#include <string.h>

#include "../lib/strutil.h"

static const char replacement[] = "\xEF\xBF\xBD"; /* U+FFFD */

/* Labels iconv reads differently from mail clients, or does not know. */
static const struct {
	const char *label;
	const char *iconv_name;
} aliases[] = {
	{ "us-ascii", "WINDOWS-1252" },
	{ "ascii", "WINDOWS-1252" },
	{ "ansi_x3.4-1968", "WINDOWS-1252" },
	{ "iso-8859-1", "WINDOWS-1252" },
	{ "iso8859-1", "WINDOWS-1252" },
	{ "iso_8859-1", "WINDOWS-1252" },
	{ "latin1", "WINDOWS-1252" },
	{ "latin-1", "WINDOWS-1252" },
	{ "l1", "WINDOWS-1252" },
	{ "cp819", "WINDOWS-1252" },
	{ "x-unknown", "WINDOWS-1252" },
	{ "unknown-8bit", "WINDOWS-1252" },
	{ "x-user-defined", "WINDOWS-1252" },
	{ "iso-8859-9", "WINDOWS-1254" },
	{ "latin5", "WINDOWS-1254" },
	{ "iso-8859-11", "CP874" },
	{ "tis-620", "CP874" },
	{ "windows-874", "CP874" },
	{ "ks_c_5601-1987", "CP949" },
	{ "ks_c_5601", "CP949" },
	{ "ksc5601", "CP949" },
	{ "euc-kr", "CP949" },
	{ "gb2312", "GB18030" },
	{ "gbk", "GB18030" },
	{ "x-gbk", "GB18030" },
	{ "cp936", "GB18030" },
	{ "shift_jis", "CP932" },
	{ "shift-jis", "CP932" },
	{ "sjis", "CP932" },
	{ "x-sjis", "CP932" },
	{ "ms_kanji", "CP932" },
	{ "windows-31j", "CP932" },
	{ "big5", "BIG5-HKSCS" },
	{ "iso-8859-8-i", "ISO-8859-8" },
	{ "unicode-1-1-utf-7", "UTF-7" },
	{ "utf8", "UTF-8" },
	{ "x-mac-roman", "MACINTOSH" },
};

/* Charsets where an ASCII byte may not stand for itself. */
static bool stateful_or_wide(const char *name)
{
	static const char *const prefixes[] = {
		"utf-7", "unicode-1-1-utf-7", "iso-2022", "hz", "utf-16", "utf-32", "ucs", "unicode"
	};
	for (size_t i = 0; i < ARRAY_LEN(prefixes); i++)
		if (strncmp(name, prefixes[i], strlen(prefixes[i])) == 0)
			return true;
	return false;
}

/* Lower case, without an RFC 2231 "*language" suffix and without quotes or
 * white space around; false if it cannot be a charset name. */
static bool normalise(const char *name, size_t len, char out[MIME_CHARSET_NAME_MAX + 1])
{
	while (len > 0 && (*name == ' ' || *name == '\t' || *name == '"')) {
		name++;
		len--;
	}
	const char *star = memchr(name, '*', len);
	if (star != NULL)
		len = (size_t)(star - name);
	while (len > 0 && (name[len - 1] == ' ' || name[len - 1] == '\t' || name[len - 1] == '"'))
		len--;
	if (len == 0 || len > MIME_CHARSET_NAME_MAX)
		return false;
	for (size_t i = 0; i < len; i++) {
		char c = name[i];
		if (c >= 'A' && c <= 'Z')
			c = (char)(c - 'A' + 'a');
		/* iconv reads '/' and ',' as options: never pass them on */
		if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_' ||
		      c == '.' || c == ':' || c == '+'))
			return false;
		out[i] = c;
	}
	out[len] = '\0';
	return true;
}

void mime_charsets_free(struct mime_charsets *cs)
{
	for (unsigned i = 0; i < cs->used; i++)
		if (cs->slot[i].cd != (iconv_t)-1)
			iconv_close(cs->slot[i].cd);
	memset(cs, 0, sizeof(*cs));
}

static struct mime_charset_slot *lookup(struct mime_charsets *cs, const char *name)
{
	cs->clock++;
	for (unsigned i = 0; i < cs->used; i++)
		if (strcmp(cs->slot[i].name, name) == 0) {
			cs->slot[i].last_use = cs->clock;
			return &cs->slot[i];
		}
	struct mime_charset_slot *s;
	if (cs->used < MIME_CHARSET_CACHE) {
		s = &cs->slot[cs->used++];
	} else {
		s = &cs->slot[0];
		for (unsigned i = 1; i < MIME_CHARSET_CACHE; i++)
			if (cs->slot[i].last_use < s->last_use)
				s = &cs->slot[i];
		if (s->cd != (iconv_t)-1)
			iconv_close(s->cd);
	}
	memcpy(s->name, name, strlen(name) + 1);
	s->last_use = cs->clock;
	s->ascii_compatible = !stateful_or_wide(name);
	const char *iconv_name = name;
	for (size_t i = 0; i < ARRAY_LEN(aliases); i++)
		if (strcmp(aliases[i].label, name) == 0) {
			iconv_name = aliases[i].iconv_name;
			break;
		}
	s->cd = iconv_open("UTF-8", iconv_name);
	return s;
}

bool mime_is_ascii(const char *in, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if ((unsigned char)in[i] >= 0x80)
			return false;
	return true;
}

/* Length of the valid UTF-8 sequence at p (RFC 3629: no overlong forms,
 * no surrogates, nothing above U+10FFFF), 0 if there is none. */
static size_t utf8_sequence(const unsigned char *p, size_t left)
{
	unsigned char c = p[0];
	if (c < 0x80)
		return 1;
	size_t n;
	unsigned char lo = 0x80, hi = 0xBF;
	if (c >= 0xC2 && c <= 0xDF) {
		n = 2;
	} else if (c >= 0xE0 && c <= 0xEF) {
		n = 3;
		if (c == 0xE0)
			lo = 0xA0;
		else if (c == 0xED)
			hi = 0x9F;
	} else if (c >= 0xF0 && c <= 0xF4) {
		n = 4;
		if (c == 0xF0)
			lo = 0x90;
		else if (c == 0xF4)
			hi = 0x8F;
	} else {
		return 0;
	}
	if (left < n || p[1] < lo || p[1] > hi)
		return 0;
	for (size_t i = 2; i < n; i++)
		if (p[i] < 0x80 || p[i] > 0xBF)
			return 0;
	return n;
}

void mime_utf8_sanitize(const char *in, size_t len, buf_t *out)
{
	const unsigned char *p = (const unsigned char *)in;
	size_t run = 0, i = 0;
	if (len == 0)
		return; /* in may be NULL for an empty value */
	buf_reserve(out, len);
	while (i < len) {
		size_t n = utf8_sequence(p + i, len - i);
		if (n > 0) {
			i += n;
			continue;
		}
		buf_append(out, in + run, i - run);
		buf_append(out, replacement, 3);
		i++;
		run = i;
	}
	buf_append(out, in + run, len - run);
}

void mime_replace_nul(buf_t *b, size_t from)
{
	if (from >= b->len || memchr(b->data + from, '\0', b->len - from) == NULL)
		return;
	buf_t tmp = BUF_INIT;
	buf_append(&tmp, b->data + from, b->len - from);
	b->len = from;
	for (size_t k = 0; k < tmp.len; k++) {
		if (tmp.data[k] == '\0')
			buf_append(b, replacement, 3);
		else
			buf_putc(b, tmp.data[k]);
	}
	buf_free(&tmp);
}

static void convert(iconv_t cd, const char *in, size_t len, buf_t *out)
{
	char *inp = (char *)in;
	size_t inleft = len;
	iconv(cd, NULL, NULL, NULL, NULL);
	while (inleft > 0) {
		buf_reserve(out, inleft * 4 + 16);
		char *outp = out->data + out->len;
		size_t outleft = out->cap - out->len - 1;
		size_t r = iconv(cd, &inp, &inleft, &outp, &outleft);
		out->len = (size_t)(outp - out->data);
		out->data[out->len] = '\0';
		if (r != (size_t)-1)
			break;
		if (errno == E2BIG)
			continue;
		buf_append(out, replacement, 3);
		if (errno != EILSEQ)
			break; /* EINVAL: a sequence cut at the end */
		inp++;
		inleft--;
		iconv(cd, NULL, NULL, NULL, NULL);
	}
}

bool mime_charset_to_utf8(struct mime_charsets *cs, const char *name, size_t name_len,
			  const char *in, size_t len, buf_t *out)
{
	char norm[MIME_CHARSET_NAME_MAX + 1];
	if (!normalise(name, name_len, norm))
		return false;
	if (len == 0)
		return true; /* nothing to convert; in may be NULL */
	if (strcmp(norm, "utf-8") == 0 || strcmp(norm, "utf8") == 0) {
		mime_utf8_sanitize(in, len, out);
		return true;
	}
	struct mime_charset_slot *s = lookup(cs, norm);
	if (s->cd == (iconv_t)-1)
		return false;
	if (s->ascii_compatible && mime_is_ascii(in, len)) {
		buf_append(out, in, len);
		return true;
	}
	convert(s->cd, in, len, out);
	return true;
}

static bool valid_utf8(const unsigned char *p, size_t len)
{
	size_t i = 0;
	while (i < len) {
		if (p[i] < 0x80) {
			i++;
			continue;
		}
		size_t n = utf8_sequence(p + i, len - i);
		if (n == 0)
			return false;
		i += n;
	}
	return true;
}

const char *mime_text_to_utf8(const char *charset, const void *in, size_t len, buf_t *out)
{
	char norm[MIME_CHARSET_NAME_MAX + 1];
	bool named = charset != NULL && normalise(charset, strlen(charset), norm);
	bool plain = !named || !stateful_or_wide(norm);
	if (plain && mime_is_ascii(in, len)) {
		buf_append(out, in, len);
		return "us-ascii";
	}
	if (plain && valid_utf8(in, len)) {
		buf_append(out, in, len);
		return "utf-8";
	}
	if (named) {
		struct mime_charsets cs;
		memset(&cs, 0, sizeof(cs));
		bool known = mime_charset_to_utf8(&cs, norm, strlen(norm), in, len, out);
		mime_charsets_free(&cs);
		if (known)
			return charset;
	}
	struct mime_charsets cs;
	memset(&cs, 0, sizeof(cs));
	if (!mime_charset_to_utf8(&cs, "windows-1252", 12, in, len, out))
		mime_utf8_sanitize(in, len, out); /* no iconv module for it: never seen */
	mime_charsets_free(&cs);
	return "windows-1252";
}

/*
 * json.c - JSON string escaping (see json.h), RFC 8259 section 7 and the
 * well-formed UTF-8 of RFC 3629 section 4.
 *
 * Untrusted input: any bytes; each is looked at once, nothing is read
 * past len. Privilege: the caller's; no I/O.
 */
#include "json.h"

#include <string.h>

size_t json_utf8_char_len(const unsigned char *s, size_t len)
{
	unsigned char c = s[0];
	size_t n;
	unsigned char lo = 0x80, hi = 0xbf; /* bounds of the second byte */

	if (c < 0x80)
		return 1;
	if (c >= 0xc2 && c <= 0xdf)
		n = 2;
	else if (c >= 0xe0 && c <= 0xef)
		n = 3;
	else if (c >= 0xf0 && c <= 0xf4)
		n = 4;
	else
		return 0; /* a continuation byte, an overlong start, or above U+10FFFF */
	if (c == 0xe0)
		lo = 0xa0; /* overlong */
	else if (c == 0xed)
		hi = 0x9f; /* surrogates */
	else if (c == 0xf0)
		lo = 0x90; /* overlong */
	else if (c == 0xf4)
		hi = 0x8f; /* above U+10FFFF */
	if (len < n || s[1] < lo || s[1] > hi)
		return 0;
	for (size_t i = 2; i < n; i++)
		if ((s[i] & 0xc0) != 0x80)
			return 0;
	return n;
}

void json_put_string(buf_t *out, const char *s, size_t len)
{
	static const char hex[] = "0123456789abcdef";
	const unsigned char *p = (const unsigned char *)s;

	buf_putc(out, '"');
	for (size_t i = 0; i < len;) {
		unsigned char c = p[i];
		if (c == '"' || c == '\\') {
			buf_putc(out, '\\');
			buf_putc(out, (char)c);
			i++;
		} else if (c == '\n') {
			buf_puts(out, "\\n");
			i++;
		} else if (c == '\t') {
			buf_puts(out, "\\t");
			i++;
		} else if (c < 0x20 || c == 0x7f) {
			char esc[7] = { '\\', 'u', '0', '0', hex[c >> 4], hex[c & 15], '\0' };
			buf_puts(out, esc);
			i++;
		} else {
			size_t n = json_utf8_char_len(p + i, len - i);
			if (n == 0) {
				buf_puts(out, "\xef\xbf\xbd"); /* U+FFFD for this byte */
				i++;
			} else {
				buf_append(out, p + i, n);
				i += n;
			}
		}
	}
	buf_putc(out, '"');
}

void json_put_cstr(buf_t *out, const char *s)
{
	if (s == NULL)
		buf_puts(out, "null");
	else
		json_put_string(out, s, strlen(s));
}

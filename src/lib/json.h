/*
 * json.h - JSON text (RFC 8259) for the commands' --json output: strings
 * escaped so that any bytes, however hostile, become one valid JSON
 * string.
 *
 * Untrusted input: the bytes given (message headers, addresses, verdict
 * texts). Privilege: whatever the caller runs as; no I/O.
 */
#ifndef POSTERN_JSON_H
#define POSTERN_JSON_H

#include <stddef.h>

#include "buf.h"

/*
 * Append s[0 .. len) to out as a JSON string, quotes included: '"', '\'
 * and the control characters (U+0000 to U+001F and U+007F) escaped,
 * well-formed UTF-8 copied as it is, and each byte that does not start
 * or continue a well-formed UTF-8 character (overlong forms, surrogates,
 * code points above U+10FFFF, a sequence cut short) written as U+FFFD.
 */
void json_put_string(buf_t *out, const char *s, size_t len);
/* The same for a C string; NULL is written as null. */
void json_put_cstr(buf_t *out, const char *s);

/* Length of the well-formed UTF-8 character at s (at most len bytes), or
 * 0 if the bytes there are not one. */
size_t json_utf8_char_len(const unsigned char *s, size_t len);

#endif

/*
 * buf.h - the one buffer type for outside bytes.
 *
 * buf_t is a length-counted, growable, binary-safe byte buffer. It always
 * keeps a NUL byte after the last byte so that text content can be used as a
 * C string, but the length is authoritative. slice_t is a non-owning view
 * used by parsers. Growth is overflow-checked and never returns NULL.
 */
#ifndef POSTERN_BUF_H
#define POSTERN_BUF_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>

#include "compat.h"

typedef struct {
	char *data; /* NUL-terminated, may contain NUL bytes */
	size_t len;
	size_t cap;
} buf_t;

typedef struct {
	const char *ptr;
	size_t len;
} slice_t;

#define BUF_INIT { NULL, 0, 0 }

void buf_init(buf_t *b);
void buf_free(buf_t *b);
/* Empty the buffer but keep its memory. */
void buf_reset(buf_t *b);
/* Make room for at least `extra` more bytes. */
void buf_reserve(buf_t *b, size_t extra);
void buf_append(buf_t *b, const void *data, size_t len);
void buf_puts(buf_t *b, const char *s);
void buf_putc(buf_t *b, char c);
void buf_printf(buf_t *b, const char *fmt, ...) PRINTF_LIKE(2, 3);
void buf_vprintf(buf_t *b, const char *fmt, va_list ap) PRINTF_LIKE(2, 0);
/* Drop the first n bytes (n <= len). */
void buf_consume(buf_t *b, size_t n);
/* Content as C string; "" for an empty buffer (never NULL). */
const char *buf_cstr(const buf_t *b);
/* Detach the content as a malloc'ed C string; the buffer is left empty. */
char *buf_steal(buf_t *b);

static inline slice_t slice_make(const char *p, size_t n)
{
	slice_t s = { p, n };
	return s;
}
slice_t slice_from_cstr(const char *s);
bool slice_eq_nocase(slice_t s, const char *word);
/* Remove leading and trailing spaces and tabs. */
slice_t slice_trim(slice_t s);

#endif

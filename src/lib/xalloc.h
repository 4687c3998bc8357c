/*
 * xalloc.h - memory allocation that never returns NULL to callers.
 *
 * Running out of memory is a broken environment (see log_fatal): every
 * allocation here either succeeds or ends the process with a log line.
 * Size arithmetic is overflow-checked.
 */
#ifndef POSTERN_XALLOC_H
#define POSTERN_XALLOC_H

#include <stddef.h>

void *xmalloc(size_t size);
void *xcalloc(size_t count, size_t size);
void *xrealloc(void *ptr, size_t size);
/* xreallocarray: ptr resized to count*size bytes; fatal on overflow. */
void *xreallocarray(void *ptr, size_t count, size_t size);
char *xstrdup(const char *s);
char *xstrndup(const char *s, size_t n);
/* Free *pp and set it to NULL. */
void xfree(void *pp);

#endif

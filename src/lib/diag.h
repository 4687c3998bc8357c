/*
 * diag.h - problems found in an administrator's file, printed the one way
 * every CLI and check-config uses: "FILE:LINE: message" (or "FILE: message"
 * when no line applies).
 */
#ifndef POSTERN_DIAG_H
#define POSTERN_DIAG_H

#include <stdarg.h>
#include <stdio.h>

#include "compat.h"

/* Print one problem; line 0 means the file as a whole. */
void diag_vprint(FILE *out, const char *file, unsigned line, const char *fmt,
		 va_list ap) PRINTF_LIKE(4, 0);

#endif

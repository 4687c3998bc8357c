/*
 * diag.c - "FILE:LINE: message" diagnostics (see diag.h).
 */
#include "diag.h"

void diag_vprint(FILE *out, const char *file, unsigned line, const char *fmt, va_list ap)
{
	if (line > 0)
		fprintf(out, "%s:%u: ", file, line);
	else
		fprintf(out, "%s: ", file);
	vfprintf(out, fmt, ap);
	fputc('\n', out);
}

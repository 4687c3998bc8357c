/*
 * mime_sniff.c - the type of a part's first bytes, from libmagic
 * (magic_open(MAGIC_MIME_TYPE)), so that a part declared text/plain that
 * holds a Windows executable is seen for what it is.
 *
 * libmagic's handles are opened once per process, on first use, and kept:
 * loading the compiled database costs about 4 ms the first time (0.05 ms
 * after, with the file in the page cache), more than many lookups. A
 * handle is not thread-safe: a mutex serialises lookups. Processes forked
 * after the first lookup share the mapped database. Decompression is off
 * (a gzip file is application/gzip, not what it holds).
 *
 * Measured on the SpamAssassin corpus: a lookup in the whole database
 * takes 5-150 us for binary formats (an early match) but 0.3-3 ms for
 * text, which is searched through to the end (HTML: 1-2 ms). So a part
 * declared text/... whose first bytes are plain text of that kind (see
 * plain_text) gets libmagic's text tests alone, on its first KiB (5-40 us;
 * the answer is text/plain, text/csv or the like, so HTML declared as
 * text/html is sniffed as text/plain). Every other part gets the whole
 * database: parts declared as anything but text, and text that holds NUL
 * or control bytes (an executable or archive declared as text), or starts
 * like PDF, PostScript, RTF, a script, or markup in a part not declared
 * as markup.
 *
 * Untrusted input: the first MIME_SNIFF_BYTES decoded bytes of each leaf
 * part, read by libmagic. Runs in the unprivileged scanner processes and
 * in `postern scan`.
 */
#include "mime_internal.h"

#include <magic.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

/* Enough for libmagic's text tests to name the encoding and kind. */
#define SNIFF_TEXT_BYTES 1024

static pthread_mutex_t sniff_lock = PTHREAD_MUTEX_INITIALIZER;
static magic_t sniff_full; /* the whole database */
static magic_t sniff_text; /* libmagic's text tests only */
static bool sniff_tried;

static magic_t open_magic(int flags)
{
	magic_t m = magic_open(MAGIC_MIME_TYPE | MAGIC_NO_CHECK_COMPRESS | MAGIC_ERROR | flags);
	if (m == NULL)
		return NULL;
	if (magic_load(m, NULL) != 0) {
		magic_close(m);
		return NULL;
	}
	size_t bytes = MIME_SNIFF_BYTES;
	magic_setparam(m, MAGIC_PARAM_BYTES_MAX, &bytes);
	return m;
}

/* Do the first bytes of a part declared as text/sub (sub after the
 * slash) look like plain text of that kind, where the whole database
 * would only say what the declaration says, after a long search? No NUL,
 * almost no control bytes (some mailers leave a stray one; libmagic's
 * text tests answer those too), and not the start of a format that is
 * text but more than text: PDF, PostScript, RTF, a script, or markup in
 * a part not declared as markup. */
static bool plain_text(const char *sub, const unsigned char *data, size_t len)
{
	if (memchr(data, '\0', len) != NULL)
		return false;
	size_t controls = 0;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = data[i];
		controls += (c < 0x20 && c != '\t' && c != '\n' && c != '\r' && c != '\f' &&
			     c != 0x1b) ||
			    c == 0x7f;
	}
	if (controls * 100 > len)
		return false;
	size_t k = len >= 3 && memcmp(data, "\xEF\xBB\xBF", 3) == 0 ? 3 : 0;
	while (k < len && (data[k] == ' ' || data[k] == '\t' || data[k] == '\r' || data[k] == '\n'))
		k++;
	const char *s = (const char *)data + k;
	size_t left = len - k;
	if (left >= 1 && s[0] == '%')
		return false; /* %PDF, %!PS */
	if ((left >= 5 && memcmp(s, "{\\rtf", 5) == 0) || (left >= 2 && memcmp(s, "#!", 2) == 0))
		return false;
	if (left >= 1 && s[0] == '<')
		return strcmp(sub, "html") == 0 || strcmp(sub, "xml") == 0;
	return true;
}

bool mime_sniff(const char *declared, const unsigned char *data, size_t len, char *type_r,
		size_t type_size)
{
	if (len > MIME_SNIFF_BYTES)
		len = MIME_SNIFF_BYTES;
	bool text = strncmp(declared, "text/", 5) == 0 && plain_text(declared + 5, data, len);
	bool ok = false;
	pthread_mutex_lock(&sniff_lock);
	if (!sniff_tried) {
		sniff_tried = true;
		sniff_full = open_magic(0);
		sniff_text = open_magic(MAGIC_NO_CHECK_SOFT);
	}
	magic_t m = sniff_full;
	if (text && sniff_text != NULL) {
		m = sniff_text;
		if (len > SNIFF_TEXT_BYTES)
			len = SNIFF_TEXT_BYTES;
	}
#ifdef MIME_TRACE
	struct timespec t0, t1;
	clock_gettime(CLOCK_MONOTONIC, &t0);
#endif
	const char *type = m != NULL ? magic_buffer(m, data, len) : NULL;
#ifdef MIME_TRACE
	clock_gettime(CLOCK_MONOTONIC, &t1);
	fprintf(stderr, "mime: sniff %s %s %s %ld us\n", text ? "text" : "full", declared,
		type ? type : "-",
		(long)((t1.tv_sec - t0.tv_sec) * 1000000 + (t1.tv_nsec - t0.tv_nsec) / 1000));
#endif
	if (type != NULL && type_size > 0) {
		size_t n = strlen(type);
		if (n >= type_size)
			n = type_size - 1;
		memcpy(type_r, type, n);
		type_r[n] = '\0';
		ok = n > 0;
	}
	pthread_mutex_unlock(&sniff_lock);
	return ok;
}

/*
 * fuzz_maildir_header.c - libFuzzer target for the Return-Path filter the
 * queue manager runs over message content. The input is fed in pieces of
 * a size taken from its first byte; checked: every byte is consumed or the
 * body starts, and the output never holds a Return-Path field.
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <strings.h>

#include "queue/maildir_header.h"

/* Does a header line of out start with "return-path" + optional space + ':'? */
static bool has_return_path(const buf_t *out)
{
	const char *p = out->data ? out->data : "", *end = p + out->len;
	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		size_t len = nl ? (size_t)(nl - p) : (size_t)(end - p);
		if (len == 0)
			return false; /* end of the header section */
		if (len >= 12 && strncasecmp(p, "return-path", 11) == 0) {
			size_t i = 11;
			while (i < len && (p[i] == ' ' || p[i] == '\t'))
				i++;
			if (i < len && p[i] == ':' && i < MHDR_HOLD_MAX)
				return true;
		}
		p += len + 1;
	}
	return false;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	size_t step = (size_t)data[0] % 13 + 1;
	data++;
	size--;
	struct mhdr_filter f = MHDR_FILTER_INIT;
	buf_t out = BUF_INIT;
	size_t pos = 0;
	while (pos < size && !f.in_body) {
		size_t n = size - pos < step ? size - pos : step;
		size_t used = mhdr_filter_feed(&f, (const char *)data + pos, n, &out);
		if (used > n || (used < n && !f.in_body))
			__builtin_trap();
		pos += used;
	}
	if (!f.in_body)
		mhdr_filter_end(&f, &out);
	if (has_return_path(&out))
		__builtin_trap();
	buf_free(&out);
	return 0;
}

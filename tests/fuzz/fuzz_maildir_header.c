/*
 * fuzz_maildir_header.c - libFuzzer target for the header editor the
 * local delivery agent runs over message content. The input is fed in
 * pieces of a size taken from its first byte (the first pass, learning
 * the field names, and then the editing pass); the editor removes every
 * X-Drop field, adds one field at the top and one at the end, inserts
 * one at an index, changes the first Subject and removes the second
 * X-Chg (queue file version 4's changes). Checked: every byte is
 * consumed or the body starts, the output never holds a Return-Path or
 * X-Drop field, and each added or inserted field appears in the header
 * section.
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <strings.h>

#include "queue/maildir_header.h"

/* Does a header line of out start with name + optional space + ':'? */
static bool has_field(const buf_t *out, const char *name)
{
	size_t nl_ = strlen(name);
	const char *p = out->data ? out->data : "", *end = p + out->len;
	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		size_t len = nl ? (size_t)(nl - p) : (size_t)(end - p);
		if (len == 0)
			return false; /* end of the header section */
		if (len > nl_ && strncasecmp(p, name, nl_) == 0) {
			size_t i = nl_;
			while (i < len && (p[i] == ' ' || p[i] == '\t'))
				i++;
			if (i < len && p[i] == ':' && i < MHDR_HOLD_MAX)
				return true;
		}
		p += len + 1;
	}
	return false;
}

/* How many header lines of out are exactly line? */
static size_t count_lines(const buf_t *out, const char *line)
{
	const char *p = out->data ? out->data : "", *end = p + out->len;
	size_t n = 0, want = strlen(line);
	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		size_t len = nl ? (size_t)(nl - p) : (size_t)(end - p);
		if (len == 0)
			break;
		n += len == want && memcmp(p, line, len) == 0;
		p += len + 1;
	}
	return n;
}

static const struct qf_header_edit edits[] = {
	{ QF_REC_ADD_HEADER, QF_HEADER_TOP, (char *)"X-Added-Top: 7f3a", NULL },
	{ QF_REC_DEL_HEADER, 0, (char *)"X-Drop", NULL },
	{ QF_REC_ADD_HEADER, QF_HEADER_END, (char *)"X-Added-End: 7f3a", NULL },
	{ QF_REC_INSERT_HEADER, 2, (char *)"X-Inserted: 7f3a", NULL },
	{ QF_REC_CHANGE_HEADER, 1, (char *)"Subject", (char *)"Subject: 7f3a\n\tchanged" },
	{ QF_REC_CHANGE_HEADER, 2, (char *)"X-Chg", NULL },
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	size_t step = (size_t)data[0] % 13 + 1;
	data++;
	size--;
	struct mhdr_filter f;
	mhdr_filter_init(&f, edits, sizeof(edits) / sizeof(edits[0]));
	buf_t out = BUF_INIT;
	size_t pos = 0;
	while (pos < size && !f.in_body) {
		size_t n = size - pos < step ? size - pos : step;
		size_t used = mhdr_filter_learn(&f, (const char *)data + pos, n);
		if (used > n || (used < n && !f.in_body))
			__builtin_trap();
		pos += used;
	}
	mhdr_filter_learn_end(&f);
	pos = 0;
	while (pos < size && !f.in_body) {
		size_t n = size - pos < step ? size - pos : step;
		size_t used = mhdr_filter_feed(&f, (const char *)data + pos, n, &out);
		if (used > n || (used < n && !f.in_body))
			__builtin_trap();
		pos += used;
	}
	if (!f.in_body)
		mhdr_filter_end(&f, &out);
	mhdr_filter_free(&f);
	if (has_field(&out, "return-path") || has_field(&out, "x-drop"))
		__builtin_trap();
	/* the input may hold the same lines: only more, never fewer */
	if (count_lines(&out, "X-Added-Top: 7f3a") < 1 || count_lines(&out, "X-Added-End: 7f3a") < 1 ||
	    count_lines(&out, "X-Inserted: 7f3a") < 1)
		__builtin_trap();
	buf_free(&out);
	return 0;
}

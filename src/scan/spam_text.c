/*
 * spam_text.c - TEMPORARY STAND-IN, REPLACED BY THE SPAMTEXT BRANCH AT
 * MERGE. Only so that the Bayes branch links and can be tested before
 * the real text extraction (spam_text_build, spam.h) is merged: body =
 * the Subject, then the message's body lines as they are (no MIME
 * decoding, no HTML rendering), rawbody = the same, no URIs, no HTML
 * facts; bounded by limits->max_body.
 *
 * Untrusted input: the message. Privilege: scanners and `postern learn`.
 */
#include <stdlib.h>
#include <string.h>

#include "../lib/xalloc.h"
#include "spam.h"

static size_t body_start(const unsigned char *d, size_t len)
{
	for (size_t i = 0; i + 1 < len; i++) {
		if (d[i] != '\n')
			continue;
		if (d[i + 1] == '\n')
			return i + 2;
		if (d[i + 1] == '\r' && i + 2 < len && d[i + 2] == '\n')
			return i + 3;
	}
	return len;
}

void spam_text_build(const struct scan_message *m, const struct spam_text_limits *limits,
		     struct spam_text *t)
{
	memset(t, 0, sizeof(*t));
	t->msg = m;
	for (size_t i = 0; i < m->header_count; i++)
		if (m->headers[i].part == 0 && str_eq_nocase(m->headers[i].name, "subject")) {
			buf_puts(&t->body, m->headers[i].decoded);
			buf_putc(&t->body, '\n');
			break;
		}
	size_t start = body_start(m->data, m->len), len = m->len - start;
	if (len > limits->max_body) {
		len = limits->max_body;
		t->body_truncated = true;
	}
	buf_append(&t->body, m->data + start, len);
	if (t->body.len > 0 && t->body.data[t->body.len - 1] != '\n')
		buf_putc(&t->body, '\n');
	buf_append(&t->rawbody, m->data + start, len);
}

void spam_text_free(struct spam_text *t)
{
	buf_free(&t->body);
	buf_free(&t->rawbody);
	for (size_t i = 0; i < t->uri_count; i++) {
		free(t->uris[i].uri);
		free(t->uris[i].host);
		free(t->uris[i].anchor_text);
	}
	xfree(&t->uris);
	t->uri_count = 0;
}

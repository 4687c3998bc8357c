/*
 * mime_standin.c - TEMPORARY STAND-IN, ONLY IN THE scaninfra BRANCH: the
 * lead drops this file when the mime branch (the real parser of mime.h)
 * is merged. It lets the scan infrastructure build and run before the
 * parser lands: the whole message is one text/plain leaf part without
 * header fields, handed to the caller as it comes, with only the decoded
 * size bound enforced. It parses nothing and decodes nothing.
 * Untrusted input: the message (only counted). Privilege: scanners.
 */
#include "mime.h"

#include <stdlib.h>
#include <string.h>

#include "../lib/xalloc.h"

struct mime_parser {
	struct mime_limits limits;
	struct mime_handler handler;
	void *arg;
	struct mime_part part;
	bool begun;
	unsigned problems;
};

struct mime_parser *mime_parser_new(const struct mime_limits *limits,
				    const struct mime_handler *handler, void *arg)
{
	struct mime_parser *p = xcalloc(1, sizeof(*p));
	p->limits = *limits;
	p->handler = *handler;
	p->arg = arg;
	p->part.parent = -1;
	p->part.content_type = "text/plain";
	return p;
}

static void begin(struct mime_parser *p)
{
	if (p->begun)
		return;
	p->begun = true;
	if (p->handler.part_begin != NULL)
		p->handler.part_begin(p->arg, &p->part);
}

void mime_parser_feed(struct mime_parser *p, const void *data, size_t len)
{
	begin(p);
	uint64_t room = p->limits.max_decoded_bytes - p->part.decoded_size;
	if (len > room) {
		p->problems |= MIME_DECODED_TOO_BIG;
		len = (size_t)room;
	}
	p->part.decoded_size += len;
	if (len > 0 && p->handler.part_data != NULL)
		p->handler.part_data(p->arg, &p->part, data, len);
}

unsigned mime_parser_finish(struct mime_parser *p)
{
	begin(p);
	if (p->handler.part_end != NULL)
		p->handler.part_end(p->arg, &p->part);
	return p->problems;
}

void mime_parser_free(struct mime_parser **p)
{
	xfree(p);
}

void mime_decode_words(const char *value, size_t len, buf_t *out)
{
	buf_append(out, value, len);
}

const char *mime_problem_name(unsigned problem_bit)
{
	switch (problem_bit) {
	case MIME_TOO_DEEP:
		return "too_deep";
	case MIME_TOO_MANY_PARTS:
		return "too_many_parts";
	case MIME_HEADER_TOO_BIG:
		return "header_too_big";
	case MIME_DECODED_TOO_BIG:
		return "decoded_too_big";
	case MIME_MALFORMED:
		return "malformed";
	}
	return "?";
}

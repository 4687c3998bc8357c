/*
 * fuzz_relay_reply.c - libFuzzer target for the parser of the replies
 * an SMTP server sends to postern's relay agent (relay_reply.h) and of
 * the EHLO capabilities in them. The input is split into lines at LF
 * (a CR before it dropped), as the session does, and fed line by line.
 * Invariants: every line is either taken or refused with a reason; a
 * complete reply has a code from 200 to 599, bounded text without
 * control characters, at most RELAY_REPLY_LINES_MAX lines; its delivery
 * reason is a bounded string starting with a status class digit.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "relay/relay_reply.h"

static void check_reply(const struct relay_reply *r)
{
	if (r->code < 200 || r->code > 599 || r->line_count == 0 ||
	    r->line_count > RELAY_REPLY_LINES_MAX || r->text.len > RELAY_REPLY_TEXT_MAX)
		abort();
	for (size_t i = 0; i < r->text.len; i++)
		if ((unsigned char)r->text.data[i] < 0x20)
			abort();
	struct relay_caps caps;
	relay_caps_parse(r, &caps);
	char *reason = relay_reply_reason(r, "peer[192.0.2.1]:25", "RCPT TO");
	if (reason[0] < '2' || reason[0] > '5' || strlen(reason) > RELAY_REPLY_TEXT_MAX + 200)
		abort();
	free(reason);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct relay_reply r;
	const char *p = (const char *)data, *end = p + size;

	relay_reply_init(&r);
	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		size_t len = nl != NULL ? (size_t)(nl - p) : (size_t)(end - p);
		size_t take = len;
		if (take > 0 && p[take - 1] == '\r')
			take--;
		const char *err = NULL;
		enum relay_reply_state st = relay_reply_feed(&r, p, take, &err);
		if (st == RELAY_REPLY_BAD) {
			if (err == NULL)
				abort();
			relay_reply_reset(&r);
		} else if (st == RELAY_REPLY_DONE) {
			check_reply(&r);
			relay_reply_reset(&r);
		}
		p += len + 1;
	}
	relay_reply_free(&r);
	return 0;
}

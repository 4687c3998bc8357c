/*
 * fuzz_notice.c - libFuzzer target for the notice template (a file the
 * administrator writes, read by the root supervisor) and the filling in
 * of its placeholders with hostile values (a Subject:, a verdict text):
 * parsing never crashes, and a notice built from an accepted template
 * keeps a well-formed header section (every line a field or a
 * continuation, no CR, none longer than RFC 5322's 998 octets), whatever
 * the values; a violation aborts.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "queue/notice.h"

static void check_headers(const buf_t *out)
{
	const char *p = out->data, *end = out->data + out->len;
	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		size_t n = nl != NULL ? (size_t)(nl - p) : (size_t)(end - p);
		if (n == 0)
			return; /* the body starts */
		if (memchr(p, '\r', n) != NULL || n > 998)
			abort();
		if (p[0] != ' ' && p[0] != '\t') {
			const char *colon = memchr(p, ':', n);
			if (colon == NULL || colon == p)
				abort();
			for (const char *c = p; c < colon; c++)
				if (*c <= ' ' || *c >= 127)
					abort();
		}
		if (nl == NULL)
			abort(); /* headers without a body */
		p = nl + 1;
	}
	abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	FILE *devnull = fopen("/dev/null", "w");
	if (devnull == NULL)
		return 0;
	struct notice_template *t = notice_template_parse("fuzz", (const char *)data, size, devnull);
	fclose(devnull);
	if (t == NULL)
		return 0;
	char *value = strndup((const char *)data, size);
	strlist_t list = { NULL, 0 }, to = { NULL, 0 };
	strlist_add(&list, value);
	strlist_add(&list, "virus:X");
	strlist_add(&to, "postmaster@example.test");
	struct notice_info info = {
		.event = (enum notice_event)(size % 3), .queue_id = "6617EFE92D921002845",
		.sender = value, .rcpts = &list, .client_addr = value, .helo = value,
		.check = value, .reason = value, .text = value, .hits = &list, .subject = value,
		.hostname = "mx.example.test", .when_us = 1796000000000000ull,
	};
	buf_t out = BUF_INIT;
	bool eight;
	notice_build(&out, t, &info, &to, "6617EFE931621002845", info.when_us, &eight);
	check_headers(&out);
	buf_free(&out);
	strlist_free(&list);
	strlist_free(&to);
	free(value);
	notice_template_free(&t);
	return 0;
}

/*
 * fuzz_scan_proto.c - libFuzzer target for the decoder of the content
 * scanning messages (scan_proto.h): the scan master decodes what any smtp
 * worker sends it, and the workers and the master decode what scanners
 * that parse hostile mail send back, so any packet must be either refused
 * or decoded into fields within their bounds. Invariants checked: a
 * message that decodes encodes back to exactly the same bytes (one
 * meaning per encoding), a decoded verdict is already in the normal form
 * (normalizing it changes nothing), and its strings are within bounds.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "scan/scan_proto.h"

static void check_text(const char *s, size_t max)
{
	size_t n = strnlen(s, max + 1);
	if (n > max)
		abort();
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
			abort();
}

/* Normalizing a decoded verdict must leave it as it is. */
static void check_normal(const struct scan_verdict *v)
{
	struct scan_verdict copy = *v;
	memset(&copy.headers, 0, sizeof(copy.headers));
	memset(&copy.hits, 0, sizeof(copy.hits));
	memset(&copy.remove_headers, 0, sizeof(copy.remove_headers));
	for (size_t i = 0; i < v->headers.count; i++)
		strlist_add(&copy.headers, v->headers.items[i]);
	for (size_t i = 0; i < v->remove_headers.count; i++)
		strlist_add(&copy.remove_headers, v->remove_headers.items[i]);
	for (size_t i = 0; i < v->hits.count; i++)
		strlist_add(&copy.hits, v->hits.items[i]);
	scan_verdict_normalize(&copy);
	if (copy.action != v->action || copy.code != v->code ||
	    strcmp(copy.status, v->status) != 0 || strcmp(copy.text, v->text) != 0 ||
	    strcmp(copy.reason, v->reason) != 0 || copy.headers.count != v->headers.count ||
	    copy.remove_headers.count != v->remove_headers.count ||
	    copy.hits.count != v->hits.count || copy.timing_count != v->timing_count)
		abort();
	scan_verdict_free(&copy);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct scan_msg m;
	const char *err = NULL;
	buf_t again = BUF_INIT;

	if (scan_msg_decode(data, size, &m, &err) != 0) {
		if (err == NULL)
			abort();
		scan_msg_free(&m);
		return 0;
	}
	check_text(m.sender, QF_ADDR_MAX);
	check_text(m.client_addr, SCAN_CLIENT_ADDR_MAX);
	check_text(m.helo, SCAN_HELO_MAX);
	for (size_t i = 0; i < m.rcpts.count; i++)
		check_text(m.rcpts.items[i], QF_ADDR_MAX);
	if (m.type == SCAN_MSG_REQUEST &&
	    (!queue_id_valid(m.id) || m.rcpts.count > m.rcpt_total))
		abort();
	if (m.type == SCAN_MSG_VERDICT)
		check_normal(&m.verdict);
	scan_msg_encode(&m, &again);
	if (again.len != size || memcmp(again.data, data, size) != 0)
		abort();
	buf_free(&again);
	scan_msg_free(&m);
	return 0;
}

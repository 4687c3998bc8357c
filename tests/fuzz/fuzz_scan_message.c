/*
 * fuzz_scan_message.c - libFuzzer target for the content pipeline's MIME
 * pass (src/scan/scan_message.c) over hostile messages: the parts, header
 * fields, archive and text bytes it keeps for the stages. Invariants
 * checked: the archive bytes, and the text bytes, of all parts together
 * stay within their budgets, a part with archive or text bytes is a leaf, the header fields of the parts (not the
 * message's own) stay within their budget, and every kept string is a
 * C string the stages can read.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "scan/scan_message.h"

#define ARCHIVE_BUDGET 3000
#define TEXT_BUDGET 2500
#define HEADER_BYTES 2048

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const strlist_t none = { NULL, 0 };
	static const struct scan_envelope env = { "", "", &none, "", "" };
	struct mime_limits limits = { 8, 64, HEADER_BYTES, 64 * 1024, false };
	struct scan_message m = { .env = &env, .data = data, .len = size };
	scan_message_parse_keeping(&m, &limits, ARCHIVE_BUDGET, TEXT_BUDGET);
	uint64_t archive = 0, text = 0, part_headers = 0;
	for (size_t i = 0; i < m.part_count; i++) {
		const struct scan_part *p = &m.parts[i];
		archive += p->archive.len;
		text += p->text.len;
		if ((p->archive.len > 0 || p->text.len > 0) && (p->multipart || p->message))
			abort();
		if (p->content_type == NULL || strlen(p->content_type) > 1000000)
			abort();
	}
	for (size_t i = 0; i < m.header_count; i++) {
		const struct scan_header *h = &m.headers[i];
		if (h->part != 0)
			part_headers += strlen(h->name) + strlen(h->raw) + strlen(h->decoded);
	}
	if (archive > ARCHIVE_BUDGET || text > TEXT_BUDGET ||
	    part_headers > SCAN_PART_HEADERS_FACTOR * (uint64_t)HEADER_BYTES)
		abort();
	scan_message_free(&m);
	return 0;
}

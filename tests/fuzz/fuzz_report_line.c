/*
 * fuzz_report_line.c - libFuzzer target for postern report's line parser
 * (src/report/report_line.c) and its three outputs: the input is split
 * into lines and fed to a report with small top tables (so eviction runs
 * too), then written as text, JSON or HTML (the first byte chooses, so
 * that each run writes one: the outputs cost more than the parsing).
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "report/report.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size == 0)
		return 0;
	unsigned output = data[0] % 3;
	data++;
	size--;
	struct report r;
	report_init(&r, 4);
	const char *p = (const char *)data, *end = p + size;
	uint64_t lineno = 0;
	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		size_t n = nl != NULL ? (size_t)(nl - p) : (size_t)(end - p);
		report_feed_line(&r, p, n, "fuzz", ++lineno);
		p += n + (nl != NULL);
	}
	buf_t out = BUF_INIT;
	if (output == 0)
		report_write_text(&r, 3, &out);
	else if (output == 1)
		report_write_json(&r, 3, &out);
	else
		report_write_html(&r, 3, &out);
	buf_free(&out);
	report_free(&r);
	return 0;
}

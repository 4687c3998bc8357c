/*
 * fuzz_rules.c - libFuzzer target for the content rules file parser
 * (src/scan/rules_parse.c, file input), and for the judge of what it
 * accepts on a fixed message (headers, attachments, an archive).
 * Invariants: a verdict's reply text and added header fields are single
 * printable ASCII lines, and its lists stay within their bounds.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/log.h"
#include "scan/rules.h"

/* A zip holding "docs/Invoice.pdf.exe" and "a.txt ." (stored, no compression). */
static const unsigned char zip_bytes[] = {
	'P', 'K', 3, 4, 10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
	20, 0, 0, 0, 'd', 'o', 'c', 's', '/', 'I', 'n', 'v', 'o', 'i', 'c', 'e', '.', 'p',
	'd', 'f', '.', 'e', 'x', 'e',
	'P', 'K', 3, 4, 10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
	7, 0, 0, 0, 'a', '.', 't', 'x', 't', ' ', '.',
};

static void check_line(const char *what, const char *s)
{
	for (const char *p = s; *p != '\0'; p++) {
		if ((unsigned char)*p < 0x20 || (unsigned char)*p > 0x7e) {
			fprintf(stderr, "%s holds byte 0x%02x: \"%s\"\n", what, (unsigned char)*p, s);
			abort();
		}
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	log_set_level(LOG_ERROR);
	FILE *devnull = fopen("/dev/null", "w");
	struct scan_rules *rules = scan_rules_parse("fuzz", (const char *)data, size, devnull);
	fclose(devnull);
	if (rules == NULL)
		return 0;

	strlist_t rcpts = { 0 };
	strlist_add(&rcpts, "alice@example.test");
	struct scan_envelope env = { "QID", "bob@remote.test", &rcpts, "192.0.2.7", "helo.test" };
	struct scan_part parts[3];
	memset(parts, 0, sizeof(parts));
	parts[0].content_type = (char *)"multipart/mixed";
	parts[0].parent = -1;
	parts[1].content_type = (char *)"text/plain";
	parts[1].sniffed_type = (char *)"application/x-dosexec";
	parts[1].filename = (char *)"Rechnung M\xc3\xa4rz.pdf.exe ";
	parts[1].decoded_size = 24576;
	parts[2].content_type = (char *)"application/zip";
	parts[2].filename = (char *)"files.zip";
	parts[2].decoded_size = sizeof(zip_bytes);
	buf_append(&parts[2].archive, zip_bytes, sizeof(zip_bytes));
	struct scan_header headers[] = {
		{ 0, (char *)"Subject", (char *)"=?utf-8?q?Gr=C3=BC=C3=9Fe?=", (char *)"Gr\xc3\xbc\xc3\x9f" "e" },
		{ 0, (char *)"Date", (char *)"Mon, 1 Jan 2024 10:00:00 +0000", (char *)"Mon, 1 Jan 2024 10:00:00 +0000" },
		{ 2, (char *)"Content-Type", (char *)"application/zip; name=files.zip", (char *)"application/zip; name=files.zip" },
	};
	struct scan_message m = { &env, (const unsigned char *)"", 0, parts, 3, headers, 3, 0 };
	struct scan_verdict v;
	memset(&v, 0, sizeof(v));
	scan_rules_judge(rules, &m, &v);
	check_line("reply text", v.text);
	if (v.hits.count > SCAN_HITS_MAX || v.headers.count > SCAN_HEADERS_MAX)
		abort();
	for (size_t i = 0; i < v.headers.count; i++)
		check_line("header field", v.headers.items[i]);
	if ((v.action == SCAN_REJECT && v.code != 550) || (v.action == SCAN_TEMPFAIL && v.code != 451))
		abort();
	strlist_free(&v.hits);
	strlist_free(&v.headers);
	buf_free(&parts[2].archive);
	strlist_free(&rcpts);
	scan_rules_free(&rules);
	return 0;
}

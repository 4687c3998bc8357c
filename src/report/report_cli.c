/*
 * report_cli.c - the postern report command: reads log files (plain,
 * rotated, gzip-compressed: zlib reads both alike) or standard input,
 * feeds their lines to the report and prints it as text, JSON or HTML.
 *
 *   postern report [--json | --html] [--top N] [LOGFILE... | -]
 *
 * Untrusted input: the files' bytes; lines are cut at REPORT_LINE_MAX
 * (the rest of an over-long line is skipped, the line counted), a file
 * that cannot be read or decompressed is an error naming it (FILE:LINE
 * for a corrupt compressed stream). Privilege: whoever runs it; nothing
 * is written but standard output.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#include "../lib/xalloc.h"
#include "report.h"

/* Counters per top table: memory stays below a few MB whatever the log. */
#define REPORT_TABLE_CAPACITY 5000
#define READ_CHUNK (256 * 1024)

static void usage(FILE *f)
{
	fprintf(f, "usage: postern report [--json | --html] [--top N] [LOGFILE... | -]\n"
		   "  reads postern's log (plain or .gz; - or nothing: standard input)\n");
}

/* Feed every line of one file; -1 with a message on a read error. */
static int feed_file(struct report *r, const char *name, int fd)
{
	gzFile gz = gzdopen(fd, "rb");
	if (gz == NULL) {
		fprintf(stderr, "postern report: %s: cannot read: %s\n", name, strerror(errno));
		close(fd);
		return -1;
	}
	gzbuffer(gz, READ_CHUNK);
	char *chunk = xmalloc(READ_CHUNK);
	buf_t line = BUF_INIT;  /* a line cut by a chunk's end */
	bool too_long = false;  /* line holds the first REPORT_LINE_MAX bytes of a longer one */
	uint64_t lineno = 0;
	int rc = 0;
	for (;;) {
		int got = gzread(gz, chunk, READ_CHUNK);
		int zerr = Z_OK;
		const char *msg = got <= 0 ? gzerror(gz, &zerr) : NULL;
		if (got < 0 || zerr != Z_OK) {
			/* a cut compressed file ends with Z_BUF_ERROR */
			fprintf(stderr, "postern report: %s:%llu: %s\n", name,
				(unsigned long long)lineno + 1, msg);
			rc = -1;
			break;
		}
		if (got == 0)
			break;
		const char *p = chunk, *end = chunk + got;
		while (p < end) {
			const char *nl = memchr(p, '\n', (size_t)(end - p));
			size_t n = nl != NULL ? (size_t)(nl - p) : (size_t)(end - p);
			if (nl != NULL && line.len == 0 && !too_long && n <= REPORT_LINE_MAX) {
				report_feed_line(r, p, n, name, ++lineno); /* the usual case: no copy */
				p = nl + 1;
				continue;
			}
			if (!too_long) {
				size_t room = REPORT_LINE_MAX - line.len;
				buf_append(&line, p, n < room ? n : room);
				too_long = n > room;
			}
			if (nl == NULL)
				break;
			if (too_long)
				report_feed_too_long(r, line.data, line.len, name, ++lineno);
			else
				report_feed_line(r, line.data, line.len, name, ++lineno);
			buf_reset(&line);
			too_long = false;
			p = nl + 1;
		}
	}
	if (rc == 0 && too_long)
		report_feed_too_long(r, line.data, line.len, name, ++lineno);
	else if (rc == 0 && line.len > 0)
		report_feed_line(r, line.data, line.len, name, ++lineno);
	buf_free(&line);
	free(chunk);
	gzclose(gz);
	return rc;
}

static bool write_all(const char *data, size_t len)
{
	while (len > 0) {
		ssize_t n = write(STDOUT_FILENO, data, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return false;
		data += n;
		len -= (size_t)n;
	}
	return true;
}

int report_cli_main(int argc, char **argv)
{
	enum { TEXT, JSON, HTML } format = TEXT;
	size_t top = 10;
	int first_file = argc;
	for (int i = 0; i < argc; i++) {
		if (strcmp(argv[i], "--json") == 0) {
			format = JSON;
		} else if (strcmp(argv[i], "--html") == 0) {
			format = HTML;
		} else if (strcmp(argv[i], "--top") == 0 && i + 1 < argc) {
			char *end;
			errno = 0;
			unsigned long v = strtoul(argv[++i], &end, 10);
			if (errno != 0 || *end != '\0' || v == 0 || v > REPORT_TABLE_CAPACITY) {
				fprintf(stderr, "postern report: --top: a number from 1 to %d\n",
					REPORT_TABLE_CAPACITY);
				return 2;
			}
			top = v;
		} else if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
			usage(stdout);
			return 0;
		} else if (strcmp(argv[i], "--") == 0) {
			first_file = i + 1;
			break;
		} else if (argv[i][0] == '-' && argv[i][1] != '\0') {
			fprintf(stderr, "postern report: unknown option %s\n", argv[i]);
			usage(stderr);
			return 2;
		} else {
			first_file = i;
			break;
		}
	}
	struct report *r = xmalloc(sizeof(*r));
	report_init(r, REPORT_TABLE_CAPACITY);
	int rc = 0;
	if (first_file >= argc) {
		if (feed_file(r, "-", dup(STDIN_FILENO)) < 0)
			rc = 1;
	}
	for (int i = first_file; i < argc; i++) {
		bool stdin_ = strcmp(argv[i], "-") == 0;
		int fd = stdin_ ? dup(STDIN_FILENO) : open(argv[i], O_RDONLY | O_CLOEXEC);
		if (fd < 0) {
			fprintf(stderr, "postern report: %s: %s\n", argv[i], strerror(errno));
			rc = 1;
			continue;
		}
		if (feed_file(r, argv[i], fd) < 0)
			rc = 1;
	}
	buf_t out = BUF_INIT;
	if (format == JSON)
		report_write_json(r, top, &out);
	else if (format == HTML)
		report_write_html(r, top, &out);
	else
		report_write_text(r, top, &out);
	if (!write_all(out.data, out.len)) {
		fprintf(stderr, "postern report: standard output: %s\n", strerror(errno));
		rc = 1;
	}
	buf_free(&out);
	report_free(r);
	free(r);
	return rc;
}

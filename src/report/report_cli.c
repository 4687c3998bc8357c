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

/* Counters per top table: memory stays bounded whatever the log (tens
 * of MB at most, docs/report.md "Bounded memory"). */
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
			/* a cut compressed file ends with Z_BUF_ERROR; zlib names
			 * the file "<fd:N>: " in its message, we name it better */
			if (strncmp(msg, "<fd:", 4) == 0 && strstr(msg, ": ") != NULL)
				msg = strstr(msg, ": ") + 2;
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

enum report_format { FORMAT_TEXT, FORMAT_JSON, FORMAT_HTML };

struct report_options {
	enum report_format format;
	size_t top;
	char **files; /* argv's file names, in order */
	size_t file_count;
};

/* Options and files in any order ("--" ends the options); the exit
 * status for a usage error or --help, or -1 to go on. */
static int parse_options(int argc, char **argv, struct report_options *o)
{
	bool options_done = false;
	for (int i = 0; i < argc; i++) {
		const char *a = argv[i];
		if (options_done || a[0] != '-' || strcmp(a, "-") == 0) {
			o->files[o->file_count++] = argv[i];
		} else if (strcmp(a, "--") == 0) {
			options_done = true;
		} else if (strcmp(a, "--json") == 0) {
			o->format = FORMAT_JSON;
		} else if (strcmp(a, "--html") == 0) {
			o->format = FORMAT_HTML;
		} else if (strcmp(a, "--top") == 0) {
			char *end = NULL;
			unsigned long v = 0;
			errno = 0;
			if (i + 1 < argc)
				v = strtoul(argv[++i], &end, 10);
			if (end == NULL || errno != 0 || *end != '\0' || v == 0 ||
			    v > REPORT_TABLE_CAPACITY) {
				fprintf(stderr, "postern report: --top takes a number from 1 to %d\n",
					REPORT_TABLE_CAPACITY);
				return 2;
			}
			o->top = v;
		} else if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
			usage(stdout);
			return 0;
		} else {
			fprintf(stderr, "postern report: unknown option %s\n", a);
			usage(stderr);
			return 2;
		}
	}
	return -1;
}

int report_cli_main(int argc, char **argv)
{
	struct report_options o = { .format = FORMAT_TEXT, .top = 10 };
	o.files = xcalloc((size_t)argc + 1, sizeof(*o.files));
	int status = parse_options(argc, argv, &o);
	if (status >= 0) {
		free(o.files);
		return status;
	}
	static char stdin_name[] = "-";
	if (o.file_count == 0)
		o.files[o.file_count++] = stdin_name;
	struct report *r = xmalloc(sizeof(*r));
	report_init(r, REPORT_TABLE_CAPACITY);
	int rc = 0;
	for (size_t i = 0; i < o.file_count; i++) {
		const char *name = o.files[i];
		int fd = strcmp(name, "-") == 0 ? dup(STDIN_FILENO)
						: open(name, O_RDONLY | O_CLOEXEC);
		if (fd < 0) {
			fprintf(stderr, "postern report: %s: %s\n", name, strerror(errno));
			rc = 1;
			continue;
		}
		if (feed_file(r, name, fd) < 0)
			rc = 1;
	}
	buf_t out = BUF_INIT;
	if (o.format == FORMAT_JSON)
		report_write_json(r, o.top, &out);
	else if (o.format == FORMAT_HTML)
		report_write_html(r, o.top, &out);
	else
		report_write_text(r, o.top, &out);
	if (!write_all(out.data, out.len)) {
		fprintf(stderr, "postern report: standard output: %s\n", strerror(errno));
		rc = 1;
	}
	buf_free(&out);
	report_free(r);
	free(r);
	free(o.files);
	return rc;
}

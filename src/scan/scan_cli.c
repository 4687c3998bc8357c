/*
 * scan_cli.c - `postern scan` (see scan_cli.h): the same pipeline as the
 * scanners, on files.
 *
 *   FILE: accept time=0.001
 *   FILE: reject code=554 status=5.6.0 reason=mime_limit hits=mime:too_deep
 *         time=0.002 text="Message refused: ..."          (one line)
 *   --json: one object per line: {"file":..., "action":..., "code":...,
 *   "status":..., "text":..., "reason":..., "failed":false, "headers":[...], "remove_headers":[...],
 *   "hits":[...], "timings_us":{"mime":12, ...}}, or {"file":...,"error":...}
 *
 * RFCs: RFC 8259 (the JSON output). Untrusted input: the messages (and
 * their file names, printed with control characters escaped). Privilege:
 * the invoking user, or `user` when started as root.
 */
#include "scan_cli.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "../lib/buf.h"
#include "../lib/xalloc.h"
#include "scan.h"

/* Read all of fd, at most max bytes; -1 with errno (EFBIG: too big). */
static int read_all(int fd, uint64_t max, buf_t *out)
{
	char chunk[65536];
	for (;;) {
		ssize_t n = read(fd, chunk, sizeof(chunk));
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -1;
		if (n == 0)
			return 0;
		if ((uint64_t)n > max - out->len) {
			errno = EFBIG;
			return -1;
		}
		buf_append(out, chunk, (size_t)n);
	}
}

/* s as a JSON string (RFC 8259 7): quotes, backslashes and control
 * characters escaped; other bytes as they are (UTF-8 or not). */
static void json_string(FILE *out, const char *s)
{
	fputc('"', out);
	for (const unsigned char *p = (const unsigned char *)s; *p != '\0'; p++) {
		if (*p == '"' || *p == '\\')
			fprintf(out, "\\%c", *p);
		else if (*p == '\n')
			fputs("\\n", out);
		else if (*p == '\t')
			fputs("\\t", out);
		else if (*p < 0x20 || *p == 0x7f)
			fprintf(out, "\\u%04x", *p);
		else
			fputc(*p, out);
	}
	fputc('"', out);
}

/* s for a text line: a header field's folds (CRLF or LF, then white
 * space) as one space, other control characters as '?'. */
static void text_field(FILE *out, const char *s)
{
	for (const unsigned char *p = (const unsigned char *)s; *p != '\0'; p++) {
		const unsigned char *nl = p[0] == '\r' && p[1] == '\n' ? p + 1 : p;
		if (*nl == '\n' && (nl[1] == ' ' || nl[1] == '\t')) {
			fputc(' ', out);
			for (p = nl + 1; p[1] == ' ' || p[1] == '\t'; p++)
				continue;
			continue;
		}
		fputc(*p < 0x20 || *p == 0x7f ? '?' : *p, out);
	}
}

static void print_json(FILE *out, const char *name, const struct scan_verdict *v)
{
	fputs("{\"file\":", out);
	json_string(out, name);
	fprintf(out, ",\"action\":\"%s\",\"code\":%d,\"status\":", scan_action_name(v->action),
		v->code);
	json_string(out, v->status);
	fputs(",\"text\":", out);
	json_string(out, v->text);
	fputs(",\"reason\":", out);
	json_string(out, v->reason);
	fprintf(out, ",\"failed\":%s,\"headers\":[", scan_verdict_failed(v) ? "true" : "false");
	for (size_t i = 0; i < v->headers.count; i++) {
		fputs(i > 0 ? "," : "", out);
		json_string(out, v->headers.items[i]);
	}
	fputs("],\"remove_headers\":[", out);
	for (size_t i = 0; i < v->remove_headers.count; i++) {
		fputs(i > 0 ? "," : "", out);
		json_string(out, v->remove_headers.items[i]);
	}
	fputs("],\"hits\":[", out);
	for (size_t i = 0; i < v->hits.count; i++) {
		fputs(i > 0 ? "," : "", out);
		json_string(out, v->hits.items[i]);
	}
	fputs("],\"timings_us\":{", out);
	for (size_t i = 0; i < v->timing_count; i++)
		fprintf(out, "%s\"%s\":%" PRIu32, i > 0 ? "," : "", v->timings[i].stage,
			v->timings[i].us);
	fputs("}}\n", out);
}

static void print_text(FILE *out, const char *name, const struct scan_verdict *v,
		       double seconds)
{
	text_field(out, name);
	fprintf(out, ": %s", scan_action_name(v->action));
	if (v->code != 0)
		fprintf(out, " code=%d status=%s", v->code, v->status);
	if (v->reason[0] != '\0')
		fprintf(out, " reason=%s", v->reason);
	for (size_t i = 0; i < v->hits.count; i++)
		fprintf(out, "%s%s", i == 0 ? " hits=" : ",", v->hits.items[i]);
	for (size_t i = 0; i < v->headers.count; i++) {
		fputs(" header=\"", out);
		text_field(out, v->headers.items[i]);
		fputc('"', out);
	}
	for (size_t i = 0; i < v->remove_headers.count; i++)
		fprintf(out, "%s%s", i == 0 ? " remove=" : ",", v->remove_headers.items[i]);
	fprintf(out, " time=%.3f", seconds);
	if (v->text[0] != '\0') {
		fputs(" text=\"", out);
		text_field(out, v->text);
		fputc('"', out);
	}
	fputc('\n', out);
}

static void print_error(bool json, const char *name, const char *what, int err)
{
	if (json) {
		char text[512];
		snprintf(text, sizeof(text), "%s: %s", what, strerror(err));
		fputs("{\"file\":", stdout);
		json_string(stdout, name);
		fputs(",\"error\":", stdout);
		json_string(stdout, text);
		fputs("}\n", stdout);
		return;
	}
	fputs("postern scan: ", stderr);
	text_field(stderr, name);
	fprintf(stderr, ": %s: %s\n", what, strerror(err));
}

static double mono_seconds(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Scan one input; its contribution to the exit status. */
static int scan_one(struct scan_pipeline *p, const struct config *cfg,
		    struct scan_cli_input *in, bool json)
{
	static const strlist_t no_rcpts = { NULL, 0 };
	static const struct scan_envelope offline = { "", "", &no_rcpts, "", "" };
	buf_t msg = BUF_INIT;
	if (in->fd < 0) {
		print_error(json, in->name, "cannot open", in->errno_open);
		return SCAN_CLI_ERROR;
	}
	int rc = read_all(in->fd, cfg->message_size_limit, &msg);
	int err = errno;
	if (in->fd != STDIN_FILENO)
		close(in->fd);
	in->fd = -1;
	if (rc < 0) {
		print_error(json, in->name,
			    err == EFBIG ? "larger than message_size_limit, not scanned"
					 : "cannot read", err);
		buf_free(&msg);
		return SCAN_CLI_ERROR;
	}
	struct scan_verdict v;
	scan_verdict_init(&v);
	double t = mono_seconds();
	scan_pipeline_run(p, &offline, (const unsigned char *)msg.data, msg.len, &v);
	t = mono_seconds() - t;
	if (json)
		print_json(stdout, in->name, &v);
	else
		print_text(stdout, in->name, &v, t);
	int status = scan_verdict_failed(&v) ? SCAN_CLI_ERROR
		     : v.action == SCAN_ACCEPT || v.action == SCAN_TAG ? SCAN_CLI_CLEAN
									: SCAN_CLI_BLOCKED;
	scan_verdict_free(&v);
	buf_free(&msg);
	return status;
}

int scan_cli_run(const struct config *cfg, struct scan_cli_input *inputs, size_t count,
		 bool json)
{
	char *err = NULL;
	scan_pipeline_set_one_process(true);  /* no scanners to share with */
	struct scan_pipeline *p = scan_pipeline_build(cfg, &err);
	if (p == NULL) {
		fprintf(stderr, "postern scan: %s\n", err != NULL ? err : "the pipeline does not load");
		free(err);
		for (size_t i = 0; i < count; i++)
			if (inputs[i].fd > STDIN_FILENO)
				close(inputs[i].fd);
		return SCAN_CLI_ERROR;
	}
	if (scan_pipeline_stage_count(p) == 0 && !json)
		fprintf(stderr, "postern scan: %s: no content stage is configured: only the MIME "
			"limits are checked\n", cfg->path);
	int worst = SCAN_CLI_CLEAN;
	for (size_t i = 0; i < count; i++) {
		int one = scan_one(p, cfg, &inputs[i], json);
		if (one > worst)
			worst = one;
		fflush(stdout);
	}
	scan_pipeline_free(&p);
	return worst;
}

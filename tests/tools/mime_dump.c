/*
 * mime_dump.c - a test tool (never part of postern): parse messages with
 * the MIME parser of src/mime and print what it saw, one JSON object per
 * message and line, for tests/tools/mime_compare.py and for people.
 *
 *   mime_dump [--headers] [--chunk N] [--limits D,P,H,B] FILE|- ...
 *   mime_dump --bench ROUNDS FILE ...    parse only, print MB/s
 *
 * Each object: {"file", "problems": [names], "parts": [{index, depth,
 * parent, content_type, charset, disposition, filename, encoding,
 * multipart, message, decoded_size, sha256 (of the decoded bytes),
 * sniffed_type[, headers: [[name, raw, decoded], ...]]}]}. --chunk feeds
 * the message N bytes at a time (0: all at once, the default).
 *
 * Untrusted input: the files named. Runs as whoever runs the tests.
 */
#include <errno.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "lib/buf.h"
#include "mime/mime.h"
#include "mime/mime_internal.h"

struct part_out {
	EVP_MD_CTX *md;
};

struct dump {
	buf_t json; /* the parts printed so far */
	bool headers;
	struct part_out open[256]; /* by depth */
	unsigned parts;
};

static void json_string(buf_t *out, const char *s)
{
	if (s == NULL) {
		buf_puts(out, "null");
		return;
	}
	buf_t clean = BUF_INIT;
	mime_utf8_sanitize(s, strlen(s), &clean);
	buf_putc(out, '"');
	for (size_t i = 0; i < clean.len; i++) {
		unsigned char c = (unsigned char)clean.data[i];
		if (c == '"' || c == '\\')
			buf_printf(out, "\\%c", c);
		else if (c < 0x20 || c == 0x7f)
			buf_printf(out, "\\u%04x", c);
		else
			buf_putc(out, (char)c);
	}
	buf_putc(out, '"');
	buf_free(&clean);
}

static const char *encoding_name(enum mime_encoding e)
{
	static const char *const names[] = {
		"7bit", "8bit", "binary", "base64", "quoted-printable", "uuencode", "unknown"
	};
	return (unsigned)e < sizeof(names) / sizeof(names[0]) ? names[e] : "?";
}

static EVP_MD_CTX *md_for(struct dump *d, const struct mime_part *part)
{
	return part->depth < 256 ? d->open[part->depth].md : NULL;
}

static void on_begin(void *arg, const struct mime_part *part)
{
	struct dump *d = arg;
	if (part->depth < 256) {
		if (d->open[part->depth].md == NULL)
			d->open[part->depth].md = EVP_MD_CTX_new();
		EVP_DigestInit_ex(d->open[part->depth].md, EVP_sha256(), NULL);
	}
}

static void on_data(void *arg, const struct mime_part *part, const unsigned char *data, size_t len)
{
	EVP_MD_CTX *md = md_for(arg, part);
	if (md != NULL)
		EVP_DigestUpdate(md, data, len);
}

static void on_end(void *arg, const struct mime_part *part)
{
	struct dump *d = arg;
	buf_t *o = &d->json;
	if (d->parts++ > 0)
		buf_putc(o, ',');
	buf_printf(o, "{\"index\":%u,\"depth\":%u,\"parent\":%d,\"content_type\":", part->index,
		   part->depth, part->parent);
	json_string(o, part->content_type);
	buf_puts(o, ",\"charset\":");
	json_string(o, part->charset);
	buf_puts(o, ",\"disposition\":");
	json_string(o, part->disposition);
	buf_puts(o, ",\"filename\":");
	json_string(o, part->filename);
	buf_printf(o, ",\"encoding\":\"%s\",\"multipart\":%s,\"message\":%s,\"decoded_size\":%llu",
		   encoding_name(part->encoding), part->multipart ? "true" : "false",
		   part->message ? "true" : "false", (unsigned long long)part->decoded_size);
	EVP_MD_CTX *md = md_for(d, part);
	if (md != NULL && !part->multipart && !part->message) {
		unsigned char h[EVP_MAX_MD_SIZE];
		unsigned n = 0;
		EVP_DigestFinal_ex(md, h, &n);
		buf_puts(o, ",\"sha256\":\"");
		for (unsigned i = 0; i < n; i++)
			buf_printf(o, "%02x", h[i]);
		buf_putc(o, '"');
	}
	buf_puts(o, ",\"sniffed_type\":");
	json_string(o, part->sniffed_type);
	if (d->headers) {
		buf_puts(o, ",\"headers\":[");
		for (size_t i = 0; i < part->header_count; i++) {
			buf_puts(o, i ? ",[" : "[");
			json_string(o, part->headers[i].name);
			buf_putc(o, ',');
			json_string(o, part->headers[i].raw);
			buf_putc(o, ',');
			json_string(o, part->headers[i].decoded);
			buf_putc(o, ']');
		}
		buf_putc(o, ']');
	}
	buf_putc(o, '}');
}

static int read_all(const char *path, buf_t *out)
{
	FILE *fp = strcmp(path, "-") == 0 ? stdin : fopen(path, "rb");
	if (fp == NULL) {
		fprintf(stderr, "mime_dump: %s: %s\n", path, strerror(errno));
		return -1;
	}
	char chunk[65536];
	size_t n;
	while ((n = fread(chunk, 1, sizeof(chunk), fp)) > 0)
		buf_append(out, chunk, n);
	if (fp != stdin)
		fclose(fp);
	return 0;
}

static unsigned parse(const struct mime_limits *lim, const struct mime_handler *h, void *arg,
		      const buf_t *msg, size_t chunk)
{
	struct mime_parser *p = mime_parser_new(lim, h, arg);
	if (chunk == 0)
		chunk = msg->len;
	for (size_t off = 0; off < msg->len; off += chunk)
		mime_parser_feed(p, msg->data + off,
				 msg->len - off < chunk ? msg->len - off : chunk);
	unsigned problems = mime_parser_finish(p);
	mime_parser_free(&p);
	return problems;
}

static double now(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static int bench(const struct mime_limits *lim, int rounds, int argc, char **argv)
{
	buf_t *msgs = calloc((size_t)argc, sizeof(buf_t));
	size_t total = 0;
	for (int i = 0; i < argc; i++) {
		if (read_all(argv[i], &msgs[i]) != 0)
			return 2;
		total += msgs[i].len;
	}
	struct mime_handler h = { NULL, NULL, NULL };
	double t0 = now();
	for (int r = 0; r < rounds; r++)
		for (int i = 0; i < argc; i++)
			parse(lim, &h, NULL, &msgs[i], 0);
	double took = now() - t0;
	printf("%d messages, %.1f MB, %d rounds: %.3f s, %.1f MB/s, %.0f messages/s\n", argc,
	       (double)total / 1e6, rounds, took, (double)total * rounds / 1e6 / took,
	       (double)argc * rounds / took);
	for (int i = 0; i < argc; i++)
		buf_free(&msgs[i]);
	free(msgs);
	return 0;
}

int main(int argc, char **argv)
{
	struct mime_limits lim = { 20, 1000, 256 * 1024, 100ull * 1024 * 1024, false };
	struct dump d = { BUF_INIT, false, { { NULL } }, 0 };
	size_t chunk = 0;
	int i = 1;
	for (; i < argc && strncmp(argv[i], "--", 2) == 0; i++) {
		if (strcmp(argv[i], "--headers") == 0) {
			d.headers = true;
		} else if (strcmp(argv[i], "--chunk") == 0 && i + 1 < argc) {
			chunk = strtoul(argv[++i], NULL, 10);
		} else if (strcmp(argv[i], "--limits") == 0 && i + 1 < argc) {
			unsigned long long hb, db;
			if (sscanf(argv[++i], "%u,%u,%llu,%llu", &lim.max_depth, &lim.max_parts,
				   &hb, &db) != 4) {
				fprintf(stderr, "mime_dump: --limits DEPTH,PARTS,HEADER,DECODED\n");
				return 2;
			}
			lim.max_header_bytes = (size_t)hb;
			lim.max_decoded_bytes = db;
		} else if (strcmp(argv[i], "--bench") == 0 && i + 1 < argc) {
			int rounds = atoi(argv[i + 1]);
			return bench(&lim, rounds > 0 ? rounds : 1, argc - i - 2, argv + i + 2);
		} else {
			fprintf(stderr, "usage: mime_dump [--headers] [--chunk N] "
					"[--limits D,P,H,B] FILE|- ...\n"
					"       mime_dump --bench ROUNDS FILE ...\n");
			return 2;
		}
	}
	int status = 0;
	struct mime_handler h = { on_begin, on_data, on_end };
	for (; i < argc; i++) {
		buf_t msg = BUF_INIT;
		if (read_all(argv[i], &msg) != 0) {
			status = 2;
			continue;
		}
		buf_reset(&d.json);
		d.parts = 0;
		unsigned problems = parse(&lim, &h, &d, &msg, chunk);
		buf_t line = BUF_INIT;
		buf_puts(&line, "{\"file\":");
		json_string(&line, argv[i]);
		buf_puts(&line, ",\"problems\":[");
		bool first = true;
		for (unsigned bit = 1; bit <= MIME_MALFORMED; bit <<= 1)
			if (problems & bit) {
				buf_printf(&line, "%s\"%s\"", first ? "" : ",",
					   mime_problem_name(bit));
				first = false;
			}
		buf_puts(&line, "],\"parts\":[");
		buf_append(&line, d.json.data ? d.json.data : "", d.json.len);
		buf_puts(&line, "]}\n");
		fwrite(line.data, 1, line.len, stdout);
		buf_free(&line);
		buf_free(&msg);
	}
	for (unsigned k = 0; k < 256; k++)
		EVP_MD_CTX_free(d.open[k].md);
	buf_free(&d.json);
	return status;
}

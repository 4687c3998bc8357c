/*
 * spam_text_dump.c - print what the spam tests see of a message (test
 * tool, never installed): the MIME pass (scan_message_parse_keeping) and
 * spam_text_build over one file, with the default bounds, in the form
 * tests/tools/spam_text_compare.py compares with SpamAssassin's:
 *
 *   spam_text_dump body FILE     one body line per output line, as [text]
 *                                with '\n' written \n
 *   spam_text_dump rawbody FILE  the rawbody as it is
 *   spam_text_dump uri FILE      one URI per line: uri TAB host TAB
 *                                html|text TAB anchor text
 *   spam_text_dump html FILE     the HTML facts, name=value
 *   spam_text_dump time FILE...  the MIME pass alone, then with the build,
 *                                over every file 10 times: messages per
 *                                second of each, in CPU time (the files
 *                                read first)
 *
 * Untrusted input: the files named. Privilege: whoever runs it.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "lib/buf.h"
#include "lib/safeio.h"
#include "scan/scan_message.h"
#include "scan/spam.h"

static const struct mime_limits limits = { 20, 1000, 256 * 1024, 100ULL << 20, false };
static const struct spam_text_limits text_limits = { SCAN_TEXT_MAX_DEFAULT, 1000 };

static bool read_file(const char *path, buf_t *out)
{
	FILE *f = fopen(path, "rb");
	if (f == NULL) {
		perror(path);
		return false;
	}
	char chunk[65536];
	size_t n;
	while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0)
		buf_append(out, chunk, n);
	fclose(f);
	return true;
}

static void build(const buf_t *data, struct scan_message *m, struct spam_text *t)
{
	static const strlist_t none = { NULL, 0 };
	static const struct scan_envelope env = { "", "", &none, "", "" };
	memset(m, 0, sizeof(*m));
	m->env = &env;
	m->data = (const unsigned char *)data->data;
	m->len = data->len;
	scan_message_parse_keeping(m, &limits, 0, SCAN_TEXT_MAX_DEFAULT);
	spam_text_build(m, &text_limits, t);
}

static void print_body(const struct spam_text *t)
{
	const char *s = t->body.data;
	size_t i = 0;
	while (i < t->body.len) {
		const char *nl = memchr(s + i, '\n', t->body.len - i);
		size_t end = nl != NULL ? (size_t)(nl - s) : t->body.len;
		printf("[%.*s%s]\n", (int)(end - i), s + i, nl != NULL ? "\\n" : "");
		i = end + 1;
	}
}

static void print_uris(const struct spam_text *t)
{
	for (size_t i = 0; i < t->uri_count; i++) {
		const struct spam_uri *u = &t->uris[i];
		printf("%s\t%s\t%s\t%s\n", u->uri, u->host != NULL ? u->host : "",
		       u->from_html ? "html" : "text", u->anchor_text != NULL ? u->anchor_text : "");
	}
}

static void print_html(const struct spam_text *t)
{
	const struct spam_html_facts *h = &t->html;
	printf("html_parts=%u\ntext_parts=%u\nhtml_text_bytes=%zu\ninvisible_text_bytes=%zu\n"
	       "images=%u\nimage_area=%zu\ntags=%u\nsplit_words=%u\nhas_obfuscated_words=%d\n"
	       "body_truncated=%d\n",
	       h->html_parts, h->text_parts, h->html_text_bytes, h->invisible_text_bytes,
	       h->images, h->image_area, h->tags, h->split_words, h->has_obfuscated_words,
	       t->body_truncated);
}

static double seconds_since(const struct timespec *a)
{
	struct timespec b;
	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &b);
	return (double)(b.tv_sec - a->tv_sec) + (double)(b.tv_nsec - a->tv_nsec) / 1e9;
}

static int timing(int argc, char **argv)
{
	buf_t *files = calloc((size_t)argc, sizeof(*files));
	size_t bytes = 0;
	for (int i = 0; i < argc; i++) {
		if (!read_file(argv[i], &files[i]))
			return 2;
		bytes += files[i].len;
	}
	const int rounds = 10;
	double secs[2];
	for (int with_build = 0; with_build < 2; with_build++) {
		struct timespec a;
		clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &a);
		for (int r = 0; r < rounds; r++)
			for (int i = 0; i < argc; i++) {
				struct scan_message m;
				struct spam_text t;
				if (with_build) {
					build(&files[i], &m, &t);
					spam_text_free(&t);
				} else {
					static const strlist_t none = { NULL, 0 };
					static const struct scan_envelope env = { "", "", &none, "", "" };
					memset(&m, 0, sizeof(m));
					m.env = &env;
					m.data = (const unsigned char *)files[i].data;
					m.len = files[i].len;
					scan_message_parse_keeping(&m, &limits, 0, SCAN_TEXT_MAX_DEFAULT);
				}
				scan_message_free(&m);
			}
		secs[with_build] = seconds_since(&a);
	}
	double n = (double)rounds * argc;
	printf("%d messages (%zu bytes) x %d: MIME pass %.0f msgs/s; MIME pass + spam_text_build "
	       "%.0f msgs/s, %.1f MB/s (the build alone %.0f us a message)\n",
	       argc, bytes, rounds, n / secs[0], n / secs[1], rounds * (double)bytes / secs[1] / 1e6,
	       (secs[1] - secs[0]) / n * 1e6);
	for (int i = 0; i < argc; i++)
		buf_free(&files[i]);
	free(files);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc < 3) {
		fprintf(stderr, "usage: spam_text_dump body|rawbody|uri|html FILE | time FILE...\n");
		return 2;
	}
	if (strcmp(argv[1], "time") == 0)
		return timing(argc - 2, argv + 2);
	buf_t data = BUF_INIT;
	if (!read_file(argv[2], &data))
		return 2;
	struct scan_message m;
	struct spam_text t;
	build(&data, &m, &t);
	if (strcmp(argv[1], "body") == 0)
		print_body(&t);
	else if (strcmp(argv[1], "rawbody") == 0)
		fwrite(t.rawbody.data, 1, t.rawbody.len, stdout);
	else if (strcmp(argv[1], "uri") == 0)
		print_uris(&t);
	else
		print_html(&t);
	spam_text_free(&t);
	scan_message_free(&m);
	buf_free(&data);
	return 0;
}

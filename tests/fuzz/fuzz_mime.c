/*
 * fuzz_mime.c - libFuzzer target for the streaming MIME parser
 * (src/mime). The first four bytes choose small limits and where to cut
 * the message in two; the rest is the message.
 *
 * Checked: the message fed in two pieces gives exactly the events and
 * bytes it gives fed at once; parts are numbered in order, begin inside
 * an open parent one level deeper, never deeper than max_depth nor more
 * than max_parts, and all end; decoded bytes go only to open leaf parts,
 * match decoded_size, and never exceed max_decoded_bytes in all; header
 * fields kept never exceed max_header_bytes; RFC 2047 decoding of the
 * message as one header value stays within three times its length.
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "lib/buf.h"
#include "mime/mime.h"

#define PARTS_MAX 64

struct trace {
	const struct mime_limits *lim;
	buf_t events; /* everything the parser said, in order */
	unsigned parts;
	bool open[PARTS_MAX];
	bool leaf[PARTS_MAX];
	unsigned depth[PARTS_MAX];
	uint64_t size[PARTS_MAX];
	uint64_t decoded_total;
};

static void check(bool ok)
{
	if (!ok)
		__builtin_trap();
}

static void on_begin(void *arg, const struct mime_part *part)
{
	struct trace *t = arg;
	check(part->index == t->parts && part->index < PARTS_MAX);
	check(part->depth <= t->lim->max_depth && t->parts < t->lim->max_parts);
	if (part->parent < 0) {
		check(part->index == 0 && part->depth == 0);
	} else {
		check((unsigned)part->parent < part->index && t->open[part->parent]);
		check(part->depth == t->depth[part->parent] + 1);
	}
	t->parts++;
	t->open[part->index] = true;
	t->leaf[part->index] = !part->multipart && !part->message;
	t->depth[part->index] = part->depth;
	check(part->content_type != NULL && strchr(part->content_type, '/') != NULL);
	size_t header_bytes = 0;
	for (size_t i = 0; i < part->header_count; i++) {
		header_bytes += strlen(part->headers[i].name) + strlen(part->headers[i].raw);
		buf_printf(&t->events, "h%s:%s|%s\n", part->headers[i].name, part->headers[i].raw,
			   part->headers[i].decoded);
	}
	check(header_bytes <= t->lim->max_header_bytes);
	buf_printf(&t->events, "b%u %d %u %s %s %s %s %d\n", part->index, part->parent, part->depth,
		   part->content_type, part->charset ? part->charset : "-",
		   part->disposition ? part->disposition : "-",
		   part->filename ? part->filename : "-", (int)part->encoding);
}

static void on_data(void *arg, const struct mime_part *part, const unsigned char *data, size_t len)
{
	struct trace *t = arg;
	check(part->index < t->parts && t->open[part->index] && t->leaf[part->index] && len > 0);
	t->size[part->index] += len;
	t->decoded_total += len;
	check(part->decoded_size == t->size[part->index]);
	check(t->decoded_total <= t->lim->max_decoded_bytes);
	/* the bytes, not how they were cut into callbacks */
	buf_append(&t->events, "d", 1);
	buf_append(&t->events, data, len);
}

static void on_end(void *arg, const struct mime_part *part)
{
	struct trace *t = arg;
	check(part->index < t->parts && t->open[part->index]);
	for (unsigned i = part->index + 1; i < t->parts; i++)
		check(!t->open[i]); /* children end first */
	check(part->decoded_size == t->size[part->index]);
	check(t->leaf[part->index] || part->sniffed_type == NULL);
	t->open[part->index] = false;
	buf_printf(&t->events, "\ne%u %llu %s\n", part->index,
		   (unsigned long long)part->decoded_size,
		   part->sniffed_type ? part->sniffed_type : "-");
}

static unsigned run(const struct mime_limits *lim, const uint8_t *msg, size_t len, size_t cut,
		    struct trace *t)
{
	static const struct mime_handler handler = { on_begin, on_data, on_end };
	memset(t, 0, sizeof(*t));
	t->lim = lim;
	struct mime_parser *p = mime_parser_new(lim, &handler, t);
	mime_parser_feed(p, msg, cut);
	mime_parser_feed(p, msg + cut, len - cut);
	unsigned problems = mime_parser_finish(p);
	mime_parser_free(&p);
	for (unsigned i = 0; i < t->parts; i++)
		check(!t->open[i]);
	return problems;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 4)
		return 0;
	struct mime_limits lim = {
		.max_depth = data[0] % 8,
		.max_parts = (unsigned)(data[1] % 48) + 1,
		.max_header_bytes = (size_t)(data[2] % 64) * 64,
		.max_decoded_bytes = (uint64_t)(data[3] % 32) * 128,
	};
	const uint8_t *msg = data + 4;
	size_t len = size - 4;
	size_t cut = len > 0 ? (size_t)(data[0] ^ data[1] ^ data[2]) * 17 % (len + 1) : 0;

	struct trace whole, halves;
	unsigned a = run(&lim, msg, len, len, &whole);
	unsigned b = run(&lim, msg, len, cut, &halves);
	check(a == b);
	check(whole.events.len == halves.events.len);
	check(whole.events.len == 0 ||
	      memcmp(whole.events.data, halves.events.data, whole.events.len) == 0);
	check(a == 0 || mime_problem_name(a & -a)[0] != '\0');
	buf_free(&whole.events);
	buf_free(&halves.events);

	buf_t words = BUF_INIT;
	mime_decode_words((const char *)msg, len, &words);
	check(words.len <= 3 * len);
	buf_free(&words);
	return 0;
}

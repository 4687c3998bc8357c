/*
 * test_mime.c - the streaming MIME parser (src/mime): every transfer
 * encoding, RFC 2047 words in several charsets, RFC 2231 parameters,
 * nesting, message/rfc822, uuencode, each repair of broken mail, each
 * bound, and the time the parse takes on hostile input.
 *
 * Every message is parsed four ways (at once, byte by byte, in random
 * pieces, in two halves) and the four parses must be identical; the
 * callbacks check on the way that indexes, parents, depths, data and
 * sizes stay consistent.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <cmocka.h>

#include "lib/buf.h"
#include "mime/mime.h"

/* ---- a recorder of what the parser says ---- */

struct rec_part {
	bool begun, ended;
	unsigned index, depth;
	int parent;
	char *content_type, *charset, *disposition, *filename, *sniffed;
	enum mime_encoding encoding;
	bool multipart, message;
	uint64_t decoded_size;
	buf_t data;
	buf_t headers; /* "Name: raw\n" for each field */
	buf_t decoded; /* "Name: decoded\n" */
	unsigned open_children;
};

struct rec {
	struct rec_part *p;
	unsigned n, cap;
	unsigned problems;
	buf_t events; /* "b0 b1 d1 e1 e0 " */
};

static char *dup_or_null(const char *s)
{
	return s != NULL ? strdup(s) : NULL;
}

static void assert_same_opt(const char *a, const char *b)
{
	if (a == NULL || b == NULL)
		assert_ptr_equal(a, b);
	else
		assert_string_equal(a, b);
}

static void on_begin(void *arg, const struct mime_part *part)
{
	struct rec *r = arg;
	assert_int_equal(part->index, r->n); /* numbered in the order headers end */
	if (r->n == r->cap) {
		r->cap = r->cap ? r->cap * 2 : 16;
		r->p = realloc(r->p, r->cap * sizeof(*r->p));
	}
	struct rec_part *rp = &r->p[r->n++];
	memset(rp, 0, sizeof(*rp));
	rp->begun = true;
	rp->index = part->index;
	rp->depth = part->depth;
	rp->parent = part->parent;
	if (part->parent < 0) {
		assert_int_equal(part->depth, 0);
		assert_int_equal(part->index, 0);
	} else {
		assert_true((unsigned)part->parent < part->index);
		struct rec_part *parent = &r->p[part->parent];
		assert_true(parent->begun && !parent->ended);
		assert_int_equal(part->depth, parent->depth + 1);
		parent->open_children++;
	}
	rp->content_type = strdup(part->content_type);
	rp->charset = dup_or_null(part->charset);
	rp->disposition = dup_or_null(part->disposition);
	rp->filename = dup_or_null(part->filename);
	rp->encoding = part->encoding;
	rp->multipart = part->multipart;
	rp->message = part->message;
	assert_false(part->multipart && part->message);
	assert_int_equal(part->decoded_size, 0);
	for (size_t i = 0; i < part->header_count; i++) {
		buf_printf(&rp->headers, "%s: %s\n", part->headers[i].name, part->headers[i].raw);
		buf_printf(&rp->decoded, "%s: %s\n", part->headers[i].name,
			   part->headers[i].decoded);
	}
	buf_printf(&r->events, "b%u ", part->index);
}

static void on_data(void *arg, const struct mime_part *part, const unsigned char *data, size_t len)
{
	struct rec *r = arg;
	assert_true(part->index < r->n);
	struct rec_part *rp = &r->p[part->index];
	assert_true(rp->begun && !rp->ended);
	assert_false(part->multipart || part->message);
	assert_true(len > 0);
	buf_append(&rp->data, data, len);
	assert_int_equal(part->decoded_size, rp->data.len);
}

static void on_end(void *arg, const struct mime_part *part)
{
	struct rec *r = arg;
	assert_true(part->index < r->n);
	struct rec_part *rp = &r->p[part->index];
	assert_true(rp->begun && !rp->ended);
	assert_int_equal(rp->open_children, 0);
	assert_int_equal(part->decoded_size, rp->data.len);
	rp->ended = true;
	rp->decoded_size = part->decoded_size;
	rp->sniffed = dup_or_null(part->sniffed_type);
	/* what part_begin saw is still there */
	assert_string_equal(part->content_type, rp->content_type);
	assert_same_opt(part->filename, rp->filename);
	if (part->parent >= 0)
		r->p[part->parent].open_children--;
	buf_printf(&r->events, "e%u ", part->index);
}

static const struct mime_handler handler = { on_begin, on_data, on_end };
static const struct mime_limits default_limits = { 20, 1000, 256 * 1024, 100 * 1024 * 1024, false };

enum feed_mode { FEED_ALL, FEED_BYTES, FEED_RANDOM, FEED_HALVES };

static struct rec *parse_mode(const struct mime_limits *lim, const char *msg, size_t len,
			      enum feed_mode mode)
{
	struct rec *r = calloc(1, sizeof(*r));
	struct mime_parser *p = mime_parser_new(lim, &handler, r);
	size_t off = 0;
	unsigned seed = (unsigned)len * 2654435761u + 17;
	while (off < len) {
		size_t n = len - off;
		if (mode == FEED_BYTES)
			n = 1;
		else if (mode == FEED_RANDOM)
			n = (seed = seed * 1103515245u + 12345u) % 9000 + 1;
		else if (mode == FEED_HALVES && off == 0)
			n = len / 2;
		if (n > len - off)
			n = len - off;
		mime_parser_feed(p, msg + off, n);
		off += n;
	}
	r->problems = mime_parser_finish(p);
	assert_int_equal(mime_parser_finish(p), r->problems); /* finishing twice is harmless */
	mime_parser_free(&p);
	assert_null(p);
	for (unsigned i = 0; i < r->n; i++)
		assert_true(r->p[i].ended); /* every part begun has ended */
	return r;
}

static void rec_free(struct rec *r)
{
	for (unsigned i = 0; i < r->n; i++) {
		struct rec_part *rp = &r->p[i];
		free(rp->content_type);
		free(rp->charset);
		free(rp->disposition);
		free(rp->filename);
		free(rp->sniffed);
		buf_free(&rp->data);
		buf_free(&rp->headers);
		buf_free(&rp->decoded);
	}
	free(r->p);
	buf_free(&r->events);
	free(r);
}

static void assert_same(const struct rec *a, const struct rec *b)
{
	assert_int_equal(a->n, b->n);
	assert_int_equal(a->problems, b->problems);
	assert_string_equal(buf_cstr(&a->events), buf_cstr(&b->events));
	for (unsigned i = 0; i < a->n; i++) {
		const struct rec_part *x = &a->p[i], *y = &b->p[i];
		assert_int_equal(x->parent, y->parent);
		assert_string_equal(x->content_type, y->content_type);
		assert_same_opt(x->charset, y->charset);
		assert_same_opt(x->disposition, y->disposition);
		assert_same_opt(x->filename, y->filename);
		assert_same_opt(x->sniffed, y->sniffed);
		assert_int_equal(x->encoding, y->encoding);
		assert_int_equal(x->data.len, y->data.len);
		assert_memory_equal(buf_cstr(&x->data), buf_cstr(&y->data), x->data.len);
		assert_string_equal(buf_cstr(&x->headers), buf_cstr(&y->headers));
		assert_string_equal(buf_cstr(&x->decoded), buf_cstr(&y->decoded));
	}
}

/* Parse len bytes four ways; the parses must agree. */
static struct rec *parse_len_limits(const struct mime_limits *lim, const char *msg, size_t len)
{
	struct rec *all = parse_mode(lim, msg, len, FEED_ALL);
	for (int mode = FEED_BYTES; mode <= FEED_HALVES; mode++) {
		struct rec *other = parse_mode(lim, msg, len, (enum feed_mode)mode);
		assert_same(all, other);
		rec_free(other);
	}
	return all;
}

static struct rec *parse_limits(const struct mime_limits *lim, const char *msg)
{
	return parse_len_limits(lim, msg, strlen(msg));
}

static struct rec *parse(const char *msg)
{
	return parse_limits(&default_limits, msg);
}

static void assert_data(const struct rec_part *rp, const char *want, size_t len)
{
	assert_int_equal(rp->data.len, len);
	assert_memory_equal(buf_cstr(&rp->data), want, len);
}

static void assert_text(const struct rec_part *rp, const char *want)
{
	assert_string_equal(buf_cstr(&rp->data), want);
	assert_int_equal(rp->data.len, strlen(want));
}

/* The decoded value of the first field called name (with ": " before). */
static const char *decoded_field(const struct rec_part *rp, const char *name, char *out,
				 size_t size)
{
	const char *s = buf_cstr(&rp->decoded);
	size_t n = strlen(name);
	while (*s != '\0') {
		const char *nl = strchr(s, '\n');
		if (strncmp(s, name, n) == 0 && s[n] == ':') {
			size_t len = (size_t)(nl - s) - n - 2;
			snprintf(out, size, "%.*s", (int)len, s + n + 2);
			return out;
		}
		s = nl + 1;
	}
	return NULL;
}

static const char *decode_words(const char *value, buf_t *out)
{
	buf_reset(out);
	mime_decode_words(value, strlen(value), out);
	return buf_cstr(out);
}

#define MALFORMED MIME_MALFORMED

/* ---- transfer encodings ---- */

static void test_plain_message(void **state)
{
	(void)state;
	struct rec *r =
		parse("From: a@example.test\r\nSubject: hello\r\n\r\nline one\r\nline two\r\n");
	assert_int_equal(r->n, 1);
	assert_int_equal(r->problems, 0);
	assert_string_equal(r->p[0].content_type, "text/plain"); /* RFC 2045 default */
	assert_null(r->p[0].charset);
	assert_int_equal(r->p[0].encoding, MIME_ENC_7BIT);
	assert_string_equal(buf_cstr(&r->p[0].headers), "From: a@example.test\nSubject: hello\n");
	/* the message's last line end is content: no boundary owns it */
	assert_text(&r->p[0], "line one\r\nline two\r\n");
	assert_string_equal(r->p[0].sniffed, "text/plain");
	assert_string_equal(buf_cstr(&r->events), "b0 e0 ");
	rec_free(r);
}

static void test_base64(void **state)
{
	(void)state;
	struct rec *r = parse("Content-Type: application/octet-stream\n"
			      "Content-Transfer-Encoding: Base64\n\n"
			      "aGVsbG8g\n  d29y bGQ=\n");
	assert_int_equal(r->problems, 0);
	assert_int_equal(r->p[0].encoding, MIME_ENC_BASE64);
	assert_text(&r->p[0], "hello world");
	rec_free(r);

	/* characters outside the alphabet are skipped, as clients do */
	r = parse("Content-Transfer-Encoding: base64\n\naGVs!!bG8*\n");
	assert_int_equal(r->problems, MALFORMED);
	assert_text(&r->p[0], "hello");
	rec_free(r);

	/* padding missing: the whole bytes are kept */
	r = parse("Content-Transfer-Encoding: base64\n\naGVsbG8\n");
	assert_int_equal(r->problems, MALFORMED);
	assert_text(&r->p[0], "hello");
	rec_free(r);

	/* two encoded blocks one after the other: both are decoded */
	r = parse("Content-Transfer-Encoding: base64\n\naGk=\naGk=\n");
	assert_int_equal(r->problems, 0);
	assert_text(&r->p[0], "hihi");
	rec_free(r);

	/* binary output, NUL bytes included */
	r = parse("Content-Transfer-Encoding: base64\n\nAAEC/w==\n");
	assert_data(&r->p[0], "\x00\x01\x02\xff", 4);
	rec_free(r);
}

static void test_base64_one_long_line(void **state)
{
	(void)state;
	/* 300 KB of base64 on one line: longer than any line buffer */
	size_t raw = 225000;
	buf_t msg = BUF_INIT, want = BUF_INIT;
	buf_puts(&msg, "Content-Transfer-Encoding: base64\n\n");
	static const char alphabet[] =
		"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	for (size_t i = 0; i < raw; i += 3) {
		unsigned char b[3] = { (unsigned char)i, (unsigned char)(i >> 8),
				       (unsigned char)(i * 7) };
		buf_append(&want, b, 3);
		uint32_t v = (uint32_t)b[0] << 16 | (uint32_t)b[1] << 8 | b[2];
		for (int k = 18; k >= 0; k -= 6)
			buf_putc(&msg, alphabet[(v >> k) & 63]);
	}
	buf_puts(&msg, "\n");
	struct rec *r = parse_len_limits(&default_limits, msg.data, msg.len);
	assert_int_equal(r->problems, 0);
	assert_data(&r->p[0], want.data, want.len);
	rec_free(r);
	buf_free(&msg);
	buf_free(&want);
}

static void test_quoted_printable(void **state)
{
	(void)state;
	struct rec *r = parse("Content-Type: text/plain; charset=iso-8859-1\n"
			      "Content-Transfer-Encoding: quoted-printable\n\n"
			      "caf=E9 =3D soft=\n"
			      "break, trailing   \n"
			      "lower =e9 hex\t \n"
			      "soft with space= \t\n"
			      "end");
	assert_int_equal(r->problems, 0);
	assert_int_equal(r->p[0].encoding, MIME_ENC_QP);
	assert_string_equal(r->p[0].charset, "iso-8859-1");
	assert_text(&r->p[0], "caf\xe9 = softbreak, trailing\nlower \xe9 hex\nsoft with spaceend");
	rec_free(r);

	/* CRLF line ends stay CRLF; a line end before a boundary is the boundary's */
	r = parse("Content-Type: multipart/mixed; boundary=b\r\nMIME-Version: 1.0\r\n\r\n"
		  "--b\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n"
		  "one\r\ntwo=\r\n\r\n--b--\r\n");
	assert_int_equal(r->problems, 0);
	assert_text(&r->p[1], "one\r\ntwo");
	rec_free(r);

	/* an '=' that starts no escape stays, as clients show it */
	r = parse("Content-Transfer-Encoding: quoted-printable\n\na=ZZb =4 c==41\n");
	assert_int_equal(r->problems, MALFORMED);
	assert_text(&r->p[0], "a=ZZb =4 c=A\n");
	rec_free(r);
}

static void test_identity_encodings(void **state)
{
	(void)state;
	static const char msg[] = "Content-Type: application/octet-stream\n"
				  "Content-Transfer-Encoding: binary\n\n"
				  "\x00\x01\r\n\xff\xfe\n--not-a-boundary\n\x00";
	struct rec *r = parse_len_limits(&default_limits, msg, sizeof(msg) - 1);
	assert_int_equal(r->problems, 0);
	assert_int_equal(r->p[0].encoding, MIME_ENC_BINARY);
	assert_data(&r->p[0], "\x00\x01\r\n\xff\xfe\n--not-a-boundary\n\x00", 25);
	rec_free(r);

	r = parse("Content-Transfer-Encoding: 8bit\n\n\xc3\xa9t\xc3\xa9\n");
	assert_int_equal(r->p[0].encoding, MIME_ENC_8BIT);
	assert_text(&r->p[0], "\xc3\xa9t\xc3\xa9\n");
	rec_free(r);

	/* an encoding nobody knows: passed through as it is */
	r = parse("Content-Transfer-Encoding: x-gzip64\n\nH4sI\n");
	assert_int_equal(r->p[0].encoding, MIME_ENC_UNKNOWN);
	assert_text(&r->p[0], "H4sI\n");
	rec_free(r);
}

static void test_uuencode_transfer_encoding(void **state)
{
	(void)state;
	struct rec *r = parse("Content-Type: application/octet-stream; name=\"hi.txt\"\n"
			      "Content-Transfer-Encoding: x-uuencode\n\n"
			      "ignored before begin\n"
			      "begin 644 hi.txt\n"
			      ",:&5L;&\\@=V]R;&0*\n"
			      "`\n"
			      "end\n"
			      "ignored after end\n");
	assert_int_equal(r->problems, 0);
	assert_int_equal(r->n, 1);
	assert_int_equal(r->p[0].encoding, MIME_ENC_UUENCODE);
	assert_string_equal(r->p[0].filename, "hi.txt");
	assert_text(&r->p[0], "hello world\n");
	rec_free(r);
}

static void test_uuencode_block_in_text(void **state)
{
	(void)state;
	/* An old-style attachment in a plain text message: mail clients show
	 * it as an attachment; it is its own part, a child of the text. */
	struct rec *r = parse("Subject: files\n\n"
			      "Here it is:\n"
			      "begin 755 setup.exe\n"
			      ",:&5L;&\\@=V]R;&0*\n"
			      "`\n"
			      "end\n"
			      "Bye\n");
	assert_int_equal(r->problems, 0);
	assert_int_equal(r->n, 2);
	assert_string_equal(buf_cstr(&r->events), "b0 b1 e1 e0 ");
	assert_text(&r->p[0], "Here it is:\nBye\n");
	assert_int_equal(r->p[1].parent, 0);
	assert_int_equal(r->p[1].depth, 1);
	assert_int_equal(r->p[1].encoding, MIME_ENC_UUENCODE);
	assert_string_equal(r->p[1].content_type, "application/octet-stream");
	assert_string_equal(r->p[1].disposition, "attachment");
	assert_string_equal(r->p[1].filename, "setup.exe");
	assert_int_equal(buf_cstr(&r->p[1].headers)[0], '\0');
	assert_text(&r->p[1], "hello world\n");
	rec_free(r);

	/* a block that never ends ends with its text part */
	r = parse("Subject: x\n\nbegin 644 a.bin\n#86)C\n");
	assert_int_equal(r->problems, MALFORMED);
	assert_int_equal(r->n, 2);
	assert_text(&r->p[1], "abc");
	rec_free(r);

	/* "begin" in prose, and blocks in parts that are not plain text */
	r = parse("Content-Type: text/html\n\nbegin 644 a.bin\n#86)C\nend\n");
	assert_int_equal(r->n, 1);
	rec_free(r);
	r = parse("Subject: x\n\nbegin the meeting at 10\n");
	assert_int_equal(r->n, 1);
	assert_text(&r->p[0], "begin the meeting at 10\n");
	rec_free(r);
}

/* ---- RFC 2047 encoded words ---- */

static void test_words_charsets(void **state)
{
	(void)state;
	buf_t out = BUF_INIT;
	assert_string_equal(decode_words("=?utf-8?q?caf=C3=A9?=", &out), "caf\xc3\xa9");
	assert_string_equal(decode_words("=?UTF-8?B?w6k=?=", &out), "\xc3\xa9");
	assert_string_equal(decode_words("=?iso-8859-1?q?caf=E9?=", &out), "caf\xc3\xa9");
	/* ISO-8859-1 read as windows-1252, as clients and browsers do */
	assert_string_equal(decode_words("=?iso-8859-1?q?=80?=", &out), "\xe2\x82\xac");
	assert_string_equal(decode_words("=?windows-1252?B?gHVybw==?=", &out), "\xe2\x82\xacuro");
	assert_string_equal(decode_words("=?shift_jis?B?g2WDWINn?=", &out),
			    "\xe3\x83\x86\xe3\x82\xb9\xe3\x83\x88"); /* テスト */
	assert_string_equal(decode_words("=?ISO-2022-JP?B?GyRCJUYlOSVIGyhC?=", &out),
			    "\xe3\x83\x86\xe3\x82\xb9\xe3\x83\x88");
	assert_string_equal(decode_words("=?koi8-r?Q?=F0=D2=C9=D7=C5=D4?=", &out),
			    "\xd0\x9f\xd1\x80\xd0\xb8\xd0\xb2\xd0\xb5\xd1\x82"); /* Привет */
	assert_string_equal(decode_words("=?gb2312?B?1tDOxA==?=", &out),
			    "\xe4\xb8\xad\xe6\x96\x87"); /* 中文 */
	/* RFC 2231 language suffix on the charset */
	assert_string_equal(decode_words("=?utf-8*en?q?hi?=", &out), "hi");
	buf_free(&out);
}

static void test_words_layout(void **state)
{
	(void)state;
	buf_t out = BUF_INIT;
	/* '_' is a space in Q; space between two words goes, other text stays */
	assert_string_equal(decode_words("=?utf-8?q?a_b?= =?utf-8?q?c?=", &out), "a bc");
	assert_string_equal(decode_words("x =?utf-8?q?a?=\t y", &out), "x a\t y");
	assert_string_equal(decode_words("=?utf-8?q?a?= and =?utf-8?q?b?=", &out), "a and b");
	/* words glued to text, as some mailers write them */
	assert_string_equal(decode_words("re:=?utf-8?q?x?=!", &out), "re:x!");
	/* a UTF-8 character cut in two words, as broken encoders do */
	assert_string_equal(decode_words("=?utf-8?B?ww==?= =?utf-8?B?qQ==?=", &out), "\xc3\xa9");
	assert_string_equal(decode_words("=?utf-8?q?=C3?= =?utf-8?q?=A9?=", &out), "\xc3\xa9");
	/* words in different charsets next to each other */
	assert_string_equal(decode_words("=?iso-8859-1?q?=E9?= =?utf-8?q?=C3=A9?=", &out),
			    "\xc3\xa9\xc3\xa9");
	buf_free(&out);
}

static void test_words_broken(void **state)
{
	(void)state;
	buf_t out = BUF_INIT;
	/* unknown charset, unknown encoding, unfinished words: kept as written */
	assert_string_equal(decode_words("=?x-nonsense?q?abc?=", &out), "=?x-nonsense?q?abc?=");
	assert_string_equal(decode_words("=?utf-8?x?abc?=", &out), "=?utf-8?x?abc?=");
	assert_string_equal(decode_words("=?utf-8?q?abc", &out), "=?utf-8?q?abc");
	assert_string_equal(decode_words("=?utf-8?q?abc?", &out), "=?utf-8?q?abc?");
	assert_string_equal(decode_words("=??q?abc?=", &out), "=??q?abc?=");
	assert_string_equal(decode_words("=?=?utf-8?q?x?=", &out), "=?x");
	/* a charset name iconv would read as options */
	assert_string_equal(decode_words("=?utf-8//IGNORE?q?x?=", &out), "=?utf-8//IGNORE?q?x?=");
	/* bytes the charset does not allow become U+FFFD, not nothing */
	assert_string_equal(decode_words("=?utf-8?q?a=FFb?=", &out), "a\xef\xbf\xbd"
								     "b");
	assert_string_equal(decode_words("=?shift_jis?q?=83?=", &out), "\xef\xbf\xbd");
	/* NUL would cut the string, CR LF would start a line: replaced */
	assert_string_equal(decode_words("=?utf-8?q?a=00b=0D=0Ac?=", &out), "a\xef\xbf\xbd"
									    "b  c");
	/* bad base64 inside a word: what can be read is read */
	assert_string_equal(decode_words("=?utf-8?b?aG!Vsb G8?=", &out), "hello");
	/* empty */
	assert_string_equal(decode_words("", &out), "");
	assert_string_equal(decode_words("=?utf-8?q?\?=", &out), "");
	buf_free(&out);
}

static double cpu_seconds(void)
{
	return (double)clock() / CLOCKS_PER_SEC;
}

static void test_words_linear(void **state)
{
	(void)state;
	/* starts of words that never end: each "=?" must not search to the end */
	size_t n = 400000;
	char *value = malloc(n + 1);
	for (size_t i = 0; i < n; i += 8)
		memcpy(value + i, "=?a?q?b ", 8);
	value[n] = '\0';
	buf_t out = BUF_INIT;
	double t0 = cpu_seconds();
	mime_decode_words(value, n, &out);
	double took = cpu_seconds() - t0;
	assert_int_equal(out.len, n);
	assert_memory_equal(out.data, value, n);
	assert_true(took < 2.0);
	buf_free(&out);
	free(value);
}

static void test_header_fields(void **state)
{
	(void)state;
	char v[256];
	struct rec *r = parse("Subject: =?utf-8?q?caf=C3=A9?=\n"
			      "  =?utf-8?q?_au_lait?=\n"
			      "X-Folded: one\n"
			      "\ttwo   \n"
			      "X-Spaced : value\n"
			      "X-Empty:\n"
			      "X-Raw-8bit: caf\xc3\xa9\n"
			      "\n");
	assert_int_equal(r->problems, 0);
	assert_string_equal(buf_cstr(&r->p[0].headers),
			    "Subject: =?utf-8?q?caf=C3=A9?=  =?utf-8?q?_au_lait?=\n"
			    "X-Folded: one\ttwo\n"
			    "X-Spaced: value\n"
			    "X-Empty: \n"
			    "X-Raw-8bit: caf\xc3\xa9\n");
	assert_string_equal(decoded_field(&r->p[0], "Subject", v, sizeof(v)),
			    "caf\xc3\xa9 au lait");
	assert_string_equal(decoded_field(&r->p[0], "X-Folded", v, sizeof(v)), "one\ttwo");
	rec_free(r);
}

/* ---- parameters (RFC 2045, RFC 2231) and filenames ---- */

/* The filename the parser gives for a part with these header fields. */
static char *filename_of(const char *fields)
{
	buf_t msg = BUF_INIT;
	buf_printf(&msg, "%s\n\nx\n", fields);
	struct rec *r = parse(msg.data);
	char *name = dup_or_null(r->p[0].filename);
	rec_free(r);
	buf_free(&msg);
	return name;
}

static void assert_filename(const char *fields, const char *want)
{
	char *got = filename_of(fields);
	if (want == NULL)
		assert_null(got);
	else
		assert_string_equal(got, want);
	free(got);
}

static void test_filenames(void **state)
{
	(void)state;
	assert_filename("Content-Disposition: attachment; filename=\"a b.pdf\"", "a b.pdf");
	assert_filename("Content-Disposition: attachment; filename=plain.txt", "plain.txt");
	/* no quotes around a name with a space: the whole name, up to ';' */
	assert_filename("Content-Type: text/plain; name=my file.exe; x=y", "my file.exe");
	/* Content-Disposition's filename first, then Content-Type's name */
	assert_filename("Content-Type: text/plain; name=\"n.txt\"\n"
			"Content-Disposition: attachment; filename=\"f.txt\"",
			"f.txt");
	assert_filename("Content-Type: text/plain; name=\"n.txt\"\n"
			"Content-Disposition: attachment",
			"n.txt");
	assert_filename("Content-Type: text/plain", NULL);
	/* quoted pairs; other backslashes are kept (Windows paths) */
	assert_filename("Content-Disposition: attachment; filename=\"a \\\"q\\\" \\\\ b\"",
			"a \"q\" \\ b");
	assert_filename("Content-Disposition: attachment; filename=\"C:\\temp\\a.exe\"",
			"C:\\temp\\a.exe");
	/* a quote that never closes runs to the end */
	assert_filename("Content-Disposition: attachment; filename=\"open.doc", "open.doc");
	/* comments, case, white space around '=' */
	assert_filename("Content-Disposition: attachment (c; x) ; FileName = \"c.txt\" (note)",
			"c.txt");
	/* RFC 2047 words inside the quotes, as Outlook and Gmail write them */
	assert_filename("Content-Disposition: attachment; filename=\"=?utf-8?b?w6l0w6kuZXhl?=\"",
			"\xc3\xa9t\xc3\xa9.exe");
	assert_filename("Content-Type: application/x-msdownload;\n"
			" name=\"=?UTF-8?B?5pel5pys6Kqe44Gu44OV44Kh44Kk44Or5ZCNLmV4ZQ==?=\"",
			"\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e\xe3\x81\xae\xe3\x83\x95\xe3\x82"
			"\xa1\xe3\x82\xa4\xe3\x83\xab\xe5\x90\x8d.exe");
	/* raw bytes that are not UTF-8 become U+FFFD, the extension stays */
	assert_filename("Content-Disposition: attachment; filename=\"caf\xe9.exe\"",
			"caf\xef\xbf\xbd.exe");
}

static void test_rfc2231(void **state)
{
	(void)state;
	/* an extended value with charset and language */
	assert_filename("Content-Disposition: attachment; filename*=iso-8859-1'fr'caf%E9.txt",
			"caf\xc3\xa9.txt");
	assert_filename("Content-Disposition: attachment; filename*=UTF-8''%E2%82%AC.txt",
			"\xe2\x82\xac.txt");
	assert_filename("Content-Disposition: attachment; filename*=shift_jis''%83e%83X%83g.txt",
			"\xe3\x83\x86\xe3\x82\xb9\xe3\x83\x88.txt");
	/* continuations, some encoded, in any order */
	assert_filename("Content-Disposition: attachment;\n"
			" filename*1=\"and more \";\n"
			" filename*0*=utf-8''%C3%A9t%C3%A9%20;\n"
			" filename*2*=%E2%82%AC.exe",
			"\xc3\xa9t\xc3\xa9 and more \xe2\x82\xac.exe");
	assert_filename("Content-Type: application/pdf; name*0=\"long \"; name*1=\"name.pdf\"",
			"long name.pdf");
	/* the RFC 2231 form wins over the plain one, whatever the order */
	assert_filename("Content-Disposition: attachment; filename=\"a.txt\";"
			" filename*=utf-8''b.exe",
			"b.exe");
	/* no charset quotes: the bytes as they are; unknown charset: bytes kept */
	assert_filename("Content-Disposition: attachment; filename*=a%2Eexe", "a.exe");
	assert_filename("Content-Disposition: attachment; filename*=x-none''a%41", "aA");
	/* a '%' that is not an escape stays; %00 cannot cut the name */
	assert_filename("Content-Disposition: attachment; filename*=utf-8''100%;x%00y.exe", "100%");
	assert_filename("Content-Disposition: attachment; filename*=utf-8''x%00y.exe",
			"x\xef\xbf\xbdy.exe");
	/* an empty extended value (found by fuzzing: no bytes, no buffer) */
	assert_filename("Content-Type: text/plain; name*0*=utf-8''", "");
	assert_filename("Content-Type: text/plain; name*0*=iso-8859-1''", "");
}

static void test_content_type(void **state)
{
	(void)state;
	struct rec *r = parse("Content-Type: TEXT/HTML; Charset=\"UTF-8\" (the charset)\n"
			      "Content-Disposition: INLINE\n\n<p>hi</p>\n");
	assert_int_equal(r->problems, 0);
	assert_string_equal(r->p[0].content_type, "text/html");
	assert_string_equal(r->p[0].charset, "utf-8");
	assert_string_equal(r->p[0].disposition, "inline");
	rec_free(r);

	/* an unreadable type is text/plain (RFC 2045 5.2), marked malformed */
	r = parse("Content-Type: text; charset=us-ascii\n\nhi\n");
	assert_int_equal(r->problems, MALFORMED);
	assert_string_equal(r->p[0].content_type, "text/plain");
	assert_string_equal(r->p[0].charset, "us-ascii");
	rec_free(r);
	r = parse("Content-Type: /\n\nhi\n");
	assert_string_equal(r->p[0].content_type, "text/plain");
	rec_free(r);

	/* the first Content-Type counts */
	r = parse("Content-Type: image/png\nContent-Type: text/plain\n\nx\n");
	assert_string_equal(r->p[0].content_type, "image/png");
	rec_free(r);
}

/* ---- structure ---- */

static const char nested_msg[] = "From: a@example.test\n"
				 "MIME-Version: 1.0\n"
				 "Content-Type: multipart/mixed; boundary=\"outer\"\n"
				 "\n"
				 "This is the preamble.\n"
				 "--outer\n"
				 "Content-Type: multipart/alternative; boundary=inner\n"
				 "\n"
				 "--inner\n"
				 "Content-Type: text/plain; charset=utf-8\n"
				 "\n"
				 "plain body\n"
				 "--inner\n"
				 "Content-Type: text/html\n"
				 "\n"
				 "<p>html body</p>\n"
				 "--inner--\n"
				 "inner epilogue\n"
				 "--outer\n"
				 "Content-Type: message/rfc822\n"
				 "Content-Disposition: attachment; filename=\"fwd.eml\"\n"
				 "\n"
				 "Subject: forwarded\n"
				 "Content-Type: multipart/mixed; boundary=deep\n"
				 "\n"
				 "--deep\n"
				 "\n"
				 "deep text\n"
				 "--deep\n"
				 "Content-Type: application/pdf; name=doc.pdf\n"
				 "Content-Transfer-Encoding: base64\n"
				 "\n"
				 "JVBERi0xLjQK\n"
				 "--deep--\n"
				 "--outer--\n"
				 "This is the epilogue.\n";

static void test_nesting(void **state)
{
	(void)state;
	struct rec *r = parse(nested_msg);
	assert_int_equal(r->problems, 0);
	assert_int_equal(r->n, 8);
	assert_string_equal(buf_cstr(&r->events),
			    "b0 b1 b2 e2 b3 e3 e1 b4 b5 b6 e6 b7 e7 e5 e4 e0 ");
	static const struct {
		const char *type;
		int parent;
		unsigned depth;
		bool multipart, message;
	} want[] = {
		{ "multipart/mixed", -1, 0, true, false },
		{ "multipart/alternative", 0, 1, true, false },
		{ "text/plain", 1, 2, false, false },
		{ "text/html", 1, 2, false, false },
		{ "message/rfc822", 0, 1, false, true },
		{ "multipart/mixed", 4, 2, true, false },
		{ "text/plain", 5, 3, false, false },
		{ "application/pdf", 5, 3, false, false },
	};
	for (unsigned i = 0; i < 8; i++) {
		assert_string_equal(r->p[i].content_type, want[i].type);
		assert_int_equal(r->p[i].parent, want[i].parent);
		assert_int_equal(r->p[i].depth, want[i].depth);
		assert_int_equal(r->p[i].multipart, want[i].multipart);
		assert_int_equal(r->p[i].message, want[i].message);
	}
	/* preamble and epilogues belong to no part; containers get no data */
	assert_int_equal(r->p[0].data.len, 0);
	assert_int_equal(r->p[1].data.len, 0);
	assert_text(&r->p[2], "plain body");
	assert_text(&r->p[3], "<p>html body</p>");
	assert_int_equal(r->p[4].data.len, 0);
	assert_string_equal(r->p[4].filename, "fwd.eml");
	assert_text(&r->p[6], "deep text");
	assert_text(&r->p[7], "%PDF-1.4\n");
	assert_string_equal(r->p[7].filename, "doc.pdf");
	assert_string_equal(r->p[7].sniffed, "application/pdf");
	/* the attached message's own header section */
	assert_string_equal(buf_cstr(&r->p[5].headers),
			    "Subject: forwarded\nContent-Type: multipart/mixed; boundary=deep\n");
	rec_free(r);
}

static void test_crlf_and_lf_agree(void **state)
{
	(void)state;
	buf_t crlf = BUF_INIT;
	for (const char *s = nested_msg; *s != '\0'; s++) {
		if (*s == '\n')
			buf_putc(&crlf, '\r');
		buf_putc(&crlf, *s);
	}
	struct rec *a = parse(nested_msg), *b = parse(crlf.data);
	assert_int_equal(a->n, b->n);
	assert_int_equal(b->problems, 0);
	assert_string_equal(buf_cstr(&a->events), buf_cstr(&b->events));
	for (unsigned i = 0; i < a->n; i++) {
		assert_string_equal(a->p[i].content_type, b->p[i].content_type);
		assert_string_equal(buf_cstr(&a->p[i].headers), buf_cstr(&b->p[i].headers));
		if (a->p[i].encoding == MIME_ENC_BASE64)
			assert_data(&b->p[i], a->p[i].data.data, a->p[i].data.len);
	}
	rec_free(a);
	rec_free(b);
	buf_free(&crlf);
}

static void test_message_types(void **state)
{
	(void)state;
	/* message/global (RFC 6532) holds a message too */
	struct rec *r = parse("Content-Type: message/global\n\nSubject: inner\n\nbody\n");
	assert_int_equal(r->n, 2);
	assert_true(r->p[0].message);
	assert_string_equal(buf_cstr(&r->p[1].headers), "Subject: inner\n");
	assert_text(&r->p[1], "body\n");
	rec_free(r);

	/* a report or a fragment is no whole message: a leaf */
	r = parse("Content-Type: message/delivery-status\n\nReporting-MTA: dns; x\n");
	assert_int_equal(r->n, 1);
	assert_false(r->p[0].message);
	rec_free(r);
	r = parse("Content-Type: message/partial; id=\"x\"; number=2\n\nrest of it\n");
	assert_int_equal(r->n, 1);
	rec_free(r);

	/* a base64 message/rfc822 (RFC 2046 forbids it): decoded as a leaf */
	r = parse("Content-Type: message/rfc822\nContent-Transfer-Encoding: base64\n\n"
		  "U3ViamVjdDogeAoKYm9keQo=\n");
	assert_int_equal(r->problems, MALFORMED);
	assert_int_equal(r->n, 1);
	assert_text(&r->p[0], "Subject: x\n\nbody\n");
	rec_free(r);
}

static void test_digest(void **state)
{
	(void)state;
	/* in multipart/digest, a part without Content-Type is a message */
	struct rec *r = parse("Content-Type: multipart/digest; boundary=d\nMIME-Version: 1.0\n\n"
			      "--d\n\nSubject: one\n\nfirst\n"
			      "--d\nContent-Type: text/plain\n\nnot a message\n"
			      "--d--\n");
	assert_int_equal(r->problems, 0);
	assert_int_equal(r->n, 4);
	assert_string_equal(r->p[1].content_type, "message/rfc822");
	assert_true(r->p[1].message);
	assert_string_equal(buf_cstr(&r->p[2].headers), "Subject: one\n");
	assert_text(&r->p[2], "first");
	assert_string_equal(r->p[3].content_type, "text/plain");
	assert_text(&r->p[3], "not a message");
	rec_free(r);
}

static void test_sniffed_type(void **state)
{
	(void)state;
	/* a zip declared as text: the sniffed type tells */
	struct rec *r = parse(
		"Content-Type: multipart/mixed; boundary=b\nMIME-Version: 1.0\n\n"
		"--b\nContent-Type: text/plain; name=\"notes.txt\"\n"
		"Content-Transfer-Encoding: base64\n\n"
		"UEsDBBQAAAAAAApyfl2GphA2BQAAAAUAAAAFAAAAYS50eHRoZWxsb1BLAQIUAxQAAAAAAApyfl2GphA2\n"
		"BQAAAAUAAAAFAAAAAAAAAAAAAACAAQAAAABhLnR4dFBLBQYAAAAAAQABADMAAAAoAAAAAAA=\n"
		"--b\nContent-Type: application/octet-stream\n\n<html><body>hi</body></html>\n"
		"--b\nContent-Type: text/plain\n\n"
		"--b--\n");
	assert_int_equal(r->problems, 0);
	assert_string_equal(r->p[1].content_type, "text/plain");
	assert_string_equal(r->p[1].sniffed, "application/zip");
	assert_string_equal(r->p[2].sniffed, "text/html");
	assert_null(r->p[3].sniffed); /* nothing to sniff */
	assert_null(r->p[0].sniffed); /* not a leaf */
	rec_free(r);
}

/* ---- broken mail, repaired the way mail clients repair it ---- */

static void test_missing_mime_version(void **state)
{
	(void)state;
	/* read as MIME all the same, as every client does */
	struct rec *r = parse("Content-Type: multipart/mixed; boundary=b\n\n"
			      "--b\n\none\n--b--\n");
	assert_int_equal(r->problems, MALFORMED);
	assert_int_equal(r->n, 2);
	assert_text(&r->p[1], "one");
	rec_free(r);
	/* a single part without it is plain old RFC 822 mail: nothing to say */
	r = parse("Content-Type: text/plain; charset=utf-8\n\nhi\n");
	assert_int_equal(r->problems, 0);
	rec_free(r);
}

static void test_missing_close_delimiter(void **state)
{
	(void)state;
	/* the last part runs to the end of the message */
	struct rec *r = parse("MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=b\n\n"
			      "--b\n\none\n--b\nContent-Type: text/html\n\ntwo\n");
	assert_int_equal(r->problems, MALFORMED);
	assert_int_equal(r->n, 3);
	assert_text(&r->p[1], "one");
	assert_text(&r->p[2], "two\n");
	rec_free(r);
}

static void test_wrong_boundary(void **state)
{
	(void)state;
	/* the declared boundary never comes: a multipart without parts */
	struct rec *r = parse("MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=right\n\n"
			      "--wrong\n\nbody\n--wrong--\n");
	assert_int_equal(r->problems, MALFORMED);
	assert_int_equal(r->n, 1);
	assert_true(r->p[0].multipart);
	rec_free(r);
	/* a boundary that only starts like ours is not ours */
	r = parse("MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=abc\n\n"
		  "--abc\n\n--abcdef\n--abc--x\n--abc--\n");
	assert_int_equal(r->problems, 0);
	assert_int_equal(r->n, 2);
	assert_text(&r->p[1], "--abcdef\n--abc--x");
	rec_free(r);
}

static void test_boundary_white_space(void **state)
{
	(void)state;
	struct rec *r = parse("MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=\"b\"\n\n"
			      "--b \t\nContent-Type: text/plain\n\none\n--b  \n\ntwo\n--b-- \n");
	assert_int_equal(r->problems, 0);
	assert_int_equal(r->n, 3);
	assert_text(&r->p[1], "one");
	assert_text(&r->p[2], "two");
	rec_free(r);
}

static void test_outer_boundary_closes_inner(void **state)
{
	(void)state;
	/* the inner multipart never closes: the outer boundary closes it */
	struct rec *r = parse("MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=out\n\n"
			      "--out\nContent-Type: multipart/alternative; boundary=in\n\n"
			      "--in\n\ninner\n"
			      "--out\nContent-Type: application/zip; name=a.zip\n\nPK\n"
			      "--out--\n");
	assert_int_equal(r->problems, MALFORMED);
	assert_int_equal(r->n, 4);
	assert_string_equal(buf_cstr(&r->events), "b0 b1 b2 e2 e1 b3 e3 e0 ");
	assert_text(&r->p[2], "inner");
	assert_string_equal(r->p[3].filename, "a.zip");
	assert_int_equal(r->p[3].parent, 0);
	rec_free(r);
}

static void test_reused_boundary(void **state)
{
	(void)state;
	/* An inner multipart with its parent's boundary: the inner one gets
	 * the lines first (MimeKit, Thunderbird), so the attachment after its
	 * close delimiter is still seen. */
	struct rec *r = parse("MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=X\n\n"
			      "--X\nContent-Type: multipart/alternative; boundary=X\n\n"
			      "--X\nContent-Type: text/plain\n\nplain\n"
			      "--X\nContent-Type: text/html\n\nhtml\n"
			      "--X--\n"
			      "--X\nContent-Type: application/zip; name=\"a.jpg_.zip\"\n\nPK\n"
			      "--X--\n");
	assert_int_equal(r->problems, MALFORMED);
	assert_int_equal(r->n, 5);
	assert_string_equal(buf_cstr(&r->events), "b0 b1 b2 e2 b3 e3 e1 b4 e4 e0 ");
	assert_int_equal(r->p[2].parent, 1);
	assert_int_equal(r->p[4].parent, 0);
	assert_string_equal(r->p[4].filename, "a.jpg_.zip");
	rec_free(r);
}

static void test_header_line_without_colon(void **state)
{
	(void)state;
	/* skipped: the fields after it still count (Thunderbird, MimeKit) */
	struct rec *r = parse("Subject: x\nthis line is no field\n"
			      "Content-Type: multipart/mixed; boundary=b\nMIME-Version: 1.0\n\n"
			      "--b\nContent-Type: text/plain\nanother bad line\n"
			      "Content-Disposition: attachment; filename=a.exe\n\nbody\n--b--\n");
	assert_int_equal(r->problems, MALFORMED);
	assert_int_equal(r->n, 2);
	assert_string_equal(r->p[0].content_type, "multipart/mixed");
	assert_string_equal(r->p[1].filename, "a.exe");
	assert_text(&r->p[1], "body");
	assert_string_equal(
		buf_cstr(&r->p[0].headers),
		"Subject: x\nContent-Type: multipart/mixed; boundary=b\nMIME-Version: 1.0\n");
	rec_free(r);

	/* a continuation line with no field before it, and a field name with
	 * a space in it, are no fields either */
	r = parse("  folded nothing\nBad Name: x\nGood: y\n\nbody\n");
	assert_int_equal(r->problems, MALFORMED);
	assert_string_equal(buf_cstr(&r->p[0].headers), "Good: y\n");
	assert_text(&r->p[0], "body\n");
	rec_free(r);
}

static void test_only_a_header(void **state)
{
	(void)state;
	/* a message that is only a header section (no empty line) is fine */
	struct rec *r = parse("From: a@example.test\nSubject: nothing more");
	assert_int_equal(r->problems, 0);
	assert_int_equal(r->n, 1);
	assert_string_equal(buf_cstr(&r->p[0].headers),
			    "From: a@example.test\nSubject: nothing more\n");
	assert_int_equal(r->p[0].data.len, 0);
	rec_free(r);
	/* nothing at all: one empty part */
	r = parse("");
	assert_int_equal(r->n, 1);
	assert_int_equal(r->problems, 0);
	rec_free(r);
}

static void test_part_never_ends(void **state)
{
	(void)state;
	/* the message ends inside a body part's header section */
	struct rec *r = parse("MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=b\n\n"
			      "--b\nContent-Type: application/octet-stream; name=cut.bin\n"
			      "Content-Transfer-Enc");
	assert_int_equal(r->problems, MALFORMED);
	assert_int_equal(r->n, 2);
	assert_string_equal(r->p[1].filename, "cut.bin");
	assert_string_equal(buf_cstr(&r->events), "b0 b1 e1 e0 ");
	rec_free(r);
	/* a body part with no empty line before the next boundary */
	r = parse("MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=b\n\n"
		  "--b\nContent-Type: text/html\n--b\n\nsecond\n--b--\n");
	assert_int_equal(r->problems, MALFORMED);
	assert_int_equal(r->n, 3);
	assert_string_equal(r->p[1].content_type, "text/html");
	assert_int_equal(r->p[1].data.len, 0);
	rec_free(r);
}

static void test_repeated_boundary(void **state)
{
	(void)state;
	/* "--b" twice in a row: no empty part between them (as Python) */
	struct rec *r =
		parse("MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=b\n\n"
		      "--b\n--b\nContent-Type: text/html\n\nx\n--b\n--b\n--b\n\ny\n--b--\n");
	assert_int_equal(r->problems, MALFORMED);
	assert_int_equal(r->n, 3);
	assert_string_equal(r->p[1].content_type, "text/html");
	assert_text(&r->p[2], "y");
	rec_free(r);
}

static void test_multipart_without_boundary(void **state)
{
	(void)state;
	struct rec *r = parse("MIME-Version: 1.0\nContent-Type: multipart/mixed\n\n--x\n\nbody\n");
	assert_int_equal(r->problems, MALFORMED);
	assert_int_equal(r->n, 1);
	assert_false(r->p[0].multipart);
	assert_text(&r->p[0], "--x\n\nbody\n"); /* read as one leaf, as Python does */
	rec_free(r);
}

static void test_mbox_line_and_bom(void **state)
{
	(void)state;
	struct rec *r = parse("From someone@example.test Mon Jan  1 00:00:00 2001\n"
			      "Subject: mbox\n\nbody\n");
	assert_int_equal(r->problems, 0);
	assert_string_equal(buf_cstr(&r->p[0].headers), "Subject: mbox\n");
	rec_free(r);
	r = parse("\xEF\xBB\xBFSubject: bom\n\nbody\n");
	assert_int_equal(r->problems, 0);
	assert_string_equal(buf_cstr(&r->p[0].headers), "Subject: bom\n");
	rec_free(r);
}

static void test_nul_in_header(void **state)
{
	(void)state;
	static const char msg[] = "Subject: a\0b\nX: y\n\nbody\n";
	struct rec *r = parse_len_limits(&default_limits, msg, sizeof(msg) - 1);
	assert_int_equal(r->problems, MALFORMED);
	assert_string_equal(buf_cstr(&r->p[0].headers), "Subject: a b\nX: y\n");
	rec_free(r);
}

static void test_long_lines(void **state)
{
	(void)state;
	/* header fields and text lines longer than any line buffer */
	buf_t msg = BUF_INIT, value = BUF_INIT, text = BUF_INIT;
	for (int i = 0; i < 3000; i++)
		buf_puts(&value, "word ");
	value.len--; /* no trailing space */
	value.data[value.len] = '\0';
	for (int i = 0; i < 2500; i++)
		buf_puts(&text, "0123456789");
	buf_printf(&msg, "X-Long: %s\nSubject: after\n\n%s\nnext\n", value.data, text.data);
	struct rec *r = parse(msg.data);
	assert_int_equal(r->problems, 0);
	buf_t want = BUF_INIT;
	buf_printf(&want, "X-Long: %s\nSubject: after\n", value.data);
	assert_string_equal(buf_cstr(&r->p[0].headers), want.data);
	buf_reset(&want);
	buf_printf(&want, "%s\nnext\n", text.data);
	assert_text(&r->p[0], want.data);
	rec_free(r);
	buf_free(&msg);
	buf_free(&value);
	buf_free(&text);
	buf_free(&want);
}

/* ---- bounds ---- */

/* depth levels of multipart, each with a text part before the next
 * level, closed properly, then a last text part at the top. */
static void nested(buf_t *msg, unsigned levels)
{
	buf_puts(msg, "MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=b0\n\n");
	for (unsigned i = 0; i < levels; i++)
		buf_printf(
			msg,
			"--b%u\n\ntext %u\n--b%u\nContent-Type: multipart/mixed; boundary=b%u\n\n",
			i, i, i, i + 1);
	buf_printf(msg, "--b%u\n\ninnermost\n--b%u--\n", levels, levels);
	for (unsigned i = levels; i-- > 0;)
		buf_printf(msg, "--b%u--\n", i);
	buf_puts(msg, "trailing epilogue\n");
}

static void test_depth_bound(void **state)
{
	(void)state;
	struct mime_limits lim = default_limits;
	lim.max_depth = 3;
	buf_t msg = BUF_INIT;
	nested(&msg, 10);
	struct rec *r = parse_len_limits(&lim, msg.data, msg.len);
	assert_int_equal(r->problems, MIME_TOO_DEEP);
	unsigned deepest = 0;
	for (unsigned i = 0; i < r->n; i++)
		deepest = r->p[i].depth > deepest ? r->p[i].depth : deepest;
	assert_int_equal(deepest, 3);
	/* levels 0..2 each have a text part and a multipart child; the
	 * multipart at depth 3 is reported, its body is not parsed */
	assert_int_equal(r->n, 7);
	assert_true(r->p[6].multipart);
	assert_int_equal(r->p[6].depth, 3);
	assert_text(&r->p[5], "text 2");
	rec_free(r);

	/* within the bound: no problem */
	lim.max_depth = 20;
	r = parse_len_limits(&lim, msg.data, msg.len);
	assert_int_equal(r->problems, 0);
	assert_int_equal(r->n, 22);
	rec_free(r);
	buf_free(&msg);

	/* message/rfc822 counts as a level too */
	lim.max_depth = 1;
	r = parse_limits(&lim, "MIME-Version: 1.0\nContent-Type: message/rfc822\n\n"
			       "Content-Type: message/rfc822\n\nSubject: x\n\nbody\n");
	assert_int_equal(r->problems, MIME_TOO_DEEP);
	assert_int_equal(r->n, 2);
	rec_free(r);
}

static void test_parts_bound(void **state)
{
	(void)state;
	struct mime_limits lim = default_limits;
	lim.max_parts = 4;
	buf_t msg = BUF_INIT;
	buf_puts(&msg, "MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=b\n\n");
	for (int i = 0; i < 50; i++)
		buf_printf(&msg, "--b\n\npart %d\n", i);
	buf_puts(&msg, "--b--\n");
	struct rec *r = parse_len_limits(&lim, msg.data, msg.len);
	assert_int_equal(r->problems, MIME_TOO_MANY_PARTS);
	assert_int_equal(r->n, 4);
	assert_text(&r->p[3], "part 2");
	rec_free(r);
	buf_free(&msg);

	/* uuencoded blocks count as parts too */
	lim.max_parts = 2;
	r = parse_limits(&lim, "Subject: x\n\nbegin 644 a\n#86)C\nend\nbegin 644 b\n#86)C\nend\n");
	assert_int_equal(r->problems, MIME_TOO_MANY_PARTS);
	assert_int_equal(r->n, 2);
	rec_free(r);
}

static void test_header_bound(void **state)
{
	(void)state;
	struct mime_limits lim = default_limits;
	lim.max_header_bytes = 64;
	struct rec *r = parse_limits(&lim, "Subject: 0123456789012345678901234567890123456789\n"
					   "X-Second: this field is past the bound\n"
					   "Content-Type: text/html\n"
					   "\nbody\n");
	assert_int_equal(r->problems, MIME_HEADER_TOO_BIG);
	assert_string_equal(buf_cstr(&r->p[0].headers),
			    "Subject: 0123456789012345678901234567890123456789\n");
	assert_string_equal(r->p[0].content_type, "text/plain"); /* its field was dropped */
	assert_text(&r->p[0], "body\n");
	rec_free(r);

	/* one field of a million bytes, in pieces: memory stays bounded */
	buf_t msg = BUF_INIT;
	buf_puts(&msg, "X-Huge: ");
	for (int i = 0; i < 100000; i++)
		buf_puts(&msg, "0123456789");
	buf_puts(&msg, "\n\nbody\n");
	lim.max_header_bytes = 1024;
	r = parse_len_limits(&lim, msg.data, msg.len);
	assert_int_equal(r->problems, MIME_HEADER_TOO_BIG);
	assert_true(r->p[0].headers.len < 1024);
	assert_text(&r->p[0], "body\n");
	rec_free(r);
	buf_free(&msg);
}

static void test_decoded_bound(void **state)
{
	(void)state;
	struct mime_limits lim = default_limits;
	lim.max_decoded_bytes = 10;
	struct rec *r = parse_limits(
		&lim, "MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=b\n\n"
		      "--b\n\n123456\n--b\nContent-Transfer-Encoding: base64\n\n"
		      "aGVsbG8gd29ybGQ=\n--b\n\nmore\n--b--\n");
	assert_int_equal(r->problems, MIME_DECODED_TOO_BIG);
	assert_int_equal(r->n, 4); /* the structure is still parsed */
	assert_text(&r->p[1], "123456");
	assert_text(&r->p[2], "hell"); /* exactly up to the bound */
	assert_int_equal(r->p[3].data.len, 0);
	rec_free(r);

	/* reaching the bound exactly is no problem */
	lim.max_decoded_bytes = 6;
	r = parse_limits(&lim, "Subject: x\n\n12345\n");
	assert_int_equal(r->problems, 0);
	rec_free(r);
}

/* ---- time: the parse is linear in the input ---- */

static double parse_seconds(const struct mime_limits *lim, const buf_t *msg, unsigned *problems_r,
			    unsigned *parts_r)
{
	struct rec *r = calloc(1, sizeof(*r));
	double t0 = cpu_seconds();
	struct mime_parser *p = mime_parser_new(lim, &handler, r);
	for (size_t off = 0; off < msg->len; off += 65536)
		mime_parser_feed(p, msg->data + off,
				 msg->len - off < 65536 ? msg->len - off : 65536);
	*problems_r = mime_parser_finish(p);
	mime_parser_free(&p);
	double took = cpu_seconds() - t0;
	*parts_r = r->n;
	rec_free(r);
	return took;
}

/* A message of about size bytes whose lines almost match the boundary of
 * each of 20 nested multiparts. */
static void near_boundaries(buf_t *msg, size_t size)
{
	buf_puts(msg, "MIME-Version: 1.0\n");
	for (int d = 0; d < 19; d++)
		buf_printf(msg, "Content-Type: multipart/mixed; boundary=\"%040d\"\n\n--%040d\n", d,
			   d);
	buf_puts(msg, "\n");
	while (msg->len < size)
		for (int d = 0; d < 19; d++)
			buf_printf(msg, "--%040d-x\n--%039d\n", d, d);
}

static void test_near_boundaries_linear(void **state)
{
	(void)state;
	buf_t small = BUF_INIT, big = BUF_INIT;
	near_boundaries(&small, 2500000);
	near_boundaries(&big, 10000000);
	unsigned problems, parts;
	double t_small = parse_seconds(&default_limits, &small, &problems, &parts);
	double t_big = parse_seconds(&default_limits, &big, &problems, &parts);
	assert_int_equal(parts, 20);
	assert_int_equal(problems, MIME_MALFORMED); /* nothing closes */
	/* 4 times the input, about 4 times the time; quadratic would be 16 */
	assert_true(t_big < 8 * t_small + 0.2);
	assert_true(t_big < 20.0);
	buf_free(&small);
	buf_free(&big);
}

/* n multiparts, each inside the one before, never closed. */
static void deep_nesting(buf_t *msg, unsigned n)
{
	buf_puts(msg, "MIME-Version: 1.0\n");
	for (unsigned i = 0; i < n; i++)
		buf_printf(msg, "Content-Type: multipart/mixed; boundary=\"n%u\"\n\n--n%u\n", i, i);
	buf_puts(msg, "\nthe end\n");
}

static void test_deep_nesting_cut(void **state)
{
	(void)state;
	buf_t small = BUF_INIT, big = BUF_INIT;
	deep_nesting(&small, 2500);
	deep_nesting(&big, 10000);
	unsigned problems, parts;
	double t_small = parse_seconds(&default_limits, &small, &problems, &parts);
	double t_big = parse_seconds(&default_limits, &big, &problems, &parts);
	assert_int_equal(parts, 21); /* depths 0..20 */
	assert_true(problems & MIME_TOO_DEEP);
	assert_true(t_big < 8 * t_small + 0.2);
	buf_free(&small);
	buf_free(&big);

	/* the same as nested messages */
	buf_t msgs = BUF_INIT;
	buf_puts(&msgs, "MIME-Version: 1.0\n");
	for (int i = 0; i < 10000; i++)
		buf_puts(&msgs, "Content-Type: message/rfc822\n\n");
	double t = parse_seconds(&default_limits, &msgs, &problems, &parts);
	assert_int_equal(parts, 21);
	assert_int_equal(problems, MIME_TOO_DEEP);
	assert_true(t < 5.0);
	buf_free(&msgs);
}

static void test_problem_names(void **state)
{
	(void)state;
	assert_string_equal(mime_problem_name(MIME_TOO_DEEP), "too_deep");
	assert_string_equal(mime_problem_name(MIME_TOO_MANY_PARTS), "too_many_parts");
	assert_string_equal(mime_problem_name(MIME_HEADER_TOO_BIG), "header_too_big");
	assert_string_equal(mime_problem_name(MIME_DECODED_TOO_BIG), "decoded_too_big");
	assert_string_equal(mime_problem_name(MIME_MALFORMED), "malformed");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_plain_message),
		cmocka_unit_test(test_base64),
		cmocka_unit_test(test_base64_one_long_line),
		cmocka_unit_test(test_quoted_printable),
		cmocka_unit_test(test_identity_encodings),
		cmocka_unit_test(test_uuencode_transfer_encoding),
		cmocka_unit_test(test_uuencode_block_in_text),
		cmocka_unit_test(test_words_charsets),
		cmocka_unit_test(test_words_layout),
		cmocka_unit_test(test_words_broken),
		cmocka_unit_test(test_words_linear),
		cmocka_unit_test(test_header_fields),
		cmocka_unit_test(test_filenames),
		cmocka_unit_test(test_rfc2231),
		cmocka_unit_test(test_content_type),
		cmocka_unit_test(test_nesting),
		cmocka_unit_test(test_crlf_and_lf_agree),
		cmocka_unit_test(test_message_types),
		cmocka_unit_test(test_digest),
		cmocka_unit_test(test_sniffed_type),
		cmocka_unit_test(test_missing_mime_version),
		cmocka_unit_test(test_missing_close_delimiter),
		cmocka_unit_test(test_wrong_boundary),
		cmocka_unit_test(test_boundary_white_space),
		cmocka_unit_test(test_outer_boundary_closes_inner),
		cmocka_unit_test(test_reused_boundary),
		cmocka_unit_test(test_header_line_without_colon),
		cmocka_unit_test(test_only_a_header),
		cmocka_unit_test(test_part_never_ends),
		cmocka_unit_test(test_repeated_boundary),
		cmocka_unit_test(test_multipart_without_boundary),
		cmocka_unit_test(test_mbox_line_and_bom),
		cmocka_unit_test(test_nul_in_header),
		cmocka_unit_test(test_long_lines),
		cmocka_unit_test(test_depth_bound),
		cmocka_unit_test(test_parts_bound),
		cmocka_unit_test(test_header_bound),
		cmocka_unit_test(test_decoded_bound),
		cmocka_unit_test(test_near_boundaries_linear),
		cmocka_unit_test(test_deep_nesting_cut),
		cmocka_unit_test(test_problem_names),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

/*
 * fuzz_spam_text.c - libFuzzer target for what the spam tests see of a
 * message (src/scan/spam_text.c, html_text.c, html_style.c, spam_uri.c):
 * the input is a whole message (the MIME pass, then spam_text_build), and
 * again the body of an HTML part (so that the renderer sees the bytes as
 * they are). Invariants checked: body and rawbody stay within max_body,
 * every body line (its line end counted) within 2050 bytes, the body is valid
 * UTF-8 without NUL and ends in '\n', so does a non-empty rawbody; at most
 * max_uris URIs, each non-empty, a C string of its full length, none twice,
 * hosts in lower case; the HTML facts add up (no more invisible bytes than
 * HTML text was kept).
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "lib/buf.h"
#include "scan/scan_message.h"
#include "scan/spam.h"

#define MAX_BODY 3000
#define MAX_URIS 20

static bool valid_utf8(const unsigned char *s, size_t n)
{
	size_t i = 0;
	while (i < n) {
		unsigned char c = s[i];
		size_t len = c < 0x80 ? 1 : c >= 0xC2 && c <= 0xDF ? 2 : c >= 0xE0 && c <= 0xEF ? 3
			   : c >= 0xF0 && c <= 0xF4 ? 4 : 0;
		if (len == 0 || i + len > n)
			return false;
		for (size_t k = 1; k < len; k++)
			if ((s[i + k] & 0xC0) != 0x80)
				return false;
		if ((c == 0xE0 && s[i + 1] < 0xA0) || (c == 0xED && s[i + 1] > 0x9F) ||
		    (c == 0xF0 && s[i + 1] < 0x90) || (c == 0xF4 && s[i + 1] > 0x8F))
			return false;
		i += len;
	}
	return true;
}

static void check(const struct spam_text *t)
{
	const buf_t *b = &t->body;
	if (b->len > MAX_BODY || t->rawbody.len > MAX_BODY || t->uri_count > MAX_URIS)
		abort();
	if (b->len == 0 || b->data[b->len - 1] != '\n' || memchr(b->data, '\0', b->len) != NULL ||
	    !valid_utf8((const unsigned char *)b->data, b->len))
		abort();
	size_t line = 0;
	for (size_t i = 0; i < b->len; i++) {
		line++;
		if (b->data[i] == '\n') {
			if (line > 2050)
				abort();
			line = 0;
		}
	}
	if (t->rawbody.len > 0 && t->rawbody.data[t->rawbody.len - 1] != '\n')
		abort();
	for (size_t i = 0; i < t->uri_count; i++) {
		const struct spam_uri *u = &t->uris[i];
		if (u->uri == NULL || u->uri[0] == '\0')
			abort();
		for (size_t k = i + 1; k < t->uri_count; k++)
			if (strcmp(u->uri, t->uris[k].uri) == 0)
				abort();
		for (const char *h = u->host; h != NULL && *h != '\0'; h++)
			if (*h >= 'A' && *h <= 'Z')
				abort();
		if (u->anchor_text != NULL && strlen(u->anchor_text) > 256)
			abort();
	}
	if (t->html.html_parts == 0 && (t->html.images != 0 || t->html.tags != 0))
		abort();
}

static void run(const uint8_t *data, size_t size)
{
	static const strlist_t none = { NULL, 0 };
	static const struct scan_envelope env = { "", "", &none, "", "" };
	static const struct mime_limits limits = { 8, 64, 2048, 64 * 1024, false };
	static const struct spam_text_limits text_limits = { MAX_BODY, MAX_URIS };
	struct scan_message m = { .env = &env, .data = data, .len = size };
	scan_message_parse_keeping(&m, &limits, 0, 16 * 1024);
	struct spam_text t;
	spam_text_build(&m, &text_limits, &t);
	check(&t);
	spam_text_free(&t);
	scan_message_free(&m);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	run(data, size);
	static const char head[] = "Subject: x\nContent-Type: text/html; charset=utf-8\n\n";
	buf_t html = BUF_INIT;
	buf_append(&html, head, sizeof(head) - 1);
	buf_append(&html, data, size);
	run((const uint8_t *)html.data, html.len);
	buf_free(&html);
	return 0;
}

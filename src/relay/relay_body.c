/*
 * relay_body.c - the DATA section of a relayed message, streamed (see
 * relay_body.h).
 *
 * RFCs: RFC 5321 sections 4.5.2 (transparency) and 4.5.3.1.6 (line
 * length), RFC 5322 section 2.2.3 (folding). Untrusted input: message
 * content. Privilege: the relay delivery agent.
 */
#include "relay_body.h"

#include <stdlib.h>
#include <string.h>

#include "../lib/xalloc.h"

void relay_body_init(struct relay_body *b)
{
	memset(b, 0, sizeof(*b));
	b->in_header = true;
}

/* How many octets at the end of p[0..n) are the start of a UTF-8
 * character whose continuation octets are missing (0 if none). */
static size_t incomplete_utf8_tail(const char *p, size_t n)
{
	for (size_t k = 1; k <= 3 && k <= n; k++) {
		unsigned char c = (unsigned char)p[n - k];
		if ((c & 0xc0) == 0x80)
			continue;
		size_t need = c >= 0xf0 ? 4 : c >= 0xe0 ? 3 : c >= 0xc0 ? 2 : 1;
		return need > k ? k : 0;
	}
	return 0;
}

/* Encode in[0..n), which never ends in the middle of a UTF-8 character
 * unless the content itself does. */
static void encode(struct relay_body *b, const char *in, size_t n, buf_t *out)
{
	size_t i = 0;

	buf_reserve(out, n + n / 64 + 16);
	while (i < n) {
		char c = in[i];
		if (c == '\n') {
			if (b->col == 0)
				b->in_header = false; /* the empty line ends the header section */
			buf_append(out, "\r\n", 2);
			b->col = 0;
			i++;
			continue;
		}
		if (b->col >= RELAY_LINE_MAX) {
			b->folded = true;
			if (b->in_header) {
				buf_append(out, "\r\n ", 3);
				b->col = 1;
			} else {
				buf_append(out, "\r\n", 2);
				b->col = 0;
			}
		}
		if (b->col == 0 && c == '.') {
			buf_putc(out, '.');
			b->col++;
		}
		/* Copy the run of ordinary bytes up to the end of the line or
		 * the fold point in one go. */
		size_t room = RELAY_LINE_MAX - b->col;
		size_t run = 0;
		while (run < room && i + run < n && in[i + run] != '\n')
			run++;
		if (run == 0) {
			/* a '.' at the fold point: next round folds first */
			continue;
		}
		bool fold_early = false;
		if (run == room && i + run < n && ((unsigned char)in[i + run] & 0xc0) == 0x80) {
			/* The line fills up in the middle of a character:
			 * fold before it. (Only when the next octet does
			 * continue it: then the decision is the same however
			 * the content was cut into chunks, as a chunk that
			 * ends inside a character is held whole.) */
			size_t back = incomplete_utf8_tail(in + i, run);
			if (back > 0) { /* back <= 3 < run + col: the line is not empty */
				run -= back;
				fold_early = true;
			}
		}
		buf_append(out, in + i, run);
		b->col = fold_early ? RELAY_LINE_MAX : b->col + run;
		i += run;
	}
}

void relay_body_feed(struct relay_body *b, const char *in, size_t n, buf_t *out)
{
	const char *p = in;
	size_t len = n;
	char *joined = NULL;

	if (b->pend_len > 0) {
		joined = xmalloc(b->pend_len + n);
		memcpy(joined, b->pend, b->pend_len);
		if (n > 0)
			memcpy(joined + b->pend_len, in, n);
		p = joined;
		len = b->pend_len + n;
		b->pend_len = 0;
	}
	/* A character cut by the chunk waits for its end (the fold
	 * decision needs the whole of it). */
	size_t hold = incomplete_utf8_tail(p, len);
	encode(b, p, len - hold, out);
	memcpy(b->pend, p + len - hold, hold);
	b->pend_len = hold;
	free(joined);
}

void relay_body_end(struct relay_body *b, buf_t *out)
{
	if (b->pend_len > 0)
		encode(b, b->pend, b->pend_len, out); /* content that ends mid-character */
	b->pend_len = 0;
	if (b->col > 0)
		buf_append(out, "\r\n", 2);
	b->col = 0;
	buf_append(out, ".\r\n", 3);
}

bool relay_body_is_8bit(const char *data, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)data[i] >= 0x80)
			return true;
	return false;
}

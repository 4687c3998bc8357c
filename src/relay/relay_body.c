/*
 * relay_body.c - the DATA section of a relayed message, streamed (see
 * relay_body.h).
 *
 * RFCs: RFC 5321 sections 4.5.2 (transparency) and 4.5.3.1.6 (line
 * length), RFC 5322 section 2.2.3 (folding). Untrusted input: message
 * content. Privilege: the relay delivery agent.
 */
#include "relay_body.h"

#include <string.h>

void relay_body_init(struct relay_body *b)
{
	memset(b, 0, sizeof(*b));
	b->in_header = true;
}

void relay_body_feed(struct relay_body *b, const char *in, size_t n, buf_t *out)
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
		buf_append(out, in + i, run);
		b->col += run;
		i += run;
	}
}

void relay_body_end(struct relay_body *b, buf_t *out)
{
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

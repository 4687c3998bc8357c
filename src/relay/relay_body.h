/*
 * relay_body.h - turn queued message content (LF line ends, no dot
 * stuffing; see docs/queue.md) into the bytes of an SMTP DATA section:
 * CR LF line ends, a leading '.' doubled (RFC 5321 section 4.5.2), text
 * lines longer than RELAY_LINE_MAX octets folded so that every line the
 * peer sees fits RFC 5321 section 4.5.3.1.6 (in the header section with
 * CR LF and a space, a header folding of RFC 5322 section 2.2.3; in the
 * body with CR LF), and the final "." line. A fold never cuts a UTF-8
 * character in two: it comes before the character that would not fit.
 *
 * Streaming: no more than the input chunk is ever held (and the up to 3
 * octets of a UTF-8 character a chunk ends in the middle of). Untrusted input:
 * the message content (as accepted from an SMTP client). Privilege: the
 * relay delivery agent.
 */
#ifndef POSTERN_RELAY_BODY_H
#define POSTERN_RELAY_BODY_H

#include <stdbool.h>
#include <stddef.h>

#include "../lib/buf.h"

#define RELAY_LINE_MAX 998 /* octets of a line, CR LF excluded */

struct relay_body {
	size_t col;        /* octets of the current output line so far */
	bool in_header;    /* still in the header section */
	bool folded;       /* some line was folded */
	char pend[3];      /* the start of a UTF-8 character the last chunk ended in */
	size_t pend_len;
};

void relay_body_init(struct relay_body *b);
/* Append the wire form of in[0..n) to out. */
void relay_body_feed(struct relay_body *b, const char *in, size_t n, buf_t *out);
/* End the last line if needed, then ".\r\n". */
void relay_body_end(struct relay_body *b, buf_t *out);

/* Does data hold any byte >= 0x80? */
bool relay_body_is_8bit(const char *data, size_t n);

#endif

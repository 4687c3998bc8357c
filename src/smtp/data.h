/*
 * data.h - streaming decoder of the SMTP message content (RFC 5321
 * section 4.1.1.4 DATA and 4.5.2 transparency; RFC 3030 BDAT chunks).
 *
 * Input: raw bytes from an untrusted client, in pieces of any size. Output:
 * the message with dot-stuffing removed and CRLF turned into LF, appended
 * to a buffer. In DATA mode the end is exactly CRLF "." CRLF: a bare LF or
 * a bare CR never ends the data, and by default their presence condemns the
 * message (SMTP smuggling defence). The decoder also enforces the size,
 * line-length and header-size limits; once a limit is passed it keeps
 * consuming (to find the end) but stops producing output.
 */
#ifndef POSTERN_SMTP_DATA_H
#define POSTERN_SMTP_DATA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../lib/buf.h"

enum data_problem {
	DATA_OK = 0,
	DATA_TOO_BIG = 1 << 0,       /* message_size_limit */
	DATA_BARE_NEWLINE = 1 << 1,  /* bare CR or LF (reject mode) */
	DATA_LINE_TOO_LONG = 1 << 2, /* text_line_limit */
	DATA_HEADER_TOO_BIG = 1 << 3, /* header_size_limit */
	DATA_8BIT_HEADER = 1 << 4,   /* a header byte >= 0x80 (strict_7bit_headers) */
};

struct data_limits {
	uint64_t max_size;
	uint64_t max_line;
	uint64_t max_header;
	bool normalize_bare_newlines; /* treat bare LF as a line end, drop bare CR */
	bool reject_8bit_headers;     /* DATA_8BIT_HEADER for a header byte >= 0x80 */
};

struct data_decoder {
	struct data_limits limits;
	bool dot_mode; /* DATA (true) or BDAT (false) */
	int state;
	bool done;     /* DATA: end marker seen */
	bool in_header;
	uint64_t size;         /* content bytes counted as CRLF lines */
	uint64_t line_len;
	uint64_t header_size;
	unsigned problems;     /* enum data_problem bits */
};

void data_decoder_init(struct data_decoder *d, const struct data_limits *limits,
		       bool dot_mode);
/* Continue a BDAT message with the next chunk (state carries over). */
/*
 * Decode up to len bytes of in, appending content to out. Returns the
 * number of bytes consumed: in DATA mode it stops right after the end
 * marker (d->done is then true) and the rest belongs to the next command.
 */
size_t data_decode(struct data_decoder *d, const char *in, size_t len, buf_t *out);
/* BDAT LAST: finish the message (a trailing bare CR is a problem; a
 * missing final line end is supplied). */
void data_decoder_finish(struct data_decoder *d, buf_t *out);

#endif

/*
 * pop3_message.h - a stored message as POP3 sends it (RFC 1939 section 3):
 * every line ends in CRLF (the Maildir holds LF, or CRLF for files other
 * software wrote), a line starting with "." gets one more, the message
 * ends with a line "." alone; TOP sends the header section, the blank
 * line and the first N lines of the body.
 *
 * The encoder is a streaming state machine: the message is fed in chunks
 * of any size, so a message is never held whole in memory.
 *
 * Untrusted input: the message bytes (anyone who sends mail writes
 * them). Privilege: the pop3 worker (`user`), which reads them from a
 * descriptor the mailbox agent opened.
 */
#ifndef POSTERN_POP3_MESSAGE_H
#define POSTERN_POP3_MESSAGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct pop3_encoder {
	bool line_start; /* the next byte starts a line */
	bool prev_cr;    /* the last byte seen was CR */
	bool in_body;    /* the blank line after the header section was seen */
	bool top;        /* TOP: stop after body_lines lines of the body */
	bool done;       /* TOP has sent all it sends: ignore the rest */
	uint64_t line_len;   /* bytes of the current line so far */
	uint64_t body_lines; /* TOP: body lines still to send */
};

/* Start encoding one message; top false for RETR. */
void pop3_encoder_init(struct pop3_encoder *e, bool top, uint64_t body_lines);

/*
 * Encode in[0..len) into out, which has room for 2 * len bytes (the
 * worst case: every byte a LF or a leading dot). Returns the bytes
 * written; once e->done, the rest of the message is ignored.
 */
size_t pop3_encode(struct pop3_encoder *e, const char *in, size_t len, char *out);

/* The end of the message: CRLF if the last line had none, then ".CRLF".
 * out has room for POP3_ENCODE_END_MAX bytes; returns the bytes written. */
#define POP3_ENCODE_END_MAX 5
size_t pop3_encode_end(struct pop3_encoder *e, char *out);

/* Counting the size as sent (LIST, STAT: RFC 1939 counts CRLF line ends,
 * not the dots added by stuffing nor the final "."). */
struct pop3_sizer {
	uint64_t size;
	bool prev_cr;
	bool line_start;
};
void pop3_sizer_init(struct pop3_sizer *s);
void pop3_sizer_add(struct pop3_sizer *s, const char *in, size_t len);
uint64_t pop3_sizer_end(const struct pop3_sizer *s);

#endif

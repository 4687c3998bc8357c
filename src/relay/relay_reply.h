/*
 * relay_reply.h - the replies of an SMTP server to our client (RFC 5321
 * section 4.2: "CODE SP text" or "CODE-text" continuation lines; RFC
 * 3463 enhanced status codes; RFC 2034 says they lead the text), and the
 * capabilities an EHLO reply announces (RFC 5321 4.1.1.1, RFC 1870 SIZE,
 * RFC 6152 8BITMIME, RFC 2920 PIPELINING, RFC 3207 STARTTLS, RFC 6531
 * SMTPUTF8, RFC 3461 DSN).
 *
 * The parser is fed one line at a time (without its CR LF) and never
 * trusts the peer: a line longer than RELAY_REPLY_LINE_MAX, more than
 * RELAY_REPLY_LINES_MAX lines in one reply, a code that is not three
 * digits from 2xx to 5xx, a code that changes between the lines of one
 * reply, or a separator other than ' ' or '-' is a protocol error. Text
 * kept for the logs and bounces is cleaned (control bytes become '?')
 * and cut at RELAY_REPLY_TEXT_MAX bytes.
 *
 * Untrusted input: every byte the peer sends. Privilege: the relay
 * delivery agent (unprivileged, no spool or mailbox access).
 */
#ifndef POSTERN_RELAY_REPLY_H
#define POSTERN_RELAY_REPLY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../lib/buf.h"

#define RELAY_REPLY_LINE_MAX 2048  /* bytes of one reply line (RFC: 512) */
#define RELAY_REPLY_LINES_MAX 100  /* lines of one reply */
#define RELAY_REPLY_TEXT_MAX 900   /* bytes of text kept for logs and bounces */

enum relay_reply_state {
	RELAY_REPLY_MORE,  /* a continuation line: feed the next */
	RELAY_REPLY_DONE,  /* the last line came: the reply is complete */
	RELAY_REPLY_BAD,   /* a protocol error (*err_r says which) */
};

struct relay_reply {
	int code;            /* 200..599 */
	char status[16];     /* enhanced status code of the first line ("5.1.1"), or "" */
	buf_t text;          /* "CODE text" of each line joined by " / ", bounded */
	buf_t lines;         /* every line's text after the code, '\n'-separated (EHLO) */
	size_t line_count;
};

void relay_reply_init(struct relay_reply *r);
/* Forget the reply, keep the memory (for the next one). */
void relay_reply_reset(struct relay_reply *r);
void relay_reply_free(struct relay_reply *r);

/*
 * Take one line (len bytes, no CR LF). After RELAY_REPLY_DONE the reply
 * is complete in r (reset it before the next). After RELAY_REPLY_BAD
 * *err_r is a static description and r is not usable.
 */
enum relay_reply_state relay_reply_feed(struct relay_reply *r, const char *line, size_t len,
					const char **err_r);

/* The reply as a delivery reason: "5.1.1 text..." with the enhanced code
 * (or a default one from the reply code's class when the peer gave none)
 * followed by what the peer said, e.g. "5.1.1 host mx.example[192.0.2.1]
 * said: 550 5.1.1 no such user". Malloc'ed. */
char *relay_reply_reason(const struct relay_reply *r, const char *peer, const char *during);

/* Capabilities from an EHLO reply. */
#define RELAY_CAP_PIPELINING 0x01
#define RELAY_CAP_SIZE       0x02
#define RELAY_CAP_8BITMIME   0x04
#define RELAY_CAP_STARTTLS   0x08
#define RELAY_CAP_SMTPUTF8   0x10
#define RELAY_CAP_DSN        0x20
#define RELAY_CAP_ENHANCED   0x40

struct relay_caps {
	unsigned flags;
	uint64_t size_limit;  /* SIZE N; 0 = none announced or unlimited */
};

/* Read the keywords of a complete EHLO reply (its first line is the
 * greeting, each other line a keyword and parameters). Unknown keywords
 * are ignored; a SIZE parameter that is not a number is taken as none. */
void relay_caps_parse(const struct relay_reply *r, struct relay_caps *caps_r);

#endif

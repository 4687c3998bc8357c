/*
 * reply.h - an SMTP reply as a value (RFC 5321 section 4.2, RFC 3463
 * enhanced status codes, RFC 2034 section 3 for the replies without one).
 *
 * Command handlers fill a struct smtp_reply instead of writing to the
 * connection; the session formats and sends it, counts errors and acts on
 * its flags. No untrusted input is parsed here; texts may quote client
 * data, which is made printable when formatted.
 */
#ifndef POSTERN_SMTP_REPLY_H
#define POSTERN_SMTP_REPLY_H

#include <stdbool.h>
#include <stddef.h>

#include "../lib/buf.h"
#include "../lib/compat.h"
#include "../policy/policy.h"

enum reply_flags {
	REPLY_ERROR = 1 << 0,    /* the client's fault: counts toward error_limit */
	REPLY_CLOSE = 1 << 1,    /* end the session once it is sent */
	REPLY_STARTTLS = 1 << 2, /* start the TLS handshake once it is sent */
};

#define SMTP_REPLY_TEXT_MAX 1024

struct smtp_reply {
	int code;            /* 0 = nothing to send */
	char status[12];     /* enhanced status code, "" for none */
	char text[SMTP_REPLY_TEXT_MAX]; /* lines separated by '\n' */
	unsigned flags;      /* enum reply_flags */
};

/* Set code, status and text (replacing what was there). */
void reply_set(struct smtp_reply *r, int code, const char *status,
	       const char *fmt, ...) PRINTF_LIKE(4, 5);
/* The same, flagged as the client's error. */
void reply_error(struct smtp_reply *r, int code, const char *status,
		 const char *fmt, ...) PRINTF_LIKE(4, 5);
/* Append one more line of a multi-line reply (after reply_set). */
void reply_add_line(struct smtp_reply *r, const char *fmt, ...) PRINTF_LIKE(2, 3);
/* A refusal from the policy (counts as an error, as every refusal). */
void reply_from_policy(struct smtp_reply *r, const struct policy_reply *p);
/* Append the wire form ("250-a\r\n250 b\r\n") to out; bytes below 0x20
 * (other than the line separators) and 0x7f in the text become '?'. */
void reply_format(const struct smtp_reply *r, buf_t *out);

#endif

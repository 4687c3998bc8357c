/*
 * sasl.h - the client's side of a SASL exchange as the servers read it:
 * strict base64 (RFC 4648 section 4, as RFC 4954 section 4 requires:
 * no white space, padding right, nothing after it) and the PLAIN
 * (RFC 4616) and LOGIN (draft-murchison-sasl-login) messages. Shared by
 * SMTP AUTH (RFC 4954) and POP3 AUTH (RFC 5034).
 *
 * Untrusted input: everything (client bytes), bounded by the caller's
 * line limit and by the fixed sizes below; nothing is allocated. The
 * decoded password is wiped by sasl_credentials_wipe.
 */
#ifndef POSTERN_SASL_H
#define POSTERN_SASL_H

#include <stdbool.h>
#include <stddef.h>

#include "../lib/buf.h"
#include "auth_proto.h"

/* RFC 4954 section 4: an AUTH command line, or a response line, is at
 * most 12288 octets; decoded, that is at most SASL_DECODED_MAX. */
#define SASL_LINE_MAX 12288
#define SASL_DECODED_MAX (SASL_LINE_MAX / 4 * 3)

enum sasl_status {
	SASL_OK,
	SASL_BAD_BASE64,   /* 501 5.5.2 */
	SASL_BAD_MESSAGE,  /* not "[authzid] NUL authcid NUL password": 535 */
	SASL_TOO_LONG,     /* a user or password longer than the auth process takes: 535 */
	SASL_PROXY,        /* an authzid other than the user: 535 (no proxy logins) */
};

struct sasl_credentials {
	char user[AUTH_USER_MAX + 1];
	char password[AUTH_PASSWORD_MAX + 1];
};

/* Decode base64 text of len bytes into out (out_max bytes); false on
 * anything but canonical base64, or if it does not fit. "=" alone is the
 * empty response (RFC 4954 section 4). *out_len_r: decoded bytes. */
bool sasl_base64_decode(const char *text, size_t len, unsigned char *out, size_t out_max,
			size_t *out_len_r);
/* Append the base64 of data to out. */
void sasl_base64_encode(const void *data, size_t len, buf_t *out);

/* A PLAIN response (base64 text): user and password into c. */
enum sasl_status sasl_plain_decode(const char *text, size_t len, struct sasl_credentials *c);
/* A LOGIN response (base64 text): one NUL-free string into out (max
 * bytes without the NUL). */
enum sasl_status sasl_login_decode(const char *text, size_t len, char *out, size_t max);

void sasl_credentials_wipe(struct sasl_credentials *c);

#endif

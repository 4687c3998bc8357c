/*
 * pop3_command.h - the POP3 command line parser (RFC 1939, RFC 2449 CAPA,
 * RFC 2595 STLS, RFC 5034 AUTH) and the SASL PLAIN decoder (RFC 4616).
 *
 * The parser only checks syntax: the keyword, the number and form of the
 * arguments. Whether a command is allowed in the session's state is the
 * session's business (pop3_commands.c).
 *
 * Untrusted input: every byte of the line (a client's, before and after
 * login). Privilege: the pop3 worker (`user`).
 */
#ifndef POSTERN_POP3_COMMAND_H
#define POSTERN_POP3_COMMAND_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../auth/sasl.h"
#include "../lib/buf.h"

/* The longest line a client may send, CRLF not counted: RFC 2449 allows
 * 255 octets for a command, RFC 5034 more for an AUTH response. */
#define POP3_LINE_MAX 2048
/* A user name as typed (USER, AUTH PLAIN). */
#define POP3_USER_MAX 255

enum pop3_verb {
	POP3_CAPA, POP3_USER, POP3_PASS, POP3_AUTH, POP3_STLS, POP3_QUIT,
	POP3_STAT, POP3_LIST, POP3_UIDL, POP3_RETR, POP3_TOP, POP3_DELE,
	POP3_RSET, POP3_NOOP,
};

struct pop3_command {
	enum pop3_verb verb;
	unsigned nums;     /* numeric arguments given (LIST, UIDL: 0 or 1;
			    * RETR, DELE: 1; TOP: 2) */
	uint64_t num[2];
	const char *arg;   /* USER: the name; PASS: the rest of the line;
			    * AUTH: the mechanism (NULL: none given) */
	const char *arg2;  /* AUTH: the initial response, NULL if none */
};

/*
 * Parse line[0..len) (the CRLF removed; line has room for len + 1
 * bytes). The line is changed in place
 * (arguments are NUL-terminated where they end) and *cmd_r points into
 * it. Returns NULL, or a short text for the -ERR reply: an unknown
 * command, missing or extra arguments, a number that is not one.
 */
const char *pop3_command_parse(char *line, size_t len, struct pop3_command *cmd_r);

/*
 * An AUTH PLAIN response (RFC 5034; base64 of RFC 4616's authzid NUL
 * authcid NUL passwd), decoded by src/auth/sasl.h into c. The
 * authentication identity must also be 1 to POP3_USER_MAX bytes without
 * spaces or control characters (as USER's argument); the authorization
 * identity empty or the same (no proxy logins). Returns NULL, or the
 * reason it is refused (c is then wiped). The caller wipes c after use.
 */
const char *pop3_sasl_plain(const char *b64, size_t len, struct sasl_credentials *c);

#endif

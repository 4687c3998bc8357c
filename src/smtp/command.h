/*
 * command.h - SMTP command line parser (RFC 5321 section 4.1, RFC 1869
 * parameters, RFC 3030 BDAT, RFC 6531 SMTPUTF8).
 *
 * Input: one command line from an untrusted client, without its CRLF,
 * already bounded by command_line_limit. The parser copies nothing
 * unbounded: arguments are slices into the line, addresses are parsed into
 * fixed-size structs, at most SMTP_MAX_PARAMS parameters are kept.
 */
#ifndef POSTERN_SMTP_COMMAND_H
#define POSTERN_SMTP_COMMAND_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../lib/buf.h"
#include "../mail/address.h"
#include "../mail/dsn.h"

enum smtp_verb {
	SMTP_UNKNOWN,
	SMTP_HELO,
	SMTP_EHLO,
	SMTP_MAIL,
	SMTP_RCPT,
	SMTP_DATA,
	SMTP_BDAT,
	SMTP_RSET,
	SMTP_NOOP,
	SMTP_QUIT,
	SMTP_HELP,
	SMTP_VRFY,
	SMTP_EXPN,
	SMTP_STARTTLS,
	SMTP_AUTH,
	SMTP_VERB_COUNT
};

#define SMTP_MAX_PARAMS 16

struct smtp_param {
	slice_t keyword; /* "SIZE" */
	slice_t value;   /* "1234", or len 0 without '=' */
	bool has_value;
};

struct smtp_command {
	enum smtp_verb verb;
	slice_t arg;   /* everything after the verb and one space, trimmed */
	/* MAIL / RCPT */
	struct mail_address path;
	struct smtp_param params[SMTP_MAX_PARAMS];
	size_t param_count;
	/* BDAT */
	uint64_t chunk_size;
	bool chunk_last;
	/* AUTH (RFC 4954): the mechanism and the initial response, if any */
	slice_t auth_mechanism;
	slice_t auth_initial;
	bool auth_has_initial;
};

/* How to parse (smtp_command_parse's flags). */
enum smtp_parse_flags {
	/* The transaction was opened with SMTPUTF8: RCPT may carry UTF-8. */
	SMTP_PARSE_RCPT_UTF8 = 1 << 0,
	/* strict_rfc821_envelopes = no: a MAIL or RCPT address may come
	 * without its angle brackets ("MAIL FROM:user@example.com"). */
	SMTP_PARSE_LENIENT_PATHS = 1 << 1,
};

/* The parse result: 0 = ok, otherwise a reply to send as is. */
struct smtp_parse_error {
	int code;
	const char *status;
	const char *text;
};

/*
 * Parse one command line. Returns true and fills *cmd, or false and fills
 * *err_r with the reply (500 unknown command, 501 syntax, 555 parameters,
 * 553 5.6.7 for a UTF-8 address without SMTPUTF8). flags: enum
 * smtp_parse_flags (a bool true is SMTP_PARSE_RCPT_UTF8). With
 * SMTP_PARSE_RCPT_UTF8 the transaction was opened with SMTPUTF8, so RCPT
 * may carry UTF-8; MAIL itself may carry UTF-8 only with its own SMTPUTF8
 * parameter, which is looked for after the whole path has been parsed.
 * Guarantee: a parsed MAIL/RCPT path with path.utf8 set was allowed to
 * be UTF-8 by exactly that rule.
 */
bool smtp_command_parse(const char *line, size_t len, unsigned flags,
			struct smtp_command *cmd, struct smtp_parse_error *err_r);

const char *smtp_verb_name(enum smtp_verb verb);
/* The verb a command line starts with (SMTP_UNKNOWN: none we know). */
enum smtp_verb smtp_verb_of(const char *line, size_t len);

/* The DSN parameters of MAIL (RFC 3461 RET, ENVID). */
struct smtp_mail_dsn {
	enum dsn_ret ret;                /* DSN_RET_UNSPECIFIED if not given */
	char envid[DSN_ENVID_MAX + 1];   /* decoded; "" if not given */
};
/* The DSN parameters of one RCPT (RFC 3461 NOTIFY, ORCPT). */
struct smtp_rcpt_dsn {
	unsigned notify;                 /* DSN_NOTIFY_* bits; 0 if not given */
	char orcpt[DSN_ORCPT_MAX + 1];   /* "type;decoded address"; "" if not given */
};
/*
 * Take one MAIL (resp. RCPT) parameter if it is a DSN one. Returns 1 if
 * it was (stored in *d), 0 if the keyword is not a DSN one (the caller
 * decides), -1 with *err_r filled if it is one but malformed or repeated
 * (501 5.5.4: no value, bad syntax, bad xtext, too long). utf8_allowed:
 * the transaction is SMTPUTF8, so ORCPT=utf-8; may hold raw UTF-8.
 */
int smtp_mail_dsn_param(const struct smtp_param *p, struct smtp_mail_dsn *d,
			struct smtp_parse_error *err_r);
int smtp_rcpt_dsn_param(const struct smtp_param *p, bool utf8_allowed,
			struct smtp_rcpt_dsn *d, struct smtp_parse_error *err_r);

/* Find a parameter by keyword (case-insensitive); NULL if absent. */
const struct smtp_param *smtp_command_param(const struct smtp_command *cmd,
					    const char *keyword);

#endif

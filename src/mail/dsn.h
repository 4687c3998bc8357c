/*
 * dsn.h - the envelope parameters of Delivery Status Notifications: RET
 * and ENVID on MAIL, NOTIFY and ORCPT on RCPT (RFC 3461), xtext, and the
 * "utf-8" address type of RFC 6533.
 *
 * Input: parameter values from an untrusted SMTP client (already split
 * by the command parser, bounded by the command line limit), and the
 * same values read back from a queue file. Every decoder is bounded by
 * its output size and refuses anything RFC 3461/6533 does not allow; it
 * never writes past out[outlen - 1]. Privilege: smtp worker, queue
 * manager, queue commands; all unprivileged.
 */
#ifndef POSTERN_DSN_H
#define POSTERN_DSN_H

#include <stdbool.h>
#include <stddef.h>

#include "../lib/buf.h"

/* NOTIFY= bits (RFC 3461 section 4.1). 0 means the client gave no
 * NOTIFY, which dsn_notify_wants() reads as FAILURE,DELAY. NEVER is
 * never combined with another bit. */
#define DSN_NOTIFY_NEVER 0x01u
#define DSN_NOTIFY_SUCCESS 0x02u
#define DSN_NOTIFY_FAILURE 0x04u
#define DSN_NOTIFY_DELAY 0x08u
#define DSN_NOTIFY_ALL (DSN_NOTIFY_NEVER | DSN_NOTIFY_SUCCESS | DSN_NOTIFY_FAILURE | \
			DSN_NOTIFY_DELAY)

/* RET= (RFC 3461 section 4.3), as stored in the queue file. */
enum dsn_ret {
	DSN_RET_UNSPECIFIED = 0, /* headers only (our choice, as most MTAs) */
	DSN_RET_FULL = 'F',
	DSN_RET_HDRS = 'H',
};

/* ENVID: at most 100 characters once decoded (RFC 3461 section 4.4). */
#define DSN_ENVID_MAX 100
/* ORCPT: the decoded address at most 500 octets (RFC 3461 section 4.2),
 * its address type (an atom such as "rfc822") at most 32 here. */
#define DSN_ORCPT_ADDR_MAX 500
#define DSN_ADDR_TYPE_MAX 32
/* "type;address" as stored: type, ';', address. */
#define DSN_ORCPT_MAX (DSN_ADDR_TYPE_MAX + 1 + DSN_ORCPT_ADDR_MAX)

/* Each parser takes the value after "KEYWORD=" (len bytes, not NUL
 * terminated) and returns false if it is not valid. */
bool dsn_parse_ret(const char *value, size_t len, enum dsn_ret *ret_r);
/* "NEVER" or a comma list of SUCCESS, FAILURE, DELAY (any case, each at
 * most once). */
bool dsn_parse_notify(const char *value, size_t len, unsigned *notify_r);
/* xtext, decoded into out[DSN_ENVID_MAX + 1]: printable ASCII (0x20 to
 * 0x7e) only, at most DSN_ENVID_MAX characters. */
bool dsn_parse_envid(const char *value, size_t len, char *out);
/*
 * "addr-type;value" into out[DSN_ORCPT_MAX + 1] as "addr-type;decoded"
 * with the type lower-cased. Type "utf-8" (RFC 6533): the value is
 * utf-8-addr-xtext (QCHARs and \x{HEX} escapes, decoded to UTF-8) or,
 * only if utf8_allowed (the transaction is SMTPUTF8), utf-8-addr-unitext
 * (raw UTF-8 too); the result must be valid UTF-8 without controls. Any
 * other type: xtext, decoded to printable ASCII.
 */
bool dsn_parse_orcpt(const char *value, size_t len, bool utf8_allowed, char *out);

/* Is a stored NOTIFY value well formed (0, NEVER alone, or a subset of
 * SUCCESS, FAILURE, DELAY)? */
bool dsn_notify_valid(unsigned notify);
/* Does a recipient with this NOTIFY value want a report of kind (one of
 * DSN_NOTIFY_SUCCESS, _FAILURE, _DELAY)? Without NOTIFY: failures and
 * delays yes, successes no (RFC 3461 section 4.1). */
bool dsn_notify_wants(unsigned notify, unsigned kind);
/* Append "SUCCESS,FAILURE" ... or "" (0) to out. */
void dsn_notify_format(unsigned notify, buf_t *out);
/* Is a stored ENVID or ORCPT ("type;address") well formed? */
bool dsn_envid_valid(const char *envid);
bool dsn_orcpt_valid(const char *orcpt);
/* Append s as xtext (RFC 3461 section 4: '+', '=' and bytes outside
 * 0x21..0x7e as "+HH"): for passing ENVID and ORCPT on. */
void dsn_xtext_encode(const char *s, buf_t *out);

#endif

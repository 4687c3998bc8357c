/*
 * passwd_line.h - one line of a Dovecot passwd-file users table:
 *
 *   user@domain:{SCHEME}hash:uid:gid:gecos:home:shell:extra fields
 *
 * The extra fields are space-separated key=value pairs (for instance
 * userdb_quota_rule=*:storage=10M). Trailing fields may be absent.
 * Shared by every reader of users_file (the recipient tables, the auth
 * process, the account commands), so that they agree on the format.
 *
 * Untrusted input: a line of a file the administrator wrote (bounded by
 * the caller). No allocation: the fields point into the line.
 */
#ifndef POSTERN_PASSWD_LINE_H
#define POSTERN_PASSWD_LINE_H

#include <stdbool.h>
#include <stddef.h>

struct passwd_line {
	char *user;     /* never NULL after a successful split */
	char *password; /* "" when empty; never NULL after a successful split */
	char *uid, *gid, *gecos, *home, *shell; /* NULL when absent */
	char *extra;    /* the rest of the line, colons included; NULL if absent */
};

/* Cut line (modified in place) into its fields. False when the line has
 * no ':' after the user name (a password field is required). */
bool passwd_line_split(char *line, struct passwd_line *r);

/* The value of key in an extra-fields string ("k1=v1 k2=v2"), copied into
 * value_r (size value_size, NUL-terminated). A key without '=' has the
 * value "". False when absent, or when the value does not fit. */
bool passwd_line_extra(const char *extra, const char *key, char *value_r, size_t value_size);

#endif

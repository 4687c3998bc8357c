/*
 * auth_users.h - the password table of the auth process: each user of
 * users_file (a Dovecot passwd-file, split by src/mail/passwd_line.h)
 * with its password field. The auth process is the only process that
 * keeps these: the file's text is wiped once read, each field lives in
 * its own allocation and is wiped when the table is freed.
 *
 * Lines the supervisor's recipient tables would refuse never reach here
 * (it refuses to start or to reload on them); lines whose scheme cannot
 * be checked are kept, logged as FILE:LINE warnings, and never match.
 *
 * Untrusted input: the users file (administrator's), bounded per line
 * and in total. Privilege: the auth process (`user`), reading a
 * descriptor the root supervisor opened.
 */
#ifndef POSTERN_AUTH_USERS_H
#define POSTERN_AUTH_USERS_H

#include <stddef.h>

struct auth_users;

/* Read the users file from fd (from its current offset to its end; fd is
 * not closed). path names it in messages. NULL with a message logged if
 * it cannot be read. fd < 0: an empty table (no users_file). */
struct auth_users *auth_users_load_fd(int fd, const char *path);
/* The same from text (tests, the fuzzer); text is modified and wiped. */
struct auth_users *auth_users_parse(char *text, size_t len, const char *path);
void auth_users_free(struct auth_users **u);

/* The password field of user (lower-case user@domain), or NULL. */
const char *auth_users_password(const struct auth_users *u, const char *user);
size_t auth_users_count(const struct auth_users *u);
/* The password field an unknown user's login (or a locked account's) is
 * checked against, so that it costs what most users' logins cost: a
 * field of the cost class (auth_hash_cost_class) most of the table's
 * crypt hashes share; NULL when {PLAIN} fields (checked at once) are at
 * least as many, or the table has none that costs a hash. Owned by the table. */
const char *auth_users_timing_field(const struct auth_users *u);

#endif

/*
 * account_users.h - users_file as `postern user` edits it: the Dovecot
 * passwd-file lines (split by mail/passwd_line.h, the one splitter every
 * reader uses), each user found by address, lines built and changed
 * without touching the others (account_file.h).
 *
 * Untrusted input: users_file (administrator-written; bounded lines,
 * problems reported as "FILE:LINE: message"). Privilege: the invoking
 * user. The file holds password hashes: it is read as a secret file and
 * every copy of a line is wiped.
 */
#ifndef POSTERN_ACCOUNT_USERS_H
#define POSTERN_ACCOUNT_USERS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "account_file.h"

#define ACCOUNT_USERS_LINE_MAX 65536
#define ACCOUNT_USERS_FILE_MAX (256ULL * 1024 * 1024)
/* The extra field of a user's storage quota, as Dovecot's quota plugin reads it. */
#define ACCOUNT_QUOTA_FIELD "userdb_quota_rule"
#define ACCOUNT_QUOTA_PREFIX "*:storage="

struct account_users {
	struct account_file file;
	char **addresses; /* by line: the lower-case user of an entry line, else NULL */
};

/* Read path (locked when lock: to edit it); every line that is not a comment or blank must be
 * a passwd-file entry with a valid, unique address. -1 with the problems
 * printed ("FILE:LINE: message"). */
int account_users_open(struct account_users *u, const char *path, bool lock, FILE *errors);
void account_users_close(struct account_users *u);

/* The line index of address (lower-case), or -1. */
long account_users_find(const struct account_users *u, const char *address);
/* 1-based line number of index i, for messages. */
static inline unsigned account_users_lineno(size_t i)
{
	return (unsigned)(i + 1);
}

/* A new entry line "address:hash::::::extra" (extra "" for none; malloc'ed). */
char *account_users_entry(const char *address, const char *hash, const char *extra);
/* Entry line i with its password field replaced by hash (malloc'ed, to
 * wipe); the other fields as they were. */
char *account_users_with_password(const struct account_users *u, size_t i, const char *hash);
/* Entry line i with its userdb_quota_rule extra field set to
 * "*:storage=SIZE", or removed when size is NULL (malloc'ed, to wipe). */
char *account_users_with_quota(const struct account_users *u, size_t i, const char *size);

/* What `postern user show` prints of an entry, never its hash. */
struct account_user_info {
	const char *scheme;  /* account_password_scheme() */
	char quota[128];     /* the value after "*:storage=", "" if none */
	char rule[128];      /* the whole userdb_quota_rule value, "" if none */
	char *uid, *gid, *home; /* malloc'ed copies; NULL when empty or absent */
	char *extra;         /* malloc'ed copy of the extra fields without the quota rule; NULL if none */
};
void account_users_info(const struct account_users *u, size_t i, struct account_user_info *r);
void account_user_info_free(struct account_user_info *r);

/* Is s an address users_file takes: config_valid_address and no upper case? */
bool account_users_valid_address(const char *s);

#endif

/*
 * recipients.h - the local recipient tables: virtual users (Dovecot
 * passwd-file lines "user@domain:{SCHEME}hash:uid:gid:gecos:home:shell:extra")
 * and aliases ("postmaster@example.test: admin@example.test, other@x").
 *
 * Both files are read by the supervisor (they may hold password hashes
 * the workers must not read) and inherited by the roles after fork.
 * Keys are matched case-insensitively on the domain and exactly, after
 * ASCII lower-casing, on the local part.
 */
#ifndef POSTERN_RECIPIENTS_H
#define POSTERN_RECIPIENTS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include "../lib/strutil.h"

struct recipient_tables;

/* Load users_file and aliases_file (either may be "" for none). Problems
 * are printed as "FILE:LINE: message" to errors; returns NULL if any. */
struct recipient_tables *recipients_load(const char *users_file,
					 const char *aliases_file,
					 FILE *errors);
void recipients_free(struct recipient_tables **t);

/* Is "local@domain" (lower-case) a user in users_file? */
bool recipients_is_user(const struct recipient_tables *t, const char *address);
/* Targets of an alias, or NULL if address is not an alias. */
const strlist_t *recipients_alias(const struct recipient_tables *t,
				  const char *address);
size_t recipients_user_count(const struct recipient_tables *t);
size_t recipients_alias_count(const struct recipient_tables *t);

#define ALIAS_MAX_DEPTH 10
#define ALIAS_MAX_TARGETS 1000

enum expand_status { EXPAND_OK, EXPAND_LOOP, EXPAND_TOO_MANY };

/*
 * Expand address through aliases recursively into final targets (users
 * or non-local addresses), de-duplicated, appended to out. An alias that
 * lists itself among its targets delivers to itself as a user (the
 * "postmaster: postmaster, admin" idiom). A cycle deeper than
 * ALIAS_MAX_DEPTH is EXPAND_LOOP; more than ALIAS_MAX_TARGETS targets is
 * EXPAND_TOO_MANY.
 */
enum expand_status recipients_expand(const struct recipient_tables *t,
				     const char *address, strlist_t *out);

#endif

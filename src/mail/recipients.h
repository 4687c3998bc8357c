/*
 * recipients.h - the local recipient tables: virtual users (Dovecot
 * passwd-file lines "user@domain:{SCHEME}hash:uid:gid:gecos:home:shell:extra")
 * and aliases ("postmaster@example.test: admin@example.test, other@x").
 *
 * Both files are read by the supervisor (the users file holds password
 * hashes the workers must not read) and the tables are inherited by the
 * roles after fork. The tables hold the user addresses (and each one's
 * quota, from the extra field userdb_quota_rule) only: the
 * password field is checked for presence and never kept, and the text
 * read from the users file is wiped before it is freed, so no role's
 * memory holds a hash. The uid and gid fields are honoured or refused:
 * empty, or naming the account every mailbox is written as (mail_owner),
 * anything else is a FILE:LINE error.
 * Keys are matched case-insensitively on the domain and exactly, after
 * ASCII lower-casing, on the local part.
 * The local domains (domains_file and local_domains, domains.h) are
 * attached to the tables: whether a domain is local, its default quota
 * and its catch-all address.
 */
#ifndef POSTERN_RECIPIENTS_H
#define POSTERN_RECIPIENTS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

#include "../lib/buf.h"
#include "../lib/strutil.h"

struct recipient_tables;
struct domain_table;

/* The account postern writes every mailbox as: mail_owner when started
 * as root, the invoking user otherwise. */
struct recipients_owner {
	const char *label; /* for messages: "mail_owner vmail" */
	uid_t uid;
	gid_t gid;
};

/* Load users_file and aliases_file (either may be "" for none). A users
 * line's uid field (number or user name) and gid field (number or group
 * name) must be empty or equal owner's. owner NULL: the owner could not
 * be resolved, a problem the caller reports; the fields are then not
 * compared. Problems are printed as "FILE:LINE: message" to errors (a file
 * that cannot be read as "users_file FILE: cannot read: why", or
 * aliases_file); returns NULL if any. */
struct recipient_tables *recipients_load(const char *users_file,
					 const char *aliases_file,
					 const struct recipients_owner *owner,
					 FILE *errors);
/* recipients_load with users_file's contents given as users_text rather
 * than read: the very checks the server applies, for the file a command
 * (postern user) is about to write. Problems are still reported as
 * "users_file:LINE: message". users_text is parsed in place (its lines
 * are cut with NUL bytes); the caller wipes and frees it. */
struct recipient_tables *recipients_load_users_text(const char *users_file, buf_t *users_text,
						    const char *aliases_file,
						    const struct recipients_owner *owner,
						    FILE *errors);
void recipients_free(struct recipient_tables **t);

/* Is "local@domain" (lower-case) a user in users_file? */
bool recipients_is_user(const struct recipient_tables *t, const char *address);
/*
 * The storage quota of user address in bytes, 0 = unlimited: the user's
 * own rule (users_file extra field userdb_quota_rule=*:storage=10M, see
 * quota_rule.h; "0" there means unlimited whatever the defaults), else
 * the default of its domain (domains_file), else global_default
 * (mailbox_quota).
 */
uint64_t recipients_quota(const struct recipient_tables *t, const char *address,
			  uint64_t global_default);
/* The most messages user address may keep (userdb_quota_rule's
 * messages=), 0 = no limit; only a user's own rule sets one. */
uint64_t recipients_quota_messages(const struct recipient_tables *t, const char *address);
/* How many users have their own userdb_quota_rule. */
size_t recipients_quota_rule_count(const struct recipient_tables *t);
/* Targets of an alias, or NULL if address is not an alias. */
const strlist_t *recipients_alias(const struct recipient_tables *t,
				  const char *address);
size_t recipients_user_count(const struct recipient_tables *t);

/*
 * The local domains (domains.h), attached after loading: t takes
 * ownership of domains (NULL: none). Tables without domains know no
 * local domain, no domain quota and no catch-all. The three lookups
 * below are defined in domains.c.
 */
void recipients_set_domains(struct recipient_tables *t, struct domain_table *domains);
const struct domain_table *recipients_domains(const struct recipient_tables *t);
/* Is domain (any case) one of the local domains? */
bool recipients_domain_is_local(const struct recipient_tables *t, const char *domain);
/* The default storage quota of domain's users in bytes; 0 = none. */
uint64_t recipients_domain_quota(const struct recipient_tables *t, const char *domain);
/* Has any local domain a default quota? */
bool recipients_any_domain_quota(const struct recipient_tables *t);
/* Where the mail of "local@domain" (lower-case) goes when it is neither a
 * user nor an alias: its domain's catch_all address; NULL when it is a
 * user or an alias, its domain has no catch-all, or it is the catch-all
 * address itself. recipients_expand follows it like an alias. */
const char *recipients_catch_all(const struct recipient_tables *t, const char *address);
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

/*
 * domains.h - the local domains: those of local_domains in postern.conf
 * and those of domains_file, one per line with optional settings:
 *
 *   # domain      settings
 *   example.com
 *   example.org   quota=1G  catch_all=info@example.org
 *
 * quota=SIZE is the default storage quota of the domain's users (bytes,
 * or with k, M, G; 0 = none) for a user without a quota of their own;
 * catch_all=ADDRESS receives the mail of every address of the domain that
 * is neither a user nor an alias. A domain listed in both places is one
 * local domain (the file's settings apply).
 *
 * The table is read by the supervisor (with the users and aliases) and
 * inherited by the roles; `postern domain` rewrites the file
 * (src/account/). Untrusted input: an administrator's file, every line
 * bounded, every problem reported as "FILE:LINE: message".
 */
#ifndef POSTERN_DOMAINS_H
#define POSTERN_DOMAINS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "../lib/strutil.h"

struct config;

#define DOMAINS_LINE_MAX 4096
#define DOMAINS_FILE_MAX (64ULL * 1024 * 1024)

struct domain_entry {
	char *name;      /* lower-case */
	uint64_t quota;  /* bytes; 0 = no default quota */
	char *catch_all; /* lower-case address, or NULL */
	unsigned line;   /* its line in domains_file; 0 = only in local_domains */
};

struct domain_table;

/* Parse one domains_file line (modified in place; no comment, not blank)
 * into *entry_r (strings malloc'ed: free with domains_entry_clear). NULL
 * on success, else a message saying what is wrong with the line. */
const char *domains_parse_line(char *line, struct domain_entry *entry_r);
void domains_entry_clear(struct domain_entry *e);
/* Format an entry as a domains_file line (malloc'ed, no newline). */
char *domains_format_line(const struct domain_entry *e);

/* Read path ("" = no file) and add config_domains (may be NULL) without
 * settings. Problems are printed to errors as "FILE:LINE: message" (a
 * file that cannot be read as "domains_file FILE: cannot read: why");
 * NULL if any. */
struct domain_table *domains_load(const char *path, const strlist_t *config_domains,
				  FILE *errors);
void domains_free(struct domain_table **t);
/* domains_load of cfg's domains_file and local_domains; the file's
 * domains are then added to cfg->local_domains (domains_merge_into). A
 * file's domain that is also in relay_domains is a FILE:LINE problem.
 * NULL if there was any problem (printed to errors). */
struct domain_table *domains_load_config(struct config *cfg, FILE *errors);

/* The entry of domain (any case), or NULL if it is not local. */
const struct domain_entry *domains_find(const struct domain_table *t, const char *domain);
size_t domains_count(const struct domain_table *t);
/* The entries sorted by name (malloc'ed array of count pointers). */
const struct domain_entry **domains_sorted(const struct domain_table *t, size_t *count_r);
/* Add every domain of t missing from list (local_domains), so that the
 * code that asks the configuration whether a domain is local sees the
 * file's domains too. */
void domains_merge_into(const struct domain_table *t, strlist_t *list);

/* A warning ("warning: FILE:LINE: ...") for each catch_all address in a
 * local domain that is neither a user nor an alias of t: its mail would
 * bounce. Not an error: removing the user must not stop a reload. */
struct recipient_tables;
void domains_warn_catch_all(const struct recipient_tables *t, const char *path, FILE *out);

/* bytes as the shortest exact "N", "NK", "NM" or "NG" (what
 * str_parse_size and Dovecot's quota rules read back) into buf_r. */
void domains_format_size(uint64_t bytes, char *buf_r, size_t size);

#endif

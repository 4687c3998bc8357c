/*
 * restrictions_int.h - what the restriction engine (restrictions.c:
 * compiling the lists, evaluating them) shares with the built-in
 * restrictions (restrictions_builtin.c). Not for use outside
 * src/policy/.
 */
#ifndef POSTERN_RESTRICTIONS_INT_H
#define POSTERN_RESTRICTIONS_INT_H

#include <stddef.h>

#include "restrictions.h"

#define RESTRICTIONS_MAX_ITEMS 100 /* per list */

/* One restriction of a compiled list. */
struct restriction {
	const struct restriction_type *type;
	char *arg;        /* the word after the name, or NULL */
	struct map *map;  /* RESTRICTION_MAP_ARG: shared, owned by the set */
};

struct restriction_list {
	struct restriction *items;
	size_t count;
};

struct restrictions {
	struct restriction_list lists[RLIST_COUNT];
	struct map **maps;
	size_t map_count;
};

/* The built-in vocabulary, NULL-terminated, and the types the engine
 * itself knows: warn_if_reject changes the meaning of the next one; the
 * defaults of recipient_restrictions. */
extern const struct restriction_type *const restriction_builtins[];
extern const struct restriction_type restriction_warn_if_reject;
extern const struct restriction_type restriction_permit_mynetworks;
extern const struct restriction_type restriction_permit_auth;
extern const struct restriction_type restriction_reject_unauth_destination;
extern const struct restriction_type restriction_defer_unauth_destination;
extern const struct restriction_type restriction_reject;
extern const struct restriction_type restriction_defer;

/* What the client is told a refusal is about, for the list being
 * evaluated: "<192.0.2.1>: Client address refused" (the text's start). */
void restriction_subject(const struct restriction_ctx *ctx, enum restriction_list_id about,
			 char *out, size_t outlen);

/* Log a WARN result of a map: "warn: RCPT client=... restriction=...
 * list=... map=... key=...: text". */
void restriction_log_warn(const struct restriction_ctx *ctx, const char *text);

#endif

/*
 * limits_int.h - what limits.c, ratelimit.c and greylist.c share (see
 * limits.h). Not for use outside src/policy/.
 */
#ifndef POSTERN_LIMITS_INT_H
#define POSTERN_LIMITS_INT_H

#include <time.h>

#include "limits.h"

/* Whose count an item is. */
enum limits_entity { ENTITY_CLIENT, ENTITY_SENDER, ENTITY_USER, ENTITY_SITE };

struct limits {
	const struct config *cfg;
	struct limits_backend *b;
	limits_notice_fn *notice;
	void *notice_arg;
	time_t fail_open_warned;
};

/* The items of one request, with what the answer is read against. */
struct limits_items {
	size_t n;
	struct anvil_item items[ANVIL_ITEMS_MAX];
	enum limits_entity entity[ANVIL_ITEMS_MAX];
	const char *shown[ANVIL_ITEMS_MAX]; /* the entity as the log shows it */
	char names[ANVIL_ITEMS_MAX][40];    /* its configuration key, "sender_message_rate" */
};

/* Add an item: entity's key, metric, cost, the levels of rate (NULL:
 * just a look at the block map) or of a site-wide panic (panic != 0). */
void limits_add_item(const struct limits *l, struct limits_items *it, enum limits_entity e,
		     const char *key, const char *shown, enum anvil_metric metric, uint32_t cost,
		     const struct config_rate *rate, uint64_t panic, const char *name);

/* Log and tell the administrator what the results say (a warn level
 * passed, a block, a panic). */
void limits_report(const struct limits *l, const struct limits_items *it,
		   const struct anvil_result *results, size_t n);

/* The first refused item's index, or -1. */
int limits_refused(const struct anvil_result *results, size_t n);

/* The backend did not answer: say so (at most every few seconds). */
void limits_fail_open(struct limits *l, const char *what);

/* Is the client of sa in list? */
bool limits_client_listed(const cidr_list_t *list, const struct sockaddr *sa);

/* The checks (ratelimit.c, greylist.c). */
void ratelimit_register(struct limits *l, struct policy_env *env);
void greylist_register(struct limits *l, struct policy_env *env);

#endif

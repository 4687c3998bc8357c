/*
 * limits.h - concurrency, rates and greylisting across all smtp workers,
 * as the smtp worker sees them: a backend that counts for every worker
 * (the anvil today, anvil_client.c; a Redis backend for several nodes
 * would implement the same operations), the admission of a new session,
 * and the policy checks of MAIL and RCPT.
 *
 * Admission (the session calls it before the connect checks): the
 * session is counted with its client network (client_ipv4_prefix,
 * client_ipv6_prefix) and its client's connection rate; beyond
 * connection_limit or client_connection_limit it gets 421 4.7.0, a client
 * over client_connection_rate_block or blocked gets 421 4.7.1. When the
 * session ends it is released (limits_release).
 *
 * Rates (checks at MAIL and RCPT, ahead of every other check of the
 * stage, so that no permit_* can skip them): messages and recipients per
 * rate_window of the client network, of the envelope sender and of the
 * authenticated user, each with a warn level (a log line and a notice to
 * notify_admin) and a block level (451 4.7.1, and the client, sender or
 * user is blocked for rate_block_time), and site-wide panic levels for all
 * clients together (451 4.7.1 while the site is over it; a log line and a
 * notice when it starts). Clients in limits_ignore_networks and senders in
 * limits_ignore_senders are never limited.
 *
 * Greylisting (a check at RCPT, after the others: restrictions that
 * accept or refuse come first): the triplet of client network
 * (greylist_ipv4_prefix, greylist_ipv6_prefix), sender and recipient;
 * see anvil_table.h for the rules. 451 4.7.1 until it passes.
 *
 * A backend that cannot answer (the anvil restarting, too slow) never
 * stops mail: the session goes on as if no limit applied, and the log
 * says so (fail open).
 *
 * Untrusted input: client addresses, senders, recipients (copied into
 * bounded keys). Privilege: unprivileged smtp worker, on its loop.
 */
#ifndef POSTERN_LIMITS_H
#define POSTERN_LIMITS_H

#include <event2/event.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include "../lib/config.h"
#include "anvil_proto.h"
#include "policy.h"

/* ---- the backend ---------------------------------------------------------------- */

struct limits_backend;
struct limits_req;

/* The answer to a request (OPENED, RATED or GREYED), or NULL when the
 * backend could not get one: fail open. Valid during the call only. */
typedef void limits_done_fn(void *arg, const struct anvil_msg *answer);

struct limits_backend_ops {
	/* Send req (OPEN, RATE or GREY; the backend sets seq). done(arg,
	 * answer) follows from the event loop (never from inside ask) unless
	 * the request is cancelled first. */
	void (*ask)(struct limits_backend *b, struct anvil_msg *req, limits_done_fn *done,
		    void *arg, struct limits_req **handle_r);
	/* Forget a request: done is never called. *handle becomes NULL. */
	void (*cancel)(struct limits_backend *b, struct limits_req **handle);
	/* A session OPENed earlier has ended. */
	void (*close_session)(struct limits_backend *b, uint64_t session);
	void (*free)(struct limits_backend *b);
};

struct limits_backend {
	const struct limits_backend_ops *ops;
};

/* The anvil's client (anvil_client.c), connecting to socket_path. */
struct limits_backend *anvil_client_new(struct event_base *base, const char *socket_path);

/* ---- the policy ----------------------------------------------------------------- */

struct limits;

/* What a notice to the administrator says (see limits_new). */
typedef void limits_notice_fn(void *arg, const char *subject, const char *body);

/* NULL when nothing is configured that needs counting across workers (no
 * limit, no rate, no greylisting): then nothing is asked. Takes backend
 * (freed with the limits; it may be NULL only when NULL is returned).
 * notice (may be NULL) tells the administrator of a warn level passed, a
 * block, a panic. */
struct limits *limits_new(const struct config *cfg, struct limits_backend *backend,
			  limits_notice_fn *notice, void *notice_arg);
void limits_free(struct limits **l);
/* Does cfg configure anything limits_new would count? */
bool limits_wanted(const struct config *cfg);

/* The admission's verdict. */
struct limits_verdict {
	bool refuse;
	int code;          /* 421 */
	char status[12];   /* "4.7.0", "4.7.1" */
	char text[256];
	char reason[32];   /* for the log: "connection_limit", ... */
};
typedef void limits_admit_fn(void *arg, const struct limits_verdict *v);
struct limits_admission;

/*
 * A session starts (l may be NULL: nothing happens, false). Returns false
 * when there is nothing to wait for (admitted); true when done(arg, v)
 * follows from the loop, unless limits_admit_cancel is called first. The
 * session is counted from now until limits_release, whatever the verdict.
 */
bool limits_admit(struct limits *l, uint64_t session, const struct sockaddr *client,
		  limits_admit_fn *done, void *arg, struct limits_admission **handle_r);
/* Forget a pending admission: done is never called. NULL is fine. */
void limits_admit_cancel(struct limits_admission **handle);
/* The session has ended (l may be NULL). */
void limits_release(struct limits *l, uint64_t session);

/* Add the rate checks at MAIL and RCPT (first in their lists) and the
 * greylisting check at RCPT (last) to env. */
void limits_register(struct limits *l, struct policy_env *env);

/* ---- keys (for tests) ------------------------------------------------------------- */

/* "192.0.2.0/24" or "2001:db8::/64": the network of sa. */
void limits_network_key(const struct sockaddr *sa, unsigned v4_prefix, unsigned v6_prefix,
			char *out, size_t outlen);
/* The sender as greylisting keys it: lower-cased, a BATV tag
 * ("prvs=tag=user@d") removed, runs of digits in the local part made one
 * '#' (postgrey's normalisation: per-message addresses become one). */
void limits_grey_sender(const char *sender, char *out, size_t outlen);
/* Does address (user@domain) match an entry of list ("user@domain",
 * "@domain", "domain"; lower-case)? */
bool limits_address_listed(const strlist_t *list, const char *address);

#endif

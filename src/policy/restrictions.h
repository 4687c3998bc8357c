/*
 * restrictions.h - the SMTP restriction lists of postern.conf, in the
 * vocabulary Postfix administrators know: client_restrictions,
 * helo_restrictions, sender_restrictions, recipient_restrictions and
 * data_restrictions, each a list of restrictions evaluated in order, the
 * first decisive one winning (docs/postern.conf.5, RESTRICTIONS).
 *
 * When: the first four lists are evaluated at each RCPT TO, one after
 * the other (Postfix's smtpd_delay_reject = yes, its default): a client
 * refused for its address, its HELO name or its sender hears it as the
 * answer to RCPT, which every client handles, and the log has the sender
 * and the recipient. data_restrictions are evaluated at DATA (and at the
 * first BDAT). "permit" (and OK in a map) ends its own list only; the
 * next list is still evaluated. After the recipient list, a recipient in
 * a local domain must exist and no local part may route elsewhere (the
 * unlisted-recipient check, always on, as Postfix's
 * smtpd_reject_unlisted_recipient = yes).
 *
 * A restriction answers at once or, like a policy check (policy.h), says
 * POLICY_PENDING and finishes later from the event loop through
 * restriction_finish(): the DNS restrictions plug in that way (see
 * restrictions_provide). Until the DNS layer provides them, naming
 * reject_rbl_client, reject_rhsbl_sender, reject_unknown_client,
 * reject_unknown_sender_domain or reject_unknown_recipient_domain is a
 * configuration error ("needs dns: not available yet").
 *
 * Runs in the smtp worker (evaluation; maps reloaded when their files
 * change), the supervisor and check-config (compilation, map loading).
 * Requests hold untrusted client data.
 */
#ifndef POSTERN_RESTRICTIONS_H
#define POSTERN_RESTRICTIONS_H

#include <stdbool.h>
#include <stdio.h>

#include "../lib/compat.h"
#include "../map/map.h"
#include "policy.h"

enum restriction_list_id {
	RLIST_CLIENT,
	RLIST_HELO,
	RLIST_SENDER,
	RLIST_RECIPIENT,
	RLIST_DATA,
	RLIST_COUNT
};

struct restrictions; /* the compiled lists of one configuration, with their maps */

/* Compile cfg's lists and open the maps they name. Problems are printed
 * as "FILE:LINE: message" (the configuration's or a map's); returns NULL
 * if there was any. */
struct restrictions *restrictions_load(const struct config *cfg, FILE *errors);
void restrictions_free(struct restrictions **r);
/* Maps opened (each named once, whatever the number of restrictions
 * naming it). */
size_t restrictions_map_count(const struct restrictions *r);

/* The built-in lists, for an environment given none: the default
 * recipient_restrictions (permit_mynetworks, permit_auth,
 * reject_unauth_destination), the other lists empty. */
const struct restrictions *restrictions_default(void);

/* The policy checks that evaluate env->restrictions (the defaults when
 * NULL): "restrictions" at RCPT, "data_restrictions" at DATA.
 * policy_env_init() adds them. */
enum policy_verdict restrictions_check_rcpt(struct policy_call *call, void *arg);
enum policy_verdict restrictions_check_data(struct policy_call *call, void *arg);
void restrictions_cancel(struct policy_call *call, void *arg);

/* ---- restrictions provided by other modules (the DNS layer) -------------- */

/* One restriction being evaluated. */
struct restriction_ctx;

enum restriction_arg_kind {
	RESTRICTION_NO_ARG,
	RESTRICTION_WORD_ARG, /* the next word of the list: "zen.example.org=127.0.0.2" */
	RESTRICTION_MAP_ARG,  /* the next word names a map, opened as an access map */
};

/* What a restriction needs to be evaluated: where it may stand. */
enum restriction_needs {
	RESTRICTION_NEEDS_NOTHING = 0,
	RESTRICTION_NEEDS_RCPT = 1 << 0, /* a recipient: not in data_restrictions */
	RESTRICTION_NEEDS_DNS = 1 << 1,  /* the worker's resolver (policy_env.dns) */
};

/*
 * Evaluate: DUNNO (no opinion), ACCEPT (permit: the rest of this list is
 * skipped), REJECT or TEMPFAIL (with restriction_reply), HOLD or DISCARD
 * (with restriction_reply: its text is logged), or PENDING after
 * arranging to call restriction_finish() later from the event loop
 * (never from inside run). A pending restriction with resources needs
 * cancel, called if the session goes away first.
 */
typedef enum policy_verdict restriction_run_fn(struct restriction_ctx *ctx);
typedef void restriction_cancel_fn(struct restriction_ctx *ctx);
/* A RESTRICTION_WORD_ARG's argument at configuration time: NULL if fine,
 * else what is wrong. NULL function: any word. */
typedef const char *restriction_arg_check_fn(const char *arg);

struct restriction_type {
	const char *name;
	enum restriction_arg_kind arg;
	unsigned needs;                  /* enum restriction_needs */
	restriction_run_fn *run;         /* NULL: named but not available */
	restriction_cancel_fn *cancel;
	restriction_arg_check_fn *check_arg;
	const char *unavailable;         /* run == NULL: why, e.g. "needs dns: not available yet" */
};

/* Make a restriction available (replacing a placeholder of the same
 * name) before restrictions_load(); the type must outlive every
 * compiled set. Returns false if the built-in vocabulary already has a
 * working restriction of that name. */
bool restrictions_provide(const struct restriction_type *type);

/* Provide the DNS restrictions (restrictions_dns.c): reject_rbl_client,
 * reject_rhsbl_sender, reject_unknown_client(_hostname),
 * reject_unknown_sender_domain, reject_unknown_recipient_domain. Once
 * per process, before the first restrictions_load(). */
void restrictions_dns_provide(void);
/* Does any list of r name a restriction that needs DNS? (The worker then
 * makes a resolver; check-config checks dns_servers.) */
bool restrictions_need_dns(const struct restrictions *r);

const struct policy_request *restriction_request(const struct restriction_ctx *ctx);
const struct policy_env *restriction_env(const struct restriction_ctx *ctx);
/* The argument word (RESTRICTION_WORD_ARG), or NULL. */
const char *restriction_arg(const struct restriction_ctx *ctx);
/* The map (RESTRICTION_MAP_ARG), or NULL. */
struct map *restriction_map(const struct restriction_ctx *ctx);
/* Which list is being evaluated, and its configuration key
 * ("client_restrictions"). */
enum restriction_list_id restriction_list(const struct restriction_ctx *ctx);
const char *restriction_list_name(enum restriction_list_id id);
/* Fill the reply of a REJECT, TEMPFAIL, HOLD or DISCARD: code and
 * enhanced status (ignored for HOLD and DISCARD), a short reason for the
 * log ("rbl", ...) and the text the client is told. */
void restriction_reply(struct restriction_ctx *ctx, int code, const char *status,
		       const char *reason, const char *fmt, ...) PRINTF_LIKE(5, 6);
/* More for the log line of the verdict: "key=... map=...". */
void restriction_detail(struct restriction_ctx *ctx, const char *fmt, ...) PRINTF_LIKE(2, 3);
/* A pending restriction's own state. */
void restriction_set_state(struct restriction_ctx *ctx, void *state);
void *restriction_state(const struct restriction_ctx *ctx);
/* A pending restriction is done (from the event loop only); ctx must not
 * be touched afterwards. */
void restriction_finish(struct restriction_ctx *ctx, enum policy_verdict verdict);

#endif

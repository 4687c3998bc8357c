/*
 * greylist.c - greylisting at RCPT (see limits.h and, for the rules,
 * anvil_table.h): the triplet of the client's network, the sender (as
 * postgrey normalises it) and the recipient goes to the anvil, which
 * answers whether it may pass; until it may, 451 4.7.1. A real MTA
 * retries from its queue and passes; most spam software does not retry.
 * Clients in greylist_ignore_networks and recipients in
 * greylist_ignore_recipients are never greylisted; neither is anything a
 * check before this one accepted (permit_mynetworks, permit_auth): the
 * check is the last of the RCPT list.
 *
 * Untrusted input: the envelope (copied into bounded keys). Privilege:
 * unprivileged smtp worker, on its loop.
 */
#include "limits_int.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../lib/log.h"
#include "../lib/xalloc.h"

struct grey_call {
	struct limits *l;
	struct policy_call *call;
	struct limits_req *req;
	char from[ANVIL_KEY_MAX + 1], to[ANVIL_KEY_MAX + 1], client[80];
};

static const char *const outcome_names[ANVIL_GREY_OUTCOMES] = { "new", "early", "passed",
								 "allowed" };

static void grey_answer(void *arg, const struct anvil_msg *m)
{
	struct grey_call *gc = arg;
	struct policy_call *call = gc->call;
	const struct policy_request *req = policy_call_request(call);
	enum policy_verdict v = POLICY_DUNNO;
	gc->req = NULL;
	if (m == NULL) {
		limits_fail_open(gc->l, "greylisting");
	} else if (m->outcome == ANVIL_GREY_NEW || m->outcome == ANVIL_GREY_EARLY) {
		log_info("%s%sgreylist: client=%s network=%s from=<%s> to=<%s> %s, try again in "
			 "%" PRIu32 "s", req->queue_id, req->queue_id[0] != '\0' ? ": " : "",
			 req->client_addr, gc->client, gc->from, gc->to, outcome_names[m->outcome],
			 m->wait);
		policy_call_set(call, 451, "4.7.1", "greylisted",
				"Greylisted: this is normal for a first message, please try again "
				"in %" PRIu32 " seconds", m->wait);
		v = POLICY_TEMPFAIL;
	} else {
		log_debug("%s: greylist: client=%s from=<%s> to=<%s> %s (client passes: %" PRIu32 ")",
			  req->queue_id, req->client_addr, gc->from, gc->to,
			  outcome_names[m->outcome], m->client_passes);
	}
	policy_call_set_state(call, NULL);
	free(gc);
	policy_call_finish(call, v);
}

static enum policy_verdict grey_check(struct policy_call *call, void *arg)
{
	struct limits *l = arg;
	const struct config *cfg = l->cfg;
	const struct policy_request *req = policy_call_request(call);
	const struct sockaddr *sa = (const struct sockaddr *)&req->client;
	if (!req->has_rcpt || limits_client_listed(&cfg->greylist_ignore_networks, sa))
		return POLICY_DUNNO;
	struct grey_call *gc = xcalloc(1, sizeof(*gc));
	char rcpt[ANVIL_KEY_MAX + 1], sender[ANVIL_KEY_MAX + 1] = "";
	address_format(&req->rcpt, rcpt, sizeof(rcpt));
	str_lower(rcpt);
	if (limits_address_listed(&cfg->greylist_ignore_recipients, rcpt)) {
		free(gc);
		return POLICY_DUNNO;
	}
	if (req->has_sender && !req->sender.is_null)
		address_format(&req->sender, sender, sizeof(sender));
	gc->l = l;
	gc->call = call;
	limits_network_key(sa, (unsigned)cfg->greylist_ipv4_prefix,
			   (unsigned)cfg->greylist_ipv6_prefix, gc->client, sizeof(gc->client));
	anvil_key_set(gc->from, sender);
	anvil_key_set(gc->to, rcpt);
	struct anvil_msg m;
	char norm[ANVIL_KEY_MAX + 1], triplet[3 * ANVIL_KEY_MAX];
	limits_grey_sender(sender, norm, sizeof(norm));
	anvil_msg_init(&m, ANVIL_MSG_GREY);
	anvil_key_set(m.client, gc->client);
	snprintf(triplet, sizeof(triplet), "%s <%s> <%s>", gc->client, norm, rcpt);
	anvil_key_set(m.triplet, triplet);
	m.delay = (uint32_t)cfg->greylist_delay;
	m.retry_window = (uint32_t)cfg->greylist_retry_window;
	m.expiry = (uint32_t)cfg->greylist_expiry;
	m.auto_allow = (uint32_t)cfg->greylist_auto_allow;
	policy_call_set_state(call, gc);
	l->b->ops->ask(l->b, &m, grey_answer, gc, &gc->req);
	return POLICY_PENDING;
}

static void grey_cancel(struct policy_call *call, void *arg)
{
	struct limits *l = arg;
	struct grey_call *gc = policy_call_state(call);
	if (gc == NULL)
		return;
	l->b->ops->cancel(l->b, &gc->req);
	free(gc);
	policy_call_set_state(call, NULL);
}

void greylist_register(struct limits *l, struct policy_env *env)
{
	if (l->cfg->greylist != CONFIG_YES)
		return;
	struct policy_check check = { "greylist", grey_check, grey_cancel, l };
	policy_env_add(env, POLICY_RCPT, &check);
}

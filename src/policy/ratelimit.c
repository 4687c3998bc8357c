/*
 * ratelimit.c - the rate checks at MAIL and RCPT (see limits.h): one
 * RATE request to the anvil per command with an item for each rate that
 * applies (the client's network, the envelope sender, the authenticated
 * user, the whole site), all counted or none. A refusal is 451 4.7.1; a
 * client, sender or user past its block level is blocked for
 * rate_block_time, and until then its MAIL gets 451 4.7.1 whatever the
 * rates say (a look at the block map rides along with MAIL when only a
 * recipient rate is set). The null sender <> has no sender rate
 * (bounces are counted for their client).
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

struct rate_call {
	struct limits *l;
	struct policy_call *call;
	struct limits_req *req;
	struct limits_items items;
	char client[80], sender[ANVIL_KEY_MAX + 1], user[ANVIL_KEY_MAX + 1];
};

static bool rate_set(const struct config_rate *r)
{
	return r->warn != 0 || r->block != 0;
}

/* Item for an entity at MAIL (messages) or RCPT (recipients): its rate
 * for the metric if set; at MAIL, a look at the block map if only its
 * recipient rate is set. */
static void entity_item(struct rate_call *rc, enum limits_entity e, const char *prefix,
			const char *who, enum anvil_metric metric, const struct config_rate *msg,
			const struct config_rate *rcpt, const char *name_msg, const char *name_rcpt)
{
	char key[ANVIL_KEY_MAX + 1];
	snprintf(key, sizeof(key), "%s:%s", prefix, who);
	if (metric == ANVIL_MESSAGES && rate_set(msg))
		limits_add_item(rc->l, &rc->items, e, key, who, metric, 1, msg, 0, name_msg);
	else if (metric == ANVIL_MESSAGES && rate_set(rcpt))
		limits_add_item(rc->l, &rc->items, e, key, who, metric, 0, NULL, 0, name_msg);
	else if (metric == ANVIL_RECIPIENTS && rate_set(rcpt))
		limits_add_item(rc->l, &rc->items, e, key, who, metric, 1, rcpt, 0, name_rcpt);
}

/* The items of req's stage; false if nothing applies. */
static bool build_items(struct rate_call *rc, const struct policy_request *req)
{
	const struct config *cfg = rc->l->cfg;
	enum anvil_metric metric = req->stage == POLICY_MAIL ? ANVIL_MESSAGES : ANVIL_RECIPIENTS;
	if (limits_client_listed(&cfg->limits_ignore_networks, (const struct sockaddr *)&req->client))
		return false;
	char sender[ANVIL_KEY_MAX + 1] = "";
	if (req->has_sender && !req->sender.is_null) {
		address_format(&req->sender, sender, sizeof(sender));
		str_lower(sender);
		if (limits_address_listed(&cfg->limits_ignore_senders, sender))
			return false;
	}
	limits_network_key((const struct sockaddr *)&req->client, (unsigned)cfg->client_ipv4_prefix,
			   (unsigned)cfg->client_ipv6_prefix, rc->client, sizeof(rc->client));
	entity_item(rc, ENTITY_CLIENT, "client", rc->client, metric, &cfg->client_message_rate,
		    &cfg->client_recipient_rate, "client_message_rate", "client_recipient_rate");
	if (sender[0] != '\0') {
		snprintf(rc->sender, sizeof(rc->sender), "%s", sender);
		entity_item(rc, ENTITY_SENDER, "sender", rc->sender, metric,
			    &cfg->sender_message_rate, &cfg->sender_recipient_rate,
			    "sender_message_rate", "sender_recipient_rate");
	}
	if (req->auth_user != NULL && req->auth_user[0] != '\0') {
		anvil_key_set(rc->user, req->auth_user);
		str_lower(rc->user);
		entity_item(rc, ENTITY_USER, "user", rc->user, metric, &cfg->user_message_rate,
			    &cfg->user_recipient_rate, "user_message_rate", "user_recipient_rate");
	}
	uint64_t panic = metric == ANVIL_MESSAGES ? cfg->site_message_rate_panic
						  : cfg->site_recipient_rate_panic;
	if (panic != 0)
		limits_add_item(rc->l, &rc->items, ENTITY_SITE, "site", "the site", metric, 1, NULL,
				panic, metric == ANVIL_MESSAGES ? "site_message_rate_panic"
								: "site_recipient_rate_panic");
	return rc->items.n > 0;
}

/* The reply of a refusal by item i. */
static void refusal(struct rate_call *rc, const struct anvil_result *r, int i)
{
	enum limits_entity e = rc->items.entity[i];
	const char *who = rc->items.shown[i];
	bool now = (r->flags & ANVIL_RESULT_BLOCKED_NOW) != 0;
	bool blocked = r->blocked_for > 0;
	char reason[64], later[64];
	if (blocked)
		snprintf(later, sizeof(later), "try again in %" PRIu32 " seconds", r->blocked_for);
	else
		snprintf(later, sizeof(later), "try again later");
	if (e == ENTITY_SITE)
		snprintf(reason, sizeof(reason), "%s", rc->items.names[i]);
	else if (blocked && !now)
		snprintf(reason, sizeof(reason), "blocked_%s",
			 e == ENTITY_CLIENT ? "client" : e == ENTITY_SENDER ? "sender" : "user");
	else
		snprintf(reason, sizeof(reason), "%s_block", rc->items.names[i]);
	switch (e) {
	case ENTITY_SITE:
		policy_call_set(rc->call, 451, "4.7.1", reason,
				"Error: this server receives too much mail right now, %s", later);
		break;
	case ENTITY_SENDER:
		policy_call_set(rc->call, 451, "4.7.1", reason,
				"Error: too much mail from <%s>, %s", who, later);
		break;
	case ENTITY_USER:
		policy_call_set(rc->call, 451, "4.7.1", reason,
				"Error: too much mail from user %s, %s", who, later);
		break;
	case ENTITY_CLIENT:
		policy_call_set(rc->call, 451, "4.7.1", reason,
				"Error: too much mail from your network, %s", later);
		break;
	}
}

static void rate_answer(void *arg, const struct anvil_msg *m)
{
	struct rate_call *rc = arg;
	struct policy_call *call = rc->call;
	enum policy_verdict v = POLICY_DUNNO;
	rc->req = NULL;
	if (m == NULL) {
		limits_fail_open(rc->l, "rates");
	} else {
		limits_report(rc->l, &rc->items, m->results, m->n);
		int i = limits_refused(m->results, m->n);
		if (i >= 0) {
			refusal(rc, &m->results[i], i);
			v = POLICY_TEMPFAIL;
		}
	}
	policy_call_set_state(call, NULL);
	free(rc);
	policy_call_finish(call, v);
}

static enum policy_verdict rate_check(struct policy_call *call, void *arg)
{
	struct limits *l = arg;
	const struct policy_request *req = policy_call_request(call);
	struct rate_call *rc = xcalloc(1, sizeof(*rc));
	rc->l = l;
	rc->call = call;
	if (!build_items(rc, req)) {
		free(rc);
		return POLICY_DUNNO;
	}
	struct anvil_msg m;
	anvil_msg_init(&m, ANVIL_MSG_RATE);
	m.n = rc->items.n;
	memcpy(m.items, rc->items.items, sizeof(m.items[0]) * m.n);
	policy_call_set_state(call, rc);
	l->b->ops->ask(l->b, &m, rate_answer, rc, &rc->req);
	return POLICY_PENDING;
}

static void rate_cancel(struct policy_call *call, void *arg)
{
	struct limits *l = arg;
	struct rate_call *rc = policy_call_state(call);
	if (rc == NULL)
		return;
	l->b->ops->cancel(l->b, &rc->req);
	free(rc);
	policy_call_set_state(call, NULL);
}

void ratelimit_register(struct limits *l, struct policy_env *env)
{
	const struct config *cfg = l->cfg;
	bool mail = rate_set(&cfg->client_message_rate) || rate_set(&cfg->sender_message_rate) ||
		    rate_set(&cfg->user_message_rate) || cfg->site_message_rate_panic != 0 ||
		    rate_set(&cfg->client_recipient_rate) || rate_set(&cfg->sender_recipient_rate) ||
		    rate_set(&cfg->user_recipient_rate);
	bool rcpt = rate_set(&cfg->client_recipient_rate) ||
		    rate_set(&cfg->sender_recipient_rate) || rate_set(&cfg->user_recipient_rate) ||
		    cfg->site_recipient_rate_panic != 0;
	struct policy_check check = { "rate", rate_check, rate_cancel, l };
	if (mail)
		policy_env_add_first(env, POLICY_MAIL, &check);
	if (rcpt)
		policy_env_add_first(env, POLICY_RCPT, &check);
}

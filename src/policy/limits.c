/*
 * limits.c - the smtp worker's side of the limits across workers (see
 * limits.h): what is configured, the keys, the admission of a session
 * (OPEN to the anvil: total and per-client sessions, the client's
 * connection rate and block), its release, and what is logged and told
 * to the administrator when a warn level is passed, a key is blocked or
 * the site panics. The checks of MAIL and RCPT are in ratelimit.c and
 * greylist.c.
 *
 * Untrusted input: client addresses, envelope addresses (copied into
 * bounded keys; control characters replaced). Privilege: unprivileged
 * smtp worker, on its loop.
 */
#include "limits_int.h"

#include <arpa/inet.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../lib/buf.h"
#include "../lib/log.h"
#include "../lib/xalloc.h"

#define FAIL_OPEN_WARN_SECONDS 10

static const char *const metric_names[ANVIL_METRIC_COUNT] = { "connections", "messages",
							      "recipients" };

static bool rate_set(const struct config_rate *r)
{
	return r->warn != 0 || r->block != 0;
}

bool limits_wanted(const struct config *cfg)
{
	const struct config_rate *rates[] = {
		&cfg->client_connection_rate, &cfg->client_message_rate,
		&cfg->client_recipient_rate,  &cfg->sender_message_rate,
		&cfg->sender_recipient_rate,  &cfg->user_message_rate,
		&cfg->user_recipient_rate,
	};
	bool any = cfg->connection_limit != 0 || cfg->client_connection_limit != 0 ||
		   cfg->site_message_rate_panic != 0 || cfg->site_recipient_rate_panic != 0 ||
		   cfg->greylist == CONFIG_YES;
	for (size_t i = 0; i < ARRAY_LEN(rates); i++)
		any |= rate_set(rates[i]);
	return any;
}

struct limits *limits_new(const struct config *cfg, struct limits_backend *backend,
			  limits_notice_fn *notice, void *notice_arg)
{
	if (!limits_wanted(cfg)) {
		if (backend != NULL)
			backend->ops->free(backend);
		return NULL;
	}
	if (backend == NULL)
		log_panic("limits: no backend");
	struct limits *l = xcalloc(1, sizeof(*l));
	l->cfg = cfg;
	l->b = backend;
	l->notice = notice;
	l->notice_arg = notice_arg;
	return l;
}

void limits_free(struct limits **lp)
{
	struct limits *l = *lp;
	if (l == NULL)
		return;
	l->b->ops->free(l->b);
	free(l);
	*lp = NULL;
}

void limits_register(struct limits *l, struct policy_env *env)
{
	if (l == NULL)
		return;
	ratelimit_register(l, env);
	greylist_register(l, env);
}

/* ---- keys --------------------------------------------------------------------------- */

void limits_network_key(const struct sockaddr *sa, unsigned v4_prefix, unsigned v6_prefix,
			char *out, size_t outlen)
{
	unsigned char addr[16] = { 0 };
	int family = AF_INET;
	unsigned prefix = v4_prefix;
	if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *a6 = (const struct sockaddr_in6 *)sa;
		if (IN6_IS_ADDR_V4MAPPED(&a6->sin6_addr)) {
			memcpy(addr, a6->sin6_addr.s6_addr + 12, 4);
		} else {
			memcpy(addr, a6->sin6_addr.s6_addr, 16);
			family = AF_INET6;
			prefix = v6_prefix;
		}
	} else if (sa->sa_family == AF_INET) {
		memcpy(addr, &((const struct sockaddr_in *)sa)->sin_addr, 4);
	} else {
		snprintf(out, outlen, "unknown");
		return;
	}
	unsigned bits = family == AF_INET ? 32 : 128;
	if (prefix > bits)
		prefix = bits;
	for (unsigned i = prefix; i < bits; i++)
		addr[i / 8] &= (unsigned char)~(0x80u >> (i % 8));
	char text[INET6_ADDRSTRLEN];
	if (inet_ntop(family, addr, text, sizeof(text)) == NULL)
		snprintf(text, sizeof(text), "unknown");
	snprintf(out, outlen, "%s/%u", text, prefix);
}

bool limits_client_listed(const cidr_list_t *list, const struct sockaddr *sa)
{
	return list->count > 0 && cidr_list_match(list, sa);
}

bool limits_address_listed(const strlist_t *list, const char *address)
{
	return address_listed(list, address);
}

void limits_grey_sender(const char *sender, char *out, size_t outlen)
{
	char tmp[ANVIL_KEY_MAX + 1];
	snprintf(tmp, sizeof(tmp), "%s", sender);
	str_lower(tmp);
	const char *p = tmp;
	/* BATV: "prvs=TAG=user@domain" (RFC draft; the tag changes per message) */
	if (strncmp(p, "prvs=", 5) == 0) {
		const char *eq = strchr(p + 5, '=');
		const char *at = strchr(p, '@');
		if (eq != NULL && (at == NULL || eq < at))
			p = eq + 1;
	}
	const char *at = strrchr(p, '@');
	size_t o = 0;
	for (; *p != '\0' && o + 1 < outlen; p++) {
		bool local = at == NULL || p < at;
		if (local && *p >= '0' && *p <= '9') {
			while (p[1] >= '0' && p[1] <= '9' && (at == NULL || p + 1 < at))
				p++;
			out[o++] = '#';
			continue;
		}
		out[o++] = *p;
	}
	out[o] = '\0';
}

/* ---- items and what their answers say ---------------------------------------------------- */

void limits_add_item(const struct limits *l, struct limits_items *it, enum limits_entity e,
		     const char *key, const char *shown, enum anvil_metric metric, uint32_t cost,
		     const struct config_rate *rate, uint64_t panic, const char *name)
{
	if (it->n >= ANVIL_ITEMS_MAX)
		log_panic("limits: more than %d items", ANVIL_ITEMS_MAX);
	struct anvil_item *a = &it->items[it->n];
	memset(a, 0, sizeof(*a));
	anvil_key_set(a->key, key);
	a->metric = metric;
	a->cost = cost;
	a->window = (uint32_t)l->cfg->rate_window;
	if (rate != NULL) {
		a->warn = (uint32_t)rate->warn;
		a->limit = (uint32_t)rate->block;
		a->block_time = rate->block != 0 ? (uint32_t)l->cfg->rate_block_time : 0;
	} else if (panic != 0) {
		a->limit = (uint32_t)panic;
	}
	it->entity[it->n] = e;
	it->shown[it->n] = shown;
	snprintf(it->names[it->n], sizeof(it->names[it->n]), "%s", name);
	it->n++;
}

int limits_refused(const struct anvil_result *results, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (results[i].flags & ANVIL_RESULT_REFUSED)
			return (int)i;
	return -1;
}

static void tell(const struct limits *l, const char *subject, const buf_t *body)
{
	if (l->notice != NULL)
		l->notice(l->notice_arg, subject, buf_cstr(body));
}

void limits_report(const struct limits *l, const struct limits_items *it,
		   const struct anvil_result *results, size_t n)
{
	const struct config *cfg = l->cfg;
	unsigned long long window = (unsigned long long)cfg->rate_window;
	for (size_t i = 0; i < n && i < it->n; i++) {
		const struct anvil_item *a = &it->items[i];
		const struct anvil_result *r = &results[i];
		const char *metric = metric_names[a->metric];
		const char *who = it->shown[i];
		char subject[300];
		buf_t body = BUF_INIT;
		if (r->flags & ANVIL_RESULT_WARNED) {
			log_warn("rate: %s passed %s_warn: %" PRIu32 " %s in %llus (warn at %" PRIu32
				 ")", who, it->names[i], r->count, metric, window, a->warn);
			snprintf(subject, sizeof(subject), "[%s] rate warning: %s", cfg->hostname, who);
			buf_printf(&body, "The mail gateway %s counted %" PRIu32 " %s from %s in the\n"
				   "last %llu seconds, more than %s_warn (%" PRIu32 ").\n",
				   cfg->hostname, r->count, metric, who, window, it->names[i],
				   a->warn);
			if (a->limit != 0)
				buf_printf(&body, "\nAt %" PRIu32 " it is refused (451 4.7.1)%s.\n",
					   a->limit, a->block_time != 0 ? " and blocked for a while" : "");
			tell(l, subject, &body);
		}
		if (r->flags & ANVIL_RESULT_BLOCKED_NOW) {
			log_warn("rate: %s blocked for %" PRIu32 "s: more than %s_block = %" PRIu32
				 " %s in %llus", who, a->block_time, it->names[i], a->limit, metric,
				 window);
			snprintf(subject, sizeof(subject), "[%s] blocked for %" PRIu32 "s: %s",
				 cfg->hostname, a->block_time, who);
			buf_printf(&body, "The mail gateway %s has blocked %s for %" PRIu32 " seconds\n"
				   "(rate_block_time): it sent more than %" PRIu32 " %s in %llu seconds\n"
				   "(%s_block). Until then its mail is answered 451 4.7.1 (try again\n"
				   "later), so nothing is lost if it is legitimate: it will be delivered\n"
				   "when the sender retries after the block.\n", cfg->hostname, who,
				   a->block_time, a->limit, metric, window, it->names[i]);
			tell(l, subject, &body);
		} else if ((r->flags & ANVIL_RESULT_OVER_NOW) && it->entity[i] == ENTITY_SITE) {
			log_error("rate: PANIC: the site passed %s = %" PRIu32 " %s in %llus: every "
				  "client gets 451 4.7.1 until the rate falls", it->names[i], a->limit,
				  metric, window);
			snprintf(subject, sizeof(subject), "[%s] PANIC: too many %s for the whole site",
				 cfg->hostname, metric);
			buf_printf(&body, "The mail gateway %s received more than %" PRIu32 " %s in the\n"
				   "last %llu seconds from all clients together (%s). Until the rate\n"
				   "falls below it, every client (except limits_ignore_networks and\n"
				   "limits_ignore_senders) is answered 451 4.7.1 and will retry later.\n"
				   "Look at the log for who sends them.\n", cfg->hostname, a->limit,
				   metric, window, it->names[i]);
			tell(l, subject, &body);
		}
		buf_free(&body);
	}
}

void limits_fail_open(struct limits *l, const char *what)
{
	time_t now = time(NULL);
	if (now - l->fail_open_warned < FAIL_OPEN_WARN_SECONDS)
		return;
	l->fail_open_warned = now;
	log_warn("limits: the anvil did not answer (%s): not limited", what);
}

/* ---- admission -------------------------------------------------------------------------------- */

struct limits_admission {
	struct limits *l;
	struct limits_req *req;
	limits_admit_fn *done;
	void *arg;
	bool ignored;
	char client[80];
	struct limits_items items;
};

static void refuse(struct limits_verdict *v, const char *status, const char *reason,
		   const char *fmt, ...) PRINTF_LIKE(4, 5);

static void refuse(struct limits_verdict *v, const char *status, const char *reason,
		   const char *fmt, ...)
{
	va_list ap;
	v->refuse = true;
	v->code = 421;
	snprintf(v->status, sizeof(v->status), "%s", status);
	snprintf(v->reason, sizeof(v->reason), "%s", reason);
	va_start(ap, fmt);
	vsnprintf(v->text, sizeof(v->text), fmt, ap);
	va_end(ap);
}

static void admit_answer(void *arg, const struct anvil_msg *m)
{
	struct limits_admission *ad = arg;
	struct limits *l = ad->l;
	const struct config *cfg = l->cfg;
	struct limits_verdict v;
	memset(&v, 0, sizeof(v));
	ad->req = NULL;
	if (m == NULL) {
		limits_fail_open(l, "a new session");
	} else if (!ad->ignored) {
		limits_report(l, &ad->items, m->results, m->n);
		int refused = limits_refused(m->results, m->n);
		if (cfg->connection_limit != 0 && m->total > cfg->connection_limit)
			refuse(&v, "4.7.0", "connection_limit",
			       "Error: too many connections, try again later");
		else if (cfg->client_connection_limit != 0 &&
			 m->client_count > cfg->client_connection_limit)
			refuse(&v, "4.7.0", "client_connection_limit",
			       "Error: too many connections from your network, try again later");
		else if (refused >= 0 && m->results[refused].blocked_for > 0 &&
			 !(m->results[refused].flags & ANVIL_RESULT_BLOCKED_NOW))
			refuse(&v, "4.7.1", "blocked_client",
			       "Error: your network sends too much, try again in %" PRIu32 " seconds",
			       m->results[refused].blocked_for);
		else if (refused >= 0)
			refuse(&v, "4.7.1", "client_connection_rate",
			       "Error: too many connections from your network, try again in %" PRIu32
			       " seconds", m->results[refused].blocked_for);
		if (v.refuse)
			log_info("limits: network=%s sessions=%" PRIu32 " (all: %" PRIu32
				 ") refused: %s", ad->client, m->client_count, m->total, v.reason);
	}
	limits_admit_fn *done = ad->done;
	void *done_arg = ad->arg;
	free(ad);
	done(done_arg, &v);
}

bool limits_admit(struct limits *l, uint64_t session, const struct sockaddr *client,
		  limits_admit_fn *done, void *arg, struct limits_admission **handle_r)
{
	*handle_r = NULL;
	if (l == NULL)
		return false;
	const struct config *cfg = l->cfg;
	struct limits_admission *ad = xcalloc(1, sizeof(*ad));
	struct anvil_msg req;
	char net[80], key[100];
	limits_network_key(client, (unsigned)cfg->client_ipv4_prefix,
			   (unsigned)cfg->client_ipv6_prefix, net, sizeof(net));
	ad->l = l;
	ad->done = done;
	ad->arg = arg;
	ad->ignored = limits_client_listed(&cfg->limits_ignore_networks, client);
	snprintf(ad->client, sizeof(ad->client), "%s", net);
	anvil_msg_init(&req, ANVIL_MSG_OPEN);
	req.session = session;
	anvil_key_set(req.client, net);
	snprintf(key, sizeof(key), "client:%s", net);
	bool client_rates = rate_set(&cfg->client_message_rate) ||
			    rate_set(&cfg->client_recipient_rate);
	if (!ad->ignored && rate_set(&cfg->client_connection_rate))
		limits_add_item(l, &ad->items, ENTITY_CLIENT, key, ad->client, ANVIL_CONNECTIONS, 1,
				&cfg->client_connection_rate, 0, "client_connection_rate");
	else if (!ad->ignored && client_rates) /* a look: is the client blocked? */
		limits_add_item(l, &ad->items, ENTITY_CLIENT, key, ad->client, ANVIL_CONNECTIONS, 0,
				NULL, 0, "client_connection_rate");
	req.n = ad->items.n;
	memcpy(req.items, ad->items.items, sizeof(req.items[0]) * ad->items.n);
	l->b->ops->ask(l->b, &req, admit_answer, ad, &ad->req);
	*handle_r = ad;
	return true;
}

void limits_admit_cancel(struct limits_admission **handle)
{
	struct limits_admission *ad = *handle;
	if (ad == NULL)
		return;
	ad->l->b->ops->cancel(ad->l->b, &ad->req);
	free(ad);
	*handle = NULL;
}

void limits_release(struct limits *l, uint64_t session)
{
	if (l != NULL)
		l->b->ops->close_session(l->b, session);
}

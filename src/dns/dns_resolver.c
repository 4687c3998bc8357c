/*
 * dns_resolver.c - c-ares on a libevent loop (see dns.h for the
 * contract).
 *
 * c-ares tells which of its sockets it wants to read or write through
 * its socket state callback: each gets a persistent event on the loop,
 * re-armed when the wish changes, freed when c-ares closes the socket.
 * Its retransmission timers are one libevent timer, set after every call
 * into c-ares to what ares_timeout() says. c-ares calls our query
 * callback from inside those calls (or, on an immediate failure, from
 * ares_query itself), so the lookups' callbacks are never called there:
 * finished lookups go onto a ready list that one event of the resolver
 * empties from the loop. Each query also has its own deadline (the
 * resolver's timeout): c-ares's retry schedule is only a schedule, the
 * deadline is the promise. A query that passed its deadline stays with
 * c-ares until c-ares gives up on it; a late answer is still cached.
 *
 * Untrusted input: DNS answers (dns_answer.c). Runs in the process that
 * owns the loop, unprivileged.
 */
#include "dns_internal.h"

#include <ares.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../lib/buf.h"
#include "../lib/diag.h"
#include "../lib/log.h"
#include "../lib/metrics.h"
#include "../lib/xalloc.h"

#define DEFAULT_MAX_QUERIES 4096
#define KEY_MAX (DNS_NAME_MAX + 16)
/* c-ares's first try gets at least this long. */
#define MIN_TRY_MS 100

struct sock_watch {
	struct sock_watch *next;
	ares_socket_t fd;
	struct event *ev;
};

/* One question in flight at c-ares, shared by every lookup of it. */
struct dns_query {
	struct dns_resolver *r;
	char key[KEY_MAX];          /* "TYPE/name", as in the cache */
	enum dns_type type;
	struct dns_lookup *waiters; /* doubly linked through prev/next */
	struct event *deadline;
	bool in_map;                /* r->inflight holds it (not yet answered or timed out) */
	uint64_t sent_us;           /* when it was asked (metrics_now_us) */
};

struct dns_lookup {
	struct dns_resolver *r;
	struct dns_query *query;    /* waiting on it; NULL when on the ready list */
	struct dns_result *result;  /* on the ready list: what the callback gets */
	dns_callback *cb;
	void *arg;
	struct dns_lookup *prev, *next;
};

struct dns_resolver {
	struct event_base *base;
	ares_channel channel;
	unsigned timeout_ms;
	uint32_t negative_ttl_max;
	size_t max_queries;
	size_t outstanding;         /* queries c-ares holds */
	struct event *timer;        /* c-ares's retransmissions */
	struct event *ready_ev;
	struct dns_lookup *ready_head, *ready_tail;
	size_t ready_count;
	struct sock_watch *socks;
	hashmap_t inflight;         /* key -> struct dns_query, answered by neither yet */
	struct dns_cache cache;
	struct dns_stats stats;
	bool destroying;
};

static uint64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

const char *dns_status_name(enum dns_status status)
{
	static const char *const names[] = { "found", "nxdomain", "nodata", "tempfail", "timeout" };
	return (size_t)status < ARRAY_LEN(names) ? names[status] : "?";
}

const char *dns_type_name(enum dns_type type)
{
	switch (type) {
	case DNS_TYPE_A: return "A";
	case DNS_TYPE_AAAA: return "AAAA";
	case DNS_TYPE_MX: return "MX";
	case DNS_TYPE_TXT: return "TXT";
	case DNS_TYPE_PTR: return "PTR";
	}
	return "?";
}

void dns_options_from_config(const struct config *cfg, struct dns_options *opt_r)
{
	memset(opt_r, 0, sizeof(*opt_r));
	opt_r->servers = &cfg->dns_servers;
	opt_r->timeout_ms = (unsigned)cfg->dns_timeout * 1000u;
	opt_r->tries = (unsigned)cfg->dns_tries;
	opt_r->cache_size = (size_t)cfg->dns_cache_size;
	opt_r->negative_ttl_max = (uint32_t)cfg->dns_negative_ttl;
}

static void report(FILE *errors, const struct config *cfg, const char *fmt, ...)
	PRINTF_LIKE(3, 4);

static void report(FILE *errors, const struct config *cfg, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	diag_vprint(errors, cfg->path, config_key_line(cfg, "dns_servers"), fmt, ap);
	va_end(ap);
}

int dns_config_check(const struct config *cfg, FILE *errors)
{
	struct dns_options opt;
	struct event_base *base = event_base_new();
	char *err = NULL;
	if (base == NULL) {
		report(errors, cfg, "dns_servers: cannot make an event loop to try them");
		return 1;
	}
	dns_options_from_config(cfg, &opt);
	struct dns_resolver *r = dns_resolver_new(base, &opt, &err);
	int problems = r == NULL;
	if (r == NULL)
		report(errors, cfg, "dns_servers: %s", err);
	free(err);
	dns_resolver_free(&r);
	event_base_free(base);
	return problems;
}

/* ---- c-ares on the loop ------------------------------------------------------- */

static void update_timer(struct dns_resolver *r)
{
	struct timeval tv;
	if (ares_timeout(r->channel, NULL, &tv) == NULL)
		evtimer_del(r->timer);
	else
		evtimer_add(r->timer, &tv);
}

static void sock_cb(evutil_socket_t fd, short what, void *arg)
{
	struct dns_resolver *r = arg;
	ares_process_fd(r->channel, (what & EV_READ) ? fd : ARES_SOCKET_BAD,
			(what & EV_WRITE) ? fd : ARES_SOCKET_BAD);
	update_timer(r);
}

static void timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct dns_resolver *r = arg;
	(void)fd;
	(void)what;
	ares_process_fd(r->channel, ARES_SOCKET_BAD, ARES_SOCKET_BAD);
	update_timer(r);
}

static void sock_state_cb(void *data, ares_socket_t fd, int readable, int writable)
{
	struct dns_resolver *r = data;
	struct sock_watch **pp = &r->socks;
	while (*pp != NULL && (*pp)->fd != fd)
		pp = &(*pp)->next;
	struct sock_watch *w = *pp;
	if (!readable && !writable) {
		if (w != NULL) {
			*pp = w->next;
			event_free(w->ev);
			free(w);
		}
		return;
	}
	short what = (short)(EV_PERSIST | (readable ? EV_READ : 0) | (writable ? EV_WRITE : 0));
	if (w == NULL) {
		w = xcalloc(1, sizeof(*w));
		w->fd = fd;
		w->ev = event_new(r->base, fd, what, sock_cb, r);
		if (w->ev == NULL)
			log_fatal("dns: cannot allocate an event");
		w->next = r->socks;
		r->socks = w;
	} else {
		event_del(w->ev);
		event_assign(w->ev, r->base, fd, what, sock_cb, r);
	}
	event_add(w->ev, NULL);
}

/* ---- the ready list ------------------------------------------------------------- */

static void ready_push(struct dns_resolver *r, struct dns_lookup *l, struct dns_result *res)
{
	l->query = NULL;
	l->result = res;
	l->next = NULL;
	l->prev = r->ready_tail;
	if (r->ready_tail != NULL)
		r->ready_tail->next = l;
	else
		r->ready_head = l;
	r->ready_tail = l;
	r->ready_count++;
	event_active(r->ready_ev, EV_TIMEOUT, 0);
}

static void ready_unlink(struct dns_resolver *r, struct dns_lookup *l)
{
	if (l->prev != NULL)
		l->prev->next = l->next;
	else
		r->ready_head = l->next;
	if (l->next != NULL)
		l->next->prev = l->prev;
	else
		r->ready_tail = l->prev;
	r->ready_count--;
}

/* Call the finished lookups: those that were ready when this started
 * (a callback that starts a cached lookup adds one for the next round). */
static void ready_cb(evutil_socket_t fd, short what, void *arg)
{
	struct dns_resolver *r = arg;
	(void)fd;
	(void)what;
	for (size_t n = r->ready_count; n > 0 && r->ready_head != NULL; n--) {
		struct dns_lookup *l = r->ready_head;
		ready_unlink(r, l);
		struct dns_result *res = l->result;
		dns_callback *cb = l->cb;
		void *cb_arg = l->arg;
		free(l);
		cb(cb_arg, res);
		dns_result_unref(&res);
	}
	if (r->ready_head != NULL)
		event_active(r->ready_ev, EV_TIMEOUT, 0);
}

/* ---- queries ----------------------------------------------------------------------- */

/* Hand every waiter of q the result (a reference each). */
static void query_deliver(struct dns_query *q, struct dns_result *res)
{
	while (q->waiters != NULL) {
		struct dns_lookup *l = q->waiters;
		q->waiters = l->next;
		ready_push(q->r, l, dns_result_ref(res));
	}
}

static void query_detach(struct dns_query *q)
{
	if (q->in_map) {
		hashmap_remove(&q->r->inflight, q->key);
		q->in_map = false;
	}
	evtimer_del(q->deadline);
}

static void deadline_cb(evutil_socket_t fd, short what, void *arg)
{
	struct dns_query *q = arg;
	(void)fd;
	(void)what;
	struct dns_result *res = dns_result_new(q->type, DNS_TIMEOUT);
	q->r->stats.timeouts++;
	metrics_count(METRIC_DNS_TIMEOUTS);
	metrics_observe_us(METRIC_DNS_SECONDS, metrics_now_us() - q->sent_us);
	log_debug("dns: %s: no answer within %u ms", q->key, q->r->timeout_ms);
	query_detach(q);
	query_deliver(q, res);
	dns_result_unref(&res);
}

static void query_free(struct dns_query *q)
{
	event_free(q->deadline);
	free(q);
}

/* c-ares is done with q: an answer, a failure, or the channel's end. */
static void ares_cb(void *arg, int status, int timeouts, unsigned char *msg, int len)
{
	struct dns_query *q = arg;
	struct dns_resolver *r = q->r;
	(void)timeouts;
	r->outstanding--;
	if (r->destroying || status == ARES_EDESTRUCTION || status == ARES_ECANCELLED) {
		query_free(q);
		return;
	}
	struct dns_result *res = dns_result_from_answer(q->type, status, msg,
							msg != NULL && len > 0 ? (size_t)len : 0,
							r->negative_ttl_max);
	dns_cache_put(&r->cache, q->key, res, now_ms());
	if (q->in_map) { /* answered (or given up by c-ares) before its deadline */
		metrics_observe_us(METRIC_DNS_SECONDS, metrics_now_us() - q->sent_us);
		if (status == ARES_ETIMEOUT)
			metrics_count(METRIC_DNS_TIMEOUTS);
		query_detach(q);
		query_deliver(q, res);
	}
	dns_result_unref(&res);
	query_free(q);
}

static struct dns_lookup *lookup_new(struct dns_resolver *r, dns_callback *cb, void *arg)
{
	struct dns_lookup *l = xcalloc(1, sizeof(*l));
	l->r = r;
	l->cb = cb;
	l->arg = arg;
	return l;
}

static void waiter_add(struct dns_query *q, struct dns_lookup *l)
{
	l->query = q;
	l->prev = NULL;
	l->next = q->waiters;
	if (q->waiters != NULL)
		q->waiters->prev = l;
	q->waiters = l;
}

struct dns_lookup *dns_lookup_start(struct dns_resolver *r, enum dns_type type,
				    const char *name, dns_callback *cb, void *arg)
{
	struct dns_lookup *l = lookup_new(r, cb, arg);
	char key[KEY_MAX];
	r->stats.lookups++;
	if (!dns_name_valid(name) || !dns_cache_key(type, name, key, sizeof(key))) {
		ready_push(r, l, dns_result_new(type, DNS_NXDOMAIN));
		return l;
	}
	struct dns_result *cached = dns_cache_get(&r->cache, key, now_ms());
	if (cached != NULL) {
		r->stats.cache_hits++;
		ready_push(r, l, cached);
		return l;
	}
	struct dns_query *q = hashmap_get(&r->inflight, key, NULL);
	if (q != NULL) {
		r->stats.shared++;
		waiter_add(q, l);
		return l;
	}
	if (r->outstanding >= r->max_queries) {
		log_warn("dns: %zu queries in flight already: %s not asked", r->outstanding, key);
		ready_push(r, l, dns_result_new(type, DNS_TEMPFAIL));
		return l;
	}
	q = xcalloc(1, sizeof(*q));
	q->r = r;
	q->type = type;
	snprintf(q->key, sizeof(q->key), "%s", key);
	q->deadline = evtimer_new(r->base, deadline_cb, q);
	if (q->deadline == NULL)
		log_fatal("dns: cannot allocate a timer");
	struct timeval tv = { r->timeout_ms / 1000, (r->timeout_ms % 1000) * 1000 };
	evtimer_add(q->deadline, &tv);
	hashmap_put(&r->inflight, key, q);
	q->in_map = true;
	waiter_add(q, l);
	r->outstanding++;
	r->stats.sent++;
	q->sent_us = metrics_now_us();
	metrics_count(METRIC_DNS_QUERIES);
	/* The name part of the key: lower-cased, without the trailing dot.
	 * ares_cb may run (and free q) before ares_query returns. */
	ares_query(r->channel, strchr(key, '/') + 1, 1 /* IN */, (int)type, ares_cb, q);
	update_timer(r);
	return l;
}

void dns_lookup_cancel(struct dns_lookup **lp)
{
	struct dns_lookup *l = *lp;
	if (l == NULL)
		return;
	*lp = NULL;
	if (l->query != NULL) {
		struct dns_query *q = l->query;
		if (l->prev != NULL)
			l->prev->next = l->next;
		else
			q->waiters = l->next;
		if (l->next != NULL)
			l->next->prev = l->prev;
		/* The query goes on: its answer is cached for the next one. */
	} else {
		ready_unlink(l->r, l);
		dns_result_unref(&l->result);
	}
	free(l);
}

/* ---- the resolver -------------------------------------------------------------------- */

static void ensure_library(void)
{
	static bool done;
	if (!done) {
		int st = ares_library_init(ARES_LIB_INIT_ALL);
		if (st != ARES_SUCCESS)
			log_fatal("dns: c-ares: %s", ares_strerror(st));
		done = true;
	}
}

/* The servers as c-ares reads them: "a,a:p,v6,[v6]:p,..." (c-ares 1.18
 * does not take "[v6]" without a port: the brackets go). */
static char *servers_csv(const strlist_t *servers)
{
	buf_t b = BUF_INIT;
	for (size_t i = 0; i < servers->count; i++) {
		const char *s = servers->items[i];
		size_t n = strlen(s);
		if (i > 0)
			buf_putc(&b, ',');
		if (n > 2 && s[0] == '[' && s[n - 1] == ']')
			buf_append(&b, s + 1, n - 2);
		else
			buf_puts(&b, s);
	}
	return buf_steal(&b);
}

static int channel_open(struct dns_resolver *r, const struct dns_options *opt,
			unsigned try_ms, char **err_r)
{
	struct ares_options ao;
	memset(&ao, 0, sizeof(ao));
	ao.flags = ARES_FLAG_NOSEARCH | ARES_FLAG_NOALIASES;
	ao.timeout = (int)try_ms;
	ao.tries = (int)opt->tries;
	ao.sock_state_cb = sock_state_cb;
	ao.sock_state_cb_data = r;
	int mask = ARES_OPT_FLAGS | ARES_OPT_TIMEOUTMS | ARES_OPT_TRIES | ARES_OPT_SOCK_STATE_CB;
	int st = ares_init_options(&r->channel, &ao, mask);
	if (st == ARES_SUCCESS && opt->servers != NULL && opt->servers->count > 0) {
		char *csv = servers_csv(opt->servers);
		st = ares_set_servers_ports_csv(r->channel, csv);
		free(csv);
		if (st != ARES_SUCCESS)
			ares_destroy(r->channel);
	}
	if (st != ARES_SUCCESS) {
		buf_t b = BUF_INIT;
		buf_printf(&b, "c-ares: %s", ares_strerror(st));
		*err_r = buf_steal(&b);
		return -1;
	}
	return 0;
}

static size_t server_count(ares_channel channel)
{
	struct ares_addr_port_node *list = NULL, *n;
	size_t count = 0;
	if (ares_get_servers_ports(channel, &list) == ARES_SUCCESS)
		for (n = list; n != NULL; n = n->next)
			count++;
	ares_free_data(list);
	return count > 0 ? count : 1;
}

struct dns_resolver *dns_resolver_new(struct event_base *base, const struct dns_options *opt,
				      char **err_r)
{
	ensure_library();
	struct dns_resolver *r = xcalloc(1, sizeof(*r));
	r->base = base;
	r->timeout_ms = opt->timeout_ms > 0 ? opt->timeout_ms : 5000;
	r->negative_ttl_max = opt->negative_ttl_max;
	r->max_queries = opt->max_queries > 0 ? opt->max_queries : DEFAULT_MAX_QUERIES;
	unsigned tries = opt->tries > 0 && opt->tries <= 10 ? opt->tries : 2;
	struct dns_options o = *opt;
	o.tries = tries;
	/* c-ares waits timeout, 2 x timeout, 4 x ... per round over the
	 * servers: its first try gets the share that makes every round fit
	 * in the whole timeout. */
	if (channel_open(r, &o, r->timeout_ms, err_r) < 0) {
		free(r);
		return NULL;
	}
	size_t rounds = ((size_t)1 << tries) - 1;
	size_t try_ms = r->timeout_ms / (rounds * server_count(r->channel));
	if (try_ms < MIN_TRY_MS)
		try_ms = MIN_TRY_MS;
	ares_destroy(r->channel);
	if (channel_open(r, &o, (unsigned)try_ms, err_r) < 0) {
		free(r);
		return NULL;
	}
	r->timer = evtimer_new(base, timer_cb, r);
	r->ready_ev = event_new(base, -1, 0, ready_cb, r);
	if (r->timer == NULL || r->ready_ev == NULL)
		log_fatal("dns: cannot allocate events");
	dns_cache_init(&r->cache, opt->cache_size);
	return r;
}

void dns_resolver_free(struct dns_resolver **rp)
{
	struct dns_resolver *r = *rp;
	if (r == NULL)
		return;
	*rp = NULL;
	r->destroying = true;
	while (r->ready_head != NULL) {
		struct dns_lookup *l = r->ready_head;
		dns_lookup_cancel(&l);
	}
	size_t pos = 0;
	const char *key;
	void *value;
	while (hashmap_next(&r->inflight, &pos, &key, &value)) {
		struct dns_query *q = value;
		while (q->waiters != NULL) {
			struct dns_lookup *l = q->waiters;
			q->waiters = l->next;
			free(l);
		}
	}
	ares_destroy(r->channel); /* each query's ares_cb frees it */
	while (r->socks != NULL) {
		struct sock_watch *w = r->socks;
		r->socks = w->next;
		event_free(w->ev);
		free(w);
	}
	hashmap_free(&r->inflight, NULL);
	dns_cache_free(&r->cache);
	event_free(r->timer);
	event_free(r->ready_ev);
	free(r);
}

void dns_resolver_stats(const struct dns_resolver *r, struct dns_stats *stats_r)
{
	*stats_r = r->stats;
	stats_r->cached = r->cache.count;
}

struct event_base *dns_resolver_base(const struct dns_resolver *r)
{
	return r->base;
}

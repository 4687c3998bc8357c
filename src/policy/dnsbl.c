/*
 * dnsbl.c - one evaluation of a client address (DNSBL) or a domain
 * (RHSBL) against a set of lists (RFC 5782): every list asked at once
 * through the worker's resolver (an A lookup of the reversed address or
 * the domain under the list's zone), the TXT reason asked of each list
 * that lists, the weights summed; ready when every list has answered or
 * at the deadline. See dnsbl.h for the contract.
 *
 * Input: the client's address or the sender's domain (untrusted, a name
 * that is not valid is never asked) and the lists' answers (addresses
 * compared with the filters; TXT made printable and bounded).
 */
#include "dnsbl.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../lib/log.h"
#include "../lib/xalloc.h"

enum site_state { SITE_WAITING, SITE_CLEAN, SITE_LISTED, SITE_FAILED };

struct site {
	struct dnsbl_eval *e;
	const struct dnsbl_site *def;
	enum site_state state;
	struct dns_lookup *a, *txt;  /* outstanding lookups */
	bool done;                   /* nothing more to wait for */
	char qname[DNS_NAME_MAX + 2];
	char answer[16];
	char txt_text[DNSBL_TXT_MAX];
};

struct dnsbl_eval {
	struct dns_resolver *r;
	const struct dnsbl_sites *sites;
	struct site *site;           /* one per list */
	size_t waiting;              /* lists not done */
	struct event *ev;            /* the deadline, then the notification */
	bool ready;
	struct dnsbl_verdict verdict;
	dnsbl_ready_fn *fn;
	void *arg;
};

static void copy_printable(char *out, size_t outlen, const char *in)
{
	size_t n = 0;
	for (; in != NULL && *in != '\0' && n + 1 < outlen; in++) {
		unsigned char c = (unsigned char)*in;
		out[n++] = c >= 32 && c < 127 ? (char)c : '?';
	}
	out[n] = '\0';
}

static void make_verdict(struct dnsbl_eval *e)
{
	struct dnsbl_verdict *v = &e->verdict;
	for (size_t i = 0; i < e->sites->count; i++) {
		struct site *s = &e->site[i];
		if (s->state == SITE_LISTED) {
			struct dnsbl_hit *h = &v->hits[v->hit_count++];
			h->site = s->def;
			snprintf(h->answer, sizeof(h->answer), "%s", s->answer);
			snprintf(h->txt, sizeof(h->txt), "%s", s->txt_text);
			v->score += s->def->weight;
			if (s->def->weight > 0 && (v->top == NULL || s->def->weight > v->top->site->weight))
				v->top = h;
		} else if (s->state != SITE_CLEAN) {
			v->failed[v->failed_count++] = s->def;
		}
	}
}

/* The verdict is made: stop every lookup, tell the caller from the loop
 * (tick does that itself when it is the one calling). */
static void become_ready(struct dnsbl_eval *e, bool in_tick)
{
	for (size_t i = 0; i < e->sites->count; i++) {
		dns_lookup_cancel(&e->site[i].a);
		dns_lookup_cancel(&e->site[i].txt);
	}
	make_verdict(e);
	e->ready = true;
	evtimer_del(e->ev);
	if (e->fn != NULL && !in_tick)
		event_active(e->ev, EV_TIMEOUT, 0);
}

static void site_done(struct site *s)
{
	if (s->done)
		return;
	s->done = true;
	if (--s->e->waiting == 0)
		become_ready(s->e, false);
}

static void txt_answered(void *arg, const struct dns_result *res)
{
	struct site *s = arg;
	s->txt = NULL;
	if (res->status == DNS_FOUND && res->records[0].text != NULL)
		copy_printable(s->txt_text, sizeof(s->txt_text), res->records[0].text);
	site_done(s);
}

static void a_answered(void *arg, const struct dns_result *res)
{
	struct site *s = arg;
	s->a = NULL;
	if (res->status == DNS_TEMPFAIL || res->status == DNS_TIMEOUT) {
		log_info("dnsbl: %s: %s", s->qname, dns_status_name(res->status));
		s->state = SITE_FAILED;
		site_done(s);
		return;
	}
	s->state = SITE_CLEAN;
	for (size_t i = 0; res->status == DNS_FOUND && i < res->count; i++) {
		const struct dns_record *rec = &res->records[i];
		if (rec->family != AF_INET)
			continue;
		if (dnsbl_site_matches(s->def, rec->addr)) {
			s->state = SITE_LISTED;
			inet_ntop(AF_INET, rec->addr, s->answer, sizeof(s->answer));
			break;
		}
		if (rec->addr[0] == 127 && rec->addr[1] == 255 && rec->addr[2] == 255)
			log_warn("dnsbl: %s answered 127.255.255.%u: an error code of the list "
				 "(query refused or limit reached), not a listing", s->def->domain,
				 rec->addr[3]);
	}
	if (s->state == SITE_LISTED) {
		s->txt = dns_lookup_start(s->e->r, DNS_TYPE_TXT, s->qname, txt_answered, s);
		return;
	}
	site_done(s);
}

static void tick(evutil_socket_t fd, short what, void *arg)
{
	struct dnsbl_eval *e = arg;
	(void)fd;
	(void)what;
	if (!e->ready)
		become_ready(e, true); /* the deadline: what has not answered failed */
	dnsbl_ready_fn *fn = e->fn;
	e->fn = NULL;
	if (fn != NULL)
		fn(e->arg, &e->verdict); /* may free e */
}

/* An evaluation whose query names name_of() makes; a site whose name
 * cannot be made (too long) is clean without a question. */
static struct dnsbl_eval *start(struct dns_resolver *r, const struct dnsbl_sites *sites,
				const char *what, unsigned timeout_ms,
				bool (*name_of)(const void *subject, const char *zone, char *out,
						size_t outlen),
				const void *subject)
{
	struct dnsbl_eval *e = xcalloc(1, sizeof(*e));
	e->r = r;
	e->sites = sites;
	e->site = xcalloc(sites->count > 0 ? sites->count : 1, sizeof(*e->site));
	snprintf(e->verdict.what, sizeof(e->verdict.what), "%s", what);
	e->ev = evtimer_new(dns_resolver_base(r), tick, e);
	if (e->ev == NULL)
		log_fatal("dnsbl: cannot allocate a timer");
	struct timeval tv = { timeout_ms / 1000, (timeout_ms % 1000) * 1000 };
	evtimer_add(e->ev, &tv);
	e->waiting = sites->count;
	for (size_t i = 0; i < sites->count; i++) {
		struct site *s = &e->site[i];
		s->e = e;
		s->def = &sites->items[i];
		if (!name_of(subject, s->def->domain, s->qname, sizeof(s->qname)) ||
		    !dns_name_valid(s->qname)) {
			s->state = SITE_CLEAN;
			s->done = true;
			e->waiting--;
		}
	}
	if (e->waiting == 0) {
		become_ready(e, false);
		return e;
	}
	for (size_t i = 0; i < sites->count; i++)
		if (!e->site[i].done)
			e->site[i].a = dns_lookup_start(r, DNS_TYPE_A, e->site[i].qname, a_answered,
							&e->site[i]);
	return e;
}

static bool client_name(const void *subject, const char *zone, char *out, size_t outlen)
{
	return dns_reverse_name(subject, zone, out, outlen);
}

static bool domain_name(const void *subject, const char *zone, char *out, size_t outlen)
{
	const char *domain = subject;
	size_t n = strlen(domain);
	if (n > 0 && domain[n - 1] == '.')
		n--;
	int w = snprintf(out, outlen, "%.*s.%s", (int)n, domain, zone);
	return n > 0 && w > 0 && (size_t)w < outlen;
}

struct dnsbl_eval *dnsbl_start_client(struct dns_resolver *r, const struct dnsbl_sites *sites,
				      const struct sockaddr *client, unsigned timeout_ms)
{
	char text[64] = "unknown";
	if (client->sa_family == AF_INET)
		inet_ntop(AF_INET, &((const struct sockaddr_in *)client)->sin_addr, text,
			  sizeof(text));
	else if (client->sa_family == AF_INET6)
		inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)client)->sin6_addr, text,
			  sizeof(text));
	return start(r, sites, text, timeout_ms, client_name, client);
}

struct dnsbl_eval *dnsbl_start_domain(struct dns_resolver *r, const struct dnsbl_sites *sites,
				      const char *domain, unsigned timeout_ms)
{
	return start(r, sites, domain, timeout_ms, domain_name, domain);
}

bool dnsbl_ready(const struct dnsbl_eval *e)
{
	return e->ready;
}

const struct dnsbl_verdict *dnsbl_verdict(const struct dnsbl_eval *e)
{
	return e->ready ? &e->verdict : NULL;
}

void dnsbl_notify(struct dnsbl_eval *e, dnsbl_ready_fn *fn, void *arg)
{
	e->fn = fn;
	e->arg = arg;
	if (e->ready && fn != NULL)
		event_active(e->ev, EV_TIMEOUT, 0);
}

void dnsbl_free(struct dnsbl_eval **ep)
{
	struct dnsbl_eval *e = *ep;
	if (e == NULL)
		return;
	*ep = NULL;
	for (size_t i = 0; i < e->sites->count; i++) {
		dns_lookup_cancel(&e->site[i].a);
		dns_lookup_cancel(&e->site[i].txt);
	}
	event_free(e->ev);
	free(e->site);
	free(e);
}

void dnsbl_verdict_describe(const struct dnsbl_verdict *v, char *out, size_t outlen)
{
	size_t n = 0;
	out[0] = '\0';
	for (size_t i = 0; i < v->hit_count && n < outlen; i++) {
		const struct dnsbl_hit *h = &v->hits[i];
		int w = snprintf(out + n, outlen - n, "%s%s(%s)*%d", i > 0 ? " " : "",
				 h->site->domain, h->answer, h->site->weight);
		n = w > 0 ? n + (size_t)w : n;
	}
	for (size_t i = 0; i < v->failed_count && n < outlen; i++) {
		int w = snprintf(out + n, outlen - n, "%s%s(no answer)", n > 0 ? " " : "",
				 v->failed[i]->domain);
		n = w > 0 ? n + (size_t)w : n;
	}
}

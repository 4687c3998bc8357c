/*
 * relay_resolve.c - the addresses to try for a next hop, best first:
 * an address literal as it is; a host's own A and AAAA records; or the
 * MX records of a domain in preference order, hosts of equal preference
 * in random order (RFC 5321 section 5.1), each host's addresses, falling
 * back to the domain's own addresses when it has no MX record (the
 * implicit MX). A null MX (RFC 7505: one MX record with the root as
 * exchange) is a permanent failure; so is a domain that does not exist.
 * An MX host that is this host (our hostname, or an address and port we
 * listen on, any address of the machine for a wildcard listener) ends
 * the list there: if it is the best one, the mail would
 * loop and fails permanently (RFC 5321 section 5.1). Temporary DNS
 * failures are temporary failures.
 *
 * RFCs: RFC 5321 section 5.1, RFC 7505, RFC 3596 (AAAA). Untrusted
 * input: DNS answers (parsed and bounded by src/dns/). Privilege: the
 * relay agent.
 */
#include <arpa/inet.h>
#include <ifaddrs.h>
#include <stddef.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../lib/log.h"
#include "../lib/strutil.h"
#include "../lib/xalloc.h"
#include "relay_internal.h"

struct relay_resolve;

/* What a lookup's callback gets: which host and which type. */
struct lookup_ref {
	struct relay_resolve *r;
	size_t host;
	int which; /* 0 A, 1 AAAA */
};

struct host_slot {
	char name[RELAY_HOST_MAX + 1];
	struct lookup_ref ref[2];
	unsigned pref;
	struct dns_lookup *lookup[2];  /* A, AAAA */
	enum dns_status status[2];
	struct relay_addr addrs[RELAY_ADDRS_MAX];
	size_t count;
};

struct relay_resolve {
	struct relay_agent *agent;
	struct relay_nexthop hop;
	relay_resolve_cb *cb;
	void *arg;
	struct dns_lookup *mx;
	struct event *later;        /* literal: the answer comes from the loop */
	struct host_slot *hosts;
	size_t host_count;
	size_t pending;             /* address lookups outstanding */
	bool implicit;              /* no MX: the domain's own addresses */
	bool self_best;             /* the best MX is us: loop */
};

static void finish(struct relay_resolve *r, enum relay_resolve_status st, const char *reason,
		   const struct relay_addr *addrs, size_t count)
{
	relay_resolve_cb *cb = r->cb;
	void *arg = r->arg;

	for (size_t i = 0; i < r->host_count; i++)
		for (int k = 0; k < 2; k++)
			dns_lookup_cancel(&r->hosts[i].lookup[k]);
	dns_lookup_cancel(&r->mx);
	if (r->later != NULL)
		event_free(r->later);
	free(r->hosts);
	free(r);
	cb(arg, st, reason, addrs, count);
}

void relay_resolve_cancel(struct relay_resolve **rp)
{
	struct relay_resolve *r = *rp;

	if (r == NULL)
		return;
	for (size_t i = 0; i < r->host_count; i++)
		for (int k = 0; k < 2; k++)
			dns_lookup_cancel(&r->hosts[i].lookup[k]);
	dns_lookup_cancel(&r->mx);
	if (r->later != NULL)
		event_free(r->later);
	free(r->hosts);
	free(r);
	*rp = NULL;
}

/* Do we listen on this address and port? */
/* Is the numeric address text one of this machine's: a loopback
 * address, or one of its interfaces' (asked anew each time: they
 * change)? */
static bool is_local_addr(const char *text)
{
	unsigned char want[16], have[16];
	int family = strchr(text, ':') != NULL ? AF_INET6 : AF_INET;
	size_t len = family == AF_INET6 ? 16 : 4;
	struct ifaddrs *ifs = NULL;
	bool found = false;

	if (inet_pton(family, text, want) != 1)
		return false;
	if ((family == AF_INET && want[0] == 127) ||
	    (family == AF_INET6 && memcmp(want, &in6addr_loopback, 16) == 0))
		return true;
	if (getifaddrs(&ifs) < 0)
		return false;
	for (const struct ifaddrs *i = ifs; i != NULL && !found; i = i->ifa_next) {
		if (i->ifa_addr == NULL || i->ifa_addr->sa_family != family)
			continue;
		if (family == AF_INET)
			memcpy(have, &((const struct sockaddr_in *)(const void *)i->ifa_addr)->sin_addr, 4);
		else
			memcpy(have, &((const struct sockaddr_in6 *)(const void *)i->ifa_addr)->sin6_addr,
			       16);
		found = memcmp(want, have, len) == 0;
	}
	freeifaddrs(ifs);
	return found;
}

static bool is_self_addr(const struct relay_agent *a, const char *text, uint16_t port)
{
	char p[8];

	snprintf(p, sizeof(p), "%u", (unsigned)port);
	for (size_t i = 0; i < a->cfg->listen_count; i++) {
		const struct listen_addr *l = &a->cfg->listen[i];
		if (strcmp(l->port, p) != 0)
			continue;
		if (strcmp(l->host, text) == 0)
			return true;
		/* A wildcard listener takes every address of the machine of
		 * its family (master.c binds "::" IPv6-only). */
		bool v6 = strchr(text, ':') != NULL;
		if (strcmp(l->host, v6 ? "::" : "0.0.0.0") == 0 && is_local_addr(text))
			return true;
	}
	return false;
}

static bool fill_addr(struct relay_addr *out, int family, const unsigned char *bytes,
		      uint16_t port, const char *host)
{
	memset(out, 0, sizeof(*out));
	snprintf(out->host, sizeof(out->host), "%s", host);
	if (family == AF_INET) {
		struct sockaddr_in *sin = (struct sockaddr_in *)&out->sa;
		sin->sin_family = AF_INET;
		sin->sin_port = htons(port);
		memcpy(&sin->sin_addr, bytes, 4);
		out->salen = sizeof(*sin);
		inet_ntop(AF_INET, bytes, out->text, sizeof(out->text));
		return true;
	}
	if (family == AF_INET6) {
		struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&out->sa;
		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = htons(port);
		memcpy(&sin6->sin6_addr, bytes, 16);
		out->salen = sizeof(*sin6);
		inet_ntop(AF_INET6, bytes, out->text, sizeof(out->text));
		return true;
	}
	return false;
}

/* Every address lookup has answered: flatten in order. */
static void addresses_done(struct relay_resolve *r)
{
	struct relay_addr *all = xcalloc(RELAY_ADDRS_MAX, sizeof(*all));
	size_t n = 0;
	bool temp = false, self_best = r->self_best;
	unsigned self_pref = 0;
	bool self_seen = false;

	for (size_t i = 0; i < r->host_count; i++) {
		struct host_slot *h = &r->hosts[i];
		for (size_t k = 0; k < h->count; k++)
			if (is_self_addr(r->agent, h->addrs[k].text, r->hop.port)) {
				if (!self_seen || h->pref < self_pref)
					self_pref = h->pref;
				self_seen = true;
			}
	}
	for (size_t i = 0; i < r->host_count; i++) {
		struct host_slot *h = &r->hosts[i];
		if (self_seen && h->pref >= self_pref) {
			if (i == 0)
				self_best = true;
			break;
		}
		for (int k = 0; k < 2; k++)
			if (h->status[k] == DNS_TEMPFAIL || h->status[k] == DNS_TIMEOUT)
				temp = true;
		for (size_t k = 0; k < h->count && n < RELAY_ADDRS_MAX; k++)
			all[n++] = h->addrs[k];
	}
	char reason[RELAY_REASON_MAX];
	if (self_best) {
		snprintf(reason, sizeof(reason), "5.4.6 mail for %s loops back to myself",
			 r->hop.host);
		finish(r, RESOLVE_PERM, reason, NULL, 0);
	} else if (n > 0) {
		finish(r, RESOLVE_OK, NULL, all, n);
	} else if (temp) {
		snprintf(reason, sizeof(reason), "4.4.3 cannot find the address of %s%s: "
			 "temporary DNS failure", r->hop.host, r->hop.mx ? " (MX hosts)" : "");
		finish(r, RESOLVE_TEMP, reason, NULL, 0);
	} else if (r->hop.mx) {
		snprintf(reason, sizeof(reason), "5.1.2 %s %s has no address", r->implicit ?
			 "domain" : "the mail servers of domain", r->hop.host);
		finish(r, RESOLVE_PERM, reason, NULL, 0);
	} else {
		/* A next hop the administrator named: their mistake, not the
		 * sender's; keep the mail. */
		snprintf(reason, sizeof(reason), "4.4.4 next hop %s has no address", r->hop.host);
		finish(r, RESOLVE_TEMP, reason, NULL, 0);
	}
	free(all);
}

static void on_address(void *arg, const struct dns_result *res)
{
	const struct lookup_ref *ref = arg;
	struct relay_resolve *r = ref->r;
	struct host_slot *h = &r->hosts[ref->host];
	int which = ref->which;

	h->lookup[which] = NULL;
	h->status[which] = res->status;
	for (size_t i = 0; res->status == DNS_FOUND && i < res->count &&
			   h->count < RELAY_ADDRS_MAX; i++) {
		const struct dns_record *rec = &res->records[i];
		if (fill_addr(&h->addrs[h->count], rec->family, rec->addr, r->hop.port, h->name))
			h->count++;
	}
	if (--r->pending == 0)
		addresses_done(r);
}

static void start_address_lookups(struct relay_resolve *r)
{
	r->pending = r->host_count * 2;
	for (size_t i = 0; i < r->host_count; i++) {
		struct host_slot *h = &r->hosts[i];
		for (int k = 0; k < 2; k++) {
			h->ref[k].r = r;
			h->ref[k].host = i;
			h->ref[k].which = k;
			h->lookup[k] = dns_lookup_start(r->agent->dns,
							k == 0 ? DNS_TYPE_A : DNS_TYPE_AAAA,
							h->name, on_address, &h->ref[k]);
		}
	}
}

static void one_host(struct relay_resolve *r, const char *name)
{
	r->hosts = xcalloc(1, sizeof(*r->hosts));
	r->host_count = 1;
	snprintf(r->hosts[0].name, sizeof(r->hosts[0].name), "%s", name);
	start_address_lookups(r);
}

static int by_pref(const void *a, const void *b)
{
	const struct host_slot *x = a, *y = b;

	return x->pref < y->pref ? -1 : x->pref > y->pref;
}

/* Shuffle each run of equal preference (Fisher-Yates). */
static void shuffle_equal(struct host_slot *h, size_t n)
{
	size_t start = 0;

	while (start < n) {
		size_t end = start + 1;
		while (end < n && h[end].pref == h[start].pref)
			end++;
		for (size_t i = end - 1; i > start; i--) {
			size_t j = start + (size_t)arc4random_uniform((uint32_t)(i - start + 1));
			struct host_slot t = h[i];
			h[i] = h[j];
			h[j] = t;
		}
		start = end;
	}
}

static void on_mx(void *arg, const struct dns_result *res)
{
	struct relay_resolve *r = arg;
	char reason[RELAY_REASON_MAX];

	r->mx = NULL;
	switch (res->status) {
	case DNS_FOUND:
		break;
	case DNS_NODATA:
		r->implicit = true;
		one_host(r, r->hop.host);
		return;
	case DNS_NXDOMAIN:
		snprintf(reason, sizeof(reason), "5.1.2 domain %s does not exist", r->hop.host);
		finish(r, RESOLVE_PERM, reason, NULL, 0);
		return;
	default:
		snprintf(reason, sizeof(reason), "4.4.3 MX lookup of %s failed: %s", r->hop.host,
			 dns_status_name(res->status));
		finish(r, RESOLVE_TEMP, reason, NULL, 0);
		return;
	}
	/* RFC 7505: a null MX is the one record, with "." as exchange. */
	for (size_t i = 0; i < res->count; i++)
		if (res->records[i].text == NULL || res->records[i].text[0] == '\0') {
			snprintf(reason, sizeof(reason), "5.1.10 domain %s accepts no mail "
				 "(null MX)", r->hop.host);
			finish(r, RESOLVE_PERM, reason, NULL, 0);
			return;
		}
	size_t n = res->count < RELAY_MX_HOSTS_MAX ? res->count : RELAY_MX_HOSTS_MAX;
	struct host_slot *all = xcalloc(res->count, sizeof(*all));
	for (size_t i = 0; i < res->count; i++) {
		snprintf(all[i].name, sizeof(all[i].name), "%s", res->records[i].text);
		size_t len = strlen(all[i].name);
		if (len > 0 && all[i].name[len - 1] == '.')
			all[i].name[len - 1] = '\0';
		all[i].pref = res->records[i].preference;
	}
	qsort(all, res->count, sizeof(*all), by_pref);
	shuffle_equal(all, res->count);
	/* This host among the MX hosts: only better ones may be used. */
	const char *me = r->agent->cfg->hostname;
	for (size_t i = 0; i < res->count; i++)
		if (me != NULL && me[0] != '\0' && str_eq_nocase(all[i].name, me)) {
			if (i == 0 || all[0].pref >= all[i].pref)
				r->self_best = true;
			unsigned pref = all[i].pref;
			size_t keep = 0;
			while (keep < res->count && all[keep].pref < pref)
				keep++;
			if (keep < n)
				n = keep;
			break;
		}
	if (r->self_best || n == 0) {
		free(all);
		snprintf(reason, sizeof(reason), "5.4.6 mail for %s loops back to myself",
			 r->hop.host);
		finish(r, RESOLVE_PERM, reason, NULL, 0);
		return;
	}
	r->hosts = xcalloc(n, sizeof(*r->hosts));
	memcpy(r->hosts, all, n * sizeof(*all));
	r->host_count = n;
	free(all);
	start_address_lookups(r);
}

static void on_literal(evutil_socket_t fd, short what, void *arg)
{
	struct relay_resolve *r = arg;

	if (!r->hop.literal) {
		char reason[RELAY_REASON_MAX];
		snprintf(reason, sizeof(reason), "4.4.3 cannot look %s up: the relay agent has no "
			 "DNS resolver (dns_servers)", r->hop.host);
		finish(r, RESOLVE_TEMP, reason, NULL, 0);
		return;
	}
	struct relay_addr addr;
	unsigned char bytes[16];
	int family = strchr(r->hop.host, ':') != NULL ? AF_INET6 : AF_INET;

	(void)fd;
	(void)what;
	if (inet_pton(family, r->hop.host, bytes) != 1 ||
	    !fill_addr(&addr, family, bytes, r->hop.port, r->hop.host)) {
		finish(r, RESOLVE_TEMP, "4.4.4 bad address literal", NULL, 0);
		return;
	}
	if (is_self_addr(r->agent, addr.text, r->hop.port)) {
		char reason[RELAY_REASON_MAX];
		snprintf(reason, sizeof(reason), "5.4.6 mail for [%s]:%u loops back to myself",
			 r->hop.host, (unsigned)r->hop.port);
		finish(r, RESOLVE_PERM, reason, NULL, 0);
		return;
	}
	finish(r, RESOLVE_OK, NULL, &addr, 1);
}

struct relay_resolve *relay_resolve_start(struct relay_agent *a, const struct relay_nexthop *hop,
					  relay_resolve_cb *cb, void *arg)
{
	struct relay_resolve *r = xcalloc(1, sizeof(*r));

	r->agent = a;
	r->hop = *hop;
	r->cb = cb;
	r->arg = arg;
	if (hop->literal || a->dns == NULL) {
		r->later = evtimer_new(a->base, on_literal, r);
		struct timeval now = { 0, 0 };
		evtimer_add(r->later, &now);
	} else if (hop->mx) {
		r->mx = dns_lookup_start(a->dns, DNS_TYPE_MX, hop->host, on_mx, r);
	} else {
		one_host(r, hop->host);
	}
	return r;
}

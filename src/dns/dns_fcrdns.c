/*
 * dns_fcrdns.c - forward-confirmed reverse DNS of a client address: the
 * PTR names of its reverse name (RFC 1035 section 3.5, RFC 3596 section
 * 2.5), then the A (IPv4 client) or AAAA (IPv6 client) records of the
 * first DNS_FCRDNS_MAX_NAMES names, asked together; confirmed as soon as
 * one of them holds the address.
 *
 * Input: the client's address; PTR names from DNS (untrusted, checked
 * by dns_lookup_start before they are asked).
 */
#include "dns_check.h"

#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../lib/xalloc.h"

struct forward {
	struct dns_fcrdns *owner;
	struct dns_lookup *lookup; /* NULL once answered */
	char name[DNS_NAME_MAX + 1];
};

struct dns_fcrdns {
	struct sockaddr_storage client;
	dns_fcrdns_fn *fn;
	void *arg;
	struct dns_resolver *r;
	struct dns_lookup *ptr;
	struct forward forwards[DNS_FCRDNS_MAX_NAMES];
	size_t forward_count, pending;
	bool failed;               /* a forward lookup failed temporarily */
	struct dns_fcrdns_result result;
};

const char *dns_fcrdns_status_name(enum dns_fcrdns_status status)
{
	static const char *const names[] = { "confirmed", "no_ptr", "mismatch", "tempfail" };
	return (size_t)status < ARRAY_LEN(names) ? names[status] : "?";
}

void dns_fcrdns_cancel(struct dns_fcrdns **fp)
{
	struct dns_fcrdns *f = *fp;
	if (f == NULL)
		return;
	*fp = NULL;
	dns_lookup_cancel(&f->ptr);
	for (size_t i = 0; i < f->forward_count; i++)
		dns_lookup_cancel(&f->forwards[i].lookup);
	free(f);
}

/* Tell the caller and end (the handle is gone after). */
static void finish(struct dns_fcrdns *f, enum dns_fcrdns_status status, const char *name)
{
	f->result.status = status;
	if (name != NULL)
		snprintf(f->result.name, sizeof(f->result.name), "%s", name);
	dns_fcrdns_fn *fn = f->fn;
	void *arg = f->arg;
	struct dns_fcrdns_result result = f->result;
	dns_fcrdns_cancel(&f);
	fn(arg, &result);
}

static void forward_done(void *arg, const struct dns_result *res)
{
	struct forward *fw = arg;
	struct dns_fcrdns *f = fw->owner;
	fw->lookup = NULL;
	f->pending--;
	if (res->status == DNS_FOUND) {
		for (size_t i = 0; i < res->count; i++)
			if (dns_record_matches(&res->records[i], (const struct sockaddr *)&f->client)) {
				finish(f, DNS_FCRDNS_CONFIRMED, fw->name);
				return;
			}
	} else if (res->status == DNS_TEMPFAIL || res->status == DNS_TIMEOUT) {
		f->failed = true;
	}
	if (f->pending == 0)
		finish(f, f->failed ? DNS_FCRDNS_TEMPFAIL : DNS_FCRDNS_MISMATCH, NULL);
}

static void ptr_done(void *arg, const struct dns_result *res)
{
	struct dns_fcrdns *f = arg;
	f->ptr = NULL;
	if (res->status == DNS_NXDOMAIN || res->status == DNS_NODATA) {
		finish(f, DNS_FCRDNS_NO_PTR, NULL);
		return;
	}
	if (res->status != DNS_FOUND) {
		finish(f, DNS_FCRDNS_TEMPFAIL, NULL);
		return;
	}
	snprintf(f->result.name, sizeof(f->result.name), "%s", res->records[0].text);
	bool v6 = f->client.ss_family == AF_INET6 &&
		  !IN6_IS_ADDR_V4MAPPED(&((struct sockaddr_in6 *)&f->client)->sin6_addr);
	size_t n = res->count < DNS_FCRDNS_MAX_NAMES ? res->count : DNS_FCRDNS_MAX_NAMES;
	for (size_t i = 0; i < n; i++) {
		struct forward *fw = &f->forwards[f->forward_count++];
		fw->owner = f;
		snprintf(fw->name, sizeof(fw->name), "%s", res->records[i].text);
	}
	f->pending = f->forward_count;
	for (size_t i = 0; i < f->forward_count; i++)
		f->forwards[i].lookup = dns_lookup_start(f->r, v6 ? DNS_TYPE_AAAA : DNS_TYPE_A,
							 f->forwards[i].name, forward_done,
							 &f->forwards[i]);
}

struct dns_fcrdns *dns_fcrdns_start(struct dns_resolver *r, const struct sockaddr *client,
				    dns_fcrdns_fn *fn, void *arg)
{
	struct dns_fcrdns *f = xcalloc(1, sizeof(*f));
	char name[DNS_NAME_MAX + 2];
	f->r = r;
	f->fn = fn;
	f->arg = arg;
	if (client->sa_family == AF_INET)
		memcpy(&f->client, client, sizeof(struct sockaddr_in));
	else if (client->sa_family == AF_INET6)
		memcpy(&f->client, client, sizeof(struct sockaddr_in6));
	/* Another family gets a name that fails the check: NO_PTR, from the loop. */
	if (!dns_reverse_name(client, NULL, name, sizeof(name)))
		name[0] = '\0';
	f->ptr = dns_lookup_start(r, DNS_TYPE_PTR, name, ptr_done, f);
	return f;
}

/*
 * dns_domain.c - can a domain receive mail: its MX records (RFC 5321
 * section 5.1), else its A or AAAA records (the implicit MX); a single
 * MX of "." is RFC 7505's null MX, "this domain takes no mail". The
 * three lookups are asked together; the answer comes as soon as it is
 * certain:
 *   an MX other than the null MX            OK
 *   only the null MX                        NULL_MX
 *   no such domain (any of the three)       UNKNOWN
 *   no MX, and A or AAAA                    OK
 *   no MX, no A, no AAAA                    UNKNOWN
 *   otherwise, a lookup failed or timed out TEMPFAIL
 *
 * Input: the domain (untrusted, from MAIL or RCPT; checked by
 * dns_lookup_start) and DNS answers.
 */
#include "dns_check.h"

#include <stdlib.h>

#include "../lib/xalloc.h"

enum { ASK_MX, ASK_A, ASK_AAAA, ASK_COUNT };

struct ask {
	struct dns_domain_check *owner;
	struct dns_lookup *lookup;  /* NULL once answered */
	bool answered;
	enum dns_status status;
	bool null_mx;               /* MX: only the null MX */
};

struct dns_domain_check {
	dns_domain_fn *fn;
	void *arg;
	struct ask asks[ASK_COUNT];
};

const char *dns_domain_status_name(enum dns_domain_status status)
{
	static const char *const names[] = { "ok", "null_mx", "unknown", "tempfail" };
	return (size_t)status < ARRAY_LEN(names) ? names[status] : "?";
}

void dns_domain_check_cancel(struct dns_domain_check **cp)
{
	struct dns_domain_check *c = *cp;
	if (c == NULL)
		return;
	*cp = NULL;
	for (size_t i = 0; i < ASK_COUNT; i++)
		dns_lookup_cancel(&c->asks[i].lookup);
	free(c);
}

static bool only_null_mx(const struct dns_result *res)
{
	for (size_t i = 0; i < res->count; i++)
		if (res->records[i].text == NULL || res->records[i].text[0] != '\0')
			return false;
	return res->count > 0;
}

/* The answer if the answers so far make it certain; false otherwise. */
static bool decide(const struct dns_domain_check *c, enum dns_domain_status *st)
{
	const struct ask *mx = &c->asks[ASK_MX];
	bool all = true, failed = false, address = false;
	for (size_t i = 0; i < ASK_COUNT; i++) {
		const struct ask *a = &c->asks[i];
		if (!a->answered) {
			all = false;
			continue;
		}
		if (a->status == DNS_NXDOMAIN) {
			*st = DNS_DOMAIN_UNKNOWN;
			return true;
		}
		failed |= a->status == DNS_TEMPFAIL || a->status == DNS_TIMEOUT;
		address |= i != ASK_MX && a->status == DNS_FOUND;
	}
	if (mx->answered && mx->status == DNS_FOUND) {
		*st = mx->null_mx ? DNS_DOMAIN_NULL_MX : DNS_DOMAIN_OK;
		return true;
	}
	if (mx->answered && mx->status == DNS_NODATA && address) {
		*st = DNS_DOMAIN_OK;
		return true;
	}
	if (!all)
		return false;
	*st = address && !failed ? DNS_DOMAIN_OK : failed ? DNS_DOMAIN_TEMPFAIL : DNS_DOMAIN_UNKNOWN;
	return true;
}

static void answered(void *arg, const struct dns_result *res)
{
	struct ask *a = arg;
	struct dns_domain_check *c = a->owner;
	enum dns_domain_status st;
	a->lookup = NULL;
	a->answered = true;
	a->status = res->status;
	a->null_mx = res->type == DNS_TYPE_MX && res->status == DNS_FOUND && only_null_mx(res);
	if (!decide(c, &st))
		return;
	dns_domain_fn *fn = c->fn;
	void *fn_arg = c->arg;
	dns_domain_check_cancel(&c);
	fn(fn_arg, st);
}

struct dns_domain_check *dns_domain_check_start(struct dns_resolver *r, const char *domain,
						dns_domain_fn *fn, void *arg)
{
	static const enum dns_type types[ASK_COUNT] = { DNS_TYPE_MX, DNS_TYPE_A, DNS_TYPE_AAAA };
	struct dns_domain_check *c = xcalloc(1, sizeof(*c));
	c->fn = fn;
	c->arg = arg;
	for (size_t i = 0; i < ASK_COUNT; i++) {
		c->asks[i].owner = c;
		c->asks[i].lookup = dns_lookup_start(r, types[i], domain, answered, &c->asks[i]);
	}
	return c;
}

/*
 * dns_check.h - questions made of several lookups, for the restrictions
 * and for routing: does the client's address have a forward-confirmed
 * reverse name (PTR, then A/AAAA of each name), and can a domain receive
 * mail at all (MX, else A/AAAA; RFC 5321 section 5.1, RFC 7505's null MX).
 *
 * Same contract as a lookup (dns.h): the callback comes later from the
 * event loop, exactly once, unless cancelled first; the handle is gone
 * once the callback has been called; the result is valid during the call.
 * Temporary failures (SERVFAIL, timeouts) are told apart from "does not
 * exist", so that callers can answer 4xx for the first and 5xx for the
 * second.
 *
 * Input: a client's address, a domain from the SMTP dialogue
 * (untrusted; a name that is not valid counts as not existing), DNS
 * answers through dns.h. Runs on the loop of whoever owns the resolver.
 */
#ifndef POSTERN_DNS_CHECK_H
#define POSTERN_DNS_CHECK_H

#include "dns.h"

/* PTR names whose addresses are asked, at most. */
#define DNS_FCRDNS_MAX_NAMES 4

enum dns_fcrdns_status {
	DNS_FCRDNS_CONFIRMED, /* a PTR name resolves back to the address */
	DNS_FCRDNS_NO_PTR,    /* no PTR record (no such name, or no data) */
	DNS_FCRDNS_MISMATCH,  /* PTR names, none of which resolves back */
	DNS_FCRDNS_TEMPFAIL,  /* no decision: a lookup failed or timed out */
};

struct dns_fcrdns_result {
	enum dns_fcrdns_status status;
	/* CONFIRMED: the confirmed name; MISMATCH, TEMPFAIL: the first PTR
	 * name if there was one; otherwise "". */
	char name[DNS_NAME_MAX + 1];
};

typedef void dns_fcrdns_fn(void *arg, const struct dns_fcrdns_result *result);
struct dns_fcrdns;

/* Never NULL; an address of another family ends in NO_PTR. */
struct dns_fcrdns *dns_fcrdns_start(struct dns_resolver *r, const struct sockaddr *client,
				    dns_fcrdns_fn *fn, void *arg);
void dns_fcrdns_cancel(struct dns_fcrdns **f);
const char *dns_fcrdns_status_name(enum dns_fcrdns_status status);

enum dns_domain_status {
	DNS_DOMAIN_OK,       /* an MX other than the null MX, or A/AAAA records */
	DNS_DOMAIN_NULL_MX,  /* RFC 7505: the domain says it takes no mail */
	DNS_DOMAIN_UNKNOWN,  /* no such domain, or neither MX nor A/AAAA */
	DNS_DOMAIN_TEMPFAIL, /* no decision: a lookup failed or timed out */
};

typedef void dns_domain_fn(void *arg, enum dns_domain_status status);
struct dns_domain_check;

/* MX, A and AAAA of domain, asked together. Never NULL. */
struct dns_domain_check *dns_domain_check_start(struct dns_resolver *r, const char *domain,
						dns_domain_fn *fn, void *arg);
void dns_domain_check_cancel(struct dns_domain_check **c);
const char *dns_domain_status_name(enum dns_domain_status status);

#endif

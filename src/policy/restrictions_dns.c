/*
 * restrictions_dns.c - the restrictions that ask DNS (restrictions.h,
 * docs/postern.conf.5 RESTRICTIONS), provided to the restriction engine
 * by restrictions_dns_provide():
 *
 *   reject_rbl_client LIST[=FILTER]   the client's address is on LIST:
 *                                     554 5.7.1 (dnsbl_reply's text)
 *   reject_rhsbl_sender LIST[=FILTER] the sender's domain is on LIST:
 *                                     554 5.7.1
 *   reject_unknown_client,            the client's address has no
 *   reject_unknown_client_hostname    forward-confirmed reverse name:
 *                                     450 4.7.1 (Postfix's default code:
 *                                     a missing PTR is often a mistake
 *                                     the sender can repair)
 *   reject_unknown_sender_domain      the sender's domain has neither MX
 *                                     nor address records: 550 5.1.8;
 *                                     null MX (RFC 7505): 550 5.7.27
 *   reject_unknown_recipient_domain   the same for a recipient's domain
 *                                     that is not one of ours: 550 5.1.2;
 *                                     null MX: 556 5.1.10
 *
 * A temporary DNS failure never refuses for good: the domain checks and
 * reject_unknown_client answer 450 4.x.x (try again), the list checks
 * take no decision (a list that does not answer lists nobody, as in
 * Postfix). Each restriction answers POLICY_PENDING and finishes from the
 * DNS callback on the worker's loop (the resolver's own deadlines bound
 * the wait; policy_timeout bounds the whole run).
 *
 * Input: the client's address, HELO-free; the sender's and recipients'
 * domains from the dialogue (untrusted, bounded by the SMTP parser); the
 * answers through src/dns (bounded there). Runs in the smtp worker.
 */
#include <stdlib.h>
#include <string.h>

#include "../dns/dns_check.h"
#include "../lib/config.h"
#include "../lib/log.h"
#include "../lib/xalloc.h"
#include "dnsbl.h"
#include "restrictions.h"

/* What a pending restriction holds: one of three kinds of lookup. */
struct dns_wait {
	struct restriction_ctx *ctx;
	struct dnsbl_sites sites;         /* the one list of an rbl restriction */
	struct dnsbl_eval *eval;
	struct dns_fcrdns *fcrdns;
	struct dns_domain_check *domain;
	bool recipient;                   /* domain check: of the recipient */
	char what[ADDR_DOMAIN_MAX + 1];   /* the domain asked about */
};

static struct dns_resolver *resolver(struct restriction_ctx *ctx)
{
	return restriction_env(ctx)->dns;
}

static void wait_free(struct dns_wait *w)
{
	dnsbl_free(&w->eval);
	dns_fcrdns_cancel(&w->fcrdns);
	dns_domain_check_cancel(&w->domain);
	dnsbl_sites_free(&w->sites);
	free(w);
}

static void cancel_wait(struct restriction_ctx *ctx)
{
	struct dns_wait *w = restriction_state(ctx);
	if (w != NULL)
		wait_free(w);
}

static void finish(struct dns_wait *w, enum policy_verdict verdict)
{
	struct restriction_ctx *ctx = w->ctx;
	restriction_set_state(ctx, NULL);
	wait_free(w);
	restriction_finish(ctx, verdict);
}

/* With no resolver (a worker whose lists name no DNS restriction cannot
 * reach here: the worker makes one when any list does) decide nothing. */
static enum policy_verdict no_dns(struct restriction_ctx *ctx)
{
	log_warn("%s: no DNS resolver in this worker: restriction skipped",
		    restriction_list_name(restriction_list(ctx)));
	return POLICY_DUNNO;
}

/* ---- the lists: reject_rbl_client, reject_rhsbl_sender ---------------------------- */

static const char *check_list_arg(const char *arg)
{
	struct dnsbl_site site;
	const char *err = NULL;
	if (!dnsbl_site_parse(arg, &site, &err))
		return err;
	if (site.weight != 1)
		return "a weight (*N) counts only in dnsbl_sites";
	return NULL;
}

static void list_answered(void *arg, const struct dnsbl_verdict *v)
{
	struct dns_wait *w = arg;
	struct restriction_ctx *ctx = w->ctx;
	if (v->hit_count == 0) {
		if (v->failed_count > 0)
			restriction_detail(ctx, "dnsbl=%s lookup=failed", w->sites.items[0].domain);
		finish(w, POLICY_DUNNO);
		return;
	}
	const struct policy_request *req = restriction_request(ctx);
	const struct dnsbl_hit *hit = v->top != NULL ? v->top : &v->hits[0];
	bool sender = w->what[0] != '\0';
	struct dnsbl_vars vars = {
		.client_address = req->client_addr,
		.rbl_class = sender ? "Sender domain" : "Client host",
		.rbl_what = v->what,
		.rbl_domain = hit->site->domain,
		.rbl_txt = hit->txt,
		.rbl_answer = hit->answer,
	};
	char text[512];
	dnsbl_template_expand(restriction_env(ctx)->cfg->dnsbl_reply, &vars, text, sizeof(text));
	restriction_detail(ctx, "dnsbl=%s answer=%s", hit->site->domain, hit->answer);
	restriction_reply(ctx, 554, "5.7.1", sender ? "rhsbl" : "rbl", "%s", text);
	finish(w, POLICY_REJECT);
}

static enum policy_verdict start_list(struct restriction_ctx *ctx, const char *domain)
{
	if (resolver(ctx) == NULL)
		return no_dns(ctx);
	struct dns_wait *w = xcalloc(1, sizeof(*w));
	w->ctx = ctx;
	w->sites.count = 1;
	w->sites.items = xcalloc(1, sizeof(*w->sites.items));
	const char *err = NULL;
	if (!dnsbl_site_parse(restriction_arg(ctx), &w->sites.items[0], &err)) {
		wait_free(w); /* checked when the configuration was loaded */
		return POLICY_DUNNO;
	}
	unsigned timeout_ms = (unsigned)restriction_env(ctx)->cfg->dnsbl_timeout * 1000u;
	const struct policy_request *req = restriction_request(ctx);
	if (domain != NULL) {
		snprintf(w->what, sizeof(w->what), "%s", domain);
		w->eval = dnsbl_start_domain(resolver(ctx), &w->sites, domain, timeout_ms);
	} else {
		w->eval = dnsbl_start_client(resolver(ctx), &w->sites,
					     (const struct sockaddr *)&req->client, timeout_ms);
	}
	restriction_set_state(ctx, w);
	dnsbl_notify(w->eval, list_answered, w);
	return POLICY_PENDING;
}

static enum policy_verdict run_reject_rbl_client(struct restriction_ctx *ctx)
{
	return start_list(ctx, NULL);
}

static enum policy_verdict run_reject_rhsbl_sender(struct restriction_ctx *ctx)
{
	const struct policy_request *req = restriction_request(ctx);
	if (!req->has_sender || req->sender.is_null || req->sender.domain[0] == '\0' ||
	    req->sender.domain_literal)
		return POLICY_DUNNO;
	return start_list(ctx, req->sender.domain);
}

/* ---- reject_unknown_client ----------------------------------------------------------- */

static void fcrdns_answered(void *arg, const struct dns_fcrdns_result *r)
{
	struct dns_wait *w = arg;
	struct restriction_ctx *ctx = w->ctx;
	const struct policy_request *req = restriction_request(ctx);
	w->fcrdns = NULL; /* gone once it has called back */
	if (r->status == DNS_FCRDNS_CONFIRMED) {
		finish(w, POLICY_DUNNO);
		return;
	}
	restriction_detail(ctx, "fcrdns=%s%s%s", dns_fcrdns_status_name(r->status),
			   r->name[0] ? " ptr=" : "", r->name);
	if (r->status == DNS_FCRDNS_TEMPFAIL)
		restriction_reply(ctx, 450, "4.7.25", "unknown_client",
				  "Client host rejected: cannot find your reverse hostname, [%s] "
				  "(DNS lookup failed, try again later)", req->client_addr);
	else
		restriction_reply(ctx, 450, "4.7.25", "unknown_client",
				  "Client host rejected: cannot find your hostname, [%s]",
				  req->client_addr);
	finish(w, POLICY_TEMPFAIL);
}

static enum policy_verdict run_reject_unknown_client(struct restriction_ctx *ctx)
{
	if (resolver(ctx) == NULL)
		return no_dns(ctx);
	struct dns_wait *w = xcalloc(1, sizeof(*w));
	w->ctx = ctx;
	restriction_set_state(ctx, w);
	w->fcrdns = dns_fcrdns_start(resolver(ctx),
				     (const struct sockaddr *)&restriction_request(ctx)->client,
				     fcrdns_answered, w);
	return POLICY_PENDING;
}

/* ---- reject_unknown_sender_domain, reject_unknown_recipient_domain ---------------------- */

static void domain_answered(void *arg, enum dns_domain_status status)
{
	struct dns_wait *w = arg;
	struct restriction_ctx *ctx = w->ctx;
	const struct policy_request *req = restriction_request(ctx);
	w->domain = NULL; /* gone once it has called back */
	if (status == DNS_DOMAIN_OK) {
		finish(w, POLICY_DUNNO);
		return;
	}
	char shown[ADDR_PATH_MAX + 1];
	address_format(w->recipient ? &req->rcpt : &req->sender, shown, sizeof(shown));
	const char *role = w->recipient ? "Recipient" : "Sender";
	const char *reason = w->recipient ? "unknown_recipient_domain" : "unknown_sender_domain";
	restriction_detail(ctx, "domain=%s dns=%s", w->what, dns_domain_status_name(status));
	enum policy_verdict verdict = POLICY_REJECT;
	switch (status) {
	case DNS_DOMAIN_TEMPFAIL:
		restriction_reply(ctx, 450, w->recipient ? "4.1.2" : "4.1.8", reason,
				  "<%s>: %s address rejected: Domain not found (DNS lookup failed, "
				  "try again later)", shown, role);
		verdict = POLICY_TEMPFAIL;
		break;
	case DNS_DOMAIN_NULL_MX:
		/* RFC 7505 section 4.2 and 4.3 */
		if (w->recipient)
			restriction_reply(ctx, 556, "5.1.10", reason,
					  "<%s>: Recipient address rejected: Domain does not accept "
					  "mail (null MX)", shown);
		else
			restriction_reply(ctx, 550, "5.7.27", reason,
					  "<%s>: Sender address rejected: Domain does not accept "
					  "mail (null MX)", shown);
		break;
	default:
		restriction_reply(ctx, 550, w->recipient ? "5.1.2" : "5.1.8", reason,
				  "<%s>: %s address rejected: Domain not found", shown, role);
		break;
	}
	finish(w, verdict);
}

static enum policy_verdict start_domain(struct restriction_ctx *ctx, const struct mail_address *a,
					bool recipient)
{
	if (a->is_null || a->domain[0] == '\0' || a->domain_literal)
		return POLICY_DUNNO;
	if (resolver(ctx) == NULL)
		return no_dns(ctx);
	struct dns_wait *w = xcalloc(1, sizeof(*w));
	w->ctx = ctx;
	w->recipient = recipient;
	snprintf(w->what, sizeof(w->what), "%s", a->domain);
	restriction_set_state(ctx, w);
	w->domain = dns_domain_check_start(resolver(ctx), w->what, domain_answered, w);
	return POLICY_PENDING;
}

static enum policy_verdict run_reject_unknown_sender_domain(struct restriction_ctx *ctx)
{
	const struct policy_request *req = restriction_request(ctx);
	if (!req->has_sender)
		return POLICY_DUNNO;
	return start_domain(ctx, &req->sender, false);
}

/* Not for the domains postern is the final destination of (as Postfix). */
static enum policy_verdict run_reject_unknown_recipient_domain(struct restriction_ctx *ctx)
{
	const struct policy_request *req = restriction_request(ctx);
	if (!req->has_rcpt || strlist_contains_nocase(&restriction_env(ctx)->cfg->local_domains,
						      req->rcpt.domain))
		return POLICY_DUNNO;
	return start_domain(ctx, &req->rcpt, true);
}

/* ---- the vocabulary ---------------------------------------------------------------------- */

#define DNS_TYPE(name, arg, needs, fn, check) \
	{ name, arg, (needs) | RESTRICTION_NEEDS_DNS, fn, cancel_wait, check, NULL }

static const struct restriction_type dns_restrictions[] = {
	DNS_TYPE("reject_rbl_client", RESTRICTION_WORD_ARG, 0, run_reject_rbl_client,
		 check_list_arg),
	DNS_TYPE("reject_rhsbl_sender", RESTRICTION_WORD_ARG, 0, run_reject_rhsbl_sender,
		 check_list_arg),
	DNS_TYPE("reject_unknown_client", RESTRICTION_NO_ARG, 0, run_reject_unknown_client, NULL),
	DNS_TYPE("reject_unknown_client_hostname", RESTRICTION_NO_ARG, 0,
		 run_reject_unknown_client, NULL),
	DNS_TYPE("reject_unknown_sender_domain", RESTRICTION_NO_ARG, 0,
		 run_reject_unknown_sender_domain, NULL),
	DNS_TYPE("reject_unknown_recipient_domain", RESTRICTION_NO_ARG, RESTRICTION_NEEDS_RCPT,
		 run_reject_unknown_recipient_domain, NULL),
};

void restrictions_dns_provide(void)
{
	for (size_t i = 0; i < sizeof(dns_restrictions) / sizeof(dns_restrictions[0]); i++)
		if (!restrictions_provide(&dns_restrictions[i]))
			log_fatal("restriction %s provided twice", dns_restrictions[i].name);
}

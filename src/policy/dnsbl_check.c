/*
 * dnsbl_check.c - DNS blocklists as checks of the smtp worker, until the
 * restriction lists (reject_rbl_client, reject_rhsbl_sender) call the
 * same evaluation (dnsbl.h):
 *
 *   dnsbl_sites         at POLICY_CONNECT, the client's address; the
 *                       banner waits for the lists (at most
 *                       dnsbl_timeout). A listed client gets its banner
 *                       and its refusal at every RCPT (at_rcpt), as
 *                       Postfix's postscreen and smtpd do by default;
 *   rhsbl_sender_sites  at POLICY_MAIL, the sender's domain (not for <>),
 *                       refused at MAIL.
 * Clients in mynetworks and authenticated clients are never looked up.
 * Listed: the weighted sum reaches dnsbl_threshold. Then dnsbl_action:
 * reject (554 5.7.1), tempfail (451 4.7.1, rblsmtpd's temporary mode) or
 * warn (logged only). A list that does not answer counts as not listing
 * unless dnsbl_fail_open = no, which makes it a 451 4.7.1. The refusal's
 * text is dnsbl_reply expanded for the heaviest list that lists.
 *
 * Input: the client's address and the sender's domain (untrusted), the
 * lists' answers through dnsbl.c, the dnsbl_* keys (checked with FILE:LINE
 * by dnsbl_config_check). Runs in the unprivileged smtp worker.
 */
#include "dnsbl.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "../lib/config.h"
#include "../lib/diag.h"
#include "../lib/log.h"
#include "../lib/xalloc.h"
#include "policy.h"

struct dnsbl_checks {
	const struct config *cfg;
	struct dns_resolver *r;
	struct dnsbl_sites client_sites;
	struct dnsbl_sites sender_sites;
};

/* One check waiting for its evaluation. */
struct waiting {
	struct dnsbl_checks *c;
	struct policy_call *call;
	struct dnsbl_eval *eval;
	bool sender;
};

/* ---- configuration ------------------------------------------------------------------ */

static void problem(const struct config *cfg, const char *key, FILE *errors, const char *fmt, ...)
	PRINTF_LIKE(4, 5);

static void problem(const struct config *cfg, const char *key, FILE *errors, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	diag_vprint(errors, cfg->path, config_key_line(cfg, key), fmt, ap);
	va_end(ap);
}

static int check_sites(const struct config *cfg, const char *key, const strlist_t *list,
		       FILE *errors)
{
	struct dnsbl_sites sites;
	const char *err = NULL, *bad = NULL;
	if (dnsbl_sites_parse(list, &sites, &err, &bad)) {
		dnsbl_sites_free(&sites);
		return 0;
	}
	problem(cfg, key, errors, "%s: \"%s\": %s", key, bad, err);
	return 1;
}

int dnsbl_config_check(const struct config *cfg, FILE *errors)
{
	int problems = check_sites(cfg, "dnsbl_sites", &cfg->dnsbl_sites, errors);
	problems += check_sites(cfg, "rhsbl_sender_sites", &cfg->rhsbl_sender_sites, errors);
	const char *err = dnsbl_template_check(cfg->dnsbl_reply);
	if (err != NULL) {
		problem(cfg, "dnsbl_reply", errors, "dnsbl_reply: %s", err);
		problems++;
	}
	if (dnsbl_configured(cfg))
		problems += dns_config_check(cfg, errors);
	if (dnsbl_configured(cfg) && cfg->dnsbl_timeout >= cfg->policy_timeout) {
		problem(cfg, "dnsbl_timeout", errors,
			"dnsbl_timeout: must be shorter than policy_timeout (%llus)",
			(unsigned long long)cfg->policy_timeout);
		problems++;
	}
	return problems;
}

bool dnsbl_configured(const struct config *cfg)
{
	return cfg->dnsbl_sites.count > 0 || cfg->rhsbl_sender_sites.count > 0;
}

/* ---- the verdict ----------------------------------------------------------------------- */

static enum policy_verdict refuse(struct policy_call *call, bool temporary, const char *reason,
				  const char *text)
{
	policy_call_set(call, temporary ? 451 : 554, temporary ? "4.7.1" : "5.7.1", reason,
			"%s", text);
	return temporary ? POLICY_TEMPFAIL : POLICY_REJECT;
}

static enum policy_verdict decide(struct waiting *w, const struct dnsbl_verdict *v)
{
	const struct config *cfg = w->c->cfg;
	const struct policy_request *req = policy_call_request(w->call);
	const char *what = w->sender ? "rhsbl" : "dnsbl";
	char described[1024], text[512];
	bool listed = v->hit_count > 0 && v->score >= (int64_t)cfg->dnsbl_threshold;
	dnsbl_verdict_describe(v, described, sizeof(described));
	const char *prefix = req->queue_id[0] != '\0' ? req->queue_id : "";
	const char *sep = req->queue_id[0] != '\0' ? ": " : "";
	if (!listed) {
		bool fail = v->failed_count > 0 && cfg->dnsbl_fail_open == CONFIG_NO;
		if (v->hit_count > 0 || v->failed_count > 0)
			log_info("%s%sclient=%s %s: %s score=%d threshold=%llu: %s%s", prefix, sep,
				 req->client_addr, what, v->what, v->score,
				 (unsigned long long)cfg->dnsbl_threshold, described,
				 fail ? " (lists unanswered: tempfail)" : " (passed)");
		if (!fail)
			return POLICY_DUNNO;
		return refuse(w->call, true, w->sender ? "rhsbl_unavailable" : "dnsbl_unavailable",
			      "Service temporarily unavailable: blocklist lookup failed, try again later");
	}
	static const char *const actions[] = { "reject", "tempfail", "warn" };
	log_info("%s%sclient=%s %s: %s listed score=%d threshold=%llu action=%s: %s", prefix, sep,
		 req->client_addr, what, v->what, v->score,
		 (unsigned long long)cfg->dnsbl_threshold, actions[cfg->dnsbl_action], described);
	if (cfg->dnsbl_action == DNSBL_ACTION_WARN)
		return POLICY_DUNNO;
	const struct dnsbl_hit *top = v->top != NULL ? v->top : &v->hits[0];
	struct dnsbl_vars vars = {
		.client_address = req->client_addr,
		.rbl_class = w->sender ? "Sender domain" : "Client host",
		.rbl_what = v->what,
		.rbl_domain = top->site->domain,
		.rbl_txt = top->txt,
		.rbl_answer = top->answer,
	};
	dnsbl_template_expand(cfg->dnsbl_reply, &vars, text, sizeof(text));
	return refuse(w->call, cfg->dnsbl_action == DNSBL_ACTION_TEMPFAIL, what, text);
}

static void evaluated(void *arg, const struct dnsbl_verdict *v)
{
	struct waiting *w = arg;
	struct policy_call *call = w->call;
	enum policy_verdict verdict = decide(w, v);
	if (!w->sender && policy_refuses(verdict))
		policy_call_reply(call)->at_rcpt = true;
	dnsbl_free(&w->eval);
	free(w);
	policy_call_finish(call, verdict);
}

static void cancel(struct policy_call *call, void *arg)
{
	struct waiting *w = policy_call_state(call);
	(void)arg;
	if (w == NULL)
		return;
	dnsbl_free(&w->eval);
	free(w);
}

/* Clients of ours are never looked up. */
static bool exempt(const struct config *cfg, const struct policy_request *req)
{
	return req->auth_user != NULL ||
	       cidr_list_match(&cfg->mynetworks, (const struct sockaddr *)&req->client);
}

static enum policy_verdict wait_for(struct policy_call *call, struct dnsbl_checks *c,
				    struct dnsbl_eval *eval, bool sender)
{
	struct waiting *w = xcalloc(1, sizeof(*w));
	w->c = c;
	w->call = call;
	w->eval = eval;
	w->sender = sender;
	policy_call_set_state(call, w);
	dnsbl_notify(eval, evaluated, w);
	return POLICY_PENDING;
}

static enum policy_verdict client_check(struct policy_call *call, void *arg)
{
	struct dnsbl_checks *c = arg;
	const struct policy_request *req = policy_call_request(call);
	if (exempt(c->cfg, req))
		return POLICY_DUNNO;
	struct dnsbl_eval *eval = dnsbl_start_client(c->r, &c->client_sites,
						     (const struct sockaddr *)&req->client,
						     (unsigned)c->cfg->dnsbl_timeout * 1000u);
	return wait_for(call, c, eval, false);
}

static enum policy_verdict sender_check(struct policy_call *call, void *arg)
{
	struct dnsbl_checks *c = arg;
	const struct policy_request *req = policy_call_request(call);
	if (!req->has_sender || req->sender.domain[0] == '\0' || req->sender.domain_literal ||
	    exempt(c->cfg, req))
		return POLICY_DUNNO;
	struct dnsbl_eval *eval = dnsbl_start_domain(c->r, &c->sender_sites, req->sender.domain,
						     (unsigned)c->cfg->dnsbl_timeout * 1000u);
	return wait_for(call, c, eval, true);
}

/* ---- set-up ----------------------------------------------------------------------------- */

struct dnsbl_checks *dnsbl_checks_new(const struct config *cfg, struct dns_resolver *r)
{
	struct dnsbl_checks *c = xcalloc(1, sizeof(*c));
	const char *err = NULL, *bad = NULL;
	c->cfg = cfg;
	c->r = r;
	if (!dnsbl_sites_parse(&cfg->dnsbl_sites, &c->client_sites, &err, &bad) ||
	    !dnsbl_sites_parse(&cfg->rhsbl_sender_sites, &c->sender_sites, &err, &bad))
		log_panic("dnsbl: \"%s\" passed the configuration check: %s", bad, err);
	return c;
}

void dnsbl_checks_register(struct dnsbl_checks *c, struct policy_env *env)
{
	if (c->client_sites.count > 0) {
		struct policy_check check = { "dnsbl", client_check, cancel, c };
		policy_env_add(env, POLICY_CONNECT, &check);
	}
	if (c->sender_sites.count > 0) {
		struct policy_check check = { "rhsbl", sender_check, cancel, c };
		policy_env_add(env, POLICY_MAIL, &check);
	}
}

void dnsbl_checks_free(struct dnsbl_checks **cp)
{
	struct dnsbl_checks *c = *cp;
	if (c == NULL)
		return;
	*cp = NULL;
	dnsbl_sites_free(&c->client_sites);
	dnsbl_sites_free(&c->sender_sites);
	free(c);
}

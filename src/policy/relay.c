/*
 * relay.c - relay control at RCPT TO (RFC 2505, RFC 5321 section 3.6),
 * as two parts the restriction lists use (restrictions.h):
 * reject_unauth_destination refuses a domain that is neither local nor
 * a relay domain (the default recipient_restrictions put
 * permit_mynetworks and permit_auth before it), and the unlisted-
 * recipient check that follows every recipient list accepts a local
 * recipient only when the mailbox exists (user or alias) or its domain
 * has a catch-all address (domains_file). postern never
 * routes on '%', '!', a second '@', a source route or a quoted local
 * part: those are refused with 5.7.1 in the local and relay domains,
 * whoever the client is, unless they name an existing local mailbox
 * exactly.
 * Input: the parsed RCPT address (untrusted) and the client address.
 */
#include "policy.h"

#include <stdio.h>
#include <string.h>

static bool refuse(struct policy_reply *r, int code, const char *status, const char *reason,
		   const char *text, const char *addr)
{
	policy_reply_set(r, code, status, reason, "<%s>: %s", addr, text);
	return true;
}

bool policy_local_key(const struct config *cfg, const struct mail_address *a,
		      char *key, size_t keylen)
{
	char local[ADDR_LOCAL_MAX + 1];
	if (!address_unquoted_local(a, local, sizeof(local)))
		return false;
	str_lower(local);
	const char *domain = a->domain;
	if (domain[0] == '\0') { /* RFC 5321 4.1.1.3: "<Postmaster>" */
		if (cfg->local_domains.count == 0)
			return false;
		domain = cfg->local_domains.items[0];
	}
	int n = snprintf(key, keylen, "%s@%s", local, domain);
	return n > 0 && (size_t)n < keylen;
}

/* Does the local part try to route elsewhere ('%', '!', '@', quoting that
 * does not unquote to a plain name)? */
static bool local_part_routes(const struct mail_address *a)
{
	char local[ADDR_LOCAL_MAX + 1];
	if (!address_unquoted_local(a, local, sizeof(local)))
		return true;
	return strpbrk(a->local, "%!@") != NULL;
}

static bool is_local_domain(const struct config *cfg, const struct mail_address *a)
{
	return a->domain[0] == '\0' ||
	       (!a->domain_literal && strlist_contains_nocase(&cfg->local_domains, a->domain));
}

bool policy_unauth_destination(const struct config *cfg, const struct mail_address *a,
			       bool tempfail, struct policy_reply *r)
{
	char shown[ADDR_PATH_MAX + 1];
	if (is_local_domain(cfg, a) ||
	    (!a->domain_literal && strlist_contains_nocase(&cfg->relay_domains, a->domain)))
		return false;
	address_format(a, shown, sizeof(shown));
	if (tempfail)
		return refuse(r, 450, "4.7.1", "relay_denied", "Relay access denied", shown);
	return refuse(r, 554, "5.7.1", "relay_denied", "Relay access denied", shown);
}

bool policy_recipient_unlisted(const struct policy_env *env, const struct mail_address *a,
			       struct policy_reply *r)
{
	const struct config *cfg = env->cfg;
	char shown[ADDR_PATH_MAX + 1], key[ADDR_PATH_MAX + 1];
	address_format(a, shown, sizeof(shown));
	if (is_local_domain(cfg, a)) {
		if (policy_local_key(cfg, a, key, sizeof(key)) &&
		    (recipients_is_user(env->rcpt_tables, key) ||
		     recipients_alias(env->rcpt_tables, key) != NULL ||
		     recipients_catch_all(env->rcpt_tables, key) != NULL))
			return false;
		if (local_part_routes(a))
			return refuse(r, 554, "5.7.1", "relay_denied", "Relay access denied", shown);
		return refuse(r, 550, "5.1.1", "unknown_user",
			      "Recipient address rejected: User unknown", shown);
	}
	if (!a->domain_literal && strlist_contains_nocase(&cfg->relay_domains, a->domain) &&
	    local_part_routes(a))
		return refuse(r, 554, "5.7.1", "relay_denied", "Relay access denied", shown);
	return false;
}

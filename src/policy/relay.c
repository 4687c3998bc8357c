/*
 * relay.c - relay control at RCPT TO (RFC 2505, RFC 5321 section 3.6).
 *
 * A recipient is accepted when its domain is local and the mailbox exists
 * (user or alias), when its domain is a relay domain, or when the client
 * is in mynetworks (later: authenticated). postern never routes on '%',
 * '!', a second '@', a source route or a quoted local part: those are
 * refused with 5.7.1 unless they name an existing local mailbox exactly.
 * Input: the parsed RCPT address (untrusted) and the client address.
 */
#include "policy.h"

#include <stdio.h>
#include <string.h>

static enum policy_verdict refuse(struct policy_call *call, int code, const char *status,
				  const char *reason, const char *text, const char *addr)
{
	policy_call_set(call, code, status, reason, "<%s>: %s", addr, text);
	return POLICY_REJECT;
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

enum policy_verdict policy_check_recipient(struct policy_call *call, void *arg)
{
	const struct policy_request *req = policy_call_request(call);
	const struct policy_env *env = policy_call_env(call);
	const struct config *cfg = env->cfg;
	const struct mail_address *a = &req->rcpt;
	char shown[ADDR_PATH_MAX + 1], key[ADDR_PATH_MAX + 1];
	(void)arg;
	if (!req->has_rcpt)
		return POLICY_DUNNO;
	address_format(a, shown, sizeof(shown));

	if (is_local_domain(cfg, a)) {
		if (policy_local_key(cfg, a, key, sizeof(key)) &&
		    (recipients_is_user(env->rcpt_tables, key) ||
		     recipients_alias(env->rcpt_tables, key) != NULL))
			return POLICY_DUNNO; /* allowed: later checks still run */
		if (local_part_routes(a))
			return refuse(call, 554, "5.7.1", "relay_denied", "Relay access denied", shown);
		return refuse(call, 550, "5.1.1", "unknown_user",
			      "Recipient address rejected: User unknown", shown);
	}
	if (!a->domain_literal && strlist_contains_nocase(&cfg->relay_domains, a->domain)) {
		if (local_part_routes(a))
			return refuse(call, 554, "5.7.1", "relay_denied", "Relay access denied", shown);
		return POLICY_DUNNO;
	}
	if (cidr_list_match(&cfg->mynetworks, (const struct sockaddr *)&req->client) ||
	    req->auth_user != NULL)
		return POLICY_DUNNO;
	return refuse(call, 554, "5.7.1", "relay_denied", "Relay access denied", shown);
}

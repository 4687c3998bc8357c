/*
 * restrictions_builtin.c - the restrictions postern knows itself (see
 * restrictions.h and docs/postern.conf.5, RESTRICTIONS), with the reply
 * codes Postfix uses by default: reject 554 5.7.1, defer 450 4.7.1,
 * reject_unauth_destination 554 5.7.1 (defer_unauth_destination 450),
 * the FQDN checks 504 5.5.2, reject_invalid_helo 501 5.5.2, access maps
 * 554/450 unless the value gives its own. The names of the DNS
 * restrictions are known, so that naming them is a clear error in a
 * process that was not given them (restrictions_dns.c provides them,
 * through restrictions_provide, from main()).
 *
 * RFCs: 5321 sections 2.3.5 (domain names), 4.1.3 (address literals),
 * 4.1.1.3 (<Postmaster>). Input: requests with untrusted client data
 * (HELO names, addresses), bounded by the SMTP parser. Runs in the smtp
 * worker.
 */
#include <arpa/inet.h>
#include <string.h>
#include <strings.h>

#include "../lib/log.h"
#include "../lib/xalloc.h"
#include "access.h"
#include "restrictions_int.h"

/* ---- permit, reject, defer ------------------------------------------------------ */

static enum policy_verdict run_permit(struct restriction_ctx *ctx)
{
	(void)ctx;
	return POLICY_ACCEPT;
}

static enum policy_verdict run_reject(struct restriction_ctx *ctx)
{
	char subject[ADDR_PATH_MAX + 64];
	restriction_subject(ctx, restriction_list(ctx), subject, sizeof(subject));
	restriction_reply(ctx, 554, "5.7.1", "reject", "%s: Access denied", subject);
	return POLICY_REJECT;
}

static enum policy_verdict run_defer(struct restriction_ctx *ctx)
{
	char subject[ADDR_PATH_MAX + 64];
	restriction_subject(ctx, restriction_list(ctx), subject, sizeof(subject));
	restriction_reply(ctx, 450, "4.7.1", "defer", "%s: Try again later", subject);
	return POLICY_TEMPFAIL;
}

static enum policy_verdict run_permit_mynetworks(struct restriction_ctx *ctx)
{
	const struct policy_request *req = restriction_request(ctx);
	const struct config *cfg = restriction_env(ctx)->cfg;
	return cidr_list_match(&cfg->mynetworks, (const struct sockaddr *)&req->client)
		       ? POLICY_ACCEPT : POLICY_DUNNO;
}

/* A client that logged in with SMTP AUTH (src/smtp/auth.c) is let
 * through. */
static enum policy_verdict run_permit_auth(struct restriction_ctx *ctx)
{
	return restriction_request(ctx)->auth_user != NULL ? POLICY_ACCEPT : POLICY_DUNNO;
}

static enum policy_verdict unauth_destination(struct restriction_ctx *ctx, bool tempfail)
{
	const struct policy_request *req = restriction_request(ctx);
	struct policy_reply r = { 0 };
	if (!req->has_rcpt ||
	    !policy_unauth_destination(restriction_env(ctx)->cfg, &req->rcpt, tempfail, &r))
		return POLICY_DUNNO;
	restriction_reply(ctx, r.code, r.status, r.reason, "%s", r.text);
	return tempfail ? POLICY_TEMPFAIL : POLICY_REJECT;
}

static enum policy_verdict run_reject_unauth_destination(struct restriction_ctx *ctx)
{
	return unauth_destination(ctx, false);
}

static enum policy_verdict run_defer_unauth_destination(struct restriction_ctx *ctx)
{
	return unauth_destination(ctx, true);
}

/* ---- access maps --------------------------------------------------------------- */

static enum policy_verdict access_result(struct restriction_ctx *ctx,
					 enum restriction_list_id about, const char *value)
{
	struct access_result r;
	char subject[ADDR_PATH_MAX + 64];
	const char *why = access_parse(value, &r);
	if (why != NULL) {
		/* Values are checked when the map is read; a $N capture
		 * cannot change the action. Still: fail safe, and say why. */
		log_warn("map %s: value \"%s\": %s", map_name(restriction_map(ctx)), value, why);
		restriction_reply(ctx, 451, "4.3.5", "map_error", "Server configuration error");
		return POLICY_TEMPFAIL;
	}
	restriction_subject(ctx, about, subject, sizeof(subject));
	switch (r.action) {
	case ACCESS_OK:
		return POLICY_ACCEPT;
	case ACCESS_DUNNO:
		return POLICY_DUNNO;
	case ACCESS_REFUSE:
		restriction_reply(ctx, r.code, r.status, "", "%s: %s", subject,
				  r.text[0] != '\0' ? r.text
				  : r.code >= 500 ? "Access denied" : "Try again later");
		return r.code >= 500 ? POLICY_REJECT : POLICY_TEMPFAIL;
	case ACCESS_DISCARD:
		restriction_reply(ctx, 250, "2.0.0", "", "%s",
				  r.text[0] != '\0' ? r.text : "discarded by an access map");
		return POLICY_DISCARD;
	case ACCESS_HOLD:
		restriction_reply(ctx, 250, "2.0.0", "", "%s",
				  r.text[0] != '\0' ? r.text : "held by an access map");
		return POLICY_HOLD;
	case ACCESS_WARN:
		restriction_log_warn(ctx, r.text[0] != '\0' ? r.text : "access map warning");
		return POLICY_DUNNO;
	}
	return POLICY_DUNNO;
}

static enum policy_verdict run_access(struct restriction_ctx *ctx, enum restriction_list_id about)
{
	const struct policy_request *req = restriction_request(ctx);
	struct map *m = restriction_map(ctx);
	buf_t key = BUF_INIT;
	const char *value = NULL;
	switch (about) {
	case RLIST_CLIENT:
		value = access_lookup_client(m, req->client_addr, req->client_name, &key);
		break;
	case RLIST_HELO:
		if (req->helo != NULL)
			value = access_lookup_name(m, req->helo, &key);
		break;
	case RLIST_SENDER:
		if (req->has_sender)
			value = access_lookup_address(m, &req->sender, &key);
		break;
	default:
		if (req->has_rcpt)
			value = access_lookup_address(m, &req->rcpt, &key);
		break;
	}
	enum policy_verdict v = POLICY_DUNNO;
	if (value != NULL) {
		restriction_detail(ctx, "map=%s key=%s", map_name(m), buf_cstr(&key));
		v = access_result(ctx, about, value);
	}
	buf_free(&key);
	return v;
}

static enum policy_verdict run_check_client_access(struct restriction_ctx *ctx)
{
	return run_access(ctx, RLIST_CLIENT);
}

static enum policy_verdict run_check_helo_access(struct restriction_ctx *ctx)
{
	return run_access(ctx, RLIST_HELO);
}

static enum policy_verdict run_check_sender_access(struct restriction_ctx *ctx)
{
	return run_access(ctx, RLIST_SENDER);
}

static enum policy_verdict run_check_recipient_access(struct restriction_ctx *ctx)
{
	return run_access(ctx, RLIST_RECIPIENT);
}

/* ---- names ----------------------------------------------------------------------- */

/* "[192.0.2.1]" or "[IPv6:2001:db8::1]" (RFC 5321 4.1.3). */
static bool address_literal(const char *s)
{
	size_t len = strlen(s);
	char inner[INET6_ADDRSTRLEN + 8];
	unsigned char bin[16];
	if (len < 3 || s[0] != '[' || s[len - 1] != ']' || len - 2 >= sizeof(inner))
		return false;
	memcpy(inner, s + 1, len - 2);
	inner[len - 2] = '\0';
	if (strncasecmp(inner, "IPv6:", 5) == 0)
		return inet_pton(AF_INET6, inner + 5, bin) == 1;
	return inet_pton(AF_INET, inner, bin) == 1;
}

/* A bare address, as many clients send for want of a name. */
static bool bare_address(const char *s)
{
	unsigned char bin[16];
	return inet_pton(AF_INET, s, bin) == 1 || inet_pton(AF_INET6, s, bin) == 1;
}

/* A host name in RFC 1123's syntax (letters, digits, hyphens inside a
 * label, 1..63 per label, 255 in all; an underscore is tolerated, as it
 * is common), one trailing dot allowed. *labels_r: how many labels. */
static bool host_name(const char *s, unsigned *labels_r)
{
	size_t len = strlen(s), label = 0;
	unsigned labels = 0;
	if (len > 0 && s[len - 1] == '.')
		len--;
	if (len == 0 || len > 255)
		return false;
	for (size_t i = 0; i < len; i++) {
		char c = s[i];
		if (c == '.') {
			if (label == 0 || s[i - 1] == '-')
				return false;
			labels++;
			label = 0;
			continue;
		}
		bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
			  (c >= '0' && c <= '9') || c == '_' || (c == '-' && label > 0);
		if (!ok || ++label > 63)
			return false;
	}
	if (label == 0 || s[len - 1] == '-')
		return false;
	*labels_r = labels + 1;
	return true;
}

static enum policy_verdict run_reject_invalid_helo(struct restriction_ctx *ctx)
{
	const char *helo = restriction_request(ctx)->helo;
	unsigned labels;
	if (helo == NULL || address_literal(helo) || bare_address(helo) || host_name(helo, &labels))
		return POLICY_DUNNO;
	restriction_reply(ctx, 501, "5.5.2", "invalid_helo",
			  "<%s>: HELO name refused: not a valid host name or address literal", helo);
	return POLICY_REJECT;
}

static enum policy_verdict run_reject_non_fqdn_helo(struct restriction_ctx *ctx)
{
	const char *helo = restriction_request(ctx)->helo;
	unsigned labels = 0;
	if (helo == NULL || address_literal(helo) || bare_address(helo) ||
	    (host_name(helo, &labels) && labels >= 2))
		return POLICY_DUNNO;
	restriction_reply(ctx, 504, "5.5.2", "non_fqdn_helo",
			  "<%s>: HELO name refused: not a fully-qualified domain name", helo);
	return POLICY_REJECT;
}

/* Is the address's domain fully qualified? The null address, <Postmaster>
 * and address literals have nothing to qualify. */
static bool address_qualified(const struct mail_address *a)
{
	unsigned labels = 0;
	if (a->is_null || a->domain_literal)
		return true;
	if (a->domain[0] == '\0')
		return strcasecmp(a->local, "postmaster") == 0;
	if (a->utf8)
		return strchr(a->domain, '.') != NULL; /* RFC 6531: U-labels */
	return host_name(a->domain, &labels) && labels >= 2;
}

static enum policy_verdict run_reject_non_fqdn_sender(struct restriction_ctx *ctx)
{
	const struct policy_request *req = restriction_request(ctx);
	char shown[ADDR_PATH_MAX + 1];
	if (!req->has_sender || address_qualified(&req->sender))
		return POLICY_DUNNO;
	address_format(&req->sender, shown, sizeof(shown));
	restriction_reply(ctx, 504, "5.5.2", "non_fqdn_sender",
			  "<%s>: Sender address refused: the domain is not fully qualified", shown);
	return POLICY_REJECT;
}

static enum policy_verdict run_reject_non_fqdn_recipient(struct restriction_ctx *ctx)
{
	const struct policy_request *req = restriction_request(ctx);
	char shown[ADDR_PATH_MAX + 1];
	if (!req->has_rcpt || address_qualified(&req->rcpt))
		return POLICY_DUNNO;
	address_format(&req->rcpt, shown, sizeof(shown));
	restriction_reply(ctx, 504, "5.5.2", "non_fqdn_recipient",
			  "<%s>: Recipient address refused: the domain is not fully qualified",
			  shown);
	return POLICY_REJECT;
}

/* ---- the vocabulary ----------------------------------------------------------------- */

#define SYNC(name, arg, needs, fn) { name, arg, needs, fn, NULL, NULL, NULL }
#define NEEDS_DNS(name, arg, needs) { name, arg, needs, NULL, NULL, NULL, \
				      "needs dns: not available yet" }

const struct restriction_type restriction_warn_if_reject = {
	"warn_if_reject", RESTRICTION_NO_ARG, 0, NULL, NULL, NULL, NULL,
};
const struct restriction_type restriction_permit_mynetworks =
	SYNC("permit_mynetworks", RESTRICTION_NO_ARG, 0, run_permit_mynetworks);
const struct restriction_type restriction_permit_auth =
	SYNC("permit_auth", RESTRICTION_NO_ARG, 0, run_permit_auth);
const struct restriction_type restriction_reject_unauth_destination =
	SYNC("reject_unauth_destination", RESTRICTION_NO_ARG, RESTRICTION_NEEDS_RCPT,
	     run_reject_unauth_destination);
const struct restriction_type restriction_defer_unauth_destination =
	SYNC("defer_unauth_destination", RESTRICTION_NO_ARG, RESTRICTION_NEEDS_RCPT,
	     run_defer_unauth_destination);
const struct restriction_type restriction_reject =
	SYNC("reject", RESTRICTION_NO_ARG, 0, run_reject);
const struct restriction_type restriction_defer =
	SYNC("defer", RESTRICTION_NO_ARG, 0, run_defer);

static const struct restriction_type permit =
	SYNC("permit", RESTRICTION_NO_ARG, 0, run_permit);
static const struct restriction_type permit_sasl =
	SYNC("permit_sasl_authenticated", RESTRICTION_NO_ARG, 0, run_permit_auth);
static const struct restriction_type check_client_access =
	SYNC("check_client_access", RESTRICTION_MAP_ARG, 0, run_check_client_access);
static const struct restriction_type check_helo_access =
	SYNC("check_helo_access", RESTRICTION_MAP_ARG, 0, run_check_helo_access);
static const struct restriction_type check_sender_access =
	SYNC("check_sender_access", RESTRICTION_MAP_ARG, 0, run_check_sender_access);
static const struct restriction_type check_recipient_access =
	SYNC("check_recipient_access", RESTRICTION_MAP_ARG, RESTRICTION_NEEDS_RCPT,
	     run_check_recipient_access);
static const struct restriction_type reject_non_fqdn_helo =
	SYNC("reject_non_fqdn_helo", RESTRICTION_NO_ARG, 0, run_reject_non_fqdn_helo);
static const struct restriction_type reject_non_fqdn_helo_hostname =
	SYNC("reject_non_fqdn_helo_hostname", RESTRICTION_NO_ARG, 0, run_reject_non_fqdn_helo);
static const struct restriction_type reject_invalid_helo =
	SYNC("reject_invalid_helo", RESTRICTION_NO_ARG, 0, run_reject_invalid_helo);
static const struct restriction_type reject_invalid_helo_hostname =
	SYNC("reject_invalid_helo_hostname", RESTRICTION_NO_ARG, 0, run_reject_invalid_helo);
static const struct restriction_type reject_non_fqdn_sender =
	SYNC("reject_non_fqdn_sender", RESTRICTION_NO_ARG, 0, run_reject_non_fqdn_sender);
static const struct restriction_type reject_non_fqdn_recipient =
	SYNC("reject_non_fqdn_recipient", RESTRICTION_NO_ARG, RESTRICTION_NEEDS_RCPT,
	     run_reject_non_fqdn_recipient);

/* The DNS restrictions (issue 9's DNS layer provides them). */
static const struct restriction_type reject_rbl_client =
	NEEDS_DNS("reject_rbl_client", RESTRICTION_WORD_ARG, 0);
static const struct restriction_type reject_rhsbl_sender =
	NEEDS_DNS("reject_rhsbl_sender", RESTRICTION_WORD_ARG, 0);
static const struct restriction_type reject_unknown_client =
	NEEDS_DNS("reject_unknown_client", RESTRICTION_NO_ARG, 0);
static const struct restriction_type reject_unknown_client_hostname =
	NEEDS_DNS("reject_unknown_client_hostname", RESTRICTION_NO_ARG, 0);
static const struct restriction_type reject_unknown_sender_domain =
	NEEDS_DNS("reject_unknown_sender_domain", RESTRICTION_NO_ARG, 0);
static const struct restriction_type reject_unknown_recipient_domain =
	NEEDS_DNS("reject_unknown_recipient_domain", RESTRICTION_NO_ARG, RESTRICTION_NEEDS_RCPT);

const struct restriction_type *const restriction_builtins[] = {
	&permit, &restriction_reject, &restriction_defer, &restriction_warn_if_reject,
	&restriction_permit_mynetworks, &restriction_permit_auth, &permit_sasl,
	&restriction_reject_unauth_destination, &restriction_defer_unauth_destination,
	&check_client_access, &check_helo_access, &check_sender_access, &check_recipient_access,
	&reject_non_fqdn_helo, &reject_non_fqdn_helo_hostname, &reject_invalid_helo,
	&reject_invalid_helo_hostname, &reject_non_fqdn_sender, &reject_non_fqdn_recipient,
	&reject_rbl_client, &reject_rhsbl_sender, &reject_unknown_client,
	&reject_unknown_client_hostname, &reject_unknown_sender_domain,
	&reject_unknown_recipient_domain,
	NULL,
};

/*
 * milter_macros.c - the macros (SMFIC_MACRO) sent before each command:
 * the milter's own list for the stage when it gave one in the
 * negotiation, else postern's defaults (Postfix's, more or less), each
 * with its value from the policy request (the session's view: client,
 * TLS, login, envelope, queue id).
 *
 * Untrusted input: the milter's macro list (a name of at most 63 bytes,
 * at most 32 of them); the values are the client's, as the session
 * parsed them. Unprivileged smtp worker.
 */
#include "milter_int.h"

#include <stdio.h>
#include <string.h>

#include "../version.h"

/* Postfix's default lists, more or less: what each stage tells. */
static const char *const default_macros[MILTER_MACRO_STAGES] = {
	[MILTER_MACROS_CONNECT] = "j {daemon_name} v _ {client_addr} {client_port} "
				  "{client_name} {client_ptr}",
	[MILTER_MACROS_HELO] = "{tls_version} {cipher} {cipher_bits}",
	[MILTER_MACROS_MAIL] = "i {auth_type} {auth_authen} {mail_addr} {mail_host} "
			       "{mail_mailer}",
	[MILTER_MACROS_RCPT] = "{rcpt_addr} {rcpt_host} {rcpt_mailer}",
	[MILTER_MACROS_DATA] = "i",
	[MILTER_MACROS_EOM] = "i",
	[MILTER_MACROS_EOH] = "",
};

static const char *client_name(const struct policy_request *req)
{
	return req->client_name != NULL ? req->client_name : "unknown";
}

static bool local_domain(const struct milter_session *ms, const char *domain)
{
	return domain[0] == '\0' ||
	       strlist_contains_nocase(&ms->client->cfg->local_domains, domain);
}

/* The value of macro name (braces stripped), or NULL when it has none. */
static const char *macro_value(const struct milter_session *ms, const char *name, char *tmp,
			       size_t tmplen)
{
	const struct policy_request *req = ms->req;
	const struct config *cfg = ms->client->cfg;
	if (strcmp(name, "j") == 0)
		return cfg->hostname;
	if (strcmp(name, "v") == 0)
		return "postern " POSTERN_VERSION;
	if (strcmp(name, "daemon_name") == 0)
		return req->daemon_name[0] != '\0' ? req->daemon_name : "postern";
	if (strcmp(name, "_") == 0) {
		snprintf(tmp, tmplen, "%s [%s]", client_name(req), req->client_addr);
		return tmp;
	}
	if (strcmp(name, "client_addr") == 0)
		return req->client_addr;
	if (strcmp(name, "client_port") == 0) {
		snprintf(tmp, tmplen, "%u", req->client_port);
		return tmp;
	}
	if (strcmp(name, "client_name") == 0 || strcmp(name, "client_ptr") == 0)
		return client_name(req);
	if (strcmp(name, "i") == 0)
		return req->queue_id[0] != '\0' ? req->queue_id : NULL;
	if (strcmp(name, "auth_type") == 0)
		return req->auth_user != NULL && req->auth_mech[0] != '\0' ? req->auth_mech : NULL;
	if (strcmp(name, "auth_authen") == 0)
		return req->auth_user;
	if (strcmp(name, "tls_version") == 0)
		return req->tls_version[0] != '\0' ? req->tls_version : NULL;
	if (strcmp(name, "cipher") == 0)
		return req->tls_cipher[0] != '\0' ? req->tls_cipher : NULL;
	if (strcmp(name, "cipher_bits") == 0) {
		if (req->tls_cipher[0] == '\0')
			return NULL;
		snprintf(tmp, tmplen, "%d", req->tls_cipher_bits);
		return tmp;
	}
	bool mail = strncmp(name, "mail_", 5) == 0, rcpt = strncmp(name, "rcpt_", 5) == 0;
	if ((mail && !req->has_sender) || (rcpt && !req->has_rcpt) || (!mail && !rcpt))
		return NULL;
	const struct mail_address *a = mail ? &req->sender : &req->rcpt;
	const char *what = name + 5;
	if (rcpt && ms->refused_status != NULL) {
		/* A refused recipient told to an RCPT_REJ milter: Sendmail's
		 * error mailer, with the status and the reply's text. */
		if (strcmp(what, "mailer") == 0)
			return "error";
		if (strcmp(what, "host") == 0)
			return ms->refused_status;
		if (strcmp(what, "addr") == 0)
			return ms->refused_text;
		return NULL;
	}
	if (strcmp(what, "addr") == 0) {
		if (a->local[0] == '\0' && a->domain[0] == '\0')
			return "";
		snprintf(tmp, tmplen, "%s%s%s", a->local, a->domain[0] ? "@" : "", a->domain);
		return tmp;
	}
	if (strcmp(what, "host") == 0)
		return a->domain;
	if (strcmp(what, "mailer") == 0)
		return mail ? "smtp" : local_domain(ms, a->domain) ? "local" : "smtp";
	return NULL;
}

/* The D packet for stage's macros before command cmd; nothing when no
 * macro has a value. */
void milter_put_macros(struct milter_session *ms, struct milter_conv *c,
		       enum milter_macro_stage stage, char cmd, buf_t *out)
{
	const char *list = c->macros[stage] != NULL ? c->macros[stage] : default_macros[stage];
	const char *names[32], *values[32];
	char tmp[32][2 * ADDR_PATH_MAX + 8];
	char name_buf[32][64];
	size_t n = 0;
	const char *p = list;
	while (*p != '\0' && n < ARRAY_LEN(names)) {
		while (*p == ' ' || *p == ',')
			p++;
		size_t len = strcspn(p, " ,");
		if (len == 0)
			break;
		if (len < sizeof(name_buf[n])) {
			memcpy(name_buf[n], p, len);
			name_buf[n][len] = '\0';
			char bare[64];
			bool braced = len > 2 && p[0] == '{' && p[len - 1] == '}';
			snprintf(bare, sizeof(bare), "%.*s", (int)(braced ? len - 2 : len),
				 braced ? p + 1 : p);
			const char *v = macro_value(ms, bare, tmp[n], sizeof(tmp[n]));
			if (v != NULL) {
				names[n] = name_buf[n];
				values[n] = v;
				n++;
			}
		}
		p += len;
	}
	if (n > 0)
		milter_encode_macros(out, cmd, names, values, n);
}

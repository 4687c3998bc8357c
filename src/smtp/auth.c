/*
 * auth.c - SMTP AUTH (RFC 4954) with the PLAIN (RFC 4616) and LOGIN
 * mechanisms, the login rules of the submission listeners (RFC 6409:
 * a login before MAIL; RFC 8314 implicit TLS), and the envelope sender
 * an authenticated client may use.
 *
 * AUTH is offered after TLS, or without it only to the clients of
 * auth_cleartext_networks; on the submission and smtps listeners always
 * (and MAIL needs a login there), on the port 25 listener only with
 * smtp_auth = yes. The password is checked by the auth process
 * (src/auth/auth_client.h): the session waits (WAIT_AUTH) without
 * blocking the worker, and a verdict is
 *
 *   235 2.7.0  logged in           535 5.7.8  wrong user or password
 *   454 4.7.0  too many failures, or the auth process cannot answer
 *
 * Other replies: 503 5.5.1 AUTH twice or in a transaction, 504 5.5.4 an
 * unknown mechanism, 538 5.7.11 AUTH without TLS where TLS is needed,
 * 501 5.5.2 bad base64, 501 5.7.0 the client cancelled ("*"), 500 5.5.6
 * a response line over 12288 octets, 530 5.7.0 MAIL without a login
 * where one is required, 553 5.7.1 a sender the user does not own.
 *
 * Untrusted input: the client's AUTH lines (decoded by src/auth/sasl.c,
 * bounded). Passwords are wiped once sent to the auth process and never
 * logged. Privilege: the unprivileged smtp worker.
 */
#include "session_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../auth/auth_client.h"
#include "../auth/sasl.h"
#include "../lib/log.h"
#include "../lib/xalloc.h"

/* "Username:" and "Password:" in base64: the LOGIN mechanism's prompts. */
#define LOGIN_PROMPT_USER "VXNlcm5hbWU6"
#define LOGIN_PROMPT_PASSWORD "UGFzc3dvcmQ6"

static bool listener_allows_auth(const struct smtp_session *s)
{
	return s->srv->auth != NULL &&
	       (s->listener != SMTP_LISTENER_MX || s->srv->cfg->smtp_auth == CONFIG_YES);
}

/* May this client send a password now (TLS, or a cleartext network)? */
static bool channel_allows_auth(const struct smtp_session *s)
{
	return s->tls_ready ||
	       cidr_list_match(&s->srv->cfg->auth_cleartext_networks,
			       (const struct sockaddr *)&s->peer);
}

bool smtp_auth_offered(const struct smtp_session *s)
{
	return listener_allows_auth(s) && channel_allows_auth(s) && s->auth_user == NULL;
}

bool smtp_auth_required(const struct smtp_session *s)
{
	return s->listener != SMTP_LISTENER_MX;
}

void smtp_auth_reset(struct smtp_session *s)
{
	auth_client_cancel(&s->auth_req);
	if (s->wait == WAIT_AUTH)
		s->wait = WAIT_NONE;
	xfree(&s->auth_user);
	xfree(&s->sasl_login_user);
	s->sasl_step = SASL_NONE;
}

/* The auth service of the session's listener: smtps apart from
 * submission, so that logins on each can be told apart. */
static enum auth_service auth_service_of(const struct smtp_session *s)
{
	return s->listener == SMTP_LISTENER_MX	       ? AUTH_SERVICE_SMTP
	       : s->listener == SMTP_LISTENER_SMTPS ? AUTH_SERVICE_SMTPS
						    : AUTH_SERVICE_SUBMISSION;
}

static const char *service_of(const struct smtp_session *s)
{
	return s->listener == SMTP_LISTENER_MX	       ? "smtp"
	       : s->listener == SMTP_LISTENER_SMTPS ? "smtps"
						    : "submission";
}

static void auth_done(void *arg, const struct auth_result *r)
{
	struct smtp_session *s = arg;
	struct smtp_reply out = { 0 };
	s->auth_req = NULL;
	switch (r->verdict) {
	case AUTH_OK:
		free(s->auth_user);
		s->auth_user = xstrdup(r->user);
		s->auth_mech = s->auth_mech_asked;
		log_info("client=%s login: user=%s listener=%s", s->peer_addr, s->auth_user,
			 service_of(s));
		reply_set(&out, 235, "2.7.0", "Authentication successful");
		break;
	case AUTH_FAILED:
		log_info("client=%s login failed: %s", s->peer_addr, r->why);
		reply_error(&out, 535, "5.7.8", "Error: authentication credentials invalid");
		break;
	case AUTH_THROTTLED:
		log_info("client=%s login refused: %s", s->peer_addr, r->why);
		reply_error(&out, 454, "4.7.0", "Error: too many failed logins, try again later");
		break;
	default:
		log_warn("client=%s login not checked: %s", s->peer_addr, r->why);
		reply_set(&out, 454, "4.7.0", "Error: temporary authentication failure");
		break;
	}
	session_resume(s, &out);
}

/* Ask the auth process; the session waits. */
static enum step check(struct smtp_session *s, struct sasl_credentials *c)
{
	char session_id[48];
	snprintf(session_id, sizeof(session_id), "%ld.%llu", (long)getpid(),
		 (unsigned long long)s->id);
	struct auth_query q = {
		auth_service_of(s),
		s->peer_addr, c->user, c->password, session_id,
	};
	s->sasl_step = SASL_NONE;
	xfree(&s->sasl_login_user);
	s->wait = WAIT_AUTH;
	s->auth_req = auth_client_check(s->srv->auth, &q, auth_done, s);
	sasl_credentials_wipe(c);
	return STEP_WAIT;
}

/* A decoding problem: the reply, and the exchange is over. */
static enum step refused(struct smtp_session *s, enum sasl_status st, struct smtp_reply *out)
{
	s->sasl_step = SASL_NONE;
	xfree(&s->sasl_login_user);
	if (st == SASL_BAD_BASE64) {
		reply_error(out, 501, "5.5.2", "Error: cannot decode the response (base64)");
	} else {
		log_info("client=%s login failed: %s", s->peer_addr,
			 st == SASL_PROXY ? "authorization identity other than the user"
			 : st == SASL_TOO_LONG ? "user or password too long" : "malformed response");
		reply_error(out, 535, "5.7.8", "Error: authentication credentials invalid");
	}
	return STEP_REPLY;
}

static enum step plain_response(struct smtp_session *s, const char *text, size_t len,
				struct smtp_reply *out)
{
	struct sasl_credentials c;
	enum sasl_status st = sasl_plain_decode(text, len, &c);
	if (st != SASL_OK)
		return refused(s, st, out);
	return check(s, &c);
}

static enum step login_user(struct smtp_session *s, const char *text, size_t len,
			    struct smtp_reply *out)
{
	char user[AUTH_USER_MAX + 1];
	enum sasl_status st = sasl_login_decode(text, len, user, sizeof(user) - 1);
	if (st != SASL_OK)
		return refused(s, st, out);
	free(s->sasl_login_user);
	s->sasl_login_user = xstrdup(user);
	s->sasl_step = SASL_LOGIN_PASSWORD;
	reply_set(out, 334, "", LOGIN_PROMPT_PASSWORD);
	return STEP_REPLY;
}

static enum step login_password(struct smtp_session *s, const char *text, size_t len,
				struct smtp_reply *out)
{
	struct sasl_credentials c;
	memset(&c, 0, sizeof(c));
	enum sasl_status st = sasl_login_decode(text, len, c.password, sizeof(c.password) - 1);
	if (st != SASL_OK) {
		sasl_credentials_wipe(&c);
		return refused(s, st, out);
	}
	snprintf(c.user, sizeof(c.user), "%s", s->sasl_login_user);
	return check(s, &c);
}

enum step smtp_auth_command(struct smtp_session *s, const struct smtp_command *cmd,
			    struct smtp_reply *out)
{
	if (!listener_allows_auth(s)) {
		reply_error(out, 502, "5.5.1", "Error: authentication not enabled");
		return STEP_REPLY;
	}
	if (s->auth_user != NULL) {
		reply_error(out, 503, "5.5.1", "Error: already authenticated");
		return STEP_REPLY;
	}
	if (s->tx != NULL) {
		reply_error(out, 503, "5.5.1", "Error: AUTH is not allowed in a mail transaction");
		return STEP_REPLY;
	}
	if (!channel_allows_auth(s)) {
		reply_error(out, 538, "5.7.11", "Error: encryption required for authentication "
			    "(STARTTLS first)");
		return STEP_REPLY;
	}
	bool plain = slice_eq_nocase(cmd->auth_mechanism, "PLAIN");
	bool login = slice_eq_nocase(cmd->auth_mechanism, "LOGIN");
	if (!plain && !login) {
		reply_error(out, 504, "5.5.4", "Error: unrecognized authentication mechanism");
		return STEP_REPLY;
	}
	s->auth_mech_asked = plain ? "PLAIN" : "LOGIN"; /* the milters' {auth_type} */
	const char *init = cmd->auth_initial.ptr;
	size_t init_len = cmd->auth_initial.len;
	if (cmd->auth_has_initial && init_len == 1 && init[0] == '*') {
		reply_error(out, 501, "5.7.0", "Error: authentication cancelled");
		return STEP_REPLY;
	}
	if (plain && cmd->auth_has_initial)
		return plain_response(s, init, init_len, out);
	if (login && cmd->auth_has_initial)
		return login_user(s, init, init_len, out);
	s->sasl_step = plain ? SASL_PLAIN : SASL_LOGIN_USER;
	reply_set(out, 334, "", "%s", plain ? "" : LOGIN_PROMPT_USER);
	return STEP_REPLY;
}

enum step smtp_auth_response(struct smtp_session *s, const char *line, size_t len,
			     struct smtp_reply *out)
{
	if (len == 1 && line[0] == '*') {
		s->sasl_step = SASL_NONE;
		xfree(&s->sasl_login_user);
		reply_error(out, 501, "5.7.0", "Error: authentication cancelled");
		return STEP_REPLY;
	}
	switch (s->sasl_step) {
	case SASL_PLAIN:
		return plain_response(s, line, len, out);
	case SASL_LOGIN_USER:
		return login_user(s, line, len, out);
	case SASL_LOGIN_PASSWORD:
		return login_password(s, line, len, out);
	default:
		log_panic("SASL response without an exchange");
	}
}

void smtp_auth_line_too_long(struct smtp_session *s, struct smtp_reply *out)
{
	s->sasl_step = SASL_NONE;
	xfree(&s->sasl_login_user);
	reply_error(out, 500, "5.5.6", "Error: authentication exchange line is too long");
}

/* Does the user own sender: the address itself, or an alias that leads
 * to it? */
static bool owns(const struct smtp_session *s, const struct mail_address *sender)
{
	const struct config *cfg = s->srv->cfg;
	char key[ADDR_PATH_MAX + 1];
	if (sender->domain_literal ||
	    !strlist_contains_nocase(&cfg->local_domains, sender->domain) ||
	    !policy_local_key(cfg, sender, key, sizeof(key)))
		return false;
	if (strcmp(key, s->auth_user) == 0)
		return true;
	const struct recipient_tables *t = s->srv->policy.rcpt_tables;
	if (t == NULL || recipients_alias(t, key) == NULL)
		return false;
	strlist_t targets = { 0 };
	bool mine = recipients_expand(t, key, &targets) == EXPAND_OK;
	mine = mine && strlist_contains_nocase(&targets, s->auth_user);
	strlist_free(&targets);
	return mine;
}

bool smtp_auth_mail_allowed(struct smtp_session *s, const struct mail_address *sender,
			    struct smtp_reply *out)
{
	if (s->auth_user == NULL) {
		if (!smtp_auth_required(s))
			return true;
		session_count_refusal("mail", 530, "auth", "auth_required", NULL);
		reply_error(out, 530, "5.7.0", "Error: authentication required");
		return false;
	}
	if (s->srv->cfg->auth_sender_check != CONFIG_YES || sender->is_null || owns(s, sender))
		return true;
	char shown[ADDR_PATH_MAX + 1];
	address_format(sender, shown, sizeof(shown));
	log_info("client=%s reject: MAIL from=<%s> user=%s code=553 5.7.1 "
		 "reason=sender_not_owned", s->peer_addr, shown, s->auth_user);
	session_count_refusal("mail", 553, "auth_sender_check", "sender_not_owned", NULL);
	reply_error(out, 553, "5.7.1", "<%s>: Sender address rejected: not owned by user %s",
		    shown, s->auth_user);
	return false;
}

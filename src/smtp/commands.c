/*
 * commands.c - the SMTP command table. Each verb has a check step (the
 * session states it is allowed in; its syntax was checked by the parser)
 * that answers at once, and a proceed step that may ask the policy and
 * therefore wait. Handlers fill a reply (or wait); they never write to
 * the connection. Every reply has an RFC 3463 enhanced status code, except
 * those RFC 2034 exempts (HELO/EHLO).
 *
 * Input: parsed commands from an untrusted client. Runs in the
 * unprivileged smtp worker.
 */
#include "session_int.h"

#include <string.h>

#include "../lib/log.h"
#include "../lib/xalloc.h"

typedef enum step command_fn(struct smtp_session *s, const struct smtp_command *cmd,
			     struct smtp_reply *out);

/* ---- HELO / EHLO ---------------------------------------------------------- */

static void ehlo_reply(const struct smtp_session *s, struct smtp_reply *out)
{
	const struct config *cfg = s->srv->cfg;
	reply_set(out, 250, "", "%s", cfg->hostname);
	reply_add_line(out, "PIPELINING");
	reply_add_line(out, "SIZE %llu", (unsigned long long)cfg->message_size_limit);
	if (s->srv->tls_ctx != NULL && !s->tls)
		reply_add_line(out, "STARTTLS");
	if (smtp_auth_offered(s))
		reply_add_line(out, "AUTH PLAIN LOGIN");
	reply_add_line(out, "ENHANCEDSTATUSCODES");
	reply_add_line(out, "8BITMIME");
	reply_add_line(out, "SMTPUTF8");
	reply_add_line(out, "CHUNKING");
	reply_add_line(out, "DSN");
}

static enum step helo_verdict(struct smtp_session *s, struct policy_reply *v,
			      struct smtp_reply *out)
{
	char *helo = s->pending_helo;
	s->pending_helo = NULL;
	if (policy_refuses(v->verdict)) {
		log_info("client=%s reject: helo=%s code=%d %s reason=%s%s%s", s->peer_addr, helo,
			 v->code, v->status, v->reason, v->detail[0] ? " " : "", v->detail);
		session_count_refusal("helo", v->code, v->check, v->reason, v->detail);
		free(helo);
		reply_from_policy(out, v);
		return STEP_REPLY;
	}
	free(s->helo);
	s->helo = helo;
	s->esmtp = s->pending_esmtp;
	tx_free(&s->tx); /* RFC 5321 4.1.4: EHLO resets the transaction */
	/* RFC 5321 4.1.1.1: "250 domain"; RFC 2034 section 3: no enhanced
	 * status code on the HELO/EHLO reply. */
	if (s->esmtp)
		ehlo_reply(s, out);
	else
		reply_set(out, 250, "", "%s", s->srv->cfg->hostname);
	if (s->repeated_hello)
		session_count_junk(s, out);
	return STEP_REPLY;
}

static enum step hello(struct smtp_session *s, const struct smtp_command *cmd,
		       bool esmtp, struct smtp_reply *out)
{
	struct policy_request req;
	s->repeated_hello = s->helo != NULL; /* after STARTTLS it is a first one again */
	free(s->pending_helo);
	s->pending_helo = xstrndup(cmd->arg.ptr, cmd->arg.len);
	s->pending_esmtp = esmtp;
	if (s->tx != NULL) {
		/* RFC 5321 4.1.4: the transaction ends here, refused HELO or
		 * not; the milters hear ABORT before the new HELO (a HELO
		 * inside a message is out of order for them), as in Postfix. */
		tx_free(&s->tx);
		milter_session_abort(s->milter);
	}
	session_request(s, POLICY_HELO, &req);
	req.helo = s->pending_helo;
	return session_ask(s, &req, helo_verdict, out);
}

static enum step cmd_helo(struct smtp_session *s, const struct smtp_command *cmd,
			  struct smtp_reply *out)
{
	return hello(s, cmd, false, out);
}

static enum step cmd_ehlo(struct smtp_session *s, const struct smtp_command *cmd,
			  struct smtp_reply *out)
{
	return hello(s, cmd, true, out);
}

/* ---- the transaction -------------------------------------------------------- */

static enum step cmd_mail(struct smtp_session *s, const struct smtp_command *cmd,
			  struct smtp_reply *out)
{
	return tx_handle_mail(s, cmd, out);
}

static enum step cmd_rcpt(struct smtp_session *s, const struct smtp_command *cmd,
			  struct smtp_reply *out)
{
	return tx_handle_rcpt(s, cmd, out);
}

static enum step cmd_data(struct smtp_session *s, const struct smtp_command *cmd,
			  struct smtp_reply *out)
{
	(void)cmd;
	return tx_handle_data(s, out);
}

static enum step cmd_bdat(struct smtp_session *s, const struct smtp_command *cmd,
			  struct smtp_reply *out)
{
	return tx_handle_bdat(s, cmd, out);
}

/* ---- the rest ----------------------------------------------------------------- */

static enum step cmd_rset(struct smtp_session *s, const struct smtp_command *cmd,
			  struct smtp_reply *out)
{
	(void)cmd;
	tx_free(&s->tx);
	milter_session_abort(s->milter);
	reply_set(out, 250, "2.0.0", "Ok");
	return STEP_REPLY;
}

static enum step cmd_noop(struct smtp_session *s, const struct smtp_command *cmd,
			  struct smtp_reply *out)
{
	(void)s;
	(void)cmd;
	reply_set(out, 250, "2.0.0", "Ok");
	return STEP_REPLY;
}

static enum step cmd_quit(struct smtp_session *s, const struct smtp_command *cmd,
			  struct smtp_reply *out)
{
	(void)s;
	(void)cmd;
	reply_set(out, 221, "2.0.0", "Bye");
	out->flags = REPLY_CLOSE;
	return STEP_REPLY;
}

static enum step cmd_help(struct smtp_session *s, const struct smtp_command *cmd,
			  struct smtp_reply *out)
{
	(void)cmd;
	reply_set(out, 214, "2.0.0",
		  "Commands: EHLO HELO MAIL RCPT DATA BDAT RSET NOOP QUIT HELP VRFY%s%s",
		  s->srv->tls_ctx != NULL ? " STARTTLS" : "", smtp_auth_offered(s) ? " AUTH" : "");
	return STEP_REPLY;
}

static enum step cmd_vrfy(struct smtp_session *s, const struct smtp_command *cmd,
			  struct smtp_reply *out)
{
	(void)s;
	(void)cmd; /* RFC 5321 3.5.3: 252 tells nothing about the user */
	reply_set(out, 252, "2.0.0", "Cannot VRFY user, but will accept message and attempt delivery");
	return STEP_REPLY;
}

static enum step cmd_expn(struct smtp_session *s, const struct smtp_command *cmd,
			  struct smtp_reply *out)
{
	(void)s;
	(void)cmd;
	reply_error(out, 502, "5.5.1", "Error: EXPN is disabled");
	return STEP_REPLY;
}

static enum step cmd_auth(struct smtp_session *s, const struct smtp_command *cmd,
			  struct smtp_reply *out)
{
	return smtp_auth_command(s, cmd, out);
}

static enum step cmd_starttls(struct smtp_session *s, const struct smtp_command *cmd,
			      struct smtp_reply *out)
{
	(void)cmd;
	if (s->srv->tls_ctx == NULL) {
		reply_error(out, 502, "5.5.1", "Error: STARTTLS is not available");
	} else if (s->tls) {
		reply_error(out, 503, "5.5.1", "Error: TLS already active");
	} else {
		reply_set(out, 220, "2.0.0", "Ready to start TLS");
		out->flags = REPLY_STARTTLS;
	}
	return STEP_REPLY;
}

/* ---- the table ------------------------------------------------------------------ */

enum needs {
	NEED_NOTHING = 0,
	NEED_HELO = 1 << 0,    /* after HELO/EHLO */
	NEED_EHLO = 1 << 1,    /* extension: only after EHLO */
	NEED_NO_TX = 1 << 2,   /* not inside a transaction */
	NEED_TX = 1 << 3,      /* inside a transaction (after MAIL) */
	JUNK = 1 << 4,         /* counts toward junk_command_limit */
};

struct command_def {
	enum smtp_verb verb;
	unsigned needs;
	command_fn *proceed;
};

static const struct command_def command_table[] = {
	{ SMTP_HELO, NEED_NOTHING, cmd_helo },
	{ SMTP_EHLO, NEED_NOTHING, cmd_ehlo },
	{ SMTP_MAIL, NEED_HELO | NEED_NO_TX, cmd_mail },
	{ SMTP_RCPT, NEED_TX, cmd_rcpt },
	{ SMTP_DATA, NEED_TX, cmd_data },
	{ SMTP_BDAT, NEED_NOTHING, cmd_bdat }, /* checks its state itself: the chunk must be read */
	{ SMTP_RSET, JUNK, cmd_rset },
	{ SMTP_NOOP, JUNK, cmd_noop },
	{ SMTP_QUIT, NEED_NOTHING, cmd_quit },
	{ SMTP_HELP, JUNK, cmd_help },
	{ SMTP_VRFY, JUNK, cmd_vrfy },
	{ SMTP_EXPN, JUNK, cmd_expn },
	{ SMTP_STARTTLS, NEED_EHLO | NEED_NO_TX, cmd_starttls },
	{ SMTP_AUTH, NEED_EHLO, cmd_auth }, /* checks the transaction itself: 503 */
};

/* The check step: false after filling the 503 reply. */
static bool allowed_now(const struct smtp_session *s, const struct command_def *def,
			struct smtp_reply *out)
{
	if ((def->needs & NEED_HELO) && s->helo == NULL &&
	    s->srv->cfg->helo_required == CONFIG_YES)
		reply_error(out, 503, "5.5.1", "Error: send HELO/EHLO first");
	else if ((def->needs & NEED_EHLO) && !s->esmtp)
		reply_error(out, 503, "5.5.1", "Error: send EHLO first");
	else if ((def->needs & NEED_NO_TX) && s->tx != NULL)
		reply_error(out, 503, "5.5.1", "Error: nested MAIL command");
	else if ((def->needs & NEED_TX) && s->tx == NULL)
		reply_error(out, 503, "5.5.1", "Error: need MAIL command");
	else
		return true;
	return false;
}

/*
 * Commands that move no mail forward: NOOP, RSET, VRFY, EXPN, HELP, a
 * repeated HELO/EHLO, a MAIL that abandons a transaction, a repeated
 * RCPT. After junk_command_limit of them without a message accepted,
 * each further one counts as an error, so a client can neither hold a
 * session nor fill the log with them (Postfix's smtpd_junk_command_limit
 * idea, extended to the commands a loop can repeat forever).
 */
void session_count_junk(struct smtp_session *s, struct smtp_reply *out)
{
	if (++s->junk_commands > s->srv->cfg->junk_command_limit) {
		if (s->junk_commands == s->srv->cfg->junk_command_limit + 1)
			log_info("client=%s more than %llu commands without mail", s->peer_addr,
				 (unsigned long long)s->srv->cfg->junk_command_limit);
		out->flags |= REPLY_ERROR;
	}
}

/*
 * Input that is plainly not SMTP: a message header line ("Subject: hi",
 * what a pipelining client sends after a DATA that was refused) or an
 * HTTP request. Executing what follows would run message text as
 * commands, so the session ends here (Postfix does the same).
 */
static bool is_non_smtp(const char *line, size_t len)
{
	static const char *const http[] = { "GET", "POST", "CONNECT", "HEAD", "PUT" };
	size_t word = 0;
	while (word < len && line[word] != ' ' && line[word] != ':')
		word++;
	/* "Name:..." with RFC 5322 field-name characters before the colon
	 * ("Subject:hi" is a header too). No SMTP command has a colon in its
	 * first word: "MAIL FROM:" and "RCPT TO:" have it after a space. */
	if (word > 0 && word < len && line[word] == ':') {
		bool field_name = true;
		for (size_t i = 0; i < word && field_name; i++)
			field_name = line[i] > ' ' && line[i] < 127;
		if (field_name)
			return true;
	}
	for (size_t i = 0; i < ARRAY_LEN(http); i++)
		if (word == strlen(http[i]) && memcmp(line, http[i], word) == 0)
			return true;
	return false;
}

enum step session_handle_line(struct smtp_session *s, const char *line, size_t len,
			      struct smtp_reply *out)
{
	struct smtp_command cmd;
	struct smtp_parse_error err;
	unsigned flags = s->tx != NULL && s->tx->smtputf8 ? SMTP_PARSE_RCPT_UTF8 : 0;
	if (s->srv->cfg->strict_rfc821_envelopes == CONFIG_NO)
		flags |= SMTP_PARSE_LENIENT_PATHS;
	if (is_non_smtp(line, len)) {
		log_warn("client=%s non-SMTP command: %.100s", s->peer_addr, line);
		tx_free(&s->tx);
		reply_set(out, 221, "2.7.0", "Error: message content or another protocol "
			  "where a command belongs; closing");
		out->flags = REPLY_CLOSE;
		return STEP_REPLY;
	}
	if (!smtp_command_parse(line, len, flags, &cmd, &err)) {
		/* A half-open transaction of BDAT chunks must not continue
		 * after a command that was not understood. */
		if (s->tx != NULL && s->tx->bdat_used)
			tx_free(&s->tx);
		reply_error(out, err.code, err.status, "%s", err.text);
		return STEP_REPLY;
	}
	for (size_t i = 0; i < ARRAY_LEN(command_table); i++) {
		const struct command_def *def = &command_table[i];
		if (def->verb != cmd.verb)
			continue;
		if (!allowed_now(s, def, out))
			return STEP_REPLY;
		enum step st = def->proceed(s, &cmd, out);
		if (def->needs & JUNK)
			session_count_junk(s, out);
		return st;
	}
	log_panic("command %s has no table entry", smtp_verb_name(cmd.verb));
}

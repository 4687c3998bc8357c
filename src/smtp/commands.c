/*
 * commands.c - the SMTP command table: for each verb, the sessions states
 * it is allowed in and the function that carries it out. Every reply has
 * an RFC 3463 enhanced status code.
 */
#include "session_int.h"

#include <event2/buffer.h>
#include <string.h>

#include "../lib/log.h"
#include "../lib/xalloc.h"

typedef void command_fn(struct smtp_session *s, const struct smtp_command *cmd);

static void policy_reply_send(struct smtp_session *s, const struct policy_reply *r)
{
	session_error(s, r->code, r->status, "%s", r->text);
}

static bool set_helo(struct smtp_session *s, const struct smtp_command *cmd, bool esmtp)
{
	struct policy_request req = { .stage = POLICY_HELO,
				      .client = (const struct sockaddr *)&s->peer,
				      .client_addr = s->peer_addr, .tls = s->tls };
	char *helo = xstrndup(cmd->arg.ptr, cmd->arg.len);
	req.helo = helo;
	struct policy_reply rep;
	enum policy_verdict v = policy_check(&s->srv->policy, &req, &rep);
	if (v == POLICY_REJECT || v == POLICY_TEMPFAIL) {
		log_info("client=%s reject: helo=%s code=%d %s reason=%s", s->peer_addr, helo,
			 rep.code, rep.status, rep.reason);
		free(helo);
		policy_reply_send(s, &rep);
		return false;
	}
	free(s->helo);
	s->helo = helo;
	s->esmtp = esmtp;
	tx_free(&s->tx); /* RFC 5321 4.1.4: EHLO resets the transaction */
	return true;
}

static void cmd_helo(struct smtp_session *s, const struct smtp_command *cmd)
{
	/* RFC 5321 4.1.1.1: "250 domain"; RFC 2034 section 3: no enhanced
	 * status code on the HELO/EHLO reply. */
	if (set_helo(s, cmd, false))
		session_send(s, "250 %s\r\n", s->srv->cfg->hostname);
}

static void cmd_ehlo(struct smtp_session *s, const struct smtp_command *cmd)
{
	const struct config *cfg = s->srv->cfg;
	if (!set_helo(s, cmd, true))
		return;
	session_send(s, "250-%s\r\n250-PIPELINING\r\n250-SIZE %llu\r\n", cfg->hostname,
		     (unsigned long long)cfg->message_size_limit);
	if (s->srv->tls_ctx != NULL && !s->tls)
		session_send(s, "250-STARTTLS\r\n");
	session_send(s, "250-ENHANCEDSTATUSCODES\r\n250-8BITMIME\r\n250-SMTPUTF8\r\n"
		     "250 CHUNKING\r\n");
}

static void cmd_mail(struct smtp_session *s, const struct smtp_command *cmd)
{
	tx_handle_mail(s, cmd);
}

static void cmd_rcpt(struct smtp_session *s, const struct smtp_command *cmd)
{
	tx_handle_rcpt(s, cmd);
}

static void cmd_data(struct smtp_session *s, const struct smtp_command *cmd)
{
	(void)cmd;
	tx_handle_data(s);
}

static void cmd_bdat(struct smtp_session *s, const struct smtp_command *cmd)
{
	tx_handle_bdat(s, cmd);
}

static void cmd_rset(struct smtp_session *s, const struct smtp_command *cmd)
{
	(void)cmd;
	tx_free(&s->tx);
	session_reply(s, 250, "2.0.0", "Ok");
}

static void cmd_noop(struct smtp_session *s, const struct smtp_command *cmd)
{
	(void)cmd;
	session_reply(s, 250, "2.0.0", "Ok");
}

static void cmd_quit(struct smtp_session *s, const struct smtp_command *cmd)
{
	(void)cmd;
	session_reply(s, 221, "2.0.0", "Bye");
	session_close_after_flush(s);
}

static void cmd_help(struct smtp_session *s, const struct smtp_command *cmd)
{
	(void)cmd;
	session_reply(s, 214, "2.0.0",
		      "Commands: EHLO HELO MAIL RCPT DATA BDAT RSET NOOP QUIT HELP VRFY%s",
		      s->srv->tls_ctx != NULL ? " STARTTLS" : "");
}

static void cmd_vrfy(struct smtp_session *s, const struct smtp_command *cmd)
{
	(void)cmd; /* RFC 5321 3.5.3: 252 tells nothing about the user */
	session_reply(s, 252, "2.0.0", "Cannot VRFY user, but will accept message and attempt delivery");
}

static void cmd_expn(struct smtp_session *s, const struct smtp_command *cmd)
{
	(void)cmd;
	session_error(s, 502, "5.5.1", "Error: EXPN is disabled");
}

static void cmd_starttls(struct smtp_session *s, const struct smtp_command *cmd)
{
	(void)cmd;
	if (s->srv->tls_ctx == NULL) {
		session_error(s, 502, "5.5.1", "Error: STARTTLS is not available");
		return;
	}
	if (s->tls) {
		session_error(s, 503, "5.5.1", "Error: TLS already active");
		return;
	}
	session_reply(s, 220, "2.0.0", "Ready to start TLS");
	session_start_tls(s);
}

/*
 * Commands that move no mail forward (NOOP, RSET, VRFY, EXPN, HELP):
 * after junk_command_limit of them without a message accepted, each
 * further one counts as an error, so a client cannot hold a session
 * forever with them (Postfix's smtpd_junk_command_limit idea).
 */
static void count_junk(struct smtp_session *s)
{
	if (++s->junk_commands > s->srv->cfg->junk_command_limit &&
	    ++s->errors >= s->srv->cfg->error_limit) {
		log_info("client=%s too many commands that move no mail (%u), closing",
			 s->peer_addr, s->junk_commands);
		session_reply(s, 421, "4.7.0", "%s Error: too many commands without mail",
			      s->srv->cfg->hostname);
		session_close_after_flush(s);
	}
}

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
	command_fn *run;
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
};

/* The state check: false after sending the 503 reply. */
static bool allowed_now(struct smtp_session *s, const struct command_def *def)
{
	if ((def->needs & NEED_HELO) && s->helo == NULL) {
		session_error(s, 503, "5.5.1", "Error: send HELO/EHLO first");
		return false;
	}
	if ((def->needs & NEED_EHLO) && !s->esmtp) {
		session_error(s, 503, "5.5.1", "Error: send EHLO first");
		return false;
	}
	if ((def->needs & NEED_NO_TX) && s->tx != NULL) {
		session_error(s, 503, "5.5.1", "Error: nested MAIL command");
		return false;
	}
	if ((def->needs & NEED_TX) && s->tx == NULL) {
		session_error(s, 503, "5.5.1", "Error: need MAIL command");
		return false;
	}
	return true;
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
	/* "Name: value": RFC 5322 field-name characters, then a colon
	 * followed by white space or the end of the line ("MAILFROM:<a>",
	 * a typo, stays an unknown command). */
	if (word > 0 && word < len && line[word] == ':' &&
	    (word + 1 == len || line[word + 1] == ' ' || line[word + 1] == '\t')) {
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

void session_handle_line(struct smtp_session *s, const char *line, size_t len)
{
	struct smtp_command cmd;
	struct smtp_parse_error err;
	bool utf8 = s->tx != NULL && s->tx->smtputf8;
	if (is_non_smtp(line, len)) {
		log_warn("client=%s non-SMTP command: %.100s", s->peer_addr, line);
		tx_free(&s->tx);
		session_reply(s, 221, "2.7.0", "Error: message content or another protocol "
			      "where a command belongs; closing");
		session_close_after_flush(s);
		return;
	}
	if (!smtp_command_parse(line, len, utf8, &cmd, &err)) {
		/* A half-open transaction of BDAT chunks must not continue
		 * after a command that was not understood. */
		if (s->tx != NULL && s->tx->bdat_used)
			tx_free(&s->tx);
		session_error(s, err.code, err.status, "%s", err.text);
		return;
	}
	for (size_t i = 0; i < ARRAY_LEN(command_table); i++) {
		const struct command_def *def = &command_table[i];
		if (def->verb != cmd.verb)
			continue;
		if (allowed_now(s, def))
			def->run(s, &cmd);
		if ((def->needs & JUNK) && !session_closing(s))
			count_junk(s);
		return;
	}
	log_panic("command %s has no table entry", smtp_verb_name(cmd.verb));
}

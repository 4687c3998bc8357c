/*
 * pop3_commands.c - what each POP3 command does, by state (RFC 1939:
 * AUTHORIZATION, TRANSACTION; UPDATE is the agent's work after QUIT).
 *
 * Logins (USER/PASS, AUTH PLAIN with or without an initial response) are
 * checked by the auth process; they are refused before TLS unless the
 * client is in pop3_cleartext_networks, and CAPA offers only what may be
 * used now (RFC 2595 section 4). After the login the agent opens the
 * maildrop; a second session on the same mailbox gets -ERR [IN-USE].
 * Deletions are marks until QUIT; messages sent whole by RETR get the
 * Seen flag at QUIT, as Dovecot's POP3 server does by default. Response
 * codes of RFC 2449 and RFC 3206 ([IN-USE], [AUTH], [SYS/TEMP],
 * [SYS/PERM]).
 *
 * Untrusted input: the command line (parsed by pop3_command.c), the
 * password (passed on to the auth process, then wiped). Privilege: the
 * pop3 worker (`user`).
 */
#include "pop3_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../lib/log.h"
#include "../lib/metrics.h"
#include "../lib/xalloc.h"

/* Errors (bad commands) before the session is closed, and failed logins. */
#define POP3_ERROR_LIMIT 20
#define POP3_AUTH_FAILURE_LIMIT 3

void pop3_bad(struct pop3_session *s, const char *text)
{
	pop3_reply(s, "-ERR %s", text);
	if (++s->errors >= POP3_ERROR_LIMIT) {
		log_info("client=%s too many errors (%u), closing", s->peer_addr, s->errors);
		pop3_reply(s, "-ERR too many errors");
		pop3_close_after_flush(s);
	}
}

/* ---- the maildrop ----------------------------------------------------------- */

static void maildrop_free(struct pop3_session *s)
{
	xfree(&s->mails);
	xfree(&s->marks);
	s->mail_count = 0;
}

/* The agent holds the maildrop (or is opening it: the agent answers in
 * order, so a CLOSE sent now comes after the OPEN and releases what the
 * OPEN took; a CLOSE for nothing held is ignored). */
static void close_maildrop(struct pop3_session *s)
{
	if (!s->maildrop_open && s->wait != POP3_WAIT_OPEN)
		return;
	struct pop3_msg m = { .type = POP3_MSG_CLOSE, .sid = s->sid };
	pop3_agent_ask(s->srv->agent, &m, NULL, NULL);
	s->maildrop_open = false;
}

static void drop_prefetched(struct pop3_session *s)
{
	for (size_t i = 0; i < s->prefetch_count; i++)
		if (s->prefetched[i] >= 0)
			close(s->prefetched[i]);
	s->prefetch_count = 0;
}

/* Message i's descriptor if the agent opened it ahead (taken), else -1. */
static int take_prefetched(struct pop3_session *s, size_t i)
{
	if (i < s->prefetch_first || i - s->prefetch_first >= s->prefetch_count)
		return -1;
	int fd = s->prefetched[i - s->prefetch_first];
	s->prefetched[i - s->prefetch_first] = -1;
	return fd;
}

void pop3_session_release(struct pop3_session *s)
{
	drop_prefetched(s);
	if (s->auth_req != NULL)
		s->srv->auth.cancel(&s->auth_req);
	pop3_agent_forget(s->srv->agent, s);
	close_maildrop(s);
	if (s->msg_fd >= 0) {
		close(s->msg_fd);
		s->msg_fd = -1;
	}
	if (s->wait != POP3_WAIT_UPDATE)
		s->wait = POP3_WAIT_NONE;
	maildrop_free(s);
}

static void opened(void *arg, const struct pop3_msg *r, const int *fds)
{
	struct pop3_session *s = arg;
	(void)fds;
	if (r->type == POP3_MSG_ENTRIES) {
		s->mails = xreallocarray(s->mails, s->mail_count + r->entry_count,
					 sizeof(*s->mails));
		for (uint16_t i = 0; i < r->entry_count; i++) {
			s->mails[s->mail_count].size = r->entries[i].size;
			memcpy(s->mails[s->mail_count].uid, r->entries[i].uid, POP3_UID_MAX + 1);
			s->mail_count++;
		}
		return;
	}
	s->wait = POP3_WAIT_NONE;
	if (r->status == POP3_STATUS_OK && r->count != s->mail_count)
		log_fatal("pop3 worker: the mailbox agent listed %zu messages but counted %u",
			  s->mail_count, r->count);
	if (r->status != POP3_STATUS_OK) {
		maildrop_free(s);
		if (r->status == POP3_STATUS_IN_USE) {
			log_info("client=%s user=%s login refused: mailbox in use", s->peer_addr,
				 s->account);
			pop3_reply(s, "-ERR [IN-USE] the mailbox is open in another session");
		} else {
			pop3_reply(s, "-ERR [SYS/TEMP] cannot open the mailbox now");
		}
		xfree(&s->account);
		pop3_resume(s);
		return;
	}
	s->maildrop_open = true;
	s->marks = xcalloc(s->mail_count > 0 ? s->mail_count : 1, 1);
	s->state = POP3_ST_TRANSACTION;
	uint64_t total = 0;
	for (size_t i = 0; i < s->mail_count; i++)
		total += s->mails[i].size;
	log_info("client=%s user=%s login messages=%zu size=%llu%s", s->peer_addr, s->account,
		 s->mail_count, (unsigned long long)total, s->tls_ready ? " tls=yes" : "");
	pop3_reply(s, "+OK %zu messages (%llu octets)", s->mail_count,
		   (unsigned long long)total);
	pop3_resume(s);
}

/* ---- logins -------------------------------------------------------------------- */

/* An account name the agent protocol carries (printable, no spaces). */
static bool account_name_ok(const char *name)
{
	size_t n = strlen(name);
	if (n == 0 || n > POP3_PROTO_USER_MAX)
		return false;
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)name[i] <= 0x20 || (unsigned char)name[i] == 0x7f)
			return false;
	return true;
}

static void verdict(void *arg, const struct auth_result *r)
{
	struct pop3_session *s = arg;
	s->auth_req = NULL;
	s->wait = POP3_WAIT_NONE;
	const char *user = s->user != NULL ? s->user : "";
	enum auth_verdict v = r->verdict == AUTH_OK && r->user == NULL ? AUTH_TEMPFAIL : r->verdict;
	switch (v) {
	case AUTH_OK: {
		s->account = xstrdup(r->user);
		s->wait = POP3_WAIT_OPEN;
		struct pop3_msg m = { .type = POP3_MSG_OPEN, .sid = s->sid };
		if (!account_name_ok(r->user)) {
			s->wait = POP3_WAIT_NONE;
			xfree(&s->account);
			pop3_reply(s, "-ERR [SYS/PERM] this account has no mailbox here");
			break;
		}
		memcpy(m.user, r->user, strlen(r->user) + 1);
		/* the agent opens the maildrop only with the auth process's
		 * ticket; without one (it cannot be made) it says failed */
		if (r->ticket != NULL && strlen(r->ticket) <= POP3_PROTO_TICKET_MAX)
			memcpy(m.ticket, r->ticket, strlen(r->ticket) + 1);
		pop3_agent_ask(s->srv->agent, &m, opened, s);
		return;
	}
	case AUTH_FAILED:
		log_info("client=%s user=%s login failed: %s", s->peer_addr, user,
			 r->why != NULL ? r->why : "wrong user or password");
		pop3_reply(s, "-ERR [AUTH] wrong user name or password");
		if (++s->auth_failures >= POP3_AUTH_FAILURE_LIMIT) {
			pop3_close_after_flush(s);
			return;
		}
		break;
	case AUTH_THROTTLED:
		log_info("client=%s user=%s login throttled", s->peer_addr, user);
		pop3_reply(s, "-ERR [SYS/TEMP] too many failed logins, try again later");
		pop3_close_after_flush(s);
		return;
	case AUTH_TEMPFAIL:
		log_warn("client=%s user=%s login cannot be checked now: %s", s->peer_addr, user,
			 r->why != NULL ? r->why : "auth process unavailable");
		pop3_reply(s, "-ERR [SYS/TEMP] cannot check logins now, try again later");
		break;
	}
	xfree(&s->user);
	pop3_resume(s);
}

static void start_login(struct pop3_session *s, const char *user, const char *password)
{
	char session_id[32];
	snprintf(session_id, sizeof(session_id), "pop3-%ld-%u", (long)getpid(), s->sid);
	if (s->user == NULL || strcmp(s->user, user) != 0) {
		free(s->user);
		s->user = xstrdup(user);
	}
	struct auth_query q = { .service = AUTH_SERVICE_POP3, .client_ip = s->peer_addr,
				.user = user, .password = password, .session_id = session_id };
	s->wait = POP3_WAIT_LOGIN;
	s->auth_req = s->srv->auth.check(s->srv->auth.ctx, &q, verdict, s);
}

static const char *login_refusal = "-ERR [AUTH] log in over TLS: send STLS first";

static void cmd_user(struct pop3_session *s, const struct pop3_command *c)
{
	if (!pop3_login_allowed(s)) {
		pop3_reply(s, "%s", login_refusal);
		return;
	}
	free(s->user);
	s->user = xstrdup(c->arg);
	pop3_reply(s, "+OK send PASS");
}

static void cmd_pass(struct pop3_session *s, const struct pop3_command *c)
{
	if (!pop3_login_allowed(s)) {
		pop3_reply(s, "%s", login_refusal);
		return;
	}
	if (s->user == NULL) {
		pop3_bad(s, "send USER first");
		return;
	}
	char *user = xstrdup(s->user);
	start_login(s, user, c->arg);
	free(user);
}

/* The base64 text of an AUTH PLAIN response (RFC 5034). */
static void sasl_plain(struct pop3_session *s, const char *b64, size_t len)
{
	struct sasl_credentials c;
	const char *why = pop3_sasl_plain(b64, len, &c);
	if (why != NULL)
		pop3_bad(s, why);
	else
		start_login(s, c.user, c.password);
	sasl_credentials_wipe(&c);
}

static void cmd_auth(struct pop3_session *s, const struct pop3_command *c)
{
	if (c->arg == NULL) {
		/* The mechanisms, as many clients ask (RFC 1734's practice). */
		pop3_reply(s, "+OK mechanisms");
		if (pop3_login_allowed(s))
			pop3_reply(s, "PLAIN");
		pop3_reply(s, ".");
		return;
	}
	if (strcasecmp(c->arg, "PLAIN") != 0) {
		pop3_bad(s, "unknown authentication mechanism");
		return;
	}
	if (!pop3_login_allowed(s)) {
		pop3_reply(s, "%s", login_refusal);
		return;
	}
	if (c->arg2 == NULL) {
		s->sasl_continuation = true;
		pop3_reply(s, "+ ");
		return;
	}
	sasl_plain(s, c->arg2, strlen(c->arg2));
}

/* ---- CAPA, STLS, QUIT --------------------------------------------------------------- */

static bool stls_possible(const struct pop3_session *s)
{
	return s->srv->tls_ctx != NULL && !s->tls && s->state == POP3_ST_AUTHORIZATION;
}

static void cmd_capa(struct pop3_session *s)
{
	pop3_reply(s, "+OK capabilities follow");
	pop3_reply(s, "TOP");
	pop3_reply(s, "UIDL");
	pop3_reply(s, "RESP-CODES");
	pop3_reply(s, "AUTH-RESP-CODE");
	pop3_reply(s, "PIPELINING");
	if (s->state == POP3_ST_AUTHORIZATION && pop3_login_allowed(s)) {
		pop3_reply(s, "USER");
		pop3_reply(s, "SASL PLAIN");
	}
	if (stls_possible(s))
		pop3_reply(s, "STLS");
	pop3_reply(s, "IMPLEMENTATION postern");
	pop3_reply(s, ".");
}

static void cmd_stls(struct pop3_session *s)
{
	if (!stls_possible(s)) {
		pop3_bad(s, s->tls ? "TLS is already on" : "STLS is not offered");
		return;
	}
	pop3_reply(s, "+OK begin TLS");
	pop3_start_tls_after_reply(s);
}

static void updated(void *arg, const struct pop3_msg *r, const int *fds)
{
	struct pop3_session *s = arg;
	(void)fds;
	s->wait = POP3_WAIT_NONE;
	log_info("client=%s user=%s quit deleted=%u gone=%u failed=%u", s->peer_addr, s->account,
		 r->deleted, r->gone, r->failed);
	metrics_add(METRIC_POP3_DELETED, r->deleted);
	if (r->status == POP3_STATUS_OK)
		pop3_reply(s, "+OK bye, %u messages removed", r->deleted + r->gone);
	else
		pop3_reply(s, "-ERR [SYS/TEMP] %u messages could not be removed", r->failed);
	pop3_close_after_flush(s);
}

static void cmd_quit(struct pop3_session *s)
{
	if (s->state == POP3_ST_AUTHORIZATION) {
		pop3_reply(s, "+OK bye");
		pop3_close_after_flush(s);
		return;
	}
	/* RFC 1939 section 6: the UPDATE state. */
	struct pop3_msg m = { .type = POP3_MSG_UPDATE, .sid = s->sid,
			      .count = (uint32_t)s->mail_count, .marks = s->marks };
	s->wait = POP3_WAIT_UPDATE;
	pop3_agent_ask(s->srv->agent, &m, updated, s);
}

/* ---- TRANSACTION ------------------------------------------------------------------- */

/* Message number n (1-based) if it exists and is not deleted; else an
 * error reply and false. */
static bool pick(struct pop3_session *s, uint64_t n, size_t *i_r)
{
	if (n == 0 || n > s->mail_count) {
		pop3_bad(s, "no such message");
		return false;
	}
	if (s->marks[n - 1] & POP3_MARK_DELETE) {
		pop3_bad(s, "message is deleted");
		return false;
	}
	*i_r = (size_t)(n - 1);
	return true;
}

static void cmd_stat(struct pop3_session *s)
{
	size_t count = 0;
	uint64_t size = 0;
	for (size_t i = 0; i < s->mail_count; i++) {
		if (s->marks[i] & POP3_MARK_DELETE)
			continue;
		count++;
		size += s->mails[i].size;
	}
	pop3_reply(s, "+OK %zu %llu", count, (unsigned long long)size);
}

static void cmd_list_or_uidl(struct pop3_session *s, const struct pop3_command *c, bool uidl)
{
	size_t i;
	if (c->nums == 1) {
		if (!pick(s, c->num[0], &i))
			return;
		if (uidl)
			pop3_reply(s, "+OK %zu %s", i + 1, s->mails[i].uid);
		else
			pop3_reply(s, "+OK %zu %llu", i + 1, (unsigned long long)s->mails[i].size);
		return;
	}
	pop3_reply(s, "+OK %s", uidl ? "unique ids follow" : "scan listing follows");
	buf_t b = BUF_INIT;
	for (i = 0; i < s->mail_count; i++) {
		if (s->marks[i] & POP3_MARK_DELETE)
			continue;
		if (uidl)
			buf_printf(&b, "%zu %s\r\n", i + 1, s->mails[i].uid);
		else
			buf_printf(&b, "%zu %llu\r\n", i + 1, (unsigned long long)s->mails[i].size);
	}
	buf_puts(&b, ".\r\n");
	pop3_reply_raw(s, b.data, b.len);
	buf_free(&b);
}

/* Send message i from fd (the first reply line, then the message). */
static void send_fetched(struct pop3_session *s, size_t i, int fd)
{
	bool top = s->fetch_top;
	if (!top) {
		s->marks[i] |= POP3_MARK_SEEN;
		s->retrieved++;
		metrics_count(METRIC_POP3_RETRIEVED);
	}
	pop3_reply(s, top ? "+OK top of message follows" : "+OK %llu octets",
		   (unsigned long long)s->mails[i].size);
	pop3_send_message(s, fd, top, s->fetch_lines);
}

static void fetched(void *arg, const struct pop3_msg *r, const int *fds)
{
	struct pop3_session *s = arg;
	s->wait = POP3_WAIT_NONE;
	size_t i = s->fetch_index;
	if (r->status != POP3_STATUS_OK) {
		if (r->status == POP3_STATUS_GONE)
			pop3_reply(s, "-ERR message %zu was removed by another client", i + 1);
		else
			pop3_reply(s, "-ERR [SYS/TEMP] cannot read message %zu now", i + 1);
		pop3_resume(s);
		return;
	}
	/* The first is message i; the others are kept for the next RETRs. */
	drop_prefetched(s);
	s->prefetch_first = i + 1;
	s->prefetch_count = r->fetch_count - 1u;
	for (size_t k = 1; k < r->fetch_count; k++)
		s->prefetched[k - 1] = fds[k];
	send_fetched(s, i, fds[0]);
}

static void cmd_fetch(struct pop3_session *s, const struct pop3_command *c, bool top)
{
	size_t i;
	if (!pick(s, c->num[0], &i))
		return;
	s->fetch_index = i;
	s->fetch_top = top;
	s->fetch_lines = top ? c->num[1] : 0;
	int fd = take_prefetched(s, i);
	if (fd >= 0) {
		send_fetched(s, i, fd);
		return;
	}
	s->wait = POP3_WAIT_FETCH;
	size_t ahead = s->mail_count - i;
	struct pop3_msg m = { .type = POP3_MSG_FETCH, .sid = s->sid, .index = (uint32_t)i,
			      .fetch_count = (uint8_t)(ahead < POP3_FETCH_MAX ? ahead
									: POP3_FETCH_MAX) };
	pop3_agent_ask(s->srv->agent, &m, fetched, s);
}

static void cmd_dele(struct pop3_session *s, const struct pop3_command *c)
{
	size_t i;
	if (!pick(s, c->num[0], &i))
		return;
	s->marks[i] |= POP3_MARK_DELETE;
	s->deleted++;
	pop3_reply(s, "+OK message %zu deleted", i + 1);
}

static void cmd_rset(struct pop3_session *s)
{
	for (size_t i = 0; i < s->mail_count; i++)
		s->marks[i] &= (uint8_t)~POP3_MARK_DELETE;
	s->deleted = 0;
	pop3_reply(s, "+OK %zu messages", s->mail_count);
}

/* ---- dispatch ------------------------------------------------------------------------- */

static void authorization(struct pop3_session *s, const struct pop3_command *c)
{
	switch (c->verb) {
	case POP3_USER:
		cmd_user(s, c);
		return;
	case POP3_PASS:
		cmd_pass(s, c);
		return;
	case POP3_AUTH:
		cmd_auth(s, c);
		return;
	case POP3_STLS:
		cmd_stls(s);
		return;
	default:
		pop3_bad(s, "log in first");
		return;
	}
}

static void transaction(struct pop3_session *s, const struct pop3_command *c)
{
	switch (c->verb) {
	case POP3_STAT:
		cmd_stat(s);
		return;
	case POP3_LIST:
		cmd_list_or_uidl(s, c, false);
		return;
	case POP3_UIDL:
		cmd_list_or_uidl(s, c, true);
		return;
	case POP3_RETR:
		cmd_fetch(s, c, false);
		return;
	case POP3_TOP:
		cmd_fetch(s, c, true);
		return;
	case POP3_DELE:
		cmd_dele(s, c);
		return;
	case POP3_RSET:
		cmd_rset(s);
		return;
	case POP3_NOOP:
		pop3_reply(s, "+OK");
		return;
	default:
		pop3_bad(s, "already logged in");
		return;
	}
}

void pop3_handle_line(struct pop3_session *s, char *line, size_t len)
{
	s->commands++;
	if (s->sasl_continuation) {
		s->sasl_continuation = false;
		if (len == 1 && line[0] == '*') {
			pop3_bad(s, "authentication cancelled");
			return;
		}
		sasl_plain(s, line, len);
		return;
	}
	struct pop3_command c;
	const char *why = pop3_command_parse(line, len, &c);
	if (why != NULL) {
		pop3_bad(s, why);
		return;
	}
	if (c.verb == POP3_CAPA) {
		cmd_capa(s);
		return;
	}
	if (c.verb == POP3_QUIT) {
		cmd_quit(s);
		return;
	}
	if (s->state == POP3_ST_AUTHORIZATION)
		authorization(s, &c);
	else
		transaction(s, &c);
}

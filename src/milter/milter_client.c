/*
 * milter_client.c - the milters' part in the SMTP dialogue (see
 * milter_client.h): the "milter" policy check at every stage, which asks
 * each milter of the session in turn what it thinks of the command, with
 * the macros of that stage first:
 *
 *   connect   C (host name, family, port, address)
 *   HELO      H
 *   MAIL      (A if the last message was not finished) M <sender>
 *   RCPT      R <recipient>
 *   DATA      T
 *   end of    L per header field, N, B per body chunk (CRLF line ends,
 *   data      at most 65535 bytes), E; then the changes, then the answer
 *
 * leaving out what a milter asked to go without (NOCONNECT ... NODATA)
 * and not waiting for answers it will not send (NR_*). The answers, as
 * Sendmail and Postfix take them: continue: the next milter; accept: this
 * milter is done with the message (with the connection at connect and
 * HELO); reject, tempfail and a reply code: the command is refused (at
 * RCPT, that recipient only; at connect, every RCPT of the session: the
 * client still gets a banner, like Postfix); discard: the message is
 * accepted and dropped; skip: no more body chunks; shutdown and
 * connection failure: 421. A milter that cannot be reached or fails gets
 * its default action (continue, tempfail or reject) for the rest of the
 * session.
 *
 * The message itself (header fields and body chunks, as the milters
 * before changed it) comes from milter_message.c, the macros from
 * milter_macros.c, the connections from milter_conv.c.
 *
 * Untrusted input: the milters' answers (decoded by milter_proto.c; the
 * changes bounded here: CHANGES_MAX, CHANGES_TEXT_MAX, a new body within
 * message_size_limit). Unprivileged smtp worker, on its event loop.
 */
#include "milter_int.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../lib/log.h"
#include "../lib/xalloc.h"
#include "../queue/queue.h"

/* A header field longer than this is not sent (libmilter's packet limit). */
#define HEADER_FIELD_MAX (MILTER_CHUNK_MAX - 16)
/* The most changes one milter may ask for at the end of a message (the
 * queue file takes fewer; this bounds what is held in memory), and the
 * most bytes of header text and addresses in them (a new body has its
 * own bound, message_size_limit): 4096 fields of 64 KiB would otherwise
 * be 256 MiB held for one session. */
#define CHANGES_MAX 4096
#define CHANGES_TEXT_MAX (1024 * 1024)

enum run { RUN_WAIT, RUN_NEXT, RUN_STOP };

/* ---- client -------------------------------------------------------------------- */

struct milter_client *milter_client_new(struct event_base *base, const struct config *cfg)
{
	struct milter_list list;
	char *err = NULL;
	if (milter_list_parse(cfg->milters, cfg, &list, &err) != 0)
		log_fatal("milters: %s", err); /* milter_config_check passed: our bug */
	if (list.count == 0)
		return NULL;
	struct milter_client *c = xcalloc(1, sizeof(*c));
	c->base = base;
	c->cfg = cfg;
	c->list = list;
	return c;
}

void milter_client_free(struct milter_client **cp)
{
	struct milter_client *c = *cp;
	if (c == NULL)
		return;
	milter_list_free(&c->list);
	xfree(cp);
}

struct milter_session *milter_session_new(struct milter_client *c)
{
	if (c == NULL)
		return NULL;
	struct milter_session *ms = xcalloc(1, sizeof(*ms));
	ms->client = c;
	ms->count = c->list.count;
	ms->convs = xcalloc(ms->count, sizeof(*ms->convs));
	ms->fd = -1;
	for (size_t i = 0; i < ms->count; i++) {
		ms->convs[i].ms = ms;
		ms->convs[i].spec = &c->list.items[i];
		ms->convs[i].index = i;
	}
	return ms;
}

/* ---- verdicts -------------------------------------------------------------------- */

static const char *stage_of(const struct milter_session *ms)
{
	return policy_stage_name(ms->req->stage);
}

/* A refusal (or discard, or 421) decided by c. */
static void decide(struct milter_session *ms, struct milter_conv *c, enum policy_verdict v,
		   int code, const char *status, const char *text, const char *reason)
{
	ms->stop = true;
	ms->verdict = v;
	ms->code = code;
	snprintf(ms->status, sizeof(ms->status), "%s", status);
	snprintf(ms->text, sizeof(ms->text), "%s", text);
	snprintf(ms->reason, sizeof(ms->reason), "%s", reason);
	ms->decided_by = c->spec->name;
}

/* The default action of a failed milter: false when it is "continue". */
static bool default_action(struct milter_session *ms, struct milter_conv *c)
{
	switch (c->spec->default_action) {
	case MILTER_ACTION_TEMPFAIL:
		decide(ms, c, POLICY_TEMPFAIL, 451, "4.7.1",
		       "Error: a mail filter is unavailable, try again later", "milter_failed");
		return true;
	case MILTER_ACTION_REJECT:
		decide(ms, c, POLICY_REJECT, 550, "5.7.1",
		       "Error: refused while a mail filter is unavailable", "milter_failed");
		return true;
	case MILTER_ACTION_CONTINUE:
	case MILTER_ACTION_ACCEPT:
		break;
	}
	return false;
}

/* A refusal's reply: the milter's own code when it gave one. */
static void refuse(struct milter_session *ms, struct milter_conv *c, const struct milter_reply *r)
{
	bool eod = ms->req->stage >= POLICY_DATA;
	if (r->kind == MILTER_REP_REPLYCODE) {
		bool temp = r->code / 100 == 4;
		const char *status = r->status[0] != '\0' ? r->status : temp ? "4.7.1" : "5.7.1";
		const char *text = r->value != NULL && r->value[0] != '\0'
					   ? r->value : "Error: refused by a mail filter";
		decide(ms, c, temp ? POLICY_TEMPFAIL : POLICY_REJECT, r->code, status, text,
		       temp ? "milter_tempfail" : "milter_reject");
	} else if (r->kind == MILTER_REP_TEMPFAIL) {
		decide(ms, c, POLICY_TEMPFAIL, 451, "4.7.1",
		       "Error: a mail filter asks to try again later", "milter_tempfail");
	} else {
		decide(ms, c, POLICY_REJECT, eod ? 554 : 550, "5.7.1",
		       eod ? "Error: message content rejected by a mail filter"
			   : "Error: refused by a mail filter", "milter_reject");
	}
}

/* ---- answers ---------------------------------------------------------------------- */

/*
 * The address of an envelope change, "<a@b>" or "a@b", as the session
 * keeps the ones it took itself ("local@domain", domain lower-cased, a
 * local recipient all lower-cased):
 * false when it is no RFC 5321 path (or "<>" where a recipient is due).
 * Sendmail and Postfix take these from the milter without the client's
 * restrictions; they are parsed here all the same, so that nothing but a
 * mailbox reaches the queue file and a long one is refused, never cut.
 */
static bool envelope_address(const struct config *cfg, const char *text, bool sender, char *out,
			     size_t outlen)
{
	char path[ADDR_PATH_MAX + 3];
	size_t len = strlen(text);
	if (len > ADDR_PATH_MAX + 2)
		return false;
	if (text[0] == '<')
		snprintf(path, sizeof(path), "%s", text);
	else if (len > ADDR_PATH_MAX)
		return false;
	else
		snprintf(path, sizeof(path), "<%s>", text);
	struct mail_address a;
	const char *err = NULL;
	unsigned flags = ADDR_ALLOW_UTF8 | (sender ? ADDR_ALLOW_NULL : ADDR_ALLOW_BARE_POSTMASTER);
	long used = address_parse_path(path, strlen(path), flags, &a, &err);
	if (used < 0 || (size_t)used != strlen(path))
		return false;
	/* A recipient of a local domain in the form the session queues
	 * (rcpt_queue_form): lower case, unquoted, <Postmaster> at the
	 * first local domain; so delivery and DELRCPT find it. */
	bool local = a.domain[0] == '\0' ||
		     (!a.domain_literal && strlist_contains_nocase(&cfg->local_domains, a.domain));
	if (sender || !local || !policy_local_key(cfg, &a, out, outlen))
		address_format(&a, out, outlen);
	return true;
}

/* Would the queue file take name and value (as it follows the colon,
 * CRLF or LF folds) as a field? What it would refuse is not shown to the
 * next milters either. */
static bool header_change_valid(const char *name, const char *value)
{
	buf_t b = BUF_INIT;
	buf_printf(&b, "%s:", name);
	for (const char *p = value; *p != '\0'; p++)
		if (!(p[0] == '\r' && p[1] == '\n'))
			buf_putc(&b, *p);
	bool ok = queue_header_field_valid(buf_cstr(&b));
	buf_free(&b);
	return ok;
}

/* A change the milter asks for at the end of the message. */
static void take_change(struct milter_session *ms, struct milter_conv *c,
			const struct milter_reply *r)
{
	static const struct {
		char kind;
		uint32_t action;
	} needs[] = {
		{ MILTER_REP_ADDHEADER, MILTER_ACT_ADDHDRS },
		{ MILTER_REP_INSHEADER, MILTER_ACT_ADDHDRS },
		{ MILTER_REP_CHGHEADER, MILTER_ACT_CHGHDRS },
		{ MILTER_REP_ADDRCPT, MILTER_ACT_ADDRCPT },
		{ MILTER_REP_ADDRCPT_PAR, MILTER_ACT_ADDRCPT_PAR },
		{ MILTER_REP_DELRCPT, MILTER_ACT_DELRCPT },
		{ MILTER_REP_REPLBODY, MILTER_ACT_CHGBODY },
		{ MILTER_REP_CHGFROM, MILTER_ACT_CHGFROM },
		{ MILTER_REP_QUARANTINE, MILTER_ACT_QUARANTINE },
	};
	for (size_t i = 0; i < ARRAY_LEN(needs); i++)
		if (needs[i].kind == r->kind && !(c->actions & needs[i].action)) {
			log_warn("%s: milter=%s %s without having asked for it: ignored",
				 conv_log_key(c), c->spec->name, milter_reply_name(r->kind));
			return;
		}
	if (ms->edits.count >= CHANGES_MAX) {
		conv_fail(c, "too many changes");
		return;
	}
	size_t text = (r->name != NULL ? strlen(r->name) : 0) +
		      (r->value != NULL ? strlen(r->value) : 0) +
		      (r->address != NULL ? strlen(r->address) : 0);
	if (text > CHANGES_TEXT_MAX - ms->edits_text) {
		conv_fail(c, "changes over 1 MiB of header text and addresses");
		return;
	}
	ms->edits_text += text;
	if (r->kind == MILTER_REP_REPLBODY &&
	    (ms->replbody != NULL ? ms->replbody->body.len : 0) + r->body_len >
		    ms->client->cfg->message_size_limit) {
		conv_fail(c, "a new body over message_size_limit");
		return;
	}
	/* A value as it follows the colon: with HDR_LEADSPC the milter gives
	 * the white space itself, otherwise one space goes before it. */
	char *value = NULL;
	if (r->value != NULL && r->kind != MILTER_REP_QUARANTINE) {
		bool lead = (c->protocol & MILTER_P_HDR_LEADSPC) || r->value[0] == '\0';
		value = xmalloc(strlen(r->value) + 2);
		snprintf(value, strlen(r->value) + 2, "%s%s", lead ? "" : " ", r->value);
	}
	if (value != NULL && r->value[0] != '\0' && !header_change_valid(r->name, value)) {
		log_warn("%s: milter=%s %s %s with a malformed value: ignored", conv_log_key(c),
			 c->spec->name, milter_reply_name(r->kind), r->name);
		free(value);
		return;
	}
	char addr[ADDR_PATH_MAX + 1] = "";
	if (r->address != NULL &&
	    !envelope_address(ms->client->cfg, r->address, r->kind == MILTER_REP_CHGFROM, addr,
			      sizeof(addr))) {
		log_warn("%s: milter=%s %s with a malformed address: ignored", conv_log_key(c),
			 c->spec->name, milter_reply_name(r->kind));
		return;
	}
	switch (r->kind) {
	case MILTER_REP_ADDHEADER:
		policy_edits_add(&ms->edits, POLICY_EDIT_ADD_HEADER, 0, r->name, value);
		break;
	case MILTER_REP_INSHEADER:
		policy_edits_add(&ms->edits, POLICY_EDIT_INSERT_HEADER, r->index, r->name, value);
		break;
	case MILTER_REP_CHGHEADER:
		/* libmilter counts from 1; 0 is taken as the first too */
		policy_edits_add(&ms->edits, POLICY_EDIT_CHANGE_HEADER, r->index ? r->index : 1,
				 r->name, r->value[0] != '\0' ? value : NULL);
		break;
	case MILTER_REP_ADDRCPT:
	case MILTER_REP_ADDRCPT_PAR:
		policy_edits_add(&ms->edits, POLICY_EDIT_ADD_RCPT, 0, NULL, addr);
		break;
	case MILTER_REP_DELRCPT:
		policy_edits_add(&ms->edits, POLICY_EDIT_DEL_RCPT, 0, NULL, addr);
		break;
	case MILTER_REP_CHGFROM:
		policy_edits_add(&ms->edits, POLICY_EDIT_CHANGE_SENDER, 0, NULL, addr);
		break;
	case MILTER_REP_REPLBODY:
		if (ms->replbody == NULL)
			ms->replbody = policy_edits_add(&ms->edits, POLICY_EDIT_REPLACE_BODY, 0,
							NULL, NULL);
		buf_append(&ms->replbody->body, r->body, r->body_len);
		break;
	case MILTER_REP_QUARANTINE:
		ms->quarantine = true;
		snprintf(ms->quarantine_reason, sizeof(ms->quarantine_reason), "%s", r->value);
		snprintf(ms->quarantine_by, sizeof(ms->quarantine_by), "%s", c->spec->name);
		break;
	default:
		break;
	}
	free(value);
}

static void eom_answered(struct milter_session *ms, struct milter_conv *c, bool keep)
{
	c->in_message = false;
	c->msg_done = true;
	if (keep && ms->edits.count > 0) {
		log_info("%s: milter=%s changes=%zu", conv_log_key(c), c->spec->name,
			 ms->edits.count);
		if (c->index + 1 < ms->count)
			milter_view_apply(ms, &ms->edits); /* what the next milters see */
		policy_edits_move(&policy_call_reply(ms->call)->edits, &ms->edits);
	}
	policy_edits_free(&ms->edits);
	ms->edits_text = 0;
	ms->replbody = NULL;
}

void milter_answer(struct milter_conv *c, const struct milter_reply *r)
{
	struct milter_session *ms = c->ms;
	bool final = milter_reply_is_final(r->kind);
	if (final && c->ignored > 0) {
		c->ignored--; /* the answer to an UNKNOWN */
		return;
	}
	if (!c->waiting || ms->call == NULL || &ms->convs[ms->cur] != c) {
		conv_fail(c, "an answer nobody asked for");
		return;
	}
	if (r->kind == MILTER_REP_PROGRESS) {
		struct timeval tv = { (time_t)c->spec->content_timeout, 0 };
		evtimer_add(c->timer, &tv);
		return;
	}
	if (!final) {
		if (c->sent != MILTER_CMD_BODYEOB)
			conv_fail(c, "a change before the end of the message");
		else
			take_change(ms, c, r);
		return;
	}
	c->waiting = false;
	evtimer_del(c->timer);
	enum policy_stage stage = ms->req->stage;
	bool conn_level = stage == POLICY_CONNECT || stage == POLICY_HELO;
	if (r->kind != MILTER_REP_CONTINUE)
		log_info("%s: milter=%s %s: %s%s%s", conv_log_key(c), c->spec->name, stage_of(ms),
			 milter_reply_name(r->kind), r->kind == MILTER_REP_REPLYCODE ? " " : "",
			 r->kind == MILTER_REP_REPLYCODE ? r->value : "");
	else
		log_debug("%s: milter=%s %s: continue", conv_log_key(c), c->spec->name,
			  stage_of(ms));
	bool eom = c->sent == MILTER_CMD_BODYEOB;
	switch (r->kind) {
	case MILTER_REP_CONTINUE:
		break;
	case MILTER_REP_SKIP:
		if (c->sent == MILTER_CMD_BODY)
			ms->body_skip = true;
		break;
	case MILTER_REP_ACCEPT:
		if (conn_level)
			c->conn_done = true;
		else
			c->msg_done = true;
		break;
	case MILTER_REP_DISCARD:
		if (conn_level) {
			log_warn("%s: milter=%s discard at %s: taken as continue", conv_log_key(c),
				 c->spec->name, stage_of(ms));
			break;
		}
		c->msg_done = true;
		decide(ms, c, POLICY_DISCARD, 250, "2.0.0", "discarded by a mail filter",
		       "milter_discard");
		break;
	case MILTER_REP_REJECT:
	case MILTER_REP_TEMPFAIL:
	case MILTER_REP_REPLYCODE:
		refuse(ms, c, r);
		if (conn_level && stage == POLICY_CONNECT)
			c->conn_done = true;
		else if (stage != POLICY_RCPT && !conn_level)
			c->msg_done = true;
		break;
	case MILTER_REP_SHUTDOWN:
	case MILTER_REP_CONN_FAIL:
		decide(ms, c, POLICY_TEMPFAIL, 421, "4.7.0",
		       "Error: a mail filter closes the connection, try again later",
		       "milter_shutdown");
		c->conn_done = true;
		break;
	default:
		break;
	}
	if (eom)
		eom_answered(ms, c, r->kind == MILTER_REP_CONTINUE || r->kind == MILTER_REP_ACCEPT);
	milter_resume(ms);
}

/* ---- the stages ------------------------------------------------------------------- */

/* Send cmd (in b, after its macros) unless the milter asked to go without
 * (skip_flag); wait for its answer unless it sends none (nr_flag). True
 * when an answer is due. */
static bool send_command(struct milter_conv *c, buf_t *b, char cmd, uint32_t skip_flag,
			 uint32_t nr_flag, bool content)
{
	if (c->protocol & skip_flag) {
		buf_reset(b);
		return false;
	}
	bool expect = !(c->protocol & nr_flag);
	conv_send(c, b, cmd, expect, content);
	return expect;
}

static const char *helo_of(const struct policy_request *req)
{
	return req->helo != NULL ? req->helo : "";
}

/* MAIL or RCPT with the command's ESMTP parameters, each its own string. */
static void put_envelope(const struct policy_request *req, char cmd, const char *path, buf_t *b)
{
	char args[sizeof(req->esmtp_args)];
	const char *params[32];
	size_t n = 0;
	snprintf(args, sizeof(args), "%s", req->esmtp_args);
	for (char *save = NULL, *tok = strtok_r(args, " ", &save); tok != NULL && n < 32;
	     tok = strtok_r(NULL, " ", &save))
		params[n++] = tok;
	milter_encode_envelope(b, cmd, path, params, n);
}

/* The one command of the stages before the end of data; true when an
 * answer is due. */
static bool envelope_step(struct milter_session *ms, struct milter_conv *c)
{
	const struct policy_request *req = ms->req;
	buf_t b = BUF_INIT;
	bool due = false;
	char path[ADDR_PATH_MAX + 3];
	switch (req->stage) {
	case POLICY_CONNECT: {
		milter_put_macros(ms, c, MILTER_MACROS_CONNECT, MILTER_CMD_CONNECT, &b);
		char host[300];
		if (req->client_name != NULL)
			snprintf(host, sizeof(host), "%s", req->client_name);
		else
			snprintf(host, sizeof(host), "[%s]", req->client_addr);
		char family = req->client.ss_family == AF_INET6 ? '6'
			      : req->client.ss_family == AF_INET ? '4' : 'U';
		milter_encode_connect(&b, host, family, (uint16_t)req->client_port,
				      req->client_addr);
		due = send_command(c, &b, MILTER_CMD_CONNECT, MILTER_P_NOCONNECT,
				   MILTER_P_NR_CONN, false);
		break;
	}
	case POLICY_HELO:
		milter_put_macros(ms, c, MILTER_MACROS_HELO, MILTER_CMD_HELO, &b);
		milter_encode_helo(&b, helo_of(req));
		due = send_command(c, &b, MILTER_CMD_HELO, MILTER_P_NOHELO, MILTER_P_NR_HELO, false);
		break;
	case POLICY_MAIL:
		address_format(&req->sender, path + 1, sizeof(path) - 2);
		path[0] = '<';
		strcat(path, ">");
		milter_put_macros(ms, c, MILTER_MACROS_MAIL, MILTER_CMD_MAIL, &b);
		put_envelope(req, MILTER_CMD_MAIL, path, &b);
		due = send_command(c, &b, MILTER_CMD_MAIL, MILTER_P_NOMAIL, MILTER_P_NR_MAIL, false);
		break;
	case POLICY_RCPT:
		address_format(&req->rcpt, path + 1, sizeof(path) - 2);
		path[0] = '<';
		strcat(path, ">");
		milter_put_macros(ms, c, MILTER_MACROS_RCPT, MILTER_CMD_RCPT, &b);
		put_envelope(req, MILTER_CMD_RCPT, path, &b);
		due = send_command(c, &b, MILTER_CMD_RCPT, MILTER_P_NORCPT, MILTER_P_NR_RCPT, false);
		break;
	case POLICY_DATA:
		if (c->version < 4)
			break; /* DATA came with version 4 */
		milter_put_macros(ms, c, MILTER_MACROS_DATA, MILTER_CMD_DATA, &b);
		milter_encode_simple(&b, MILTER_CMD_DATA);
		due = send_command(c, &b, MILTER_CMD_DATA, MILTER_P_NODATA, MILTER_P_NR_DATA, false);
		break;
	default:
		break;
	}
	buf_free(&b);
	return due;
}

/* The end of data for milter c: header fields, EOH, body, EOM. */
static enum run eod_steps(struct milter_session *ms, struct milter_conv *c)
{
	buf_t b = BUF_INIT;
	enum run result = RUN_NEXT;
	char chunk[MILTER_CHUNK_MAX];
	while (!ms->stop && !c->msg_done && result == RUN_NEXT) {
		if (conv_backlog(c) > MILTER_OUTPUT_PACE) {
			result = RUN_WAIT; /* the write callback brings us back */
			conv_wait_output(c);
			break;
		}
		switch (ms->eod) {
		case EOD_HEADERS: {
			if ((c->protocol & MILTER_P_NOHDRS) || ms->header_next >= ms->header_count) {
				ms->eod = EOD_EOH;
				break;
			}
			const struct milter_header *h = &ms->headers[ms->header_next++];
			const char *v = h->value;
			if (!(c->protocol & MILTER_P_HDR_LEADSPC))
				v += strspn(v, " \t");
			if (strlen(h->name) + strlen(v) > HEADER_FIELD_MAX)
				break; /* too long for a milter packet: left out */
			milter_encode_header(&b, h->name, v);
			if (send_command(c, &b, MILTER_CMD_HEADER, 0, MILTER_P_NR_HDR, true))
				result = RUN_WAIT;
			break;
		}
		case EOD_EOH:
			ms->eod = EOD_BODY;
			milter_put_macros(ms, c, MILTER_MACROS_EOH, MILTER_CMD_EOH, &b);
			milter_encode_simple(&b, MILTER_CMD_EOH);
			if (send_command(c, &b, MILTER_CMD_EOH, MILTER_P_NOEOH, MILTER_P_NR_EOH, true))
				result = RUN_WAIT;
			break;
		case EOD_BODY: {
			if ((c->protocol & MILTER_P_NOBODY) || ms->body_skip) {
				ms->eod = EOD_EOM;
				break;
			}
			ssize_t n = milter_body_chunk(ms, chunk);
			if (n < 0) {
				log_error("%s: milter=%s cannot read the message: %m",
					  conv_log_key(c), c->spec->name);
				decide(ms, c, POLICY_TEMPFAIL, 451, "4.3.0",
				       "Error: cannot read the message, try again later",
				       "milter_read_error");
				break;
			}
			if (n == 0) {
				ms->eod = EOD_EOM;
				break;
			}
			milter_encode_body(&b, chunk, (size_t)n);
			if (send_command(c, &b, MILTER_CMD_BODY, 0, MILTER_P_NR_BODY, true))
				result = RUN_WAIT;
			break;
		}
		case EOD_EOM:
			ms->eod = EOD_DONE;
			milter_put_macros(ms, c, MILTER_MACROS_EOM, MILTER_CMD_BODYEOB, &b);
			milter_encode_simple(&b, MILTER_CMD_BODYEOB);
			conv_send(c, &b, MILTER_CMD_BODYEOB, true, true);
			result = RUN_WAIT;
			break;
		case EOD_DONE:
			buf_free(&b);
			return RUN_NEXT;
		}
	}
	buf_free(&b);
	if (ms->stop)
		return RUN_STOP;
	return result == RUN_WAIT ? RUN_WAIT : RUN_NEXT;
}

/* Where milter c is in the stage: waiting for it, done, or deciding. */
static enum run conv_step(struct milter_session *ms, struct milter_conv *c)
{
	for (;;) {
		if (ms->stop)
			return RUN_STOP;
		if (c->conn_done)
			return RUN_NEXT;
		switch (c->state) {
		case CONV_NEW:
			conv_start(c);
			continue;
		case CONV_CONNECTING:
		case CONV_NEGOTIATING:
			return RUN_WAIT;
		case CONV_FAILED:
			if (c->msg_done && ms->req->stage >= POLICY_RCPT)
				return RUN_NEXT;
			if (!default_action(ms, c))
				return RUN_NEXT;
			/* At connect the refusal holds for the session (at every
			 * RCPT), like a milter's own. */
			if (ms->req->stage == POLICY_CONNECT)
				c->conn_done = true;
			return RUN_STOP;
		case CONV_READY:
			break;
		}
		break;
	}
	if (c->waiting)
		return RUN_WAIT;
	if (conv_backlog(c) > MILTER_OUTPUT_PACE) {
		conv_wait_output(c);
		return RUN_WAIT;
	}
	enum policy_stage stage = ms->req->stage;
	if (!ms->started) {
		ms->started = true;
		/* A message the milter did not see the end of (refused by
		 * postern or by a milter before it, RSET while it waited):
		 * ABORT before the next MAIL or HELO, as Postfix sends it. */
		if ((stage == POLICY_MAIL || stage == POLICY_HELO) && c->in_message) {
			buf_t b = BUF_INIT;
			milter_encode_simple(&b, MILTER_CMD_ABORT);
			conv_send(c, &b, MILTER_CMD_ABORT, false, false);
			buf_free(&b);
			c->in_message = false;
		}
		if (stage == POLICY_MAIL) {
			c->in_message = true;
			c->msg_done = false;
		}
		if (c->msg_done && stage >= POLICY_RCPT)
			return RUN_NEXT;
		if (stage == POLICY_END_OF_DATA) {
			ms->eod = EOD_HEADERS;
			ms->header_next = 0;
			ms->body_pos = ms->body_replaced ? 0 : ms->body_off;
			ms->body_skip = false;
		} else if (envelope_step(ms, c)) {
			return RUN_WAIT;
		}
	}
	if (ms->stop)
		return RUN_STOP;
	if (c->msg_done && stage >= POLICY_MAIL)
		return RUN_NEXT;
	if (stage == POLICY_END_OF_DATA)
		return eod_steps(ms, c);
	return RUN_NEXT;
}

/* Ask the milters from ms->cur on; true when the stage's verdict is known. */
static bool stage_run(struct milter_session *ms)
{
	ms->in_run = true;
	bool done = false;
	while (ms->cur < ms->count) {
		enum run r = conv_step(ms, &ms->convs[ms->cur]);
		if (r == RUN_WAIT)
			break;
		if (r == RUN_STOP) {
			done = true;
			break;
		}
		ms->cur++;
		ms->started = false;
	}
	if (ms->cur >= ms->count)
		done = true;
	ms->in_run = false;
	return done;
}

/* The stage's verdict into the call's reply. */
static enum policy_verdict stage_end(struct milter_session *ms)
{
	struct policy_reply *reply = policy_call_reply(ms->call);
	enum policy_verdict v = ms->verdict;
	if (v == POLICY_DUNNO && ms->quarantine && ms->req->stage == POLICY_END_OF_DATA) {
		v = POLICY_QUARANTINE;
		policy_reply_set(reply, 250, "2.0.0", "milter_quarantine", "%s",
				 ms->quarantine_reason);
		snprintf(reply->detail, sizeof(reply->detail), "milter=%s", ms->quarantine_by);
	} else if (v != POLICY_DUNNO) {
		policy_reply_set(reply, ms->code, ms->status, ms->reason, "%s", ms->text);
		snprintf(reply->detail, sizeof(reply->detail), "milter=%s", ms->decided_by);
		/* At connect: refused at every RCPT, after a banner (Postfix
		 * answers the commands of such a session with the refusal). */
		if (ms->req->stage == POLICY_CONNECT && ms->code != 421)
			reply->at_rcpt = true;
		/* ... and the milters are done with the session, as in Sendmail:
		 * the ones after the refusal never got CONNECT, and a HELO or
		 * MAIL without it is out of order. They hear QUIT at the end. */
		if (ms->req->stage == POLICY_CONNECT)
			for (size_t i = 0; i < ms->count; i++)
				ms->convs[i].conn_done = true;
	}
	if (v != POLICY_DUNNO && v != POLICY_QUARANTINE && ms->req->stage == POLICY_END_OF_DATA)
		policy_edits_free(&reply->edits); /* refused or dropped: no changes */
	milter_content_free(ms);
	ms->call = NULL;
	ms->req = NULL;
	return v;
}

void milter_resume(struct milter_session *ms)
{
	if (ms->call == NULL || ms->in_run)
		return;
	if (!stage_run(ms))
		return;
	struct policy_call *call = ms->call;
	enum policy_verdict v = stage_end(ms);
	policy_call_finish(call, v); /* the session may go on, and even end, here */
}

/* ---- the policy check --------------------------------------------------------------- */

static enum policy_verdict milter_check(struct policy_call *call, void *arg)
{
	const struct policy_request *req = policy_call_request(call);
	struct milter_session *ms = req->milter;
	(void)arg;
	if (ms == NULL)
		return POLICY_DUNNO;
	ms->call = call;
	ms->req = req;
	ms->cur = 0;
	ms->started = false;
	ms->stop = false;
	ms->verdict = POLICY_DUNNO;
	ms->quarantine = false;
	ms->decided_by = NULL;
	if (req->stage == POLICY_END_OF_DATA && milter_content_open(ms, req) != 0) {
		log_error("%s: milters: cannot read the message %s: %m", req->queue_id,
			  req->content_path != NULL ? req->content_path : "(none)");
		milter_content_free(ms);
		ms->call = NULL;
		ms->req = NULL;
		policy_call_set(call, 451, "4.3.0", "milter_read_error",
				"Error: cannot read the message, try again later");
		return POLICY_TEMPFAIL;
	}
	if (stage_run(ms))
		return stage_end(ms);
	policy_call_set_state(call, ms);
	return POLICY_PENDING;
}

/* The run was dropped (the session ends, or the stage timed out): a
 * milter in the middle of a command is out of step for good. */
static void milter_cancel(struct policy_call *call, void *arg)
{
	struct milter_session *ms = policy_call_state(call);
	(void)arg;
	if (ms == NULL || ms->call != call)
		return;
	struct milter_conv *c = ms->cur < ms->count ? &ms->convs[ms->cur] : NULL;
	bool out_of_step = c != NULL && c->state == CONV_READY && (c->waiting || ms->started);
	if (out_of_step) {
		/* Not the milter's fault (the client left, or policy_timeout):
		 * logged as such, but the conversation is over all the same. */
		log_info("%s: milter=%s dropped in the middle of %s: the session stopped "
			 "waiting", conv_log_key(c), c->spec->name, stage_of(ms));
		conv_close(c, false);
		c->state = CONV_FAILED;
	}
	milter_content_free(ms);
	ms->call = NULL;
	ms->req = NULL;
}

void milter_client_register(struct milter_client *c, struct policy_env *env)
{
	static const struct policy_check check = { "milter", milter_check, milter_cancel, NULL };
	(void)c;
	for (int stage = 0; stage < POLICY_STAGE_COUNT; stage++)
		policy_env_add(env, (enum policy_stage)stage, &check);
}

/* ---- the session's end and the commands without a stage ---------------------------------- */

void milter_session_abort(struct milter_session *ms)
{
	if (ms == NULL || ms->call != NULL)
		return;
	for (size_t i = 0; i < ms->count; i++) {
		struct milter_conv *c = &ms->convs[i];
		if (c->state != CONV_READY || !c->in_message || c->waiting)
			continue;
		buf_t b = BUF_INIT;
		milter_encode_simple(&b, MILTER_CMD_ABORT);
		conv_send(c, &b, MILTER_CMD_ABORT, false, false);
		buf_free(&b);
		c->in_message = false;
	}
}

void milter_session_unknown(struct milter_session *ms, const char *line)
{
	if (ms == NULL || ms->call != NULL)
		return;
	for (size_t i = 0; i < ms->count; i++) {
		struct milter_conv *c = &ms->convs[i];
		if (c->state != CONV_READY || c->conn_done || c->version < 3 ||
		    (c->protocol & MILTER_P_NOUNKNOWN) || c->ignored >= 8)
			continue;
		buf_t b = BUF_INIT;
		milter_encode_unknown(&b, line);
		conv_send(c, &b, MILTER_CMD_UNKNOWN, false, false);
		buf_free(&b);
		if (!(c->protocol & MILTER_P_NR_UNKN))
			c->ignored++;
	}
}

void milter_session_rejected_rcpt(struct milter_session *ms, const struct policy_request *req,
				  bool by_milter, const char *status, const char *text)
{
	if (ms == NULL || ms->call != NULL)
		return;
	/* A milter's own refusal: the milters up to the one that refused
	 * were asked already. */
	size_t from = by_milter ? ms->cur + 1 : 0;
	char path[ADDR_PATH_MAX + 3];
	address_format(&req->rcpt, path + 1, sizeof(path) - 2);
	path[0] = '<';
	strcat(path, ">");
	ms->req = req;
	ms->refused_status = status;
	ms->refused_text = text;
	for (size_t i = from; i < ms->count; i++) {
		struct milter_conv *c = &ms->convs[i];
		if (c->state != CONV_READY || c->conn_done || c->msg_done || c->waiting ||
		    !(c->protocol & MILTER_P_RCPT_REJ) || (c->protocol & MILTER_P_NORCPT) ||
		    c->ignored >= 8)
			continue;
		buf_t b = BUF_INIT;
		milter_put_macros(ms, c, MILTER_MACROS_RCPT, MILTER_CMD_RCPT, &b);
		put_envelope(req, MILTER_CMD_RCPT, path, &b);
		conv_send(c, &b, MILTER_CMD_RCPT, false, false);
		buf_free(&b);
		if (!(c->protocol & MILTER_P_NR_RCPT))
			c->ignored++;
	}
	ms->refused_status = NULL;
	ms->refused_text = NULL;
	ms->req = NULL;
}

void milter_session_free(struct milter_session **msp)
{
	struct milter_session *ms = *msp;
	if (ms == NULL)
		return;
	for (size_t i = 0; i < ms->count; i++)
		conv_close(&ms->convs[i], true);
	milter_content_free(ms);
	free(ms->convs);
	xfree(msp);
}

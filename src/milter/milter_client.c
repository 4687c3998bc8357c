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
 * Untrusted input: the milters' answers (decoded by milter_proto.c), and
 * the message's header section read back from the queue file (bounded by
 * header_size_limit). Unprivileged smtp worker, on its event loop; the
 * only blocking call is the read of the message's own queue file, which
 * was just written (page cache).
 */
#include "milter_int.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../lib/log.h"
#include "../lib/xalloc.h"
#include "../version.h"

/* Raw bytes per body chunk: LF becomes CRLF, so at most twice this,
 * which stays within MILTER_CHUNK_MAX. */
#define BODY_READ_MAX (MILTER_CHUNK_MAX / 2)
/* A header field longer than this is not sent (libmilter's packet limit). */
#define HEADER_FIELD_MAX (MILTER_CHUNK_MAX - 16)

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

/* ---- the message's content --------------------------------------------------------- */

static void content_free(struct milter_session *ms)
{
	if (ms->fd >= 0)
		close(ms->fd);
	ms->fd = -1;
	for (size_t i = 0; i < ms->header_count; i++) {
		free(ms->headers[i].name);
		free(ms->headers[i].value);
	}
	xfree(&ms->headers);
	ms->header_count = 0;
	policy_edits_free(&ms->edits);
	ms->replbody = NULL;
}

static void add_header(struct milter_session *ms, const char *line, size_t len)
{
	const char *colon = memchr(line, ':', len);
	ms->headers = xreallocarray(ms->headers, ms->header_count + 1, sizeof(*ms->headers));
	struct milter_header *h = &ms->headers[ms->header_count++];
	size_t nlen = (size_t)(colon - line);
	while (nlen > 0 && (line[nlen - 1] == ' ' || line[nlen - 1] == '\t'))
		nlen--;
	h->name = xstrndup(line, nlen);
	h->value = xstrndup(colon + 1, len - (size_t)(colon + 1 - line));
}

/* Does this line start a header field ("Name:")? */
static bool field_start(const char *line, size_t len)
{
	size_t i = 0;
	while (i < len && line[i] > ' ' && line[i] < 127 && line[i] != ':')
		i++;
	while (i < len && (line[i] == ' ' || line[i] == '\t'))
		i++;
	return i > 0 && i < len && line[i] == ':' && (line[0] != ' ' && line[0] != '\t');
}

/* Read the header section (LF line ends in the queue file) into
 * ms->headers and find where the body starts. 0, or -1 on a read error. */
static int content_open(struct milter_session *ms, const struct policy_request *req)
{
	if (req->content_path == NULL)
		return -1;
	ms->fd = open(req->content_path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (ms->fd < 0)
		return -1;
	uint64_t limit = ms->client->cfg->header_size_limit + 64 * 1024; /* and our Received: */
	uint64_t want = req->content_len < limit ? req->content_len : limit;
	char *text = xmalloc((size_t)want + 1);
	ssize_t got = want > 0 ? pread(ms->fd, text, (size_t)want, (off_t)req->content_off) : 0;
	if (got < 0 || (uint64_t)got != want) {
		free(text);
		return -1;
	}
	ms->body_end = req->content_off + req->content_len;
	ms->body_off = ms->body_end;
	size_t pos = 0, n = (size_t)got;
	buf_t field = BUF_INIT;
	bool have_field = false;
	while (pos < n) {
		char *nl = memchr(text + pos, '\n', n - pos);
		if (nl == NULL && (uint64_t)n < req->content_len)
			break; /* cut by the limit: the rest counts as body */
		size_t end = nl != NULL ? (size_t)(nl - text) : n;
		const char *line = text + pos;
		size_t len = end - pos;
		if (len > 0 && line[len - 1] == '\r')
			len--;
		if (len > 0 && (line[0] == ' ' || line[0] == '\t') && have_field) {
			buf_putc(&field, '\n');
			buf_append(&field, line, len);
		} else {
			if (have_field)
				add_header(ms, field.data, field.len);
			buf_reset(&field);
			have_field = false;
			if (len == 0 || !field_start(line, len)) {
				/* the empty line (skipped), or a line that is no field:
				 * the body starts there */
				ms->body_off = req->content_off + (len == 0 ? end + 1 : pos);
				pos = n;
				break;
			}
			buf_append(&field, line, len);
			have_field = true;
		}
		pos = end + 1;
	}
	if (have_field)
		add_header(ms, field.data, field.len);
	if (ms->body_off > ms->body_end)
		ms->body_off = ms->body_end;
	buf_free(&field);
	free(text);
	return 0;
}

/* The next body chunk from ms->body_pos with CRLF line ends; its length,
 * 0 at the end, -1 on a read error. */
static ssize_t body_chunk(struct milter_session *ms, char *out)
{
	char raw[BODY_READ_MAX];
	uint64_t left = ms->body_end - ms->body_pos;
	size_t want = left < sizeof(raw) ? (size_t)left : sizeof(raw);
	if (want == 0)
		return 0;
	ssize_t got = pread(ms->fd, raw, want, (off_t)ms->body_pos);
	if (got <= 0)
		return -1;
	ms->body_pos += (uint64_t)got;
	size_t o = 0;
	for (ssize_t i = 0; i < got; i++) {
		if (raw[i] == '\n' && (i == 0 || raw[i - 1] != '\r'))
			out[o++] = '\r';
		out[o++] = raw[i];
	}
	return (ssize_t)o;
}

/* ---- macros ---------------------------------------------------------------------- */

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
static void put_macros(struct milter_session *ms, struct milter_conv *c,
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
	/* A value as it follows the colon: with HDR_LEADSPC the milter gives
	 * the white space itself, otherwise one space goes before it. */
	char *value = NULL;
	if (r->value != NULL && r->kind != MILTER_REP_QUARANTINE) {
		bool lead = (c->protocol & MILTER_P_HDR_LEADSPC) || r->value[0] == '\0';
		value = xmalloc(strlen(r->value) + 2);
		snprintf(value, strlen(r->value) + 2, "%s%s", lead ? "" : " ", r->value);
	}
	char addr[ADDR_PATH_MAX + 1] = "";
	if (r->address != NULL) {
		/* "<a@b>" or "a@b": the edits hold it without the brackets */
		const char *a = r->address;
		size_t len = strlen(a);
		if (len >= 2 && a[0] == '<' && a[len - 1] == '>')
			a++, len -= 2;
		snprintf(addr, sizeof(addr), "%.*s", (int)len, a);
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

/* The end of the message is answered: keep c's changes if it let the
 * message through. */
static void eom_answered(struct milter_session *ms, struct milter_conv *c, bool keep)
{
	c->in_message = false;
	c->msg_done = true;
	if (keep && ms->edits.count > 0) {
		log_info("%s: milter=%s changes=%zu", conv_log_key(c), c->spec->name,
			 ms->edits.count);
		policy_edits_move(&policy_call_reply(ms->call)->edits, &ms->edits);
	}
	policy_edits_free(&ms->edits);
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
		put_macros(ms, c, MILTER_MACROS_CONNECT, MILTER_CMD_CONNECT, &b);
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
		put_macros(ms, c, MILTER_MACROS_HELO, MILTER_CMD_HELO, &b);
		milter_encode_helo(&b, helo_of(req));
		due = send_command(c, &b, MILTER_CMD_HELO, MILTER_P_NOHELO, MILTER_P_NR_HELO, false);
		break;
	case POLICY_MAIL:
		address_format(&req->sender, path + 1, sizeof(path) - 2);
		path[0] = '<';
		strcat(path, ">");
		put_macros(ms, c, MILTER_MACROS_MAIL, MILTER_CMD_MAIL, &b);
		milter_encode_envelope(&b, MILTER_CMD_MAIL, path, NULL, 0);
		due = send_command(c, &b, MILTER_CMD_MAIL, MILTER_P_NOMAIL, MILTER_P_NR_MAIL, false);
		break;
	case POLICY_RCPT:
		address_format(&req->rcpt, path + 1, sizeof(path) - 2);
		path[0] = '<';
		strcat(path, ">");
		put_macros(ms, c, MILTER_MACROS_RCPT, MILTER_CMD_RCPT, &b);
		milter_encode_envelope(&b, MILTER_CMD_RCPT, path, NULL, 0);
		due = send_command(c, &b, MILTER_CMD_RCPT, MILTER_P_NORCPT, MILTER_P_NR_RCPT, false);
		break;
	case POLICY_DATA:
		if (c->version < 4)
			break; /* DATA came with version 4 */
		put_macros(ms, c, MILTER_MACROS_DATA, MILTER_CMD_DATA, &b);
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
			put_macros(ms, c, MILTER_MACROS_EOH, MILTER_CMD_EOH, &b);
			milter_encode_simple(&b, MILTER_CMD_EOH);
			if (send_command(c, &b, MILTER_CMD_EOH, MILTER_P_NOEOH, MILTER_P_NR_EOH, true))
				result = RUN_WAIT;
			break;
		case EOD_BODY: {
			if ((c->protocol & MILTER_P_NOBODY) || ms->body_skip) {
				ms->eod = EOD_EOM;
				break;
			}
			ssize_t n = body_chunk(ms, chunk);
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
			put_macros(ms, c, MILTER_MACROS_EOM, MILTER_CMD_BODYEOB, &b);
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
	if (c->waiting || conv_backlog(c) > MILTER_OUTPUT_PACE)
		return RUN_WAIT;
	enum policy_stage stage = ms->req->stage;
	if (!ms->started) {
		ms->started = true;
		if (stage == POLICY_MAIL) {
			if (c->in_message) {
				buf_t b = BUF_INIT;
				milter_encode_simple(&b, MILTER_CMD_ABORT);
				conv_send(c, &b, MILTER_CMD_ABORT, false, false);
				buf_free(&b);
			}
			c->in_message = true;
			c->msg_done = false;
		}
		if (c->msg_done && stage >= POLICY_RCPT)
			return RUN_NEXT;
		if (stage == POLICY_END_OF_DATA) {
			ms->eod = EOD_HEADERS;
			ms->header_next = 0;
			ms->body_pos = ms->body_off;
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
	}
	if (v != POLICY_DUNNO && v != POLICY_QUARANTINE && ms->req->stage == POLICY_END_OF_DATA)
		policy_edits_free(&reply->edits); /* refused or dropped: no changes */
	content_free(ms);
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
	if (req->stage == POLICY_END_OF_DATA && content_open(ms, req) != 0) {
		log_error("%s: milters: cannot read the message %s: %m", req->queue_id,
			  req->content_path != NULL ? req->content_path : "(none)");
		content_free(ms);
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
	content_free(ms);
	ms->call = NULL; /* before conv_fail, which would carry on with the stage */
	if (out_of_step)
		conv_fail(c, "the session stopped waiting for it");
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

void milter_session_free(struct milter_session **msp)
{
	struct milter_session *ms = *msp;
	if (ms == NULL)
		return;
	for (size_t i = 0; i < ms->count; i++)
		conv_close(&ms->convs[i], true);
	content_free(ms);
	free(ms->convs);
	xfree(msp);
}

/*
 * transaction.c - one mail transaction: MAIL (RFC 5321 4.1.1.2, SIZE RFC
 * 1870, BODY RFC 6152, SMTPUTF8 RFC 6531), RCPT with the policy checks,
 * DATA and BDAT (RFC 3030) streamed through the data decoder into the
 * queue writer, and the hand-over to the queue. Each stage asks the
 * policy and may wait for its verdict; the end of data is: verdict, then
 * the commit off the event loop (commit.h), then the one 250 that makes
 * us responsible for the message.
 *
 * The decoded bytes pass through tx_content() on their way to the queue
 * file. Content checks (the scanners, docs/scanning.md) read the message
 * back from that file at the end of data: the writer is flushed and the
 * POLICY_END_OF_DATA request names the file and the content range, so
 * that their verdict comes before the 250 and no second copy is made.
 */
#include "session_int.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

#include "../auth/auth_proto.h"
#include "../lib/log.h"
#include "../lib/metrics.h"
#include "../lib/xalloc.h"
#include "../queue/capture.h"
#include "tls.h"

#define DECODED_FLUSH_AT (64 * 1024)

static uint64_t now_us(void)
{
	struct timeval tv;
	gettimeofday(&tv, NULL);
	return (uint64_t)tv.tv_sec * 1000000 + (uint64_t)tv.tv_usec;
}

void tx_free(struct smtp_tx **txp)
{
	struct smtp_tx *tx = *txp;
	if (tx == NULL)
		return;
	if (tx->writer != NULL)
		queue_writer_abort(&tx->writer);
	strlist_free(&tx->rcpts);
	free(tx->rcpt_notify);
	strlist_free(&tx->rcpt_orcpt);
	strlist_free(&tx->add_headers);
	strlist_free(&tx->remove_headers);
	strlist_free(&tx->disposition_hits);
	hashmap_free(&tx->rcpt_set, NULL);
	buf_free(&tx->decoded);
	free(tx->write_error);
	xfree(txp);
}

const char *session_protocol(const struct smtp_session *s)
{
	bool utf8 = s->tx != NULL && s->tx->smtputf8;
	bool auth = s->auth_user != NULL; /* RFC 3848: the "A" of a login */
	if (utf8)
		return s->tls ? (auth ? "UTF8SMTPSA" : "UTF8SMTPS") : (auth ? "UTF8SMTPA" : "UTF8SMTP");
	if (!s->esmtp)
		return s->tls ? "SMTPS" : "SMTP";
	return s->tls ? (auth ? "ESMTPSA" : "ESMTPS") : (auth ? "ESMTPA" : "ESMTP");
}

/* The MAIL parameters (the check step); false after filling *out. */
static bool mail_params(struct smtp_session *s, const struct smtp_command *cmd,
			struct smtp_tx *tx, struct smtp_reply *out)
{
	const struct config *cfg = s->srv->cfg;
	if (cmd->param_count > 0 && !s->esmtp) {
		reply_error(out, 555, "5.5.4", "Error: parameters need EHLO");
		return false;
	}
	for (size_t i = 0; i < cmd->param_count; i++) {
		const struct smtp_param *p = &cmd->params[i];
		struct smtp_parse_error perr;
		int dsn = smtp_mail_dsn_param(p, &tx->dsn, &perr);
		if (dsn < 0) {
			reply_error(out, perr.code, perr.status, "%s", perr.text);
			return false;
		}
		if (dsn > 0)
			continue;
		char value[32] = "";
		if (p->value.len < sizeof(value))
			memcpy(value, p->value.ptr, p->value.len);
		if (slice_eq_nocase(p->keyword, "SIZE") && p->has_value) {
			if (!str_parse_uint(value, &tx->declared_size)) {
				reply_error(out, 501, "5.5.4", "Error: bad SIZE parameter");
				return false;
			}
			if (tx->declared_size > cfg->message_size_limit) {
				reply_error(out, 552, "5.3.4", "Message size exceeds fixed limit");
				return false;
			}
		} else if (slice_eq_nocase(p->keyword, "BODY") && p->has_value) {
			if (str_eq_nocase(value, "8BITMIME"))
				tx->body_8bit = true;
			else if (!str_eq_nocase(value, "7BIT")) {
				reply_error(out, 501, "5.5.4", "Error: BODY must be 7BIT or 8BITMIME");
				return false;
			}
		} else if (slice_eq_nocase(p->keyword, "SMTPUTF8") && !p->has_value) {
			tx->smtputf8 = true;
		} else if (slice_eq_nocase(p->keyword, "AUTH") && p->has_value &&
			   (s->auth_user != NULL || smtp_auth_offered(s))) {
			/* RFC 4954 section 5: who submitted it first; postern
			 * records its own login only, so the value is not kept */
		} else {
			reply_error(out, 555, "5.5.4", "Error: unsupported MAIL parameter %.*s",
				    (int)(p->keyword.len > 32 ? 32 : p->keyword.len), p->keyword.ptr);
			return false;
		}
	}
	return true;
}

/* Verdicts other than accept and refuse leave their mark on the
 * transaction: the strongest disposition wins (discard > quarantine >
 * hold), tag headers add up. */
static void take_disposition(struct smtp_tx *tx, struct policy_reply *v)
{
	static const enum policy_verdict rank[] = { POLICY_HOLD, POLICY_QUARANTINE, POLICY_DISCARD };
	size_t have = 0, want = 0;
	for (size_t i = 0; i < ARRAY_LEN(rank); i++) {
		if (tx->disposition == rank[i])
			have = i + 1;
		if (v->verdict == rank[i])
			want = i + 1;
	}
	if (want > have) {
		tx->disposition = v->verdict;
		snprintf(tx->disposition_reason, sizeof(tx->disposition_reason), "%s",
			 v->reason[0] != '\0' ? v->reason : policy_verdict_name(v->verdict));
		snprintf(tx->disposition_check, sizeof(tx->disposition_check), "%s", v->check);
		snprintf(tx->disposition_text, sizeof(tx->disposition_text), "%s", v->text);
		strlist_free(&tx->disposition_hits);
		for (size_t i = 0; i < v->hits.count; i++)
			strlist_add(&tx->disposition_hits, v->hits.items[i]);
	}
	for (size_t i = 0; i < v->headers.count; i++)
		strlist_add(&tx->add_headers, v->headers.items[i]);
	for (size_t i = 0; i < v->remove_headers.count; i++)
		strlist_add(&tx->remove_headers, v->remove_headers.items[i]);
}

static enum step mail_verdict(struct smtp_session *s, struct policy_reply *v,
			      struct smtp_reply *out)
{
	struct smtp_tx *tx = s->pending_tx;
	s->pending_tx = NULL;
	if (policy_refuses(v->verdict)) {
		log_info("client=%s reject: MAIL from=<%s> code=%d %s reason=%s%s%s", s->peer_addr,
			 tx->sender_text, v->code, v->status, v->reason, v->detail[0] ? " " : "",
			 v->detail);
		session_count_refusal("mail", v->code, v->check, v->reason, v->detail);
		reply_from_policy(out, v);
		tx_free(&tx);
		return STEP_REPLY;
	}
	take_disposition(tx, v);
	s->tx = tx;
	session_tx_started(s);
	metrics_count(METRIC_SMTP_TRANSACTIONS);
	bool abandons = ++s->mails_since_message > 1; /* a loop of MAIL, RSET/EHLO */
	log_info("%s: client=%s helo=%s from=<%s> status=accepted%s", tx->id, s->peer_addr,
		 s->helo != NULL ? s->helo : "", tx->sender_text, tx->smtputf8 ? " smtputf8=yes" : "");
	reply_set(out, 250, "2.1.0", "Ok");
	if (abandons)
		session_count_junk(s, out);
	return STEP_REPLY;
}

enum step tx_handle_mail(struct smtp_session *s, const struct smtp_command *cmd,
			 struct smtp_reply *out)
{
	struct smtp_tx *tx = xcalloc(1, sizeof(*tx));
	if (!mail_params(s, cmd, tx, out)) {
		tx_free(&tx);
		return STEP_REPLY;
	}
	if (!smtp_auth_mail_allowed(s, &cmd->path, out)) {
		tx_free(&tx);
		return STEP_REPLY;
	}
	tx->sender = cmd->path;
	address_format(&tx->sender, tx->sender_text, sizeof(tx->sender_text));
	/* The queue id is allocated here, so that every log line of the
	 * transaction (and every check) can carry it. */
	tx->start_us = now_us();
	queue_id_new(tx->id);
	tx_free(&s->pending_tx);
	s->pending_tx = tx;
	struct policy_request req;
	session_request(s, POLICY_MAIL, &req);
	req.has_sender = true;
	req.sender = tx->sender;
	snprintf(req.queue_id, sizeof(req.queue_id), "%s", tx->id);
	return session_ask(s, &req, mail_verdict, out);
}

/* The recipient as stored in the queue: local mailboxes normalized to
 * their lookup key, others as given. */
static void rcpt_queue_form(const struct smtp_session *s, const struct mail_address *a,
			    char *out, size_t outlen)
{
	const struct config *cfg = s->srv->cfg;
	bool local = a->domain[0] == '\0' ||
		     (!a->domain_literal && strlist_contains_nocase(&cfg->local_domains, a->domain));
	if (!local || !policy_local_key(cfg, a, out, outlen))
		address_format(a, out, outlen);
}

static enum step rcpt_verdict(struct smtp_session *s, struct policy_reply *v,
			      struct smtp_reply *out)
{
	struct smtp_tx *tx = s->tx;
	const struct mail_address *rcpt = &s->pending_rcpt;
	char shown[ADDR_PATH_MAX + 1], stored[ADDR_PATH_MAX + 1], key[ADDR_PATH_MAX + 1];
	address_format(rcpt, shown, sizeof(shown));
	if (policy_refuses(v->verdict)) {
		log_info("%s: reject: RCPT client=%s from=<%s> to=<%s> code=%d %s reason=%s%s%s",
			 tx->id, s->peer_addr, tx->sender_text, shown, v->code, v->status,
			 v->reason, v->detail[0] ? " " : "", v->detail);
		session_count_refusal("rcpt", v->code, v->check, v->reason, v->detail);
		reply_from_policy(out, v);
		return STEP_REPLY;
	}
	take_disposition(tx, v);
	rcpt_queue_form(s, rcpt, stored, sizeof(stored));
	snprintf(key, sizeof(key), "%s", stored);
	str_lower(key);
	reply_set(out, 250, "2.1.5", "Ok");
	if (hashmap_contains(&tx->rcpt_set, key)) {
		session_count_junk(s, out); /* a repeated RCPT: one copy, no new log line */
		return STEP_REPLY;
	}
	hashmap_put(&tx->rcpt_set, key, NULL);
	metrics_count(METRIC_SMTP_RECIPIENTS_ACCEPTED);
	strlist_add(&tx->rcpts, stored);
	tx->rcpt_notify = xrealloc(tx->rcpt_notify, tx->rcpts.count);
	tx->rcpt_notify[tx->rcpts.count - 1] = (unsigned char)s->pending_rcpt_dsn.notify;
	strlist_add(&tx->rcpt_orcpt, s->pending_rcpt_dsn.orcpt);
	log_info("%s: to=<%s> status=accepted", tx->id, stored);
	return STEP_REPLY;
}

enum step tx_handle_rcpt(struct smtp_session *s, const struct smtp_command *cmd,
			 struct smtp_reply *out)
{
	struct smtp_tx *tx = s->tx;
	if (tx->rcpts.count >= s->srv->cfg->recipient_limit) {
		reply_set(out, 452, "4.5.3", "Error: too many recipients");
		return STEP_REPLY;
	}
	if (cmd->param_count > 0 && !s->esmtp) {
		reply_error(out, 555, "5.5.4", "Error: parameters need EHLO");
		return STEP_REPLY;
	}
	memset(&s->pending_rcpt_dsn, 0, sizeof(s->pending_rcpt_dsn));
	for (size_t i = 0; i < cmd->param_count; i++) {
		const struct smtp_param *p = &cmd->params[i];
		struct smtp_parse_error perr;
		int dsn = smtp_rcpt_dsn_param(p, tx->smtputf8, &s->pending_rcpt_dsn, &perr);
		if (dsn < 0) {
			reply_error(out, perr.code, perr.status, "%s", perr.text);
			return STEP_REPLY;
		}
		if (dsn == 0) {
			reply_error(out, 555, "5.5.4", "Error: unsupported RCPT parameter %.*s",
				    (int)(p->keyword.len > 32 ? 32 : p->keyword.len),
				    p->keyword.ptr);
			return STEP_REPLY;
		}
	}
	s->pending_rcpt = cmd->path;
	if (s->rcpt_refusal != NULL) /* decided at connect (a DNS blocklist) */
		return rcpt_verdict(s, s->rcpt_refusal, out);
	struct policy_request req;
	session_request(s, POLICY_RCPT, &req);
	req.has_rcpt = true;
	req.rcpt = cmd->path;
	return session_ask(s, &req, rcpt_verdict, out);
}

/* Text safe for a header comment: printable ASCII without parentheses. */
static void header_safe(const char *in, char *out, size_t outlen)
{
	size_t n = 0;
	for (; *in != '\0' && n + 1 < outlen; in++) {
		unsigned char c = (unsigned char)*in;
		out[n++] = (c > 32 && c < 127 && c != '(' && c != ')' && c != '\\') ? (char)c : '?';
	}
	out[n] = '\0';
}

/* RFC 5321 4.4 trace header, the first line of the queued content. */
static void add_received(struct smtp_session *s, buf_t *b)
{
	struct smtp_tx *tx = s->tx;
	char helo[256], date[64];
	time_t now = time(NULL);
	struct tm tm;
	header_safe(s->helo != NULL ? s->helo : "unknown", helo, sizeof(helo));
	gmtime_r(&now, &tm);
	strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S +0000", &tm);
	bool v6 = s->peer.ss_family == AF_INET6;
	buf_printf(b, "Received: from %s ([%s%s])\n\tby %s (postern) with %s", helo,
		   v6 ? "IPv6:" : "", s->peer_addr, s->srv->cfg->hostname, session_protocol(s));
	if (s->ssl != NULL && s->tls_ready)
		buf_printf(b, " (%s)", tls_describe(s->ssl));
	if (s->auth_user != NULL && s->srv->cfg->received_auth_user == CONFIG_YES) {
		char user[AUTH_USER_MAX + 1];
		header_safe(s->auth_user, user, sizeof(user));
		buf_printf(b, "\n\t(authenticated as %s)", user);
	}
	buf_printf(b, " id %s", tx->id);
	if (tx->rcpts.count == 1)
		buf_printf(b, "\n\tfor <%s>", tx->rcpts.items[0]);
	buf_printf(b, "; %s\n", date);
}

/* Create the queue file and write the trace header; false on failure. */
static bool open_writer(struct smtp_session *s, bool dot_mode)
{
	struct smtp_tx *tx = s->tx;
	const struct config *cfg = s->srv->cfg;
	struct queue_envelope env = {
		.arrival_us = tx->start_us, .client_addr = s->peer_addr,
		.client_helo = s->helo != NULL ? s->helo : "", .protocol = session_protocol(s),
		.sender = tx->sender_text, .recipients = &tx->rcpts,
		.smtputf8 = tx->smtputf8, .body_8bitmime = tx->body_8bit,
	};
	struct queue_rcpt_dsn *rcpt_dsn = xcalloc(tx->rcpts.count, sizeof(*rcpt_dsn));
	for (size_t i = 0; i < tx->rcpts.count; i++) {
		rcpt_dsn[i].notify = tx->rcpt_notify[i];
		rcpt_dsn[i].orcpt = tx->rcpt_orcpt.items[i];
	}
	env.dsn_ret = (char)tx->dsn.ret;
	env.dsn_envid = tx->dsn.envid;
	env.rcpt_dsn = rcpt_dsn;
	char *err = NULL;
	tx->writer = queue_writer_open(cfg->spool_dir, tx->id, &env, &err);
	free(rcpt_dsn);
	if (tx->writer == NULL) {
		log_error("%s: cannot create queue file: %s", tx->id, err);
		free(err);
		return false;
	}
	struct data_limits limits = {
		.max_size = cfg->message_size_limit,
		/* 0: lines are streamed whatever their length (Postfix, Exchange
		 * and Gmail accept them too); the size limit still applies. */
		.max_line = cfg->text_line_limit != 0 ? cfg->text_line_limit : UINT64_MAX,
		.max_header = cfg->header_size_limit,
		.normalize_bare_newlines = cfg->bare_newline == BARE_NEWLINE_NORMALIZE,
		/* RFC 6532 allows UTF-8 header fields in an SMTPUTF8 transaction. */
		.reject_8bit_headers = cfg->strict_7bit_headers == CONFIG_YES && !tx->smtputf8,
	};
	data_decoder_init(&tx->decoder, &limits, dot_mode);
	add_received(s, &tx->decoded);
	return true;
}

/*
 * A DATA that was refused while more input was already waiting: the
 * client sent its message without waiting for 354, which RFC 2920 section
 * 3.1 forbids (DATA ends a pipelined group). Whatever follows is message
 * text, never to run as commands: the session ends after the refusal.
 */
static void refuse_data(struct smtp_session *s, struct smtp_reply *out)
{
	tx_free(&s->tx);
	if (session_input_pending(s) > 0) {
		log_warn("client=%s sent message text before the reply to DATA (refused); closing",
			 s->peer_addr);
		out->flags |= REPLY_CLOSE;
	}
}

static enum step data_verdict(struct smtp_session *s, struct policy_reply *v,
			      struct smtp_reply *out)
{
	struct smtp_tx *tx = s->tx;
	if (policy_refuses(v->verdict)) {
		log_info("%s: reject: DATA client=%s from=<%s> code=%d %s reason=%s%s%s", tx->id,
			 s->peer_addr, tx->sender_text, v->code, v->status, v->reason,
			 v->detail[0] ? " " : "", v->detail);
		session_count_refusal("data", v->code, v->check, v->reason, v->detail);
		reply_from_policy(out, v);
		refuse_data(s, out);
		return STEP_REPLY;
	}
	take_disposition(tx, v);
	if (!open_writer(s, true)) {
		reply_set(out, 451, "4.3.0", "Error: queue file write error, try again later");
		return STEP_REPLY;
	}
	s->mode = MODE_DATA;
	reply_set(out, 354, "", "End data with <CR><LF>.<CR><LF>");
	return STEP_REPLY;
}

enum step tx_handle_data(struct smtp_session *s, struct smtp_reply *out)
{
	struct smtp_tx *tx = s->tx;
	if (tx->bdat_used) {
		reply_error(out, 503, "5.5.1", "Error: DATA after BDAT");
		return STEP_REPLY;
	}
	if (tx->rcpts.count == 0) {
		/* A pipelining client has sent the message text already: the
		 * transaction ends here, so that none of its lines can join
		 * it as commands. */
		reply_error(out, 554, "5.5.1", "Error: no valid recipients");
		refuse_data(s, out);
		return STEP_REPLY;
	}
	struct policy_request req;
	session_request(s, POLICY_DATA, &req);
	return session_ask(s, &req, data_verdict, out);
}

/* Hand decoded content to the queue file. */
static void tx_content(struct smtp_tx *tx)
{
	if (tx->decoded.len == 0)
		return;
	if (tx->writer != NULL && tx->write_error == NULL && tx->decoder.problems == DATA_OK)
		queue_writer_write(tx->writer, tx->decoded.data, tx->decoded.len, &tx->write_error);
	buf_reset(&tx->decoded);
}

size_t tx_consume(struct smtp_session *s, const char *data, size_t len)
{
	if (s->bdat_discard || s->tx == NULL) {
		size_t n = len < s->bdat_remaining ? len : (size_t)s->bdat_remaining;
		s->bdat_remaining -= n;
		return n;
	}
	struct smtp_tx *tx = s->tx;
	if (s->mode == MODE_BDAT && len > s->bdat_remaining)
		len = (size_t)s->bdat_remaining;
	size_t n = data_decode(&tx->decoder, data, len, &tx->decoded);
	if (s->mode == MODE_BDAT)
		s->bdat_remaining -= n;
	if (tx->decoded.len >= DECODED_FLUSH_AT)
		tx_content(tx);
	return n;
}

/* The reply for a message that the decoder condemned; false if none. */
static bool content_problem(const struct smtp_session *s, struct smtp_reply *r)
{
	unsigned p = s->tx->decoder.problems;
	const struct config *cfg = s->srv->cfg;
	if (p & DATA_TOO_BIG)
		reply_set(r, 552, "5.3.4", "Message size exceeds fixed limit");
	else if (p & DATA_HEADER_TOO_BIG)
		reply_set(r, 552, "5.3.4", "Message header size exceeds limit");
	else if (p & DATA_BARE_NEWLINE)
		reply_set(r, 554, "5.6.0",
			  "Message contains bare CR or LF: refused (SMTP smuggling protection)");
	else if (p & DATA_LINE_TOO_LONG)
		reply_set(r, 554, "5.6.0", "Message has a line longer than %llu characters",
			  (unsigned long long)cfg->text_line_limit);
	else if (p & DATA_8BIT_HEADER)
		reply_set(r, 554, "5.6.0", "Message header contains 8-bit bytes: refused "
			  "(strict_7bit_headers)");
	else
		return false;
	return true;
}

static const char *const problem_reasons[] = { "too_big", "bare_newline", "line_too_long",
					       "header_too_big", "8bit_header" };

static const char *content_reason(unsigned problems)
{
	for (size_t i = 0; i < ARRAY_LEN(problem_reasons); i++)
		if (problems & (1u << i))
			return problem_reasons[i];
	return "content";
}

static void log_refusal(const struct smtp_session *s, const struct smtp_reply *r,
			const char *reason)
{
	const struct smtp_tx *tx = s->tx;
	log_info("%s: reject: end-of-data client=%s from=<%s> size=%" PRIu64
		 " code=%d %s reason=%s", tx->id, s->peer_addr, tx->sender_text,
		 tx->decoder.size, r->code, r->status, reason);
}

/* The same for the metrics, with the check that refused (NULL: none). */
static void count_refusal(const struct smtp_reply *r, const char *check, const char *reason,
			  const char *detail)
{
	session_count_refusal("end-of-data", r->code, check, reason, detail);
}

/* Who a committed message came from, for its log line and notices:
 * the session's view, kept on its own once the session is gone. */
struct tx_origin {
	struct smtp_server *srv;
	const char *peer_addr;
	const char *helo;     /* NULL: none was given */
	const char *protocol;
};

static struct tx_origin session_origin(const struct smtp_session *s)
{
	return (struct tx_origin){ s->srv, s->peer_addr, s->helo, session_protocol(s) };
}

/* Tell the notifier about a final verdict (check, reason, text, hits of
 * the verdict that decided); it takes the writer of a message that is not
 * committed when it needs to read it. */
static void notify_verdict(const struct tx_origin *o, struct smtp_tx *tx,
			   enum notice_event event, const char *check, const char *reason,
			   const char *text, const strlist_t *hits)
{
	struct notice_info info = {
		.event = event, .queue_id = tx->id, .sender = tx->sender_text, .rcpts = &tx->rcpts,
		.client_addr = o->peer_addr, .helo = o->helo, .check = check, .reason = reason,
		.text = text, .hits = hits,
	};
	notifier_event(o->srv->notifier, &info, &tx->writer);
}

static void tell_notifier(struct smtp_session *s, enum notice_event event, const char *check,
			  const char *reason, const char *text, const strlist_t *hits)
{
	struct tx_origin o = session_origin(s);
	notify_verdict(&o, s->tx, event, check, reason, text, hits);
}

/* The commit of tx is over: on success tell the queue manager, the
 * notifier (quarantine) and the log; unanswered: the session that
 * waited for it is gone, so no 250 was sent (the client may send the
 * message again: the duplicate window of RFC 1047). */
static void commit_announce(const struct tx_origin *o, struct smtp_tx *tx, bool unanswered,
			    int rc, const char *err)
{
	if (rc != 0) {
		log_error("%s: queue file write error: %s", tx->id, err);
		return;
	}
	queue_notify(o->srv->notify_fd, tx->id);
	if (tx->disposition == POLICY_QUARANTINE)
		notify_verdict(o, tx, NOTICE_QUARANTINED, tx->disposition_check,
			       tx->disposition_reason, tx->disposition_text, &tx->disposition_hits);
	uint64_t now = now_us();
	/* client= last: postern report counts messages by client from it */
	log_info("%s: accepted from=<%s> size=%" PRIu64 " nrcpt=%zu protocol=%s delay=%.3f "
		 "flow=%.3f commit=%.3f%s%s%s client=%s",
		 tx->id, tx->sender_text, tx->decoder.size, tx->rcpts.count, o->protocol,
		 (double)(now - tx->start_us) / 1e6,
		 (double)(tx->commit_start_us - tx->eod_us) / 1e6,
		 (double)(now - tx->commit_start_us) / 1e6,
		 tx->disposition != POLICY_DUNNO ? " disposition=" : "",
		 tx->disposition != POLICY_DUNNO ? policy_verdict_name(tx->disposition) : "",
		 unanswered ? " unanswered=yes" : "", o->peer_addr);
}

static void commit_done(void *arg, int rc, char *err)
{
	struct smtp_session *s = arg;
	struct smtp_reply out = { 0 };
	struct tx_origin o = session_origin(s);
	commit_announce(&o, s->tx, false, rc, err);
	if (rc == 0) {
		reply_set(&out, 250, "2.0.0", "Ok: queued as %s", s->tx->id);
		session_message_accepted(s);
	} else {
		reply_set(&out, 451, "4.3.0", "Error: queue file write error, try again later");
	}
	free(err);
	tx_free(&s->tx);
	session_resume(s, &out);
}

/* A commit whose session went away meanwhile, with what announcing it
 * needs (copies: the session is freed). */
struct orphan_commit {
	struct tx_origin origin;
	struct smtp_tx *tx;
	char peer_addr[64];
	char *helo;
};

static void orphan_commit_done(void *arg, int rc, char *err)
{
	struct orphan_commit *oc = arg;
	commit_announce(&oc->origin, oc->tx, true, rc, err);
	free(err);
	tx_free(&oc->tx);
	free(oc->helo);
	free(oc);
}

void tx_orphan_commit(struct smtp_session *s)
{
	if (s->commit == NULL)
		return;
	struct orphan_commit *oc = xcalloc(1, sizeof(*oc));
	snprintf(oc->peer_addr, sizeof(oc->peer_addr), "%s", s->peer_addr);
	oc->helo = s->helo != NULL ? xstrdup(s->helo) : NULL;
	oc->origin = (struct tx_origin){ s->srv, oc->peer_addr, oc->helo, session_protocol(s) };
	oc->tx = s->tx; /* the transaction goes with its commit */
	s->tx = NULL;
	queue_commit_redirect(&s->commit, orphan_commit_done, oc);
}

static const char *disposition_folder(enum policy_verdict d)
{
	return d == POLICY_HOLD ? "hold" : d == POLICY_QUARANTINE ? "quarantine" : "queue";
}

static void commit_now(struct smtp_session *s)
{
	struct smtp_tx *tx = s->tx;
	tx->commit_start_us = now_us();
	struct queue_commit *job = queue_commit_start(s->srv->committer, &tx->writer,
						      disposition_folder(tx->disposition),
						      commit_done, s);
	session_wait_commit(s, job);
}

static void flow_ready(void *arg, bool got_token)
{
	struct smtp_session *s = arg;
	if (!got_token)
		log_debug("%s: delivery is behind: committing without a flow token", s->tx->id);
	commit_now(s);
}

/* Take a flow token (waiting at most in_flow_delay when delivery is
 * behind), then commit; the reply follows the commit. */
static enum step flow_then_commit(struct smtp_session *s)
{
	struct queue_flow_wait *w;
	s->tx->eod_us = now_us();
	if (queue_flow_acquire(s->srv->flow, flow_ready, s, &w))
		commit_now(s);
	else
		session_wait_flow(s, w);
	return STEP_WAIT;
}

/* "Name:" value with CRLF folds made LF (the queue file's form). */
static char *edit_field(const struct policy_edit *e)
{
	buf_t b = BUF_INIT;
	buf_printf(&b, "%s:", e->name);
	for (const char *p = e->value; *p != '\0'; p++)
		if (!(p[0] == '\r' && p[1] == '\n'))
			buf_putc(&b, *p);
	return buf_steal(&b);
}

/* One change a check (a milter) asked for at the end of the message. */
static int apply_edit(struct queue_writer *w, const struct policy_edit *e, char **err_r)
{
	char *field = NULL;
	int rc;
	if (e->name != NULL && e->value != NULL)
		field = edit_field(e);
	switch (e->type) {
	case POLICY_EDIT_ADD_HEADER:
		rc = queue_writer_add_header(w, true, field, err_r);
		break;
	case POLICY_EDIT_ADD_RCPT:
		rc = queue_writer_add_rcpt(w, e->value, err_r);
		break;
	case POLICY_EDIT_DEL_RCPT:
		rc = queue_writer_remove_rcpt(w, e->value, err_r);
		break;
	case POLICY_EDIT_CHANGE_SENDER:
		rc = queue_writer_set_sender(w, e->value, err_r);
		break;
	default:
		*err_r = xstrdup("this change is not supported yet");
		rc = -1;
		break;
	}
	free(field);
	return rc;
}

static const char *const edit_names[] = { "add_header", "insert_header", "change_header",
					  "add_rcpt", "del_rcpt", "change_sender", "replace_body" };

/* The verdict's changes, in order; one the queue file refuses is logged
 * and skipped: never a reason to lose the message. */
static void apply_edits(struct smtp_tx *tx, const policy_edits_t *edits)
{
	for (size_t i = 0; i < edits->count; i++) {
		const struct policy_edit *e = &edits->items[i];
		char *err = NULL;
		if (apply_edit(tx->writer, e, &err) != 0) {
			log_warn("%s: change %s%s%s skipped: %s", tx->id,
				 (size_t)e->type < ARRAY_LEN(edit_names) ? edit_names[e->type] : "?",
				 e->name != NULL ? " " : "", e->name != NULL ? e->name : "",
				 err != NULL ? err : "refused");
			free(err);
		}
	}
}

/* After the end-of-data verdict: drop, or commit and then reply. */
static enum step eod_verdict(struct smtp_session *s, struct policy_reply *v,
			     struct smtp_reply *out)
{
	struct smtp_tx *tx = s->tx;
	if (policy_refuses(v->verdict)) {
		reply_from_policy(out, v);
		log_refusal(s, out, v->reason);
		count_refusal(out, v->check, v->reason, v->detail);
		if (v->verdict == POLICY_REJECT)
			tell_notifier(s, NOTICE_REFUSED, v->check, v->reason, v->text, &v->hits);
		tx_free(&s->tx);
		return STEP_REPLY;
	}
	take_disposition(tx, v);
	if (tx->disposition == POLICY_DISCARD) {
		/* Accepted for the client, never delivered (RFC 5321 6.1 lets a
		 * policy do that; the log says so). */
		log_info("%s: discarded from=<%s> size=%" PRIu64 " nrcpt=%zu reason=%s", tx->id,
			 tx->sender_text, tx->decoder.size, tx->rcpts.count, tx->disposition_reason);
		tell_notifier(s, NOTICE_DISCARDED, tx->disposition_check, tx->disposition_reason,
			      tx->disposition_text, &tx->disposition_hits);
		reply_set(out, 250, "2.0.0", "Ok: queued as %s", tx->id);
		session_message_accepted(s);
		tx_free(&s->tx);
		return STEP_REPLY;
	}
	/* Every occurrence (0) of each name, counted in the message as received. */
	for (size_t i = 0; i < tx->remove_headers.count && tx->write_error == NULL; i++)
		queue_writer_remove_header(tx->writer, tx->remove_headers.items[i], 0,
					   &tx->write_error);
	for (size_t i = 0; i < tx->add_headers.count && tx->write_error == NULL; i++)
		queue_writer_add_header(tx->writer, false, tx->add_headers.items[i],
					&tx->write_error);
	if (tx->write_error == NULL)
		apply_edits(tx, &v->edits); /* a milter's, last */
	if (tx->write_error == NULL &&
	    (tx->disposition == POLICY_QUARANTINE || tx->disposition == POLICY_HOLD)) {
		/* Why, kept in the file for the quarantine command (a q record). */
		struct queue_note note = { tx->disposition == POLICY_HOLD, tx->disposition_check,
					   tx->disposition_reason, tx->disposition_text,
					   &tx->disposition_hits };
		queue_writer_set_note(tx->writer, &note, &tx->write_error);
	}
	if (tx->write_error != NULL) {
		log_error("%s: queue file write error: %s", tx->id, tx->write_error);
		reply_set(out, 451, "4.3.0", "Error: queue file write error, try again later");
		tx_free(&s->tx);
		return STEP_REPLY;
	}
	return flow_then_commit(s);
}

/* The capture switch (capture.h): a copy of the message as it reached
 * the end of data, before the verdict, so that refused ones are kept too. */
static void capture_tx(struct smtp_session *s)
{
	struct capture *c = s->srv->capture;
	if (c == NULL || !capture_on(c))
		return;
	struct smtp_tx *tx = s->tx;
	struct capture_message m = {
		.queue_id = tx->id, .client = (const struct sockaddr *)&s->peer,
		.client_addr = s->peer_addr, .helo = s->helo, .sender = tx->sender_text,
		.rcpts = &tx->rcpts, .content_path = queue_writer_path(tx->writer),
		.content_off = queue_writer_content_offset(tx->writer),
		.content_len = queue_writer_size(tx->writer),
	};
	if (capture_matches(c, &m))
		capture_save(c, &m);
}

/* End of data: the content's own problems, then the verdict, then the
 * commit, then the one 250 that makes us responsible. */
static enum step finish_message(struct smtp_session *s, struct smtp_reply *out)
{
	struct smtp_tx *tx = s->tx;
	tx_content(tx);
	s->mode = MODE_COMMAND;
	if (content_problem(s, out)) {
		log_refusal(s, out, content_reason(tx->decoder.problems));
		count_refusal(out, "content", content_reason(tx->decoder.problems), NULL);
		tx_free(&s->tx);
		return STEP_REPLY;
	}
	/* Content checks (a scanner) read the message from the file. */
	if (tx->write_error == NULL)
		queue_writer_flush(tx->writer, &tx->write_error);
	if (tx->write_error != NULL) {
		log_error("%s: queue file write error: %s", tx->id, tx->write_error);
		reply_set(out, 451, "4.3.0", "Error: queue file write error, try again later");
		tx_free(&s->tx);
		return STEP_REPLY;
	}
	capture_tx(s);
	struct policy_request req;
	session_request(s, POLICY_END_OF_DATA, &req);
	return session_ask(s, &req, eod_verdict, out);
}

static void bdat_refuse(struct smtp_session *s, int code, const char *status, const char *text)
{
	s->bdat_discard = true;
	memset(&s->bdat_error, 0, sizeof(s->bdat_error));
	reply_error(&s->bdat_error, code, status, "%s", text);
}

/* Start reading the chunk announced by the BDAT command s->pending_bdat. */
static enum step bdat_start(struct smtp_session *s, struct smtp_reply *out)
{
	s->mode = MODE_BDAT;
	s->bdat_remaining = s->pending_bdat.chunk_size;
	s->bdat_last = s->pending_bdat.chunk_last;
	return tx_after_consume(s, out); /* a chunk of size 0 is complete already */
}

static enum step bdat_verdict(struct smtp_session *s, struct policy_reply *v,
			      struct smtp_reply *out)
{
	struct smtp_tx *tx = s->tx;
	if (policy_refuses(v->verdict)) {
		log_info("%s: reject: BDAT client=%s from=<%s> code=%d %s reason=%s%s%s", tx->id,
			 s->peer_addr, tx->sender_text, v->code, v->status, v->reason,
			 v->detail[0] ? " " : "", v->detail);
		session_count_refusal("bdat", v->code, v->check, v->reason, v->detail);
		s->bdat_discard = true;
		memset(&s->bdat_error, 0, sizeof(s->bdat_error));
		reply_from_policy(&s->bdat_error, v);
	} else {
		take_disposition(tx, v);
		if (!open_writer(s, false))
			bdat_refuse(s, 451, "4.3.0", "Error: queue file write error, try again later");
		else
			tx->bdat_used = true;
	}
	return bdat_start(s, out);
}

enum step tx_handle_bdat(struct smtp_session *s, const struct smtp_command *cmd,
			 struct smtp_reply *out)
{
	struct smtp_tx *tx = s->tx;
	s->pending_bdat = *cmd;
	s->bdat_discard = false;
	/* RFC 3030 section 3: the chunk is read even when it is refused. */
	if (!s->esmtp)
		bdat_refuse(s, 503, "5.5.1", "Error: send EHLO first");
	else if (tx == NULL)
		bdat_refuse(s, 503, "5.5.1", "Error: need MAIL command");
	else if (tx->rcpts.count == 0)
		bdat_refuse(s, 554, "5.5.1", "Error: no valid recipients");
	else if (!tx->bdat_used) {
		/* The first chunk: the DATA stage's checks, before its bytes
		 * are read (they wait in the input buffer meanwhile). */
		struct policy_request req;
		session_request(s, POLICY_DATA, &req);
		return session_ask(s, &req, bdat_verdict, out);
	}
	return bdat_start(s, out);
}

enum step tx_after_consume(struct smtp_session *s, struct smtp_reply *out)
{
	struct smtp_tx *tx = s->tx;
	if (s->mode == MODE_DATA)
		return tx->decoder.done ? finish_message(s, out) : STEP_REPLY;
	if (s->mode != MODE_BDAT || s->bdat_remaining > 0)
		return STEP_REPLY;
	s->mode = MODE_COMMAND;
	if (s->bdat_discard) {
		s->bdat_discard = false;
		if (tx != NULL && (s->bdat_last || tx->bdat_used))
			tx_free(&s->tx); /* RFC 3030: a failed chunk ends the transaction */
		*out = s->bdat_error;
		return STEP_REPLY;
	}
	if (s->bdat_last) {
		data_decoder_finish(&tx->decoder, &tx->decoded);
		return finish_message(s, out);
	}
	reply_set(out, 250, "2.0.0", "Ok: %llu octets received",
		  (unsigned long long)tx->decoder.size);
	return STEP_REPLY;
}

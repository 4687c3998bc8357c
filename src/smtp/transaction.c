/*
 * transaction.c - one mail transaction: MAIL (RFC 5321 4.1.1.2, SIZE RFC
 * 1870, BODY RFC 6152, SMTPUTF8 RFC 6531), RCPT with the policy checks,
 * DATA and BDAT (RFC 3030) streamed through the data decoder into the
 * queue writer, and the hand-over to the queue: the 250 is sent only after
 * queue_writer_commit() made the message durable.
 *
 * The decoded bytes pass through tx_content() on their way to the queue
 * file: that is where the MIME parser and the content scanners attach, so
 * that their verdict (at POLICY_END_OF_DATA) comes before the 250.
 */
#include "session_int.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

#include "../lib/log.h"
#include "../lib/xalloc.h"
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
	hashmap_free(&tx->rcpt_set, NULL);
	buf_free(&tx->decoded);
	free(tx->write_error);
	xfree(txp);
}

const char *session_protocol(const struct smtp_session *s)
{
	bool utf8 = s->tx != NULL && s->tx->smtputf8;
	if (utf8)
		return s->tls ? "UTF8SMTPS" : "UTF8SMTP";
	if (!s->esmtp)
		return s->tls ? "SMTPS" : "SMTP";
	return s->tls ? "ESMTPS" : "ESMTP";
}

static bool mail_params(struct smtp_session *s, const struct smtp_command *cmd,
			struct smtp_tx *tx)
{
	const struct config *cfg = s->srv->cfg;
	if (cmd->param_count > 0 && !s->esmtp) {
		session_error(s, 555, "5.5.4", "Error: parameters need EHLO");
		return false;
	}
	for (size_t i = 0; i < cmd->param_count; i++) {
		const struct smtp_param *p = &cmd->params[i];
		char value[32] = "";
		if (p->value.len < sizeof(value))
			memcpy(value, p->value.ptr, p->value.len);
		if (slice_eq_nocase(p->keyword, "SIZE") && p->has_value) {
			if (!parse_uint(value, &tx->declared_size)) {
				session_error(s, 501, "5.5.4", "Error: bad SIZE parameter");
				return false;
			}
			if (tx->declared_size > cfg->message_size_limit) {
				session_error(s, 552, "5.3.4", "Message size exceeds fixed limit");
				return false;
			}
		} else if (slice_eq_nocase(p->keyword, "BODY") && p->has_value) {
			if (str_eq_nocase(value, "8BITMIME"))
				tx->body_8bit = true;
			else if (!str_eq_nocase(value, "7BIT")) {
				session_error(s, 501, "5.5.4", "Error: BODY must be 7BIT or 8BITMIME");
				return false;
			}
		} else if (slice_eq_nocase(p->keyword, "SMTPUTF8") && !p->has_value) {
			tx->smtputf8 = true;
		} else {
			session_error(s, 555, "5.5.4", "Error: unsupported MAIL parameter %.*s",
				      (int)(p->keyword.len > 32 ? 32 : p->keyword.len), p->keyword.ptr);
			return false;
		}
	}
	return true;
}

void tx_handle_mail(struct smtp_session *s, const struct smtp_command *cmd)
{
	struct smtp_tx *tx = xcalloc(1, sizeof(*tx));
	if (!mail_params(s, cmd, tx)) {
		tx_free(&tx);
		return;
	}
	tx->sender = cmd->path;
	address_format(&tx->sender, tx->sender_text, sizeof(tx->sender_text));
	struct policy_request req = { .stage = POLICY_MAIL,
				      .client = (const struct sockaddr *)&s->peer,
				      .client_addr = s->peer_addr, .helo = s->helo,
				      .tls = s->tls, .sender = &tx->sender };
	struct policy_reply rep;
	enum policy_verdict v = policy_check(&s->srv->policy, &req, &rep);
	if (v == POLICY_REJECT || v == POLICY_TEMPFAIL) {
		log_info("client=%s reject: MAIL from=<%s> code=%d %s reason=%s", s->peer_addr,
			 tx->sender_text, rep.code, rep.status, rep.reason);
		session_error(s, rep.code, rep.status, "%s", rep.text);
		tx_free(&tx);
		return;
	}
	tx->start_us = now_us();
	queue_id_new(tx->id);
	s->tx = tx;
	session_tx_started(s);
	log_info("%s: client=%s helo=%s from=<%s> status=accepted%s", tx->id, s->peer_addr,
		 s->helo, tx->sender_text, tx->smtputf8 ? " smtputf8=yes" : "");
	session_reply(s, 250, "2.1.0", "Ok");
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

void tx_handle_rcpt(struct smtp_session *s, const struct smtp_command *cmd)
{
	struct smtp_tx *tx = s->tx;
	char shown[ADDR_PATH_MAX + 1];
	address_format(&cmd->path, shown, sizeof(shown));
	if (tx->rcpts.count >= s->srv->cfg->recipient_limit) {
		session_reply(s, 452, "4.5.3", "Error: too many recipients");
		return;
	}
	if (cmd->param_count > 0) {
		session_error(s, 555, "5.5.4", "Error: unsupported RCPT parameter");
		return;
	}
	struct policy_request req = { .stage = POLICY_RCPT,
				      .client = (const struct sockaddr *)&s->peer,
				      .client_addr = s->peer_addr, .helo = s->helo,
				      .tls = s->tls, .sender = &tx->sender, .rcpt = &cmd->path,
				      .rcpt_count = (unsigned)tx->rcpts.count };
	struct policy_reply rep;
	enum policy_verdict v = policy_check(&s->srv->policy, &req, &rep);
	if (v == POLICY_REJECT || v == POLICY_TEMPFAIL) {
		log_info("%s: reject: RCPT client=%s from=<%s> to=<%s> code=%d %s reason=%s",
			 tx->id, s->peer_addr, tx->sender_text, shown, rep.code, rep.status,
			 rep.reason);
		session_error(s, rep.code, rep.status, "%s", rep.text);
		return;
	}
	char stored[ADDR_PATH_MAX + 1], key[ADDR_PATH_MAX + 1];
	rcpt_queue_form(s, &cmd->path, stored, sizeof(stored));
	snprintf(key, sizeof(key), "%s", stored);
	str_lower(key);
	if (!hashmap_contains(&tx->rcpt_set, key)) { /* a repeated RCPT is one copy */
		hashmap_put(&tx->rcpt_set, key, NULL);
		strlist_add(&tx->rcpts, stored);
	}
	log_info("%s: to=<%s> status=accepted", tx->id, stored);
	session_reply(s, 250, "2.1.5", "Ok");
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
	buf_printf(b, " id %s", tx->id);
	if (tx->rcpts.count == 1)
		buf_printf(b, "\n\tfor <%s>", tx->rcpts.items[0]);
	buf_printf(b, "; %s\n", date);
}

/* Create the queue file and write the trace header; false after a reply. */
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
	char *err = NULL;
	tx->writer = queue_writer_open(cfg->spool_dir, tx->id, &env, &err);
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
	};
	data_decoder_init(&tx->decoder, &limits, dot_mode);
	add_received(s, &tx->decoded);
	return true;
}

void tx_handle_data(struct smtp_session *s)
{
	struct smtp_tx *tx = s->tx;
	if (tx->bdat_used) {
		session_error(s, 503, "5.5.1", "Error: DATA after BDAT");
		return;
	}
	if (tx->rcpts.count == 0) {
		/* A pipelining client has sent the message text already: the
		 * transaction ends here, so that none of its lines can join
		 * it as commands (and header lines end the session). */
		tx_free(&s->tx);
		session_error(s, 554, "5.5.1", "Error: no valid recipients");
		return;
	}
	if (!open_writer(s, true)) {
		session_reply(s, 451, "4.3.0", "Error: queue file write error, try again later");
		return;
	}
	s->mode = MODE_DATA;
	session_send(s, "354 End data with <CR><LF>.<CR><LF>\r\n");
}

/* Hand decoded content to the queue file (and, later, the scanners). */
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

/* The reply for a message that the decoder condemned; 0 if none. */
static int content_problem(const struct smtp_session *s, struct policy_reply *r)
{
	unsigned p = s->tx->decoder.problems;
	const struct config *cfg = s->srv->cfg;
	r->code = 0;
	if (p & DATA_TOO_BIG) {
		*r = (struct policy_reply){ 552, "5.3.4", "Message size exceeds fixed limit", "too_big" };
	} else if (p & DATA_HEADER_TOO_BIG) {
		*r = (struct policy_reply){ 552, "5.3.4", "Message header size exceeds limit", "header_too_big" };
	} else if (p & DATA_BARE_NEWLINE) {
		*r = (struct policy_reply){ 554, "5.6.0",
			"Message contains bare CR or LF: refused (SMTP smuggling protection)", "bare_newline" };
	} else if (p & DATA_LINE_TOO_LONG) {
		*r = (struct policy_reply){ 554, "5.6.0", "", "line_too_long" };
		snprintf(r->text, sizeof(r->text), "Message has a line longer than %llu characters",
			 (unsigned long long)cfg->text_line_limit);
	}
	return r->code;
}

/* End of data: verdict, commit, the one 250 that makes us responsible. */
static void finish_message(struct smtp_session *s)
{
	struct smtp_tx *tx = s->tx;
	struct policy_reply rep;
	uint64_t size = tx->decoder.size;
	tx_content(tx);
	s->mode = MODE_COMMAND;
	if (content_problem(s, &rep) == 0 && tx->write_error == NULL) {
		struct policy_request req = { .stage = POLICY_END_OF_DATA,
					      .client = (const struct sockaddr *)&s->peer,
					      .client_addr = s->peer_addr, .helo = s->helo,
					      .tls = s->tls, .sender = &tx->sender,
					      .rcpt_count = (unsigned)tx->rcpts.count };
		enum policy_verdict v = policy_check(&s->srv->policy, &req, &rep);
		if (v != POLICY_REJECT && v != POLICY_TEMPFAIL)
			rep.code = 0;
	}
	if (rep.code == 0 && tx->write_error == NULL) {
		char *err = NULL;
		if (queue_writer_commit(&tx->writer, &err) == 0) {
			queue_notify(s->srv->notify_fd, tx->id);
			log_info("%s: accepted from=<%s> size=%" PRIu64 " nrcpt=%zu protocol=%s delay=%.3f",
				 tx->id, tx->sender_text, size, tx->rcpts.count, session_protocol(s),
				 (double)(now_us() - tx->start_us) / 1e6);
			session_reply(s, 250, "2.0.0", "Ok: queued as %s", tx->id);
			session_message_accepted(s);
		} else {
			tx->write_error = err;
		}
	}
	if (tx->write_error != NULL) {
		log_error("%s: queue file write error: %s", tx->id, tx->write_error);
		session_reply(s, 451, "4.3.0", "Error: queue file write error, try again later");
	} else if (rep.code != 0) {
		log_info("%s: reject: end-of-data client=%s from=<%s> size=%" PRIu64
			 " code=%d %s reason=%s", tx->id, s->peer_addr, tx->sender_text, size,
			 rep.code, rep.status, rep.reason);
		session_reply(s, rep.code, rep.status, "%s", rep.text);
	}
	tx_free(&s->tx);
	if (s->srv->draining) {
		session_reply(s, 421, "4.3.2", "%s Service shutting down", s->srv->cfg->hostname);
		session_close_after_flush(s);
	}
}

static void bdat_refuse(struct smtp_session *s, int code, const char *status, const char *text)
{
	s->bdat_discard = true;
	s->bdat_error = (struct policy_reply){ code, "", "", "bdat" };
	snprintf(s->bdat_error.status, sizeof(s->bdat_error.status), "%s", status);
	snprintf(s->bdat_error.text, sizeof(s->bdat_error.text), "%s", text);
}

void tx_handle_bdat(struct smtp_session *s, const struct smtp_command *cmd)
{
	struct smtp_tx *tx = s->tx;
	s->mode = MODE_BDAT;
	s->bdat_remaining = cmd->chunk_size;
	s->bdat_last = cmd->chunk_last;
	s->bdat_discard = false;
	/* RFC 3030 section 3: the chunk is read even when it is refused. */
	if (!s->esmtp)
		bdat_refuse(s, 503, "5.5.1", "Error: send EHLO first");
	else if (tx == NULL)
		bdat_refuse(s, 503, "5.5.1", "Error: need MAIL command");
	else if (tx->rcpts.count == 0)
		bdat_refuse(s, 554, "5.5.1", "Error: no valid recipients");
	else if (!tx->bdat_used && !open_writer(s, false))
		bdat_refuse(s, 451, "4.3.0", "Error: queue file write error, try again later");
	else
		tx->bdat_used = true;
	tx_after_consume(s); /* a chunk of size 0 is complete already */
}

void tx_after_consume(struct smtp_session *s)
{
	struct smtp_tx *tx = s->tx;
	if (s->mode == MODE_DATA) {
		if (tx->decoder.done)
			finish_message(s);
		return;
	}
	if (s->mode != MODE_BDAT || s->bdat_remaining > 0)
		return;
	s->mode = MODE_COMMAND;
	if (s->bdat_discard) {
		s->bdat_discard = false;
		if (tx != NULL && (s->bdat_last || tx->bdat_used))
			tx_free(&s->tx); /* RFC 3030: a failed chunk ends the transaction */
		session_error(s, s->bdat_error.code, s->bdat_error.status, "%s", s->bdat_error.text);
		return;
	}
	if (s->bdat_last) {
		data_decoder_finish(&tx->decoder, &tx->decoded);
		finish_message(s);
		return;
	}
	session_reply(s, 250, "2.0.0", "Ok: %llu octets received",
		      (unsigned long long)tx->decoder.size);
}

/*
 * session.c - connection life cycle and input loop of an SMTP session:
 * accept, greeting, line framing with length limits, real PIPELINING
 * (every complete command in the input is answered in order, replies are
 * flushed together), STARTTLS upgrade (RFC 3207), deadlines, output
 * back-pressure, and a close that never loses the last reply.
 *
 * Deadlines (one timer per session, armed for the nearest):
 *   command_timeout      one whole command line, from the moment the
 *                        server is ready for it (not per read);
 *   data_timeout         one whole DATA phase or BDAT chunk, extended by
 *                        the bytes received at data_min_rate;
 *   transaction_timeout  MAIL to the end of the message;
 *   session_timeout      the whole connection;
 *   closing              CLOSE_FLUSH_MS for the last replies to drain,
 *                        then LINGER_MS to read the client's input to EOF.
 *
 * Error delays: past soft_error_limit errors, each error reply is held
 * back for (errors - soft_error_limit) x error_delay (at most
 * ERROR_DELAY_MAX_MS) before it is sent, and no further input is read
 * meanwhile (WAIT_DELAY: a timer, never a sleep: the worker's other
 * sessions go on); at error_limit the session ends with 421.
 *
 * Unauthorised pipelining: a command line followed by more input before
 * the client could know that PIPELINING is offered (before the reply to
 * its EHLO, or after HELO) marks the session; with
 * reject_unauth_pipelining the command sent ahead is answered 503 5.5.0
 * and the session ends (QUIT is let through).
 *
 * Closing: the reply is flushed into the kernel (for TLS: encrypted and
 * written, then close_notify), the write side is shut down, and input is
 * read and discarded until the client closes, so that unread input can
 * never make the kernel reset the connection over the last reply.
 *
 * Runs unprivileged in an smtp worker; all input is untrusted.
 */
#include "session_int.h"

#include <arpa/inet.h>
#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent_ssl.h>
#include <openssl/err.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "../auth/sasl.h"
#include "../lib/log.h"
#include "../lib/metrics.h"
#include "../lib/xalloc.h"
#include "tls.h"
#include "../auth/auth_client.h"

/* Stop reading while this much output waits for a slow reader. */
#define OUTPUT_BACKLOG_MAX (256 * 1024)
/* Stop reading while this much input waits (besides one command line). */
#define INPUT_BUFFER_MAX (256 * 1024)
/* How long the last replies may take to drain before the close. */
#define CLOSE_FLUSH_MS 10000
/* How long, and how much, to read from a client after our close. */
#define LINGER_MS 2000
#define LINGER_MAX_BYTES (256 * 1024)
/* At most this many sessions of a worker linger at once: each holds a
 * descriptor outside worker_connections (the start-up check's margin). */
#define LINGER_MAX_SESSIONS 32
/* The longest an error reply is held back (error_delay). */
#define ERROR_DELAY_MAX_MS 60000

static void session_read_cb(struct bufferevent *bev, void *arg);
static void session_write_cb(struct bufferevent *bev, void *arg);
static void session_event_cb(struct bufferevent *bev, short what, void *arg);
static void session_timer_cb(evutil_socket_t fd, short what, void *arg);
static void session_step_cb(evutil_socket_t fd, short what, void *arg);
static void session_start_tls(struct smtp_session *s);
static void process_input(struct smtp_session *s);
static void cancel_wait(struct smtp_session *s);
static void session_close_after_flush(struct smtp_session *s);

uint64_t session_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* ---- deadlines ------------------------------------------------------------ */

static uint64_t earliest(uint64_t a, uint64_t b)
{
	if (a == 0)
		return b;
	if (b == 0)
		return a;
	return a < b ? a : b;
}

/* Arm the timer for the nearest deadline. */
static void arm_timer(struct smtp_session *s)
{
	uint64_t due = s->wait == WAIT_NONE || session_closing(s) ? s->phase_deadline : 0;
	if (!session_closing(s) &&
	    (s->wait == WAIT_VERDICT || s->wait == WAIT_GREET || s->wait == WAIT_DELAY))
		due = earliest(due, s->wait_deadline);
	if (!session_closing(s))
		due = earliest(due, s->session_deadline);
	if (!session_closing(s) && s->tx != NULL)
		due = earliest(due, s->tx_deadline);
	if (due == 0) {
		evtimer_del(s->timer);
		return;
	}
	uint64_t now = session_now_ms();
	uint64_t ms = due > now ? due - now : 0;
	struct timeval tv = { (time_t)(ms / 1000), (suseconds_t)(ms % 1000) * 1000 };
	evtimer_add(s->timer, &tv);
}

void session_arm_timer(struct smtp_session *s)
{
	arm_timer(s);
}

/* A new phase of input begins (a command, or DATA/BDAT content). */
static void start_phase(struct smtp_session *s)
{
	const struct config *cfg = s->srv->cfg;
	uint64_t now = session_now_ms();
	if (s->mode == MODE_COMMAND) {
		s->phase_deadline = now + cfg->command_timeout * 1000u;
	} else {
		s->data_started_ms = now;
		s->data_received = 0;
		s->phase_deadline = now + cfg->data_timeout * 1000u;
	}
}

/* Content arrived: the DATA deadline grows by what that many bytes may
 * take at data_min_rate (Postfix's smtpd_min_data_rate idea). */
static void extend_data_phase(struct smtp_session *s, size_t bytes)
{
	const struct config *cfg = s->srv->cfg;
	s->data_received += bytes;
	uint64_t grace = cfg->data_min_rate > 0
				 ? s->data_received * 1000u / cfg->data_min_rate : 0;
	s->phase_deadline = s->data_started_ms + cfg->data_timeout * 1000u + grace;
}

void session_tx_started(struct smtp_session *s)
{
	s->tx_deadline = session_now_ms() + s->srv->cfg->transaction_timeout * 1000u;
	arm_timer(s);
}

void session_count_refusal(const char *stage, int code, const char *check, const char *reason,
			   const char *detail)
{
	char restriction[METRICS_LABEL_VALUE_MAX] = "";
	const char *r = detail != NULL ? strstr(detail, "restriction=") : NULL;
	if (r != NULL) {
		r += strlen("restriction=");
		size_t n = strcspn(r, " ");
		snprintf(restriction, sizeof(restriction), "%.*s", (int)n, r);
		check = restriction;
	}
	const char *cls = code >= 500 ? "5xx" : code >= 400 ? "4xx" : "other";
	const char *values[] = { stage, cls, check != NULL ? check : "", reason != NULL ? reason : "" };
	metrics_count_labels(METRIC_SMTP_REJECTIONS, values, 4);
}

void session_message_accepted(struct smtp_session *s)
{
	metrics_count(METRIC_SMTP_MESSAGES_ACCEPTED);
	s->junk_commands = 0;
	s->mails_since_message = 0;
	s->messages++;
}

size_t session_input_pending(const struct smtp_session *s)
{
	return s->bev != NULL ? evbuffer_get_length(bufferevent_get_input(s->bev)) : 0;
}

/* ---- replies --------------------------------------------------------------- */

static void send_421(struct smtp_session *s, const char *status, const char *text);

/* A reply held back by an error delay goes out now. */
static void release_delayed(struct smtp_session *s)
{
	if (s->delayed.len > 0 && s->bev != NULL)
		evbuffer_add(bufferevent_get_output(s->bev), s->delayed.data, s->delayed.len);
	buf_reset(&s->delayed);
	if (s->wait == WAIT_DELAY)
		s->wait = WAIT_NONE;
}

/* How long the reply to the session's latest error waits, in ms. */
static uint64_t error_delay_ms(const struct smtp_session *s)
{
	const struct config *cfg = s->srv->cfg;
	if (cfg->error_delay == 0 || s->errors <= cfg->soft_error_limit)
		return 0;
	uint64_t ms = (s->errors - cfg->soft_error_limit) * cfg->error_delay * 1000u;
	return ms < ERROR_DELAY_MAX_MS ? ms : ERROR_DELAY_MAX_MS;
}

/* Write a reply and act on its flags; an error reply may wait (error
 * delay) or end the session (error_limit). */
static void send_reply(struct smtp_session *s, const struct smtp_reply *r)
{
	if (r->code == 0 || s->bev == NULL)
		return;
	release_delayed(s); /* replies leave in order */
	buf_t wire = BUF_INIT;
	reply_format(r, &wire);
	bool error = (r->flags & REPLY_ERROR) != 0;
	if (error)
		s->errors++;
	uint64_t delay = error && s->errors < s->srv->cfg->error_limit && s->wait == WAIT_NONE &&
				 !(r->flags & REPLY_CLOSE) && !session_closing(s) &&
				 !s->srv->draining ? error_delay_ms(s) : 0;
	if (delay > 0) {
		/* Held back: no input is read until it is sent (the timer). */
		buf_append(&s->delayed, wire.data, wire.len);
		buf_free(&wire);
		s->wait = WAIT_DELAY;
		s->wait_deadline = session_now_ms() + delay;
		log_debug("client=%s error %u: reply delayed %.1fs", s->peer_addr, s->errors,
			  (double)delay / 1000);
		arm_timer(s);
		return;
	}
	evbuffer_add(bufferevent_get_output(s->bev), wire.data, wire.len);
	buf_free(&wire);
	if (error && s->errors >= s->srv->cfg->error_limit && !session_closing(s)) {
		log_info("client=%s too many errors (%u), closing", s->peer_addr, s->errors);
		struct smtp_reply bye = { 0 };
		reply_set(&bye, 421, "4.7.0", "%s Error: too many errors", s->srv->cfg->hostname);
		send_reply(s, &bye);
		session_close_after_flush(s);
		return;
	}
	if (r->flags & REPLY_STARTTLS)
		session_start_tls(s);
	if (r->flags & REPLY_CLOSE)
		session_close_after_flush(s);
	/* Stopping: a session that is between transactions ends now. */
	if (s->srv->draining && s->tx == NULL && s->wait == WAIT_NONE && !session_closing(s))
		send_421(s, "4.3.2", "Service shutting down");
}

void session_send(struct smtp_session *s, const struct smtp_reply *r)
{
	send_reply(s, r);
}

static void send_421(struct smtp_session *s, const char *status, const char *text)
{
	struct smtp_reply r = { 0 };
	reply_set(&r, 421, status, "%s %s", s->srv->cfg->hostname, text);
	r.flags = REPLY_CLOSE;
	send_reply(s, &r);
}

/* ---- freeing and closing ---------------------------------------------------- */

static void release_io(struct smtp_session *s)
{
	if (s->bev != NULL) {
		bufferevent_free(s->bev);
		s->bev = NULL;
	}
	if (s->ssl != NULL) {
		SSL_free(s->ssl);
		s->ssl = NULL;
		ERR_clear_error();
	}
	if (s->linger != NULL) {
		event_free(s->linger);
		s->linger = NULL;
	}
}

static void session_free(struct smtp_session *s)
{
	struct smtp_server *srv = s->srv;
	if (s->close_phase == CLOSE_LINGERING)
		srv->lingering_count--;
	if (s->tx != NULL && s->mode != MODE_COMMAND)
		log_info("%s: lost=during_data from=<%s> client=%s", s->tx->id,
			 s->tx->sender_text, s->peer_addr);
	log_info("disconnect client=%s port=%u commands=%u messages=%u errors=%u",
		 s->peer_addr, s->peer_port, s->commands, s->messages, s->errors);
	cancel_wait(s);
	milter_session_free(&s->milter); /* after the run that may use it */
	limits_release(srv->limits, s->id);
	buf_free(&s->delayed);
	tx_free(&s->tx);
	tx_free(&s->pending_tx);
	free(s->pending_helo);
	free(s->rcpt_refusal);
	smtp_auth_reset(s);
	release_io(s);
	event_free(s->timer);
	event_free(s->step);
	if (s->fd >= 0)
		close(s->fd);
	if (s->prev != NULL)
		s->prev->next = s->next;
	else
		srv->sessions = s->next;
	if (s->next != NULL)
		s->next->prev = s->prev;
	free(s->helo);
	free(s);
	srv->session_count--;
	if (srv->on_session_freed != NULL)
		srv->on_session_freed(srv);
	if ((srv->draining || srv->retiring) && srv->session_count == 0 &&
	    srv->on_drained != NULL)
		srv->on_drained(srv);
}

/* Run session_step_cb from the event loop, never from inside a caller
 * that still holds the session or its bufferevent. */
static void schedule_step(struct smtp_session *s)
{
	event_active(s->step, EV_TIMEOUT, 0);
}

static void schedule_free(struct smtp_session *s)
{
	s->free_scheduled = true;
	schedule_step(s);
}

static void session_close_after_flush(struct smtp_session *s)
{
	if (session_closing(s))
		return;
	release_delayed(s);
	cancel_wait(s); /* a verdict arriving now would have nobody to answer */
	/* A closing session no longer counts as open for the limits (nor
	 * for worker_connections once it lingers). */
	limits_release(s->srv->limits, s->id);
	s->close_phase = CLOSE_FLUSHING;
	s->phase_deadline = session_now_ms() + CLOSE_FLUSH_MS;
	if (s->bev != NULL)
		bufferevent_disable(s->bev, EV_READ);
	arm_timer(s);
	/* session_write_cb takes the next step once the output is out; if
	 * nothing is queued it is taken at once. */
	if (s->bev == NULL || evbuffer_get_length(bufferevent_get_output(s->bev)) == 0)
		schedule_step(s);
}

static void linger_cb(evutil_socket_t fd, short what, void *arg)
{
	struct smtp_session *s = arg;
	char scratch[4096];
	(void)what;
	for (;;) {
		ssize_t n = recv(fd, scratch, sizeof(scratch), 0);
		if (n > 0) {
			s->linger_discarded += (size_t)n;
			if (s->linger_discarded <= LINGER_MAX_BYTES)
				continue;
		} else if (n < 0 && errno == EINTR) {
			continue;
		} else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			return; /* keep waiting for the client's FIN */
		}
		session_free(s); /* EOF, error, or enough bytes discarded */
		return;
	}
}

/* The output is in the kernel: say goodbye at the TLS layer, shut down
 * our side, and wait (briefly) for the client to close its own. */
static void begin_linger(struct smtp_session *s)
{
	struct smtp_server *srv = s->srv;
	if (s->bev != NULL) {
		bufferevent_free(s->bev);
		s->bev = NULL;
	}
	if (s->ssl != NULL && s->tls_ready)
		SSL_shutdown(s->ssl); /* close_notify; best effort, non-blocking */
	if (s->ssl != NULL) {
		SSL_free(s->ssl);
		s->ssl = NULL;
	}
	ERR_clear_error();
	if (s->peer_eof || s->no_linger || srv->lingering_count >= LINGER_MAX_SESSIONS ||
	    shutdown(s->fd, SHUT_WR) < 0) {
		session_free(s);
		return;
	}
	s->close_phase = CLOSE_LINGERING;
	srv->lingering_count++;
	s->phase_deadline = session_now_ms() + LINGER_MS;
	s->linger = event_new(srv->base, s->fd, EV_READ | EV_PERSIST, linger_cb, s);
	if (s->linger == NULL || event_add(s->linger, NULL) < 0) {
		session_free(s);
		return;
	}
	arm_timer(s);
}

/* ---- STARTTLS ------------------------------------------------------------------ */

static void set_callbacks(struct smtp_session *s)
{
	bufferevent_setcb(s->bev, session_read_cb, session_write_cb, session_event_cb, s);
	/* Input waiting for a verdict stays buffered, but boundedly: room for
	 * the longest command line and some pipelining. */
	bufferevent_setwatermark(s->bev, EV_READ, 0,
				 INPUT_BUFFER_MAX + (size_t)s->srv->cfg->command_line_limit);
	bufferevent_enable(s->bev, EV_READ | EV_WRITE);
}

static void session_start_tls(struct smtp_session *s)
{
	/* RFC 3207 section 6 / CVE-2011-0411: anything the client pipelined
	 * after STARTTLS was sent in clear text and must not be executed. */
	struct evbuffer *in = bufferevent_get_input(s->bev);
	evbuffer_drain(in, evbuffer_get_length(in));
	bufferevent_disable(s->bev, EV_READ);
	s->tls = true;
	s->tls_switch = true;
	/* RFC 3207 section 4.2: forget everything learned before TLS. */
	smtp_auth_reset(s);
	xfree(&s->helo);
	s->esmtp = false;
	tx_free(&s->tx);
	/* session_write_cb switches once the 220 is in the kernel: the TLS
	 * layer then writes straight to the socket, so what it has taken
	 * from its output buffer has really been sent. */
}

static void switch_to_tls(struct smtp_session *s)
{
	s->tls_switch = false;
	bufferevent_free(s->bev);
	s->bev = NULL;
	s->ssl = SSL_new(s->srv->tls_ctx);
	if (s->ssl != NULL)
		s->bev = bufferevent_openssl_socket_new(s->srv->base, s->fd, s->ssl,
							BUFFEREVENT_SSL_ACCEPTING, 0);
	if (s->bev == NULL) {
		log_warn("client=%s cannot start TLS", s->peer_addr);
		session_free(s);
		return;
	}
	/* A client that closes TCP without close_notify has still ended the
	 * session: report it as EOF, not as an error. */
	bufferevent_openssl_set_allow_dirty_shutdown(s->bev, 1);
	set_callbacks(s);
	s->phase_deadline = session_now_ms() + s->srv->cfg->command_timeout * 1000u;
	arm_timer(s);
}

static void tls_established(struct smtp_session *s)
{
	s->tls_ready = true;
	log_info("client=%s TLS established: version=%s cipher=%s", s->peer_addr,
		 SSL_get_version(s->ssl), SSL_get_cipher_name(s->ssl));
	start_phase(s);
	arm_timer(s);
}

/* ---- input ------------------------------------------------------------------------ */

/* The end of an over-long line has arrived (or not yet): drop it. */
static bool skip_long_line(struct smtp_session *s, struct evbuffer *in)
{
	struct evbuffer_ptr lf = evbuffer_search(in, "\n", 1, NULL);
	if (lf.pos < 0) {
		evbuffer_drain(in, evbuffer_get_length(in));
		return false;
	}
	evbuffer_drain(in, (size_t)lf.pos + 1);
	s->skipping_long_line = false;
	start_phase(s);
	struct smtp_reply r = { 0 };
	if (s->sasl_step != SASL_NONE)
		smtp_auth_line_too_long(s, &r);
	else
		reply_error(&r, 500, "5.5.2", "Error: line too long");
	send_reply(s, &r);
	return true;
}

/* A command sent ahead of the reply that would have offered PIPELINING:
 * with reject_unauth_pipelining it gets 503 and the session ends (QUIT
 * is answered as usual). True after filling *r. */
static bool sent_ahead(struct smtp_session *s, const char *line, size_t len,
		       struct smtp_reply *r)
{
	if (!s->pipelined_early || s->srv->cfg->reject_unauth_pipelining != CONFIG_YES)
		return false;
	if (len == 4 && strncasecmp(line, "QUIT", 4) == 0)
		return false;
	log_info("client=%s reject: unauthorised pipelining code=503 5.5.0 "
		 "reason=unauth_pipelining", s->peer_addr);
	session_count_refusal("pipelining", 503, "reject_unauth_pipelining", "unauth_pipelining",
			      NULL);
	tx_free(&s->tx);
	reply_error(r, 503, "5.5.0", "Error: improper use of SMTP command pipelining");
	r->flags |= REPLY_CLOSE;
	return true;
}

/* The longest line the session takes now: command_line_limit, or RFC
 * 4954's 12288 octets for an AUTH command and the responses of a SASL
 * exchange. */
static size_t line_limit(const struct smtp_session *s, struct evbuffer *in)
{
	size_t limit = (size_t)s->srv->cfg->command_line_limit;
	char head[5];
	if (limit >= SASL_LINE_MAX || s->srv->auth == NULL)
		return limit;
	if (s->sasl_step != SASL_NONE)
		return SASL_LINE_MAX;
	if (evbuffer_copyout(in, head, sizeof(head)) == (ev_ssize_t)sizeof(head) &&
	    strncasecmp(head, "AUTH ", sizeof(head)) == 0)
		return SASL_LINE_MAX;
	return limit;
}

/* Handle one complete command line if there is one; false when more
 * input is needed. */
static bool process_command(struct smtp_session *s, struct evbuffer *in)
{
	size_t limit = line_limit(s, in);
	if (s->skipping_long_line)
		return skip_long_line(s, in);
	size_t eol_len = 0;
	struct evbuffer_ptr eol = evbuffer_search_eol(in, NULL, &eol_len, EVBUFFER_EOL_CRLF);
	if (eol.pos < 0) {
		if (evbuffer_get_length(in) > limit) {
			s->skipping_long_line = true;
			evbuffer_drain(in, evbuffer_get_length(in));
		}
		return false;
	}
	start_phase(s); /* the next command's time starts now */
	struct smtp_reply r = { 0 };
	if ((size_t)eol.pos > limit) {
		evbuffer_drain(in, (size_t)eol.pos + eol_len);
		if (s->sasl_step != SASL_NONE)
			smtp_auth_line_too_long(s, &r);
		else
			reply_error(&r, 500, "5.5.2", "Error: line too long");
		send_reply(s, &r);
		return true;
	}
	char *line = xmalloc((size_t)eol.pos + 1);
	evbuffer_remove(in, line, (size_t)eol.pos);
	line[eol.pos] = '\0';
	evbuffer_drain(in, eol_len);
	if (s->sasl_step != SASL_NONE) {
		/* a response of the SASL exchange, not a command */
		if (smtp_auth_response(s, line, (size_t)eol.pos, &r) == STEP_REPLY)
			send_reply(s, &r);
		explicit_bzero(line, (size_t)eol.pos);
		free(line);
		return true;
	}
	s->commands++;
	if (sent_ahead(s, line, (size_t)eol.pos, &r)) {
		send_reply(s, &r);
		free(line);
		return true;
	}
	if (!s->esmtp && evbuffer_get_length(in) > 0 && !s->pipelined_early) {
		/* More came before the client could know PIPELINING: it was sent
		 * ahead of this command's reply (the next command pays). */
		s->pipelined_early = true;
		log_info("client=%s unauthorised pipelining: more input after \"%.*s\" before "
			 "its reply%s", s->peer_addr, (int)(eol.pos < 24 ? eol.pos : 24), line,
			 s->helo != NULL ? " (after HELO)" : "");
	}
	if (s->milter != NULL && smtp_verb_of(line, (size_t)eol.pos) == SMTP_UNKNOWN)
		milter_session_unknown(s->milter, line);
	if (session_handle_line(s, line, (size_t)eol.pos, &r) == STEP_REPLY)
		send_reply(s, &r);
	explicit_bzero(line, (size_t)eol.pos); /* AUTH PLAIN's initial response */
	free(line);
	return true;
}

/* Feed message bytes of DATA or BDAT; false when more input is needed. */
static bool process_content(struct smtp_session *s, struct evbuffer *in)
{
	struct evbuffer_iovec vec[16];
	int n = evbuffer_peek(in, -1, NULL, vec, 16);
	size_t used = 0;
	enum input_mode mode = s->mode;
	if (n > 16)
		n = 16; /* the rest is taken on the next round of process_input() */
	for (int i = 0; i < n; i++) {
		size_t c = tx_consume(s, vec[i].iov_base, vec[i].iov_len);
		used += c;
		if (c < vec[i].iov_len)
			break;
	}
	evbuffer_drain(in, used);
	extend_data_phase(s, used);
	struct smtp_reply r = { 0 };
	if (tx_after_consume(s, &r) == STEP_REPLY)
		send_reply(s, &r);
	return s->mode != mode || (used > 0 && evbuffer_get_length(in) > 0);
}

/* Can the next piece of input be handled now? */
static bool ready_for_input(const struct smtp_session *s)
{
	return !session_closing(s) && !s->tls_switch && s->wait == WAIT_NONE;
}

static void process_input(struct smtp_session *s)
{
	struct evbuffer *in = bufferevent_get_input(s->bev);
	while (ready_for_input(s) && evbuffer_get_length(in) > 0) {
		enum input_mode before = s->mode;
		bool progress = s->mode == MODE_COMMAND ? process_command(s, in)
							: process_content(s, in);
		if (!ready_for_input(s))
			break;
		if (s->mode != before)
			start_phase(s);
		if (!progress)
			break;
		if (evbuffer_get_length(bufferevent_get_output(s->bev)) > OUTPUT_BACKLOG_MAX) {
			s->read_paused = true;
			bufferevent_disable(s->bev, EV_READ);
			break;
		}
	}
	/* The client has shut down its side: once what it sent before is
	 * answered, the session is over. */
	if (s->peer_eof && ready_for_input(s)) {
		if (s->tx != NULL && s->mode != MODE_COMMAND) {
			log_info("%s: lost=during_data from=<%s> client=%s", s->tx->id,
				 s->tx->sender_text, s->peer_addr);
			tx_free(&s->tx);
		}
		session_close_after_flush(s);
	}
	arm_timer(s);
}

/* ---- waiting for a verdict or a commit ------------------------------------- */

void session_request(const struct smtp_session *s, enum policy_stage stage,
		     struct policy_request *req_r)
{
	memset(req_r, 0, sizeof(*req_r));
	req_r->stage = stage;
	req_r->client = s->peer;
	snprintf(req_r->client_addr, sizeof(req_r->client_addr), "%s", s->peer_addr);
	req_r->helo = s->helo;
	req_r->tls = s->tls_ready;
	req_r->auth_user = s->auth_user; /* policy_run_start copies it */
	/* What the milters' macros tell (milter_client.h). */
	req_r->milter = s->milter;
	req_r->client_port = s->peer_port;
	snprintf(req_r->daemon_name, sizeof(req_r->daemon_name), "%s",
		 s->listener == SMTP_LISTENER_SUBMISSION ? "submission"
		 : s->listener == SMTP_LISTENER_SMTPS ? "smtps" : "mx");
	if (s->ssl != NULL && s->tls_ready) {
		snprintf(req_r->tls_version, sizeof(req_r->tls_version), "%s",
			 SSL_get_version(s->ssl));
		snprintf(req_r->tls_cipher, sizeof(req_r->tls_cipher), "%s",
			 SSL_get_cipher_name(s->ssl));
		req_r->tls_cipher_bits = SSL_get_cipher_bits(s->ssl, NULL);
	}
	if (s->tx != NULL) {
		req_r->has_sender = true;
		req_r->sender = s->tx->sender;
		req_r->rcpt_count = (unsigned)s->tx->rcpts.count;
		req_r->declared_size = s->tx->declared_size;
		snprintf(req_r->queue_id, sizeof(req_r->queue_id), "%s", s->tx->id);
	}
	/* Views of the transaction's own (policy_run_start copies them). */
	if (stage == POLICY_END_OF_DATA && s->tx != NULL && s->tx->writer != NULL) {
		req_r->rcpts = s->tx->rcpts;
		req_r->content_path = (char *)queue_writer_path(s->tx->writer);
		req_r->content_off = queue_writer_content_offset(s->tx->writer);
		req_r->content_len = queue_writer_size(s->tx->writer);
	}
}

/* The stage's answer when its checks did not answer in time. */
static void default_verdict(struct smtp_session *s, struct policy_reply *r)
{
	const struct config *cfg = s->srv->cfg;
	memset(r, 0, sizeof(*r));
	log_warn("%s%sclient=%s %s checks did not answer within %llus: %s",
		 s->tx != NULL ? s->tx->id : "", s->tx != NULL ? ": " : "", s->peer_addr,
		 policy_stage_name(s->wait_stage), (unsigned long long)cfg->policy_timeout,
		 cfg->policy_default_action == POLICY_ACTION_ACCEPT ? "accepting" : "tempfail");
	if (cfg->policy_default_action == POLICY_ACTION_ACCEPT) {
		r->verdict = POLICY_DUNNO;
		return;
	}
	r->verdict = POLICY_TEMPFAIL;
	r->code = s->wait_stage == POLICY_CONNECT ? 421 : 451;
	snprintf(r->status, sizeof(r->status), "4.7.1");
	snprintf(r->text, sizeof(r->text), "Error: checks timed out, try again later");
	snprintf(r->reason, sizeof(r->reason), "policy_timeout");
}

/* Leave the wait and hand the verdict to the stage's continuation. */
static void verdict_arrived(struct smtp_session *s, struct policy_reply *verdict)
{
	struct smtp_reply out = { 0 };
	verdict_fn *then = s->then;
	s->wait = WAIT_NONE;
	s->run = NULL;
	s->then = NULL;
	if (then(s, verdict, &out) == STEP_REPLY)
		session_resume(s, &out);
}

static void verdict_ready(void *arg, struct policy_reply *verdict)
{
	verdict_arrived(arg, verdict);
}

enum step session_ask(struct smtp_session *s, const struct policy_request *req,
		      verdict_fn *then, struct smtp_reply *out)
{
	struct policy_reply verdict;
	struct policy_run *run = policy_run_start(&s->srv->policy, req, verdict_ready, s, &verdict);
	if (run == NULL) {
		enum step st = then(s, &verdict, out);
		policy_reply_free(&verdict);
		return st;
	}
	s->wait = WAIT_VERDICT;
	s->run = run;
	s->then = then;
	s->wait_stage = req->stage;
	s->wait_deadline = session_now_ms() + s->srv->cfg->policy_timeout * 1000u;
	arm_timer(s);
	return STEP_WAIT;
}

void session_wait_flow(struct smtp_session *s, struct queue_flow_wait *w)
{
	s->wait = WAIT_FLOW;
	s->flow_wait = w;
}

void session_wait_commit(struct smtp_session *s, struct queue_commit *commit)
{
	s->wait = WAIT_COMMIT;
	s->flow_wait = NULL;
	s->commit = commit;
}

void session_resume(struct smtp_session *s, const struct smtp_reply *out)
{
	s->wait = WAIT_NONE;
	s->commit = NULL;
	send_reply(s, out);
	if (session_closing(s))
		return;
	start_phase(s); /* the client's time for its next command starts now */
	if (s->bev != NULL && !s->tls_switch)
		process_input(s);
	else
		arm_timer(s);
}

/* Release whatever the session waits for (it is going away). */
static void cancel_wait(struct smtp_session *s)
{
	policy_run_cancel(&s->run);
	auth_client_cancel(&s->auth_req);
	limits_admit_cancel(&s->admission);
	queue_flow_cancel(s->srv->flow, &s->flow_wait);
	tx_orphan_commit(s); /* what it commits is still announced */
	s->wait = WAIT_NONE;
}

/* ---- callbacks --------------------------------------------------------------------- */

static void session_read_cb(struct bufferevent *bev, void *arg)
{
	struct smtp_session *s = arg;
	(void)bev;
	if (!s->greeted && !session_closing(s)) {
		greeting_input(s); /* nothing may come before the banner */
		return;
	}
	process_input(s);
}

static void session_write_cb(struct bufferevent *bev, void *arg)
{
	struct smtp_session *s = arg;
	if (evbuffer_get_length(bufferevent_get_output(bev)) != 0)
		return;
	if (session_closing(s) || s->tls_switch) {
		schedule_step(s);
	} else if (s->read_paused) {
		s->read_paused = false;
		bufferevent_enable(s->bev, EV_READ);
		process_input(s);
	}
}

/* Deferred work, run from the loop with no caller holding s. */
static void session_step_cb(evutil_socket_t fd, short what, void *arg)
{
	struct smtp_session *s = arg;
	(void)fd;
	(void)what;
	if (s->free_scheduled) {
		session_free(s);
		return;
	}
	bool flushed = s->bev == NULL ||
		       evbuffer_get_length(bufferevent_get_output(s->bev)) == 0;
	if (!flushed)
		return; /* session_write_cb schedules us again */
	if (s->close_phase == CLOSE_FLUSHING)
		begin_linger(s);
	else if (s->tls_switch)
		switch_to_tls(s);
}

static void log_tls_error(struct smtp_session *s)
{
	unsigned long e = bufferevent_get_openssl_error(s->bev);
	if (e != 0) {
		char text[256];
		ERR_error_string_n(e, text, sizeof(text));
		log_info("client=%s TLS error: %s", s->peer_addr, text);
	}
	while (bufferevent_get_openssl_error(s->bev) != 0)
		;
}

static void session_event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct smtp_session *s = arg;
	(void)bev;
	if (s->free_scheduled)
		return;
	if (what & BEV_EVENT_CONNECTED) {
		if (s->ssl != NULL && !s->tls_ready)
			tls_established(s);
		return;
	}
	if ((what & BEV_EVENT_ERROR) && s->ssl != NULL)
		log_tls_error(s);
	bool handshaking = s->tls && !s->tls_ready;
	if ((what & BEV_EVENT_EOF) && !(what & BEV_EVENT_ERROR) && !handshaking) {
		/* The client closed its side: what it sent before is still
		 * answered (after a pending verdict, too), then the
		 * connection is closed (see process_input). */
		s->peer_eof = true;
		if (ready_for_input(s))
			process_input(s);
		return;
	}
	schedule_free(s);
}

static void session_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct smtp_session *s = arg;
	const struct config *cfg = s->srv->cfg;
	uint64_t now = session_now_ms();
	const char *which;
	(void)fd;
	(void)what;
	if (session_closing(s)) {
		if (now < s->phase_deadline) {
			arm_timer(s);
			return;
		}
		log_debug("client=%s closed after waiting %s", s->peer_addr,
			  s->close_phase == CLOSE_FLUSHING ? "for the client to read"
							   : "for the client to close");
		session_free(s);
		return;
	}
	if (s->tls && !s->tls_ready && (now >= s->phase_deadline || s->wait == WAIT_NONE)) {
		log_info("client=%s timeout during TLS handshake", s->peer_addr);
		session_free(s);
		return;
	}
	if (s->wait == WAIT_VERDICT && now >= s->wait_deadline) {
		struct policy_reply verdict;
		policy_run_cancel(&s->run);
		default_verdict(s, &verdict);
		verdict_arrived(s, &verdict);
		return;
	}
	if (s->wait == WAIT_GREET && now >= s->wait_deadline) {
		greeting_pause_over(s);
		return;
	}
	if (s->wait == WAIT_DELAY && now >= s->wait_deadline) {
		release_delayed(s);
		start_phase(s); /* the client's time for its next command starts now */
		process_input(s);
		return;
	}
	if (s->session_deadline != 0 && now >= s->session_deadline)
		which = "session";
	else if (s->tx != NULL && s->tx_deadline != 0 && now >= s->tx_deadline)
		which = "transaction";
	else if (s->wait == WAIT_NONE && s->phase_deadline != 0 && now >= s->phase_deadline)
		which = s->mode == MODE_COMMAND ? "command" : "data";
	else {
		arm_timer(s);
		return;
	}
	log_info("%s%sclient=%s timeout after %s", s->tx != NULL ? s->tx->id : "",
		 s->tx != NULL ? ": " : "", s->peer_addr, which);
	cancel_wait(s);
	struct smtp_reply r = { 0 };
	if (strcmp(which, "session") == 0 || strcmp(which, "transaction") == 0)
		reply_set(&r, 421, "4.4.2", "%s Error: %s time limit exceeded", cfg->hostname,
			  which);
	else
		reply_set(&r, 421, "4.4.2", "%s Error: timeout exceeded", cfg->hostname);
	r.flags = REPLY_CLOSE;
	tx_free(&s->tx);
	send_reply(s, &r);
}

/* ---- start and server-wide operations ------------------------------------------------ */

static void describe_peer(struct smtp_session *s, const struct sockaddr *sa)
{
	const void *addr;
	if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *a6 = (const struct sockaddr_in6 *)sa;
		addr = &a6->sin6_addr;
		s->peer_port = ntohs(a6->sin6_port);
	} else {
		const struct sockaddr_in *a4 = (const struct sockaddr_in *)sa;
		addr = &a4->sin_addr;
		s->peer_port = ntohs(a4->sin_port);
	}
	if (inet_ntop(sa->sa_family, addr, s->peer_addr, sizeof(s->peer_addr)) == NULL)
		snprintf(s->peer_addr, sizeof(s->peer_addr), "unknown");
}

static struct smtp_session *session_new(struct smtp_server *srv, int fd,
					const struct sockaddr *sa, socklen_t salen)
{
	struct smtp_session *s = xcalloc(1, sizeof(*s));
	s->srv = srv;
	s->fd = fd;
	memcpy(&s->peer, sa, (size_t)salen < sizeof(s->peer) ? (size_t)salen : sizeof(s->peer));
	describe_peer(s, sa);
	s->bev = bufferevent_socket_new(srv->base, fd, 0);
	s->timer = evtimer_new(srv->base, session_timer_cb, s);
	s->step = event_new(srv->base, -1, 0, session_step_cb, s);
	if (s->bev == NULL || s->timer == NULL || s->step == NULL)
		log_fatal("cannot allocate a session's events");
	s->id = ++srv->sessions_started;
	s->milter = milter_session_new(srv->milters);
	s->next = srv->sessions;
	if (s->next != NULL)
		s->next->prev = s;
	srv->sessions = s;
	srv->session_count++;
	set_callbacks(s);
	s->session_deadline = session_now_ms() + srv->cfg->session_timeout * 1000u;
	start_phase(s);
	arm_timer(s);
	return s;
}

/* RFC 8314 implicit TLS: the handshake starts at once on the socket; the
 * TLS layer holds back what the session writes (the banner) until it is
 * done. False if it cannot start (the session is freed). */
static bool start_implicit_tls(struct smtp_session *s)
{
	bufferevent_free(s->bev);
	s->bev = NULL;
	s->tls = true;
	s->ssl = s->srv->tls_ctx != NULL ? SSL_new(s->srv->tls_ctx) : NULL;
	if (s->ssl != NULL)
		s->bev = bufferevent_openssl_socket_new(s->srv->base, s->fd, s->ssl,
							BUFFEREVENT_SSL_ACCEPTING, 0);
	if (s->bev == NULL) {
		log_warn("client=%s cannot start TLS", s->peer_addr);
		session_free(s);
		return false;
	}
	bufferevent_openssl_set_allow_dirty_shutdown(s->bev, 1);
	set_callbacks(s);
	return true;
}

void smtp_session_start(struct smtp_server *srv, int fd, const struct sockaddr *sa,
			socklen_t salen)
{
	smtp_session_start_on(srv, fd, sa, salen, SMTP_LISTENER_MX);
}

void smtp_session_start_on(struct smtp_server *srv, int fd, const struct sockaddr *sa,
			   socklen_t salen, enum smtp_listener listener)
{
	struct smtp_session *s = session_new(srv, fd, sa, salen);
	metrics_count(METRIC_SMTP_CONNECTIONS);
	s->listener = listener;
	log_info("connect client=%s port=%u%s", s->peer_addr, s->peer_port,
		 listener == SMTP_LISTENER_SUBMISSION ? " listener=submission"
		 : listener == SMTP_LISTENER_SMTPS ? " listener=smtps" : "");
	if (listener == SMTP_LISTENER_SMTPS && !start_implicit_tls(s))
		return;
	if (srv->session_count - srv->lingering_count > srv->cfg->worker_connections) {
		s->no_linger = true; /* an overload: its descriptor is needed back at once */
		session_count_refusal("connect", 421, "worker_connections", "too_many_connections",
				      NULL);
		send_421(s, "4.7.0", "Error: too many connections, try again later");
		return;
	}
	if (srv->draining) {
		send_421(s, "4.3.2", "Service shutting down");
		return;
	}
	greeting_start(s);
}

void smtp_server_drain(struct smtp_server *srv)
{
	srv->draining = true;
	struct smtp_session *s = srv->sessions, *next;
	for (; s != NULL; s = next) {
		next = s->next;
		if (session_closing(s) || s->tx != NULL)
			continue;
		if (s->tls && !s->tls_ready) {
			schedule_free(s); /* no reply can reach it before the handshake */
			continue;
		}
		send_421(s, "4.3.2", "Service shutting down");
	}
	if (srv->session_count == 0 && srv->on_drained != NULL)
		srv->on_drained(srv);
}

void smtp_server_retire(struct smtp_server *srv)
{
	srv->retiring = true;
	if (srv->session_count == 0 && srv->on_drained != NULL)
		srv->on_drained(srv);
}

void smtp_server_close_all(struct smtp_server *srv)
{
	for (struct smtp_session *s = srv->sessions; s != NULL; s = s->next)
		schedule_free(s);
}

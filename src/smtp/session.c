/*
 * session.c - connection life cycle and input loop of an SMTP session:
 * accept, greeting, line framing with length limits, real PIPELINING
 * (every complete command in the input is answered in order, replies are
 * flushed together), STARTTLS upgrade, timeouts, output back-pressure and
 * graceful drain. Runs unprivileged in an smtp worker; all input is
 * untrusted.
 */
#include "session_int.h"

#include <arpa/inet.h>
#include <event2/buffer.h>
#include <event2/bufferevent_ssl.h>
#include <openssl/err.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../lib/log.h"
#include "../lib/xalloc.h"
#include "tls.h"

/* Stop reading while this much output waits for a slow reader. */
#define OUTPUT_BACKLOG_MAX (256 * 1024)

static void session_read_cb(struct bufferevent *bev, void *arg);
static void session_write_cb(struct bufferevent *bev, void *arg);
static void session_event_cb(struct bufferevent *bev, short what, void *arg);

static void session_set_timeout(struct smtp_session *s)
{
	const struct config *cfg = s->srv->cfg;
	struct timeval tv = { (time_t)(s->mode == MODE_COMMAND ? cfg->command_timeout
							       : cfg->data_timeout), 0 };
	bufferevent_set_timeouts(s->bev, &tv, &tv);
}

static void session_free(struct smtp_session *s)
{
	struct smtp_server *srv = s->srv;
	if (s->tx != NULL && s->mode != MODE_COMMAND)
		log_info("%s: lost=during_data from=<%s> client=%s", s->tx->id,
			 s->tx->sender_text, s->peer_addr);
	log_info("disconnect client=%s port=%u commands=%u messages=%u errors=%u",
		 s->peer_addr, s->peer_port, s->commands, s->messages, s->errors);
	tx_free(&s->tx);
	if (s->bev != NULL)
		bufferevent_free(s->bev);
	if (s->prev != NULL)
		s->prev->next = s->next;
	else
		srv->sessions = s->next;
	if (s->next != NULL)
		s->next->prev = s->prev;
	free(s->helo);
	free(s);
	srv->session_count--;
	if ((srv->draining || srv->retiring) && srv->session_count == 0 &&
	    srv->on_drained != NULL)
		srv->on_drained(srv);
}

static void vreply(struct smtp_session *s, int code, const char *status,
		   const char *fmt, va_list ap) PRINTF_LIKE(4, 0);

static void vreply(struct smtp_session *s, int code, const char *status,
		   const char *fmt, va_list ap)
{
	char text[512];
	vsnprintf(text, sizeof(text), fmt, ap);
	struct evbuffer *out = bufferevent_get_output(s->bev);
	evbuffer_add_printf(out, "%d %s %s\r\n", code, status, text);
}

void session_reply(struct smtp_session *s, int code, const char *status,
		   const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vreply(s, code, status, fmt, ap);
	va_end(ap);
}

void session_error(struct smtp_session *s, int code, const char *status,
		   const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vreply(s, code, status, fmt, ap);
	va_end(ap);
	if (++s->errors >= s->srv->cfg->error_limit) {
		log_info("client=%s too many errors (%u), closing", s->peer_addr, s->errors);
		session_reply(s, 421, "4.7.0", "%s Error: too many errors",
			      s->srv->cfg->hostname);
		session_close_after_flush(s);
	}
}

static void deferred_free_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	session_free(arg);
}

/* Free s from the event loop, never from inside a caller that still
 * holds it. */
static void schedule_free(struct smtp_session *s)
{
	static const struct timeval now = { 0, 0 };
	if (s->free_scheduled)
		return;
	s->free_scheduled = true;
	if (event_base_once(s->srv->base, -1, EV_TIMEOUT, deferred_free_cb, s, &now) < 0)
		log_panic("event_base_once failed");
}

void session_close_after_flush(struct smtp_session *s)
{
	s->closing = true;
	bufferevent_disable(s->bev, EV_READ);
	if (evbuffer_get_length(bufferevent_get_output(s->bev)) == 0)
		schedule_free(s);
	/* otherwise session_write_cb frees it once the reply is out */
}

static void set_callbacks(struct smtp_session *s)
{
	bufferevent_setcb(s->bev, session_read_cb, session_write_cb, session_event_cb, s);
	session_set_timeout(s);
	bufferevent_enable(s->bev, EV_READ | EV_WRITE);
}

void session_start_tls(struct smtp_session *s)
{
	/* RFC 3207 section 6 / CVE-2011-0411: anything the client pipelined
	 * after STARTTLS was sent in clear text and must not be executed. */
	struct evbuffer *in = bufferevent_get_input(s->bev);
	evbuffer_drain(in, evbuffer_get_length(in));
	SSL *ssl = SSL_new(s->srv->tls_ctx);
	struct bufferevent *tls_bev = bufferevent_openssl_filter_new(
		s->srv->base, s->bev, ssl, BUFFEREVENT_SSL_ACCEPTING,
		BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS);
	if (tls_bev == NULL) {
		SSL_free(ssl);
		log_warn("client=%s cannot start TLS", s->peer_addr);
		session_close_after_flush(s);
		return;
	}
	s->bev = tls_bev;
	s->tls = true;
	/* RFC 3207 section 4.2: forget everything learned before TLS. */
	xfree(&s->helo);
	s->esmtp = false;
	tx_free(&s->tx);
	set_callbacks(s);
}

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
	session_error(s, 500, "5.5.2", "Error: line too long");
	return true;
}

/* Handle one complete command line if there is one; false when more
 * input is needed. */
static bool process_command(struct smtp_session *s, struct evbuffer *in)
{
	size_t limit = (size_t)s->srv->cfg->command_line_limit;
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
	if ((size_t)eol.pos > limit) {
		evbuffer_drain(in, (size_t)eol.pos + eol_len);
		session_error(s, 500, "5.5.2", "Error: line too long");
		return true;
	}
	char *line = xmalloc((size_t)eol.pos + 1);
	evbuffer_remove(in, line, (size_t)eol.pos);
	line[eol.pos] = '\0';
	evbuffer_drain(in, eol_len);
	s->commands++;
	session_handle_line(s, line, (size_t)eol.pos);
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
	tx_after_consume(s);
	return s->mode != mode || (used > 0 && evbuffer_get_length(in) > 0);
}

static void process_input(struct smtp_session *s)
{
	struct evbuffer *in = bufferevent_get_input(s->bev);
	struct bufferevent *bev = s->bev;
	while (!s->closing && bev == s->bev && evbuffer_get_length(in) > 0) {
		enum input_mode before = s->mode;
		bool progress = s->mode == MODE_COMMAND ? process_command(s, in)
							: process_content(s, in);
		if (s->closing)
			return; /* s may be freed */
		if (s->mode != before)
			session_set_timeout(s);
		if (!progress)
			break;
		if (evbuffer_get_length(bufferevent_get_output(s->bev)) > OUTPUT_BACKLOG_MAX) {
			s->read_paused = true;
			bufferevent_disable(s->bev, EV_READ);
			break;
		}
	}
}

static void session_read_cb(struct bufferevent *bev, void *arg)
{
	(void)bev;
	process_input(arg);
}

static void session_write_cb(struct bufferevent *bev, void *arg)
{
	struct smtp_session *s = arg;
	if (evbuffer_get_length(bufferevent_get_output(bev)) != 0)
		return;
	if (s->closing) {
		schedule_free(s);
	} else if (s->read_paused) {
		s->read_paused = false;
		bufferevent_enable(s->bev, EV_READ);
		process_input(s);
	}
}

static void session_event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct smtp_session *s = arg;
	(void)bev;
	if ((what & BEV_EVENT_CONNECTED) || s->free_scheduled)
		return;
	if ((what & BEV_EVENT_TIMEOUT) && !s->closing) {
		log_info("%s%sclient=%s timeout after %s", s->tx != NULL ? s->tx->id : "",
			 s->tx != NULL ? ": " : "", s->peer_addr,
			 s->mode == MODE_COMMAND ? "command" : "data");
		session_reply(s, 421, "4.4.2", "%s Error: timeout exceeded", s->srv->cfg->hostname);
		bufferevent_set_timeouts(s->bev, NULL, NULL);
		session_close_after_flush(s);
		return;
	}
	if ((what & BEV_EVENT_ERROR) && s->tls) {
		unsigned long e = bufferevent_get_openssl_error(s->bev);
		if (e != 0) {
			char text[256];
			ERR_error_string_n(e, text, sizeof(text));
			log_info("client=%s TLS error: %s", s->peer_addr, text);
		}
	}
	schedule_free(s);
}

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

void smtp_session_start(struct smtp_server *srv, int fd, const struct sockaddr *sa,
			socklen_t salen)
{
	struct smtp_session *s = xcalloc(1, sizeof(*s));
	s->srv = srv;
	memcpy(&s->peer, sa, (size_t)salen < sizeof(s->peer) ? (size_t)salen : sizeof(s->peer));
	describe_peer(s, sa);
	s->bev = bufferevent_socket_new(srv->base, fd, BEV_OPT_CLOSE_ON_FREE);
	if (s->bev == NULL) {
		close(fd);
		free(s);
		return;
	}
	s->next = srv->sessions;
	if (s->next != NULL)
		s->next->prev = s;
	srv->sessions = s;
	srv->session_count++;
	set_callbacks(s);
	log_info("connect client=%s port=%u", s->peer_addr, s->peer_port);
	if (srv->session_count > srv->cfg->worker_connections) {
		session_reply(s, 421, "4.7.0", "%s Error: too many connections, try again later",
			      srv->cfg->hostname);
		session_close_after_flush(s);
		return;
	}
	struct policy_request req = { .stage = POLICY_CONNECT, .client = sa,
				      .client_addr = s->peer_addr };
	struct policy_reply rep;
	enum policy_verdict v = policy_check(&srv->policy, &req, &rep);
	if (v == POLICY_REJECT || v == POLICY_TEMPFAIL) {
		log_info("client=%s reject: connect code=%d %s reason=%s", s->peer_addr,
			 rep.code, rep.status, rep.reason);
		session_reply(s, rep.code, rep.status, "%s", rep.text);
		session_close_after_flush(s);
		return;
	}
	evbuffer_add_printf(bufferevent_get_output(s->bev), "220 %s ESMTP postern\r\n",
			    srv->cfg->hostname);
}

void smtp_server_drain(struct smtp_server *srv)
{
	srv->draining = true;
	struct smtp_session *s = srv->sessions, *next;
	for (; s != NULL; s = next) {
		next = s->next;
		if (s->tx == NULL && !s->closing) {
			session_reply(s, 421, "4.3.2", "%s Service shutting down", srv->cfg->hostname);
			session_close_after_flush(s);
		}
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
	for (struct smtp_session *s = srv->sessions; s != NULL; s = s->next) {
		s->closing = true;
		schedule_free(s);
	}
}

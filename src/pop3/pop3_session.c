/*
 * pop3_session.c - connection life cycle and input loop of a POP3
 * session: the client allow-list and the concurrency limit at accept,
 * implicit TLS (pop3s) and STLS (RFC 2595), line framing with a length
 * limit, pipelined commands answered in order (RFC 2449 PIPELINING), the
 * idle timeout (RFC 1939 section 3: at least 10 minutes by default; an
 * expired session is closed without a reply and without its update),
 * output back-pressure while a message is sent, and a close that lets
 * the last reply drain.
 *
 * Commands themselves are in pop3_commands.c; nothing here blocks the
 * loop: logins wait for the auth process, mailbox work for the agent.
 *
 * Untrusted input: everything the client sends. Privilege: the pop3
 * worker (`user`); a message arrives as a read-only descriptor from the
 * mailbox agent.
 */
#include "pop3_int.h"

#include <arpa/inet.h>
#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent_ssl.h>
#include <openssl/err.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../lib/buf.h"
#include "../lib/log.h"
#include "../lib/metrics.h"
#include "../lib/xalloc.h"

/* Input waiting while a command is answered (besides one line). */
#define INPUT_BUFFER_MAX (64 * 1024)
/* A message is read from its file in chunks of this size, and the next
 * chunk is read once the output is below OUTPUT_LOW. */
#define MESSAGE_CHUNK (64 * 1024)
#define OUTPUT_LOW (128 * 1024)
/* The last reply has this long to drain before the connection is closed. */
#define CLOSE_FLUSH_MS 10000
/* A TLS handshake must complete within this (or the idle timeout). */
#define HANDSHAKE_MS 60000

static void read_cb(struct bufferevent *bev, void *arg);
static void write_cb(struct bufferevent *bev, void *arg);
static void event_cb(struct bufferevent *bev, short what, void *arg);
static void process_input(struct pop3_session *s);

/* ---- timers ----------------------------------------------------------------- */

static void arm_ms(struct pop3_session *s, uint64_t ms)
{
	struct timeval tv = { (time_t)(ms / 1000), (suseconds_t)(ms % 1000) * 1000 };
	evtimer_add(s->timer, &tv);
}

/* The client has pop3_idle_timeout from now to send its next command (or
 * read on). */
static void touch(struct pop3_session *s)
{
	if (s->closing)
		return;
	uint64_t ms = s->srv->cfg->pop3_idle_timeout * 1000u;
	if (s->tls && !s->tls_ready && ms > HANDSHAKE_MS)
		ms = HANDSHAKE_MS;
	arm_ms(s, ms);
}

/* ---- freeing and closing ------------------------------------------------------ */

static void session_free(struct pop3_session *s)
{
	struct pop3_server *srv = s->srv;
	pop3_session_release(s);
	log_info("disconnect client=%s port=%u%s%s commands=%u retrieved=%u deleted=%u",
		 s->peer_addr, s->peer_port, s->account != NULL ? " user=" : "",
		 s->account != NULL ? s->account : "", s->commands, s->retrieved, s->deleted);
	if (s->bev != NULL)
		bufferevent_free(s->bev);
	if (s->ssl != NULL)
		SSL_free(s->ssl);
	ERR_clear_error();
	event_free(s->timer);
	event_free(s->step);
	if (s->fd >= 0)
		close(s->fd);
	if (s->msg_fd >= 0)
		close(s->msg_fd);
	if (s->prev != NULL)
		s->prev->next = s->next;
	else
		srv->sessions = s->next;
	if (s->next != NULL)
		s->next->prev = s->prev;
	free(s->user);
	free(s->account);
	free(s->read_buf);
	free(s);
	srv->session_count--;
	if (srv->on_session_freed != NULL)
		srv->on_session_freed(srv);
	if ((srv->draining || srv->retiring) && srv->session_count == 0 &&
	    srv->on_drained != NULL)
		srv->on_drained(srv);
}

/* Run step_cb from the loop, never from inside a caller holding s. */
static void schedule_step(struct pop3_session *s)
{
	event_active(s->step, EV_TIMEOUT, 0);
}

static void schedule_free(struct pop3_session *s)
{
	s->free_scheduled = true;
	schedule_step(s);
}

void pop3_close_after_flush(struct pop3_session *s)
{
	if (s->closing)
		return;
	s->closing = true;
	pop3_session_release(s);
	if (s->bev != NULL)
		bufferevent_disable(s->bev, EV_READ);
	arm_ms(s, CLOSE_FLUSH_MS);
	if (s->bev == NULL || evbuffer_get_length(bufferevent_get_output(s->bev)) == 0)
		schedule_step(s);
}

/* The output is out: close_notify for TLS, then the end. */
static void finish_close(struct pop3_session *s)
{
	if (s->ssl != NULL && s->tls_ready)
		SSL_shutdown(s->ssl); /* best effort, non-blocking */
	session_free(s);
}

/* ---- output -------------------------------------------------------------------- */

void pop3_reply_raw(struct pop3_session *s, const char *data, size_t len)
{
	if (s->bev != NULL && !s->closing)
		evbuffer_add(bufferevent_get_output(s->bev), data, len);
}

void pop3_reply(struct pop3_session *s, const char *fmt, ...)
{
	buf_t b = BUF_INIT;
	va_list ap;
	va_start(ap, fmt);
	buf_vprintf(&b, fmt, ap);
	va_end(ap);
	/* RFC 2449: a response line is at most 512 octets, CRLF included. */
	if (b.len > 510)
		b.len = 510;
	buf_append(&b, "\r\n", 2);
	pop3_reply_raw(s, b.data, b.len);
	buf_free(&b);
}

/* Feed the next chunks of the message into the output until it holds
 * OUTPUT_LOW or the message has ended. */
static void pump_message(struct pop3_session *s)
{
	struct evbuffer *out = bufferevent_get_output(s->bev);
	while (s->wait == POP3_WAIT_SEND && evbuffer_get_length(out) < OUTPUT_LOW) {
		ssize_t n = s->enc.done ? 0 : read(s->msg_fd, s->read_buf, MESSAGE_CHUNK);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			/* The client has part of the message and no end: it must
			 * not take it as whole, so the connection ends. */
			log_warn("client=%s user=%s cannot read a message: %s", s->peer_addr,
				 s->account, strerror(errno));
			close(s->msg_fd);
			s->msg_fd = -1;
			s->wait = POP3_WAIT_NONE;
			pop3_close_after_flush(s);
			return;
		}
		struct evbuffer_iovec v;
		size_t room = n > 0 ? 2 * (size_t)n : POP3_ENCODE_END_MAX;
		if (evbuffer_reserve_space(out, (ev_ssize_t)room, &v, 1) < 1)
			log_fatal("out of memory for a message's output");
		v.iov_len = n > 0 ? pop3_encode(&s->enc, s->read_buf, (size_t)n, v.iov_base)
				  : pop3_encode_end(&s->enc, v.iov_base);
		evbuffer_commit_space(out, &v, 1);
		if (n == 0) {
			close(s->msg_fd);
			s->msg_fd = -1;
			s->wait = POP3_WAIT_NONE;
			pop3_resume(s);
			return;
		}
	}
}

void pop3_send_message(struct pop3_session *s, int fd, bool top, uint64_t lines)
{
	s->msg_fd = fd;
	if (s->read_buf == NULL)
		s->read_buf = xmalloc(MESSAGE_CHUNK);
	pop3_encoder_init(&s->enc, top, lines);
	s->wait = POP3_WAIT_SEND;
	touch(s);
	pump_message(s);
}

/* ---- STLS ------------------------------------------------------------------------ */

static void set_callbacks(struct pop3_session *s)
{
	bufferevent_setcb(s->bev, read_cb, write_cb, event_cb, s);
	bufferevent_setwatermark(s->bev, EV_READ, 0, INPUT_BUFFER_MAX + POP3_LINE_MAX);
	bufferevent_setwatermark(s->bev, EV_WRITE, OUTPUT_LOW, 0);
	bufferevent_enable(s->bev, EV_READ | EV_WRITE);
}

void pop3_start_tls_after_reply(struct pop3_session *s)
{
	/* RFC 2595 section 4 / CVE-2011-0411: what was pipelined after STLS
	 * came in clear text and is not executed. */
	struct evbuffer *in = bufferevent_get_input(s->bev);
	evbuffer_drain(in, evbuffer_get_length(in));
	bufferevent_disable(s->bev, EV_READ);
	s->tls = true;
	s->tls_switch = true;
	xfree(&s->user); /* nothing learned before TLS is kept */
	if (evbuffer_get_length(bufferevent_get_output(s->bev)) == 0)
		schedule_step(s);
}

static bool start_tls_layer(struct pop3_session *s)
{
	s->ssl = SSL_new(s->srv->tls_ctx);
	if (s->ssl != NULL)
		s->bev = bufferevent_openssl_socket_new(s->srv->base, s->fd, s->ssl,
							BUFFEREVENT_SSL_ACCEPTING, 0);
	if (s->bev == NULL) {
		log_warn("client=%s cannot start TLS", s->peer_addr);
		return false;
	}
	bufferevent_openssl_set_allow_dirty_shutdown(s->bev, 1);
	set_callbacks(s);
	s->tls = true;
	touch(s);
	return true;
}

static void switch_to_tls(struct pop3_session *s)
{
	s->tls_switch = false;
	bufferevent_free(s->bev);
	s->bev = NULL;
	if (!start_tls_layer(s))
		session_free(s);
}

static void greet(struct pop3_session *s)
{
	s->greeted = true;
	pop3_reply(s, "+OK %s POP3 server ready", s->srv->cfg->hostname);
}

static void tls_established(struct pop3_session *s)
{
	s->tls_ready = true;
	log_info("client=%s TLS established: version=%s cipher=%s", s->peer_addr,
		 SSL_get_version(s->ssl), SSL_get_cipher_name(s->ssl));
	touch(s);
	if (!s->greeted)
		greet(s); /* pop3s: the greeting comes over TLS */
}

/* ---- input ------------------------------------------------------------------------ */

static bool ready_for_input(const struct pop3_session *s)
{
	return !s->closing && !s->tls_switch && s->wait == POP3_WAIT_NONE && s->greeted &&
	       (!s->tls || s->tls_ready);
}

/* One line, if a whole one is there; false when more input is needed. */
static bool process_line(struct pop3_session *s, struct evbuffer *in)
{
	if (s->skipping_long_line) {
		struct evbuffer_ptr lf = evbuffer_search(in, "\n", 1, NULL);
		if (lf.pos < 0) {
			evbuffer_drain(in, evbuffer_get_length(in));
			return false;
		}
		evbuffer_drain(in, (size_t)lf.pos + 1);
		s->skipping_long_line = false;
		s->sasl_continuation = false; /* an AUTH response too long: no login */
		pop3_bad(s, "line too long");
		return true;
	}
	size_t eol_len = 0;
	struct evbuffer_ptr eol = evbuffer_search_eol(in, NULL, &eol_len, EVBUFFER_EOL_CRLF);
	if (eol.pos < 0) {
		if (evbuffer_get_length(in) > POP3_LINE_MAX) {
			s->skipping_long_line = true;
			evbuffer_drain(in, evbuffer_get_length(in));
		}
		return false;
	}
	if ((size_t)eol.pos > POP3_LINE_MAX) {
		evbuffer_drain(in, (size_t)eol.pos + eol_len);
		s->sasl_continuation = false;
		pop3_bad(s, "line too long");
		return true;
	}
	char line[POP3_LINE_MAX + 1];
	evbuffer_remove(in, line, (size_t)eol.pos);
	evbuffer_drain(in, eol_len);
	touch(s);
	pop3_handle_line(s, line, (size_t)eol.pos);
	explicit_bzero(line, sizeof(line)); /* it may have held a password */
	return true;
}

static void process_input(struct pop3_session *s)
{
	if (s->bev == NULL)
		return;
	struct evbuffer *in = bufferevent_get_input(s->bev);
	while (ready_for_input(s) && evbuffer_get_length(in) > 0) {
		if (!process_line(s, in))
			break;
		if (s->bev != NULL && !s->closing &&
		    evbuffer_get_length(bufferevent_get_output(s->bev)) > OUTPUT_LOW * 2) {
			/* A client that pipelines without reading: wait for it. */
			s->read_paused = true;
			bufferevent_disable(s->bev, EV_READ);
			break;
		}
	}
	if (s->peer_eof && ready_for_input(s))
		pop3_close_after_flush(s); /* everything it sent is answered */
}

void pop3_resume(struct pop3_session *s)
{
	if (s->closing || s->bev == NULL)
		return;
	touch(s);
	if (!s->tls_switch && s->wait == POP3_WAIT_NONE)
		process_input(s);
}

bool pop3_login_allowed(const struct pop3_session *s)
{
	return s->tls_ready ||
	       cidr_list_match(&s->srv->cfg->pop3_cleartext_networks,
			       (const struct sockaddr *)&s->peer);
}

/* ---- callbacks ------------------------------------------------------------------------ */

static void read_cb(struct bufferevent *bev, void *arg)
{
	(void)bev;
	process_input(arg);
}

static void write_cb(struct bufferevent *bev, void *arg)
{
	struct pop3_session *s = arg;
	if (s->closing || s->tls_switch) {
		if (evbuffer_get_length(bufferevent_get_output(bev)) == 0)
			schedule_step(s);
		return;
	}
	if (s->wait == POP3_WAIT_SEND) {
		touch(s); /* the client reads on: it is not idle */
		pump_message(s);
		return;
	}
	if (s->read_paused && evbuffer_get_length(bufferevent_get_output(bev)) < OUTPUT_LOW) {
		s->read_paused = false;
		bufferevent_enable(s->bev, EV_READ);
		process_input(s);
	}
}

static void step_cb(evutil_socket_t fd, short what, void *arg)
{
	struct pop3_session *s = arg;
	(void)fd;
	(void)what;
	if (s->free_scheduled) {
		session_free(s);
		return;
	}
	if (s->bev != NULL && evbuffer_get_length(bufferevent_get_output(s->bev)) != 0)
		return; /* write_cb schedules us again */
	if (s->closing)
		finish_close(s);
	else if (s->tls_switch)
		switch_to_tls(s);
}

static void event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct pop3_session *s = arg;
	(void)bev;
	if (s->free_scheduled)
		return;
	if (what & BEV_EVENT_CONNECTED) {
		if (s->ssl != NULL && !s->tls_ready)
			tls_established(s);
		return;
	}
	if ((what & BEV_EVENT_ERROR) && s->ssl != NULL) {
		unsigned long e;
		while ((e = bufferevent_get_openssl_error(s->bev)) != 0) {
			char text[256];
			ERR_error_string_n(e, text, sizeof(text));
			log_info("client=%s TLS error: %s", s->peer_addr, text);
		}
	}
	if ((what & BEV_EVENT_EOF) && !(what & BEV_EVENT_ERROR) && !(s->tls && !s->tls_ready)) {
		/* Half close: what it sent before is still answered. */
		s->peer_eof = true;
		if (ready_for_input(s))
			process_input(s);
		return;
	}
	schedule_free(s); /* the client is gone: no update (RFC 1939 section 6) */
}

static void timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct pop3_session *s = arg;
	(void)fd;
	(void)what;
	if (s->closing) {
		log_debug("client=%s closed after waiting for the client to read", s->peer_addr);
		session_free(s);
		return;
	}
	/* RFC 1939 section 3: an autologout closes the connection without a
	 * response and without entering the UPDATE state. */
	log_info("client=%s%s%s timeout after %s", s->peer_addr, s->account != NULL ? " user=" : "",
		 s->account != NULL ? s->account : "",
		 s->tls && !s->tls_ready ? "TLS handshake" : "idle time");
	schedule_free(s);
}

/* ---- start and server-wide operations ------------------------------------------------ */

/* The client's address as text (addr has INET6_ADDRSTRLEN bytes) and port. */
static void describe_peer(const struct sockaddr *sa, char *addr_r, unsigned *port_r)
{
	const void *addr;
	if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *a6 = (const struct sockaddr_in6 *)sa;
		addr = &a6->sin6_addr;
		*port_r = ntohs(a6->sin6_port);
	} else {
		const struct sockaddr_in *a4 = (const struct sockaddr_in *)sa;
		addr = &a4->sin_addr;
		*port_r = ntohs(a4->sin_port);
	}
	if (inet_ntop(sa->sa_family, addr, addr_r, INET6_ADDRSTRLEN) == NULL)
		snprintf(addr_r, INET6_ADDRSTRLEN, "unknown");
}

/* Why a new connection is refused before it costs a session, or NULL. */
static const char *refusal(const struct pop3_server *srv, const struct sockaddr *sa,
			   const char *addr)
{
	if (!cidr_list_match(&srv->cfg->pop3_clients, sa)) {
		log_info("client=%s reject: not in pop3_clients", addr);
		return "[SYS/PERM] POP3 is not offered to your address";
	}
	if (srv->session_count >= srv->cfg->pop3_connection_limit) {
		log_warn("client=%s reject: pop3_connection_limit (%llu) reached", addr,
			 (unsigned long long)srv->cfg->pop3_connection_limit);
		return "[SYS/TEMP] too many sessions, try again later";
	}
	if (srv->draining)
		return "[SYS/TEMP] server shutting down";
	return NULL;
}

/* Refuse at once, without a session: the line (for a clear-text listener;
 * nothing for pop3s, no TLS is spent on a refused client) goes straight
 * into the new socket's empty buffer, and the socket is closed. So a
 * burst of refused connections holds no descriptors the sessions need
 * (a message the agent opened could not be received then, and the
 * worker ended with all its sessions). */
static void refuse_now(int fd, bool implicit_tls, const char *text)
{
	if (!implicit_tls) {
		char line[128];
		int n = snprintf(line, sizeof(line), "-ERR %s\r\n", text);
		(void)send(fd, line, (size_t)n, MSG_DONTWAIT | MSG_NOSIGNAL);
	}
	close(fd);
}

void pop3_session_start(struct pop3_server *srv, int fd, const struct sockaddr *sa,
			socklen_t salen, bool implicit_tls)
{
	char addr[INET6_ADDRSTRLEN];
	unsigned port;
	describe_peer(sa, addr, &port);
	log_info("connect client=%s port=%u%s", addr, port, implicit_tls ? " tls=implicit" : "");
	const char *why = refusal(srv, sa, addr);
	if (why != NULL) {
		metrics_count(METRIC_POP3_REFUSED);
		refuse_now(fd, implicit_tls, why);
		return;
	}
	metrics_count(METRIC_POP3_CONNECTIONS);
	struct pop3_session *s = xcalloc(1, sizeof(*s));
	s->srv = srv;
	s->fd = fd;
	s->msg_fd = -1;
	s->implicit_tls = implicit_tls;
	memcpy(&s->peer, sa, (size_t)salen < sizeof(s->peer) ? (size_t)salen : sizeof(s->peer));
	memcpy(s->peer_addr, addr, sizeof(s->peer_addr));
	s->peer_port = port;
	s->sid = ++srv->last_sid;
	s->timer = evtimer_new(srv->base, timer_cb, s);
	s->step = event_new(srv->base, -1, 0, step_cb, s);
	if (s->timer == NULL || s->step == NULL)
		log_fatal("cannot allocate a session's events");
	s->next = srv->sessions;
	if (s->next != NULL)
		s->next->prev = s;
	srv->sessions = s;
	srv->session_count++;
	s->bev = bufferevent_socket_new(srv->base, fd, 0);
	if (s->bev == NULL)
		log_fatal("cannot allocate a session's buffers");
	set_callbacks(s);
	touch(s);
	if (implicit_tls) {
		bufferevent_free(s->bev);
		s->bev = NULL;
		if (!start_tls_layer(s))
			schedule_free(s);
		return;
	}
	greet(s);
}

void pop3_server_drain(struct pop3_server *srv)
{
	srv->draining = true;
	struct pop3_session *s = srv->sessions, *next;
	for (; s != NULL; s = next) {
		next = s->next;
		if (s->closing || s->wait == POP3_WAIT_UPDATE)
			continue; /* an update completes, then the session closes */
		schedule_free(s);
	}
	if (srv->session_count == 0 && srv->on_drained != NULL)
		srv->on_drained(srv);
}

void pop3_server_retire(struct pop3_server *srv)
{
	srv->retiring = true;
	if (srv->session_count == 0 && srv->on_drained != NULL)
		srv->on_drained(srv);
}

/*
 * relay_session.c - one outbound SMTP session: find the next hop's
 * addresses, connect (trying each in turn), greeting, EHLO (HELO when
 * the peer does not know it), STARTTLS by the destination's TLS level,
 * then one transaction per job (MAIL, RCPT per recipient, DATA, the
 * content), pipelined when the peer offers PIPELINING, and more jobs of
 * the same destination on the same connection; QUIT once it has idled
 * relay_idle_timeout (0: after each job).
 *
 * Per recipient the peer's own reply decides: 2xx to RCPT and to the
 * end of data is sent, 4xx a temporary and 5xx a permanent failure, with
 * the peer's text in the reason (so a bounce quotes it). A failure of
 * the connection or a timeout in a transaction fails the recipients not
 * yet settled temporarily. Every wait is bounded (relay_connect_timeout,
 * relay_command_timeout, relay_data_timeout); every reply is parsed by
 * relay_reply.c within its bounds.
 *
 * Before MAIL: a message larger than the peer's SIZE fails permanently
 * (5.3.4); one that needs SMTPUTF8 (a non-ASCII address) to a peer
 * without it fails permanently (5.6.7, RFC 6531 section 3.4); an 8-bit
 * message to a peer without 8BITMIME goes with its body quoted-printable
 * when it is a single part with a 7-bit header section, and fails
 * permanently otherwise (5.6.3, RFC 6152 section 3; relay_qp.h).
 *
 * RFCs: RFC 5321, RFC 2920 (PIPELINING), RFC 1870 (SIZE), RFC 6152
 * (8BITMIME), RFC 6531 (SMTPUTF8), RFC 3207 (STARTTLS), RFC 3463.
 * Untrusted input: everything the peer sends (bounded lines, bounded
 * replies), the message content. Privilege: the relay agent.
 */
#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent_ssl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "../lib/buf.h"
#include "../lib/log.h"
#include "../lib/xalloc.h"
#include "../mail/dsn.h"
#include "relay_internal.h"
#include "relay_qp.h"

#define BODY_CHUNK 65536
#define BODY_LOW_WATER 65536
#define BODY_HIGH_WATER (4 * BODY_CHUNK)
#define QUIT_WAIT_SECS 5

enum phase {
	P_RESOLVE,
	P_CONNECT,
	P_GREETING,
	P_EHLO,
	P_HELO,
	P_STARTTLS,
	P_HANDSHAKE,
	P_TX,        /* MAIL/RCPT/DATA replies expected */
	P_BODY,      /* sending the content */
	P_DOT,       /* the reply to the end of data */
	P_RSET,
	P_IDLE,
	P_QUIT,
};

enum expect_kind { EXP_MAIL, EXP_RCPT, EXP_DATA };

struct expect {
	enum expect_kind kind;
	size_t rcpt;
};

struct relay_session {
	struct relay_agent *agent;
	struct relay_dest *dest;
	struct relay_job *job;
	struct relay_resolve *resolve;
	struct relay_addr *addrs;
	size_t addr_count, addr_i;
	int fd;
	struct bufferevent *bev;
	SSL *ssl;
	bool tls_on;
	bool tls_skip;         /* "may": the handshake failed, this connection goes without */
	struct event *timer;
	enum phase phase;
	struct relay_reply reply;
	struct relay_caps caps;
	bool ready;            /* EHLO/HELO done: the destination works */
	char peer[RELAY_PEER_MAX + 1];
	char error[RELAY_REASON_MAX + 1];   /* last connection-level error */
	enum relay_result error_kind;
	/* the transaction */
	struct expect *expect;
	size_t exp_count, exp_next_send, exp_next_reply;
	bool pipelining;
	bool mail_ok;
	size_t accepted;
	bool data_ok;
	/* the content */
	uint64_t pos, end;
	struct mhdr_filter hf;
	bool hf_live;
	struct relay_body body;
	buf_t tmp, out;
	/* 8-bit content to a peer without 8BITMIME: the body goes
	 * quoted-printable, with these header changes (relay_qp.h). */
	bool qp;
	struct relay_qp qpst;
	struct qf_header_edit *qp_edits;
	size_t qp_count;
	struct relay_session *next_idle;
	unsigned messages;     /* jobs answered on this session */
	bool early;            /* the peer answered before the end of data */
	unsigned busy;         /* inside on_read: free later */
	bool dead;             /* freed while busy */
};

static void session_free(struct relay_session *s, bool counts_as_failure);
static void next_address(struct relay_session *s);
static void start_tx(struct relay_session *s);
static void send_next_command(struct relay_session *s);

/* ---- small helpers ------------------------------------------------------------ */

static void arm(struct relay_session *s, uint64_t secs)
{
	struct timeval tv = { (time_t)secs, 0 };

	evtimer_add(s->timer, &tv);
}

/* The DSN parameters of MAIL (RFC 3461 4.3, 4.4) for a peer that offers
 * DSN: RET and ENVID as the message came with them (ENVID as xtext). */
static void add_mail_dsn(struct evbuffer *out, const struct relay_msg *req)
{
	if (req->ret == RELAY_RET_FULL)
		evbuffer_add_printf(out, " RET=FULL");
	else if (req->ret == RELAY_RET_HDRS)
		evbuffer_add_printf(out, " RET=HDRS");
	if (req->envid[0] != '\0') {
		buf_t x = BUF_INIT;
		dsn_xtext_encode(req->envid, &x);
		evbuffer_add_printf(out, " ENVID=%s", buf_cstr(&x));
		buf_free(&x);
	}
}

/* NOTIFY and ORCPT of RCPT (RFC 3461 4.1, 4.2), as the recipient came
 * with them. An rfc822 ORCPT's address goes as xtext; another type (RFC
 * 6533's utf-8, with its own escapes) is left out, as a relay may do. */
static void add_rcpt_dsn(struct evbuffer *out, const struct relay_rcpt *rc)
{
	if (rc->notify != 0) {
		buf_t n = BUF_INIT;
		dsn_notify_format(rc->notify, &n);
		evbuffer_add_printf(out, " NOTIFY=%s", buf_cstr(&n));
		buf_free(&n);
	}
	const char *semi = strchr(rc->orcpt, ';');
	if (semi == NULL || semi - rc->orcpt != 6 || strncasecmp(rc->orcpt, "rfc822", 6) != 0 ||
	    semi[1] == '\0')
		return;
	buf_t x = BUF_INIT;
	dsn_xtext_encode(semi + 1, &x);
	evbuffer_add_printf(out, " ORCPT=%.*s;%s", (int)(semi - rc->orcpt), rc->orcpt,
			    buf_cstr(&x));
	buf_free(&x);
}

static void send_line(struct relay_session *s, const char *fmt, ...) PRINTF_LIKE(2, 3);
static void send_line(struct relay_session *s, const char *fmt, ...)
{
	struct evbuffer *out = bufferevent_get_output(s->bev);
	va_list ap;

	va_start(ap, fmt);
	evbuffer_add_vprintf(out, fmt, ap);
	va_end(ap);
	evbuffer_add(out, "\r\n", 2);
}

static const char *phase_name(enum phase p)
{
	switch (p) {
	case P_RESOLVE: return "looking up the next hop";
	case P_CONNECT: return "connecting";
	case P_GREETING: return "waiting for the greeting";
	case P_EHLO: return "EHLO";
	case P_HELO: return "HELO";
	case P_STARTTLS: return "STARTTLS";
	case P_HANDSHAKE: return "the TLS handshake";
	case P_TX: return "the envelope (MAIL, RCPT, DATA)";
	case P_BODY: return "sending the message body";
	case P_DOT: return "waiting for the reply to the end of data";
	case P_RSET: return "RSET";
	case P_IDLE: return "idle";
	case P_QUIT: return "QUIT";
	}
	return "?";
}

static bool is_ascii(const char *s)
{
	for (; *s != '\0'; s++)
		if ((unsigned char)*s >= 0x80)
			return false;
	return true;
}

static void set_error(struct relay_session *s, enum relay_result kind, const char *fmt, ...)
	PRINTF_LIKE(3, 4);
static void set_error(struct relay_session *s, enum relay_result kind, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(s->error, sizeof(s->error), fmt, ap);
	va_end(ap);
	s->error_kind = kind;
}

/* What a reply to MAIL, RCPT or the end of data means: 2xx taken, 5xx
 * refused, anything else (4xx, and a 3xx no such command may get)
 * a temporary failure; never "sent" for a reply that is not 2xx. */
static enum relay_result class_of(int code)
{
	return code / 100 == 2 ? RELAY_SENT : code / 100 == 5 ? RELAY_PERMFAIL : RELAY_TEMPFAIL;
}

/* The peer's reply as the reason of a failure res: its enhanced status
 * when that agrees, else X.5.0 (RFC 3463: a protocol status) of the
 * failure's class, so that a deferral never reads "2.0.0". Malloc'ed. */
static char *failure_reason(const struct relay_session *s, const char *during,
			    enum relay_result res)
{
	char *reason = relay_reply_reason(&s->reply, s->peer, during);
	char want = res == RELAY_PERMFAIL ? '5' : '4';

	if (reason[0] == want)
		return reason;
	const char *rest = strchr(reason, ' ');
	buf_t b = BUF_INIT;
	buf_printf(&b, "%c.5.0%s", want, rest != NULL ? rest : "");
	free(reason);
	return buf_steal(&b);
}

/* ---- the end of a job and of the session ---------------------------------- */

static void close_connection(struct relay_session *s)
{
	if (s->bev != NULL)
		bufferevent_free(s->bev);
	s->bev = NULL;
	if (s->ssl != NULL) {
		/* bufferevent_openssl_socket_new without BEV_OPT_CLOSE_ON_FREE
		 * leaves the SSL to us. */
		SSL_free(s->ssl);
		s->ssl = NULL;
	}
	if (s->fd >= 0)
		close(s->fd);
	s->fd = -1;
	s->tls_on = false;
	s->ready = false;
	evtimer_del(s->timer);
}

static void forget_qp(struct relay_session *s)
{
	if (s->qp_edits != NULL && s->job != NULL)
		relay_qp_edits_free(s->qp_edits, s->qp_count, s->job->msg.edit_count);
	s->qp_edits = NULL;
	s->qp_count = 0;
	s->qp = false;
}

static void finish_job(struct relay_session *s)
{
	struct relay_job *j = s->job;

	if (j == NULL)
		return;
	if (s->hf_live)
		mhdr_filter_free(&s->hf); /* it points into the job's edits */
	s->hf_live = false;
	forget_qp(s);
	s->job = NULL;
	s->messages++;
	snprintf(j->peer, sizeof(j->peer), "%s", s->peer);
	relay_job_done(j);
}

/* The session cannot go on: every recipient not settled gets the error. */
static void fail_session(struct relay_session *s)
{
	if (s->job != NULL)
		relay_job_set_rest(s->job, s->error_kind, s->error);
	finish_job(s);
	session_free(s, !s->ready);
}

static void remove_idle(struct relay_session *s)
{
	for (struct relay_session **p = &s->dest->idle; *p != NULL; p = &(*p)->next_idle)
		if (*p == s) {
			*p = s->next_idle;
			break;
		}
	s->next_idle = NULL;
}

static void session_free(struct relay_session *s, bool counts_as_failure)
{
	struct relay_agent *a = s->agent;
	struct relay_dest *d = s->dest;
	bool ready = s->ready;
	char error[RELAY_REASON_MAX + 1];

	snprintf(error, sizeof(error), "%s", s->error);
	if (s->peer[0] != '\0' && ready)
		log_info("relay: %s: closed after %u message%s%s", s->peer, s->messages,
			 s->messages == 1 ? "" : "s", s->tls_on ? " (TLS)" : "");
	if (s->phase == P_IDLE)
		remove_idle(s);
	finish_job(s);
	relay_resolve_cancel(&s->resolve);
	close_connection(s);
	event_free(s->timer);
	s->timer = NULL;
	relay_reply_free(&s->reply);
	if (s->hf_live)
		mhdr_filter_free(&s->hf);
	s->hf_live = false;
	buf_free(&s->tmp);
	buf_free(&s->out);
	free(s->expect);
	s->expect = NULL;
	free(s->addrs);
	s->addrs = NULL;
	s->dead = true;
	if (s->busy == 0)
		free(s);
	relay_session_ended(a, d, ready, counts_as_failure, error);
}

/* ---- the connection ----------------------------------------------------------- */

/* A failure before the session was ready: next address, or give up. */
static void connection_failed(struct relay_session *s)
{
	log_info("relay: %s: %s", s->peer[0] != '\0' ? s->peer : s->dest->key, s->error);
	close_connection(s);
	if (s->job == NULL) {
		session_free(s, true);
		return;
	}
	s->addr_i++;
	next_address(s);
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
	struct relay_session *s = arg;

	(void)fd;
	(void)what;
	if (s->phase == P_IDLE) {
		remove_idle(s);
		s->phase = P_QUIT;
		send_line(s, "QUIT");
		arm(s, QUIT_WAIT_SECS);
		return;
	}
	if (s->phase == P_QUIT) {
		session_free(s, false);
		return;
	}
	set_error(s, RELAY_TEMPFAIL, "4.4.2 conversation with %s timed out while %s", s->peer,
		  phase_name(s->phase));
	if (!s->ready) {
		connection_failed(s);
		return;
	}
	log_info("relay: %s", s->error);
	fail_session(s);
}

static void handle_reply(struct relay_session *s);
static void fill_body(struct relay_session *s);

static void on_read(struct bufferevent *bev, void *arg)
{
	struct relay_session *s = arg;
	struct evbuffer *in = bufferevent_get_input(bev);

	s->busy++;
	while (!s->dead && s->bev == bev) {
		size_t eol_len = 0;
		struct evbuffer_ptr p = evbuffer_search_eol(in, NULL, &eol_len, EVBUFFER_EOL_CRLF);
		if (p.pos < 0) {
			if (evbuffer_get_length(in) > RELAY_REPLY_LINE_MAX + 2)
				goto bad;
			goto out;
		}
		size_t len = (size_t)p.pos;
		if (len > RELAY_REPLY_LINE_MAX)
			goto bad;
		char line[RELAY_REPLY_LINE_MAX + 1];
		evbuffer_remove(in, line, len);
		evbuffer_drain(in, eol_len);
		line[len] = '\0';
		if (s->phase == P_IDLE || s->phase == P_BODY || s->phase == P_CONNECT ||
		    s->phase == P_HANDSHAKE) {
			if (s->phase == P_BODY) {
				/* The peer answers before the end of data (a
				 * refusal): take it, then end the connection, whose
				 * data phase we never finished. */
				s->phase = P_DOT;
				s->early = true;
			} else
				goto unexpected;
		}
		const char *why = NULL;
		enum relay_reply_state st = relay_reply_feed(&s->reply, line, len, &why);
		if (st == RELAY_REPLY_BAD) {
			set_error(s, RELAY_TEMPFAIL, "4.4.2 protocol error from %s: %s", s->peer,
				  why);
			goto fail;
		}
		if (st == RELAY_REPLY_DONE) {
			handle_reply(s);
			if (s->dead || s->bev != bev)
				break;
			relay_reply_reset(&s->reply);
			if (s->phase == P_TX && !s->pipelining && evbuffer_get_length(in) > 0) {
				/* One command at a time, and the next one has not
				 * gone out yet: what is already there answers nothing
				 * we asked, and would be read as the next reply. */
				set_error(s, RELAY_TEMPFAIL, "4.4.2 protocol error from %s: a reply "
					  "ahead of its command (no PIPELINING)", s->peer);
				goto fail;
			}
		}
	}
	goto out;
unexpected:
	set_error(s, RELAY_TEMPFAIL, "4.4.2 protocol error from %s: unexpected text while %s",
		  s->peer, phase_name(s->phase));
	goto fail;
bad:
	set_error(s, RELAY_TEMPFAIL, "4.4.2 protocol error from %s: reply line too long",
		  s->peer);
fail:
	if (!s->ready)
		connection_failed(s);
	else
		fail_session(s);
out:
	if (--s->busy == 0 && s->dead)
		free(s);
}

static void tls_ready(struct relay_session *s);

static void on_event(struct bufferevent *bev, short what, void *arg)
{
	struct relay_session *s = arg;

	(void)bev;
	if (what & BEV_EVENT_CONNECTED) {
		if (s->phase == P_CONNECT) {
			s->phase = P_GREETING;
			arm(s, s->agent->cfg->relay_command_timeout);
			bufferevent_enable(s->bev, EV_READ | EV_WRITE);
			return;
		}
		if (s->phase == P_HANDSHAKE) {
			tls_ready(s);
			return;
		}
		return;
	}
	if (s->phase == P_QUIT || s->phase == P_IDLE) {
		session_free(s, false);
		return;
	}
	if (s->phase == P_CONNECT) {
		set_error(s, RELAY_TEMPFAIL, "4.4.1 connect to %s: %s", s->peer,
			  evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
		connection_failed(s);
		return;
	}
	if (s->phase == P_HANDSHAKE) {
		unsigned long e = bufferevent_get_openssl_error(s->bev);
		char text[256] = "handshake failed";
		if (e != 0)
			ERR_error_string_n(e, text, sizeof(text));
		ERR_clear_error();
		if (s->dest->tls == RELAY_TLS_MAY) {
			/* Opportunistic: this address again, without TLS. */
			log_info("relay: %s: TLS handshake failed (%s); trying again without TLS",
				 s->peer, text);
			close_connection(s);
			s->tls_skip = true;
			next_address(s);
			return;
		}
		set_error(s, RELAY_TEMPFAIL, "4.7.5 TLS handshake with %s failed: %s", s->peer,
			  text);
		connection_failed(s);
		return;
	}
	const char *what_text = (what & BEV_EVENT_EOF) ? "lost connection" : "connection error";
	if (s->phase == P_BODY || s->phase == P_DOT)
		set_error(s, RELAY_TEMPFAIL, "4.4.2 %s with %s while %s", what_text, s->peer,
			  phase_name(s->phase));
	else
		set_error(s, RELAY_TEMPFAIL, "4.4.2 %s with %s while %s", what_text, s->peer,
			  phase_name(s->phase));
	if (!s->ready)
		connection_failed(s);
	else {
		log_info("relay: %s", s->error);
		fail_session(s);
	}
}

static void on_write(struct bufferevent *bev, void *arg)
{
	struct relay_session *s = arg;

	(void)bev;
	if (s->phase == P_BODY)
		fill_body(s);
}

static void set_callbacks(struct relay_session *s)
{
	bufferevent_setcb(s->bev, on_read, on_write, on_event, s);
}

static void connect_to(struct relay_session *s, const struct relay_addr *addr)
{
	char peer[RELAY_HOST_MAX + 100];

	snprintf(peer, sizeof(peer), "%s[%s]:%u",
		 strcmp(addr->host, addr->text) == 0 ? "" : addr->host, addr->text,
		 (unsigned)s->dest->hop.port);
	relay_set_text(s->peer, RELAY_PEER_MAX, peer);
	s->fd = socket(addr->sa.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (s->fd < 0) {
		set_error(s, RELAY_TEMPFAIL, "4.4.1 socket: %s", strerror(errno));
		connection_failed(s);
		return;
	}
	int one = 1;
	setsockopt(s->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	s->bev = bufferevent_socket_new(s->agent->base, s->fd, 0);
	set_callbacks(s);
	s->phase = P_CONNECT;
	relay_reply_reset(&s->reply);
	arm(s, s->agent->cfg->relay_connect_timeout);
	if (bufferevent_socket_connect(s->bev, (const struct sockaddr *)&addr->sa,
				       (int)addr->salen) < 0) {
		set_error(s, RELAY_TEMPFAIL, "4.4.1 connect to %s: %s", s->peer, strerror(errno));
		connection_failed(s);
	}
}

static void next_address(struct relay_session *s)
{
	if (s->addr_i >= s->addr_count) {
		/* Every address failed: the last error decides. */
		fail_session(s);
		return;
	}
	connect_to(s, &s->addrs[s->addr_i]);
}

static void on_resolved(void *arg, enum relay_resolve_status st, const char *reason,
			const struct relay_addr *addrs, size_t count)
{
	struct relay_session *s = arg;

	s->resolve = NULL;
	if (st != RESOLVE_OK) {
		set_error(s, st == RESOLVE_PERM ? RELAY_PERMFAIL : RELAY_TEMPFAIL, "%s", reason);
		log_info("relay: %s: %s", s->dest->key, reason);
		/* A permanent answer (null MX, no such domain) says nothing
		 * against the destination's health. */
		if (s->job != NULL)
			relay_job_set_rest(s->job, s->error_kind, s->error);
		finish_job(s);
		session_free(s, st != RESOLVE_PERM);
		return;
	}
	s->addrs = xcalloc(count, sizeof(*s->addrs));
	memcpy(s->addrs, addrs, count * sizeof(*addrs));
	s->addr_count = count;
	s->addr_i = 0;
	next_address(s);
}

/* ---- greeting, EHLO, STARTTLS -------------------------------------------------- */

static const char *helo_name(const struct relay_session *s)
{
	const char *h = s->agent->cfg->hostname;

	return h != NULL && h[0] != '\0' ? h : "localhost";
}

static void reply_failure(struct relay_session *s, const char *during)
{
	enum relay_result res = class_of(s->reply.code) == RELAY_PERMFAIL ? RELAY_PERMFAIL
									   : RELAY_TEMPFAIL;
	char *reason = failure_reason(s, during, res);

	set_error(s, res, "%s", reason);
	free(reason);
}

static void start_tls(struct relay_session *s)
{
	SSL_CTX *ctx = s->dest->tls == RELAY_TLS_VERIFY ? s->agent->tls_ctx_verify
							: s->agent->tls_ctx;
	const struct relay_addr *addr = &s->addrs[s->addr_i];

	bufferevent_free(s->bev);
	s->bev = NULL;
	s->ssl = ctx != NULL ? SSL_new(ctx) : NULL;
	if (s->ssl == NULL) {
		set_error(s, RELAY_TEMPFAIL, "4.7.5 cannot start TLS with %s%s", s->peer,
			  ctx == NULL ? ": no usable CA store (tls_ca_file)" : "");
		connection_failed(s);
		return;
	}
	if (strcmp(addr->host, addr->text) != 0) {
		SSL_set_tlsext_host_name(s->ssl, addr->host);
		if (s->dest->tls == RELAY_TLS_VERIFY)
			SSL_set1_host(s->ssl, addr->host);
	} else if (s->dest->tls == RELAY_TLS_VERIFY) {
		X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(s->ssl), addr->text);
	}
	s->bev = bufferevent_openssl_socket_new(s->agent->base, s->fd, s->ssl,
						BUFFEREVENT_SSL_CONNECTING, 0);
	if (s->bev == NULL) {
		set_error(s, RELAY_TEMPFAIL, "4.7.5 cannot start TLS with %s", s->peer);
		connection_failed(s);
		return;
	}
	bufferevent_openssl_set_allow_dirty_shutdown(s->bev, 1);
	set_callbacks(s);
	bufferevent_enable(s->bev, EV_READ | EV_WRITE);
	s->phase = P_HANDSHAKE;
	arm(s, s->agent->cfg->relay_command_timeout);
}

static void tls_ready(struct relay_session *s)
{
	long vr = SSL_get_verify_result(s->ssl);
	bool verified = vr == X509_V_OK && SSL_get0_peer_certificate(s->ssl) != NULL;

	s->tls_on = true;
	log_info("relay: %s: TLS established: version=%s cipher=%s verify=%s%s%s", s->peer,
		 SSL_get_version(s->ssl), SSL_get_cipher_name(s->ssl),
		 verified ? "ok" : "failed", verified ? "" : " ",
		 verified ? "" : X509_verify_cert_error_string(vr));
	if (s->dest->tls == RELAY_TLS_VERIFY && !verified) {
		set_error(s, RELAY_TEMPFAIL, "4.7.5 certificate of %s does not verify: %s",
			  s->peer, X509_verify_cert_error_string(vr));
		connection_failed(s);
		return;
	}
	/* RFC 3207 section 4.2: forget what was learned before TLS. */
	memset(&s->caps, 0, sizeof(s->caps));
	s->phase = P_EHLO;
	relay_reply_reset(&s->reply);
	send_line(s, "EHLO %s", helo_name(s));
	arm(s, s->agent->cfg->relay_command_timeout);
}

/* EHLO or HELO succeeded. */
static void session_ready(struct relay_session *s)
{
	if (!s->tls_on && !s->tls_skip && s->dest->tls != RELAY_TLS_NONE &&
	    (s->caps.flags & RELAY_CAP_STARTTLS) != 0) {
		s->phase = P_STARTTLS;
		send_line(s, "STARTTLS");
		arm(s, s->agent->cfg->relay_command_timeout);
		return;
	}
	if (!s->tls_on && s->dest->tls >= RELAY_TLS_ENCRYPT) {
		set_error(s, RELAY_TEMPFAIL, "4.7.4 TLS is required for %s, but %s does not "
			  "offer STARTTLS", s->dest->key, s->peer);
		connection_failed(s);
		return;
	}
	s->ready = true;
	s->pipelining = (s->caps.flags & RELAY_CAP_PIPELINING) != 0;
	start_tx(s);
}

static void handle_greeting_phase(struct relay_session *s)
{
	switch (s->phase) {
	case P_GREETING:
		if (s->reply.code != 220) {
			reply_failure(s, "the greeting");
			connection_failed(s);
			return;
		}
		s->phase = P_EHLO;
		send_line(s, "EHLO %s", helo_name(s));
		break;
	case P_EHLO:
		if (s->reply.code == 250) {
			relay_caps_parse(&s->reply, &s->caps);
			session_ready(s);
			return;
		}
		if (s->reply.code >= 500 && !s->tls_on) {
			s->phase = P_HELO;
			send_line(s, "HELO %s", helo_name(s));
			break;
		}
		reply_failure(s, "EHLO");
		connection_failed(s);
		return;
	case P_HELO:
		if (s->reply.code != 250) {
			reply_failure(s, "HELO");
			connection_failed(s);
			return;
		}
		memset(&s->caps, 0, sizeof(s->caps));
		session_ready(s);
		return;
	case P_STARTTLS:
		if (s->reply.code == 220) {
			start_tls(s);
			return;
		}
		if (s->dest->tls >= RELAY_TLS_ENCRYPT) {
			reply_failure(s, "STARTTLS");
			connection_failed(s);
			return;
		}
		s->tls_skip = true;
		session_ready(s);
		return;
	default:
		break;
	}
	arm(s, s->agent->cfg->relay_command_timeout);
}

/* ---- the transaction ----------------------------------------------------------- */

/* Does the message hold 8-bit bytes? Read from the file (only asked when
 * the peer lacks 8BITMIME). -1 if the file cannot be read. */
static int content_is_8bit(struct relay_job *j)
{
	char *chunk = xmalloc(BODY_CHUNK);
	uint64_t pos = 0;
	int rc = 0;

	for (size_t i = 0; i < j->msg.edit_count && rc == 0; i++) {
		const struct qf_header_edit *e = &j->msg.edits[i];
		const char *added = e->type == QF_REC_CHANGE_HEADER ? e->field
				    : e->type == QF_REC_DEL_HEADER  ? NULL
								    : e->text;
		if (added != NULL && !is_ascii(added))
			rc = 1;
	}
	while (rc == 0) {
		long n = qf_read_content(j->fd, &j->msg, pos, chunk, BODY_CHUNK);
		if (n <= 0) {
			rc = n < 0 ? -1 : 0;
			break;
		}
		if (relay_body_is_8bit(chunk, (size_t)n))
			rc = 1;
		pos += (uint64_t)n;
	}
	free(chunk);
	return rc;
}

/* The Received: fields of the message (its header section as queued,
 * read up to RELAY_HOPS_SCAN octets, and the ones our edits add); -1 if
 * the file cannot be read. */
static int count_hops(struct relay_job *j)
{
	static const char name[] = "received:";
	const size_t name_len = sizeof(name) - 1, no_match = (size_t)-1;
	const size_t chunk_size = 8192; /* most header sections fit: one read */
	char *chunk = xmalloc(chunk_size);
	uint64_t pos = 0;
	uint64_t end = qf_message_size(&j->msg) < RELAY_HOPS_SCAN ? qf_message_size(&j->msg) : RELAY_HOPS_SCAN;
	int hops = 0;
	size_t matched = 0; /* octets of name at the start of this line so far */
	bool line_start = true, done = false;

	for (size_t i = 0; i < j->msg.edit_count; i++) {
		const struct qf_header_edit *e = &j->msg.edits[i];
		const char *added = e->type == QF_REC_CHANGE_HEADER ? e->field
				    : e->type == QF_REC_DEL_HEADER  ? NULL
								    : e->text;
		if (added != NULL && strncasecmp(added, name, name_len) == 0)
			hops++;
	}
	while (!done && pos < end) {
		size_t want = end - pos < chunk_size ? (size_t)(end - pos) : chunk_size;
		long n = qf_read_content(j->fd, &j->msg, pos, chunk, want);
		if (n <= 0) {
			hops = -1;
			break;
		}
		for (long k = 0; k < n && !done; k++) {
			char c = chunk[k];
			if (c == '\n') {
				done = line_start; /* the empty line ends the header section */
				line_start = true;
				matched = 0;
				continue;
			}
			line_start = false;
			if (matched == no_match)
				continue;
			if (matched < name_len && (c == name[matched] ||
						   (c >= 'A' && c <= 'Z' && c + 32 == name[matched]))) {
				if (++matched == name_len) {
					hops++;
					matched = no_match;
				}
			} else {
				matched = no_match;
			}
		}
		pos += (uint64_t)n;
	}
	free(chunk);
	return hops;
}

/* Checks that fail the whole job before MAIL; true if it may go. */
static bool precheck(struct relay_session *s, struct relay_job *j, bool *utf8_r, bool *eight_r)
{
	char reason[RELAY_REASON_MAX + 1];
	bool utf8 = !is_ascii(j->msg.sender);

	for (size_t i = 0; i < j->req->rcpt_count; i++)
		if (!is_ascii(j->req->rcpts[i].address))
			utf8 = true;
	*utf8_r = utf8;
	*eight_r = j->msg.body_8bitmime;
	int hops = count_hops(j);
	if (hops < 0) {
		relay_job_set_rest(j, RELAY_TEMPFAIL, "4.3.0 cannot read the queue file");
		return false;
	}
	if (hops > RELAY_HOPS_MAX) {
		/* A loop the routing cannot see (gateways relaying to each
		 * other): RFC 5321 section 6.3. */
		snprintf(reason, sizeof(reason), "5.4.6 mail loop: too many hops (%d Received: "
			 "header fields, more than %d)", hops, RELAY_HOPS_MAX);
		relay_job_set_rest(j, RELAY_PERMFAIL, reason);
		return false;
	}
	if (s->caps.size_limit > 0 && qf_message_size(&j->msg) > s->caps.size_limit) {
		snprintf(reason, sizeof(reason), "5.3.4 message of %llu bytes exceeds the size "
			 "limit of %llu bytes of %s", (unsigned long long)qf_message_size(&j->msg),
			 (unsigned long long)s->caps.size_limit, s->peer);
		relay_job_set_rest(j, RELAY_PERMFAIL, reason);
		return false;
	}
	if (utf8 && (s->caps.flags & RELAY_CAP_SMTPUTF8) == 0) {
		snprintf(reason, sizeof(reason), "5.6.7 an address needs SMTPUTF8, which %s does "
			 "not offer", s->peer);
		relay_job_set_rest(j, RELAY_PERMFAIL, reason);
		return false;
	}
	if ((s->caps.flags & RELAY_CAP_8BITMIME) == 0) {
		int eight = content_is_8bit(j);
		if (eight < 0) {
			relay_job_set_rest(j, RELAY_TEMPFAIL, "4.3.0 cannot read the queue file");
			return false;
		}
		*eight_r = false;
		if (eight == 0)
			return true;
		const char *why = NULL;
		switch (relay_qp_plan(j->fd, &j->msg, &why, &s->qp_edits, &s->qp_count)) {
		case RELAY_QP_CONVERT:
			s->qp = true;
			log_info("%s: relay: %s does not offer 8BITMIME: the body is sent "
				 "quoted-printable", j->req->id, s->peer);
			return true;
		case RELAY_QP_CANNOT:
			snprintf(reason, sizeof(reason), "5.6.3 the message has 8-bit content, %s "
				 "does not offer 8BITMIME (RFC 6152), and it cannot be converted: %s",
				 s->peer, why);
			relay_job_set_rest(j, RELAY_PERMFAIL, reason);
			return false;
		default:
			relay_job_set_rest(j, RELAY_TEMPFAIL, "4.3.0 cannot read the queue file");
			return false;
		}
	}
	return true;
}

/* The job is over (every recipient settled or to be): answer and go on
 * with the next one of the destination, or idle. */
static void job_over(struct relay_session *s, bool need_rset)
{
	finish_job(s);
	if (s->bev == NULL)
		return;
	if (need_rset) {
		s->phase = P_RSET;
		send_line(s, "RSET");
		arm(s, s->agent->cfg->relay_command_timeout);
		return;
	}
	struct relay_job *next = relay_dest_next_job(s->dest);
	if (next != NULL) {
		s->job = next;
		start_tx(s);
		return;
	}
	/* Idle: the destination may have more mail in a moment. */
	if (s->agent->cfg->relay_idle_timeout == 0) {
		s->phase = P_QUIT;
		send_line(s, "QUIT");
		arm(s, QUIT_WAIT_SECS);
		return;
	}
	s->phase = P_IDLE;
	s->next_idle = s->dest->idle;
	s->dest->idle = s;
	arm(s, s->agent->cfg->relay_idle_timeout);
}

/* job_over after the last reply of a job (called from on_read only: it
 * may free the session). */
static void reply_job_over(struct relay_session *s, bool need_rset)
{
	if (evbuffer_get_length(bufferevent_get_input(s->bev)) > 0) {
		/* The peer said more than we asked: its next lines would be
		 * read as the replies to our next commands, each against the
		 * wrong one. This connection is done. */
		log_info("relay: %s: text after the last reply; closing", s->peer);
		finish_job(s);
		session_free(s, false);
		return;
	}
	job_over(s, need_rset);
}

bool relay_session_close_idle(struct relay_dest *d)
{
	struct relay_session *s = d->idle;

	if (s == NULL)
		return false;
	remove_idle(s);
	s->phase = P_QUIT;
	send_line(s, "QUIT");
	arm(s, QUIT_WAIT_SECS);
	return true;
}

bool relay_session_reuse(struct relay_dest *d, struct relay_job *j)
{
	struct relay_session *s = d->idle;

	if (s == NULL)
		return false;
	remove_idle(s);
	evtimer_del(s->timer);
	s->job = j;
	start_tx(s);
	return true;
}

static void start_tx(struct relay_session *s)
{
	struct relay_job *j = s->job;
	bool utf8 = false, eight = false;

	forget_qp(s);
	if (!precheck(s, j, &utf8, &eight)) {
		job_over(s, false);
		return;
	}
	memset(j->accepted, 0, j->req->rcpt_count * sizeof(*j->accepted));
	s->mail_ok = false;
	s->accepted = 0;
	s->data_ok = false;
	free(s->expect);
	s->exp_count = j->req->rcpt_count + 2;
	s->expect = xcalloc(s->exp_count, sizeof(*s->expect));
	s->expect[0].kind = EXP_MAIL;
	for (size_t i = 0; i < j->req->rcpt_count; i++) {
		s->expect[i + 1].kind = EXP_RCPT;
		s->expect[i + 1].rcpt = i;
	}
	s->expect[s->exp_count - 1].kind = EXP_DATA;
	s->exp_next_send = 0;
	s->exp_next_reply = 0;
	s->phase = P_TX;
	/* MAIL FROM with the parameters the peer understands. */
	struct evbuffer *out = bufferevent_get_output(s->bev);
	evbuffer_add_printf(out, "MAIL FROM:<%s>", j->msg.sender);
	if ((s->caps.flags & RELAY_CAP_SIZE) != 0)
		evbuffer_add_printf(out, " SIZE=%llu", (unsigned long long)qf_message_size(&j->msg));
	if (eight && (s->caps.flags & RELAY_CAP_8BITMIME) != 0)
		evbuffer_add_printf(out, " BODY=8BITMIME");
	if (utf8)
		evbuffer_add_printf(out, " SMTPUTF8");
	if ((s->caps.flags & RELAY_CAP_DSN) != 0)
		add_mail_dsn(out, j->req);
	evbuffer_add(out, "\r\n", 2);
	s->exp_next_send = 1;
	if (s->pipelining)
		while (s->exp_next_send < s->exp_count)
			send_next_command(s);
	arm(s, s->agent->cfg->relay_command_timeout);
}

static void send_next_command(struct relay_session *s)
{
	const struct expect *e = &s->expect[s->exp_next_send++];

	if (e->kind == EXP_RCPT) {
		const struct relay_rcpt *rc = &s->job->req->rcpts[e->rcpt];
		struct evbuffer *out = bufferevent_get_output(s->bev);
		evbuffer_add_printf(out, "RCPT TO:<%s>", rc->address);
		if ((s->caps.flags & RELAY_CAP_DSN) != 0)
			add_rcpt_dsn(out, rc);
		evbuffer_add(out, "\r\n", 2);
	} else if (e->kind == EXP_DATA)
		send_line(s, "DATA");
}

static void start_body(struct relay_session *s)
{
	struct relay_job *j = s->job;

	s->phase = P_BODY;
	s->pos = 0;
	s->end = qf_message_size(&j->msg);
	if (s->hf_live)
		mhdr_filter_free(&s->hf);
	if (s->qp)
		mhdr_filter_init(&s->hf, s->qp_edits, s->qp_count);
	else
		mhdr_filter_init(&s->hf, j->msg.edits, j->msg.edit_count);
	s->hf_live = true;
	char *err = NULL;
	if (mhdr_filter_prepare(&s->hf, j->fd, &j->msg, &err) < 0) {
		set_error(s, RELAY_TEMPFAIL, "4.3.0 cannot read the queue file: %s", err);
		free(err);
		/* Closing before the end of data: the peer discards it. */
		fail_session(s);
		return;
	}
	relay_qp_init(&s->qpst);
	relay_body_init(&s->body);
	bufferevent_setwatermark(s->bev, EV_WRITE, BODY_LOW_WATER, 0);
	arm(s, s->agent->cfg->relay_data_timeout);
	fill_body(s);
}

static void fill_body(struct relay_session *s)
{
	struct evbuffer *out = bufferevent_get_output(s->bev);
	char *chunk = NULL;

	while (s->phase == P_BODY && evbuffer_get_length(out) < BODY_HIGH_WATER) {
		buf_reset(&s->tmp);
		buf_reset(&s->out);
		if (s->pos >= s->end) {
			if (!s->hf.in_body)
				mhdr_filter_end(&s->hf, &s->tmp);
			if (s->qp)
				relay_qp_end(&s->qpst, &s->tmp);
			relay_body_feed(&s->body, s->tmp.data != NULL ? s->tmp.data : "", s->tmp.len,
					&s->out);
			relay_body_end(&s->body, &s->out);
			evbuffer_add(out, s->out.data, s->out.len);
			s->phase = P_DOT;
			bufferevent_setwatermark(s->bev, EV_WRITE, 0, 0);
			if (s->body.folded)
				log_info("%s: relay: %s: lines longer than %d octets were folded",
					 s->job->req->id, s->peer, RELAY_LINE_MAX);
			break;
		}
		if (chunk == NULL)
			chunk = xmalloc(BODY_CHUNK);
		size_t want = s->end - s->pos < BODY_CHUNK ? (size_t)(s->end - s->pos) : BODY_CHUNK;
		long n = qf_read_content(s->job->fd, &s->job->msg, s->pos, chunk, want);
		if (n <= 0) {
			set_error(s, RELAY_TEMPFAIL, "4.3.0 cannot read the queue file: %s",
				  n < 0 ? strerror(errno) : "unexpected end");
			free(chunk);
			/* Closing before the end of data: the peer discards it. */
			fail_session(s);
			return;
		}
		s->pos += (uint64_t)n;
		size_t used = 0;
		if (!s->hf.in_body)
			used = mhdr_filter_feed(&s->hf, chunk, (size_t)n, &s->tmp);
		if (used < (size_t)n && s->qp)
			relay_qp_feed(&s->qpst, chunk + used, (size_t)n - used, &s->tmp);
		else if (used < (size_t)n)
			buf_append(&s->tmp, chunk + used, (size_t)n - used);
		relay_body_feed(&s->body, s->tmp.data, s->tmp.len, &s->out);
		evbuffer_add(out, s->out.data, s->out.len);
	}
	free(chunk);
	arm(s, s->agent->cfg->relay_data_timeout);
}

/* A reply in the transaction, in the order of the commands. */
static void handle_tx_reply(struct relay_session *s)
{
	struct relay_job *j = s->job;
	const struct expect *e = &s->expect[s->exp_next_reply++];
	char *reason;

	switch (e->kind) {
	case EXP_MAIL:
		if (s->reply.code / 100 == 2) {
			s->mail_ok = true;
		} else {
			reason = failure_reason(s, "MAIL FROM", class_of(s->reply.code));
			relay_job_set_rest(j, class_of(s->reply.code), reason);
			free(reason);
			if (!s->pipelining) {
				reply_job_over(s, true);
				return;
			}
		}
		break;
	case EXP_RCPT:
		if (!s->mail_ok)
			break;
		if (s->reply.code / 100 == 2) {
			j->accepted[e->rcpt] = true;
			s->accepted++;
		} else {
			reason = failure_reason(s, "RCPT TO", class_of(s->reply.code));
			relay_job_set(j, e->rcpt, class_of(s->reply.code), reason);
			free(reason);
		}
		if (!s->pipelining && s->exp_next_send == s->exp_next_reply &&
		    s->exp_next_reply == s->exp_count - 1 && s->accepted == 0) {
			reply_job_over(s, true); /* nobody accepted: no DATA */
			return;
		}
		break;
	case EXP_DATA:
		if (s->reply.code == 354 && s->accepted > 0) {
			start_body(s);
			return;
		}
		if (s->reply.code == 354) {
			/* DATA accepted with no recipient: nothing sensible to
			 * send; end the connection. */
			set_error(s, RELAY_TEMPFAIL, "4.4.2 %s accepted DATA without recipients",
				  s->peer);
			fail_session(s);
			return;
		}
		if (s->mail_ok && s->accepted > 0) {
			/* Only 354 lets the content go: a 2xx here took nothing. */
			enum relay_result res = s->reply.code / 100 == 5 ? RELAY_PERMFAIL
									 : RELAY_TEMPFAIL;
			reason = failure_reason(s, "DATA", res);
			relay_job_set_rest(j, res, reason);
			free(reason);
		}
		reply_job_over(s, true);
		return;
	}
	if (!s->pipelining && s->exp_next_send < s->exp_count)
		send_next_command(s);
	arm(s, s->agent->cfg->relay_command_timeout);
}

static void handle_dot_reply(struct relay_session *s)
{
	struct relay_job *j = s->job;
	enum relay_result res = class_of(s->reply.code);
	char *reason = failure_reason(s, "end of data", res == RELAY_SENT ? RELAY_TEMPFAIL : res);

	if (res == RELAY_SENT) {
		/* "250 2.0.0 Ok: queued as X": the reason of a delivery. */
		free(reason);
		reason = xmalloc(RELAY_REASON_MAX + 1);
		snprintf(reason, RELAY_REASON_MAX + 1, "%s", buf_cstr(&s->reply.text));
	}
	if (s->early && res == RELAY_SENT) {
		/* 2xx before we sent the end of data: not a delivery we can
		 * trust. */
		free(reason);
		reason = xstrdup("4.4.2 peer answered 2xx before the end of data");
		res = RELAY_TEMPFAIL;
	}
	if (res == RELAY_SENT && (s->caps.flags & RELAY_CAP_DSN) == 0)
		res = RELAY_SENT_NO_DSN; /* the DSN requests stop here */
	for (size_t i = 0; i < j->req->rcpt_count; i++)
		if (j->accepted[i])
			relay_job_set(j, i, res, reason);
	free(reason);
	if (s->early) {
		finish_job(s);
		session_free(s, false);
		return;
	}
	reply_job_over(s, false);
}

static void handle_reply(struct relay_session *s)
{
	switch (s->phase) {
	case P_GREETING:
	case P_EHLO:
	case P_HELO:
	case P_STARTTLS:
		handle_greeting_phase(s);
		return;
	case P_TX:
		handle_tx_reply(s);
		return;
	case P_DOT:
		handle_dot_reply(s);
		return;
	case P_RSET:
		if (s->reply.code / 100 != 2) {
			set_error(s, RELAY_TEMPFAIL, "4.4.2 RSET refused by %s", s->peer);
			session_free(s, false);
			return;
		}
		reply_job_over(s, false);
		return;
	case P_QUIT:
		session_free(s, false);
		return;
	default:
		return;
	}
}

/* ---- start -------------------------------------------------------------------- */

void relay_session_start(struct relay_agent *a, struct relay_dest *d, struct relay_job *j)
{
	struct relay_session *s = xcalloc(1, sizeof(*s));

	s->agent = a;
	s->dest = d;
	s->job = j;
	s->fd = -1;
	s->phase = P_RESOLVE;
	relay_reply_init(&s->reply);
	s->timer = evtimer_new(a->base, on_timer, s);
	snprintf(s->error, sizeof(s->error), "4.4.1 no address for %s", d->key);
	s->error_kind = RELAY_TEMPFAIL;
	s->resolve = relay_resolve_start(a, &d->hop, on_resolved, s);
}

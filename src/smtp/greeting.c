/*
 * greeting.c - the start of an SMTP session, before and up to the 220
 * banner (RFC 5321 section 4.3.1: the client waits for the greeting):
 *
 *   1. admission across workers (limits.h): the anvil counts the session
 *      and answers with the open sessions in total and of the client's
 *      network and the client's connection rate and block; beyond a
 *      limit, 421 and the end;
 *   2. the connect checks (POLICY_CONNECT), which may wait (DNS); a
 *      refusal they mark at_rcpt (a DNS blocklist) is given at every RCPT
 *      instead, and the greeting goes on;
 *   3. greet_pause: the banner waits that long more;
 *   4. the banner, unless the client has talked: a client that sends
 *      anything before the banner (during any of the steps above, or with
 *      bytes already waiting when the banner is due, greet_pause or not)
 *      is an early talker: with early_talker_action = reject it gets
 *      554 5.5.1 and the session ends at once (what it sent is never run
 *      as commands); with log, one log line, and its commands are
 *      answered after the banner.
 *
 * Untrusted input: whatever the client sends before the banner (only its
 * length and a printable excerpt are used, for the log). Privilege:
 * unprivileged smtp worker, on its loop: every wait is an event.
 */
#include "session_int.h"

#include <errno.h>
#include <event2/buffer.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "../lib/log.h"
#include "../lib/xalloc.h"

#define EXCERPT_MAX 40

/* Bytes the client has sent that are waiting: read by libevent already,
 * or still in the kernel. */
static size_t waiting_input(struct smtp_session *s)
{
	size_t n = session_input_pending(s);
	char c;
	/* Under implicit TLS the kernel holds TLS records, not commands:
	 * only what the TLS layer decrypted counts. */
	if (n == 0 && s->fd >= 0 && s->ssl == NULL &&
	    recv(s->fd, &c, 1, MSG_PEEK | MSG_DONTWAIT) == 1)
		n = 1;
	return n;
}

/* A printable excerpt of what the client sent early, for the log. */
static void excerpt(struct smtp_session *s, char *out, size_t outlen)
{
	unsigned char raw[EXCERPT_MAX];
	size_t n = 0, o = 0;
	if (s->bev != NULL)
		n = (size_t)evbuffer_copyout(bufferevent_get_input(s->bev), raw, sizeof(raw));
	if (n == 0 && s->fd >= 0 && s->ssl == NULL) {
		ssize_t got = recv(s->fd, raw, sizeof(raw), MSG_PEEK | MSG_DONTWAIT);
		n = got > 0 ? (size_t)got : 0;
	}
	for (size_t i = 0; i < n && o + 5 < outlen; i++) {
		if (raw[i] >= 0x20 && raw[i] < 0x7f && raw[i] != '"' && raw[i] != '\\')
			out[o++] = (char)raw[i];
		else
			o += (size_t)snprintf(out + o, outlen - o, "\\x%02x", raw[i]);
	}
	out[o] = '\0';
}

/* The client talked before the banner: 554 and the end, or one log line
 * (early_talker_action). True if the session is refused. */
static bool early_talker(struct smtp_session *s)
{
	const struct config *cfg = s->srv->cfg;
	if (s->early_talker)
		return false; /* logged already, and allowed */
	char text[4 * EXCERPT_MAX + 8];
	size_t n = session_input_pending(s);
	excerpt(s, text, sizeof(text));
	s->early_talker = true;
	log_info("client=%s early talker: %s%zu byte%s before the greeting (greet_pause=%llus): "
		 "\"%s\"%s", s->peer_addr, n == 0 ? "at least " : "", n == 0 ? 1 : n,
		 n == 1 ? "" : "s", (unsigned long long)cfg->greet_pause, text,
		 cfg->early_talker_action == EARLY_TALKER_LOG ? " (allowed: early_talker_action = log)"
							     : "");
	if (cfg->early_talker_action == EARLY_TALKER_LOG)
		return false;
	log_info("client=%s reject: connect code=554 5.5.1 reason=early_talker", s->peer_addr);
	session_count_refusal("connect", 554, "early_talker", "early_talker", NULL);
	struct smtp_reply r = { 0 };
	reply_set(&r, 554, "5.5.1", "%s Error: you talked before the greeting; goodbye",
		  cfg->hostname);
	r.flags = REPLY_CLOSE;
	s->greeted = true;
	s->wait = WAIT_NONE;
	session_send(s, &r); /* the close cancels whatever was waiting */
	return true;
}

/* The banner is due: the early talkers' test, then 220. */
static enum step banner(struct smtp_session *s, struct smtp_reply *out)
{
	if (waiting_input(s) > 0 && early_talker(s))
		return STEP_WAIT; /* answered and closing */
	s->greeted = true;
	char *text = config_banner(s->srv->cfg);
	reply_set(out, 220, "", "%s", text);
	free(text);
	return STEP_REPLY;
}

/* The connect verdict: a refusal and the end, the greet pause, or the
 * banner. A refusal marked at_rcpt (a DNS blocklist listing) is kept and
 * given at every RCPT; the session goes on to its banner. */
static enum step connect_verdict(struct smtp_session *s, struct policy_reply *v,
				 struct smtp_reply *out)
{
	const struct config *cfg = s->srv->cfg;
	if (policy_refuses(v->verdict) && v->at_rcpt) {
		log_info("client=%s connect: refusing every RCPT: code=%d %s reason=%s check=%s%s%s",
			 s->peer_addr, v->code, v->status, v->reason, v->check,
			 v->detail[0] ? " " : "", v->detail);
		s->rcpt_refusal = xmalloc(sizeof(*s->rcpt_refusal));
		*s->rcpt_refusal = *v;
		memset(&s->rcpt_refusal->headers, 0, sizeof(s->rcpt_refusal->headers));
		memset(&s->rcpt_refusal->remove_headers, 0, sizeof(s->rcpt_refusal->remove_headers));
		memset(&s->rcpt_refusal->hits, 0, sizeof(s->rcpt_refusal->hits));
	} else if (policy_refuses(v->verdict)) {
		log_info("client=%s reject: connect code=%d %s reason=%s%s%s", s->peer_addr,
			 v->code, v->status, v->reason, v->detail[0] ? " " : "", v->detail);
		session_count_refusal("connect", v->code, v->check, v->reason, v->detail);
		s->greeted = true;
		reply_set(out, v->code, v->status, "%s", v->text);
		out->flags = REPLY_CLOSE;
		return STEP_REPLY;
	}
	if (cfg->greet_pause > 0) {
		s->wait = WAIT_GREET;
		s->wait_deadline = session_now_ms() + cfg->greet_pause * 1000u;
		session_arm_timer(s);
		return STEP_WAIT;
	}
	return banner(s, out);
}

static void connect_checks(struct smtp_session *s)
{
	struct policy_request req;
	struct smtp_reply out = { 0 };
	session_request(s, POLICY_CONNECT, &req);
	if (session_ask(s, &req, connect_verdict, &out) == STEP_REPLY)
		session_resume(s, &out);
}

static void admitted(void *arg, const struct limits_verdict *v)
{
	struct smtp_session *s = arg;
	s->admission = NULL;
	s->wait = WAIT_NONE;
	if (v->refuse) {
		log_info("client=%s reject: connect code=%d %s reason=%s", s->peer_addr, v->code,
			 v->status, v->reason);
		session_count_refusal("connect", v->code, "limits", v->reason, NULL);
		struct smtp_reply r = { 0 };
		reply_set(&r, v->code, v->status, "%s %s", s->srv->cfg->hostname, v->text);
		r.flags = REPLY_CLOSE;
		s->greeted = true;
		s->no_linger = true; /* its descriptor is wanted back at once */
		session_send(s, &r);
		return;
	}
	connect_checks(s);
}

void greeting_start(struct smtp_session *s)
{
	struct smtp_server *srv = s->srv;
	if (limits_admit(srv->limits, s->id, (const struct sockaddr *)&s->peer, admitted, s,
			 &s->admission)) {
		s->wait = WAIT_ADMIT;
		session_arm_timer(s);
		return;
	}
	connect_checks(s);
}

void greeting_input(struct smtp_session *s)
{
	if (session_input_pending(s) == 0)
		return;
	early_talker(s);
}

void greeting_pause_over(struct smtp_session *s)
{
	struct smtp_reply out = { 0 };
	s->wait = WAIT_NONE;
	if (banner(s, &out) == STEP_REPLY)
		session_resume(s, &out);
}

/*
 * milter_conv.c - one SMTP session's connection to one milter: a
 * non-blocking connect (unix or TCP), the option negotiation (version 6,
 * every action offered, the milter's protocol flags and macro lists
 * taken), packets in and out through a bufferevent on the worker's loop,
 * and one timer: connect_timeout while connecting and negotiating,
 * command_timeout or content_timeout while an answer is due. Any error (refused connection,
 * a malformed or unexpected packet, EOF, a timeout) closes the
 * connection for the rest of the session; the milter's default action
 * applies from then on.
 *
 * Untrusted input: the milter's packets (framed and decoded by
 * milter_proto.c, bounded by MILTER_PACKET_MAX). Unprivileged smtp worker.
 */
#include "milter_int.h"

#include <errno.h>
#include <event2/buffer.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "../lib/log.h"
#include "../lib/xalloc.h"

/* What postern offers: every action, and every protocol step it can
 * leave out or go without an answer for, and RCPT_REJ (the recipients
 * postern refuses are told too: milter_session_rejected_rcpt). */
#define OFFERED_ACTIONS MILTER_ACT_ALL
#define OFFERED_PROTOCOL MILTER_P_ALL
/* The longest macro list we keep from a milter. */
#define MACRO_LIST_MAX 1024

static void read_cb(struct bufferevent *bev, void *arg);
static void write_cb(struct bufferevent *bev, void *arg);
static void event_cb(struct bufferevent *bev, short what, void *arg);
static void timer_cb(evutil_socket_t fd, short what, void *arg);

const char *conv_log_key(const struct milter_conv *c)
{
	const struct policy_request *req = c->ms->req;
	if (req != NULL && req->queue_id[0] != '\0')
		return req->queue_id;
	return "-";
}

size_t conv_backlog(const struct milter_conv *c)
{
	return c->bev != NULL ? evbuffer_get_length(bufferevent_get_output(c->bev)) : 0;
}

static void arm(struct milter_conv *c, uint64_t seconds)
{
	struct timeval tv = { (time_t)seconds, 0 };
	evtimer_add(c->timer, &tv);
}

void conv_wait_output(struct milter_conv *c)
{
	/* No answer is due, so no timer runs: without this a milter that
	 * stops reading would hold the session until policy_timeout. */
	if (c->state == CONV_READY && !c->waiting && c->timer != NULL)
		arm(c, c->spec->content_timeout);
}

void conv_start(struct milter_conv *c)
{
	struct milter_client *client = c->ms->client;
	const struct milter_spec *spec = c->spec;
	c->timer = evtimer_new(client->base, timer_cb, c);
	int fd = socket(spec->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (c->timer == NULL || fd < 0) {
		if (fd >= 0)
			close(fd);
		conv_fail(c, "cannot create a socket");
		return;
	}
	c->bev = bufferevent_socket_new(client->base, fd, BEV_OPT_CLOSE_ON_FREE);
	if (c->bev == NULL) {
		close(fd);
		conv_fail(c, "cannot create a bufferevent");
		return;
	}
	bufferevent_setcb(c->bev, read_cb, write_cb, event_cb, c);
	/* The write callback fires when the output drains to this: the
	 * commands that get no answer are queued in steps. */
	bufferevent_setwatermark(c->bev, EV_WRITE, MILTER_OUTPUT_PACE / 4, 0);
	c->state = CONV_CONNECTING;
	arm(c, spec->connect_timeout);
	if (bufferevent_socket_connect(c->bev, (const struct sockaddr *)&spec->addr,
				       (int)spec->addr_len) < 0) {
		char why[128];
		snprintf(why, sizeof(why), "cannot connect: %s", strerror(errno));
		conv_fail(c, why);
		return;
	}
	bufferevent_enable(c->bev, EV_READ | EV_WRITE);
}

void conv_send(struct milter_conv *c, buf_t *packet, char cmd, bool expect, bool content)
{
	if (c->bev == NULL)
		return;
	bufferevent_write(c->bev, packet->data, packet->len);
	buf_reset(packet);
	if (!expect)
		return;
	c->waiting = true;
	c->sent = cmd;
	arm(c, content ? c->spec->content_timeout : c->spec->command_timeout);
}

void conv_close(struct milter_conv *c, bool quit)
{
	if (c->bev != NULL) {
		if (quit && c->state == CONV_READY && !c->waiting && conv_backlog(c) == 0) {
			/* Five bytes into an idle socket: sent now or never. */
			static const unsigned char q[5] = { 0, 0, 0, 1, MILTER_CMD_QUIT };
			ssize_t n = send(bufferevent_getfd(c->bev), q, sizeof(q),
					 MSG_DONTWAIT | MSG_NOSIGNAL);
			(void)n;
		}
		bufferevent_free(c->bev);
		c->bev = NULL;
	}
	if (c->timer != NULL) {
		event_free(c->timer);
		c->timer = NULL;
	}
	for (size_t i = 0; i < MILTER_MACRO_STAGES; i++)
		xfree(&c->macros[i]);
	c->waiting = false;
}

void conv_fail(struct milter_conv *c, const char *why)
{
	if (c->state == CONV_FAILED)
		return;
	static const char *const actions[] = { "tempfail", "continue", "reject", "continue" };
	log_warn("%s: milter=%s failed: %s; default action %s", conv_log_key(c), c->spec->name,
		 why, actions[c->spec->default_action]);
	conv_close(c, false);
	c->state = CONV_FAILED;
	struct milter_session *ms = c->ms;
	if (ms->call != NULL && ms->cur < ms->count && &ms->convs[ms->cur] == c) {
		/* Changes it sent before failing are no answer: they are not
		 * made, nor counted as the next milter's. */
		policy_edits_free(&ms->edits);
		ms->edits_text = 0;
		ms->replbody = NULL;
	}
	milter_resume(ms);
}

/* ---- negotiation ---------------------------------------------------------------- */

static void negotiate(struct milter_conv *c)
{
	buf_t b = BUF_INIT;
	milter_encode_optneg(&b, MILTER_VERSION, OFFERED_ACTIONS, OFFERED_PROTOCOL);
	c->state = CONV_NEGOTIATING;
	conv_send(c, &b, MILTER_CMD_OPTNEG, true, false);
	/* Like Postfix, connect_timeout covers the option negotiation too:
	 * a milter that takes the connection and then says nothing must not
	 * hold the banner for command_timeout. */
	arm(c, c->spec->connect_timeout);
	buf_free(&b);
}

/* The milter's answer to OPTNEG; false after failing the conversation. */
static bool negotiated(struct milter_conv *c, const struct milter_reply *r)
{
	if (r->kind != MILTER_REP_OPTNEG) {
		conv_fail(c, "no option negotiation in the first answer");
		return false;
	}
	if (r->version < MILTER_VERSION_MIN) {
		conv_fail(c, "protocol version too old");
		return false;
	}
	if ((r->actions & ~OFFERED_ACTIONS) != 0) {
		conv_fail(c, "asks for actions that were not offered");
		return false;
	}
	/* Bits we did not offer: the size negotiation (MDS_*) and others are
	 * refused, since we would not honour them. */
	if ((r->protocol & ~OFFERED_PROTOCOL) != 0) {
		conv_fail(c, "asks for protocol steps that were not offered");
		return false;
	}
	c->version = r->version < MILTER_VERSION ? r->version : MILTER_VERSION;
	c->actions = r->actions;
	c->protocol = r->protocol;
	for (size_t i = 0; i < MILTER_MACRO_STAGES; i++)
		if (r->macros[i] != NULL && strlen(r->macros[i]) <= MACRO_LIST_MAX)
			c->macros[i] = xstrdup(r->macros[i]);
	c->waiting = false;
	evtimer_del(c->timer);
	c->state = CONV_READY;
	log_debug("milter=%s version=%u actions=0x%x protocol=0x%x", c->spec->name,
		  (unsigned)c->version, (unsigned)c->actions, (unsigned)c->protocol);
	return true;
}

/* ---- callbacks ------------------------------------------------------------------- */

static void read_cb(struct bufferevent *bev, void *arg)
{
	struct milter_conv *c = arg;
	struct evbuffer *in = bufferevent_get_input(bev);
	for (;;) {
		size_t have = evbuffer_get_length(in);
		unsigned char head[4];
		uint32_t plen;
		if (have < 4)
			return;
		evbuffer_copyout(in, head, 4);
		int f = milter_frame(head, 4, &plen);
		if (f < 0) {
			conv_fail(c, "packet length out of bounds");
			return;
		}
		/* milter_frame saw only the length: is the whole packet here? */
		if (have - 4 < plen)
			return;
		evbuffer_drain(in, 4);
		unsigned char *packet = xmalloc(plen);
		evbuffer_remove(in, packet, plen);
		struct milter_reply r;
		char text[MILTER_REPLY_TEXT_MAX + 1];
		const char *err = NULL;
		int rc = milter_decode_reply(packet, plen, &r, text, &err);
		if (rc != 0) {
			char why[160];
			snprintf(why, sizeof(why), "bad answer '%c': %s",
				 packet[0] >= 0x21 && packet[0] < 0x7f ? packet[0] : '?', err);
			free(packet);
			conv_fail(c, why);
			return;
		}
		bool go_on;
		if (c->state == CONV_NEGOTIATING) {
			go_on = negotiated(c, &r);
			free(packet);
			if (go_on && evbuffer_get_length(in) > 0) {
				conv_fail(c, "answers before the first command");
				return;
			}
			if (go_on)
				milter_resume(c->ms);
			return;
		}
		if (r.kind == MILTER_REP_REPLYCODE)
			r.value = text; /* the joined text lives in this frame */
		/* The session may go on from inside milter_answer (a verdict), and
		 * may start its next stage: nothing of c is touched after it
		 * unless the conversation is still waiting for more. */
		bool final = milter_reply_is_final(r.kind);
		bool more = !final || c->ignored > 0;
		milter_answer(c, &r);
		free(packet);
		if (c->bev == NULL)
			return; /* the answer made us give up on the milter */
		if (!more) {
			/* Read before any command sent since: answers to nothing,
			 * which would be taken for the next ones' (one step out). */
			if (evbuffer_get_length(in) > 0)
				conv_fail(c, "more answers than commands");
			return;
		}
	}
}

static void write_cb(struct bufferevent *bev, void *arg)
{
	struct milter_conv *c = arg;
	(void)bev;
	if (c->state == CONV_READY && !c->waiting) {
		evtimer_del(c->timer); /* it reads: conv_wait_output's timer is done */
		milter_resume(c->ms);
	}
}

static void event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct milter_conv *c = arg;
	(void)bev;
	if (what & BEV_EVENT_CONNECTED) {
		negotiate(c);
		return;
	}
	if (what & BEV_EVENT_EOF)
		conv_fail(c, c->state == CONV_CONNECTING ? "connection closed" : "the milter closed "
			  "the connection");
	else if (c->state == CONV_CONNECTING)
		conv_fail(c, "cannot connect");
	else
		conv_fail(c, "connection error");
}

static void timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct milter_conv *c = arg;
	(void)fd;
	(void)what;
	const char *why = c->state == CONV_CONNECTING ? "connect timeout"
			  : c->state == CONV_NEGOTIATING ? "no answer to the option negotiation"
			  : c->waiting ? "timeout waiting for an answer"
				       : "timeout: the milter does not read what is sent to it";
	conv_fail(c, why);
}

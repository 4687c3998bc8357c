/*
 * scan_client.c - the smtp worker's end-of-data check that asks the scan
 * master for a verdict (see scan_client.h; the protocol is scan_proto.h).
 *
 * Requests live on their connection, first in its unsent list (the
 * socket was full), then in its waiting list until their verdict comes.
 * Anything that ends a connection (the master closed it, a protocol
 * violation, a send that failed) is acted on from the event loop through
 * the connection's deferred event, never from inside a check or a
 * callback that is still using the connection: its requests then get the
 * failure verdict. A request whose session went away (cancel) or whose
 * deadline passed is forgotten at once; its verdict, if it comes, has a
 * sequence number below the connection's next one and is dropped.
 *
 * RFCs: RFC 3463 (the enhanced status codes of the replies). Untrusted
 * input: the verdicts, from a scan master whose scanners parse hostile
 * mail (decoded and checked by scan_proto.c). Privilege: unprivileged
 * smtp worker.
 */
#include "scan_client.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "../lib/log.h"
#include "../lib/xalloc.h"
#include "scan_proto.h"

/* Say that the scan master cannot be reached at most this often. */
#define UNREACHABLE_WARN_SECONDS 10

struct scan_req;

struct req_list {
	struct scan_req *head, *tail;
};

struct scan_conn;

struct scan_req {
	struct scan_client *client;
	struct scan_conn *conn;      /* NULL once taken off its connection */
	struct req_list *list;       /* the list it is on, or NULL */
	struct scan_req *prev, *next;
	struct policy_call *call;
	uint32_t seq;
	int fd;                      /* the queue file, until sent */
	buf_t packet;                /* the encoded REQUEST, until sent */
	char id[QUEUE_ID_LEN + 1];
	uint64_t started_us;
	struct event *deadline;
};

struct scan_conn {
	struct scan_client *client;
	struct scan_conn *next;      /* the client's connections */
	int fd;
	struct event *readable, *writable, *later;
	bool writing;                /* writable is added */
	bool draining;               /* DRAIN came: no new request */
	bool broken;                 /* to be failed from the loop */
	char broken_why[128];
	uint32_t next_seq;
	struct req_list unsent, waiting;
};

struct scan_client {
	struct event_base *base;
	const struct config *cfg;
	char *path;
	struct scan_conn *live;      /* new requests go here; NULL: connect first */
	struct scan_conn *conns;     /* every open connection, live and draining */
	time_t unreachable_warned;
};

static uint64_t now_us(void)
{
	struct timeval tv;
	gettimeofday(&tv, NULL);
	return (uint64_t)tv.tv_sec * 1000000 + (uint64_t)tv.tv_usec;
}

/* ---- lists ------------------------------------------------------------------ */

static void list_push(struct req_list *l, struct scan_req *r)
{
	r->list = l;
	r->next = NULL;
	r->prev = l->tail;
	if (l->tail != NULL)
		l->tail->next = r;
	else
		l->head = r;
	l->tail = r;
}

static void list_unlink(struct scan_req *r)
{
	struct req_list *l = r->list;
	if (l == NULL)
		return;
	if (r->prev != NULL)
		r->prev->next = r->next;
	else
		l->head = r->next;
	if (r->next != NULL)
		r->next->prev = r->prev;
	else
		l->tail = r->prev;
	r->list = NULL;
	r->prev = r->next = NULL;
}

static void req_free(struct scan_req *r)
{
	list_unlink(r);
	if (r->deadline != NULL)
		event_free(r->deadline);
	if (r->fd >= 0)
		close(r->fd);
	buf_free(&r->packet);
	free(r);
}

/* ---- answering ---------------------------------------------------------------- */

/* " mime=0.001 rules=0.000" */
static void format_timings(const struct scan_verdict *v, buf_t *out)
{
	for (size_t i = 0; i < v->timing_count; i++)
		buf_printf(out, " %s=%.3f", v->timings[i].stage, (double)v->timings[i].us / 1e6);
}

/* detail: why the scan failed, for the log only (the client is told
 * v->text, which says nothing about our insides). */
static void log_verdict(const struct scan_req *r, const struct scan_verdict *v,
			const char *detail)
{
	buf_t hits = BUF_INIT, timings = BUF_INIT;
	for (size_t i = 0; i < v->hits.count; i++)
		buf_printf(&hits, "%s%s", i > 0 ? "," : "", v->hits.items[i]);
	format_timings(v, &timings);
	double delay = (double)(now_us() - r->started_us) / 1e6;
	bool failed = scan_verdict_failed(v);
	if (failed)
		log_warn("%s: scan action=%s%s reason=%s delay=%.3f%s (%s)", r->id,
			 scan_action_name(v->action),
			 v->action != SCAN_TEMPFAIL ? " fail_open=yes" : "", v->reason, delay,
			 buf_cstr(&timings), detail != NULL ? detail : v->text);
	else
		log_info("%s: scan action=%s%s%s%s%s hits=%s headers=%zu delay=%.3f%s", r->id,
			 scan_action_name(v->action), v->reason[0] != '\0' ? " reason=" : "",
			 v->reason, v->code != 0 ? " status=" : "", v->code != 0 ? v->status : "",
			 hits.len > 0 ? buf_cstr(&hits) : "-", v->headers.count, delay,
			 buf_cstr(&timings));
	buf_free(&hits);
	buf_free(&timings);
}

/* The policy's verdict for v, with the call's reply filled. */
static enum policy_verdict map_verdict(struct policy_call *call, const struct scan_verdict *v)
{
	struct policy_reply *reply = policy_call_reply(call);
	bool keeps_headers = v->action == SCAN_ACCEPT || v->action == SCAN_TAG ||
			     v->action == SCAN_QUARANTINE;
	for (size_t i = 0; keeps_headers && i < v->headers.count; i++)
		strlist_add(&reply->headers, v->headers.items[i]);
	for (size_t i = 0; keeps_headers && i < v->remove_headers.count; i++)
		strlist_add(&reply->remove_headers, v->remove_headers.items[i]);
	for (size_t i = 0; i < v->hits.count; i++) /* the quarantine note, the notices */
		strlist_add(&reply->hits, v->hits.items[i]);
	switch (v->action) {
	case SCAN_ACCEPT:
		return v->headers.count > 0 || v->remove_headers.count > 0 ? POLICY_TAG
									   : POLICY_DUNNO;
	case SCAN_TAG:
		return POLICY_TAG;
	case SCAN_REJECT:
		policy_call_set(call, v->code != 0 ? v->code : 550,
				v->status[0] != '\0' ? v->status : "5.7.1", v->reason, "%s", v->text);
		return POLICY_REJECT;
	case SCAN_TEMPFAIL:
		policy_call_set(call, v->code != 0 ? v->code : 451,
				v->status[0] != '\0' ? v->status : "4.7.0", v->reason, "%s", v->text);
		return POLICY_TEMPFAIL;
	case SCAN_DISCARD:
		policy_call_set(call, 0, "", v->reason[0] != '\0' ? v->reason : "scan", "%s",
				v->text);
		return POLICY_DISCARD;
	case SCAN_QUARANTINE:
		policy_call_set(call, 0, "", v->reason[0] != '\0' ? v->reason : "scan", "%s",
				v->text);
		return POLICY_QUARANTINE;
	}
	policy_call_set(call, 451, "4.7.0", "scan_failed", "Message could not be checked");
	return POLICY_TEMPFAIL;
}

/* The verdict of a message that could not be scanned. */
static void failure_verdict(const struct scan_client *c, const char *reason,
			    struct scan_verdict *v)
{
	scan_verdict_init(v);
	scan_verdict_fail(v, c->cfg->scan_fail_open == CONFIG_YES, reason, "%s",
			  strcmp(reason, "scan_timeout") == 0
				  ? "Message could not be checked in time, try again later"
				  : "Message could not be checked, try again later");
	scan_verdict_normalize(v);
}

/* The request's verdict has come (or failed): log, forget r, answer. */
static void deliver(struct scan_req *r, const struct scan_verdict *v, const char *detail)
{
	struct policy_call *call = r->call;
	log_verdict(r, v, detail);
	enum policy_verdict pv = map_verdict(call, v);
	req_free(r);
	policy_call_finish(call, pv);
}

static void deliver_failure(struct scan_req *r, const char *reason, const char *fmt, ...)
	PRINTF_LIKE(3, 4);

static void deliver_failure(struct scan_req *r, const char *reason, const char *fmt, ...)
{
	struct scan_verdict v;
	char why[256];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(why, sizeof(why), fmt, ap);
	va_end(ap);
	failure_verdict(r->client, reason, &v);
	deliver(r, &v, why);
	scan_verdict_free(&v);
}

/* ---- connections ---------------------------------------------------------------- */

/* Act on the connection from the loop (it broke, or it has drained). */
static void conn_later(struct scan_conn *conn)
{
	event_active(conn->later, EV_TIMEOUT, 0);
}

static void conn_break(struct scan_conn *conn, const char *why)
{
	if (conn->broken)
		return;
	conn->broken = true;
	snprintf(conn->broken_why, sizeof(conn->broken_why), "%s", why);
	if (conn->client->live == conn)
		conn->client->live = NULL;
	conn_later(conn);
}

/* Close conn and take it off the client's list; its requests must be off
 * it already. */
static void conn_free(struct scan_conn *conn)
{
	struct scan_client *c = conn->client;
	if (c->live == conn)
		c->live = NULL;
	for (struct scan_conn **p = &c->conns; *p != NULL; p = &(*p)->next) {
		if (*p == conn) {
			*p = conn->next;
			break;
		}
	}
	event_free(conn->readable);
	event_free(conn->writable);
	event_free(conn->later);
	close(conn->fd);
	free(conn);
}

/* Move every request of l onto failing, off its connection. */
static void take_all(struct req_list *l, struct req_list *failing)
{
	while (l->head != NULL) {
		struct scan_req *r = l->head;
		list_unlink(r);
		r->conn = NULL;
		list_push(failing, r);
	}
}

static void conn_fail(struct scan_conn *conn)
{
	struct req_list failing = { NULL, NULL };
	char why[sizeof(conn->broken_why)];
	snprintf(why, sizeof(why), "%s", conn->broken_why);
	take_all(&conn->unsent, &failing);
	take_all(&conn->waiting, &failing);
	conn_free(conn);
	while (failing.head != NULL) {
		struct scan_req *r = failing.head;
		list_unlink(r);
		deliver_failure(r, "scan_unavailable", "the scan master went away: %s", why);
	}
}

static void later_cb(evutil_socket_t fd, short what, void *arg)
{
	struct scan_conn *conn = arg;
	(void)fd;
	(void)what;
	if (conn->broken)
		conn_fail(conn);
	else if (conn->draining && conn->unsent.head == NULL && conn->waiting.head == NULL)
		conn_free(conn);
}

/* Send what is unsent, as far as the socket takes it. */
static void conn_flush(struct scan_conn *conn)
{
	while (conn->unsent.head != NULL && !conn->broken) {
		struct scan_req *r = conn->unsent.head;
		if (scan_send_encoded(conn->fd, &r->packet, r->fd) < 0) {
			if (errno == EAGAIN) {
				if (!conn->writing && event_add(conn->writable, NULL) == 0)
					conn->writing = true;
				return;
			}
			char why[128];
			snprintf(why, sizeof(why), "send: %s", strerror(errno));
			conn_break(conn, why);
			return;
		}
		close(r->fd);
		r->fd = -1;
		buf_free(&r->packet);
		list_unlink(r);
		list_push(&conn->waiting, r);
	}
	if (conn->writing) {
		event_del(conn->writable);
		conn->writing = false;
	}
}

static void writable_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	conn_flush(arg);
}

static struct scan_req *find_waiting(struct scan_conn *conn, uint32_t seq)
{
	for (struct scan_req *r = conn->waiting.head; r != NULL; r = r->next)
		if (r->seq == seq)
			return r;
	return NULL;
}

/* One message from the master; false when the connection is to end. */
static bool conn_take(struct scan_conn *conn, struct scan_msg *m)
{
	if (m->type == SCAN_MSG_DRAIN) {
		log_debug("scan master: drain (a new one takes over)");
		conn->draining = true;
		if (conn->client->live == conn)
			conn->client->live = NULL;
		conn_later(conn);
		return true;
	}
	struct scan_req *r = find_waiting(conn, m->seq);
	if (r == NULL) {
		if (m->seq < conn->next_seq)
			return true; /* cancelled or past its deadline: forgotten */
		log_error("protocol violation from the scan master: a verdict for request %" PRIu32
			  ", never sent", m->seq);
		conn_break(conn, "protocol violation");
		return false;
	}
	list_unlink(r);
	r->conn = NULL;
	deliver(r, &m->verdict, NULL);
	if (conn->draining)
		conn_later(conn);
	return true;
}

static void readable_cb(evutil_socket_t fd, short what, void *arg)
{
	struct scan_conn *conn = arg;
	(void)fd;
	(void)what;
	while (!conn->broken) {
		struct scan_msg m;
		const char *why = NULL;
		int mfd = -1;
		int rc = scan_recv(conn->fd, false, &m, &mfd, &why);
		if (rc < 0 && errno == EAGAIN)
			break;
		if (rc == 0) {
			conn_break(conn, "it closed the connection");
		} else if (rc < 0) {
			if (errno == EPROTO)
				log_error("protocol violation from the scan master: %s", why);
			char text[128];
			snprintf(text, sizeof(text), "%s: %s", why,
				 errno == EPROTO ? "protocol violation" : strerror(errno));
			conn_break(conn, text);
		} else {
			conn_take(conn, &m);
		}
		scan_msg_free(&m);
	}
}

static struct scan_conn *conn_open(struct scan_client *c)
{
	int fd = scan_socket_connect(c->path);
	if (fd < 0)
		return NULL;
	struct scan_conn *conn = xcalloc(1, sizeof(*conn));
	conn->client = c;
	conn->fd = fd;
	conn->next_seq = 1;
	conn->readable = event_new(c->base, fd, EV_READ | EV_PERSIST, readable_cb, conn);
	conn->writable = event_new(c->base, fd, EV_WRITE | EV_PERSIST, writable_cb, conn);
	conn->later = event_new(c->base, -1, 0, later_cb, conn);
	if (conn->readable == NULL || conn->writable == NULL || conn->later == NULL ||
	    event_add(conn->readable, NULL) < 0)
		log_fatal("scan client: cannot create events");
	conn->next = c->conns;
	c->conns = conn;
	return conn;
}

/* The connection new requests go on; NULL (errno set) if the master
 * cannot be reached. */
static struct scan_conn *live_conn(struct scan_client *c)
{
	if (c->live != NULL && c->live->next_seq == UINT32_MAX) {
		c->live->draining = true; /* sequence numbers run out: start afresh */
		conn_later(c->live);
		c->live = NULL;
	}
	if (c->live == NULL)
		c->live = conn_open(c);
	return c->live;
}

/* ---- the check ------------------------------------------------------------------- */

static void deadline_cb(evutil_socket_t fd, short what, void *arg)
{
	struct scan_req *r = arg;
	struct scan_conn *conn = r->conn;
	(void)fd;
	(void)what;
	list_unlink(r);
	r->conn = NULL;
	uint64_t secs = 2 * r->client->cfg->scan_timeout + SCAN_CLIENT_MARGIN;
	deliver_failure(r, "scan_timeout", "no verdict from the scan master within %" PRIu64 "s",
			secs);
	if (conn != NULL && conn->draining)
		conn_later(conn);
}

/* An answer at once, without waiting (the check function's own return). */
static enum policy_verdict answer_now(struct scan_client *c, struct policy_call *call,
				      const char *id, const char *reason, const char *why)
{
	struct scan_verdict v;
	struct scan_req r = { .client = c, .started_us = now_us() };
	snprintf(r.id, sizeof(r.id), "%.*s", QUEUE_ID_LEN, id);
	failure_verdict(c, reason, &v);
	log_verdict(&r, &v, why);
	enum policy_verdict pv = map_verdict(call, &v);
	scan_verdict_free(&v);
	return pv;
}

static void warn_unreachable(struct scan_client *c, int err)
{
	time_t now = time(NULL);
	if (now - c->unreachable_warned < UNREACHABLE_WARN_SECONDS)
		return;
	c->unreachable_warned = now;
	log_warn("cannot reach the scan master at %s: %s; messages get %s until it is back",
		 c->path, strerror(err),
		 c->cfg->scan_fail_open == CONFIG_YES ? "accepted unscanned (scan_fail_open)"
						      : "451 4.7.0");
}

static enum policy_verdict scan_check(struct policy_call *call, void *arg)
{
	struct scan_client *c = arg;
	const struct policy_request *req = policy_call_request(call);
	char why[256];
	if (req->content_path == NULL)
		return POLICY_DUNNO; /* not the end of data of a queued message */
	if (!queue_id_valid(req->queue_id))
		log_panic("scan client: an end-of-data request without a queue id");
	int fd = open(req->content_path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0) {
		snprintf(why, sizeof(why), "cannot open %s: %s", req->content_path,
			 strerror(errno));
		return answer_now(c, call, req->queue_id, "scan_failed", why);
	}
	struct scan_conn *conn = live_conn(c);
	if (conn == NULL) {
		int err = errno;
		close(fd);
		warn_unreachable(c, err);
		snprintf(why, sizeof(why), "cannot reach the scan master: %s", strerror(err));
		return answer_now(c, call, req->queue_id, "scan_unavailable", why);
	}
	struct scan_req *r = xcalloc(1, sizeof(*r));
	r->client = c;
	r->conn = conn;
	r->call = call;
	r->fd = fd;
	r->seq = conn->next_seq++;
	r->started_us = now_us();
	memcpy(r->id, req->queue_id, QUEUE_ID_LEN + 1);

	struct scan_msg m;
	scan_msg_init(&m, SCAN_MSG_REQUEST);
	m.seq = r->seq;
	memcpy(m.id, r->id, sizeof(m.id));
	m.content_off = req->content_off;
	m.content_len = req->content_len;
	char sender[QF_ADDR_MAX + 1] = "";
	if (req->has_sender)
		address_format(&req->sender, sender, sizeof(sender));
	scan_msg_set_envelope(&m, sender, req->client_addr, req->helo != NULL ? req->helo : "",
			      &req->rcpts);
	scan_msg_encode(&m, &r->packet);
	scan_msg_free(&m);

	struct timeval tv = { (time_t)(2 * c->cfg->scan_timeout + SCAN_CLIENT_MARGIN), 0 };
	r->deadline = evtimer_new(c->base, deadline_cb, r);
	if (r->deadline == NULL || evtimer_add(r->deadline, &tv) < 0)
		log_fatal("scan client: cannot create a timer");
	list_push(&conn->unsent, r);
	policy_call_set_state(call, r);
	conn_flush(conn);
	return POLICY_PENDING;
}

static void scan_cancel(struct policy_call *call, void *arg)
{
	struct scan_req *r = policy_call_state(call);
	(void)arg;
	if (r == NULL)
		return;
	struct scan_conn *conn = r->conn;
	log_debug("%s: scan abandoned: the session ended", r->id);
	req_free(r);
	if (conn != NULL && conn->draining)
		conn_later(conn);
}

/* ---- the client ------------------------------------------------------------------- */

struct scan_client *scan_client_new(struct event_base *base, const struct config *cfg,
				    const char *socket_path)
{
	struct scan_client *c = xcalloc(1, sizeof(*c));
	c->base = base;
	c->cfg = cfg;
	c->path = xstrdup(socket_path);
	return c;
}

void scan_client_register(struct scan_client *c, struct policy_env *env)
{
	struct policy_check check = { "scan", scan_check, scan_cancel, c };
	policy_env_add(env, POLICY_END_OF_DATA, &check);
}

void scan_client_free(struct scan_client **cp)
{
	struct scan_client *c = *cp;
	if (c == NULL)
		return;
	while (c->conns != NULL) {
		struct scan_conn *conn = c->conns;
		while (conn->unsent.head != NULL)
			req_free(conn->unsent.head);
		while (conn->waiting.head != NULL)
			req_free(conn->waiting.head);
		conn_free(conn);
	}
	free(c->path);
	xfree(cp);
}

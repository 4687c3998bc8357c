/*
 * auth_client.c - a network worker's connection to the auth process (the
 * contract is in auth_client.h; the messages in auth_proto.h).
 *
 * One connection per worker, many requests outstanding on it, matched by
 * seq. A request is sent at once, or, while the socket is full, kept (its
 * packet, wiped once sent) and sent in order when it is writable, at most
 * AUTH_CLIENT_UNSENT_MAX of them; when it cannot be (no auth process at
 * the path, too many unsent, the connection broken) it is answered
 * AUTH_TEMPFAIL from the loop. Each request waits at most
 * AUTH_CLIENT_TIMEOUT_MS, longer than the auth process's longest delay
 * after a failure (auth_failure_delay_max, at most 30 s) plus a hash. A
 * broken connection is made again at the next request.
 *
 * Untrusted input: the auth process's answers (decoded strictly; a
 * violation ends the connection and fails what waits). Privilege: the
 * unprivileged smtp or pop3 worker.
 */
#include "auth_client.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "../lib/buf.h"
#include "../lib/log.h"
#include "../lib/unixsock.h"
#include "../lib/xalloc.h"
#include "auth_proto.h"

#define AUTH_CLIENT_TIMEOUT_MS 45000
#define AUTH_CLIENT_UNSENT_MAX 10000
#define UNREACHABLE_WARN_SECONDS 10

struct auth_request {
	struct auth_client *c;
	struct auth_request *prev, *next; /* on the waiting list */
	bool waiting;
	uint32_t seq;
	auth_done_fn *done;
	void *arg;
	enum auth_verdict fail_verdict;   /* answered from the loop with this */
	const char *fail_why;             /* and this; NULL: the deadline passed */
	struct event *deadline;           /* also fires at once to fail it */
	buf_t packet;                     /* not sent yet (holds the password) */
};

struct auth_client {
	struct event_base *evb;
	char *path;
	int fd;
	struct event *readable, *writable;
	uint32_t next_seq;
	struct auth_request *head, *tail; /* waiting for answers, in send order */
	struct auth_request *unsent;      /* the first of them not sent yet, or NULL */
	size_t unsent_count;
	time_t unreachable_warned;
};

static void wipe_packet(struct auth_request *r)
{
	if (r->packet.data != NULL) {
		explicit_bzero(r->packet.data, r->packet.cap);
		r->c->unsent_count--;
	}
	buf_free(&r->packet);
}

static void unlink_req(struct auth_request *r)
{
	struct auth_client *c = r->c;
	if (!r->waiting)
		return;
	if (c->unsent == r)
		c->unsent = r->next;
	wipe_packet(r);
	if (r->prev != NULL)
		r->prev->next = r->next;
	else
		c->head = r->next;
	if (r->next != NULL)
		r->next->prev = r->prev;
	else
		c->tail = r->prev;
	r->prev = r->next = NULL;
	r->waiting = false;
}

static void req_free(struct auth_request *r)
{
	unlink_req(r);
	wipe_packet(r);
	event_free(r->deadline);
	free(r);
}

/* The deadline passed, or the request is failed from the loop. */
static void deadline_cb(evutil_socket_t fd, short what, void *arg)
{
	struct auth_request *r = arg;
	(void)fd;
	(void)what;
	struct auth_result res = { r->fail_why != NULL ? r->fail_verdict : AUTH_TEMPFAIL, NULL,
				   r->fail_why != NULL ? r->fail_why : "no answer in time", NULL };
	if (r->fail_why == NULL)
		log_warn("auth: no answer within %d s", AUTH_CLIENT_TIMEOUT_MS / 1000);
	auth_done_fn *done = r->done;
	void *done_arg = r->arg;
	req_free(r);
	done(done_arg, &res);
}

static void fail_soon(struct auth_request *r, enum auth_verdict v, const char *why)
{
	unlink_req(r);
	r->fail_verdict = v;
	r->fail_why = why;
	struct timeval now = { 0, 0 };
	evtimer_add(r->deadline, &now);
}

static void disconnect(struct auth_client *c, const char *why)
{
	if (c->fd >= 0) {
		event_free(c->readable);
		event_free(c->writable);
		c->readable = c->writable = NULL;
		close(c->fd);
		c->fd = -1;
	}
	while (c->head != NULL)
		fail_soon(c->head, AUTH_TEMPFAIL, why);
}

static void answer_arrived(struct auth_client *c, const struct auth_msg *m)
{
	struct auth_request *r = c->head;
	while (r != NULL && r->seq != m->seq)
		r = r->next;
	if (r == NULL)
		return; /* cancelled meanwhile */
	struct auth_result res = { (enum auth_verdict)m->verdict,
				   m->verdict == AUTH_OK ? m->user : NULL, m->why,
				   m->ticket[0] != '\0' ? m->ticket : NULL };
	auth_done_fn *done = r->done;
	void *arg = r->arg;
	req_free(r);
	done(arg, &res);
}

static void readable_cb(evutil_socket_t fd, short what, void *arg)
{
	struct auth_client *c = arg;
	unsigned char data[AUTH_MSG_MAX + 1];
	(void)what;
	while (c->fd == (int)fd) {
		ssize_t n = recv((int)fd, data, sizeof(data), MSG_TRUNC | MSG_DONTWAIT);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return;
		if (n <= 0) {
			log_warn("auth: connection ended (%s)",
				 n == 0 ? "the auth process closed it" : strerror(errno));
			disconnect(c, "the auth process went away");
			return;
		}
		struct auth_msg m;
		const char *err = "packet too long";
		if ((size_t)n > AUTH_MSG_MAX || !auth_msg_decode(data, (size_t)n, false, &m, &err)) {
			log_warn("auth: bad answer from the auth process: %s", err);
			disconnect(c, "bad answer from the auth process");
			return;
		}
		answer_arrived(c, &m);
	}
}

/* Send what waits, in order; false if the connection broke (the caller
 * disconnects). */
static bool flush_unsent(struct auth_client *c)
{
	while (c->unsent != NULL) {
		struct auth_request *r = c->unsent;
		ssize_t n;
		do
			n = send(c->fd, r->packet.data, r->packet.len, MSG_DONTWAIT | MSG_NOSIGNAL);
		while (n < 0 && errno == EINTR);
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			event_add(c->writable, NULL);
			return true;
		}
		if (n < 0)
			return false;
		c->unsent = r->next;
		wipe_packet(r);
	}
	event_del(c->writable);
	return true;
}

static void writable_cb(evutil_socket_t fd, short what, void *arg)
{
	struct auth_client *c = arg;
	(void)fd;
	(void)what;
	if (!flush_unsent(c)) {
		log_warn("auth: connection ended (%s)", strerror(errno));
		disconnect(c, "the auth process went away");
	}
}

static bool ensure_connected(struct auth_client *c)
{
	if (c->fd >= 0)
		return true;
	int fd = unixsock_connect(c->path);
	if (fd < 0) {
		time_t t = time(NULL);
		if (t - c->unreachable_warned >= UNREACHABLE_WARN_SECONDS) {
			log_warn("auth %s: %s: logins fail for now", c->path, strerror(errno));
			c->unreachable_warned = t;
		}
		return false;
	}
	c->fd = fd;
	c->readable = event_new(c->evb, fd, EV_READ | EV_PERSIST, readable_cb, c);
	c->writable = event_new(c->evb, fd, EV_WRITE | EV_PERSIST, writable_cb, c);
	if (c->readable == NULL || c->writable == NULL)
		log_fatal("cannot allocate the auth connection's events");
	event_add(c->readable, NULL);
	return true;
}

struct auth_client *auth_client_new(struct event_base *evb, const char *socket_path)
{
	struct auth_client *c = xcalloc(1, sizeof(*c));
	c->evb = evb;
	c->path = xstrdup(socket_path);
	c->fd = -1;
	return c;
}

void auth_client_free(struct auth_client **cp)
{
	struct auth_client *c = *cp;
	if (c == NULL)
		return;
	while (c->head != NULL)
		req_free(c->head);
	if (c->fd >= 0) {
		event_free(c->readable);
		event_free(c->writable);
		close(c->fd);
	}
	free(c->path);
	free(c);
	*cp = NULL;
}

/* Copy s into a field of max bytes; false if it does not fit. */
static bool fits(char *field, size_t max, const char *s)
{
	size_t n = s != NULL ? strlen(s) : 0;
	if (n > max)
		return false;
	memcpy(field, s != NULL ? s : "", n);
	field[n] = '\0';
	return true;
}

struct auth_request *auth_client_check(struct auth_client *c, const struct auth_query *q,
				       auth_done_fn *done, void *arg)
{
	struct auth_request *r = xcalloc(1, sizeof(*r));
	r->c = c;
	r->done = done;
	r->arg = arg;
	r->deadline = evtimer_new(c->evb, deadline_cb, r);
	if (r->deadline == NULL)
		log_fatal("cannot allocate a timer");
	if (++c->next_seq == 0)
		c->next_seq = 1;
	r->seq = c->next_seq;
	struct auth_msg *m = xcalloc(1, sizeof(*m));
	m->type = AUTH_MSG_CHECK;
	m->seq = r->seq;
	m->service = (uint8_t)q->service;
	fits(m->client_ip, AUTH_IP_MAX, q->client_ip);
	fits(m->session_id, AUTH_SESSION_MAX, q->session_id);
	if (!fits(m->user, AUTH_USER_MAX, q->user) ||
	    !fits(m->password, AUTH_PASSWORD_MAX, q->password)) {
		/* too long to be anybody's: a failure, answered like the others */
		auth_msg_wipe(m);
		free(m);
		fail_soon(r, AUTH_FAILED, "user or password too long");
		return r;
	}
	if (!ensure_connected(c)) {
		auth_msg_wipe(m);
		free(m);
		fail_soon(r, AUTH_TEMPFAIL, "the auth process cannot be reached");
		return r;
	}
	if (c->unsent_count >= AUTH_CLIENT_UNSENT_MAX) {
		auth_msg_wipe(m);
		free(m);
		fail_soon(r, AUTH_TEMPFAIL, "too many checks waiting to be sent");
		return r;
	}
	/* the packet is encoded into room made once, so no copy of the
	 * password is left behind by a reallocation */
	buf_reserve(&r->packet, AUTH_MSG_MAX);
	auth_msg_encode(m, &r->packet);
	auth_msg_wipe(m);
	free(m);
	c->unsent_count++;
	r->waiting = true;
	r->prev = c->tail;
	if (c->tail != NULL)
		c->tail->next = r;
	else
		c->head = r;
	c->tail = r;
	if (c->unsent == NULL)
		c->unsent = r;
	struct timeval tv = { AUTH_CLIENT_TIMEOUT_MS / 1000, (AUTH_CLIENT_TIMEOUT_MS % 1000) * 1000 };
	evtimer_add(r->deadline, &tv);
	if (!flush_unsent(c)) {
		log_warn("auth: connection ended (%s)", strerror(errno));
		disconnect(c, "the auth process went away");
	}
	return r;
}

void auth_client_cancel(struct auth_request **req)
{
	if (*req == NULL)
		return;
	req_free(*req);
	*req = NULL;
}

/*
 * anvil_client.c - the smtp worker's connection to the anvil: the
 * limits backend of limits.h over anvil_proto.h.
 *
 * One connection per worker, many requests outstanding on it, answered
 * in order and matched by seq. A request is sent at once or, when the
 * socket is full, queued and sent when it is writable; it waits at most
 * ANVIL_CLIENT_TIMEOUT_MS for its answer. Whatever goes wrong (no anvil
 * at the path, the connection ends, a protocol violation, the deadline)
 * answers the requests concerned with NULL, from the loop: the caller
 * fails open. A broken connection is made again at the next request or
 * after ANVIL_RECONNECT_MS, whichever is first; then the sessions this
 * worker still has open are told to the (new) anvil again (OPEN with
 * ANVIL_OPEN_REPLAY), so its counts are whole again.
 *
 * Teardown of a connection happens from the loop (a deferred event),
 * never inside a callback that still uses it.
 *
 * Untrusted input: the anvil's answers (decoded strictly by
 * anvil_proto.c; a violation ends the connection). Privilege:
 * unprivileged smtp worker.
 */
#include "limits.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "../lib/hashmap.h"
#include "../lib/log.h"
#include "../lib/unixsock.h"
#include "../lib/xalloc.h"

#define ANVIL_CLIENT_TIMEOUT_MS 2000
#define ANVIL_RECONNECT_MS 1000
/* Say that the anvil cannot be reached at most this often. */
#define UNREACHABLE_WARN_SECONDS 10
/* Requests queued while the socket is full, at most (then they fail open). */
#define ANVIL_QUEUE_MAX 10000

struct anvil_client;

struct limits_req {
	struct anvil_client *c;
	struct limits_req *prev, *next; /* on the waiting list */
	bool waiting;                   /* on the list (sent or queued) */
	uint32_t seq;
	limits_done_fn *done;
	void *arg;
	struct event *deadline;         /* also fires at once to fail it */
};

struct anvil_client {
	struct limits_backend base;
	struct event_base *evb;
	char *path;
	int fd;
	bool broken;
	char broken_why[96];
	struct event *readable, *writable, *later, *reconnect;
	struct anvil_outbox outbox;     /* requests the socket had no room for */
	uint32_t next_seq;
	struct limits_req *head, *tail; /* waiting for answers, oldest first */
	hashmap_t sessions;             /* "session" -> client key, for replays */
	uint64_t next_connect_ms;
	time_t unreachable_warned;
};

static uint64_t mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* ---- requests -------------------------------------------------------------------- */

static void unlink_req(struct limits_req *r)
{
	struct anvil_client *c = r->c;
	if (!r->waiting)
		return;
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

static void req_free(struct limits_req *r)
{
	unlink_req(r);
	event_free(r->deadline);
	free(r);
}

/* The deadline passed, or the request is failed from the loop. */
static void deadline_cb(evutil_socket_t fd, short what, void *arg)
{
	struct limits_req *r = arg;
	(void)fd;
	(void)what;
	limits_done_fn *done = r->done;
	void *done_arg = r->arg;
	if (r->waiting)
		log_debug("anvil: no answer to request %" PRIu32 " in time", r->seq);
	req_free(r);
	done(done_arg, NULL);
}

/* Answer r with NULL from the loop. */
static void fail_soon(struct limits_req *r)
{
	unlink_req(r);
	struct timeval now = { 0, 0 };
	evtimer_add(r->deadline, &now);
}

/* ---- the connection ---------------------------------------------------------------- */

/* Something is wrong with the connection: tear it down from the loop. */
static void mark_broken(struct anvil_client *c, const char *why)
{
	if (c->broken)
		return;
	c->broken = true;
	snprintf(c->broken_why, sizeof(c->broken_why), "%s", why);
	event_active(c->later, EV_TIMEOUT, 0);
}

static void disconnect(struct anvil_client *c)
{
	if (c->fd >= 0) {
		event_free(c->readable);
		event_free(c->writable);
		c->readable = c->writable = NULL;
		close(c->fd);
		c->fd = -1;
	}
	anvil_outbox_clear(&c->outbox);
	while (c->head != NULL)
		fail_soon(c->head);
}

static void later_cb(evutil_socket_t fd, short what, void *arg)
{
	struct anvil_client *c = arg;
	(void)fd;
	(void)what;
	if (!c->broken)
		return;
	log_warn("anvil connection ended (%s): limits fail open until it is back", c->broken_why);
	c->broken = false;
	disconnect(c);
	c->next_connect_ms = 0;
	struct timeval tv = { 0, ANVIL_RECONNECT_MS * 1000 };
	evtimer_add(c->reconnect, &tv);
}

static void flush_out(struct anvil_client *c)
{
	switch (anvil_outbox_flush(&c->outbox, c->fd)) {
	case ANVIL_OUT_SENT:
		event_del(c->writable);
		break;
	case ANVIL_OUT_ERROR:
		mark_broken(c, strerror(errno));
		break;
	default:
		break; /* still waiting: the writable event stays */
	}
}

/* Send m now, or queue it behind what waits; false if it cannot go. */
static bool send_msg(struct anvil_client *c, const struct anvil_msg *m)
{
	if (c->fd < 0 || c->broken)
		return false;
	switch (anvil_outbox_push(&c->outbox, c->fd, m)) {
	case ANVIL_OUT_SENT:
		return true;
	case ANVIL_OUT_QUEUED:
		event_add(c->writable, NULL);
		return true;
	case ANVIL_OUT_ERROR:
		mark_broken(c, strerror(errno));
		return false;
	default:
		return false; /* ANVIL_QUEUE_MAX requests wait already */
	}
}

static void answer_arrived(struct anvil_client *c, const struct anvil_msg *m)
{
	struct limits_req *r = c->head;
	while (r != NULL && r->seq != m->seq)
		r = r->next;
	if (r == NULL)
		return; /* a replay's, or one given up on */
	bool right = (m->type == ANVIL_MSG_OPENED || m->type == ANVIL_MSG_RATED ||
		      m->type == ANVIL_MSG_GREYED);
	if (!right) {
		mark_broken(c, "unexpected answer");
		return;
	}
	limits_done_fn *done = r->done;
	void *arg = r->arg;
	req_free(r);
	done(arg, m);
}

static void readable_cb(evutil_socket_t fd, short what, void *arg)
{
	struct anvil_client *c = arg;
	(void)what;
	while (!c->broken && c->fd == (int)fd) {
		struct anvil_msg m;
		const char *err = NULL;
		int rc = anvil_recv((int)fd, false, &m, &err);
		if (rc < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return;
		if (rc <= 0) {
			mark_broken(c, rc == 0 ? "the anvil closed it" : err);
			return;
		}
		answer_arrived(c, &m);
	}
}

static void writable_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	flush_out(arg);
}

/* Tell a new anvil about the sessions that are open. */
static void replay_sessions(struct anvil_client *c)
{
	size_t pos = 0, n = 0;
	const char *key;
	void *value;
	while (hashmap_next(&c->sessions, &pos, &key, &value)) {
		struct anvil_msg m;
		anvil_msg_init(&m, ANVIL_MSG_OPEN);
		m.seq = 0;
		m.flags = ANVIL_OPEN_REPLAY;
		m.session = strtoull(key, NULL, 10);
		anvil_key_set(m.client, value);
		if (!send_msg(c, &m))
			break;
		n++;
	}
	if (n > 0)
		log_info("anvil: told it about %zu open session%s", n, n == 1 ? "" : "s");
}

/* Connected, or trying again later; false if not connected. */
static bool ensure_connected(struct anvil_client *c)
{
	if (c->fd >= 0 && !c->broken)
		return true;
	if (c->broken)
		return false;
	uint64_t now = mono_ms();
	if (now < c->next_connect_ms)
		return false;
	c->next_connect_ms = now + ANVIL_RECONNECT_MS;
	int fd = unixsock_connect(c->path);
	if (fd < 0) {
		time_t t = time(NULL);
		if (t - c->unreachable_warned >= UNREACHABLE_WARN_SECONDS) {
			log_warn("anvil %s: %s: limits fail open until it is back", c->path,
				 strerror(errno));
			c->unreachable_warned = t;
		}
		return false;
	}
	c->fd = fd;
	c->readable = event_new(c->evb, fd, EV_READ | EV_PERSIST, readable_cb, c);
	c->writable = event_new(c->evb, fd, EV_WRITE | EV_PERSIST, writable_cb, c);
	if (c->readable == NULL || c->writable == NULL)
		log_fatal("cannot allocate the anvil connection's events");
	event_add(c->readable, NULL);
	evtimer_del(c->reconnect);
	replay_sessions(c);
	return true;
}

static void reconnect_cb(evutil_socket_t fd, short what, void *arg)
{
	struct anvil_client *c = arg;
	(void)fd;
	(void)what;
	if (!ensure_connected(c) && c->sessions.count > 0) {
		/* Sessions are open: keep trying, so that they are counted. */
		struct timeval tv = { 0, ANVIL_RECONNECT_MS * 1000 };
		evtimer_add(c->reconnect, &tv);
	}
}

/* ---- the backend's operations --------------------------------------------------------------- */

static void client_ask(struct limits_backend *b, struct anvil_msg *req, limits_done_fn *done,
		       void *arg, struct limits_req **handle_r)
{
	struct anvil_client *c = (struct anvil_client *)b;
	struct limits_req *r = xcalloc(1, sizeof(*r));
	r->c = c;
	r->done = done;
	r->arg = arg;
	r->deadline = evtimer_new(c->evb, deadline_cb, r);
	if (r->deadline == NULL)
		log_fatal("cannot allocate a timer");
	*handle_r = r;
	if (++c->next_seq == 0)
		c->next_seq = 1; /* 0 is the replays' */
	r->seq = req->seq = c->next_seq;
	bool connected = ensure_connected(c);
	if (req->type == ANVIL_MSG_OPEN) {
		/* Remembered even when it cannot be sent: a later connection
		 * tells the anvil about it (a replay). */
		char key[24];
		snprintf(key, sizeof(key), "%" PRIu64, req->session);
		free(hashmap_put(&c->sessions, key, xstrdup(req->client)));
	}
	if (!connected || !send_msg(c, req)) {
		fail_soon(r);
		return;
	}
	r->waiting = true;
	r->prev = c->tail;
	if (c->tail != NULL)
		c->tail->next = r;
	else
		c->head = r;
	c->tail = r;
	struct timeval tv = { ANVIL_CLIENT_TIMEOUT_MS / 1000, (ANVIL_CLIENT_TIMEOUT_MS % 1000) * 1000 };
	evtimer_add(r->deadline, &tv);
}

static void client_cancel(struct limits_backend *b, struct limits_req **handle)
{
	(void)b;
	if (*handle == NULL)
		return;
	req_free(*handle);
	*handle = NULL;
}

static void client_close_session(struct limits_backend *b, uint64_t session)
{
	struct anvil_client *c = (struct anvil_client *)b;
	char key[24];
	snprintf(key, sizeof(key), "%" PRIu64, session);
	char *client = hashmap_remove(&c->sessions, key);
	if (client == NULL)
		return;
	free(client);
	struct anvil_msg m;
	anvil_msg_init(&m, ANVIL_MSG_CLOSE);
	m.session = session;
	send_msg(c, &m); /* without a connection the anvil does not count it anyway */
}

static void client_free(struct limits_backend *b)
{
	struct anvil_client *c = (struct anvil_client *)b;
	if (c->fd >= 0) {
		flush_out(c); /* the last CLOSEs, if the socket takes them */
		event_free(c->readable);
		event_free(c->writable);
		close(c->fd);
	}
	anvil_outbox_clear(&c->outbox);
	while (c->head != NULL)
		req_free(c->head); /* no session is left to answer */
	event_free(c->later);
	event_free(c->reconnect);
	hashmap_free(&c->sessions, free);
	free(c->path);
	free(c);
}

static const struct limits_backend_ops anvil_client_ops = {
	client_ask, client_cancel, client_close_session, client_free,
};

struct limits_backend *anvil_client_new(struct event_base *base, const char *socket_path)
{
	struct anvil_client *c = xcalloc(1, sizeof(*c));
	c->base.ops = &anvil_client_ops;
	c->evb = base;
	c->path = xstrdup(socket_path);
	c->fd = -1;
	c->outbox.max = ANVIL_QUEUE_MAX;
	c->later = event_new(base, -1, 0, later_cb, c);
	c->reconnect = evtimer_new(base, reconnect_cb, c);
	if (c->later == NULL || c->reconnect == NULL)
		log_fatal("cannot allocate the anvil client's events");
	return &c->base;
}

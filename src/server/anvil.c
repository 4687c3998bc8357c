/*
 * anvil.c - the anvil role: one process beside the smtp workers that
 * counts for all of them (open sessions, rates, the block map,
 * greylisting; anvil_table.h), so that a limit holds whichever worker a
 * connection lands on. The workers connect to spool_dir/private/anvil.sock
 * (anvil_proto.h) and ask without blocking their loops; the anvil answers
 * each request at once from memory and its store (LMDB in
 * spool_dir/private/anvil/, written without waiting for the disk, synced
 * every ANVIL_SYNC_SECONDS).
 *
 * Crash safety: each worker's sessions belong to its connection; when a
 * worker exits or is killed its socket closes and the anvil forgets its
 * sessions at once, so no count outlives the worker that held it. If the
 * anvil itself dies the supervisor starts it again; the workers connect
 * anew and tell it about the sessions they still have open (OPEN with
 * ANVIL_OPEN_REPLAY), so the counts are right again; rates start from
 * zero, blocks and greylisting are in the store.
 *
 * The anvil holds no configuration: each request carries the windows and
 * levels it is to be counted with, so it outlives reloads (the supervisor
 * starts it once and keeps it; a new generation's workers connect to the
 * same anvil and its counts).
 *
 * A libevent loop, one process, no threads. SIGTERM or SIGINT (a stop):
 * no new connection; the workers, which drain their sessions, keep
 * theirs until they exit, then the anvil syncs the store and exits (at
 * the latest shutdown_timeout + ANVIL_STOP_MARGIN seconds after the
 * signal), so that the draining sessions are still counted and no worker
 * sees its anvil go away.
 *
 * RFCs: none. Untrusted input: the workers' messages (a compromised smtp
 * worker may send anything: anvil_proto.c decodes them strictly, and a
 * violation ends that worker's connection). Privilege: `user`,
 * non-dumpable; it holds no descriptor of the other roles, no TLS key and
 * no tables.
 */
#include "server.h"

#include <errno.h>
#include <event2/event.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "../lib/buf.h"
#include "../lib/log.h"
#include "../lib/safeio.h"
#include "../lib/unixsock.h"
#include "../lib/xalloc.h"
#include "../policy/anvil_proto.h"
#include "../policy/anvil_table.h"

#define ANVIL_SWEEP_SECONDS 10
#define ANVIL_SYNC_SECONDS 5
#define ANVIL_STOP_MARGIN 2
/* Answers a slow worker has not taken yet, at most (then it is dropped). */
#define ANVIL_OUTBOX_MAX 4096

struct worker_conn {
	struct anvil *a;
	struct worker_conn *prev, *next;
	int fd;
	uint64_t owner;
	struct event *readable, *writable;
	struct anvil_outbox outbox; /* answers the socket had no room for */
};

struct anvil {
	struct event_base *base;
	struct anvil_table *table;
	int listener;
	struct event *accepting, *sweep, *sync, *sig_term, *sig_int;
	struct worker_conn *conns;
	uint64_t next_owner;
	char *path;
	uint64_t shutdown_timeout;
	bool stopping;
	struct event *stop_timer;
};

static uint64_t wall_ms(void)
{
	struct timeval tv;
	gettimeofday(&tv, NULL);
	return (uint64_t)tv.tv_sec * 1000u + (uint64_t)tv.tv_usec / 1000u;
}

/* ---- connections ---------------------------------------------------------------- */

static void conn_free(struct worker_conn *c, const char *why)
{
	struct anvil *a = c->a;
	size_t dropped = anvil_table_drop_owner(a->table, c->owner);
	if (why != NULL)
		log_warn("a worker's connection ended (%s): %zu open session%s forgotten", why,
			 dropped, dropped == 1 ? "" : "s");
	else if (dropped > 0) /* it exited or was killed with sessions open */
		log_info("a worker disconnected: %zu open session%s forgotten", dropped,
			 dropped == 1 ? "" : "s");
	else
		log_debug("a worker disconnected");
	event_free(c->readable);
	event_free(c->writable);
	close(c->fd);
	anvil_outbox_clear(&c->outbox);
	if (c->prev != NULL)
		c->prev->next = c->next;
	else
		a->conns = c->next;
	if (c->next != NULL)
		c->next->prev = c->prev;
	free(c);
	if (a->stopping && a->conns == NULL)
		event_base_loopexit(a->base, NULL); /* the last worker has gone */
}

/* Send what waits in the outbox; false if the connection broke. */
static bool flush_outbox(struct worker_conn *c)
{
	enum anvil_out out = anvil_outbox_flush(&c->outbox, c->fd);
	if (out == ANVIL_OUT_SENT)
		event_del(c->writable);
	return out != ANVIL_OUT_ERROR;
}

/* Answer m; false if the connection broke or the worker does not read its
 * answers (the caller frees it). */
static bool answer(struct worker_conn *c, const struct anvil_msg *m)
{
	switch (anvil_outbox_push(&c->outbox, c->fd, m)) {
	case ANVIL_OUT_SENT:
		return true;
	case ANVIL_OUT_QUEUED:
		event_add(c->writable, NULL);
		return true;
	default:
		return false;
	}
}

/* One request; false if the connection broke. */
static bool handle(struct worker_conn *c, const struct anvil_msg *req)
{
	struct anvil_table *t = c->a->table;
	struct anvil_msg reply;
	uint64_t now = wall_ms();
	switch (req->type) {
	case ANVIL_MSG_OPEN:
		anvil_msg_init(&reply, ANVIL_MSG_OPENED);
		anvil_table_open(t, c->owner, req, now, &reply);
		/* A replay (a worker telling a new anvil what is open) waits
		 * for no answer: thousands of them must not fill the outbox. */
		return (req->flags & ANVIL_OPEN_REPLAY) != 0 || answer(c, &reply);
	case ANVIL_MSG_CLOSE:
		anvil_table_close(t, c->owner, req->session);
		return true;
	case ANVIL_MSG_RATE:
		anvil_msg_init(&reply, ANVIL_MSG_RATED);
		reply.seq = req->seq;
		reply.n = req->n;
		anvil_table_rate(t, req->items, req->n, now, reply.results);
		return answer(c, &reply);
	case ANVIL_MSG_GREY:
		anvil_msg_init(&reply, ANVIL_MSG_GREYED);
		anvil_table_grey(t, req, now, &reply);
		return answer(c, &reply);
	default:
		return false; /* anvil_recv lets requests only through */
	}
}

static void readable_cb(evutil_socket_t fd, short what, void *arg)
{
	struct worker_conn *c = arg;
	(void)what;
	/* A bounded batch per turn, so one busy worker cannot starve the
	 * others; the event fires again while packets wait. */
	for (int i = 0; i < 256; i++) {
		struct anvil_msg m;
		const char *err = NULL;
		int rc = anvil_recv((int)fd, true, &m, &err);
		if (rc < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return;
		if (rc < 0) {
			conn_free(c, err);
			return;
		}
		if (rc == 0) {
			conn_free(c, NULL);
			return;
		}
		if (!handle(c, &m)) {
			conn_free(c, "it does not take its answers");
			return;
		}
	}
}

static void writable_cb(evutil_socket_t fd, short what, void *arg)
{
	struct worker_conn *c = arg;
	(void)fd;
	(void)what;
	if (!flush_outbox(c))
		conn_free(c, "it does not take its answers");
}

static void accept_cb(evutil_socket_t fd, short what, void *arg)
{
	struct anvil *a = arg;
	(void)what;
	for (;;) {
		int s = accept4((int)fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (s < 0) {
			if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
				log_warn("accept: %s", strerror(errno));
			return;
		}
		struct worker_conn *c = xcalloc(1, sizeof(*c));
		c->a = a;
		c->fd = s;
		c->outbox.max = ANVIL_OUTBOX_MAX;
		c->owner = ++a->next_owner;
		c->readable = event_new(a->base, s, EV_READ | EV_PERSIST, readable_cb, c);
		c->writable = event_new(a->base, s, EV_WRITE | EV_PERSIST, writable_cb, c);
		if (c->readable == NULL || c->writable == NULL)
			log_fatal("cannot allocate a connection's events");
		event_add(c->readable, NULL);
		c->next = a->conns;
		if (c->next != NULL)
			c->next->prev = c;
		a->conns = c;
	}
}

/* ---- upkeep and signals ---------------------------------------------------------------- */

static void sweep_cb(evutil_socket_t fd, short what, void *arg)
{
	struct anvil *a = arg;
	(void)fd;
	(void)what;
	anvil_table_sweep(a->table, wall_ms());
}

static void sync_cb(evutil_socket_t fd, short what, void *arg)
{
	struct anvil *a = arg;
	(void)fd;
	(void)what;
	anvil_table_sync(a->table);
}

static void stop_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
	struct anvil *a = arg;
	(void)fd;
	(void)what;
	event_base_loopexit(a->base, NULL);
}

static void stop_cb(evutil_socket_t sig, short what, void *arg)
{
	struct anvil *a = arg;
	(void)what;
	if (a->stopping)
		return;
	a->stopping = true;
	log_info("signal %d: stopping once the workers have (%zu open sessions counted)",
		 (int)sig, anvil_table_sessions(a->table));
	event_del(a->accepting);
	if (a->conns == NULL) {
		event_base_loopexit(a->base, NULL);
		return;
	}
	struct timeval tv = { (time_t)(a->shutdown_timeout + ANVIL_STOP_MARGIN), 0 };
	a->stop_timer = evtimer_new(a->base, stop_timeout_cb, a);
	if (a->stop_timer == NULL || evtimer_add(a->stop_timer, &tv) < 0)
		event_base_loopexit(a->base, NULL);
}

/* Listen beside the path and take it over by rename: a socket left by a
 * dead predecessor is replaced, never connected to. */
static int open_listener(struct anvil *a, const char *spool_dir)
{
	a->path = anvil_socket_path(spool_dir);
	buf_t tmp = BUF_INIT;
	buf_printf(&tmp, "%s.%ld", a->path, (long)getpid());
	unlink(buf_cstr(&tmp));
	a->listener = unixsock_listen(buf_cstr(&tmp), 128);
	if (a->listener < 0 || rename(buf_cstr(&tmp), a->path) < 0) {
		log_error("anvil socket %s: %s", a->path, strerror(errno));
		unlink(buf_cstr(&tmp));
		buf_free(&tmp);
		return -1;
	}
	buf_free(&tmp);
	return 0;
}

static struct event *timer(struct anvil *a, event_callback_fn fn, int seconds)
{
	struct event *e = event_new(a->base, -1, EV_PERSIST, fn, a);
	struct timeval tv = { seconds, 0 };
	if (e == NULL || event_add(e, &tv) < 0)
		log_fatal("cannot create a timer");
	return e;
}

int anvil_main(const struct config *cfg)
{
	struct anvil a = { .listener = -1, .shutdown_timeout = cfg->shutdown_timeout };
	signal(SIGPIPE, SIG_IGN);
	signal(SIGHUP, SIG_IGN);
	signal(SIGUSR2, SIG_IGN); /* not retired by reloads: it has no generation */
	char *dir = safeio_path_join(cfg->spool_dir, "private");
	char *store_dir = safeio_path_join(dir, "anvil");
	struct anvil_store *store = anvil_store_lmdb(store_dir);
	if (store == NULL) {
		log_error("anvil: keeping blocks and greylisting in memory only (they are "
			  "forgotten when the anvil restarts)");
		store = anvil_store_memory();
	}
	a.table = anvil_table_new(store);
	a.base = event_base_new();
	if (a.base == NULL)
		log_fatal("cannot create event base");
	if (open_listener(&a, cfg->spool_dir) < 0)
		return 1;
	a.accepting = event_new(a.base, a.listener, EV_READ | EV_PERSIST, accept_cb, &a);
	event_add(a.accepting, NULL);
	a.sweep = timer(&a, sweep_cb, ANVIL_SWEEP_SECONDS);
	a.sync = timer(&a, sync_cb, ANVIL_SYNC_SECONDS);
	a.sig_term = evsignal_new(a.base, SIGTERM, stop_cb, &a);
	a.sig_int = evsignal_new(a.base, SIGINT, stop_cb, &a);
	evsignal_add(a.sig_term, NULL);
	evsignal_add(a.sig_int, NULL);
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigprocmask(SIG_UNBLOCK, &set, NULL);
	log_info("anvil ready: %s (store: %s %s)", a.path, anvil_table_store_name(a.table),
		 store_dir);
	event_base_dispatch(a.base);
	sigprocmask(SIG_BLOCK, &set, NULL);
	while (a.conns != NULL)
		conn_free(a.conns, NULL);
	event_free(a.accepting);
	event_free(a.sweep);
	event_free(a.sync);
	event_free(a.sig_term);
	event_free(a.sig_int);
	if (a.stop_timer != NULL)
		event_free(a.stop_timer);
	close(a.listener); /* the path stays: a successor renames its own over it */
	anvil_table_free(&a.table);
	event_base_free(a.base);
	free(a.path);
	free(store_dir);
	free(dir);
	log_info("anvil exiting");
	return 0;
}

/*
 * relay_agent.c - the relay delivery agent's loop (see relay.h): read
 * DELIVER requests from the queue manager, queue each on its destination
 * (next hop and TLS level), open SMTP sessions within the limits
 * (delivery_concurrency in all, destination_concurrency per destination),
 * and answer each request with one RESULT.
 *
 * A destination whose sessions fail RELAY_DEST_FAILS times in a row
 * (no address, no connection, no greeting, no EHLO) is backed off as a
 * whole for destination_backoff: its waiting requests and the ones that
 * come meanwhile are answered at once with a temporary failure naming
 * the last error, instead of each trying again. A session that got
 * through its EHLO resets the count.
 *
 * When the queue manager closes the socket the agent stops: sessions in
 * flight are dropped (the queue manager treats their requests as
 * temporary failures; see docs/queue.md for the at-least-once window).
 *
 * RFCs: RFC 5321 section 4.5.4.1 (retry per destination). Untrusted
 * input: the requests (relay_proto.c decodes them; the queue file they
 * carry is read with qf_read, which trusts nothing). Privilege: `user`,
 * non-dumpable, no mailbox access; it opens no spool path (only the
 * descriptors it is handed).
 */
#include "relay.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "../lib/log.h"
#include "../lib/strutil.h"
#include "../lib/xalloc.h"
#include "relay_internal.h"

uint64_t relay_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* ---- jobs --------------------------------------------------------------------- */

void relay_job_set(struct relay_job *j, size_t i, enum relay_result res, const char *reason)
{
	if (i >= j->req->rcpt_count || j->settled[i])
		return;
	j->settled[i] = true;
	j->req->rcpts[i].result = res;
	relay_set_text(j->req->rcpts[i].reason, RELAY_REASON_MAX, reason);
}

void relay_job_set_rest(struct relay_job *j, enum relay_result res, const char *reason)
{
	for (size_t i = 0; i < j->req->rcpt_count; i++)
		relay_job_set(j, i, res, reason);
}

static void stop(struct relay_agent *a, int status);

/* Send what waits in the outbox, in order; keep the rest for later. */
static void flush_outbox(struct relay_agent *a)
{
	struct relay_out *o;

	while ((o = TAILQ_FIRST(&a->outbox)) != NULL) {
		if (relay_send_raw(a->sock, o->data, o->len) < 0) {
			if (errno == EAGAIN || errno == EWOULDBLOCK || errno == ENOBUFS) {
				event_add(a->out_ev, NULL);
				return;
			}
			log_error("relay: cannot answer the queue manager: %s; stopping",
				  strerror(errno));
			stop(a, 1);
			return;
		}
		TAILQ_REMOVE(&a->outbox, o, link);
		free(o);
	}
}

static void on_writable(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	flush_outbox(arg);
}

static void send_result(struct relay_agent *a, struct relay_job *j)
{
	struct relay_msg *m = j->req;

	m->type = RELAY_RESULT;
	relay_set_text(m->peer, RELAY_PEER_MAX, j->peer);
	if (a->stopping)
		return;
	unsigned char *data = xmalloc(RELAY_MSG_MAX);
	size_t len = relay_msg_encode(m, data);
	struct relay_out *o = xmalloc(sizeof(*o) + len);
	o->len = len;
	memcpy(o->data, data, len);
	free(data);
	TAILQ_INSERT_TAIL(&a->outbox, o, link);
	flush_outbox(a);
}

void relay_job_done(struct relay_job *j)
{
	struct relay_agent *a = j->agent;

	relay_job_set_rest(j, RELAY_TEMPFAIL, "4.3.0 relay agent: no result (internal error)");
	send_result(a, j);
	if (j->fd >= 0)
		close(j->fd);
	if (j->msg_read)
		qf_msg_free(&j->msg);
	free(j->accepted);
	free(j->settled);
	free(j->req);
	free(j);
	a->jobs--;
}

/* ---- destinations ------------------------------------------------------------- */

static struct relay_dest *find_dest(struct relay_agent *a, const struct relay_msg *m)
{
	char key[sizeof(((struct relay_dest *)0)->key)], hop[RELAY_HOST_MAX + 24];

	relay_nexthop_format(&m->hop, hop, sizeof(hop));
	snprintf(key, sizeof(key), "%s/%s", hop, relay_tls_level_name(m->tls));
	struct relay_dest *d;
	TAILQ_FOREACH(d, &a->dests, link)
		if (strcmp(d->key, key) == 0)
			return d;
	d = xcalloc(1, sizeof(*d));
	snprintf(d->key, sizeof(d->key), "%s", key);
	d->hop = m->hop;
	d->tls = m->tls;
	TAILQ_INIT(&d->jobs);
	TAILQ_INSERT_TAIL(&a->dests, d, link);
	return d;
}

/* A destination with nothing queued and no session is forgotten, unless
 * it is backed off (its state must outlive its last request). */
static void maybe_forget(struct relay_agent *a, struct relay_dest *d)
{
	if (d->queued == 0 && d->sessions == 0 && d->dead_until_ms == 0 && d->fails == 0) {
		TAILQ_REMOVE(&a->dests, d, link);
		free(d);
	}
}

struct relay_job *relay_dest_next_job(struct relay_dest *d)
{
	struct relay_job *j = TAILQ_FIRST(&d->jobs);

	if (j != NULL) {
		TAILQ_REMOVE(&d->jobs, j, link);
		d->queued--;
	}
	return j;
}

static bool dest_dead(struct relay_dest *d, uint64_t now)
{
	if (d->dead_until_ms == 0)
		return false;
	if (now >= d->dead_until_ms) {
		d->dead_until_ms = 0;
		d->fails = RELAY_DEST_FAILS - 1; /* one more failure backs it off again */
		return false;
	}
	return true;
}

static void fail_queued(struct relay_dest *d)
{
	char reason[2 * RELAY_REASON_MAX];
	struct relay_job *j;

	snprintf(reason, sizeof(reason), "4.4.1 destination %s backed off after repeated "
		 "failures; last error: %s", d->key, d->last_error);
	while ((j = relay_dest_next_job(d)) != NULL) {
		relay_job_set_rest(j, RELAY_TEMPFAIL, reason);
		relay_job_done(j);
	}
}

/* Start sessions where limits allow, fairly: one per destination per
 * round. */
static void dispatch(struct relay_agent *a)
{
	uint64_t now = relay_now_ms();
	bool started = true;
	size_t total = a->cfg->delivery_concurrency > 0 ? a->cfg->delivery_concurrency : 1;
	size_t per = a->cfg->destination_concurrency > 0 ? a->cfg->destination_concurrency : 1;

	while (started && !a->stopping) {
		started = false;
		struct relay_dest *d, *next;
		for (d = TAILQ_FIRST(&a->dests); d != NULL; d = next) {
			next = TAILQ_NEXT(d, link);
			if (d->queued == 0)
				continue;
			if (dest_dead(d, now)) {
				fail_queued(d);
				continue;
			}
			if (d->idle != NULL) {
				struct relay_job *j = relay_dest_next_job(d);
				relay_session_reuse(d, j);
				started = true;
				continue;
			}
			if (a->sessions >= total) {
				/* Every slot is taken: an idle connection of
				 * another destination makes room. */
				struct relay_dest *o;
				TAILQ_FOREACH(o, &a->dests, link)
					if (o != d && relay_session_close_idle(o))
						break;
				continue;
			}
			if (d->sessions >= per)
				continue;
			struct relay_job *j = relay_dest_next_job(d);
			d->sessions++;
			a->sessions++;
			relay_session_start(a, d, j);
			started = true;
		}
	}
}

void relay_session_ended(struct relay_agent *a, struct relay_dest *d, bool connected,
			 bool counts_as_failure, const char *error)
{
	d->sessions--;
	a->sessions--;
	if (connected) {
		d->fails = 0;
	} else if (counts_as_failure) {
		d->fails++;
		relay_set_text(d->last_error, RELAY_REASON_MAX, error != NULL ? error : "");
		if (d->fails >= RELAY_DEST_FAILS && a->cfg->destination_backoff > 0 &&
		    d->dead_until_ms == 0) {
			d->dead_until_ms = relay_now_ms() + a->cfg->destination_backoff * 1000u;
			log_warn("relay: destination %s backed off for %llus after %u failed "
				 "sessions: %s", d->key,
				 (unsigned long long)a->cfg->destination_backoff, d->fails,
				 d->last_error);
		}
	}
	if (d->dead_until_ms != 0)
		fail_queued(d);
	dispatch(a);
	maybe_forget(a, d);
}

/* ---- requests ----------------------------------------------------------------- */

/* The descriptor must be a regular file holding the message named. */
static bool read_job_file(struct relay_job *j)
{
	struct stat st;
	char *err = NULL;

	if (fstat(j->fd, &st) < 0 || !S_ISREG(st.st_mode) ||
	    (fcntl(j->fd, F_GETFL) & O_ACCMODE) != O_RDONLY)
		return false;
	if (qf_read(j->fd, &j->msg, &err) != 0) {
		log_error("%s: relay: the queue file does not read: %s", j->req->id, err);
		free(err);
		return false;
	}
	j->msg_read = true;
	return memcmp(j->msg.id, j->req->id, QUEUE_ID_LEN) == 0 &&
	       j->msg.content_off == j->req->content_off &&
	       j->msg.content_len == j->req->content_len;
}

static void take_request(struct relay_agent *a, struct relay_msg *m, int fd)
{
	struct relay_job *j = xcalloc(1, sizeof(*j));

	j->agent = a;
	j->req = m;
	j->fd = fd;
	j->accepted = xcalloc(m->rcpt_count, sizeof(*j->accepted));
	j->settled = xcalloc(m->rcpt_count, sizeof(*j->settled));
	a->jobs++;
	if (!read_job_file(j)) {
		log_error("%s: protocol violation from the queue manager: the queue file does "
			  "not hold the message it names", m->id);
		relay_job_set_rest(j, RELAY_TEMPFAIL, "4.3.0 relay agent cannot read the queue file");
		relay_job_done(j);
		return;
	}
	struct relay_dest *d = find_dest(a, m);
	j->dest = d;
	if (dest_dead(d, relay_now_ms())) {
		TAILQ_INSERT_TAIL(&d->jobs, j, link);
		d->queued++;
		fail_queued(d);
		return;
	}
	TAILQ_INSERT_TAIL(&d->jobs, j, link);
	d->queued++;
	dispatch(a);
}

static void stop(struct relay_agent *a, int status)
{
	if (a->stopping)
		return;
	a->status = status;
	a->stopping = true;
	event_base_loopbreak(a->base);
}

static void on_socket(evutil_socket_t fd, short what, void *arg)
{
	struct relay_agent *a = arg;

	(void)fd;
	(void)what;
	for (int n = 0; n < 64 && !a->stopping; n++) {
		struct relay_msg *m = xmalloc(sizeof(*m));
		const char *why = NULL;
		int qfd = -1;
		int rc = relay_recv(a->sock, true, m, &qfd, &why);
		if (rc <= 0) {
			free(m);
			if (rc == 0) {
				stop(a, 0);
			} else if (errno == EPROTO) {
				log_error("relay: protocol violation from the queue manager: %s; "
					  "stopping", why);
				stop(a, 1);
			} else if (errno != EAGAIN && errno != EWOULDBLOCK) {
				log_error("relay: queue manager socket: %s; stopping",
					  strerror(errno));
				stop(a, 1);
			}
			return;
		}
		if (m->type == RELAY_HELLO) {
			if (a->lock_fd >= 0) {
				log_error("relay: protocol violation from the queue manager: "
					  "second HELLO");
				close(qfd);
				free(m);
				stop(a, 1);
				return;
			}
			a->lock_fd = qfd;
			free(m);
			continue;
		}
		if (a->lock_fd < 0) {
			log_error("relay: protocol violation from the queue manager: request "
				  "before HELLO");
			close(qfd);
			free(m);
			stop(a, 1);
			return;
		}
		take_request(a, m, qfd);
	}
}

/* Once a second: destinations whose back-off ended may run again. */
static void on_tick(evutil_socket_t fd, short what, void *arg)
{
	struct relay_agent *a = arg;
	struct relay_dest *d, *next;

	(void)fd;
	(void)what;
	dispatch(a);
	uint64_t now = relay_now_ms();
	for (d = TAILQ_FIRST(&a->dests); d != NULL; d = next) {
		next = TAILQ_NEXT(d, link);
		if (d->dead_until_ms != 0 && now >= d->dead_until_ms) {
			d->dead_until_ms = 0;
			d->fails = 0;
		}
		maybe_forget(a, d);
	}
}

int relay_main(const struct config *cfg, int sock)
{
	struct relay_agent a;
	struct dns_options opt;
	char *err = NULL;

	memset(&a, 0, sizeof(a));
	a.cfg = cfg;
	a.sock = sock;
	a.lock_fd = -1;
	TAILQ_INIT(&a.dests);
	TAILQ_INIT(&a.outbox);
	log_set_role("relay");
	signal(SIGPIPE, SIG_IGN);
	a.base = event_base_new();
	if (a.base == NULL) {
		log_error("relay: cannot make an event loop");
		return 1;
	}
	dns_options_from_config(cfg, &opt);
	a.dns = dns_resolver_new(a.base, &opt, &err);
	if (a.dns == NULL) {
		/* Address literals still work; every lookup defers, saying why
		 * (a restart loop would help nobody). */
		log_error("relay: no DNS resolver: %s; deliveries that need DNS are deferred",
			  err);
		free(err);
	}
	if (relay_tls_init(&a) < 0) {
		dns_resolver_free(&a.dns);
		event_base_free(a.base);
		return 1;
	}
	evutil_make_socket_nonblocking(sock);
	a.sock_ev = event_new(a.base, sock, EV_READ | EV_PERSIST, on_socket, &a);
	a.tick = event_new(a.base, -1, EV_PERSIST, on_tick, &a);
	a.out_ev = event_new(a.base, sock, EV_WRITE, on_writable, &a);
	struct timeval second = { 1, 0 };
	event_add(a.sock_ev, NULL);
	event_add(a.tick, &second);
	log_info("relay delivery agent started: uid=%lu gid=%lu delivery_concurrency=%llu "
		 "destination_concurrency=%llu", (unsigned long)getuid(), (unsigned long)getgid(),
		 (unsigned long long)cfg->delivery_concurrency,
		 (unsigned long long)cfg->destination_concurrency);
	event_base_dispatch(a.base);
	/* The queue manager is gone or broke the protocol: it no longer
	 * listens, so the sessions in flight are dropped unanswered. */
	if (a.sessions > 0 || a.jobs > 0)
		log_info("relay: stopping with %zu session%s and %zu request%s in flight",
			 a.sessions, a.sessions == 1 ? "" : "s", a.jobs, a.jobs == 1 ? "" : "s");
	event_free(a.sock_ev);
	event_free(a.tick);
	event_free(a.out_ev);
	relay_tls_free(&a);
	dns_resolver_free(&a.dns);
	if (a.lock_fd >= 0)
		close(a.lock_fd);
	/* The process exits now; sessions and jobs are left to the kernel. */
	return a.status;
}

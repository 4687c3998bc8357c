/*
 * qmgr_relay.c - the queue manager's side of the relay delivery agent
 * (src/relay/, protocol in relay_proto.h): routing of remote recipients,
 * and one thread that keeps many DELIVER requests in flight and
 * completes each message once every result is in.
 *
 * A lane delivers a message's local copies as before; if the message
 * also has remote recipients, the lane hands the whole attempt (its
 * qmgr_run, with the locked queue file) to this thread at phase 3
 * instead of finishing it, and goes on with its next batch. So a slow
 * destination holds no lane: local delivery and other destinations go
 * on. The thread groups the remote mailboxes of a message by next hop
 * and TLS level into requests of at most RELAY_RCPTS_MAX recipients,
 * sends them, and when the results of all of a message's requests are
 * in, sets each pair's outcome from the peer's reply and completes the
 * attempt exactly as a lane would (mark done, bounce, defer or remove).
 * At most runs_max messages are with the relay at once (from
 * RLIMIT_NOFILE: 64 to 4096); a lane that would exceed it waits.
 *
 * If the agent dies or breaks the protocol, every request in flight is a
 * temporary failure, the queue manager stops (qmgr_lanes_agent_lost) and
 * the supervisor starts a new one with new agents, as for a local agent.
 * A recipient is marked done only after the agent reported the peer's
 * 2xx to the end of data: a crash in between means the message goes
 * again (at least once; docs/queue.md).
 *
 * RFCs: RFC 5321 section 4.5.4.1 (retry). Untrusted input: the agent's
 * replies (relay_proto.c decodes; each RESULT must answer a request in
 * flight with the same number of recipients). Privilege: unprivileged
 * queue manager (`user`).
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "../lib/log.h"
#include "../lib/xalloc.h"
#include "../mail/dsn.h"
#include "../relay/relay_proto.h"
#include "qmgr_internal.h"

/* Messages with the relay at once: each holds two descriptors here and
 * one in the agent, so the bound follows RLIMIT_NOFILE, within these. */
#define QMGR_RELAY_RUNS_MIN 64
#define QMGR_RELAY_RUNS_MAX 4096
#define RELAY_STOP_WAIT_MS 3000
#define REASON_RELAY_LOST "4.3.0 relay delivery agent died or failed"
#define REASON_NO_RESULT "4.3.0 relay delivery agent gave no result"

/* One request in flight: which pairs of which run. */
struct relay_req {
	struct relay_req *next;
	uint32_t seq;
	struct relay_run *run;
	size_t count;
	size_t pairs[RELAY_RCPTS_MAX];
};

/* A run with the relay. */
struct relay_run {
	struct relay_run *next;
	struct qmgr_run *r;
	size_t outstanding;  /* requests not yet answered */
};

struct qmgr_relay {
	struct qmgr *q;
	int fd;
	pid_t pid;
	int wake_fd;
	pthread_t thread;
	bool thread_running;
	uint32_t seq;
	struct relay_msg *msg;         /* the thread's encode/decode buffer */
	/* Under lock: */
	pthread_mutex_t lock;
	pthread_cond_t room;           /* runs in flight went below the limit */
	struct relay_run *submitted;   /* handed over, not yet sent */
	struct relay_run **submitted_tail;
	size_t runs;                   /* submitted or in flight */
	size_t runs_max;               /* the bound on runs */
	bool stop;
	bool lost;
	/* The thread's own: */
	struct relay_req *inflight;
};

/* ---- routing (lane threads) ----------------------------------------------- */

bool qmgr_run_has_remote(const struct qmgr_run *r)
{
	for (size_t k = 0; k < r->pair_count; k++)
		if (r->pairs[k].remote && r->pairs[k].dup_of == 0)
			return true;
	return false;
}

static void set_pair(struct qmgr_pair *p, enum qmgr_outcome kind, const char *relay,
		     const char *reason)
{
	p->kind = kind;
	p->relay = relay;
	free(p->reason);
	p->reason = xstrdup(reason);
}

void qmgr_relay_route(struct qmgr_run *r, struct qmgr_pair *p)
{
	struct qmgr *q = r->q;
	struct relay_route route;
	const char *at = strrchr(p->final, '@');
	const char *domain = at != NULL ? at + 1 : "";

	if (domain[0] == '\0' || !qf_text_ok(p->final, QF_ADDR_MAX)) {
		set_pair(p, QO_PERM, "none", "5.1.3 bad recipient address for relaying");
		return;
	}
	pthread_mutex_lock(&q->router_lock);
	if (q->router != NULL) {
		relay_router_route(q->router, domain, &route);
	} else {
		memset(&route, 0, sizeof(route));
		route.kind = RELAY_ROUTE_SMTP;
		route.nexthop.mx = true;
		route.nexthop.port = q->cfg->relay_port > 0 ? (uint16_t)q->cfg->relay_port : 25;
		snprintf(route.nexthop.host, sizeof(route.nexthop.host), "%s", domain);
	}
	enum relay_tls_level tls = q->router != NULL
					   ? relay_router_tls(q->router, domain, &route.nexthop)
					   : RELAY_TLS_MAY;
	pthread_mutex_unlock(&q->router_lock);
	switch (route.kind) {
	case RELAY_ROUTE_LOCAL:
		if (!recipients_is_user(q->tables, p->final))
			set_pair(p, QO_PERM, "local", "5.1.1 unknown user");
		else
			qmgr_local_deliver(r, p);
		return;
	case RELAY_ROUTE_DISCARD:
		set_pair(p, QO_SENT, "discard", "discarded by transport_file");
		return;
	case RELAY_ROUTE_ERROR:
		set_pair(p, route.error_temporary ? QO_TEMP : QO_PERM, "error", route.error);
		return;
	case RELAY_ROUTE_SMTP:
		break;
	}
	if (route.nexthop.host[0] == '\0') {
		set_pair(p, QO_PERM, "none", "5.1.2 no next hop for the recipient domain");
		return;
	}
	p->remote = true;
	p->hop = route.nexthop;
	p->tls = tls;
	set_pair(p, QO_TEMP, "smtp", REASON_NO_RESULT);
}

/* ---- submission (lane threads) ----------------------------------------------- */

static void wake(struct qmgr_relay *rl)
{
	uint64_t one = 1;

	if (write(rl->wake_fd, &one, sizeof(one)) < 0 && errno != EAGAIN)
		log_error("qmgr relay: wake-up: %s", strerror(errno));
}

void qmgr_relay_submit(struct qmgr *q, struct qmgr_run *r)
{
	struct qmgr_relay *rl = q->relay;
	struct relay_run *run = xcalloc(1, sizeof(*run));

	run->r = r;
	pthread_mutex_lock(&rl->lock);
	while (rl->runs >= rl->runs_max && !rl->lost && !rl->stop)
		pthread_cond_wait(&rl->room, &rl->lock);
	rl->runs++;
	*rl->submitted_tail = run;
	rl->submitted_tail = &run->next;
	pthread_mutex_unlock(&rl->lock);
	wake(rl);
}

/* ---- the relay thread --------------------------------------------------------- */

/* Every result of the run is in: duplicates take their original's
 * outcome, then the attempt ends as a lane's would. */
static void complete_run(struct qmgr_relay *rl, struct relay_run *run)
{
	struct qmgr_run *r = run->r;

	for (size_t k = 0; k < r->pair_count; k++) {
		struct qmgr_pair *p = &r->pairs[k];
		if (p->dup_of == 0 || !r->pairs[p->dup_of - 1].remote)
			continue;
		const struct qmgr_pair *o = &r->pairs[p->dup_of - 1];
		p->kind = o->kind;
		p->relay = o->relay_peer != NULL ? o->relay : "smtp";
		free(p->reason);
		p->reason = xstrdup(o->reason);
		free(p->relay_peer);
		p->relay_peer = o->relay_peer != NULL ? xstrdup(o->relay_peer) : NULL;
		if (p->relay_peer != NULL)
			p->relay = p->relay_peer;
	}
	qmgr_run_settle(r);
	qmgr_run_free(r);
	free(r);
	free(run);
	qmgr_give_tokens(rl->q);
	pthread_mutex_lock(&rl->lock);
	rl->runs--;
	pthread_cond_broadcast(&rl->room);
	pthread_mutex_unlock(&rl->lock);
}

static void agent_lost(struct qmgr_relay *rl, const char *what, const char *detail)
{
	pthread_mutex_lock(&rl->lock);
	bool was = rl->lost;
	rl->lost = true;
	pthread_cond_broadcast(&rl->room);
	pthread_mutex_unlock(&rl->lock);
	if (was)
		return;
	log_error("relay delivery agent pid %d: %s%s%s; the deliveries in flight are deferred "
		  "and the queue manager exits so that the supervisor restarts it with new "
		  "agents", (int)rl->pid, what, detail != NULL ? ": " : "",
		  detail != NULL ? detail : "");
	if (rl->pid > 0)
		kill(rl->pid, SIGKILL);
	qmgr_lanes_agent_lost(rl->q);
}

/* Same next hop and TLS level? */
static bool same_dest(const struct qmgr_pair *a, const struct qmgr_pair *b)
{
	return a->tls == b->tls && a->hop.port == b->hop.port && a->hop.mx == b->hop.mx &&
	       a->hop.literal == b->hop.literal && strcmp(a->hop.host, b->hop.host) == 0;
}

static bool send_request(struct qmgr_relay *rl, struct relay_run *run, struct relay_req *req,
			 int fd)
{
	struct qmgr_run *r = run->r;
	struct relay_msg *m = rl->msg;
	const struct qmgr_pair *first = &r->pairs[req->pairs[0]];

	memset(m, 0, offsetof(struct relay_msg, rcpts));
	m->type = RELAY_DELIVER;
	m->seq = req->seq = ++rl->seq;
	memcpy(m->id, r->msg.id, sizeof(m->id));
	snprintf(m->sender, sizeof(m->sender), "%s", r->msg.sender);
	m->content_off = r->msg.content_off;
	m->content_len = r->msg.content_len;
	m->flags = (uint8_t)((r->msg.smtputf8 ? RELAY_FLAG_SMTPUTF8 : 0) |
			     (r->msg.body_8bitmime ? RELAY_FLAG_8BITMIME : 0));
	m->hop = first->hop;
	m->tls = first->tls;
	/* the DSN parameters the message came with (RFC 3461), for the peer */
	snprintf(m->envid, sizeof(m->envid), "%s", r->msg.dsn_envid != NULL ? r->msg.dsn_envid : "");
	m->ret = r->msg.dsn_ret == DSN_RET_FULL	  ? RELAY_RET_FULL
		 : r->msg.dsn_ret == DSN_RET_HDRS ? RELAY_RET_HDRS
						  : RELAY_RET_NONE;
	m->rcpt_count = req->count;
	for (size_t i = 0; i < req->count; i++) {
		const struct qmgr_pair *p = &r->pairs[req->pairs[i]];
		const struct qf_rcpt *rc = &r->msg.rcpts[p->rcpt];
		memset(&m->rcpts[i], 0, sizeof(m->rcpts[i]));
		snprintf(m->rcpts[i].address, sizeof(m->rcpts[i].address), "%s", p->final);
		m->rcpts[i].notify = (uint8_t)(rc->dsn_notify & DSN_NOTIFY_ALL);
		if (rc->dsn_orcpt != NULL && strlen(rc->dsn_orcpt) <= RELAY_ORCPT_MAX)
			snprintf(m->rcpts[i].orcpt, sizeof(m->rcpts[i].orcpt), "%s", rc->dsn_orcpt);
	}
	if (relay_send(rl->fd, m, fd) < 0) {
		agent_lost(rl, "cannot send a request", strerror(errno));
		return false;
	}
	req->next = rl->inflight;
	rl->inflight = req;
	run->outstanding++;
	return true;
}

/* Send the requests of one run; complete it at once if none can go. */
static void start_run(struct qmgr_relay *rl, struct relay_run *run, bool lost)
{
	struct qmgr_run *r = run->r;
	bool *sent = xcalloc(r->pair_count, sizeof(*sent));
	int fd = lost ? -1 : qmgr_run_readonly_fd(r);
	char *why = NULL;

	if (!lost && fd < 0)
		why = qf_errf("4.3.0 reopen %s: %s", r->path, strerror(errno));
	for (size_t k = 0; k < r->pair_count; k++) {
		struct qmgr_pair *p = &r->pairs[k];
		if (!p->remote || p->dup_of != 0 || sent[k])
			continue;
		if (lost || fd < 0) {
			set_pair(p, QO_TEMP, "smtp", why != NULL ? why : REASON_RELAY_LOST);
			continue;
		}
		struct relay_req *req = xcalloc(1, sizeof(*req));
		req->run = run;
		for (size_t m = k; m < r->pair_count && req->count < RELAY_RCPTS_MAX; m++) {
			struct qmgr_pair *o = &r->pairs[m];
			if (o->remote && o->dup_of == 0 && !sent[m] && same_dest(p, o)) {
				req->pairs[req->count++] = m;
				sent[m] = true;
			}
		}
		if (!send_request(rl, run, req, fd)) {
			/* The agent is lost: this request's pairs and every
			 * later one fail here; those already in flight are
			 * failed by fail_inflight. */
			for (size_t i = 0; i < req->count; i++)
				set_pair(&r->pairs[req->pairs[i]], QO_TEMP, "smtp", REASON_RELAY_LOST);
			free(req);
			lost = true;
		}
	}
	free(sent);
	free(why);
	if (run->outstanding == 0)
		complete_run(rl, run);
}

static struct relay_req *take_inflight(struct qmgr_relay *rl, uint32_t seq)
{
	for (struct relay_req **p = &rl->inflight; *p != NULL; p = &(*p)->next)
		if ((*p)->seq == seq) {
			struct relay_req *req = *p;
			*p = req->next;
			return req;
		}
	return NULL;
}

static void apply_result(struct qmgr_relay *rl, struct relay_req *req, const struct relay_msg *m)
{
	struct relay_run *run = req->run;
	struct qmgr_run *r = run->r;

	for (size_t i = 0; i < req->count; i++) {
		struct qmgr_pair *p = &r->pairs[req->pairs[i]];
		const struct relay_rcpt *res = &m->rcpts[i];
		bool sent = res->result == RELAY_SENT || res->result == RELAY_SENT_NO_DSN;
		enum qmgr_outcome kind = sent				 ? QO_SENT
					 : res->result == RELAY_PERMFAIL ? QO_PERM
									 : QO_TEMP;
		/* who reports a success asked for: the peer, if it took the
		 * request; else this host ("relayed", RFC 3461 4.3) */
		p->relayed_without_dsn = res->result == RELAY_SENT_NO_DSN;
		free(p->relay_peer);
		p->relay_peer = xstrdup(m->peer[0] != '\0' ? m->peer : "none");
		set_pair(p, kind, p->relay_peer,
			 res->reason[0] != '\0' ? res->reason
						: (kind == QO_SENT ? "sent" : REASON_NO_RESULT));
	}
	free(req);
	if (--run->outstanding == 0)
		complete_run(rl, run);
}

/* The agent is gone: every request in flight failed temporarily. */
static void fail_inflight(struct qmgr_relay *rl)
{
	struct relay_req *req;

	while ((req = rl->inflight) != NULL) {
		rl->inflight = req->next;
		struct relay_run *run = req->run;
		for (size_t i = 0; i < req->count; i++)
			set_pair(&run->r->pairs[req->pairs[i]], QO_TEMP, "smtp", REASON_RELAY_LOST);
		free(req);
		if (--run->outstanding == 0)
			complete_run(rl, run);
	}
}

static void read_results(struct qmgr_relay *rl)
{
	for (;;) {
		const char *why = NULL;
		int fd = -1;
		int rc = relay_recv(rl->fd, false, rl->msg, &fd, &why);
		if (rc == 0) {
			agent_lost(rl, "closed its socket", NULL);
			return;
		}
		if (rc < 0) {
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				return;
			agent_lost(rl, errno == EPROTO ? "protocol violation" : why,
				   errno == EPROTO ? why : strerror(errno));
			return;
		}
		struct relay_req *req = take_inflight(rl, rl->msg->seq);
		if (req == NULL || req->count != rl->msg->rcpt_count) {
			agent_lost(rl, "protocol violation", "a result nobody asked for");
			if (req != NULL) {
				req->next = rl->inflight;
				rl->inflight = req;
			}
			return;
		}
		apply_result(rl, req, rl->msg);
	}
}

/* Stop waiting for the agent: what is in flight is deferred. */
static void give_up(struct qmgr_relay *rl)
{
	pthread_mutex_lock(&rl->lock);
	rl->lost = true;
	pthread_cond_broadcast(&rl->room);
	pthread_mutex_unlock(&rl->lock);
	fail_inflight(rl);
}

static void *relay_thread(void *arg)
{
	struct qmgr_relay *rl = arg;
	uint64_t stop_deadline = 0;

	for (;;) {
		pthread_mutex_lock(&rl->lock);
		struct relay_run *list = rl->submitted;
		rl->submitted = NULL;
		rl->submitted_tail = &rl->submitted;
		bool stop = rl->stop, lost = rl->lost;
		pthread_mutex_unlock(&rl->lock);
		while (list != NULL) {
			struct relay_run *run = list;
			list = run->next;
			run->next = NULL;
			start_run(rl, run, lost);
			pthread_mutex_lock(&rl->lock);
			lost = rl->lost;
			pthread_mutex_unlock(&rl->lock);
		}
		if (lost)
			fail_inflight(rl);
		if (stop && rl->inflight == NULL) {
			pthread_mutex_lock(&rl->lock);
			bool more = rl->submitted != NULL;
			pthread_mutex_unlock(&rl->lock);
			if (!more)
				break;
			continue;
		}
		int timeout = -1;
		if (stop) {
			struct timespec ts;
			clock_gettime(CLOCK_MONOTONIC, &ts);
			uint64_t now = (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
			if (stop_deadline == 0)
				stop_deadline = now + RELAY_STOP_WAIT_MS;
			if (now >= stop_deadline) {
				log_info("relay: deliveries still in flight at stop: deferred");
				give_up(rl);
				continue;
			}
			timeout = (int)(stop_deadline - now);
		}
		struct pollfd pfd[2] = { { lost ? -1 : rl->fd, POLLIN, 0 }, { rl->wake_fd, POLLIN, 0 } };
		int n = poll(pfd, 2, timeout);
		if (n < 0 && errno != EINTR) {
			agent_lost(rl, "poll failed", strerror(errno));
			fail_inflight(rl);
			continue;
		}
		if (n > 0 && pfd[1].revents != 0)
			qmgr_eventfd_drain(rl->wake_fd);
		if (n > 0 && pfd[0].revents != 0)
			read_results(rl);
	}
	return NULL;
}

/* ---- start and stop (main thread) ------------------------------------------ */

int qmgr_relay_start(struct qmgr *q, int fd, pid_t pid, int lock_fd)
{
	struct qmgr_relay *rl = xcalloc(1, sizeof(*rl));

	rl->q = q;
	rl->fd = fd;
	rl->pid = pid;
	rl->msg = xmalloc(sizeof(*rl->msg));
	rl->submitted_tail = &rl->submitted;
	struct rlimit lim;
	rl->runs_max = QMGR_RELAY_RUNS_MIN;
	if (getrlimit(RLIMIT_NOFILE, &lim) == 0 && lim.rlim_cur != RLIM_INFINITY &&
	    lim.rlim_cur > 512 + 3 * QMGR_RELAY_RUNS_MIN)
		rl->runs_max = (size_t)(lim.rlim_cur - 512) / 3;
	else if (getrlimit(RLIMIT_NOFILE, &lim) == 0 && lim.rlim_cur == RLIM_INFINITY)
		rl->runs_max = QMGR_RELAY_RUNS_MAX;
	if (rl->runs_max > QMGR_RELAY_RUNS_MAX)
		rl->runs_max = QMGR_RELAY_RUNS_MAX;
	pthread_mutex_init(&rl->lock, NULL);
	pthread_cond_init(&rl->room, NULL);
	rl->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	struct relay_msg hello = { .type = RELAY_HELLO, .version = RELAY_PROTO_VERSION };
	if (rl->wake_fd < 0 || relay_send(fd, &hello, lock_fd) < 0) {
		log_error("relay delivery agent pid %d: cannot start: %s", (int)pid,
			  strerror(errno));
		goto fail;
	}
	int rc = pthread_create(&rl->thread, NULL, relay_thread, rl);
	if (rc != 0) {
		log_error("qmgr relay: cannot start a thread: %s", strerror(rc));
		goto fail;
	}
	rl->thread_running = true;
	q->relay = rl;
	return 0;
fail:
	q->relay = rl; /* so that qmgr_relay_stop reaps the agent */
	rl->lost = true;
	return -1;
}

void qmgr_relay_stop(struct qmgr *q)
{
	struct qmgr_relay *rl = q->relay;
	int status = 0;

	if (rl == NULL)
		return;
	pthread_mutex_lock(&rl->lock);
	rl->stop = true;
	pthread_cond_broadcast(&rl->room);
	pthread_mutex_unlock(&rl->lock);
	if (rl->thread_running) {
		wake(rl);
		pthread_join(rl->thread, NULL);
	}
	if (rl->fd >= 0)
		close(rl->fd); /* the agent sees the end of stream and exits */
	rl->fd = -1;
	for (int waited = 0; rl->pid > 0; waited += 10) {
		pid_t pid = waitpid(rl->pid, &status, WNOHANG);
		if (pid == rl->pid || (pid < 0 && errno != EINTR))
			break;
		if (waited >= 5000) {
			log_warn("relay delivery agent pid %d did not stop, killing it", (int)rl->pid);
			kill(rl->pid, SIGKILL);
			waitpid(rl->pid, &status, 0);
			break;
		}
		struct timespec pause = { 0, 10 * 1000000L };
		nanosleep(&pause, NULL);
	}
	if (rl->pid > 0 && WIFSIGNALED(status))
		log_warn("relay delivery agent pid %d killed by signal %d", (int)rl->pid,
			 WTERMSIG(status));
	if (rl->wake_fd >= 0)
		close(rl->wake_fd);
	pthread_mutex_destroy(&rl->lock);
	pthread_cond_destroy(&rl->room);
	free(rl->msg);
	free(rl);
	q->relay = NULL;
}

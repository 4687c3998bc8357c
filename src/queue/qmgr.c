/*
 * qmgr.c - the queue manager's main loop (see qmgr.h): take the spool
 * lock, recover what is on disk, start the delivery lanes, then add
 * messages as the notify pipe announces them, promote deferred ones when
 * due and rescan the spool every queue_scan_interval seconds.
 * SIGTERM/SIGINT end the loop; each lane finishes its batch first.
 *
 * Delivery runs in the lanes (qmgr_lanes.c): one thread per local
 * delivery agent, each running batches of up to QMGR_BATCH_MAX ready
 * messages that share their new/ fsyncs (qmgr_batch.c). Every Maildir
 * write goes through an agent, the queue manager's child running as
 * mail_owner (qmgr_local.c); if one dies, the other lanes finish their
 * batches and qmgr_run returns 1.
 *
 * The main thread also keeps the in-flow token stock (flow.h): at start
 * it tops the pipe up to in_flow_tokens; the lanes give one token back
 * for each accepted message that leaves the ready list.
 *
 * RFCs: RFC 5321 section 4.5.4 (retry), see qmgr_deliver.c. Untrusted
 * input: the notify pipe, spool contents (checked in qmgr_scan.c and
 * queue_file.c) and the agents' replies (qmgr_local.c). Privilege: runs
 * as `user` (forked and setuid by the supervisor), non-dumpable; it is
 * the only process that moves accepted queue files.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#include "../lib/buf.h"
#include "../lib/log.h"
#include "../lib/safeio.h"
#include "../lib/xalloc.h"
#include "flow.h"
#include "qmgr.h"
#include "qmgr_internal.h"

#define QMGR_DEFAULT_SCAN_SECS 60
#define QMGR_MAX_SLEEP_MS 3600000
#define QMGR_LOCK_POLL_MS 100

static volatile sig_atomic_t qmgr_stop;

static void on_stop_signal(int sig)
{
	(void)sig;
	qmgr_stop = 1;
}

struct qmgr_signals {
	struct sigaction old_term, old_int;
	sigset_t old_mask;
	sigset_t stop_set;  /* SIGTERM, SIGINT */
	sigset_t wait_mask; /* mask while sleeping in ppoll: stop signals open */
};

/* Catch SIGTERM/SIGINT, but block them except while waiting in ppoll(),
 * so a signal can neither interrupt a delivery nor be missed just before
 * the wait. The lanes inherit the mask: only the main thread takes them. */
static void signals_install(struct qmgr_signals *s)
{
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_stop_signal;
	sigemptyset(&sa.sa_mask);
	sigemptyset(&s->stop_set);
	sigaddset(&s->stop_set, SIGTERM);
	sigaddset(&s->stop_set, SIGINT);
	sigprocmask(SIG_BLOCK, &s->stop_set, &s->old_mask);
	sigaction(SIGTERM, &sa, &s->old_term);
	sigaction(SIGINT, &sa, &s->old_int);
	s->wait_mask = s->old_mask;
	sigdelset(&s->wait_mask, SIGTERM);
	sigdelset(&s->wait_mask, SIGINT);
}

/* A stop signal still pending is the stop under way (the supervisor's
 * SIGTERM after a SIGINT to the whole process group, say): take it while
 * it is blocked, then give back the caller's handlers and mask. Restoring
 * the default action with it pending would kill the process instead of
 * letting it exit 0. */
static void signals_restore(const struct qmgr_signals *s)
{
	struct timespec now = { 0, 0 };

	while (sigtimedwait(&s->stop_set, NULL, &now) > 0)
		qmgr_stop = 1;
	sigaction(SIGTERM, &s->old_term, NULL);
	sigaction(SIGINT, &s->old_int, NULL);
	sigprocmask(SIG_SETMASK, &s->old_mask, NULL);
}

/* Exclusive lock on <spool>/qmgr.lock, waiting for an older manager
 * (polled; the stop signals are taken only in the wait, so SIGTERM/SIGINT
 * end it without a race). */
static int take_lock(const char *spool_dir, const struct qmgr_signals *sigs)
{
	char *path = safeio_path_join(spool_dir, "qmgr.lock");
	int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
	bool told = false;

	if (fd < 0) {
		log_error("open %s: %s", path, strerror(errno));
		free(path);
		return -1;
	}
	int rc;
	while ((rc = flock(fd, LOCK_EX | LOCK_NB)) < 0 && !qmgr_stop) {
		if (errno != EWOULDBLOCK && errno != EINTR) {
			log_error("lock %s: %s", path, strerror(errno));
			break;
		}
		if (!told)
			log_info("waiting for another queue manager to release %s", path);
		told = true;
		struct timespec pause = { 0, QMGR_LOCK_POLL_MS * 1000000L };
		ppoll(NULL, 0, &pause, &sigs->wait_mask);
	}
	if (rc < 0) {
		close(fd);
		fd = -1;
	}
	free(path);
	return fd;
}

static uint64_t mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void init_lanes(struct qmgr *q, const struct qmgr_links *links)
{
	q->lane_count = links->agent_count;
	q->lanes = xcalloc(q->lane_count > 0 ? q->lane_count : 1, sizeof(*q->lanes));
	for (size_t i = 0; i < q->lane_count; i++) {
		struct qmgr_lane *lane = &q->lanes[i];
		lane->q = q;
		lane->number = (unsigned)(i + 1);
		lane->agent_fd = links->agents[i].fd;
		lane->agent_pid = links->agents[i].pid;
		lane->wake_fd = -1;
	}
}

/* One eventfd for the main thread, one per lane; -1 (logged) if not. */
static int open_wakeups(struct qmgr *q)
{
	q->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (q->wake_fd < 0)
		goto fail;
	for (size_t i = 0; i < q->lane_count; i++) {
		q->lanes[i].wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
		if (q->lanes[i].wake_fd < 0)
			goto fail;
	}
	return 0;
fail:
	log_error("queue manager: eventfd: %s", strerror(errno));
	return -1;
}

static int qmgr_init(struct qmgr *q, const struct config *cfg,
		     const struct recipient_tables *tables, const struct qmgr_links *links)
{
	memset(q, 0, sizeof(*q));
	q->cfg = cfg;
	q->tables = tables;
	q->notify_fd = links->notify_fd;
	q->flow_fd = links->flow_fd;
	q->wake_fd = -1;
	q->wake_fifo_fd = -1;
	pthread_mutex_init(&q->lock, NULL);
	pthread_mutex_init(&q->router_lock, NULL);
	q->router = links->router;
	init_lanes(q, links);
	q->dir_incoming = safeio_path_join(cfg->spool_dir, "incoming");
	q->dir_queue = safeio_path_join(cfg->spool_dir, "queue");
	q->dir_deferred = safeio_path_join(cfg->spool_dir, "deferred");
	q->dir_corrupt = safeio_path_join(cfg->spool_dir, "corrupt");
	q->dir_quarantine = safeio_path_join(cfg->spool_dir, "quarantine");
	if (q->notify_fd >= 0) {
		int flags = fcntl(q->notify_fd, F_GETFL);
		if (flags < 0 || fcntl(q->notify_fd, F_SETFL, flags | O_NONBLOCK) < 0)
			log_warn("notify pipe: cannot make it non-blocking: %s",
				 strerror(errno));
	}
	if (q->lane_count == 0) {
		log_error("queue manager: no local delivery agent");
		return -1;
	}
	return open_wakeups(q);
}

/* Close every agent's socket first, so that they all stop at once, then
 * reap them. */
static void stop_agents(struct qmgr *q)
{
	for (size_t i = 0; i < q->lane_count; i++)
		qmgr_local_close(&q->lanes[i]);
	for (size_t i = 0; i < q->lane_count; i++)
		qmgr_local_reap(&q->lanes[i]);
}

static void qmgr_cleanup(struct qmgr *q)
{
	stop_agents(q);
	for (size_t i = 0; i < q->lane_count; i++)
		if (q->lanes[i].wake_fd >= 0)
			close(q->lanes[i].wake_fd);
	free(q->lanes);
	if (q->wake_fd >= 0)
		close(q->wake_fd);
	if (q->wake_fifo_fd >= 0)
		close(q->wake_fifo_fd);
	qmgr_sched_free(q);
	pthread_mutex_destroy(&q->lock);
	pthread_mutex_destroy(&q->router_lock);
	free(q->dir_incoming);
	free(q->dir_queue);
	free(q->dir_deferred);
	free(q->dir_corrupt);
	free(q->dir_quarantine);
}

/* Top the flow pipe up to in_flow_tokens: after a restart the tokens of
 * the previous queue manager may still be there. */
static void flow_stock(struct qmgr *q)
{
	int have = 0;
	uint64_t want = q->cfg->in_flow_tokens;

	if (q->flow_fd < 0)
		return;
	if (ioctl(q->flow_fd, FIONREAD, &have) < 0 || have < 0)
		have = 0;
	if ((uint64_t)have < want)
		queue_flow_give(q->flow_fd, (size_t)(want - (uint64_t)have));
}

/* How long poll may sleep: until the next due deferred message or the
 * next scan. */
static struct timespec sleep_time(struct qmgr *q, uint64_t next_scan_ms)
{
	uint64_t ms = QMGR_MAX_SLEEP_MS, now_ms = mono_ms();
	uint64_t due = qmgr_next_due(q), now_us = qmgr_now_us();
	struct timespec ts;

	if (due != UINT64_MAX)
		ms = due <= now_us ? 0 : (due - now_us + 999) / 1000;
	uint64_t to_scan = next_scan_ms > now_ms ? next_scan_ms - now_ms : 0;
	if (to_scan < ms)
		ms = to_scan;
	if (ms > QMGR_MAX_SLEEP_MS)
		ms = QMGR_MAX_SLEEP_MS;
	ts.tv_sec = (time_t)(ms / 1000);
	ts.tv_nsec = (long)(ms % 1000) * 1000000L;
	return ts;
}

static bool agent_lost(struct qmgr *q)
{
	pthread_mutex_lock(&q->lock);
	bool lost = q->agent_lost;
	pthread_mutex_unlock(&q->lock);
	return lost;
}

static void run_loop(struct qmgr *q, const struct qmgr_signals *sigs)
{
	uint64_t interval = q->cfg->queue_scan_interval > 0
				    ? q->cfg->queue_scan_interval
				    : QMGR_DEFAULT_SCAN_SECS;
	uint64_t next_scan = mono_ms() + interval * 1000u;

	while (!qmgr_stop && !agent_lost(q)) {
		qmgr_promote_due(q, qmgr_now_us());
		if (mono_ms() >= next_scan) {
			qmgr_scan(q, false);
			next_scan = mono_ms() + interval * 1000u;
			continue;
		}
		/* notify_fd -1 is skipped by poll; wake_fd says a lane deferred
		 * a message to an earlier time or lost its agent; the wake-up
		 * FIFO announces messages released from quarantine/ or hold/. */
		struct pollfd pfd[3] = { { q->notify_fd, POLLIN, 0 }, { q->wake_fd, POLLIN, 0 },
					 { q->wake_fifo_fd, POLLIN, 0 } };
		struct timespec ts = sleep_time(q, next_scan);
		int n = ppoll(pfd, 3, &ts, &sigs->wait_mask);
		if (n < 0 && errno != EINTR)
			log_error("poll: %s", strerror(errno));
		if (qmgr_stop)
			break;
		if (n > 0 && pfd[1].revents != 0)
			qmgr_eventfd_drain(q->wake_fd);
		if (n > 0 && (pfd[0].revents & (POLLIN | POLLHUP | POLLERR)) != 0)
			qmgr_read_notify(q);
		if (n > 0 && (pfd[2].revents & (POLLIN | POLLHUP | POLLERR)) != 0)
			qmgr_read_wake_fifo(q);
	}
}

/* "4 lanes, agents 123 124 125 126" for the start-up line. */
static char *describe_agents(const struct qmgr *q)
{
	buf_t b = BUF_INIT;

	buf_printf(&b, "%zu", q->lane_count);
	for (size_t i = 0; i < q->lane_count; i++)
		buf_printf(&b, "%s%d", i == 0 ? " agent pid " : ",", (int)q->lanes[i].agent_pid);
	return buf_steal(&b);
}

int qmgr_main(const struct config *cfg, const struct recipient_tables *rcpt,
	      int notify_fd, const struct qmgr_agent *agent)
{
	struct qmgr_links links = { .notify_fd = notify_fd, .flow_fd = -1, .agents = agent,
				    .agent_count = 1, .relay = { -1, 0 }, .router = NULL };

	return qmgr_run(cfg, rcpt, &links);
}

int qmgr_run(const struct config *cfg, const struct recipient_tables *rcpt,
	     const struct qmgr_links *links)
{
	struct qmgr q;
	struct qmgr_signals sigs;
	char *err = NULL;

	log_set_role("qmgr");
	if (qmgr_init(&q, cfg, rcpt, links) < 0) {
		qmgr_cleanup(&q);
		return 1;
	}
	if (queue_dirs_create(cfg->spool_dir, &err) < 0) {
		log_error("queue manager: %s", err);
		free(err);
		qmgr_cleanup(&q);
		return 1;
	}
	qmgr_stop = 0;
	signals_install(&sigs);
	int lock_fd = take_lock(cfg->spool_dir, &sigs);
	if (lock_fd < 0) {
		qmgr_cleanup(&q);
		bool stopped = qmgr_stop;
		signals_restore(&sigs);
		return stopped ? 0 : 1;
	}
	for (size_t i = 0; i < q.lane_count; i++)
		qmgr_local_hello(&q.lanes[i], lock_fd);
	if (links->relay.pid > 0 && links->relay.fd >= 0 &&
	    qmgr_relay_start(&q, links->relay.fd, links->relay.pid, lock_fd) < 0)
		qmgr_lanes_agent_lost(&q); /* the supervisor tries again */
	flow_stock(&q);
	qmgr_wake_fifo_open(&q);
	char *agents = describe_agents(&q);
	log_info("queue manager started: spool=%s mail_root=%s uid=%lu gid=%lu lanes=%s "
		 "relay=%s", cfg->spool_dir, cfg->mail_root, (unsigned long)getuid(),
		 (unsigned long)getgid(), agents, q.relay != NULL ? "yes" : "none");
	free(agents);
	qmgr_scan(&q, true);
	if (qmgr_lanes_start(&q) == 0)
		run_loop(&q, &sigs);
	else
		qmgr_lanes_agent_lost(&q); /* nothing can deliver: let the supervisor retry */
	qmgr_lanes_stop(&q);
	qmgr_relay_stop(&q);
	bool lost = q.agent_lost;
	log_info("queue manager stopping: %zu message%s known", q.known.count,
		 q.known.count == 1 ? "" : "s");
	qmgr_cleanup(&q);
	signals_restore(&sigs);
	close(lock_fd);
	return lost ? 1 : 0;
}

/*
 * qmgr_lanes.c - local delivery in parallel: one thread per delivery
 * lane, each driving its own local delivery agent with the synchronous
 * batch loop of qmgr_batch.c (take ready messages, deliver, SYNC,
 * complete). Several agents writing and fsyncing at once let the file
 * system's journal merge their syncs, and a mailbox whose disk is slow
 * holds up only the lane that is writing to it.
 *
 * A lane sleeps in poll() on two descriptors: its agent's socket (so an
 * agent that dies while the lane is idle is noticed at once, as before
 * lanes existed) and its own eventfd, written under q->lock by whoever
 * makes a message ready while the lane is idle, or by the stop. Lanes
 * take messages one at a time, as they get to them (qmgr_batch.c), so a
 * lane never holds messages it has not started while another lane idles.
 *
 * RFCs: none. Untrusted input: the agents' replies (qmgr_local.c).
 * Privilege: unprivileged queue manager (`user`).
 */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "../lib/log.h"
#include "qmgr_internal.h"

static void eventfd_post(int fd)
{
	uint64_t one = 1;

	/* Never blocks (non-blocking, and the counter cannot realistically
	 * overflow); a failure leaves the thread asleep until its next
	 * wake-up, which the stop always sends. */
	if (fd >= 0 && write(fd, &one, sizeof(one)) < 0 && errno != EAGAIN)
		log_error("qmgr: wake-up: %s", strerror(errno));
}

void qmgr_eventfd_drain(int fd)
{
	uint64_t count;

	while (read(fd, &count, sizeof(count)) < 0 && errno == EINTR)
		;
}

void qmgr_wake_main(struct qmgr *q)
{
	eventfd_post(q->wake_fd);
}

void qmgr_lanes_wake_idle(struct qmgr *q)
{
	for (size_t i = 0; i < q->lane_count; i++) {
		struct qmgr_lane *lane = &q->lanes[i];
		if (lane->idle && !lane->woken) {
			lane->woken = true;
			eventfd_post(lane->wake_fd);
		}
	}
}

void qmgr_lanes_wake_all(struct qmgr *q)
{
	for (size_t i = 0; i < q->lane_count; i++) {
		q->lanes[i].woken = true;
		eventfd_post(q->lanes[i].wake_fd);
	}
	qmgr_wake_main(q);
}

void qmgr_lanes_agent_lost(struct qmgr *q)
{
	pthread_mutex_lock(&q->lock);
	q->agent_lost = true;
	q->stopping = true;
	qmgr_lanes_wake_all(q);
	pthread_mutex_unlock(&q->lock);
}

/* Sleep until woken or until the agent's socket says something (which,
 * with no request open, means it died or misbehaves). */
static void lane_sleep(struct qmgr_lane *lane)
{
	struct qmgr *q = lane->q;
	struct pollfd pfd[2] = { { lane->agent_fd, POLLIN, 0 }, { lane->wake_fd, POLLIN, 0 } };

	if (poll(pfd, 2, -1) < 0) {
		if (errno != EINTR)
			log_error("qmgr lane %u: poll: %s", lane->number, strerror(errno));
		return;
	}
	if (pfd[0].revents != 0)
		qmgr_local_unexpected(lane);
	if (pfd[1].revents != 0) {
		qmgr_eventfd_drain(lane->wake_fd);
		pthread_mutex_lock(&q->lock);
		lane->woken = false;
		pthread_mutex_unlock(&q->lock);
	}
}

static void *lane_main(void *arg)
{
	struct qmgr_lane *lane = arg;
	struct qmgr *q = lane->q;

	for (;;) {
		pthread_mutex_lock(&q->lock);
		bool stop = q->stopping, work = q->ready_head != NULL;
		lane->idle = !stop && !work;
		pthread_mutex_unlock(&q->lock);
		if (stop)
			break;
		if (work)
			qmgr_lane_batch(lane);
		else
			lane_sleep(lane);
	}
	return NULL;
}

int qmgr_lanes_start(struct qmgr *q)
{
	size_t started = 0;

	for (size_t i = 0; i < q->lane_count; i++) {
		struct qmgr_lane *lane = &q->lanes[i];
		int rc = pthread_create(&lane->thread, NULL, lane_main, lane);
		if (rc != 0) {
			log_error("qmgr lane %u: cannot start a thread: %s", lane->number,
				  strerror(rc));
			continue;
		}
		lane->thread_running = true;
		started++;
	}
	return started > 0 ? 0 : -1;
}

void qmgr_lanes_stop(struct qmgr *q)
{
	pthread_mutex_lock(&q->lock);
	q->stopping = true;
	qmgr_lanes_wake_all(q);
	pthread_mutex_unlock(&q->lock);
	for (size_t i = 0; i < q->lane_count; i++) {
		if (q->lanes[i].thread_running)
			pthread_join(q->lanes[i].thread, NULL);
		q->lanes[i].thread_running = false;
	}
}

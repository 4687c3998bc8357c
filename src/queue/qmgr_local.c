/*
 * qmgr_local.c - the queue manager's side of the local delivery agent
 * protocol (local_proto.h): one DELIVER per final mailbox, one SYNC per
 * batch, each answered before the next request. Each delivery lane has
 * its own agent; these functions run in that lane's thread and touch
 * only that lane's agent fields.
 *
 * The agent is checked like any peer: a reply of the wrong type or
 * sequence number, a folder number that skips ahead, a success that
 * names no folder, or a SYNC_DONE whose counts disagree with what was
 * received means the agent is broken: it is killed and marked lost.
 * From then on every delivery of the lane's batch is a temporary failure
 * ("4.3.0 local delivery agent ..."), folders not confirmed synced count
 * as not durable, every lane is told to start nothing new, and once the
 * lanes have finished their batches qmgr_run returns 1 (the supervisor
 * starts a new queue manager with new agents). Nothing is marked done
 * that the agent did not confirm, so the exactly-once rules of
 * docs/queue.md hold across an agent crash.
 *
 * RFCs: RFC 3463 codes in the reasons. Untrusted input: the agent's
 * replies. Privilege: unprivileged queue manager (`user`).
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "../lib/log.h"
#include "../lib/xalloc.h"
#include "local_proto.h"
#include "qmgr_internal.h"

#define AGENT_STOP_WAIT_MS 5000
#define REASON_AGENT_LOST "4.3.0 local delivery agent died or failed"

/* Say how the agent ended, once it has. */
static void log_agent_exit(pid_t pid, int status)
{
	if (WIFSIGNALED(status))
		log_warn("local delivery agent pid %d killed by signal %d", (int)pid,
			 WTERMSIG(status));
	else if (WIFEXITED(status) && WEXITSTATUS(status) != 0)
		log_warn("local delivery agent pid %d exited with status %d", (int)pid,
			 WEXITSTATUS(status));
}

static void agent_lost(struct qmgr_lane *lane, const char *what, const char *detail)
{
	if (lane->agent_lost)
		return;
	lane->agent_lost = true;
	log_error("local delivery agent pid %d (lane %u): %s%s%s; the deliveries in flight "
		  "are deferred and the queue manager exits so that the supervisor restarts "
		  "it with new agents", (int)lane->agent_pid, lane->number, what,
		  detail != NULL ? ": " : "", detail != NULL ? detail : "");
	if (lane->agent_pid > 0)
		kill(lane->agent_pid, SIGKILL);
	if (lane->agent_fd >= 0)
		close(lane->agent_fd);
	lane->agent_fd = -1;
	qmgr_lanes_agent_lost(lane->q);
}

static bool request(struct qmgr_lane *lane, struct local_msg *m, int fd)
{
	if (lane->agent_lost)
		return false;
	m->seq = ++lane->agent_seq;
	if (local_send(lane->agent_fd, m, fd) == 0)
		return true;
	agent_lost(lane, "cannot send a request", strerror(errno));
	return false;
}

/* The next reply, which must be of one of the two types and answer the
 * last request. */
static bool reply(struct qmgr_lane *lane, struct local_msg *m, enum local_msg_type want,
		  enum local_msg_type also)
{
	const char *why = NULL;
	int fd = -1;
	int rc = local_recv(lane->agent_fd, false, m, &fd, &why);

	if (rc == 0) {
		agent_lost(lane, "closed its socket", NULL);
		return false;
	}
	if (rc < 0) {
		agent_lost(lane, errno == EPROTO ? "protocol violation" : why,
			   errno == EPROTO ? why : strerror(errno));
		return false;
	}
	if ((m->type != want && m->type != also) || m->seq != lane->agent_seq) {
		agent_lost(lane, "protocol violation", "unexpected reply");
		return false;
	}
	return true;
}

int qmgr_local_hello(struct qmgr_lane *lane, int lock_fd)
{
	struct local_msg m = { .type = LOCAL_HELLO, .version = LOCAL_PROTO_VERSION };

	return request(lane, &m, lock_fd) ? 0 : -1;
}

int qmgr_run_readonly_fd(struct qmgr_run *r)
{
	struct stat a, b;

	if (r->ro_fd >= 0)
		return r->ro_fd;
	int fd = open(r->path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return -1;
	if (fstat(fd, &a) < 0 || fstat(r->fd, &b) < 0 || a.st_dev != b.st_dev ||
	    a.st_ino != b.st_ino) {
		close(fd);
		errno = ESTALE;
		return -1;
	}
	r->ro_fd = fd;
	return fd;
}

static void set_pair(struct qmgr_pair *p, enum qmgr_outcome kind, const char *reason)
{
	p->kind = kind;
	p->relay = "maildir";
	free(p->reason);
	p->reason = xstrdup(reason);
}

/* Check the RESULT's folder number and take it into the batch. */
static bool take_folder(struct qmgr_lane *lane, struct qmgr_batch *b,
			const struct local_msg *m, struct qmgr_pair *p)
{
	bool success = m->result == LOCAL_DELIVERED || m->result == LOCAL_ALREADY;

	if (m->folder > b->dir_count + 1 || (m->folder == 0 && m->result == LOCAL_DELIVERED) ||
	    (m->folder != 0 && !success)) {
		agent_lost(lane, "protocol violation", "bad folder number in a result");
		return false;
	}
	if (m->folder == b->dir_count + 1)
		b->dir_count++;
	p->dir = m->folder;
	return true;
}

void qmgr_local_deliver(struct qmgr_run *r, struct qmgr_pair *p)
{
	struct qmgr_lane *lane = r->lane;
	struct local_msg m = { .type = LOCAL_DELIVER };

	if (p->final[0] == '\0' || !qf_text_ok(p->final, QF_ADDR_MAX)) {
		set_pair(p, QO_PERM, "5.1.3 mailbox name unusable as a folder");
		return;
	}
	int fd = lane->agent_lost ? -1 : qmgr_run_readonly_fd(r);
	if (fd < 0 && !lane->agent_lost) {
		char *why = qf_errf("4.3.0 reopen %s: %s", r->path, strerror(errno));
		set_pair(p, QO_TEMP, why);
		free(why);
		return;
	}
	memcpy(m.id, r->msg.id, sizeof(m.id));
	m.arrival_us = r->msg.arrival_us;
	snprintf(m.sender, sizeof(m.sender), "%s", r->msg.sender);
	m.content_off = r->msg.content_off;
	m.content_len = r->msg.content_len;
	snprintf(m.address, sizeof(m.address), "%s", p->final);
	m.check_cur = r->e->recovered || r->msg.attempts > 0;
	if (!request(lane, &m, fd) || !reply(lane, &m, LOCAL_RESULT, LOCAL_RESULT) ||
	    !take_folder(lane, r->batch, &m, p)) {
		set_pair(p, QO_TEMP, REASON_AGENT_LOST);
		return;
	}
	switch (m.result) {
	case LOCAL_DELIVERED:
		set_pair(p, QO_SENT, "delivered to maildir");
		break;
	case LOCAL_ALREADY:
		set_pair(p, QO_SENT, "delivered to maildir by an earlier attempt");
		break;
	case LOCAL_TEMPFAIL:
		set_pair(p, QO_TEMP, m.reason[0] != '\0' ? m.reason : "4.3.0 local delivery failed");
		break;
	case LOCAL_PERMFAIL:
		set_pair(p, QO_PERM, m.reason[0] != '\0' ? m.reason : "5.3.0 local delivery failed");
		break;
	}
}

/* Read SYNC_FAIL replies up to SYNC_DONE; false if the agent failed. */
static bool read_sync_replies(struct qmgr_lane *lane, struct qmgr_batch *b)
{
	struct local_msg m;
	uint32_t failed = 0;

	for (;;) {
		if (!reply(lane, &m, LOCAL_SYNC_FAIL, LOCAL_SYNC_DONE))
			return false;
		if (m.type == LOCAL_SYNC_DONE)
			break;
		if (m.folder > b->dir_count || b->dir_errors[m.folder - 1] != NULL) {
			agent_lost(lane, "protocol violation", "bad folder number in SYNC_FAIL");
			return false;
		}
		b->dir_errors[m.folder - 1] = xstrdup(m.reason[0] != '\0' ? m.reason
								   : "4.3.0 fsync failed");
		failed++;
	}
	if (m.folders != b->dir_count || m.failed != failed) {
		agent_lost(lane, "protocol violation", "SYNC_DONE counts disagree");
		return false;
	}
	return true;
}

void qmgr_local_sync(struct qmgr_lane *lane, struct qmgr_batch *b)
{
	struct local_msg m = { .type = LOCAL_SYNC };

	b->dir_errors = xcalloc(b->dir_count > 0 ? b->dir_count : 1, sizeof(*b->dir_errors));
	if (b->dir_count == 0)
		return;
	if (request(lane, &m, -1) && read_sync_replies(lane, b))
		return;
	/* Not confirmed: no copy of this batch counts as durable. */
	for (size_t i = 0; i < b->dir_count; i++)
		if (b->dir_errors[i] == NULL)
			b->dir_errors[i] = xstrdup(REASON_AGENT_LOST);
}

void qmgr_local_unexpected(struct qmgr_lane *lane)
{
	char byte;
	ssize_t n = recv(lane->agent_fd, &byte, 1, MSG_DONTWAIT | MSG_PEEK);

	if (n == 0)
		agent_lost(lane, "closed its socket", NULL);
	else if (n > 0)
		agent_lost(lane, "protocol violation", "a message nobody asked for");
	else if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
		agent_lost(lane, "socket error", strerror(errno));
}

void qmgr_local_close(struct qmgr_lane *lane)
{
	if (lane->agent_fd >= 0)
		close(lane->agent_fd); /* the agent sees the end of stream and exits */
	lane->agent_fd = -1;
}

void qmgr_local_reap(struct qmgr_lane *lane)
{
	int status = 0;

	qmgr_local_close(lane);
	if (lane->agent_pid <= 0)
		return;
	for (int waited = 0;; waited += 10) {
		pid_t pid = waitpid(lane->agent_pid, &status, WNOHANG);
		if (pid == lane->agent_pid || (pid < 0 && errno != EINTR))
			break;
		if (waited >= AGENT_STOP_WAIT_MS) {
			log_warn("local delivery agent pid %d did not stop, killing it",
				 (int)lane->agent_pid);
			kill(lane->agent_pid, SIGKILL);
			waitpid(lane->agent_pid, &status, 0);
			break;
		}
		struct timespec pause = { 0, 10 * 1000000L };
		nanosleep(&pause, NULL);
	}
	log_agent_exit(lane->agent_pid, status);
	lane->agent_pid = 0;
}

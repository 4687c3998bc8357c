/*
 * scan_pool.c - the scan master's work (see scan_master.h): the scanner
 * processes (forked from the master with the pipeline it built, killed
 * and replaced when they overrun scan_timeout or crash), the queue of
 * requests waiting for a free scanner (bounded), and the answers to the
 * smtp workers, including the failure verdicts.
 *
 * RFCs: none. Untrusted input: the requests of the smtp workers and the
 * verdicts of the scanners (scan_proto.c decodes both). Privilege: `user`,
 * non-dumpable; the scanners too, each holding only its socket pair.
 */
#include "scan_master.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../lib/log.h"
#include "../lib/metrics.h"
#include "../lib/xalloc.h"

/* ---- answering the workers ------------------------------------------------------- */

void scan_pool_client_close(struct client *c)
{
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
	while (c->out_head != NULL) {
		struct out_packet *o = c->out_head;
		c->out_head = o->next;
		buf_free(&o->packet);
		free(o);
	}
	c->out_tail = NULL;
	c->out_count = 0;
}

/* Send what waits for c, as far as its socket takes it. */
void scan_pool_client_flush(struct client *c)
{
	while (c->fd >= 0 && c->out_head != NULL) {
		struct out_packet *o = c->out_head;
		if (scan_send_encoded(c->fd, &o->packet, -1) < 0) {
			if (errno != EAGAIN) {
				log_warn("smtp worker connection: send: %s; closing it",
					 strerror(errno));
				scan_pool_client_close(c);
			}
			return;
		}
		c->out_head = o->next;
		if (c->out_head == NULL)
			c->out_tail = NULL;
		c->out_count--;
		buf_free(&o->packet);
		free(o);
	}
}

void scan_pool_client_send(struct client *c, const struct scan_msg *m)
{
	if (c->fd < 0)
		return;
	if (c->out_count >= CLIENT_OUT_MAX) {
		log_warn("an smtp worker does not read its verdicts; closing its connection");
		scan_pool_client_close(c);
		return;
	}
	struct out_packet *o = xcalloc(1, sizeof(*o));
	scan_msg_encode(m, &o->packet);
	if (c->out_tail != NULL)
		c->out_tail->next = o;
	else
		c->out_head = o;
	c->out_tail = o;
	c->out_count++;
	scan_pool_client_flush(c);
}

void scan_pool_request_free(struct request *r)
{
	if (r->client != NULL)
		r->client->in_flight--;
	if (r->fd >= 0)
		close(r->fd);
	scan_msg_free(&r->msg);
	free(r);
}

/* Answer r with v (normalized here) and forget it. */
static void request_answer(struct request *r, struct scan_verdict *v)
{
	if (r->client != NULL) {
		struct scan_msg m;
		scan_msg_init(&m, SCAN_MSG_VERDICT);
		m.seq = r->client_seq;
		scan_verdict_normalize(v);
		m.verdict = *v; /* lent */
		scan_pool_client_send(r->client, &m);
	}
	scan_pool_request_free(r);
}

static void request_fail(struct scan_master *m, struct request *r, const char *reason,
			 const char *text)
{
	struct scan_verdict v;
	scan_verdict_init(&v);
	scan_verdict_fail(&v, m->cfg->scan_fail_open == CONFIG_YES, reason, "%s", text);
	request_answer(r, &v);
	scan_verdict_free(&v);
}

/* ---- scanners ---------------------------------------------------------------------- */

static void close_master_fds(struct scan_master *m, int keep)
{
	for (size_t i = 0; i < m->scanner_count; i++)
		if (m->scanners[i].sock >= 0 && m->scanners[i].sock != keep)
			close(m->scanners[i].sock);
	for (struct client *c = m->clients; c != NULL; c = c->next)
		if (c->fd >= 0)
			close(c->fd);
	for (struct request *r = m->queue_head; r != NULL; r = r->next)
		if (r->fd >= 0)
			close(r->fd);
	for (size_t i = 0; i < m->scanner_count; i++)
		if (m->scanners[i].job != NULL && m->scanners[i].job->fd >= 0)
			close(m->scanners[i].job->fd);
	if (m->listener >= 0)
		close(m->listener);
	close(m->sigfd);
	close(m->build_pipe[0]);
	close(m->build_pipe[1]);
	if (m->ready_fd >= 0)
		close(m->ready_fd); /* the first scanners are forked before ready is told */
}

/* In a new scanner: only its socket, then the loop. */
static NORETURN void become_scanner(struct scan_master *m, int sock, pid_t master)
{
	sigset_t none;
	close_master_fds(m, sock);
	signal(SIGTERM, SIG_DFL);
	signal(SIGINT, SIG_IGN); /* a Ctrl-C goes to the master, which closes our socket */
	signal(SIGUSR2, SIG_DFL);
	signal(SIGCHLD, SIG_DFL);
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) < 0 || getppid() != master)
		_exit(1);
	/* Its own row in postern_processes and postern_resident_memory_bytes
	 * (with an antivirus the scanners hold most of the memory); its log
	 * lines keep the scan master's role name. */
	metrics_process_role("scanner");
	_exit(scan_scanner_main(m->pipeline, sock));
}

static struct scanner *free_slot(struct scan_master *m)
{
	for (size_t i = 0; i < m->scanner_count; i++)
		if (m->scanners[i].pid == 0)
			return &m->scanners[i];
	if (m->scanner_count == m->scanner_cap) {
		m->scanner_cap = m->scanner_cap != 0 ? m->scanner_cap * 2 : 8;
		m->scanners = xreallocarray(m->scanners, m->scanner_cap, sizeof(*m->scanners));
	}
	return &m->scanners[m->scanner_count++];
}

static int spawn_scanner(struct scan_master *m)
{
	int sv[2];
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0) {
		log_error("scanner: socketpair: %s", strerror(errno));
		return -1;
	}
	pid_t master = getpid();
	pid_t pid = fork();
	if (pid == 0) {
		close(sv[0]);
		become_scanner(m, sv[1], master);
	}
	close(sv[1]);
	if (pid < 0) {
		log_error("scanner: fork: %s", strerror(errno));
		close(sv[0]);
		return -1;
	}
	fcntl(sv[0], F_SETFL, O_NONBLOCK);
	struct scanner *s = free_slot(m);
	memset(s, 0, sizeof(*s));
	s->pid = pid;
	s->sock = sv[0];
	s->started_ms = now_ms();
	s->generation = m->generation;
	return 0;
}

/* The scanner will not be used again: close its socket (an idle scanner
 * exits when it sees the end; one we killed is gone anyway). */
void scan_pool_scanner_drop(struct scanner *s)
{
	if (s->sock >= 0)
		close(s->sock);
	s->sock = -1;
}

/* s failed its message (crash, overrun, broken protocol): kill it,
 * answer the message, forget the scanner (it is reaped later). */
static void scanner_fail(struct scan_master *m, struct scanner *s, const char *reason,
			 const char *what)
{
	struct request *r = s->job;
	s->job = NULL;
	kill(s->pid, SIGKILL);
	scan_pool_scanner_drop(s);
	if (r == NULL) {
		log_warn("scanner pid %d %s", (int)s->pid, what);
		return;
	}
	log_warn("%s: scanner pid %d %s: answered %s", r->msg.id, (int)s->pid, what,
		 m->cfg->scan_fail_open == CONFIG_YES ? "accept (scan_fail_open)" : "451 4.7.0");
	request_fail(m, r, reason,
		     strcmp(reason, "scan_timeout") == 0
			     ? "Message could not be checked in time, try again later"
			     : "Message could not be checked, try again later");
}

/* A verdict (or the end) from scanner s. */
void scan_pool_scanner_readable(struct scan_master *m, struct scanner *s)
{
	struct scan_msg v;
	const char *why = NULL;
	int fd = -1;
	int rc = scan_recv(s->sock, false, &v, &fd, &why);
	if (rc < 0 && errno == EAGAIN) {
		scan_msg_free(&v);
		return;
	}
	if (rc == 0 || (rc < 0 && errno != EPROTO)) {
		scan_msg_free(&v);
		scanner_fail(m, s, "scan_crashed", "died");
		return;
	}
	if (rc < 0 || v.type != SCAN_MSG_VERDICT || s->job == NULL || v.seq != s->seq) {
		log_error("protocol violation from scanner pid %d: %s", (int)s->pid,
			  rc < 0 ? why : "an answer to nothing it was asked");
		scan_msg_free(&v);
		scanner_fail(m, s, "scan_failed", "broke the protocol");
		return;
	}
	struct request *r = s->job;
	s->job = NULL;
	uint64_t waited = r->dispatched_ms - r->arrived_ms;
	scan_verdict_add_timing(&v.verdict, "queue",
				(uint32_t)(waited > UINT32_MAX / 1000 ? UINT32_MAX : waited * 1000));
	request_answer(r, &v.verdict);
	scan_msg_free(&v);
	if (s->retiring)
		scan_pool_scanner_drop(s);
}

/* Take every child that has exited; a scanner that died young delays the
 * next fork a little. */
void scan_pool_reap(struct scan_master *m)
{
	int status;
	pid_t pid;
	while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
		for (size_t i = 0; i < m->scanner_count; i++) {
			struct scanner *s = &m->scanners[i];
			if (s->pid != pid)
				continue;
			if (s->job != NULL) /* its socket has not told us yet */
				scanner_fail(m, s, "scan_crashed", "died");
			if (WIFSIGNALED(status) && WTERMSIG(status) != SIGKILL)
				log_warn("scanner pid %d killed by signal %d", (int)pid,
					 WTERMSIG(status));
			else if (WIFEXITED(status) && WEXITSTATUS(status) != 0)
				log_warn("scanner pid %d exited with status %d", (int)pid,
					 WEXITSTATUS(status));
			if (now_ms() - s->started_ms < RESPAWN_PAUSE_MS && !s->retiring)
				m->respawn_after_ms = now_ms() + RESPAWN_PAUSE_MS;
			scan_pool_scanner_drop(s);
			s->pid = 0;
			break;
		}
	}
}

static size_t live_scanners(const struct scan_master *m)
{
	size_t n = 0;
	for (size_t i = 0; i < m->scanner_count; i++) {
		const struct scanner *s = &m->scanners[i];
		n += s->pid != 0 && s->sock >= 0 && !s->retiring;
	}
	return n;
}

/* Fork scanners up to the target (never while a build thread runs: a
 * child of a threaded process could inherit a lock held by the builder). */
void scan_pool_keep_scanners(struct scan_master *m)
{
	if (m->building || m->stopping || m->retiring || now_ms() < m->respawn_after_ms)
		return;
	for (size_t n = live_scanners(m); n < m->want; n++) {
		if (spawn_scanner(m) < 0) {
			m->respawn_after_ms = now_ms() + RESPAWN_PAUSE_MS;
			return;
		}
	}
}

/* ---- the queue ------------------------------------------------------------------ */

struct request *scan_pool_queue_pop(struct scan_master *m)
{
	struct request *r = m->queue_head;
	if (r != NULL) {
		m->queue_head = r->next;
		if (m->queue_head == NULL)
			m->queue_tail = NULL;
		m->queued--;
		r->next = NULL;
	}
	return r;
}

static void queue_push_front(struct scan_master *m, struct request *r)
{
	r->next = m->queue_head;
	m->queue_head = r;
	if (m->queue_tail == NULL)
		m->queue_tail = r;
	m->queued++;
}

/* Give waiting requests to idle scanners. */
void scan_pool_dispatch(struct scan_master *m)
{
	for (size_t i = 0; i < m->scanner_count && m->queue_head != NULL; i++) {
		struct scanner *s = &m->scanners[i];
		if (s->pid == 0 || s->sock < 0 || s->job != NULL || s->retiring)
			continue;
		struct request *r = scan_pool_queue_pop(m);
		while (r != NULL && r->client == NULL) { /* its worker is gone */
			scan_pool_request_free(r);
			r = scan_pool_queue_pop(m);
		}
		if (r == NULL)
			return;
		r->msg.seq = ++s->seq;
		if (scan_send(s->sock, &r->msg, r->fd) < 0) {
			log_warn("scanner pid %d: send: %s", (int)s->pid, strerror(errno));
			queue_push_front(m, r);
			scanner_fail(m, s, "scan_crashed", "does not take requests");
			continue;
		}
		close(r->fd);
		r->fd = -1;
		r->dispatched_ms = now_ms();
		s->job = r;
		s->deadline_ms = r->dispatched_ms + m->cfg->scan_timeout * 1000;
	}
}

/* Deadlines: scanners past scan_timeout, requests that waited as long. */
void scan_pool_expire(struct scan_master *m)
{
	uint64_t now = now_ms();
	for (size_t i = 0; i < m->scanner_count; i++) {
		struct scanner *s = &m->scanners[i];
		if (s->pid != 0 && s->job != NULL && now >= s->deadline_ms) {
			char what[96];
			snprintf(what, sizeof(what), "took longer than scan_timeout (%" PRIu64
				 "s) and was killed", m->cfg->scan_timeout);
			scanner_fail(m, s, "scan_timeout", what);
		}
	}
	while (m->queue_head != NULL &&
	       now >= m->queue_head->arrived_ms + m->cfg->scan_timeout * 1000) {
		struct request *r = scan_pool_queue_pop(m);
		log_warn("%s: no scanner free within scan_timeout (%" PRIu64 "s): answered %s",
			 r->msg.id, m->cfg->scan_timeout,
			 m->cfg->scan_fail_open == CONFIG_YES ? "accept (scan_fail_open)"
							      : "451 4.7.0");
		request_fail(m, r, "scan_busy", "Message could not be checked in time, try again later");
	}
}

/* ---- the workers' requests ------------------------------------------------------- */

static void take_request(struct scan_master *m, struct client *c, struct scan_msg *msg, int fd)
{
	struct request *r = xcalloc(1, sizeof(*r));
	r->client = c;
	c->in_flight++;
	r->client_seq = msg->seq;
	r->msg = *msg; /* taken over */
	r->fd = fd;
	r->arrived_ms = now_ms();
	if (m->queued >= SCAN_QUEUE_PER_SCANNER * (m->want > 0 ? m->want : 1)) {
		log_warn("%s: %zu messages already wait for a scanner: answered %s", r->msg.id,
			 m->queued,
			 m->cfg->scan_fail_open == CONFIG_YES ? "accept (scan_fail_open)"
							      : "451 4.7.0");
		request_fail(m, r, "scan_busy", "Message could not be checked now, try again later");
		return;
	}
	if (m->queue_tail != NULL)
		m->queue_tail->next = r;
	else
		m->queue_head = r;
	m->queue_tail = r;
	m->queued++;
}

void scan_pool_client_readable(struct scan_master *m, struct client *c)
{
	while (c->fd >= 0) {
		struct scan_msg msg;
		const char *why = NULL;
		int fd = -1;
		int rc = scan_recv(c->fd, true, &msg, &fd, &why);
		if (rc == 1) {
			take_request(m, c, &msg, fd);
			continue;
		}
		scan_msg_free(&msg);
		if (rc < 0 && errno == EAGAIN)
			return;
		if (rc < 0)
			log_error("%s from an smtp worker: %s; closing its connection",
				  errno == EPROTO ? "protocol violation" : "receive error", why);
		scan_pool_client_close(c);
	}
}

/* Free the clients that are gone; their requests are answered to nobody. */
void scan_pool_sweep_clients(struct scan_master *m)
{
	for (struct client **p = &m->clients; *p != NULL;) {
		struct client *c = *p;
		if (c->fd >= 0) {
			p = &c->next;
			continue;
		}
		for (struct request *r = m->queue_head; r != NULL; r = r->next)
			if (r->client == c)
				r->client = NULL;
		for (size_t i = 0; i < m->scanner_count; i++)
			if (m->scanners[i].job != NULL && m->scanners[i].job->client == c)
				m->scanners[i].job->client = NULL;
		*p = c->next;
		free(c);
	}
}


/* Close the scanners' sockets (idle ones exit on it) and wait a little
 * for every child; what is left is killed. */
void scan_pool_end_scanners(struct scan_master *m)
{
	for (size_t i = 0; i < m->scanner_count; i++)
		scan_pool_scanner_drop(&m->scanners[i]);
	uint64_t give_up = now_ms() + 2000;
	for (;;) {
		scan_pool_reap(m);
		size_t left = 0;
		for (size_t i = 0; i < m->scanner_count; i++)
			left += m->scanners[i].pid != 0;
		if (left == 0)
			break;
		if (now_ms() >= give_up) {
			for (size_t i = 0; i < m->scanner_count; i++)
				if (m->scanners[i].pid != 0)
					kill(m->scanners[i].pid, SIGKILL);
			give_up = UINT64_MAX;
		}
		usleep(10000);
	}
}

/*
 * auth.c - the auth role: the one process that holds the password hashes
 * of users_file, and answers the network workers' login checks
 * (src/auth/auth_client.h) on spool_dir/private/auth.sock.
 *
 * One libevent loop takes the requests; the password hashes (yescrypt,
 * bcrypt, SHA-512 crypt: tens of milliseconds each, by design) are
 * computed by a small pool of threads, so the loop keeps answering while
 * they work. A job carries a copy of the stored hash, taken on the loop,
 * so the threads never touch the table, which a reload replaces. The
 * throttling of failed logins (src/auth/auth_throttle.h) is consulted
 * and updated by the threads, where a store on another machine may block;
 * the delay it asks for is a timer on the loop before the answer goes
 * out. Outcomes are logged (user, client, service, session), passwords
 * never; every copy of a password is wiped once used.
 *
 * The supervisor starts the auth process once and keeps it over reloads
 * (its throttling counts must outlive them). It cannot open users_file
 * itself (root's file; the process runs as `user`): the supervisor opens
 * it and passes the descriptor over a control socket pair, with the
 * throttling settings, at the start and at each reload
 * (struct auth_ctl_msg); the auth process reads it, wipes the text and
 * replaces its table.
 *
 * A successful POP3 login's answer carries a login ticket
 * (src/auth/auth_ticket.h) made with the key the supervisor drew at its
 * start and handed over by fork (the auth process copies it and wipes
 * the inherited copy): the pop3 role's mailbox agent opens a maildrop
 * only with one, so the pop3 worker cannot open an account it has not
 * seen the right password for.
 *
 * RFCs: none. Untrusted input: the workers' packets (a compromised smtp
 * worker may send anything: auth_proto.c decodes them strictly and a
 * violation ends that connection); the users file. Privilege: `user`,
 * non-dumpable; no listener of the network, no TLS key, no spool path
 * but its socket.
 */
#include "server.h"
#include "auth_role.h"

#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "../auth/auth_proto.h"
#include "../auth/auth_ticket.h"
#include "../auth/auth_throttle.h"
#include "../auth/auth_users.h"
#include "../auth/auth_verify.h"
#include "../lib/buf.h"
#include "../lib/log.h"
#include "../lib/metrics.h"
#include "../lib/safeio.h"
#include "../lib/unixsock.h"
#include "../lib/xalloc.h"

#define AUTH_SWEEP_SECONDS 60
/* How long the start waits for the supervisor's first message. */
#define AUTH_FIRST_CTL_MS 10000
/* Jobs waiting for a thread, in all, and per connection. */
#define AUTH_QUEUE_MAX 20000
#define AUTH_CONN_PENDING_MAX 4096
#define AUTH_THROTTLE_RECORDS_MAX 200000
/* Answers a busy worker has not taken yet, at most (then it is dropped). */
#define AUTH_OUTBOX_MAX 8192

struct auth;

/* An answer the worker's socket had no room for. */
struct answer {
	struct answer *next;
	size_t len;
	unsigned char data[];
};

struct conn {
	struct auth *a;
	struct conn *prev, *next;
	uint64_t id;
	int fd;
	struct event *readable, *writable;
	size_t pending;
	struct answer *out_head, *out_tail; /* in order; no password in them */
	size_t out_count;
};

/* One login check, from the packet to the answer. */
struct job {
	struct job *next;
	struct job *wait_prev, *wait_next; /* on the delayed list */
	struct auth *a;
	uint64_t conn_id;
	uint32_t seq;
	enum auth_service service;
	char client_ip[AUTH_IP_MAX + 1];
	char user[AUTH_USER_MAX + 1];        /* lower-cased */
	char password[AUTH_PASSWORD_MAX + 1]; /* wiped by the thread */
	char session_id[AUTH_SESSION_MAX + 1];
	char *stored;                         /* the hash, or NULL: unknown user */
	char *timing;  /* checked too when stored is NULL or costs no hash */
	/* the thread's answer */
	enum auth_verdict verdict;
	const char *why;
	uint64_t delay_ms;
	bool banned_now;
	struct event *delay;
};

struct auth {
	struct event_base *base;
	int listener, ctl_fd;
	char *path;
	struct event *accepting, *ctl, *done_ev, *sweep, *sig_term, *sig_int;
	struct conn *conns;
	uint64_t next_conn_id;
	struct auth_users *users;
	char *users_path;
	struct auth_throttle *throttle;
	/* the pool */
	pthread_t *threads;
	size_t thread_count;
	pthread_mutex_t lock;
	pthread_cond_t work;
	struct job *queued_head, *queued_tail, *done_head;
	struct job *delayed;  /* answers waiting for their delay (the loop's) */
	size_t queued_count;
	bool stopping_threads;
	int done_pipe[2];
	bool stopping;
	/* the supervisor's key of the login tickets given with POP3 logins */
	unsigned char ticket_key[AUTH_TICKET_KEY_LEN];
	bool has_ticket_key;
};

static uint64_t wall_ms(void)
{
	struct timeval tv;
	gettimeofday(&tv, NULL);
	return (uint64_t)tv.tv_sec * 1000u + (uint64_t)tv.tv_usec / 1000u;
}

static const char *service_name(enum auth_service s)
{
	return s == AUTH_SERVICE_SMTP	      ? "smtp"
	       : s == AUTH_SERVICE_SUBMISSION ? "submission"
	       : s == AUTH_SERVICE_SMTPS      ? "smtps"
					      : "pop3";
}

/* A user name as typed, fit for a log line (printable ASCII only). */
static void printable(const char *in, char *out, size_t outlen)
{
	size_t o = 0;
	for (; *in != '\0' && o + 1 < outlen; in++)
		out[o++] = (*in > ' ' && *in < 127 && *in != '"') ? *in : '?';
	out[o] = '\0';
}

/* ---- the pool ------------------------------------------------------------------- */

static void job_free(struct job *j)
{
	if (j->delay != NULL)
		event_free(j->delay);
	if (j->stored != NULL) {
		explicit_bzero(j->stored, strlen(j->stored));
		free(j->stored);
	}
	if (j->timing != NULL) {
		explicit_bzero(j->timing, strlen(j->timing));
		free(j->timing);
	}
	explicit_bzero(j, sizeof(*j));
	free(j);
}

/* In a pool thread: the throttle, the hash, the throttle again. */
static void run_job(struct job *j, struct crypt_data *cd)
{
	struct auth *a = j->a;
	uint64_t now = wall_ms();
	const char *which = NULL;
	const char *known = j->stored != NULL ? j->user : NULL;
	if (auth_throttle_banned(a->throttle, j->client_ip, known, now, &which)) {
		j->verdict = AUTH_THROTTLED;
		j->why = strcmp(which, "client") == 0 ? "client banned after failed logins"
						      : "user banned after failed logins";
	} else {
		bool ok = j->stored != NULL && auth_hash_matches(j->stored, j->password, cd);
		/* a check that cost no hash (unknown user, locked account,
		 * {PLAIN}) is made as long as most users' checks, so that
		 * timing tells no user apart; what this says does not count */
		if (j->timing != NULL)
			(void)auth_hash_matches(j->timing, j->password, cd);
		if (ok) {
			j->verdict = AUTH_OK;
			j->why = "password ok";
			auth_throttle_succeeded(a->throttle, j->user);
		} else {
			j->verdict = AUTH_FAILED;
			j->why = j->stored == NULL ? "unknown user" : "wrong password";
		}
	}
	if (j->verdict == AUTH_FAILED)
		j->delay_ms = auth_throttle_failed(a->throttle, j->client_ip, known, wall_ms(),
						   &j->banned_now);
	explicit_bzero(j->password, sizeof(j->password));
}

static void *pool_thread(void *arg)
{
	struct auth *a = arg;
	struct crypt_data *cd = xcalloc(1, sizeof(*cd));
	pthread_mutex_lock(&a->lock);
	for (;;) {
		while (a->queued_head == NULL && !a->stopping_threads)
			pthread_cond_wait(&a->work, &a->lock);
		if (a->queued_head == NULL)
			break;
		struct job *j = a->queued_head;
		a->queued_head = j->next;
		if (a->queued_head == NULL)
			a->queued_tail = NULL;
		a->queued_count--;
		pthread_mutex_unlock(&a->lock);
		run_job(j, cd);
		pthread_mutex_lock(&a->lock);
		bool wake = a->done_head == NULL;
		j->next = a->done_head;
		a->done_head = j;
		if (wake) {
			char c = 1;
			(void)!write(a->done_pipe[1], &c, 1);
		}
	}
	pthread_mutex_unlock(&a->lock);
	free(cd);
	return NULL;
}

static void pool_start(struct auth *a, size_t n)
{
	pthread_mutex_init(&a->lock, NULL);
	pthread_cond_init(&a->work, NULL);
	a->threads = xcalloc(n, sizeof(*a->threads));
	/* the threads take no signal: the loop's handlers see them all */
	sigset_t all, old;
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, &old);
	for (size_t i = 0; i < n; i++) {
		if (pthread_create(&a->threads[i], NULL, pool_thread, a) != 0)
			log_fatal("auth: cannot start a hashing thread");
		a->thread_count++;
	}
	pthread_sigmask(SIG_SETMASK, &old, NULL);
}

static void pool_stop(struct auth *a)
{
	pthread_mutex_lock(&a->lock);
	a->stopping_threads = true;
	/* what has not started is dropped: nobody will take its answer */
	while (a->queued_head != NULL) {
		struct job *j = a->queued_head;
		a->queued_head = j->next;
		job_free(j);
	}
	a->queued_tail = NULL;
	pthread_cond_broadcast(&a->work);
	pthread_mutex_unlock(&a->lock);
	for (size_t i = 0; i < a->thread_count; i++)
		pthread_join(a->threads[i], NULL);
	while (a->done_head != NULL) {
		struct job *j = a->done_head;
		a->done_head = j->next;
		job_free(j);
	}
	free(a->threads);
	pthread_cond_destroy(&a->work);
	pthread_mutex_destroy(&a->lock);
}

/* ---- answers -------------------------------------------------------------------- */

static struct conn *find_conn(struct auth *a, uint64_t id)
{
	for (struct conn *c = a->conns; c != NULL; c = c->next)
		if (c->id == id)
			return c;
	return NULL;
}

static void conn_free(struct conn *c, const char *why);

/* Send what waits; false if the connection broke. */
static bool flush_answers(struct conn *c)
{
	while (c->out_head != NULL) {
		struct answer *x = c->out_head;
		ssize_t n;
		do
			n = send(c->fd, x->data, x->len, MSG_DONTWAIT | MSG_NOSIGNAL);
		while (n < 0 && errno == EINTR);
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			event_add(c->writable, NULL);
			return true;
		}
		if (n < 0)
			return false;
		c->out_head = x->next;
		if (c->out_head == NULL)
			c->out_tail = NULL;
		c->out_count--;
		free(x);
	}
	event_del(c->writable);
	return true;
}

static void writable_cb(evutil_socket_t fd, short what, void *arg)
{
	struct conn *c = arg;
	(void)fd;
	(void)what;
	if (!flush_answers(c))
		conn_free(c, strerror(errno));
}

/* Send one answer, or keep it until the socket has room; false if the
 * connection was dropped (broken, or the worker takes no answers). */
static bool send_answer(struct conn *c, const buf_t *out)
{
	if (c->out_head == NULL) {
		ssize_t n;
		do
			n = send(c->fd, out->data, out->len, MSG_DONTWAIT | MSG_NOSIGNAL);
		while (n < 0 && errno == EINTR);
		if (n >= 0)
			return true;
		if (errno != EAGAIN && errno != EWOULDBLOCK) {
			conn_free(c, strerror(errno));
			return false;
		}
	}
	if (c->out_count >= AUTH_OUTBOX_MAX) {
		conn_free(c, "it does not take its answers");
		return false;
	}
	struct answer *x = xmalloc(sizeof(*x) + out->len);
	x->next = NULL;
	x->len = out->len;
	memcpy(x->data, out->data, out->len);
	if (c->out_tail != NULL)
		c->out_tail->next = x;
	else
		c->out_head = x;
	c->out_tail = x;
	c->out_count++;
	event_add(c->writable, NULL);
	return true;
}

static void send_result(struct auth *a, struct job *j)
{
	char shown[AUTH_USER_MAX + 1];
	printable(j->user, shown, sizeof(shown));
	const char *result = j->verdict == AUTH_OK ? "ok" : j->verdict == AUTH_THROTTLED ? "throttled"
			     : j->verdict == AUTH_FAILED ? "failed" : "tempfail";
	metrics_count_labels(METRIC_AUTH_LOGINS, (const char *[]){ service_name(j->service), result },
			     2);
	if (j->verdict == AUTH_OK)
		log_info("login: user=%s client=%s service=%s session=%s status=ok", shown,
			 j->client_ip, service_name(j->service), j->session_id);
	else
		log_info("login: user=%s client=%s service=%s session=%s status=%s reason=\"%s\"%s",
			 shown, j->client_ip, service_name(j->service), j->session_id,
			 j->verdict == AUTH_THROTTLED ? "throttled"
			 : j->verdict == AUTH_FAILED ? "failed" : "tempfail",
			 j->why, j->banned_now ? " banned=yes" : "");
	struct conn *c = find_conn(a, j->conn_id);
	if (c == NULL)
		return; /* the worker went away */
	c->pending--;
	struct auth_msg m;
	memset(&m, 0, sizeof(m));
	m.type = AUTH_MSG_RESULT;
	m.seq = j->seq;
	m.verdict = (uint8_t)j->verdict;
	if (j->verdict == AUTH_OK)
		snprintf(m.user, sizeof(m.user), "%s", j->user);
	snprintf(m.why, sizeof(m.why), "%s", j->why);
	/* the mailbox agent opens a maildrop only with this proof that the
	 * password was right: a compromised pop3 worker cannot make one */
	if (j->verdict == AUTH_OK && j->service == AUTH_SERVICE_POP3 && a->has_ticket_key &&
	    !auth_ticket_make(a->ticket_key, j->service, j->user, auth_ticket_now(), m.ticket))
		log_error("auth: user=%s: cannot make a login ticket", shown);
	buf_t out = BUF_INIT;
	auth_msg_encode(&m, &out);
	(void)send_answer(c, &out);
	buf_free(&out);
}

static void unlink_delayed(struct job *j)
{
	if (j->wait_prev != NULL)
		j->wait_prev->wait_next = j->wait_next;
	else
		j->a->delayed = j->wait_next;
	if (j->wait_next != NULL)
		j->wait_next->wait_prev = j->wait_prev;
}

static void delay_over_cb(evutil_socket_t fd, short what, void *arg)
{
	struct job *j = arg;
	(void)fd;
	(void)what;
	unlink_delayed(j);
	send_result(j->a, j);
	job_free(j);
}

/* The pool finished jobs: answer them, after their delay. */
static void done_cb(evutil_socket_t fd, short what, void *arg)
{
	struct auth *a = arg;
	char scratch[64];
	(void)what;
	while (read((int)fd, scratch, sizeof(scratch)) > 0)
		;
	pthread_mutex_lock(&a->lock);
	struct job *list = a->done_head;
	a->done_head = NULL;
	pthread_mutex_unlock(&a->lock);
	while (list != NULL) {
		struct job *j = list;
		list = j->next;
		if (j->delay_ms == 0) {
			send_result(a, j);
			job_free(j);
			continue;
		}
		j->delay = evtimer_new(a->base, delay_over_cb, j);
		struct timeval tv = { (time_t)(j->delay_ms / 1000),
				      (suseconds_t)(j->delay_ms % 1000) * 1000 };
		if (j->delay == NULL || evtimer_add(j->delay, &tv) < 0)
			log_fatal("auth: cannot arm a timer");
		j->wait_next = a->delayed;
		if (a->delayed != NULL)
			a->delayed->wait_prev = j;
		a->delayed = j;
	}
}

/* ---- requests ------------------------------------------------------------------- */

static bool answer_now(struct conn *c, const struct auth_msg *req, enum auth_verdict v,
		       const char *why)
{
	struct job j;
	memset(&j, 0, sizeof(j));
	j.conn_id = c->id;
	j.seq = req->seq;
	j.service = (enum auth_service)req->service;
	j.verdict = v;
	j.why = why;
	snprintf(j.client_ip, sizeof(j.client_ip), "%s", req->client_ip);
	snprintf(j.user, sizeof(j.user), "%s", req->user);
	snprintf(j.session_id, sizeof(j.session_id), "%s", req->session_id);
	c->pending++;
	uint64_t id = c->id;
	send_result(c->a, &j);
	return find_conn(c->a, id) != NULL;
}

/* One CHECK; false if the connection is gone. */
static bool handle(struct conn *c, struct auth_msg *req)
{
	struct auth *a = c->a;
	str_lower(req->user);
	if (c->pending >= AUTH_CONN_PENDING_MAX || a->queued_count >= AUTH_QUEUE_MAX)
		return answer_now(c, req, AUTH_TEMPFAIL, "too many checks waiting");
	if (req->user[0] == '\0')
		return answer_now(c, req, AUTH_FAILED, "no user name");
	struct job *j = xcalloc(1, sizeof(*j));
	j->a = a;
	j->conn_id = c->id;
	j->seq = req->seq;
	j->service = (enum auth_service)req->service;
	memcpy(j->client_ip, req->client_ip, sizeof(j->client_ip));
	memcpy(j->user, req->user, sizeof(j->user));
	memcpy(j->password, req->password, sizeof(j->password));
	memcpy(j->session_id, req->session_id, sizeof(j->session_id));
	const char *stored = a->users != NULL ? auth_users_password(a->users, j->user) : NULL;
	j->stored = stored != NULL ? xstrdup(stored) : NULL;
	/* a login that costs no hash (unknown user, locked account, {PLAIN},
	 * a scheme that cannot be checked) is made to cost what most users'
	 * cost */
	const char *timing = a->users != NULL ? auth_users_timing_field(a->users) : NULL;
	if (timing != NULL && (stored == NULL || !auth_hash_costly(stored)))
		j->timing = xstrdup(timing);
	c->pending++;
	pthread_mutex_lock(&a->lock);
	if (a->queued_tail != NULL)
		a->queued_tail->next = j;
	else
		a->queued_head = j;
	a->queued_tail = j;
	a->queued_count++;
	pthread_cond_signal(&a->work);
	pthread_mutex_unlock(&a->lock);
	return true;
}

static void conn_free(struct conn *c, const char *why)
{
	struct auth *a = c->a;
	if (why != NULL)
		log_warn("auth: a worker's connection ended (%s)", why);
	event_free(c->readable);
	event_free(c->writable);
	close(c->fd);
	while (c->out_head != NULL) {
		struct answer *x = c->out_head;
		c->out_head = x->next;
		free(x);
	}
	if (c->prev != NULL)
		c->prev->next = c->next;
	else
		a->conns = c->next;
	if (c->next != NULL)
		c->next->prev = c->prev;
	free(c);
	if (a->stopping && a->conns == NULL)
		event_base_loopexit(a->base, NULL);
}

static void readable_cb(evutil_socket_t fd, short what, void *arg)
{
	struct conn *c = arg;
	unsigned char data[AUTH_MSG_MAX + 1];
	(void)what;
	for (int i = 0; i < 256; i++) {
		ssize_t n = recv((int)fd, data, sizeof(data), MSG_TRUNC | MSG_DONTWAIT);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			break;
		if (n <= 0) {
			conn_free(c, n < 0 ? strerror(errno) : NULL);
			break;
		}
		struct auth_msg m;
		const char *err = "packet too long";
		bool ok = (size_t)n <= AUTH_MSG_MAX &&
			  auth_msg_decode(data, (size_t)n, true, &m, &err);
		explicit_bzero(data, sizeof(data));
		if (!ok) {
			conn_free(c, err);
			break;
		}
		bool alive = handle(c, &m);
		auth_msg_wipe(&m);
		if (!alive)
			break;
	}
}

static void accept_cb(evutil_socket_t fd, short what, void *arg)
{
	struct auth *a = arg;
	(void)what;
	for (;;) {
		int s = accept4((int)fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (s < 0) {
			if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
				log_warn("auth: accept: %s", strerror(errno));
			return;
		}
		struct conn *c = xcalloc(1, sizeof(*c));
		c->a = a;
		c->fd = s;
		c->id = ++a->next_conn_id;
		c->readable = event_new(a->base, s, EV_READ | EV_PERSIST, readable_cb, c);
		c->writable = event_new(a->base, s, EV_WRITE | EV_PERSIST, writable_cb, c);
		if (c->readable == NULL || c->writable == NULL)
			log_fatal("auth: cannot allocate a connection's events");
		event_add(c->readable, NULL);
		c->next = a->conns;
		if (c->next != NULL)
			c->next->prev = c;
		a->conns = c;
	}
}

/* ---- the supervisor's messages ------------------------------------------------------ */

int auth_ctl_send(int sock, const struct auth_ctl_msg *m, int users_fd)
{
	struct iovec iov = { (void *)m, sizeof(*m) };
	union {
		char buf[CMSG_SPACE(sizeof(int))];
		struct cmsghdr align;
	} u;
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };
	if (users_fd >= 0) {
		memset(&u, 0, sizeof(u));
		mh.msg_control = u.buf;
		mh.msg_controllen = sizeof(u.buf);
		struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);
		cm->cmsg_level = SOL_SOCKET;
		cm->cmsg_type = SCM_RIGHTS;
		cm->cmsg_len = CMSG_LEN(sizeof(int));
		memcpy(CMSG_DATA(cm), &users_fd, sizeof(int));
	}
	ssize_t n;
	/* never blocks the supervisor: an auth process that does not read
	 * (stopped, hung) costs it this message, not its loop */
	do
		n = sendmsg(sock, &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
	while (n < 0 && errno == EINTR);
	return n == (ssize_t)sizeof(*m) ? 0 : -1;
}

void auth_ctl_from_config(const struct config *cfg, struct auth_ctl_msg *m)
{
	memset(m, 0, sizeof(*m));
	m->settings.delay_ms = cfg->auth_failure_delay * 1000u;
	m->settings.delay_max_ms = cfg->auth_failure_delay_max * 1000u;
	m->settings.client_ban_failures = (uint32_t)cfg->auth_client_ban_failures;
	m->settings.user_ban_failures = (uint32_t)cfg->auth_user_ban_failures;
	m->settings.ban_ms = cfg->auth_ban_time * 1000u;
	snprintf(m->users_path, sizeof(m->users_path), "%s", cfg->users_file);
}

static void apply_ctl(struct auth *a, const struct auth_ctl_msg *m, int users_fd)
{
	if (users_fd < 0 && m->users_path[0] != '\0') {
		/* the supervisor could not open it (and said why) */
		auth_throttle_set(a->throttle, &m->settings);
		log_error("auth: users_file %s was not passed: keeping the users read before (%zu)",
			  m->users_path, a->users != NULL ? auth_users_count(a->users) : (size_t)0);
		return;
	}
	struct auth_users *u = auth_users_load_fd(users_fd, m->users_path);
	if (users_fd >= 0)
		close(users_fd);
	auth_throttle_set(a->throttle, &m->settings);
	if (u == NULL) {
		log_error("auth: keeping the users read before (%zu)",
			  a->users != NULL ? auth_users_count(a->users) : (size_t)0);
		return;
	}
	auth_users_free(&a->users);
	a->users = u;
	free(a->users_path);
	a->users_path = xstrdup(m->users_path);
	log_info("auth: %zu users with passwords from %s", auth_users_count(u),
		 m->users_path[0] != '\0' ? m->users_path : "(no users_file)");
}

static void ctl_cb(evutil_socket_t fd, short what, void *arg)
{
	struct auth *a = arg;
	(void)what;
	struct auth_ctl_msg m;
	union {
		char buf[CMSG_SPACE(sizeof(int))];
		struct cmsghdr align;
	} u;
	struct iovec iov = { &m, sizeof(m) };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf,
			     .msg_controllen = sizeof(u.buf) };
	ssize_t n = recvmsg((int)fd, &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	int users_fd = -1;
	for (struct cmsghdr *cm = CMSG_FIRSTHDR(&mh); n > 0 && cm != NULL;
	     cm = CMSG_NXTHDR(&mh, cm))
		if (cm->cmsg_level == SOL_SOCKET && cm->cmsg_type == SCM_RIGHTS)
			memcpy(&users_fd, CMSG_DATA(cm), sizeof(int));
	if (n != (ssize_t)sizeof(m)) {
		if (users_fd >= 0)
			close(users_fd);
		if (n == 0) { /* the supervisor is gone: PDEATHSIG follows */
			event_del(a->ctl);
			return;
		}
		log_error("auth: a malformed message from the supervisor");
		return;
	}
	m.users_path[sizeof(m.users_path) - 1] = '\0';
	apply_ctl(a, &m, users_fd);
}

/* ---- life ------------------------------------------------------------------------ */

static void sweep_cb(evutil_socket_t fd, short what, void *arg)
{
	struct auth *a = arg;
	(void)fd;
	(void)what;
	auth_throttle_sweep(a->throttle, wall_ms());
}

static void stop_cb(evutil_socket_t sig, short what, void *arg)
{
	struct auth *a = arg;
	(void)what;
	if (a->stopping)
		return;
	a->stopping = true;
	log_info("signal %d: auth stopping", (int)sig);
	event_base_loopexit(a->base, NULL);
}

static int open_listener(struct auth *a, const char *path)
{
	a->path = xstrdup(path);
	buf_t tmp = BUF_INIT;
	buf_printf(&tmp, "%s.%ld", path, (long)getpid());
	unlink(buf_cstr(&tmp));
	a->listener = unixsock_listen(buf_cstr(&tmp), 128);
	if (a->listener < 0 || rename(buf_cstr(&tmp), path) < 0) {
		log_error("auth socket %s: %s", path, strerror(errno));
		unlink(buf_cstr(&tmp));
		buf_free(&tmp);
		return -1;
	}
	buf_free(&tmp);
	return 0;
}

int auth_server_run(const char *socket_path, int ctl_fd, size_t threads,
		    unsigned char *ticket_key)
{
	struct auth a;
	memset(&a, 0, sizeof(a));
	if (ticket_key != NULL) {
		memcpy(a.ticket_key, ticket_key, AUTH_TICKET_KEY_LEN);
		explicit_bzero(ticket_key, AUTH_TICKET_KEY_LEN);
		a.has_ticket_key = true;
	}
	a.listener = -1;
	a.ctl_fd = ctl_fd;
	signal(SIGPIPE, SIG_IGN);
	signal(SIGHUP, SIG_IGN);
	signal(SIGUSR2, SIG_IGN); /* not retired by reloads: it has no generation */
	/* listening first: the workers' first checks wait in the backlog */
	if (open_listener(&a, socket_path) < 0)
		return 1;
	a.throttle = auth_throttle_new(auth_throttle_store_memory(AUTH_THROTTLE_RECORDS_MAX));
	a.base = event_base_new();
	if (a.base == NULL)
		log_fatal("cannot create event base");
	if (pipe2(a.done_pipe, O_NONBLOCK | O_CLOEXEC) < 0)
		log_fatal("auth: pipe: %s", strerror(errno));
	pool_start(&a, threads > 0 ? threads : 1);
	a.accepting = event_new(a.base, a.listener, EV_READ | EV_PERSIST, accept_cb, &a);
	a.ctl = event_new(a.base, ctl_fd, EV_READ | EV_PERSIST, ctl_cb, &a);
	a.done_ev = event_new(a.base, a.done_pipe[0], EV_READ | EV_PERSIST, done_cb, &a);
	a.sweep = event_new(a.base, -1, EV_PERSIST, sweep_cb, &a);
	struct timeval every = { AUTH_SWEEP_SECONDS, 0 };
	a.sig_term = evsignal_new(a.base, SIGTERM, stop_cb, &a);
	a.sig_int = evsignal_new(a.base, SIGINT, stop_cb, &a);
	if (a.accepting == NULL || a.ctl == NULL || a.done_ev == NULL || a.sweep == NULL ||
	    a.sig_term == NULL || a.sig_int == NULL)
		log_fatal("auth: cannot allocate events");
	event_add(a.accepting, NULL);
	event_add(a.ctl, NULL);
	event_add(a.done_ev, NULL);
	event_add(a.sweep, &every);
	evsignal_add(a.sig_term, NULL);
	evsignal_add(a.sig_int, NULL);
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigprocmask(SIG_UNBLOCK, &set, NULL);
	/* the first table before the first request */
	struct pollfd first = { ctl_fd, POLLIN, 0 };
	if (poll(&first, 1, AUTH_FIRST_CTL_MS) <= 0)
		log_warn("auth: no users table from the supervisor yet");
	ctl_cb(ctl_fd, EV_READ, &a);
	log_info("auth ready: %s (%zu hashing threads, throttling in %s)", a.path,
		 a.thread_count, "memory");
	event_base_dispatch(a.base);
	sigprocmask(SIG_BLOCK, &set, NULL);
	pool_stop(&a);
	while (a.delayed != NULL) { /* nobody will take these answers */
		struct job *j = a.delayed;
		unlink_delayed(j);
		job_free(j);
	}
	while (a.conns != NULL)
		conn_free(a.conns, NULL);
	event_free(a.accepting);
	event_free(a.ctl);
	event_free(a.done_ev);
	event_free(a.sweep);
	event_free(a.sig_term);
	event_free(a.sig_int);
	close(a.listener);
	close(a.done_pipe[0]);
	close(a.done_pipe[1]);
	auth_users_free(&a.users);
	auth_throttle_free(&a.throttle);
	event_base_free(a.base);
	free(a.users_path);
	free(a.path);
	explicit_bzero(a.ticket_key, sizeof(a.ticket_key));
	log_info("auth exiting");
	return 0;
}

int auth_main(const struct config *cfg, int ctl_fd, unsigned char *ticket_key)
{
	char *path = auth_socket_path(cfg->spool_dir);
	int rc = auth_server_run(path, ctl_fd, (size_t)cfg->auth_threads, ticket_key);
	free(path);
	return rc;
}

/*
 * test_qmgr_lanes.c - the queue manager with several delivery lanes, each
 * with its own agent (real ones, and fakes that misbehave), in a forked
 * child on a temporary spool:
 *   - four lanes deliver a burst exactly once, and reap every agent;
 *   - a lane whose agent is stuck in the middle of a delivery does not
 *     hold up the others, and its message is deferred, not lost, once
 *     the agent answers;
 *   - an agent that dies in the middle of a delivery stops every lane:
 *     each message is delivered and removed, or deferred with nothing
 *     marked done, or untouched; the queue manager returns 1 and leaves
 *     no agent behind;
 *   - the flow tokens: the pipe is topped up to in_flow_tokens at start
 *     (not beyond, across a restart) and gets one token back per accepted
 *     message that leaves the ready list, none for the bounces the queue
 *     manager makes itself.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "testutil.h"

#include "lib/buf.h"
#include "lib/config.h"
#include "lib/safeio.h"
#include "lib/xalloc.h"
#include "mail/recipients.h"
#include "queue/flow.h"
#include "queue/local.h"
#include "queue/local_proto.h"
#include "queue/qmgr.h"
#include "queue/queue.h"
#include "queue/queue_file.h"

#define MAX_LANES 8
#define MAX_MESSAGES 400
/* The queue manager's exit status when an agent outlived qmgr_run. */
#define EXIT_AGENT_LEFT 99

static const char *const users[] = { "alice", "bob", "carol", "dave" };

struct fixture;
typedef int agent_fn(struct fixture *f, int sock);

struct fixture {
	char *dir;
	struct config cfg;
	struct recipient_tables *tables;
	int notify[2];
	int flow[2];       /* [0] the workers' end, [1] the queue manager's */
	int held[2];       /* the stuck agent writes the id it holds */
	int release[2];    /* ...and waits for a byte here */
	pid_t child;
	char *log_path;
	char ids[MAX_MESSAGES][QUEUE_ID_LEN + 1];
	size_t id_count;
};

static int setup(void **state)
{
	struct fixture *f = xcalloc(1, sizeof(*f));
	char tmpl[] = "/tmp/postern-test-lanes-XXXXXX";
	char *err = NULL;

	assert_non_null(mkdtemp(tmpl));
	f->dir = xstrdup(tmpl);
	char *users_path = safeio_path_join(f->dir, "users");
	int fd = open(users_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	for (size_t i = 0; i < sizeof(users) / sizeof(users[0]); i++) {
		buf_t line = BUF_INIT;
		buf_printf(&line, "%s@example.test:{PLAIN}x::::::\n", users[i]);
		assert_int_equal(safeio_write_all(fd, line.data, line.len), 0);
		buf_free(&line);
	}
	close(fd);
	struct recipients_owner owner = { "the test user", getuid(), getgid() };
	f->tables = recipients_load(users_path, "", &owner, stderr);
	assert_non_null(f->tables);
	free(users_path);
	f->cfg.spool_dir = safeio_path_join(f->dir, "spool");
	f->cfg.mail_root = safeio_path_join(f->dir, "mail");
	f->cfg.hostname = xstrdup("mx.example.test");
	strlist_add(&f->cfg.local_domains, "example.test");
	f->cfg.queue_retry_min = 300;
	f->cfg.queue_retry_max = 4000;
	f->cfg.queue_lifetime = 5 * 86400;
	f->cfg.queue_scan_interval = 300;
	f->cfg.in_flow_tokens = 1000;
	f->log_path = safeio_path_join(f->dir, "qmgr.log");
	assert_int_equal(queue_dirs_create(f->cfg.spool_dir, &err), 0);
	assert_int_equal(pipe2(f->notify, O_CLOEXEC), 0);
	assert_int_equal(pipe2(f->flow, O_CLOEXEC | O_NONBLOCK), 0);
	assert_int_equal(pipe2(f->held, O_CLOEXEC | O_NONBLOCK), 0);
	assert_int_equal(pipe2(f->release, O_CLOEXEC), 0);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	if (f->child > 0) {
		kill(f->child, SIGKILL);
		waitpid(f->child, NULL, 0);
	}
	int *fds[] = { f->notify, f->flow, f->held, f->release };
	for (size_t i = 0; i < sizeof(fds) / sizeof(fds[0]); i++) {
		close(fds[i][0]);
		close(fds[i][1]);
	}
	recipients_free(&f->tables);
	testutil_rmtree(f->dir);
	free(f->cfg.spool_dir);
	free(f->cfg.mail_root);
	free(f->cfg.hostname);
	strlist_free(&f->cfg.local_domains);
	free(f->log_path);
	free(f->dir);
	free(f);
	return 0;
}

/* ---- agents ----------------------------------------------------------------------- */

static int agent_real(struct fixture *f, int sock)
{
	return local_main(&f->cfg, f->tables, sock);
}

static bool answer(int sock, const struct local_msg *r)
{
	return local_send(sock, r, -1) == 0;
}

/* Holds its first DELIVER until the test writes a byte to release[],
 * then fails it (and every later one) temporarily. */
static int agent_stuck(struct fixture *f, int sock)
{
	struct local_msg m;
	const char *err = NULL;
	int fd = -1;
	bool held = false;

	while (local_recv(sock, true, &m, &fd, &err) == 1) {
		if (fd >= 0)
			close(fd);
		fd = -1;
		if (m.type == LOCAL_DELIVER) {
			if (!held) {
				char byte;
				held = true;
				if (write(f->held[1], m.id, QUEUE_ID_LEN) != QUEUE_ID_LEN ||
				    read(f->release[0], &byte, 1) != 1)
					return 2;
			}
			struct local_msg r = { .type = LOCAL_RESULT, .seq = m.seq,
					       .result = LOCAL_TEMPFAIL };
			local_set_reason(r.reason, "4.3.0 test agent held it up");
			if (!answer(sock, &r))
				return 2;
		} else if (m.type == LOCAL_SYNC) {
			struct local_msg r = { .type = LOCAL_SYNC_DONE, .seq = m.seq };
			if (!answer(sock, &r))
				return 2;
		}
	}
	return 0;
}

/* Dies in the middle of its first DELIVER. */
static int agent_dying(struct fixture *f, int sock)
{
	struct local_msg m;
	const char *err = NULL;
	int fd = -1;

	(void)f;
	while (local_recv(sock, true, &m, &fd, &err) == 1)
		if (m.type == LOCAL_DELIVER)
			_exit(9);
	return 0;
}

/* ---- the queue manager ---------------------------------------------------------- */

/* The queue manager with one agent per entry of agents[], as the
 * supervisor starts them but without switching accounts. Its exit
 * status is qmgr_run's, or EXIT_AGENT_LEFT if a child was left. */
static NORETURN void run_qmgr(struct fixture *f, agent_fn *const *agents, size_t count,
			      bool with_flow)
{
	struct qmgr_agent links_agents[MAX_LANES];

	for (size_t i = 0; i < count; i++) {
		int sv[2];
		if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0)
			_exit(2);
		pid_t pid = fork();
		if (pid == 0) {
			for (size_t j = 0; j < i; j++)
				close(links_agents[j].fd);
			close(sv[0]);
			_exit(agents[i](f, sv[1]));
		}
		close(sv[1]);
		links_agents[i].fd = sv[0];
		links_agents[i].pid = pid;
	}
	struct qmgr_links links = { .notify_fd = f->notify[0],
				    .flow_fd = with_flow ? f->flow[1] : -1,
				    .agents = links_agents, .agent_count = count };
	int rc = qmgr_run(&f->cfg, f->tables, &links);
	if (waitpid(-1, NULL, WNOHANG) != -1 || errno != ECHILD)
		_exit(EXIT_AGENT_LEFT);
	_exit(rc);
}

static void start_qmgr(struct fixture *f, agent_fn *const *agents, size_t count,
		       bool with_flow)
{
	fflush(NULL);
	f->child = fork();
	assert_true(f->child >= 0);
	if (f->child == 0) {
		int fd = open(f->log_path, O_WRONLY | O_CREAT | O_APPEND, 0600);
		if (fd >= 0)
			dup2(fd, STDERR_FILENO);
		run_qmgr(f, agents, count, with_flow);
	}
}

static int exit_status(int status)
{
	assert_true(WIFEXITED(status));
	return WEXITSTATUS(status);
}

static int stop_qmgr(struct fixture *f)
{
	int status = 0;

	assert_int_equal(kill(f->child, SIGTERM), 0);
	assert_int_equal(waitpid(f->child, &status, 0), f->child);
	f->child = 0;
	return exit_status(status);
}

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* ---- the spool and the mailboxes ------------------------------------------------- */

static char *read_log(const struct fixture *f)
{
	buf_t b = BUF_INIT;

	safeio_read_file(f->log_path, 1 << 24, &b);
	return buf_steal(&b);
}

static void assert_log(const struct fixture *f, const char *needle)
{
	char *log = read_log(f);

	if (strstr(log, needle) == NULL)
		fail_msg("log lacks \"%s\":\n%s", needle, log);
	free(log);
}

static size_t log_count(const struct fixture *f, const char *needle)
{
	char *log = read_log(f);
	size_t n = 0;

	for (const char *p = log; (p = strstr(p, needle)) != NULL; p++)
		n++;
	free(log);
	return n;
}

/* Some line of the log holds both texts, in this order. */
static bool log_line_has(const char *log, const char *first, const char *then)
{
	for (const char *p = log; (p = strstr(p, first)) != NULL; p++) {
		const char *end = strchr(p, '\n');
		const char *hit = strstr(p, then);
		if (hit != NULL && (end == NULL || hit < end))
			return true;
	}
	return false;
}

/* Commit a message for rcpt, notified or not; its id is kept. */
static const char *queue_msg(struct fixture *f, const char *rcpt, bool notify)
{
	strlist_t list = { NULL, 0 };
	char *err = NULL;
	const char *content = "Subject: lanes\n\nHello.\n";

	assert_true(f->id_count < MAX_MESSAGES);
	char *id = f->ids[f->id_count++];
	strlist_add(&list, rcpt);
	struct queue_envelope env = {
		.arrival_us = (uint64_t)time(NULL) * 1000000u, .client_addr = "192.0.2.1",
		.client_helo = "test", .protocol = "ESMTP", .sender = "sender@remote.test",
		.recipients = &list,
	};
	queue_id_new(id);
	struct queue_writer *w = queue_writer_open(f->cfg.spool_dir, id, &env, &err);
	if (w == NULL)
		fail_msg("open: %s", err);
	assert_int_equal(queue_writer_write(w, content, strlen(content), &err), 0);
	assert_int_equal(queue_writer_commit(&w, &err), 0);
	if (notify)
		queue_notify(f->notify[1], id);
	strlist_free(&list);
	return id;
}

static char *user_address(size_t i)
{
	buf_t b = BUF_INIT;

	buf_printf(&b, "%s@example.test", users[i % 4]);
	return buf_steal(&b);
}

/* Files in the user's new/ whose name carries id (NULL: all files). */
static size_t copies(const struct fixture *f, const char *user, const char *id)
{
	buf_t path = BUF_INIT, tag = BUF_INIT;
	size_t n = 0;

	buf_printf(&path, "%s/example.test/%s/Maildir/new", f->cfg.mail_root, user);
	buf_printf(&tag, ".Q%s.", id != NULL ? id : "");
	DIR *dir = opendir(path.data);
	struct dirent *de;
	while (dir != NULL && (de = readdir(dir)) != NULL)
		n += de->d_name[0] != '.' && (id == NULL || strstr(de->d_name, tag.data) != NULL);
	if (dir != NULL)
		closedir(dir);
	buf_free(&path);
	buf_free(&tag);
	return n;
}

static size_t copies_anywhere(const struct fixture *f, const char *id)
{
	size_t n = 0;

	for (size_t i = 0; i < 4; i++)
		n += copies(f, users[i], id);
	return n;
}

static size_t files_in(const struct fixture *f, const char *folder)
{
	char *path = safeio_path_join(f->cfg.spool_dir, folder);
	DIR *dir = opendir(path);
	struct dirent *de;
	size_t n = 0;

	free(path);
	while (dir != NULL && (de = readdir(dir)) != NULL)
		n += de->d_name[0] != '.';
	if (dir != NULL)
		closedir(dir);
	return n;
}

/* Read folder/id: false if it is not there. */
static bool read_queued(const struct fixture *f, const char *folder, const char *id,
			struct qf_msg *m)
{
	buf_t path = BUF_INIT;
	char *err = NULL;

	buf_printf(&path, "%s/%s/%s", f->cfg.spool_dir, folder, id);
	int fd = open(path.data, O_RDONLY);
	buf_free(&path);
	if (fd < 0)
		return false;
	if (qf_read(fd, m, &err) != 0)
		fail_msg("%s/%s: %s", folder, id, err);
	close(fd);
	return true;
}

static void wait_for(bool (*done)(const struct fixture *), const struct fixture *f,
		     const char *what)
{
	uint64_t deadline = now_ms() + 20000;

	while (!done(f) && now_ms() < deadline)
		usleep(10000);
	if (!done(f)) {
		char *log = read_log(f);
		fail_msg("%s not within 20 s; log:\n%s", what, log);
	}
}

static bool queue_empty(const struct fixture *f)
{
	return files_in(f, "queue") == 0;
}

static size_t tokens_in_pipe(const struct fixture *f)
{
	int n = -1;

	assert_int_equal(ioctl(f->flow[0], FIONREAD, &n), 0);
	return (size_t)n;
}

/* ---- tests ------------------------------------------------------------------------ */

static void test_four_lanes_deliver_a_burst_once(void **state)
{
	struct fixture *f = *state;
	agent_fn *const agents[] = { agent_real, agent_real, agent_real, agent_real };
	size_t per_user[4] = { 0 };

	/* Some wait on disk at start-up, the rest come while it runs. */
	for (size_t i = 0; i < 40; i++) {
		char *rcpt = user_address(i * 7 / 3);
		queue_msg(f, rcpt, false);
		per_user[(i * 7 / 3) % 4]++;
		free(rcpt);
	}
	start_qmgr(f, agents, 4, false);
	for (size_t i = 40; i < 200; i++) {
		char *rcpt = user_address(i * 7 / 3);
		queue_msg(f, rcpt, true);
		per_user[(i * 7 / 3) % 4]++;
		free(rcpt);
	}
	wait_for(queue_empty, f, "an empty queue/");
	assert_int_equal(stop_qmgr(f), 0);
	for (size_t i = 0; i < 4; i++)
		assert_int_equal(copies(f, users[i], NULL), per_user[i]);
	for (size_t i = 0; i < f->id_count; i++)
		assert_int_equal(copies_anywhere(f, f->ids[i]), 1);
	assert_int_equal(files_in(f, "deferred"), 0);
	assert_log(f, "lanes=4 agent pid ");
}

/* Waits (20 s at most) until the stuck agent says which message it holds. */
static bool held_message(struct fixture *f, char *id)
{
	struct pollfd pfd = { f->held[0], POLLIN, 0 };

	if (poll(&pfd, 1, 0) != 1)
		return false;
	assert_int_equal(read(f->held[0], id, QUEUE_ID_LEN), QUEUE_ID_LEN);
	id[QUEUE_ID_LEN] = '\0';
	return true;
}

static bool others_delivered(const struct fixture *f)
{
	return copies(f, "alice", NULL) == 10 && copies(f, "bob", NULL) == 10 &&
	       copies(f, "carol", NULL) == 10;
}

static const char *stuck_id;

static bool stuck_deferred(const struct fixture *f)
{
	struct qf_msg m;

	if (!read_queued(f, "deferred", stuck_id, &m))
		return false;
	qf_msg_free(&m);
	return true;
}

static void test_a_stuck_lane_holds_up_no_other(void **state)
{
	struct fixture *f = *state;
	agent_fn *const agents[] = { agent_stuck, agent_real, agent_real, agent_real };
	char id[QUEUE_ID_LEN + 1];
	bool held = false;

	start_qmgr(f, agents, 4, false);
	/* Offer dave's messages one at a time until the stuck lane takes one
	 * (another lane may deliver the first ones; lane 1 is woken first). */
	for (int i = 0; i < 100 && !held; i++) {
		size_t before = copies(f, "dave", NULL);
		queue_msg(f, "dave@example.test", true);
		uint64_t deadline = now_ms() + 10000;
		while (!(held = held_message(f, id)) && copies(f, "dave", NULL) == before &&
		       now_ms() < deadline)
			usleep(2000);
	}
	assert_true(held);
	stuck_id = id;
	/* Thirty more, while that agent sits in the middle of a delivery. */
	for (size_t i = 0; i < 30; i++) {
		char *rcpt = user_address(i % 3);
		queue_msg(f, rcpt, true);
		free(rcpt);
	}
	wait_for(others_delivered, f, "delivery by the other lanes");
	struct qf_msg m;
	assert_true(read_queued(f, "queue", id, &m)); /* still in flight */
	assert_int_equal(m.rcpts[0].status, QF_RCPT_PENDING);
	qf_msg_free(&m);
	assert_int_equal(copies_anywhere(f, id), 0);
	/* The agent answers at last: a temporary failure, deferred. */
	assert_int_equal(write(f->release[1], "x", 1), 1);
	wait_for(stuck_deferred, f, "the held message in deferred/");
	assert_true(read_queued(f, "deferred", id, &m));
	assert_int_equal(m.rcpts[0].status, QF_RCPT_PENDING);
	assert_int_equal(m.attempts, 1);
	qf_msg_free(&m);
	assert_int_equal(stop_qmgr(f), 0);
	buf_t line = BUF_INIT;
	buf_printf(&line, "%s: to=<dave@example.test> relay=maildir", id);
	assert_log(f, line.data);
	assert_log(f, "status=deferred (4.3.0 test agent held it up)");
	buf_free(&line);
}

static void test_a_dying_agent_stops_every_lane(void **state)
{
	struct fixture *f = *state;
	agent_fn *const agents[] = { agent_dying, agent_real, agent_real, agent_real };
	int status = 0;

	for (size_t i = 0; i < 40; i++) {
		char *rcpt = user_address(i);
		queue_msg(f, rcpt, false);
		free(rcpt);
	}
	start_qmgr(f, agents, 4, false);
	/* It must end by itself once lane 1 has taken a message; keep
	 * offering some in case the other lanes took all of them. */
	uint64_t next_offer = now_ms() + 200, deadline = now_ms() + 20000;
	while (waitpid(f->child, &status, WNOHANG) == 0) {
		if (now_ms() > deadline)
			fail_msg("the queue manager did not exit after losing an agent");
		if (now_ms() > next_offer && f->id_count < MAX_MESSAGES) {
			char *rcpt = user_address(f->id_count);
			queue_msg(f, rcpt, true);
			free(rcpt);
			next_offer = now_ms() + 50;
		}
		usleep(5000);
	}
	f->child = 0;
	assert_int_equal(exit_status(status), 1); /* and no agent left behind */
	assert_log(f, "closed its socket; the deliveries in flight are deferred and the "
		      "queue manager exits so that the supervisor restarts it with new agents");
	/* Every message: delivered once and removed, or deferred by the lost
	 * lane with nothing marked done and no copy, or never started. */
	size_t delivered = 0, deferred = 0, untouched = 0;
	char *log = read_log(f);
	for (size_t i = 0; i < f->id_count; i++) {
		const char *id = f->ids[i];
		struct qf_msg m;
		size_t n = copies_anywhere(f, id);
		if (read_queued(f, "deferred", id, &m)) {
			assert_int_equal(m.rcpts[0].status, QF_RCPT_PENDING);
			assert_int_equal(m.attempts, 1);
			assert_int_equal(n, 0);
			buf_t line = BUF_INIT;
			buf_printf(&line, "%s: to=<", id);
			if (!log_line_has(log, line.data, "status=deferred (4.3.0 local delivery "
							  "agent died or failed)"))
				fail_msg("%s deferred without its log line:\n%s", id, log);
			buf_free(&line);
			qf_msg_free(&m);
			deferred++;
		} else if (read_queued(f, "queue", id, &m)) {
			assert_int_equal(m.rcpts[0].status, QF_RCPT_PENDING);
			assert_int_equal(m.attempts, 0);
			assert_int_equal(n, 0);
			qf_msg_free(&m);
			untouched++;
		} else {
			if (n != 1)
				fail_msg("%s removed with %zu copies", id, n);
			delivered++;
		}
	}
	free(log);
	assert_int_equal(deferred, 1); /* the one in flight in the lost lane */
	assert_int_equal(delivered + deferred + untouched, f->id_count);
	assert_int_equal(files_in(f, "corrupt"), 0);
}

static size_t expected_tokens;

static bool tokens_are(const struct fixture *f)
{
	return tokens_in_pipe(f) == expected_tokens;
}

static bool second_start(const struct fixture *f)
{
	return log_count(f, "queue manager started") == 2;
}

static void test_flow_tokens(void **state)
{
	struct fixture *f = *state;
	agent_fn *const agents[] = { agent_real, agent_real };

	f->cfg.in_flow_tokens = 10;
	queue_flow_give(f->flow[1], 3); /* left by an earlier queue manager */
	start_qmgr(f, agents, 2, true);
	expected_tokens = 10;
	wait_for(tokens_are, f, "the stock of 10 tokens");
	/* Five delivered, one deferred (a remote recipient), one refused (an
	 * unknown user; its bounce is the queue manager's own, no token). */
	for (size_t i = 0; i < 5; i++) {
		char *rcpt = user_address(i);
		queue_msg(f, rcpt, true);
		free(rcpt);
	}
	queue_msg(f, "far@remote.test", true);
	queue_msg(f, "nobody@example.test", true);
	expected_tokens = 10 + 7;
	wait_for(tokens_are, f, "seven tokens back");
	wait_for(queue_empty, f, "an empty queue/");
	assert_log(f, "status=bounced (5.1.1 unknown user)");
	usleep(100000); /* nothing more may come */
	assert_int_equal(tokens_in_pipe(f), 10 + 7);
	/* Messages nobody took a token for (a notice, announced with
	 * QF_NOTIFY_NO_TOKEN; a release, announced on the wake-up FIFO)
	 * give none back. */
	char *rcpt = user_address(0);
	queue_notify_flags(f->notify[1], queue_msg(f, rcpt, false), QF_NOTIFY_NO_TOKEN);
	const char *released = queue_msg(f, rcpt, false);
	free(rcpt);
	assert_int_equal(queue_wake(f->cfg.spool_dir, released), 0);
	wait_for(queue_empty, f, "an empty queue/ after the notice and the release");
	assert_log(f, ": released into the queue");
	usleep(100000);
	assert_int_equal(tokens_in_pipe(f), 10 + 7);
	assert_int_equal(stop_qmgr(f), 0);
	/* A new queue manager finds more than its stock: adds nothing. (It
	 * stocks right after its start-up line, before it looks at signals.) */
	start_qmgr(f, agents, 2, true);
	wait_for(second_start, f, "the second start");
	assert_int_equal(stop_qmgr(f), 0);
	assert_int_equal(tokens_in_pipe(f), 10 + 7);
	/* The workers took all of them meanwhile: topped up again. */
	char sink[17];
	assert_int_equal(read(f->flow[0], sink, sizeof(sink)), (ssize_t)sizeof(sink));
	start_qmgr(f, agents, 2, true);
	expected_tokens = 10;
	wait_for(tokens_are, f, "the stock topped up to 10");
	assert_int_equal(stop_qmgr(f), 0);
}

int main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
	const struct CMUnitTest tests[] = {
		T(test_four_lanes_deliver_a_burst_once),
		T(test_a_stuck_lane_holds_up_no_other),
		T(test_a_dying_agent_stops_every_lane),
		T(test_flow_tokens),
	};
#undef T
	return cmocka_run_group_tests(tests, NULL, NULL);
}

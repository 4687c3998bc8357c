/*
 * test_local_agent.c - both ends of the local delivery protocol against a
 * peer that misbehaves. The agent, driven by hand: delivers, numbers the
 * new/ folders, finds an earlier copy, syncs; refuses an address that is
 * not a user; stops at a request before HELLO and at a descriptor that
 * does not match the content range. The queue manager, against a fake
 * agent that answers with a folder number out of sequence or dies in the
 * middle of a request: nothing is delivered or marked done, the message
 * is deferred, and qmgr_main returns 1 so the supervisor restarts it.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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
#include "queue/local.h"
#include "queue/local_proto.h"
#include "queue/qmgr.h"
#include "queue/queue.h"
#include "queue/queue_file.h"

struct fixture {
	char *dir;
	struct config cfg;
	struct recipient_tables *tables;
	pid_t child;
	int sock; /* our end */
	char id[QUEUE_ID_LEN + 1];
	int queue_fd; /* the committed message, read-only */
	struct qf_msg msg;
	char *log_path;
};

/* Commit a message for rcpt into queue/; its id into id. */
static void commit_message(struct fixture *f, const char *rcpt, char *id)
{
	strlist_t rcpts = { NULL, 0 };
	const char *text = "Subject: agent\n\nhello\n";
	char *err = NULL;

	strlist_add(&rcpts, rcpt);
	struct queue_envelope env = {
		.arrival_us = (uint64_t)time(NULL) * 1000000u, .client_addr = "192.0.2.1",
		.client_helo = "test", .protocol = "ESMTP", .sender = "s@remote.test",
		.recipients = &rcpts,
	};
	queue_id_new(id);
	struct queue_writer *w = queue_writer_open(f->cfg.spool_dir, id, &env, &err);
	assert_non_null(w);
	assert_int_equal(queue_writer_write(w, text, strlen(text), &err), 0);
	assert_int_equal(queue_writer_commit(&w, &err), 0);
	strlist_free(&rcpts);
}

static int setup(void **state)
{
	struct fixture *f = xcalloc(1, sizeof(*f));
	char tmpl[] = "/tmp/postern-test-agent-XXXXXX";
	char *err = NULL;

	assert_non_null(mkdtemp(tmpl));
	f->dir = xstrdup(tmpl);
	char *users = safeio_path_join(f->dir, "users");
	int fd = open(users, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	const char *lines = "alice@example.test:{PLAIN}x::::::\nbob@example.test:{PLAIN}x\n";
	assert_int_equal(safeio_write_all(fd, lines, strlen(lines)), 0);
	close(fd);
	struct recipients_owner owner = { "the test user", getuid(), getgid() };
	f->tables = recipients_load(users, "", &owner, stderr);
	assert_non_null(f->tables);
	free(users);
	f->cfg.spool_dir = safeio_path_join(f->dir, "spool");
	f->cfg.mail_root = safeio_path_join(f->dir, "mail");
	f->cfg.hostname = xstrdup("mx.example.test");
	strlist_add(&f->cfg.local_domains, "example.test");
	f->cfg.queue_retry_min = 300;
	f->cfg.queue_retry_max = 4000;
	f->cfg.queue_lifetime = 5 * 86400;
	f->cfg.queue_scan_interval = 300;
	f->log_path = safeio_path_join(f->dir, "log");
	assert_int_equal(queue_dirs_create(f->cfg.spool_dir, &err), 0);
	/* One committed message for alice. */
	commit_message(f, "alice@example.test", f->id);
	char *qdir = safeio_path_join(f->cfg.spool_dir, "queue"), *qpath = safeio_path_join(qdir, f->id);
	f->queue_fd = open(qpath, O_RDONLY);
	assert_true(f->queue_fd >= 0);
	assert_int_equal(qf_read(f->queue_fd, &f->msg, &err), 0);
	free(qdir);
	free(qpath);
	f->sock = -1;
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	if (f->sock >= 0)
		close(f->sock);
	if (f->child > 0) {
		kill(f->child, SIGKILL);
		waitpid(f->child, NULL, 0);
	}
	close(f->queue_fd);
	qf_msg_free(&f->msg);
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

/* Fork the child end of a socket pair running fn; we keep the other. */
static void start_child(struct fixture *f, int (*fn)(struct fixture *, int))
{
	int sv[2];

	assert_int_equal(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv), 0);
	fflush(NULL);
	f->child = fork();
	assert_true(f->child >= 0);
	if (f->child == 0) {
		int log = open(f->log_path, O_WRONLY | O_CREAT | O_APPEND, 0600);
		if (log >= 0)
			dup2(log, STDERR_FILENO);
		close(sv[0]);
		_exit(fn(f, sv[1]));
	}
	close(sv[1]);
	f->sock = sv[0];
}

static int child_exit_status(struct fixture *f)
{
	int status = 0;

	assert_int_equal(waitpid(f->child, &status, 0), f->child);
	f->child = 0;
	assert_true(WIFEXITED(status));
	return WEXITSTATUS(status);
}

static int run_agent(struct fixture *f, int sock)
{
	return local_main(&f->cfg, f->tables, sock);
}

static void hello(struct fixture *f)
{
	struct local_msg m = { .type = LOCAL_HELLO, .version = LOCAL_PROTO_VERSION };
	int lock = open("/dev/null", O_RDONLY);

	assert_int_equal(local_send(f->sock, &m, lock), 0);
	close(lock);
}

static struct local_msg deliver_req(const struct fixture *f, uint32_t seq, const char *to)
{
	struct local_msg m = { .type = LOCAL_DELIVER, .seq = seq,
			       .arrival_us = f->msg.arrival_us, .content_off = f->msg.content_off,
			       .content_len = f->msg.content_len };

	memcpy(m.id, f->id, sizeof(m.id));
	snprintf(m.sender, sizeof(m.sender), "%s", f->msg.sender);
	snprintf(m.address, sizeof(m.address), "%s", to);
	return m;
}

/* Send a request with the queue file and read one reply. */
static struct local_msg ask(struct fixture *f, struct local_msg req)
{
	struct local_msg reply;
	const char *err = NULL;
	int fd = -1;

	assert_int_equal(local_send(f->sock, &req, req.type == LOCAL_DELIVER ? f->queue_fd : -1), 0);
	if (local_recv(f->sock, false, &reply, &fd, &err) != 1)
		fail_msg("no reply from the agent: %s", err != NULL ? err : "end of stream");
	assert_int_equal(reply.seq, req.seq);
	return reply;
}

static size_t count_new(const struct fixture *f, const char *user)
{
	buf_t b = BUF_INIT;
	size_t n = 0;

	buf_printf(&b, "%s/example.test/%s/Maildir/new", f->cfg.mail_root, user);
	DIR *dir = opendir(b.data);
	buf_free(&b);
	if (dir == NULL)
		return 0;
	struct dirent *de;
	while ((de = readdir(dir)) != NULL)
		n += de->d_name[0] != '.';
	closedir(dir);
	return n;
}

/* ---- the agent ---------------------------------------------------------------- */

static void test_agent_delivers_numbers_and_syncs(void **state)
{
	struct fixture *f = *state;

	start_child(f, run_agent);
	hello(f);
	struct local_msg r = ask(f, deliver_req(f, 1, "alice@example.test"));
	assert_int_equal(r.type, LOCAL_RESULT);
	assert_int_equal(r.result, LOCAL_DELIVERED);
	assert_int_equal(r.folder, 1);
	r = ask(f, deliver_req(f, 2, "bob@example.test"));
	assert_int_equal(r.result, LOCAL_DELIVERED);
	assert_int_equal(r.folder, 2);
	/* The same copy again: found by its name, same folder number. */
	r = ask(f, deliver_req(f, 3, "alice@example.test"));
	assert_int_equal(r.result, LOCAL_ALREADY);
	assert_int_equal(r.folder, 1);
	/* Not a user: refused before any path is built. */
	r = ask(f, deliver_req(f, 4, "mallory@example.test"));
	assert_int_equal(r.result, LOCAL_PERMFAIL);
	assert_int_equal(r.folder, 0);
	assert_string_equal(r.reason, "5.1.1 unknown user");
	r = ask(f, deliver_req(f, 5, "../../etc@example.test"));
	assert_int_equal(r.result, LOCAL_PERMFAIL);
	struct local_msg sync = { .type = LOCAL_SYNC, .seq = 6 };
	r = ask(f, sync);
	assert_int_equal(r.type, LOCAL_SYNC_DONE);
	assert_int_equal(r.folders, 2);
	assert_int_equal(r.failed, 0);
	/* A new batch numbers from 1 again. */
	r = ask(f, deliver_req(f, 7, "bob@example.test"));
	assert_int_equal(r.result, LOCAL_ALREADY);
	assert_int_equal(r.folder, 1);
	close(f->sock);
	f->sock = -1;
	assert_int_equal(child_exit_status(f), 0);
	assert_int_equal(count_new(f, "alice"), 1);
	assert_int_equal(count_new(f, "bob"), 1);
}

static void test_agent_stops_before_hello(void **state)
{
	struct fixture *f = *state;

	start_child(f, run_agent);
	struct local_msg req = deliver_req(f, 1, "alice@example.test");
	assert_int_equal(local_send(f->sock, &req, f->queue_fd), 0);
	assert_int_equal(child_exit_status(f), 1);
	assert_int_equal(count_new(f, "alice"), 0);
}

static void test_agent_stops_at_a_short_file(void **state)
{
	struct fixture *f = *state;
	struct local_msg reply;
	const char *err = NULL;
	int fd = -1;

	start_child(f, run_agent);
	hello(f);
	struct local_msg req = deliver_req(f, 1, "alice@example.test");
	req.content_len += 1; /* one byte more than the file holds */
	assert_int_equal(local_send(f->sock, &req, f->queue_fd), 0);
	assert_int_equal(local_recv(f->sock, false, &reply, &fd, &err), 0);
	assert_int_equal(child_exit_status(f), 1);
	assert_int_equal(count_new(f, "alice"), 0);
}

/* ---- the queue manager against a broken agent ----------------------------------- */

/* Answers the first DELIVER with a folder number that skips ahead. */
static int agent_skipping_folders(struct fixture *f, int sock)
{
	struct local_msg m;
	const char *err = NULL;
	int fd = -1;

	(void)f;
	while (local_recv(sock, true, &m, &fd, &err) == 1) {
		if (fd >= 0)
			close(fd);
		if (m.type != LOCAL_DELIVER)
			continue;
		struct local_msg r = { .type = LOCAL_RESULT, .seq = m.seq,
				       .result = LOCAL_DELIVERED, .folder = 7 };
		if (local_send(sock, &r, -1) < 0)
			return 2;
	}
	return 0;
}

/* Dies in the middle of the first DELIVER. */
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

static int run_qmgr_with(struct fixture *f, int (*agent)(struct fixture *, int))
{
	int sv[2], status = 0;

	assert_int_equal(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv), 0);
	fflush(NULL);
	pid_t qmgr = fork();
	assert_true(qmgr >= 0);
	if (qmgr == 0) {
		int log = open(f->log_path, O_WRONLY | O_CREAT | O_APPEND, 0600);
		if (log >= 0)
			dup2(log, STDERR_FILENO);
		pid_t pid = fork();
		if (pid == 0) {
			close(sv[0]);
			_exit(agent(f, sv[1]));
		}
		close(sv[1]);
		struct qmgr_agent link = { sv[0], pid };
		_exit(qmgr_main(&f->cfg, f->tables, -1, &link));
	}
	close(sv[0]);
	close(sv[1]);
	/* It finds the message at start-up, and must end on its own. */
	for (int i = 0; i < 1000 && waitpid(qmgr, &status, WNOHANG) == 0; i++)
		usleep(10000);
	if (kill(qmgr, 0) == 0) {
		kill(qmgr, SIGKILL);
		waitpid(qmgr, &status, 0);
		fail_msg("the queue manager did not exit after losing its agent");
	}
	assert_true(WIFEXITED(status));
	return WEXITSTATUS(status);
}

/* The message id is in folder with its recipient pending after
 * `attempts` counted attempts; false if it is not there. */
static bool pending_in(struct fixture *f, const char *folder, const char *id,
		       uint32_t attempts)
{
	buf_t path = BUF_INIT;
	struct qf_msg m;
	char *err = NULL;

	buf_printf(&path, "%s/%s/%s", f->cfg.spool_dir, folder, id);
	int fd = open(path.data, O_RDONLY);
	buf_free(&path);
	if (fd < 0)
		return false;
	assert_int_equal(qf_read(fd, &m, &err), 0);
	assert_int_equal(m.rcpts[0].status, QF_RCPT_PENDING);
	assert_int_equal(m.attempts, attempts);
	close(fd);
	qf_msg_free(&m);
	return true;
}

static void assert_deferred_not_done(struct fixture *f, const char *id, const char *why)
{
	buf_t log = BUF_INIT;

	if (!pending_in(f, "deferred", id, 1))
		fail_msg("message not deferred");
	safeio_read_file(f->log_path, 1 << 20, &log);
	if (strstr(log.data, why) == NULL ||
	    strstr(log.data, "the queue manager exits so that the supervisor restarts it with new agents") ==
		    NULL ||
	    strstr(log.data, "status=deferred (4.3.0 local delivery agent died or failed)") == NULL)
		fail_msg("log lacks the agent failure:\n%s", log.data);
	buf_free(&log);
}

static void test_qmgr_fails_closed_on_a_bad_reply(void **state)
{
	struct fixture *f = *state;

	assert_int_equal(run_qmgr_with(f, agent_skipping_folders), 1);
	assert_deferred_not_done(f, f->id, "protocol violation: bad folder number in a result");
	assert_int_equal(count_new(f, "alice"), 0);
}

/* Of two ready messages, the one in flight is deferred; the other is
 * not started, so the next queue manager delivers it without delay. */
static void test_qmgr_defers_when_the_agent_dies(void **state)
{
	struct fixture *f = *state;
	char other[QUEUE_ID_LEN + 1];

	commit_message(f, "bob@example.test", other);
	assert_int_equal(run_qmgr_with(f, agent_dying), 1);
	/* The scan meets them in directory order: either may go first. */
	bool bob_first = pending_in(f, "queue", f->id, 0);
	const char *tried = bob_first ? other : f->id, *untouched = bob_first ? f->id : other;
	assert_deferred_not_done(f, tried, "closed its socket");
	assert_true(pending_in(f, "queue", untouched, 0));
	assert_int_equal(count_new(f, "alice") + count_new(f, "bob"), 0);
}

int main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
	const struct CMUnitTest tests[] = {
		T(test_agent_delivers_numbers_and_syncs),
		T(test_agent_stops_before_hello),
		T(test_agent_stops_at_a_short_file),
		T(test_qmgr_fails_closed_on_a_bad_reply),
		T(test_qmgr_defers_when_the_agent_dies),
	};
#undef T
	return cmocka_run_group_tests(tests, NULL, NULL);
}

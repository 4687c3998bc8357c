/*
 * test_queue_commit.c - the queue manager and a commit in progress
 * (defect 8 of issue 5). The writer holds the lock on its file until the
 * commit is over; the queue manager must not deliver a file in queue/
 * whose commit is still running, and must find it gone when the fsync of
 * queue/ failed and the writer took it back (the client was told 451, so
 * a delivery would be a duplicate after its retry).
 *
 * Linked with -Wl,--wrap=safeio_fsync_dir (see the Makefile): in the writer
 * child, the fsync of queue/ stops at a gate the test opens, then fails
 * or succeeds.
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
#include "queue/qmgr.h"
#include "queue/queue.h"

/* ---- the safeio_fsync_dir wrapper -------------------------------------------------- */

int __real_safeio_fsync_dir(const char *path);
int __wrap_safeio_fsync_dir(const char *path);

static int gate_reached = -1; /* write end: "the commit is at the fsync" */
static int gate_open = -1;    /* read end: the test lets it go on */
static bool gate_fails;       /* then fail with EIO, or really fsync */

int __wrap_safeio_fsync_dir(const char *path)
{
	size_t n = strlen(path);
	char c = 0;

	if (gate_reached < 0 || n < 6 || strcmp(path + n - 6, "/queue") != 0)
		return __real_safeio_fsync_dir(path);
	if (write(gate_reached, "r", 1) != 1 || read(gate_open, &c, 1) != 1)
		_exit(3);
	if (!gate_fails)
		return __real_safeio_fsync_dir(path);
	errno = EIO;
	return -1;
}

/* ---- fixture ------------------------------------------------------------------ */

struct fixture {
	char *dir;
	struct config cfg;
	struct recipient_tables *tables;
	int notify[2];
	pid_t qmgr;
	pid_t writer; /* killed at teardown if a test failed with it waiting */
	char *log_path;
};

static void put_file(const char *path, const char *text)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);

	assert_true(fd >= 0);
	assert_int_equal(safeio_write_all(fd, text, strlen(text)), 0);
	close(fd);
}

static int setup(void **state)
{
	struct fixture *f = xcalloc(1, sizeof(*f));
	char tmpl[] = "/tmp/postern-test-commit-XXXXXX";
	char *err = NULL;

	assert_non_null(mkdtemp(tmpl));
	f->dir = xstrdup(tmpl);
	char *users = safeio_path_join(f->dir, "users");
	put_file(users, "alice@example.test:{PLAIN}x::::::\n");
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
	f->cfg.queue_scan_interval = 1;
	f->log_path = safeio_path_join(f->dir, "qmgr.log");
	assert_int_equal(queue_dirs_create(f->cfg.spool_dir, &err), 0);
	assert_int_equal(pipe(f->notify), 0);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	if (f->writer > 0) {
		kill(f->writer, SIGKILL);
		waitpid(f->writer, NULL, 0);
	}
	if (f->qmgr > 0) {
		kill(f->qmgr, SIGKILL);
		waitpid(f->qmgr, NULL, 0);
	}
	close(f->notify[0]);
	close(f->notify[1]);
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

/* The queue manager and its agent, as the supervisor starts them. */
static void start_qmgr(struct fixture *f)
{
	fflush(NULL);
	f->qmgr = fork();
	assert_true(f->qmgr >= 0);
	if (f->qmgr != 0)
		return;
	int log = open(f->log_path, O_WRONLY | O_CREAT | O_APPEND, 0600);
	int sv[2];
	if (log < 0 || dup2(log, STDERR_FILENO) < 0 ||
	    socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0)
		_exit(2);
	pid_t agent = fork();
	if (agent == 0) {
		close(sv[0]);
		_exit(local_main(&f->cfg, f->tables, sv[1]));
	}
	close(sv[1]);
	struct qmgr_agent link = { sv[0], agent };
	_exit(qmgr_main(&f->cfg, f->tables, f->notify[0], &link));
}

static void stop_qmgr(struct fixture *f)
{
	int status = 0;

	assert_int_equal(kill(f->qmgr, SIGTERM), 0);
	assert_int_equal(waitpid(f->qmgr, &status, 0), f->qmgr);
	f->qmgr = 0;
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
}

static size_t count_files(const struct fixture *f, const char *rel)
{
	char *path = safeio_path_join(f->dir, rel);
	DIR *dir = opendir(path);
	struct dirent *de;
	size_t n = 0;

	free(path);
	if (dir == NULL)
		return 0;
	while ((de = readdir(dir)) != NULL)
		n += de->d_name[0] != '.';
	closedir(dir);
	return n;
}

static size_t delivered(const struct fixture *f)
{
	return count_files(f, "mail/example.test/alice/Maildir/new");
}

static bool in_queue(const struct fixture *f, const char *id)
{
	char *rel = safeio_path_join("spool/queue", id), *path = safeio_path_join(f->dir, rel);
	bool there = access(path, F_OK) == 0;

	free(rel);
	free(path);
	return there;
}

static char *read_log(const struct fixture *f)
{
	buf_t b = BUF_INIT;

	safeio_read_file(f->log_path, 1 << 24, &b);
	return buf_steal(&b);
}

struct writer_child {
	pid_t pid;
	int reached; /* read end */
	int open;    /* write end */
};

/* Fork a writer that commits one message for alice and stops at the
 * fsync of queue/; its exit status is 0 if the commit failed when `fails`
 * and succeeded otherwise. */
static struct writer_child start_writer(struct fixture *f, const char *id, bool fails)
{
	int reached[2], gate[2];
	struct writer_child w;

	assert_int_equal(pipe(reached), 0);
	assert_int_equal(pipe(gate), 0);
	fflush(NULL);
	w.pid = fork();
	assert_true(w.pid >= 0);
	if (w.pid == 0) {
		strlist_t rcpts = { NULL, 0 };
		char *err = NULL;
		const char *text = "Subject: commit\n\nbody\n";
		strlist_add(&rcpts, "alice@example.test");
		struct queue_envelope env = {
			.arrival_us = (uint64_t)time(NULL) * 1000000u, .client_addr = "192.0.2.1",
			.client_helo = "test", .protocol = "ESMTP", .sender = "s@remote.test",
			.recipients = &rcpts,
		};
		gate_reached = reached[1];
		gate_open = gate[0];
		gate_fails = fails;
		struct queue_writer *qw = queue_writer_open(f->cfg.spool_dir, id, &env, &err);
		if (qw == NULL || queue_writer_write(qw, text, strlen(text), &err) < 0)
			_exit(2);
		int rc = queue_writer_commit(&qw, &err);
		_exit((rc < 0) == fails ? 0 : 1);
	}
	close(reached[1]);
	close(gate[0]);
	f->writer = w.pid;
	w.reached = reached[0];
	w.open = gate[1];
	return w;
}

/* Let the writer's fsync go on; its exit status. */
static int finish_writer(struct fixture *f, struct writer_child *w)
{
	int status = 0;

	assert_int_equal(write(w->open, "o", 1), 1);
	assert_int_equal(waitpid(w->pid, &status, 0), w->pid);
	f->writer = 0;
	close(w->open);
	close(w->reached);
	assert_true(WIFEXITED(status));
	return WEXITSTATUS(status);
}

static void wait_reached(struct writer_child *w)
{
	char c;

	assert_int_equal(read(w->reached, &c, 1), 1);
}

/* ---- tests ----------------------------------------------------------------------- */

/* The fsync of queue/ fails after the rename: while the commit is
 * failing the queue manager sees the file (notified and by its scan)
 * but does not deliver it, and afterwards the file is gone. */
static void test_failed_commit_never_delivered(void **state)
{
	struct fixture *f = *state;
	char id[QUEUE_ID_LEN + 1];

	queue_id_new(id);
	start_qmgr(f);
	struct writer_child w = start_writer(f, id, true);
	wait_reached(&w);
	assert_true(in_queue(f, id));
	queue_notify(f->notify[1], id); /* as if announced early */
	usleep(1500000);                /* a notification, retries and a scan */
	assert_int_equal(delivered(f), 0);
	assert_true(in_queue(f, id));
	assert_int_equal(finish_writer(f, &w), 0);
	assert_false(in_queue(f, id));
	usleep(1500000);
	stop_qmgr(f);
	assert_int_equal(delivered(f), 0);
	assert_int_equal(count_files(f, "spool/queue"), 0);
	assert_int_equal(count_files(f, "spool/deferred"), 0);
	char *log = read_log(f);
	if (strstr(log, id) != NULL && (strstr(log, "error") != NULL || strstr(log, "attempts=") != NULL))
		fail_msg("a commit in progress was counted or logged as an error:\n%s", log);
	free(log);
}

/* A slow but successful commit: delivered once, right after it ends,
 * without a counted attempt. */
static void test_slow_commit_delivered_after_it(void **state)
{
	struct fixture *f = *state;
	char id[QUEUE_ID_LEN + 1];

	queue_id_new(id);
	start_qmgr(f);
	struct writer_child w = start_writer(f, id, false);
	wait_reached(&w);
	queue_notify(f->notify[1], id);
	usleep(800000);
	assert_int_equal(delivered(f), 0);
	assert_int_equal(finish_writer(f, &w), 0);
	for (int i = 0; i < 300 && delivered(f) == 0; i++)
		usleep(10000);
	usleep(100000);
	stop_qmgr(f);
	assert_int_equal(delivered(f), 1);
	assert_int_equal(count_files(f, "spool/queue"), 0);
	char *log = read_log(f);
	if (strstr(log, "attempts=1 status=sent") == NULL)
		fail_msg("expected a first-attempt delivery:\n%s", log);
	free(log);
}

int main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
	const struct CMUnitTest tests[] = {
		T(test_failed_commit_never_delivered),
		T(test_slow_commit_delivered_after_it),
	};
#undef T
	return cmocka_run_group_tests(tests, NULL, NULL);
}

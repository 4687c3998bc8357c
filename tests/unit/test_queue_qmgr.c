/*
 * test_queue_qmgr.c - the queue manager end to end, in a forked child on a
 * temporary spool: delivery and removal, alias de-duplication, the
 * end-of-message changes of the trailer (recipients, sender, header
 * fields) as delivered, bounces,
 * <> never bounced, alias loops, deferral with backoff, expiry, recovery
 * after a crash without duplicates, corrupt and stale files, scans
 * without notification, the spool lock, and the retry backoff.
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
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
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
#include "queue/maildir.h"
#include "queue/qmgr.h"
#include "queue/qmgr_internal.h"
#include "queue/queue.h"
#include "queue/queue_file.h"

struct fixture {
	char *dir;
	struct config cfg;
	struct recipient_tables *tables;
	int notify[2];
	pid_t child;
	char *log_path;
};

static char *fpath(const struct fixture *f, const char *rel)
{
	return safeio_path_join(f->dir, rel);
}

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
	char tmpl[] = "/tmp/postern-test-qmgr-XXXXXX";

	assert_non_null(mkdtemp(tmpl));
	f->dir = xstrdup(tmpl);
	char *users = fpath(f, "users"), *aliases = fpath(f, "aliases");
	put_file(users, "alice@example.test:{PLAIN}x::::::\n"
			"bob@example.test:{PLAIN}x::::::\n");
	put_file(aliases, "team@example.test: alice@example.test, bob@example.test\n"
			  "loop1@example.test: loop2@example.test\n"
			  "loop2@example.test: loop1@example.test\n"
			  "mixed@example.test: alice@example.test, far@remote.test\n");
	struct recipients_owner owner = { "the test user", getuid(), getgid() };
	f->tables = recipients_load(users, aliases, &owner, stderr);
	assert_non_null(f->tables);
	free(users);
	free(aliases);
	f->cfg.spool_dir = fpath(f, "spool");
	f->cfg.mail_root = fpath(f, "mail");
	f->cfg.hostname = xstrdup("mx.example.test");
	strlist_add(&f->cfg.local_domains, "example.test");
	f->cfg.queue_retry_min = 300;
	f->cfg.queue_retry_max = 4000;
	f->cfg.queue_lifetime = 5 * 86400;
	f->cfg.queue_scan_interval = 300;
	f->log_path = fpath(f, "qmgr.log");
	char *err = NULL;
	assert_int_equal(queue_dirs_create(f->cfg.spool_dir, &err), 0);
	assert_int_equal(pipe(f->notify), 0);
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

/* ---- running the queue manager ---------------------------------------------- */

/* The queue manager and its local delivery agent, as the supervisor
 * starts them but without switching accounts. */
static NORETURN void run_qmgr_pair(struct fixture *f, bool use_notify)
{
	int sv[2];

	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0)
		_exit(2);
	pid_t agent = fork();
	if (agent == 0) {
		close(sv[0]);
		_exit(local_main(&f->cfg, f->tables, sv[1]));
	}
	close(sv[1]);
	struct qmgr_agent link = { sv[0], agent };
	_exit(qmgr_main(&f->cfg, f->tables, use_notify ? f->notify[0] : -1, &link));
}

static void start_qmgr(struct fixture *f, bool use_notify)
{
	fflush(NULL);
	f->child = fork();
	assert_true(f->child >= 0);
	if (f->child == 0) {
		int fd = open(f->log_path, O_WRONLY | O_CREAT | O_APPEND, 0600);
		if (fd >= 0)
			dup2(fd, STDERR_FILENO);
		run_qmgr_pair(f, use_notify);
	}
}

static void stop_qmgr(struct fixture *f)
{
	int status = 0;

	assert_int_equal(kill(f->child, SIGTERM), 0);
	assert_int_equal(waitpid(f->child, &status, 0), f->child);
	f->child = 0;
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
}

static size_t count_files(const struct fixture *f, const char *rel)
{
	char *path = fpath(f, rel);
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

static bool spool_idle(const struct fixture *f)
{
	return count_files(f, "spool/queue") == 0;
}

/* Wait up to 10 s for the queue/ folder to empty. */
static char *read_log(const struct fixture *f);

static void wait_idle(const struct fixture *f)
{
	for (int i = 0; i < 1000 && !spool_idle(f); i++)
		usleep(10000);
	if (!spool_idle(f))
		fail_msg("queue/ not empty after 10 s; log:\n%s", read_log(f));
	usleep(20000); /* let the last log lines land */
}

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

/* Commit a message; optionally notify. Returns its id (static). */
static const char *queue_msg(struct fixture *f, const char *sender,
			     const char *rcpts, bool notify)
{
	static char id[QUEUE_ID_LEN + 1];
	strlist_t list = { NULL, 0 };
	char *err = NULL;
	const char *content = "Received: from test by mx.example.test\n"
			      "Subject: test\n\nHello.\n";

	strlist_split(&list, rcpts);
	struct queue_envelope env = {
		.arrival_us = (uint64_t)time(NULL) * 1000000u, .client_addr = "192.0.2.1",
		.client_helo = "test", .protocol = "ESMTP", .sender = sender,
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

static char *mailbox(const char *user, const char *sub)
{
	buf_t b = BUF_INIT;

	buf_printf(&b, "mail/example.test/%s/Maildir/%s", user, sub);
	return buf_steal(&b);
}

static size_t mail_count(const struct fixture *f, const char *user,
			 const char *sub)
{
	char *rel = mailbox(user, sub);
	size_t n = count_files(f, rel);

	free(rel);
	return n;
}

/* Content of the only file in a user's new/. */
static char *only_mail(const struct fixture *f, const char *user)
{
	char *rel = mailbox(user, "new"), *path = fpath(f, rel);
	DIR *dir = opendir(path);
	struct dirent *de;
	buf_t b = BUF_INIT;

	assert_non_null(dir);
	while ((de = readdir(dir)) != NULL) {
		if (de->d_name[0] == '.')
			continue;
		char *file = safeio_path_join(path, de->d_name);
		safeio_read_file(file, 1 << 20, &b);
		free(file);
		break;
	}
	closedir(dir);
	free(rel);
	free(path);
	return buf_steal(&b);
}

/* ---- tests ---------------------------------------------------------------------- */

static void test_delivers_and_dedupes(void **state)
{
	struct fixture *f = *state;

	start_qmgr(f, true);
	queue_msg(f, "sender@remote.test", "alice@example.test", true);
	queue_msg(f, "sender@remote.test", "team@example.test, BOB@Example.Test", true);
	wait_idle(f);
	stop_qmgr(f);
	assert_int_equal(mail_count(f, "alice", "new"), 2);
	assert_int_equal(mail_count(f, "bob", "new"), 1); /* one copy only */
	assert_int_equal(count_files(f, "spool/deferred"), 0);
	assert_log(f, "to=<bob@example.test> orig_to=<team@example.test> relay=maildir");
	assert_log(f, "attempts=1 status=sent (delivered to maildir)");
	assert_log(f, ": removed");
}

static void test_unknown_user_bounces(void **state)
{
	struct fixture *f = *state;

	start_qmgr(f, true);
	queue_msg(f, "alice@example.test", "nobody@example.test", true);
	wait_idle(f);
	stop_qmgr(f);
	assert_int_equal(mail_count(f, "alice", "new"), 1);
	char *mail = only_mail(f, "alice");
	assert_non_null(strstr(mail, "Return-Path: <>\n"));
	assert_non_null(strstr(mail, "Final-Recipient: rfc822; nobody@example.test\n"));
	assert_non_null(strstr(mail, "Status: 5.1.1\n"));
	free(mail);
	assert_log(f, "status=bounced (5.1.1 unknown user)");
	assert_log(f, "sent to <alice@example.test>");
}

/* What a verdict or a milter decides at the end of the message (the
 * queue file's trailer, docs/queue.md) is what delivery does: a removed
 * recipient gets nothing, an added one gets a copy, the new sender is
 * the Return-Path and gets the bounces, and the header changes are in
 * the delivered copy. */
static void test_end_of_message_changes_are_delivered(void **state)
{
	struct fixture *f = *state;
	strlist_t list = { NULL, 0 };
	char id[QUEUE_ID_LEN + 1], *err = NULL;
	const char *content = "Received: from test by mx.example.test\n"
			      "Subject: test\n\nHello.\n";

	strlist_add(&list, "alice@example.test");
	struct queue_envelope env = {
		.arrival_us = (uint64_t)time(NULL) * 1000000u, .client_addr = "192.0.2.1",
		.client_helo = "test", .protocol = "ESMTP", .sender = "sender@remote.test",
		.recipients = &list,
	};
	queue_id_new(id);
	struct queue_writer *w = queue_writer_open(f->cfg.spool_dir, id, &env, &err);
	assert_non_null(w);
	assert_int_equal(queue_writer_write(w, content, strlen(content), &err), 0);
	assert_int_equal(queue_writer_remove_rcpt(w, "alice@example.test", &err), 0);
	assert_int_equal(queue_writer_add_rcpt(w, "bob@example.test", &err), 0);
	assert_int_equal(queue_writer_add_rcpt(w, "nobody@example.test", &err), 0);
	assert_int_equal(queue_writer_set_sender(w, "alice@example.test", &err), 0);
	assert_int_equal(queue_writer_remove_header(w, "Subject", 0, &err), 0);
	assert_int_equal(queue_writer_add_header(w, false, "X-Added: yes", &err), 0);
	assert_int_equal(queue_writer_commit(&w, &err), 0);
	strlist_free(&list);

	start_qmgr(f, true);
	queue_notify(f->notify[1], id);
	wait_idle(f);
	stop_qmgr(f);
	assert_int_equal(count_files(f, "spool/deferred"), 0);
	assert_int_equal(mail_count(f, "bob", "new"), 1);
	char *mail = only_mail(f, "bob");
	if (strcmp(mail, "Return-Path: <alice@example.test>\nDelivered-To: bob@example.test\n"
			 "Received: from test by mx.example.test\nX-Added: yes\n\nHello.\n") != 0)
		fail_msg("bob's copy:\n%s", mail);
	free(mail);
	/* alice, removed, gets no copy: only the bounce for nobody@, sent
	 * to her as the new sender */
	assert_int_equal(mail_count(f, "alice", "new"), 1);
	mail = only_mail(f, "alice");
	assert_non_null(strstr(mail, "Return-Path: <>\n"));
	assert_non_null(strstr(mail, "Final-Recipient: rfc822; nobody@example.test\n"));
	assert_null(strstr(mail, "Final-Recipient: rfc822; alice@example.test"));
	free(mail);
	assert_log(f, "sent to <alice@example.test>");
}

static void test_null_sender_never_bounced(void **state)
{
	struct fixture *f = *state;

	start_qmgr(f, true);
	queue_msg(f, "", "nobody@example.test, loop1@example.test", true);
	wait_idle(f);
	stop_qmgr(f);
	assert_int_equal(count_files(f, "spool/deferred"), 0);
	assert_int_equal(count_files(f, "mail"), 0);
	/* reported to the postmaster once; that report fails too (no such
	 * user here) and is dropped: no loop */
	assert_log(f, "sender is <>: double bounce");
	assert_log(f, "sent to <postmaster@example.test>");
	assert_log(f, "double bounce dropped");
	assert_log(f, "status=bounced (5.4.6 alias loop)");
}

static void test_remote_deferred_then_retried(void **state)
{
	struct fixture *f = *state;

	start_qmgr(f, true);
	const char *id = queue_msg(f, "sender@remote.test", "mixed@example.test", true);
	char saved[QUEUE_ID_LEN + 1];
	memcpy(saved, id, sizeof(saved));
	wait_idle(f);
	for (int i = 0; i < 500 && count_files(f, "spool/deferred") == 0; i++)
		usleep(10000);
	stop_qmgr(f);
	assert_int_equal(count_files(f, "spool/deferred"), 1);
	assert_int_equal(mail_count(f, "alice", "new"), 1);
	assert_log(f, "to=<far@remote.test> orig_to=<mixed@example.test> relay=none");
	assert_log(f, "status=deferred (4.3.0 no relay delivery agent");

	/* The file: attempts 1, next try = mtime = now + retry_min. */
	buf_t rel = BUF_INIT;
	buf_printf(&rel, "spool/deferred/%s", saved);
	char *path = fpath(f, rel.data);
	struct stat st;
	struct qf_msg m;
	char *err = NULL;
	int fd = open(path, O_RDONLY);
	assert_true(fd >= 0);
	assert_int_equal(qf_read(fd, &m, &err), 0);
	close(fd);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(m.attempts, 1);
	assert_int_equal((uint64_t)st.st_mtime, m.next_try);
	uint64_t now = (uint64_t)time(NULL);
	assert_true(m.next_try >= now + 290 && m.next_try <= now + 310);
	assert_int_equal(m.rcpts[0].status, QF_RCPT_PENDING);
	qf_msg_free(&m);

	/* Make it due and restart: alice's copy is found, not duplicated,
	 * and the second deferral doubles the delay. */
	struct timespec past[2] = { { (time_t)now - 10, 0 }, { (time_t)now - 10, 0 } };
	assert_int_equal(utimensat(AT_FDCWD, path, past, 0), 0);
	start_qmgr(f, true);
	for (int i = 0; i < 500; i++) {
		fd = open(path, O_RDONLY);
		if (fd >= 0 && qf_read(fd, &m, &err) == 0) {
			uint32_t attempts = m.attempts;
			qf_msg_free(&m);
			close(fd);
			if (attempts == 2)
				break;
		} else if (fd >= 0) {
			close(fd);
		}
		usleep(10000);
	}
	stop_qmgr(f);
	fd = open(path, O_RDONLY);
	assert_int_equal(qf_read(fd, &m, &err), 0);
	close(fd);
	assert_int_equal(m.attempts, 2);
	now = (uint64_t)time(NULL);
	assert_true(m.next_try >= now + 590 && m.next_try <= now + 610);
	qf_msg_free(&m);
	assert_int_equal(mail_count(f, "alice", "new"), 1);
	assert_log(f, "delivered to maildir by an earlier attempt");
	free(path);
	buf_free(&rel);
}

static void test_expired_bounces(void **state)
{
	struct fixture *f = *state;

	f->cfg.queue_lifetime = 0;
	start_qmgr(f, true);
	queue_msg(f, "alice@example.test", "far@remote.test", true);
	wait_idle(f);
	stop_qmgr(f);
	assert_int_equal(count_files(f, "spool/deferred"), 0);
	char *mail = only_mail(f, "alice");
	assert_non_null(strstr(mail, "Status: 4.4.7\n"));
	assert_non_null(strstr(mail, "Final-Recipient: rfc822; far@remote.test\n"));
	free(mail);
	assert_log(f, "status=bounced (4.4.7 delivery time expired");
}

static void test_recovery_without_duplicate(void **state)
{
	struct fixture *f = *state;
	char *err = NULL;

	/* A crashed run delivered, the user read the mail (cur/), but the
	 * status byte never reached the disk: the file is still in queue/. */
	const char *id = queue_msg(f, "sender@remote.test", "alice@example.test", false);
	char *qpath = NULL;
	buf_t rel = BUF_INIT;
	buf_printf(&rel, "spool/queue/%s", id);
	qpath = fpath(f, rel.data);
	int fd = open(qpath, O_RDONLY);
	struct qf_msg m;
	assert_int_equal(qf_read(fd, &m, &err), 0);
	struct maildir_delivery d = {
		.mail_root = f->cfg.mail_root, .hostname = f->cfg.hostname,
		.address = "alice@example.test", .queue_fd = fd, .msg = &m,
	};
	assert_int_equal(maildir_deliver(&d, &err), MAILDIR_DELIVERED);
	qf_msg_free(&m);
	close(fd);
	char *newrel = mailbox("alice", "new"), *currel = mailbox("alice", "cur");
	char *newdir = fpath(f, newrel), *curdir = fpath(f, currel);
	DIR *dir = opendir(newdir);
	struct dirent *de;
	while ((de = readdir(dir)) != NULL) {
		if (de->d_name[0] == '.')
			continue;
		buf_t from = BUF_INIT, to = BUF_INIT;
		buf_printf(&from, "%s/%s", newdir, de->d_name);
		buf_printf(&to, "%s/%s:2,S", curdir, de->d_name);
		assert_int_equal(rename(from.data, to.data), 0);
		buf_free(&from);
		buf_free(&to);
	}
	closedir(dir);

	start_qmgr(f, true);
	wait_idle(f);
	stop_qmgr(f);
	assert_int_equal(mail_count(f, "alice", "new"), 0);
	assert_int_equal(mail_count(f, "alice", "cur"), 1);
	assert_log(f, "delivered to maildir by an earlier attempt");
	assert_log(f, "1 message recovered");
	free(newrel);
	free(currel);
	free(newdir);
	free(curdir);
	free(qpath);
	buf_free(&rel);
}

/* Wait up to 5 s for the started queue manager to make its wake-up FIFO
 * (after its spool folders). */
static void wait_started(const struct fixture *f)
{
	char *fifo = fpath(f, "spool/qmgr.wake");
	struct stat st;
	for (int i = 0; i < 500 && stat(fifo, &st) < 0; i++)
		usleep(10000);
	assert_int_equal(stat(fifo, &st), 0);
	free(fifo);
}

/* RFC 3461 NOTIFY=SUCCESS: if the success report cannot be queued, the
 * recipient is not marked done (that would lose the report for good):
 * it is deferred, and the next attempt finds its copy (no second one)
 * and queues the report then. */
static void test_success_report_not_lost(void **state)
{
	struct fixture *f = *state;
	char id[QUEUE_ID_LEN + 1], *err = NULL;

	start_qmgr(f, true);
	wait_started(f);
	/* the report cannot be written: incoming/ is not a folder */
	char *incoming = fpath(f, "spool/incoming");
	assert_int_equal(rmdir(incoming), 0);
	put_file(incoming, "");
	/* the message is written in another spool and moved in */
	char *other = fpath(f, "other");
	assert_int_equal(queue_dirs_create(other, &err), 0);
	strlist_t list = { NULL, 0 };
	strlist_add(&list, "bob@example.test");
	static const struct queue_rcpt_dsn want_success[1] = { { DSN_NOTIFY_SUCCESS, NULL } };
	struct queue_envelope env = {
		.arrival_us = (uint64_t)time(NULL) * 1000000u, .client_addr = "192.0.2.1",
		.client_helo = "test", .protocol = "ESMTP", .sender = "alice@example.test",
		.recipients = &list, .rcpt_dsn = want_success,
	};
	const char *content = "Received: from test by mx.example.test\nSubject: s\n\nHello.\n";
	queue_id_new(id);
	struct queue_writer *w = queue_writer_open(other, id, &env, &err);
	assert_non_null(w);
	assert_int_equal(queue_writer_write(w, content, strlen(content), &err), 0);
	assert_int_equal(queue_writer_commit(&w, &err), 0);
	buf_t from = BUF_INIT, to = BUF_INIT;
	buf_printf(&from, "%s/queue/%s", other, id);
	buf_printf(&to, "%s/queue/%s", f->cfg.spool_dir, id);
	assert_int_equal(rename(from.data, to.data), 0);
	queue_notify(f->notify[1], id);
	wait_idle(f);
	stop_qmgr(f);
	assert_log(f, "cannot queue success report");
	assert_int_equal(mail_count(f, "bob", "new"), 1);
	assert_int_equal(count_files(f, "spool/deferred"), 1);

	/* the spool is mended; the deferred message is due */
	assert_int_equal(unlink(incoming), 0);
	assert_int_equal(mkdir(incoming, 0700), 0);
	buf_reset(&to);
	buf_printf(&to, "%s/deferred/%s", f->cfg.spool_dir, id);
	assert_int_equal(utimes(to.data, NULL), 0);
	start_qmgr(f, true);
	for (int i = 0; i < 1000 && (count_files(f, "spool/deferred") > 0 ||
				     mail_count(f, "alice", "new") == 0 || !spool_idle(f)); i++)
		usleep(10000);
	wait_idle(f);
	stop_qmgr(f);
	assert_int_equal(count_files(f, "spool/deferred"), 0);
	assert_int_equal(mail_count(f, "bob", "new"), 1); /* no second copy */
	assert_int_equal(mail_count(f, "alice", "new"), 1);
	char *mail = only_mail(f, "alice");
	assert_non_null(strstr(mail, "Final-Recipient: rfc822; bob@example.test\nAction: delivered\n"));
	free(mail);
	strlist_free(&list);
	buf_free(&from);
	buf_free(&to);
	free(other);
	free(incoming);
}

/* Another process holds the spool lock until killed. */
static pid_t hold_lock(const char *lock_path)
{
	int ready[2];
	char c = 0;

	assert_int_equal(pipe(ready), 0);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		int lock = open(lock_path, O_RDWR | O_CREAT, 0600);
		if (lock < 0 || flock(lock, LOCK_EX) < 0)
			_exit(1);
		if (write(ready[1], "x", 1) != 1)
			_exit(1);
		for (;;)
			pause();
	}
	close(ready[1]);
	assert_int_equal(read(ready[0], &c, 1), 1);
	close(ready[0]);
	return pid;
}

static void test_corrupt_and_stale(void **state)
{
	struct fixture *f = *state;
	char *bad = fpath(f, "spool/queue/0000000000001000001");
	char *stale = fpath(f, "spool/incoming/0000000000002000002");
	char *fresh = fpath(f, "spool/incoming/0000000000003000003");
	struct timespec old[2] = { { time(NULL) - 3 * 3600, 0 },
				   { time(NULL) - 3 * 3600, 0 } };
	struct stat st;

	char *slow = fpath(f, "spool/incoming/0000000000004000004");

	put_file(bad, "this is not a queue file\n");
	put_file(stale, "half a message");
	put_file(fresh, "a message being received");
	assert_int_equal(utimensat(AT_FDCWD, stale, old, 0), 0);
	/* Untouched for as long, but its receiver is alive: it holds the
	 * lock, as the queue writer does until its commit is over. */
	pid_t receiver = hold_lock(slow);
	assert_int_equal(utimensat(AT_FDCWD, slow, old, 0), 0);
	start_qmgr(f, true);
	wait_idle(f);
	stop_qmgr(f);
	kill(receiver, SIGKILL);
	waitpid(receiver, NULL, 0);
	assert_int_equal(count_files(f, "spool/corrupt"), 1);
	assert_int_equal(stat(stale, &st), -1);
	assert_int_equal(stat(fresh, &st), 0);
	assert_int_equal(stat(slow, &st), 0);
	free(slow);
	assert_log(f, "0000000000001000001: corrupt queue file moved to");
	assert_log(f, "removed stale incoming file");
	free(bad);
	free(stale);
	free(fresh);
}

static void test_scan_finds_unnotified(void **state)
{
	struct fixture *f = *state;

	f->cfg.queue_scan_interval = 1;
	start_qmgr(f, false);
	usleep(100000);
	queue_msg(f, "sender@remote.test", "bob@example.test", false);
	wait_idle(f);
	stop_qmgr(f);
	assert_int_equal(mail_count(f, "bob", "new"), 1);
	assert_log(f, "found without notification");
}

static void test_lock_waits_for_older_manager(void **state)
{
	struct fixture *f = *state;
	char *lock_path = fpath(f, "spool/qmgr.lock");
	pid_t holder = hold_lock(lock_path);

	start_qmgr(f, true);
	queue_msg(f, "sender@remote.test", "bob@example.test", true);
	usleep(300000);
	assert_int_equal(count_files(f, "spool/queue"), 1); /* still waiting */
	kill(holder, SIGKILL);
	waitpid(holder, NULL, 0);
	wait_idle(f);
	stop_qmgr(f);
	assert_int_equal(mail_count(f, "bob", "new"), 1);
	assert_log(f, "waiting for another queue manager");

	/* SIGTERM while still waiting for the lock: a clean exit 0. */
	holder = hold_lock(lock_path);
	start_qmgr(f, true);
	usleep(200000);
	stop_qmgr(f);
	kill(holder, SIGKILL);
	waitpid(holder, NULL, 0);
	free(lock_path);
}

/* An id whose time part is us (the queue writer takes any valid id). */
static void id_at(char *id, uint64_t us, unsigned serial)
{
	snprintf(id, QUEUE_ID_LEN + 1, "%013llX%06X", (unsigned long long)us, serial);
}

/* Commit a message straight into quarantine/ under id, with a note. */
static void quarantine_msg(struct fixture *f, const char *id, const char *why)
{
	strlist_t list = { NULL, 0 };
	char *err = NULL;
	strlist_add(&list, "alice@example.test");
	struct queue_envelope env = {
		.arrival_us = queue_id_time_us(id), .client_addr = "192.0.2.1",
		.client_helo = "test", .protocol = "ESMTP", .sender = "sender@remote.test",
		.recipients = &list,
	};
	struct queue_note note = { false, "scan", "virus", why, NULL };
	struct queue_writer *w = queue_writer_open(f->cfg.spool_dir, id, &env, &err);
	if (w == NULL)
		fail_msg("open: %s", err);
	assert_int_equal(queue_writer_write(w, "Subject: x\n\nbody\n", 17, &err), 0);
	assert_int_equal(queue_writer_set_note(w, &note, &err), 0);
	assert_int_equal(queue_writer_commit_to(&w, "quarantine", &err), 0);
	strlist_free(&list);
}

/* The queue manager's scan removes quarantine entries older than
 * quarantine_retention, by the arrival time in their id, and logs each;
 * younger ones, one whose commit still holds its lock, and whatever is
 * not a regular file stay. */
static void test_quarantine_expiry(void **state)
{
	struct fixture *f = *state;
	uint64_t now = (uint64_t)time(NULL) * 1000000u, day = 86400ull * 1000000u;
	char old_id[QUEUE_ID_LEN + 1], young_id[QUEUE_ID_LEN + 1], busy_id[QUEUE_ID_LEN + 1];
	char fifo_id[QUEUE_ID_LEN + 1], link_id[QUEUE_ID_LEN + 1];
	id_at(old_id, now - 31 * day, 1);
	id_at(young_id, now - 29 * day, 2);
	id_at(busy_id, now - 40 * day, 3);
	id_at(fifo_id, now - 40 * day, 4);
	id_at(link_id, now - 40 * day, 5);
	quarantine_msg(f, old_id, "virus found: Old-Test");
	quarantine_msg(f, young_id, "virus found: Young-Test");
	quarantine_msg(f, busy_id, "rule exe_attachment");
	char *busy = fpath(f, "spool/quarantine"), *path;
	path = safeio_path_join(busy, busy_id);
	pid_t holder = hold_lock(path);
	free(path);
	path = safeio_path_join(busy, fifo_id);
	assert_int_equal(mkfifo(path, 0600), 0);
	free(path);
	path = safeio_path_join(busy, link_id);
	assert_int_equal(symlink("/etc/passwd", path), 0);
	free(path);

	/* 0 keeps everything; so does a retention longer than the epoch */
	assert_int_equal(qmgr_expire_quarantine(busy, 0, now), 0);
	assert_int_equal(qmgr_expire_quarantine(busy, UINT64_MAX / 1000, now), 0);
	assert_int_equal(count_files(f, "spool/quarantine"), 5);

	f->cfg.quarantine_retention = 30 * 86400;
	start_qmgr(f, true);
	for (int i = 0; i < 1000 && count_files(f, "spool/quarantine") == 5; i++)
		usleep(10000);
	usleep(50000);
	stop_qmgr(f);
	assert_int_equal(count_files(f, "spool/quarantine"), 4);
	char *log = read_log(f);
	buf_t want = BUF_INIT;
	buf_printf(&want, "%s: quarantine expired (arrived ", old_id);
	if (strstr(log, want.data) == NULL || strstr(log, "from=<sender@remote.test> nrcpt=1 "
					"size=17 reason=virus found: Old-Test") == NULL)
		fail_msg("no expiry line for %s in:\n%s", old_id, log);
	assert_null(strstr(log, young_id));
	buf_reset(&want);
	buf_printf(&want, "%s: quarantine entry", fifo_id);
	assert_non_null(strstr(log, want.data)); /* not a regular file: said so */
	free(log);
	buf_free(&want);

	/* the commit is over: the next scan removes it */
	kill(holder, SIGKILL);
	waitpid(holder, NULL, 0);
	assert_int_equal(qmgr_expire_quarantine(busy, 30 * 86400, now), 1);
	assert_int_equal(count_files(f, "spool/quarantine"), 3);
	free(busy);
}

/* A message moved into queue/ by a command (a release) and announced on
 * the wake-up FIFO is delivered at once, long before the next scan. */
static void test_wake_fifo(void **state)
{
	struct fixture *f = *state;
	struct stat st;
	char *fifo = fpath(f, "spool/" QUEUE_WAKE_FIFO);

	/* something planted under the FIFO's name is replaced */
	put_file(fifo, "not a FIFO");
	f->cfg.queue_scan_interval = 3600;
	assert_int_equal(queue_wake(f->cfg.spool_dir, "0000000000001000001"), -1);
	assert_int_equal(errno, EINVAL);
	start_qmgr(f, false);
	for (int i = 0; i < 500 && !(stat(fifo, &st) == 0 && S_ISFIFO(st.st_mode)); i++)
		usleep(10000);
	assert_true(S_ISFIFO(st.st_mode));
	usleep(200000); /* past the start-up scan */
	const char *id = queue_msg(f, "sender@remote.test", "bob@example.test", false);
	assert_int_equal(queue_wake(f->cfg.spool_dir, id), 0);
	wait_idle(f);
	assert_int_equal(mail_count(f, "bob", "new"), 1);
	/* garbage on the FIFO is logged and ignored */
	int fd = open(fifo, O_WRONLY | O_NONBLOCK);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, "0123456789abcdef0123456789abcdef", 32), 32);
	close(fd);
	usleep(100000);
	stop_qmgr(f);
	assert_log(f, ": released into the queue");
	assert_log(f, "wake-up FIFO: malformed record ignored");
	/* no queue manager: the writer is told (ENXIO), nothing blocks */
	assert_int_equal(queue_wake(f->cfg.spool_dir, id), -1);
	assert_int_equal(errno, ENXIO);
	free(fifo);
}

static void test_backoff(void **state)
{
	struct config cfg;

	(void)state;
	memset(&cfg, 0, sizeof(cfg));
	cfg.queue_retry_min = 300;
	cfg.queue_retry_max = 4000;
	assert_int_equal(qmgr_backoff(&cfg, 1), 300);
	assert_int_equal(qmgr_backoff(&cfg, 2), 600);
	assert_int_equal(qmgr_backoff(&cfg, 3), 1200);
	assert_int_equal(qmgr_backoff(&cfg, 4), 2400);
	assert_int_equal(qmgr_backoff(&cfg, 5), 4000);
	assert_int_equal(qmgr_backoff(&cfg, 64), 4000);
	assert_int_equal(qmgr_backoff(&cfg, UINT32_MAX), 4000);
	cfg.queue_retry_max = 100; /* max below min: min wins */
	assert_int_equal(qmgr_backoff(&cfg, 3), 300);
	cfg.queue_retry_min = 0; /* never a busy loop */
	assert_int_equal(qmgr_backoff(&cfg, 1), 1);
}

int main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_backoff),
		T(test_delivers_and_dedupes),
		T(test_unknown_user_bounces),
		T(test_end_of_message_changes_are_delivered),
		T(test_null_sender_never_bounced),
		T(test_remote_deferred_then_retried),
		T(test_expired_bounces),
		T(test_recovery_without_duplicate),
		T(test_success_report_not_lost),
		T(test_corrupt_and_stale),
		T(test_scan_finds_unnotified),
		T(test_lock_waits_for_older_manager),
		T(test_quarantine_expiry),
		T(test_wake_fifo),
	};
#undef T
	return cmocka_run_group_tests(tests, NULL, NULL);
}

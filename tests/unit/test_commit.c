/*
 * test_commit.c - commits off the event loop (src/queue/commit.c): every
 * commit completes on the loop, renames that happen while a folder fsync
 * runs share the next one (group commit), a failed folder fsync takes
 * back exactly the files it should have made durable, a detached commit
 * still completes, a redirected one tells only its new callback,
 * hold/quarantine commits land in their folders, and
 * tasks (the notices) run on the threads with their result on the loop.
 *
 * Linked with -Wl,--wrap=safeio_fsync_dir (see the Makefile): the wrapper counts
 * the fsyncs of each folder, can hold the first one at a gate until the
 * test opens it, and can make fsyncs fail.
 */
#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "testutil.h"

#include "lib/safeio.h"
#include "lib/xalloc.h"
#include "queue/commit.h"
#include "queue/queue.h"

/* ---- the safeio_fsync_dir wrapper ------------------------------------------------ */

int __real_safeio_fsync_dir(const char *path);
int __wrap_safeio_fsync_dir(const char *path);

static pthread_mutex_t wrap_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t wrap_cond = PTHREAD_COND_INITIALIZER;
static unsigned queue_syncs;   /* fsyncs of .../queue */
static bool hold_first;        /* the first queue fsync waits for release */
static bool released;
static bool first_waiting;
static bool fail_queue_syncs;  /* queue fsyncs fail with EIO */

int __wrap_safeio_fsync_dir(const char *path)
{
	size_t n = strlen(path);
	if (n < 6 || strcmp(path + n - 6, "/queue") != 0)
		return __real_safeio_fsync_dir(path);
	pthread_mutex_lock(&wrap_lock);
	unsigned nth = ++queue_syncs;
	if (nth == 1 && hold_first) {
		first_waiting = true;
		pthread_cond_broadcast(&wrap_cond);
		while (!released)
			pthread_cond_wait(&wrap_cond, &wrap_lock);
	}
	bool fail = fail_queue_syncs;
	pthread_mutex_unlock(&wrap_lock);
	if (fail) {
		errno = EIO;
		return -1;
	}
	return __real_safeio_fsync_dir(path);
}

/* ---- fixture ---------------------------------------------------------------- */

#define JOBS 40

struct fixture {
	char *spool;
	struct event_base *base;
	struct queue_committer *committer;
	unsigned done, failed;
	char ids[JOBS][QUEUE_ID_LEN + 1];
};

static int setup(void **state)
{
	struct fixture *f = xcalloc(1, sizeof(*f));
	char tmpl[] = "/tmp/postern-test-commit-XXXXXX";
	char *err = NULL;
	f->spool = xstrdup(mkdtemp(tmpl));
	assert_int_equal(queue_dirs_create(f->spool, &err), 0);
	f->base = event_base_new();
	f->committer = queue_committer_new(f->base, 4);
	queue_syncs = 0;
	hold_first = released = first_waiting = fail_queue_syncs = false;
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	queue_committer_free(&f->committer);
	event_base_free(f->base);
	testutil_rmtree(f->spool);
	free(f->spool);
	free(f);
	return 0;
}

static void on_done(void *arg, int rc, char *err)
{
	struct fixture *f = arg;
	if (rc == 0)
		f->done++;
	else
		f->failed++;
	free(err);
}

static struct queue_writer *new_message(struct fixture *f, size_t i)
{
	strlist_t rcpts = { 0 };
	strlist_add(&rcpts, "alice@example.test");
	struct queue_envelope env = { .arrival_us = 1700000000000000ull, .client_addr = "192.0.2.1",
				      .client_helo = "c.test", .protocol = "ESMTP",
				      .sender = "s@remote.test", .recipients = &rcpts };
	char *err = NULL;
	queue_id_new(f->ids[i]);
	struct queue_writer *w = queue_writer_open(f->spool, f->ids[i], &env, &err);
	assert_non_null(w);
	assert_int_equal(queue_writer_write(w, "Subject: x\n\nhi\n", 15, &err), 0);
	strlist_free(&rcpts);
	return w;
}

static size_t files_in(const struct fixture *f, const char *folder)
{
	char *path = safeio_path_join(f->spool, folder);
	DIR *d = opendir(path);
	size_t n = 0;
	struct dirent *de;
	while (d != NULL && (de = readdir(d)) != NULL)
		n += de->d_name[0] != '.';
	if (d != NULL)
		closedir(d);
	free(path);
	return n;
}

/* Run the loop until every callback has come (or 10 s). */
static void run_until(struct fixture *f, unsigned total)
{
	for (int i = 0; i < 1000 && f->done + f->failed < total; i++) {
		struct timeval tv = { 0, 10000 };
		event_base_loopexit(f->base, &tv);
		event_base_dispatch(f->base);
	}
	assert_int_equal(f->done + f->failed, total);
}

/* ---- tests -------------------------------------------------------------------- */

static void test_every_commit_completes(void **state)
{
	struct fixture *f = *state;
	for (size_t i = 0; i < JOBS; i++) {
		struct queue_writer *w = new_message(f, i);
		assert_non_null(queue_commit_start(f->committer, &w, "queue", on_done, f));
		assert_null(w);
	}
	run_until(f, JOBS);
	assert_int_equal(f->done, JOBS);
	assert_int_equal(files_in(f, "queue"), JOBS);
	assert_int_equal(files_in(f, "incoming"), 0);
	assert_true(queue_syncs <= JOBS);
}

/* While the first fsync of queue/ is held, every other commit renames
 * its file and waits: one more fsync makes them all durable. */
static void test_renames_share_one_fsync(void **state)
{
	struct fixture *f = *state;
	hold_first = true;
	for (size_t i = 0; i < JOBS; i++) {
		struct queue_writer *w = new_message(f, i);
		queue_commit_start(f->committer, &w, "queue", on_done, f);
	}
	pthread_mutex_lock(&wrap_lock);
	while (!first_waiting)
		pthread_cond_wait(&wrap_cond, &wrap_lock);
	pthread_mutex_unlock(&wrap_lock);
	for (int i = 0; i < 1000 && files_in(f, "queue") < JOBS; i++)
		usleep(10000);
	assert_int_equal(files_in(f, "queue"), JOBS); /* all renamed, none durable yet */
	assert_int_equal(f->done, 0);
	pthread_mutex_lock(&wrap_lock);
	released = true;
	pthread_cond_broadcast(&wrap_cond);
	pthread_mutex_unlock(&wrap_lock);
	run_until(f, JOBS);
	assert_int_equal(f->done, JOBS);
	assert_int_equal(queue_syncs, 2);
}

/* A failed fsync of queue/ takes back the files it should have made
 * durable: the callbacks say so and the files are gone. */
static void test_failed_fsync_takes_the_files_back(void **state)
{
	struct fixture *f = *state;
	fail_queue_syncs = true;
	for (size_t i = 0; i < 5; i++) {
		struct queue_writer *w = new_message(f, i);
		queue_commit_start(f->committer, &w, "queue", on_done, f);
	}
	run_until(f, 5);
	assert_int_equal(f->failed, 5);
	assert_int_equal(files_in(f, "queue") + files_in(f, "incoming"), 0);
	fail_queue_syncs = false;
	struct queue_writer *w = new_message(f, 5);
	queue_commit_start(f->committer, &w, "queue", on_done, f);
	run_until(f, 6);
	assert_int_equal(f->done, 1);
	assert_int_equal(files_in(f, "queue"), 1);
}

static void test_detached_commit_still_completes(void **state)
{
	struct fixture *f = *state;
	struct queue_writer *w = new_message(f, 0);
	struct queue_commit *job = queue_commit_start(f->committer, &w, "queue", on_done, f);
	queue_commit_detach(&job);
	assert_null(job);
	for (int i = 0; i < 1000 && files_in(f, "queue") < 1; i++) {
		struct timeval tv = { 0, 10000 };
		event_base_loopexit(f->base, &tv);
		event_base_dispatch(f->base);
	}
	queue_committer_free(&f->committer); /* waits for the commit */
	assert_int_equal(files_in(f, "queue"), 1);
	assert_int_equal(f->done + f->failed, 0); /* nobody was told */
	f->committer = queue_committer_new(f->base, 1);
}

static void never_called(void *arg, int rc, char *err)
{
	(void)arg, (void)rc, (void)err;
	fail_msg("the first callback ran after the job was redirected");
}

/* A redirected job tells the new callback, and only it. */
static void test_redirected_commit_tells_the_new_callback(void **state)
{
	struct fixture *f = *state;
	struct queue_writer *w = new_message(f, 0);
	struct queue_commit *job = queue_commit_start(f->committer, &w, "queue", never_called, f);
	queue_commit_redirect(&job, on_done, f);
	assert_null(job);
	run_until(f, 1);
	assert_int_equal(f->done, 1);
	assert_int_equal(files_in(f, "queue"), 1);
}

static void test_hold_and_quarantine_folders(void **state)
{
	struct fixture *f = *state;
	struct queue_writer *a = new_message(f, 0), *b = new_message(f, 1);
	queue_commit_start(f->committer, &a, "hold", on_done, f);
	queue_commit_start(f->committer, &b, "quarantine", on_done, f);
	run_until(f, 2);
	assert_int_equal(f->done, 2);
	assert_int_equal(files_in(f, "hold"), 1);
	assert_int_equal(files_in(f, "quarantine"), 1);
	assert_int_equal(files_in(f, "queue"), 0);
}

/* A task runs on a commit thread, not on the loop's; its result comes
 * back on the loop; tasks left at shutdown still run. */
static pthread_t loop_thread;
static bool task_ran_off_loop;

static int task_fn(void *arg, char **err_r)
{
	int *n = arg;
	task_ran_off_loop = !pthread_equal(pthread_self(), loop_thread);
	if (*n == 2) {
		*err_r = xstrdup("task 2 failed");
		return -1;
	}
	return 0;
}

static char *last_task_error;

static void on_task_done(void *arg, int rc, char *err)
{
	struct fixture *f = arg;
	assert_true(pthread_equal(pthread_self(), loop_thread));
	if (rc == 0) {
		f->done++;
	} else {
		f->failed++;
		free(last_task_error);
		last_task_error = err;
		return;
	}
	free(err);
}

static void test_tasks(void **state)
{
	struct fixture *f = *state;
	static int one = 1, two = 2;
	loop_thread = pthread_self();
	queue_task_start(f->committer, task_fn, &one, on_task_done, f);
	queue_task_start(f->committer, task_fn, &two, on_task_done, f);
	struct queue_writer *w = new_message(f, 0);
	queue_commit_start(f->committer, &w, "queue", on_done, f);
	run_until(f, 3);
	assert_true(task_ran_off_loop);
	assert_int_equal(f->done, 2);
	assert_int_equal(f->failed, 1);
	assert_string_equal(last_task_error, "task 2 failed");
	free(last_task_error);
	last_task_error = NULL;
	/* shutting down runs what is queued, and its callback */
	queue_task_start(f->committer, task_fn, &one, on_task_done, f);
	queue_committer_free(&f->committer);
	assert_int_equal(f->done, 3);
	f->committer = queue_committer_new(f->base, 1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_every_commit_completes, setup, teardown),
		cmocka_unit_test_setup_teardown(test_renames_share_one_fsync, setup, teardown),
		cmocka_unit_test_setup_teardown(test_failed_fsync_takes_the_files_back, setup, teardown),
		cmocka_unit_test_setup_teardown(test_detached_commit_still_completes, setup, teardown),
		cmocka_unit_test_setup_teardown(test_redirected_commit_tells_the_new_callback, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_hold_and_quarantine_folders, setup, teardown),
		cmocka_unit_test_setup_teardown(test_tasks, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

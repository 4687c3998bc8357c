/*
 * commit.c - commits off the event loop (see commit.h).
 *
 * Jobs go into a queue protected by one mutex. A worker thread takes one,
 * makes its file durable and renames it into its folder
 * (queue_writer_publish), and leaves it on that folder's "renamed" list.
 * The folder's fsync is the group commit: a thread that finds renamed
 * jobs while nobody syncs their folder takes them all, fsyncs the folder
 * once, and completes every one of them; the renames that happen during
 * that fsync wait for the next one (an fsync covers only what came
 * before it). Syncing a folder goes before starting another job, so a
 * renamed file never waits long. Finished jobs go on a done list and a
 * pipe wakes the event loop, which runs the callbacks. A detached job
 * runs to its end like any other; only its callback is skipped.
 *
 * Threads touch nothing but the jobs they hold and the writer each job
 * owns; all callbacks run on the loop thread.
 */
#include "commit.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../lib/log.h"
#include "../lib/safeio.h"
#include "../lib/xalloc.h"
#include "queue_file.h"

#define COMMIT_THREADS_MAX 64

/* The folders a message can be committed into. */
static const char *const commit_folders[] = { "queue", "hold", "quarantine" };
#define FOLDER_COUNT 3

struct queue_commit {
	struct queue_commit *next;
	struct queue_writer *writer;
	unsigned folder;           /* index into commit_folders */
	queue_task_fn *task;       /* a task rather than a commit */
	void *task_arg;
	int rc;
	char *err;
	queue_commit_done_fn *done; /* NULL once detached */
	void *arg;
};

struct job_list {
	struct queue_commit *head, *tail;
};

struct queue_committer {
	pthread_mutex_t lock;
	pthread_cond_t work;
	struct job_list waiting;
	struct job_list renamed[FOLDER_COUNT]; /* waiting for their folder's fsync */
	bool syncing[FOLDER_COUNT];
	char *folder_path[FOLDER_COUNT];       /* known from the first job */
	struct job_list finished;
	bool stopping;
	pthread_t threads[COMMIT_THREADS_MAX];
	unsigned thread_count;
	int wake[2];           /* threads -> loop */
	struct event *wake_ev;
	size_t in_flight;      /* started and not yet called back */
};

static void list_push(struct job_list *l, struct queue_commit *j)
{
	j->next = NULL;
	if (l->tail != NULL)
		l->tail->next = j;
	else
		l->head = j;
	l->tail = j;
}

static struct queue_commit *list_pop(struct job_list *l)
{
	struct queue_commit *j = l->head;
	if (j != NULL) {
		l->head = j->next;
		if (l->head == NULL)
			l->tail = NULL;
	}
	return j;
}

/* With the lock held: hand a finished job to the loop. */
static void job_finished(struct queue_committer *c, struct queue_commit *j)
{
	bool was_empty = c->finished.head == NULL;
	list_push(&c->finished, j);
	if (was_empty) {
		char b = 1;
		ssize_t n;
		do {
			n = write(c->wake[1], &b, 1);
		} while (n < 0 && errno == EINTR);
	}
}

/* With the lock held: take one job off waiting and publish it. */
static void publish_one(struct queue_committer *c, struct queue_commit *j)
{
	const char *folder = commit_folders[j->folder];
	pthread_mutex_unlock(&c->lock);
	char *path = queue_writer_folder(j->writer, folder);
	j->rc = queue_writer_publish(&j->writer, folder, &j->err);
	pthread_mutex_lock(&c->lock);
	if (c->folder_path[j->folder] == NULL)
		c->folder_path[j->folder] = path;
	else
		free(path);
	if (j->rc < 0)
		job_finished(c, j);
	else
		list_push(&c->renamed[j->folder], j);
}

/* With the lock held: one fsync of folder f for every job renamed into it. */
static void sync_folder(struct queue_committer *c, unsigned f)
{
	struct job_list group = c->renamed[f];
	c->renamed[f].head = c->renamed[f].tail = NULL;
	c->syncing[f] = true;
	const char *path = c->folder_path[f];
	pthread_mutex_unlock(&c->lock);
	int rc = safeio_fsync_dir(path);
	int err = errno;
	pthread_mutex_lock(&c->lock);
	c->syncing[f] = false;
	struct queue_commit *j;
	while ((j = list_pop(&group)) != NULL) {
		if (rc == 0) {
			queue_writer_published(&j->writer);
		} else {
			j->rc = -1;
			j->err = qf_errf("fsync %s: %s", path, strerror(err));
			queue_writer_unpublish(&j->writer);
		}
		job_finished(c, j);
	}
	pthread_cond_broadcast(&c->work); /* renames made meanwhile can go now */
}

static void *commit_thread(void *arg)
{
	struct queue_committer *c = arg;
	pthread_mutex_lock(&c->lock);
	for (;;) {
		unsigned f;
		for (f = 0; f < FOLDER_COUNT; f++)
			if (c->renamed[f].head != NULL && !c->syncing[f])
				break;
		if (f < FOLDER_COUNT) {
			sync_folder(c, f);
			continue;
		}
		struct queue_commit *j = list_pop(&c->waiting);
		if (j != NULL && j->task != NULL) {
			pthread_mutex_unlock(&c->lock);
			j->rc = j->task(j->task_arg, &j->err);
			pthread_mutex_lock(&c->lock);
			job_finished(c, j);
			continue;
		}
		if (j != NULL) {
			publish_one(c, j);
			continue;
		}
		bool idle = true;
		for (f = 0; f < FOLDER_COUNT; f++)
			idle = idle && c->renamed[f].head == NULL && !c->syncing[f];
		if (c->stopping && idle)
			break;
		pthread_cond_wait(&c->work, &c->lock);
	}
	pthread_mutex_unlock(&c->lock);
	return NULL;
}

/* On the loop: run the callbacks of every finished job. */
static void run_finished(struct queue_committer *c)
{
	char drain[64];
	while (read(c->wake[0], drain, sizeof(drain)) > 0)
		;
	pthread_mutex_lock(&c->lock);
	struct job_list done = c->finished;
	c->finished.head = c->finished.tail = NULL;
	pthread_mutex_unlock(&c->lock);
	struct queue_commit *j;
	while ((j = list_pop(&done)) != NULL) {
		c->in_flight--;
		if (j->done != NULL)
			j->done(j->arg, j->rc, j->err);
		else
			free(j->err);
		free(j);
	}
}

static void wake_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	run_finished(arg);
}

struct queue_committer *queue_committer_new(struct event_base *base, unsigned threads)
{
	struct queue_committer *c = xcalloc(1, sizeof(*c));
	if (threads < 1)
		threads = 1;
	if (threads > COMMIT_THREADS_MAX)
		threads = COMMIT_THREADS_MAX;
	pthread_mutex_init(&c->lock, NULL);
	pthread_cond_init(&c->work, NULL);
	if (pipe2(c->wake, O_CLOEXEC | O_NONBLOCK) < 0)
		log_fatal("commit: pipe: %s", strerror(errno));
	c->wake_ev = event_new(base, c->wake[0], EV_READ | EV_PERSIST, wake_cb, c);
	if (c->wake_ev == NULL || event_add(c->wake_ev, NULL) < 0)
		log_fatal("commit: cannot watch the wake-up pipe");
	for (unsigned i = 0; i < threads; i++) {
		int rc = pthread_create(&c->threads[i], NULL, commit_thread, c);
		if (rc != 0)
			log_fatal("commit: cannot start a thread: %s", strerror(rc));
		c->thread_count++;
	}
	return c;
}

void queue_committer_free(struct queue_committer **cp)
{
	struct queue_committer *c = *cp;
	if (c == NULL)
		return;
	pthread_mutex_lock(&c->lock);
	c->stopping = true;
	pthread_cond_broadcast(&c->work);
	pthread_mutex_unlock(&c->lock);
	for (unsigned i = 0; i < c->thread_count; i++)
		pthread_join(c->threads[i], NULL);
	run_finished(c);
	for (unsigned f = 0; f < FOLDER_COUNT; f++)
		free(c->folder_path[f]);
	event_free(c->wake_ev);
	close(c->wake[0]);
	close(c->wake[1]);
	pthread_cond_destroy(&c->work);
	pthread_mutex_destroy(&c->lock);
	xfree(cp);
}

struct queue_commit *queue_commit_start(struct queue_committer *c, struct queue_writer **w,
					const char *folder, queue_commit_done_fn *done,
					void *arg)
{
	struct queue_commit *j = xcalloc(1, sizeof(*j));
	j->writer = *w;
	*w = NULL;
	for (j->folder = 0; j->folder < FOLDER_COUNT; j->folder++)
		if (strcmp(commit_folders[j->folder], folder) == 0)
			break;
	if (j->folder == FOLDER_COUNT)
		log_panic("commit: unknown folder %s", folder);
	j->done = done;
	j->arg = arg;
	c->in_flight++;
	pthread_mutex_lock(&c->lock);
	list_push(&c->waiting, j);
	pthread_cond_signal(&c->work);
	pthread_mutex_unlock(&c->lock);
	return j;
}

struct queue_commit *queue_task_start(struct queue_committer *c, queue_task_fn *task,
				      void *task_arg, queue_commit_done_fn *done, void *arg)
{
	struct queue_commit *j = xcalloc(1, sizeof(*j));
	j->task = task;
	j->task_arg = task_arg;
	j->done = done;
	j->arg = arg;
	c->in_flight++;
	pthread_mutex_lock(&c->lock);
	list_push(&c->waiting, j);
	pthread_cond_signal(&c->work);
	pthread_mutex_unlock(&c->lock);
	return j;
}

void queue_commit_detach(struct queue_commit **job)
{
	if (*job != NULL)
		(*job)->done = NULL; /* only the loop thread reads done */
	*job = NULL;
}

void queue_commit_redirect(struct queue_commit **job, queue_commit_done_fn *done, void *arg)
{
	if (*job != NULL) {
		(*job)->done = done; /* only the loop thread reads done and arg */
		(*job)->arg = arg;
	}
	*job = NULL;
}

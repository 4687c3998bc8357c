/*
 * commit.h - the commit of accepted messages, off the event loop.
 *
 * The last step before "250" is slow on purpose: the queue file's data
 * must be on disk (fdatasync), renamed from incoming/ into its folder
 * (queue/, or hold/ or quarantine/ for those verdicts), and that folder
 * fsync'ed. A small pool of threads in each smtp worker does it while the
 * event loop serves the other sessions; commits that finish their renames
 * close together share one fsync of the folder (group commit). The
 * completion is handed back to the event loop, which sends the reply.
 * The same threads run other work that must not block the loop
 * (queue_task_start: the administrator's notices).
 *
 * Durability does not change: a message is reported committed only after
 * its file and the folder holding its new name are on disk. See
 * docs/queue.md. Runs in the unprivileged smtp worker (and the queue
 * manager for bounces, which commits synchronously).
 */
#ifndef POSTERN_QUEUE_COMMIT_H
#define POSTERN_QUEUE_COMMIT_H

#include <event2/event.h>

#include "queue.h"

struct queue_committer;
struct queue_commit;

/* Called on the event loop thread: rc 0 = durable, -1 = failed with a
 * malloc'ed err (the file is gone; the message was not accepted). */
typedef void queue_commit_done_fn(void *arg, int rc, char *err);

/* threads: 1 to 64. Panics if the threads cannot be started. */
struct queue_committer *queue_committer_new(struct event_base *base, unsigned threads);
/* Finish the commits in progress (their callbacks run), stop the threads. */
void queue_committer_free(struct queue_committer **c);

/* Take over *w (set to NULL) and commit it into folder ("queue", "hold"
 * or "quarantine"); done(arg, ...) follows on the loop unless the job
 * is detached first. */
struct queue_commit *queue_commit_start(struct queue_committer *c, struct queue_writer **w,
					const char *folder, queue_commit_done_fn *done,
					void *arg);
/*
 * Run task(task_arg) on one of the threads (something that blocks on
 * the disk, such as queuing a notice); done(arg, rc, err) follows on the
 * loop with what it returned: rc, and err (malloc'ed or NULL, handed to
 * done). Tasks share the threads and the order with the commits.
 */
typedef int queue_task_fn(void *task_arg, char **err_r);
struct queue_commit *queue_task_start(struct queue_committer *c, queue_task_fn *task,
				      void *task_arg, queue_commit_done_fn *done, void *arg);
/* Nobody waits for this commit any more (the client went away): it still
 * completes or fails, but done is not called. *job becomes NULL. */
void queue_commit_detach(struct queue_commit **job);
/* Someone else takes the completion over (the session that waited is
 * going away, but what it committed must still be announced): done(arg,
 * ...) follows on the loop instead of the first callback. *job becomes
 * NULL. */
void queue_commit_redirect(struct queue_commit **job, queue_commit_done_fn *done, void *arg);

#endif

/*
 * qmgr_batch.c - deliver the ready messages in batches so that each
 * Maildir new/ folder is fsync'ed once per batch instead of once per
 * message (the disk's sync latency, not the CPU, limits delivery).
 *
 * A batch takes up to QMGR_BATCH_MAX messages from the ready list and
 * runs three phases:
 *   1. for each message, every copy is written, fdatasync'ed and linked
 *      into new/ (qmgr_run_start); the new/ folders are only collected;
 *   2. each distinct new/ folder is fsync'ed once;
 *   3. for each message, in order: a copy whose folder failed to sync is
 *      a temporary failure, recipients whose copies are all durable are
 *      marked done, then bounces, deferral or removal (qmgr_finish).
 * Invariant (docs/queue.md): a recipient is marked done only after the
 * link of every copy into new/ is durable. A crash anywhere in a batch
 * leaves recipients pending whose copies may exist; the retry makes the
 * same file names and finds them through link() EEXIST.
 *
 * RFCs: RFC 5321 section 6.1 (reliable delivery). Untrusted input: none
 * beyond the validated queue files. Privilege: unprivileged queue manager.
 */
#include <stdlib.h>
#include <string.h>

#include "../lib/log.h"
#include "../lib/xalloc.h"
#include "maildir.h"
#include "qmgr_internal.h"

size_t qmgr_batch_dir(struct qmgr_batch *b, char *newdir)
{
	uintptr_t idx = (uintptr_t)hashmap_get(&b->dir_index, newdir, NULL);

	if (idx != 0) {
		free(newdir);
		return (size_t)idx;
	}
	if (b->dir_count == b->dir_cap) {
		b->dir_cap = b->dir_cap ? b->dir_cap * 2 : 16;
		b->dirs = xreallocarray(b->dirs, b->dir_cap, sizeof(*b->dirs));
	}
	b->dirs[b->dir_count++] = newdir;
	hashmap_put(&b->dir_index, newdir, (void *)(uintptr_t)b->dir_count);
	return b->dir_count;
}

/* Phase 2: make every link of the batch durable, one fsync per folder. */
static void sync_dirs(struct qmgr_batch *b)
{
	b->dir_errors = xcalloc(b->dir_count > 0 ? b->dir_count : 1,
				sizeof(*b->dir_errors));
	for (size_t i = 0; i < b->dir_count; i++) {
		if (maildir_sync_dir(b->dirs[i], &b->dir_errors[i]) < 0)
			log_error("fsync %s failed: %s", b->dirs[i], b->dir_errors[i]);
	}
}

static void batch_free(struct qmgr_batch *b)
{
	for (size_t i = 0; i < b->dir_count; i++) {
		free(b->dirs[i]);
		if (b->dir_errors != NULL)
			free(b->dir_errors[i]);
	}
	free(b->dirs);
	free(b->dir_errors);
	hashmap_free(&b->dir_index, NULL);
}

/* A copy whose new/ folder could not be synced is not delivered. */
static void apply_dir_errors(struct qmgr_run *r)
{
	for (size_t k = 0; k < r->pair_count; k++) {
		struct qmgr_pair *p = &r->pairs[k];
		const char *why = p->dir ? r->batch->dir_errors[p->dir - 1] : NULL;
		if (why == NULL || p->kind != QO_SENT)
			continue;
		free(p->reason);
		p->kind = QO_TEMP;
		p->reason = xstrdup(why);
	}
}

static enum qmgr_outcome worse(enum qmgr_outcome a, enum qmgr_outcome b)
{
	if (a == QO_TEMP || b == QO_TEMP)
		return QO_TEMP;
	if (a == QO_PERM || b == QO_PERM)
		return QO_PERM;
	return QO_SENT;
}

/* Each tried recipient's outcome: the worst of its mailboxes. */
static void settle_outcomes(struct qmgr_run *r)
{
	for (size_t i = 0; i < r->msg.rcpt_count; i++)
		r->outcome[i] = QO_SENT;
	for (size_t k = 0; k < r->pair_count; k++) {
		const struct qmgr_pair *p = &r->pairs[k];
		r->outcome[p->rcpt] = worse(r->outcome[p->rcpt], p->kind);
	}
}

/* Every mailbox of these recipients holds a durable copy: record it. No
 * fsync here: if a byte is lost, the next attempt finds the copies by
 * name and delivers nothing twice. */
static void mark_done(struct qmgr_run *r)
{
	for (size_t i = 0; i < r->msg.rcpt_count; i++) {
		char *err = NULL;
		if (!r->tried[i] || r->outcome[i] != QO_SENT)
			continue;
		if (qf_set_rcpt_status(r->fd, &r->msg, i, QF_RCPT_DONE, &err) < 0) {
			log_error("%s: %s", r->msg.id, err);
			free(err);
		}
	}
	for (size_t k = 0; k < r->pair_count; k++) {
		const struct qmgr_pair *p = &r->pairs[k];
		if (p->kind == QO_SENT)
			qmgr_log_pair(r, p, "sent", p->reason);
	}
}

/* Phase 3 for one message. */
static void run_complete(struct qmgr_run *r)
{
	apply_dir_errors(r);
	settle_outcomes(r);
	mark_done(r);
	qmgr_finish(r);
}

void qmgr_deliver_ready(struct qmgr *q)
{
	struct qmgr_batch batch;
	struct qmgr_run *runs = xcalloc(QMGR_BATCH_MAX, sizeof(*runs));
	size_t n = 0;
	struct qmgr_entry *e;

	memset(&batch, 0, sizeof(batch));
	while (n < QMGR_BATCH_MAX && (e = qmgr_pop_ready(q)) != NULL) {
		if (qmgr_run_start(&runs[n], q, e, &batch))
			n++;
		else
			qmgr_run_free(&runs[n]);
	}
	sync_dirs(&batch);
	for (size_t i = 0; i < n; i++) {
		run_complete(&runs[i]);
		qmgr_run_free(&runs[i]);
	}
	batch_free(&batch);
	free(runs);
}

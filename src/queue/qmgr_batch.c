/*
 * qmgr_batch.c - deliver the ready messages in batches so that each
 * Maildir new/ folder is fsync'ed once per batch instead of once per
 * message (the disk's sync latency, not the CPU, limits delivery).
 *
 * Each delivery lane (qmgr_lanes.c) runs its own batches through its own
 * agent. A batch takes up to QMGR_BATCH_MAX messages from the ready list
 * (fewer once QMGR_BATCH_FOLDERS folders are touched, or when the list
 * runs dry, or the queue manager is stopping) and runs three phases:
 *   1. for each message, the local delivery agent writes, fdatasyncs and
 *      links every copy into new/ (qmgr_run_start); it numbers the new/
 *      folders and only collects them. Messages are taken one at a time,
 *      just before their turn, so the ones this lane has not reached yet
 *      stay in the ready list for the other lanes: work spreads over the
 *      idle lanes without a quota, and a slow mailbox holds up only the
 *      messages its lane already started;
 *   2. the agent fsyncs each distinct new/ folder once (SYNC) and reports
 *      the failures by number;
 *   3. for each message, in order: a copy whose folder failed to sync is
 *      a temporary failure, recipients whose copies are all durable are
 *      marked done, then bounces, deferral or removal (qmgr_finish).
 * Invariant (docs/queue.md): a recipient is marked done only after the
 * link of every copy into new/ is durable. A crash anywhere in a batch
 * leaves recipients pending whose copies may exist; the retry makes the
 * same file names and finds them through link() EEXIST.
 *
 * RFCs: RFC 5321 section 6.1 (reliable delivery). Untrusted input: none
 * beyond the validated queue files and the agent's replies (checked in
 * qmgr_local.c). Privilege: unprivileged queue manager.
 */
#include <stdlib.h>
#include <string.h>

#include "../lib/log.h"
#include "../lib/xalloc.h"
#include "qmgr_internal.h"

static void batch_free(struct qmgr_batch *b)
{
	for (size_t i = 0; b->dir_errors != NULL && i < b->dir_count; i++)
		free(b->dir_errors[i]);
	free(b->dir_errors);
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

void qmgr_run_settle(struct qmgr_run *r)
{
	settle_outcomes(r);
	if (!qmgr_report_successes(r))
		settle_outcomes(r); /* those still owed a report are deferred */
	mark_done(r);
	qmgr_finish(r);
}

/* Phase 3 for one message: its local copies are durable (or not); its
 * remote recipients, if any, go to the relay agent now, and the message
 * is completed when their results are in (qmgr_relay.c). */
static void run_complete(struct qmgr_run *r)
{
	apply_dir_errors(r);
	r->batch = NULL;
	if (r->q->relay != NULL && qmgr_run_has_remote(r)) {
		struct qmgr_run *owned = xmalloc(sizeof(*owned));
		*owned = *r;
		memset(r, 0, sizeof(*r));
		r->fd = -1;
		r->ro_fd = -1;
		qmgr_relay_submit(owned->q, owned);
		return;
	}
	qmgr_run_settle(r);
}

void qmgr_lane_batch(struct qmgr_lane *lane)
{
	struct qmgr *q = lane->q;
	struct qmgr_batch batch;
	struct qmgr_run *runs = xcalloc(QMGR_BATCH_MAX, sizeof(*runs));
	size_t n = 0;
	struct qmgr_entry *e;

	memset(&batch, 0, sizeof(batch));
	/* Once an agent is lost (or a stop is asked) no further message is
	 * started: those not yet tried stay untouched for the next queue
	 * manager. */
	while (n < QMGR_BATCH_MAX && batch.dir_count < QMGR_BATCH_FOLDERS &&
	       !lane->agent_lost && (e = qmgr_take_ready(q)) != NULL) {
		if (qmgr_run_start(&runs[n], lane, e, &batch))
			n++;
		else
			qmgr_run_free(&runs[n]);
	}
	qmgr_give_tokens(q); /* for messages that ended before delivery */
	qmgr_local_sync(lane, &batch);
	for (size_t i = 0; i < n; i++) {
		run_complete(&runs[i]);
		qmgr_run_free(&runs[i]);
		qmgr_give_tokens(q);
	}
	batch_free(&batch);
	free(runs);
}

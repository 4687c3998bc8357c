/*
 * qmgr_finish.c - the end of a delivery attempt: report the recipients
 * that failed for good (or whose message outlived queue_lifetime) in one
 * bounce to the sender, mark them bounced once that bounce is durable,
 * then either remove the message (nothing pending) or defer it with
 * exponential backoff (attempt count and next time written in place, file
 * mtime set to the next time, moved into deferred/).
 *
 * RFCs: RFC 5321 sections 4.5.4.1 (retry strategy, give-up time) and
 * 4.5.5 / 6.1 (bounces go to the reverse-path, never to <>), RFC 3464.
 * Untrusted input: none beyond the validated queue file. Privilege:
 * unprivileged queue manager.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../lib/log.h"
#include "../lib/safeio.h"
#include "../lib/xalloc.h"
#include "bounce.h"
#include "qmgr_internal.h"

uint64_t qmgr_backoff(const struct config *cfg, uint32_t attempts)
{
	uint64_t min = cfg->queue_retry_min > 0 ? cfg->queue_retry_min : 1;
	uint64_t max = cfg->queue_retry_max > min ? cfg->queue_retry_max : min;
	uint32_t shift = attempts > 0 ? attempts - 1 : 0;

	if (shift >= 63 || min > (max >> shift))
		return max;
	return min << shift;
}

static bool is_expired(const struct qmgr_run *r)
{
	uint64_t life = r->q->cfg->queue_lifetime;

	if (life > (UINT64_MAX - r->msg.arrival_us) / 1000000u)
		return false;
	return r->now_us >= r->msg.arrival_us + life * 1000000u;
}

/* Reason for the bounce of one failed pair. */
static char *failure_reason(const struct qmgr_pair *p)
{
	if (p->kind == QO_PERM)
		return xstrdup(p->reason);
	return qf_errf("4.4.7 delivery time expired, last error: %s", p->reason);
}

static void mark_bounced(struct qmgr_run *r, const bool *failed)
{
	for (size_t i = 0; i < r->msg.rcpt_count; i++) {
		char *err = NULL;
		if (failed[i] &&
		    qf_set_rcpt_status(r->fd, &r->msg, i, QF_RCPT_BOUNCED, &err) < 0) {
			log_error("%s: %s", r->msg.id, err);
			free(err);
		}
	}
}

/* Queue the bounce (or drop it for <>). True if the failed recipients
 * are settled; false with *why_r if they must wait for a next attempt. */
static bool send_bounce(struct qmgr_run *r, const struct bounce_item *items,
			size_t count, char **why_r)
{
	char bounce_id[QUEUE_ID_LEN + 1], *err = NULL;

	if (r->msg.sender[0] == '\0') {
		log_info("%s: bounce dropped: sender is <> (a bounce is never bounced),"
			 " %zu failed recipient%s", r->msg.id, count,
			 count == 1 ? "" : "s");
		return true;
	}
	struct bounce_request req = {
		.spool_dir = r->q->cfg->spool_dir,
		.hostname = r->q->cfg->hostname,
		.msg = &r->msg,
		.queue_fd = r->fd,
		.items = items,
		.count = count,
		.now_us = qmgr_now_us(),
	};
	if (bounce_send(&req, bounce_id, &err) < 0) {
		log_error("%s: cannot queue bounce: %s", r->msg.id, err);
		*why_r = qf_errf("4.3.0 bounce not queued: %s", err);
		free(err);
		return false;
	}
	log_info("%s: bounce %s sent to <%s>", r->msg.id, bounce_id, r->msg.sender);
	qmgr_add(r->q, bounce_id, false, false, 0, false);
	return true;
}

/* Bounce every failed recipient; false (*why_r) if the bounce failed. */
static bool bounce_failed(struct qmgr_run *r, const bool *failed, char **why_r)
{
	struct bounce_item *items = xcalloc(r->pair_count, sizeof(*items));
	char **reasons = xcalloc(r->pair_count, sizeof(*reasons));
	size_t n = 0;
	bool settled = true;

	for (size_t k = 0; k < r->pair_count; k++) {
		const struct qmgr_pair *p = &r->pairs[k];
		if (!failed[p->rcpt] || p->kind == QO_SENT)
			continue;
		const char *orig = r->msg.rcpts[p->rcpt].addr;
		reasons[n] = failure_reason(p);
		items[n].final_rcpt = p->final;
		items[n].orig_rcpt = str_eq_nocase(orig, p->final) ? NULL : orig;
		items[n].reason = reasons[n];
		n++;
	}
	if (n > 0)
		settled = send_bounce(r, items, n, why_r);
	if (settled)
		mark_bounced(r, failed);
	for (size_t k = 0; k < n; k++)
		free(reasons[k]);
	free(reasons);
	free(items);
	return settled;
}

/* One log line per pair that did not end in "sent" (those are logged at
 * delivery time). */
static void log_unsent(const struct qmgr_run *r, const bool *failed,
		       bool settled, const char *bounce_why)
{
	for (size_t k = 0; k < r->pair_count; k++) {
		const struct qmgr_pair *p = &r->pairs[k];
		if (p->kind == QO_SENT)
			continue;
		if (!failed[p->rcpt]) {
			qmgr_log_pair(r, p, "deferred", p->reason);
			continue;
		}
		char *reason = failure_reason(p);
		if (settled) {
			qmgr_log_pair(r, p, "bounced", reason);
		} else {
			char *both = qf_errf("%s; %s", reason, bounce_why);
			qmgr_log_pair(r, p, "deferred", both);
			free(both);
		}
		free(reason);
	}
}

/* First reason to record for the next attempt. */
static const char *defer_reason(const struct qmgr_run *r, const bool *failed,
				const char *bounce_why)
{
	for (size_t k = 0; k < r->pair_count; k++) {
		const struct qmgr_pair *p = &r->pairs[k];
		if (!failed[p->rcpt] && p->kind != QO_SENT)
			return p->reason;
	}
	return bounce_why != NULL ? bounce_why : "";
}

static void remove_message(struct qmgr_run *r)
{
	if (unlink(r->path) < 0 && errno != ENOENT)
		log_error("%s: cannot remove %s: %s", r->msg.id, r->path,
			  strerror(errno));
	else
		log_info("%s: removed", r->msg.id);
	qmgr_forget(r->q, r->e);
}

static void defer_message(struct qmgr_run *r, const char *reason)
{
	struct qmgr_entry *e = r->e;
	uint64_t next = qmgr_now_us() / 1000000u + qmgr_backoff(r->q->cfg, r->attempt);
	struct timespec times[2] = { { (time_t)next, 0 }, { (time_t)next, 0 } };
	char *err = NULL;

	if (qf_set_attempts(r->fd, &r->msg, r->attempt, next, reason, &err) < 0) {
		log_error("%s: %s", r->msg.id, err);
		free(err);
	}
	if (futimens(r->fd, times) < 0)
		log_error("%s: set next attempt time on %s: %s", r->msg.id, r->path,
			  strerror(errno));
	if (!e->in_deferred_dir) {
		char *dest = safeio_path_join(r->q->dir_deferred, e->id);
		if (rename(r->path, dest) == 0)
			e->in_deferred_dir = true;
		else
			log_error("%s: move to deferred/: %s", e->id, strerror(errno));
		free(dest);
	}
	qmgr_defer(r->q, e, next * 1000000u);
}

void qmgr_finish(struct qmgr_run *r)
{
	bool expired = is_expired(r);
	bool *failed = xcalloc(r->msg.rcpt_count, sizeof(*failed));
	char *bounce_why = NULL;

	for (size_t i = 0; i < r->msg.rcpt_count; i++)
		failed[i] = r->tried[i] &&
			    (r->outcome[i] == QO_PERM ||
			     (r->outcome[i] == QO_TEMP && expired));
	bool settled = bounce_failed(r, failed, &bounce_why);
	log_unsent(r, failed, settled, bounce_why);
	if (qf_pending_count(&r->msg) == 0)
		remove_message(r);
	else
		defer_message(r, defer_reason(r, failed, bounce_why));
	free(bounce_why);
	free(failed);
}

/*
 * qmgr_finish.c - the end of a delivery attempt: report the recipients
 * that failed for good (or whose message outlived
 * maximal_queue_lifetime) in one bounce to the sender, as far as their
 * NOTIFY asked for it, mark them bounced once that bounce is durable,
 * then either remove the message (nothing pending) or defer it with
 * exponential backoff (attempt count and next time written in place, file
 * mtime set to the next time, moved into deferred/), sending the one
 * delay warning of the message once it has waited delay_warning_time.
 * A message from <> that fails is reported to the postmaster (a double
 * bounce), once: a failed double bounce is dropped and logged. Also the
 * success reports of recipients that asked for them (NOTIFY=SUCCESS).
 *
 * RFCs: RFC 5321 sections 4.5.4.1 (retry strategy, give-up time) and
 * 4.5.5 / 6.1 (bounces go to the reverse-path, never to <>), RFC 3461
 * (NOTIFY, RET, ENVID, ORCPT), RFC 3464.
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

/* Where a double bounce goes: notify_admin, else the postmaster of the
 * first local domain, else of hostname. */
static char *postmaster_address(const struct config *cfg)
{
	if (cfg->notify_admin != NULL && cfg->notify_admin[0] != '\0')
		return xstrdup(cfg->notify_admin);
	return qf_errf("postmaster@%s", cfg->local_domains.count > 0 ? cfg->local_domains.items[0]
								      : cfg->hostname);
}

/* Queue one report of kind about items; 0, or -1 with *err_r. */
static int queue_report(struct qmgr_run *r, enum bounce_kind kind, const char *to,
			const struct bounce_item *items, size_t count, char *bounce_id_r,
			char **err_r)
{
	uint64_t life = r->q->cfg->queue_lifetime;
	struct bounce_request req = {
		.spool_dir = r->q->cfg->spool_dir,
		.hostname = r->q->cfg->hostname,
		.msg = &r->msg,
		.queue_fd = r->fd,
		.items = items,
		.count = count,
		.now_us = qmgr_now_us(),
		.kind = kind,
		.recipient = to,
		.retry_until = r->msg.arrival_us / 1000000u + life,
	};
	if (bounce_send(&req, bounce_id_r, err_r) < 0)
		return -1;
	qmgr_add(r->q, bounce_id_r, false, false, 0, false);
	return 0;
}

/* Queue the bounce (to the sender, or for <> to the postmaster; a
 * failed double bounce is dropped). True if the failed recipients are
 * settled; false with *why_r if they must wait for a next attempt. */
static bool send_bounce(struct qmgr_run *r, const struct bounce_item *items,
			size_t count, char **why_r)
{
	char bounce_id[QUEUE_ID_LEN + 1], *err = NULL, *postmaster = NULL;
	bool null_sender = r->msg.sender[0] == '\0';

	if (null_sender && r->msg.origin == QUEUE_ORIGIN_DOUBLE_BOUNCE) {
		log_warn("%s: double bounce dropped: it could not be delivered to the postmaster"
			 " either, %zu failed recipient%s", r->msg.id, count,
			 count == 1 ? "" : "s");
		return true;
	}
	if (null_sender)
		postmaster = postmaster_address(r->q->cfg);
	if (queue_report(r, null_sender ? BOUNCE_DOUBLE : BOUNCE_FAILED, postmaster, items,
			 count, bounce_id, &err) < 0) {
		log_error("%s: cannot queue bounce: %s", r->msg.id, err);
		*why_r = qf_errf("4.3.0 bounce not queued: %s", err);
		free(err);
		free(postmaster);
		return false;
	}
	if (null_sender)
		log_info("%s: sender is <>: double bounce %s sent to <%s>", r->msg.id, bounce_id,
			 postmaster);
	else
		log_info("%s: bounce %s sent to <%s>", r->msg.id, bounce_id, r->msg.sender);
	free(postmaster);
	return true;
}

/* The report fields of pair p. */
static void fill_item(const struct qmgr_run *r, const struct qmgr_pair *p,
		      struct bounce_item *it, const char *reason)
{
	const struct qf_rcpt *rc = &r->msg.rcpts[p->rcpt];

	it->final_rcpt = p->final;
	it->orig_rcpt = str_eq_nocase(rc->addr, p->final) ? NULL : rc->addr;
	it->orcpt = rc->dsn_orcpt;
	it->reason = reason;
}

/* Bounce every failed recipient that wants to hear of it (RFC 3461
 * NOTIFY; for a message from <> every one, to the postmaster); false
 * (*why_r) if the bounce failed. */
static bool bounce_failed(struct qmgr_run *r, const bool *failed, char **why_r)
{
	struct bounce_item *items = xcalloc(r->pair_count, sizeof(*items));
	char **reasons = xcalloc(r->pair_count, sizeof(*reasons));
	size_t n = 0, unwanted = 0;
	bool settled = true, null_sender = r->msg.sender[0] == '\0';

	for (size_t k = 0; k < r->pair_count; k++) {
		const struct qmgr_pair *p = &r->pairs[k];
		if (!failed[p->rcpt] || p->kind == QO_SENT)
			continue;
		if (!null_sender &&
		    !dsn_notify_wants(r->msg.rcpts[p->rcpt].dsn_notify, DSN_NOTIFY_FAILURE)) {
			unwanted++;
			continue;
		}
		reasons[n] = failure_reason(p);
		fill_item(r, p, &items[n], reasons[n]);
		n++;
	}
	if (unwanted > 0)
		log_info("%s: no bounce for %zu failed recipient%s: NOTIFY did not ask for one",
			 r->msg.id, unwanted, unwanted == 1 ? "" : "s");
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

/* The peer's name in "host[addr]:port" (the host), or in "[addr]:port"
 * (the address literal, brackets and all), into out. */
static void peer_host(const char *peer, char *out, size_t outlen)
{
	size_t n = 0;
	if (peer != NULL && peer[0] == '[')
		n = strcspn(peer, "]") + (strchr(peer, ']') != NULL);
	else if (peer != NULL)
		n = strcspn(peer, "[:");
	snprintf(out, outlen, "%.*s", (int)n, n > 0 ? peer : "");
}

/* The report of a success that this host owes (RFC 3461 NOTIFY=SUCCESS):
 * "delivered" for a copy in a local mailbox, "relayed" for a peer that
 * took no DSN request; none when not asked, or when the peer took the
 * request (the report is its to send). */
enum success_report { SR_NONE, SR_DELIVERED, SR_RELAYED };

static enum success_report success_report_of(const struct qmgr_run *r,
					     const struct qmgr_pair *p)
{
	if (p->kind != QO_SENT || r->outcome[p->rcpt] != QO_SENT ||
	    !dsn_notify_wants(r->msg.rcpts[p->rcpt].dsn_notify, DSN_NOTIFY_SUCCESS))
		return SR_NONE;
	if (!p->remote)
		return SR_DELIVERED;
	return p->relayed_without_dsn ? SR_RELAYED : SR_NONE;
}

/* The "delivered" report could not be queued: its recipients are not
 * done (marking them would lose the report for good) but deferred; the
 * next attempt finds their copies by name and queues the report then. */
static void defer_unreported(struct qmgr_run *r, const char *err)
{
	char *why = qf_errf("4.3.0 success report not queued: %s", err);

	for (size_t k = 0; k < r->pair_count; k++) {
		struct qmgr_pair *p = &r->pairs[k];
		if (success_report_of(r, p) != SR_DELIVERED)
			continue;
		free(p->reason);
		p->reason = xstrdup(why);
		p->kind = QO_TEMP; /* r->outcome is settled again by the caller */
	}
	free(why);
}

/* Queue one report; false (with *err_r) if it could not be. */
static bool queue_success_report(struct qmgr_run *r, enum bounce_kind kind,
				 const struct bounce_item *items, size_t n, char **err_r)
{
	char bounce_id[QUEUE_ID_LEN + 1];

	if (n == 0)
		return true;
	if (queue_report(r, kind, NULL, items, n, bounce_id, err_r) < 0)
		return false;
	log_info("%s: %s %s sent to <%s>", r->msg.id,
		 kind == BOUNCE_RELAYED ? "relay report" : "success report", bounce_id, r->msg.sender);
	return true;
}

bool qmgr_report_successes(struct qmgr_run *r)
{
	struct bounce_item *delivered = xcalloc(r->pair_count + 1, sizeof(*delivered));
	struct bounce_item *relayed = xcalloc(r->pair_count + 1, sizeof(*relayed));
	char (*hosts)[256] = xcalloc(r->pair_count + 1, sizeof(*hosts));
	size_t nd = 0, nr = 0;
	bool queued = true;
	char *err = NULL;

	for (size_t k = 0; r->msg.sender[0] != '\0' && k < r->pair_count; k++) {
		const struct qmgr_pair *p = &r->pairs[k];
		switch (success_report_of(r, p)) {
		case SR_DELIVERED:
			fill_item(r, p, &delivered[nd++], p->reason);
			break;
		case SR_RELAYED:
			peer_host(p->relay_peer, hosts[nr], sizeof(hosts[nr]));
			fill_item(r, p, &relayed[nr], p->reason);
			relayed[nr].remote_mta = hosts[nr];
			nr++;
			break;
		case SR_NONE:
			break;
		}
	}
	if (!queue_success_report(r, BOUNCE_DELIVERED, delivered, nd, &err)) {
		/* past maximal_queue_lifetime a deferral would turn into a
		 * bounce of delivered mail: the report is given up */
		bool retry = !is_expired(r);
		log_error("%s: cannot queue success report (%s): %s", r->msg.id,
			  retry ? "its recipients are tried again"
				: "given up, the message outlived maximal_queue_lifetime",
			  err);
		if (retry)
			defer_unreported(r, err);
		queued = !retry;
		free(err);
		err = NULL;
	}
	if (!queue_success_report(r, BOUNCE_RELAYED, relayed, nr, &err)) {
		/* the peer has the message: trying again would send it twice */
		log_error("%s: cannot queue relay report (given up: the peer has the message): %s",
			  r->msg.id, err);
		free(err);
	}
	free(delivered);
	free(relayed);
	free(hosts);
	return queued;
}

/* The message still waits for some recipients after this attempt: once
 * it has waited delay_warning_time, tell the sender once about those that
 * did not refuse delay reports (RFC 3461 NOTIFY; without NOTIFY they get
 * one), and record in the W record that it was done. */
static void warn_delay(struct qmgr_run *r, const bool *failed)
{
	const struct config *cfg = r->q->cfg;
	uint64_t wait = cfg->delay_warning_time;
	char bounce_id[QUEUE_ID_LEN + 1], *err = NULL;

	if (wait == 0 || r->msg.delay_warned != 0 || r->msg.delay_warned_off == 0 ||
	    r->msg.sender[0] == '\0' || wait > (UINT64_MAX - r->msg.arrival_us) / 1000000u ||
	    r->now_us < r->msg.arrival_us + wait * 1000000u)
		return;
	struct bounce_item *items = xcalloc(r->pair_count + 1, sizeof(*items));
	size_t n = 0;
	for (size_t k = 0; k < r->pair_count; k++) {
		const struct qmgr_pair *p = &r->pairs[k];
		if (p->kind != QO_TEMP || failed[p->rcpt] ||
		    r->msg.rcpts[p->rcpt].status != QF_RCPT_PENDING ||
		    !dsn_notify_wants(r->msg.rcpts[p->rcpt].dsn_notify, DSN_NOTIFY_DELAY))
			continue;
		fill_item(r, p, &items[n++], p->reason);
	}
	if (n > 0 && queue_report(r, BOUNCE_DELAYED, NULL, items, n, bounce_id, &err) < 0) {
		log_error("%s: cannot queue delay warning (trying again next time): %s",
			  r->msg.id, err);
		free(err);
		free(items);
		return;
	}
	if (n > 0)
		log_info("%s: delay warning %s sent to <%s>", r->msg.id, bounce_id, r->msg.sender);
	else
		log_info("%s: no delay warning: NOTIFY did not ask for one", r->msg.id);
	if (qf_set_delay_warned(r->fd, &r->msg, qmgr_now_us() / 1000000u, &err) < 0) {
		log_error("%s: %s", r->msg.id, err);
		free(err);
	}
	free(items);
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
	if (qf_pending_count(&r->msg) == 0) {
		remove_message(r);
	} else {
		warn_delay(r, failed);
		defer_message(r, defer_reason(r, failed, bounce_why));
	}
	free(bounce_why);
	free(failed);
}

/*
 * qmgr_deliver.c - one delivery attempt of one queued message, in two
 * halves around the batch's fsync of the new/ folders (qmgr_batch.c).
 * Start: lock and read the queue file (a damaged one moves to corrupt/,
 * one still locked by its writer is retried shortly), expand each pending
 * recipient through the aliases, and have the local delivery agent write
 * one copy per final mailbox into its Maildir, linked into new/ but not
 * yet durable. Complete (in qmgr_batch.c): a copy whose new/ could not
 * be synced becomes a temporary failure; each recipient all of whose
 * mailboxes hold a durable copy is marked done in the queue file. What is
 * left over (deferrals, failures) is handled by qmgr_finish(). Runs in a
 * delivery lane's thread; the message is the lane's while it is active.
 *
 * RFCs: RFC 5321 section 4.5.4 (retry) and 6.1 (reliable delivery), RFC
 * 3463 status codes in every reason. Untrusted input: the queue file
 * (validated by qf_read) and the addresses in it. Privilege: unprivileged
 * queue manager (`user`), owner of the spool; it cannot open a mailbox.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../lib/log.h"
#include "../lib/metrics.h"
#include "../lib/safeio.h"
#include "../lib/xalloc.h"
#include "qmgr_internal.h"

#define REASON_NOT_LOCAL "4.3.0 no relay delivery agent: remote delivery not available"

void qmgr_log_pair(const struct qmgr_run *r, const struct qmgr_pair *p,
		   const char *status, const char *reason)
{
	const char *orig = r->msg.rcpts[p->rcpt].addr;
	uint64_t arrival = r->msg.arrival_us;
	uint64_t now = qmgr_now_us();
	uint64_t cs = now > arrival ? (now - arrival) / 10000u : 0;
	bool same = str_eq_nocase(orig, p->final);
	const char *labels[] = { p->remote ? "relay" : "local", status };

	metrics_count_labels(METRIC_DELIVERIES, labels, 2);
	log_info("%s: to=<%s>%s%s%s relay=%s delay=%llu.%02llu attempts=%lu "
		 "status=%s (%s)", r->msg.id, p->final, same ? "" : " orig_to=<",
		 same ? "" : orig, same ? "" : ">", p->relay,
		 (unsigned long long)(cs / 100), (unsigned long long)(cs % 100),
		 (unsigned long)r->attempt, status, reason);
}

static bool domain_is_local(const struct qmgr *q, const char *address)
{
	const char *at = strrchr(address, '@');

	return at != NULL && strlist_contains_nocase(&q->cfg->local_domains, at + 1);
}

/* The form the recipient tables use: all lower-case for local domains,
 * only the domain lower-cased otherwise. */
static char *normalize(const struct qmgr *q, const char *address)
{
	char *copy = xstrdup(address);
	char *at = strrchr(copy, '@');

	if (domain_is_local(q, copy))
		str_lower(copy);
	else if (at != NULL)
		str_lower(at + 1);
	return copy;
}

static struct qmgr_pair *add_pair(struct qmgr_run *r, size_t rcpt,
				  const char *final)
{
	if (r->pair_count == r->pair_cap) {
		r->pair_cap = r->pair_cap ? r->pair_cap * 2 : 8;
		r->pairs = xreallocarray(r->pairs, r->pair_cap, sizeof(*r->pairs));
	}
	struct qmgr_pair *p = &r->pairs[r->pair_count++];
	memset(p, 0, sizeof(*p));
	p->rcpt = rcpt;
	p->final = xstrdup(final);
	p->relay = "none";
	return p;
}

static void set_result(struct qmgr_pair *p, enum qmgr_outcome kind,
		       const char *relay, char *reason)
{
	p->kind = kind;
	p->relay = relay;
	p->reason = reason;
}

/* Route and deliver one final mailbox, once per message. */
static void deliver_final(struct qmgr_run *r, size_t rcpt, const char *final)
{
	uintptr_t prev = (uintptr_t)hashmap_get(&r->finals, final, NULL);
	struct qmgr_pair *p = add_pair(r, rcpt, final);

	if (prev != 0) {
		/* Same mailbox as an earlier recipient: one copy only. */
		const struct qmgr_pair *first = &r->pairs[prev - 1];
		set_result(p, first->kind, first->relay, xstrdup(first->reason));
		p->dir = first->dir;
		p->dup_of = prev;
		return;
	}
	hashmap_put(&r->finals, final, (void *)(uintptr_t)r->pair_count);
	if (!domain_is_local(r->q, final) && r->q->relay == NULL)
		set_result(p, QO_TEMP, "none", xstrdup(REASON_NOT_LOCAL));
	else if (!domain_is_local(r->q, final))
		qmgr_relay_route(r, p);
	else if (!recipients_is_user(r->q->tables, final))
		set_result(p, QO_PERM, "local", xstrdup("5.1.1 unknown user"));
	else
		qmgr_local_deliver(r, p);
}

/* Expansion failures apply to the recipient itself. */
static void expand_failed(struct qmgr_run *r, size_t i, const char *address,
			  enum expand_status st)
{
	struct qmgr_pair *p = add_pair(r, i, address);

	if (st == EXPAND_LOOP)
		set_result(p, QO_PERM, "local", xstrdup("5.4.6 alias loop"));
	else if (st == EXPAND_TOO_MANY)
		set_result(p, QO_PERM, "local",
			   qf_errf("5.3.3 alias expands to more than %d targets",
				   ALIAS_MAX_TARGETS));
	else
		set_result(p, QO_PERM, "local", xstrdup("5.1.1 alias has no targets"));
}

static void process_rcpt(struct qmgr_run *r, size_t i)
{
	char *address = normalize(r->q, r->msg.rcpts[i].addr);
	strlist_t finals = { NULL, 0 };
	enum expand_status st = recipients_expand(r->q->tables, address, &finals);

	if (st != EXPAND_OK || finals.count == 0) {
		expand_failed(r, i, address, st);
	} else {
		for (size_t t = 0; t < finals.count; t++) {
			char *final = normalize(r->q, finals.items[t]);
			deliver_final(r, i, final);
			free(final);
		}
	}
	strlist_free(&finals);
	free(address);
	r->tried[i] = true;
}

/* ---- reading the file ------------------------------------------------------- */

static void move_corrupt(struct qmgr *q, struct qmgr_entry *e,
			 const char *path, const char *why)
{
	char *dest = safeio_path_join(q->dir_corrupt, e->id);

	if (rename(path, dest) == 0) {
		log_error("%s: corrupt queue file moved to %s: %s", e->id, dest, why);
		qmgr_forget(q, e);
	} else {
		log_error("%s: corrupt queue file %s (%s); cannot move it aside: %s",
			  e->id, path, why, strerror(errno));
		qmgr_set_broken(q, e);
	}
	free(dest);
}

/* The entry's file is not where we looked (a command moved it between
 * queue/ and deferred/: requeue, or a release of what we still knew as
 * deferred): look in the other folder once; forget it if it is in
 * neither (deleted, or held). */
static bool reopen_elsewhere(struct qmgr_run *r)
{
	struct qmgr *q = r->q;
	struct qmgr_entry *e = r->e;

	e->in_deferred_dir = !e->in_deferred_dir;
	free(r->path);
	r->path = safeio_path_join(e->in_deferred_dir ? q->dir_deferred : q->dir_queue, e->id);
	r->fd = open(r->path, O_RDWR | O_CLOEXEC | O_NOFOLLOW);
	if (r->fd < 0) {
		log_debug("%s: already gone", e->id);
		qmgr_forget(q, e);
		return false;
	}
	struct stat st, named;
	if (flock(r->fd, LOCK_EX | LOCK_NB) < 0 || fstat(r->fd, &st) < 0 || st.st_nlink == 0 ||
	    stat(r->path, &named) < 0 || named.st_ino != st.st_ino) {
		/* busy or moving again: the next look settles it */
		qmgr_try_again(q, e, qmgr_now_us() + QMGR_BUSY_RETRY_US);
		return false;
	}
	return true;
}

/* The writer holds the lock on its file from creation to the end of its
 * commit: wait for it. A file it had to take back (the fsync of queue/
 * failed) is unlinked before the lock is released: it is gone. */
static bool lock_message(struct qmgr_run *r)
{
	struct qmgr *q = r->q;
	struct stat st;

	if (flock(r->fd, LOCK_EX | LOCK_NB) < 0) {
		if (errno != EWOULDBLOCK && errno != EINTR) {
			log_error("%s: lock %s: %s", r->e->id, r->path, strerror(errno));
			qmgr_defer(q, r->e, qmgr_now_us() + QMGR_IO_RETRY_SECS * 1000000ull);
			return false;
		}
		log_debug("%s: commit in progress, trying again shortly", r->e->id);
		qmgr_try_again(q, r->e, qmgr_now_us() + QMGR_BUSY_RETRY_US);
		return false;
	}
	if (fstat(r->fd, &st) == 0 && st.st_nlink == 0) {
		log_debug("%s: taken back by its writer", r->e->id);
		qmgr_forget(q, r->e);
		return false;
	}
	/* A command (postern queue hold, requeue) may have moved the file
	 * between our open and our lock: deliver it only where it still is,
	 * under the name we opened. */
	struct stat named;
	if (stat(r->path, &named) < 0 || named.st_ino != st.st_ino || named.st_dev != st.st_dev) {
		log_debug("%s: moved away by a command before delivery", r->e->id);
		close(r->fd);
		r->fd = -1;
		return reopen_elsewhere(r);
	}
	return true;
}

/* Open and validate; false if there is nothing to deliver now. */
static bool open_message(struct qmgr_run *r)
{
	struct qmgr *q = r->q;
	struct qmgr_entry *e = r->e;
	char *err = NULL;

	r->path = safeio_path_join(e->in_deferred_dir ? q->dir_deferred : q->dir_queue,
			    e->id);
	r->fd = open(r->path, O_RDWR | O_CLOEXEC | O_NOFOLLOW);
	if (r->fd < 0 && errno != ENOENT) {
		log_error("%s: open %s: %s", e->id, r->path, strerror(errno));
		qmgr_defer(q, e, qmgr_now_us() + QMGR_IO_RETRY_SECS * 1000000ull);
		return false;
	}
	/* not there: moved by a command, or gone (reopen_elsewhere locks) */
	if (r->fd < 0 ? !reopen_elsewhere(r) : !lock_message(r))
		return false;
	int rc = qf_read(r->fd, &r->msg, &err);
	if (rc == 0 && strcmp(r->msg.id, e->id) != 0) {
		rc = QF_ERR_CORRUPT;
		err = qf_errf("id record %s does not match the file name", r->msg.id);
		qf_msg_free(&r->msg);
	}
	if (rc == QF_ERR_CORRUPT) {
		move_corrupt(q, e, r->path, err);
	} else if (rc != 0) {
		log_error("%s: %s: %s", e->id, r->path, err);
		qmgr_defer(q, e, qmgr_now_us() + QMGR_IO_RETRY_SECS * 1000000ull);
	}
	free(err);
	return rc == 0;
}

bool qmgr_run_start(struct qmgr_run *r, struct qmgr_lane *lane, struct qmgr_entry *e,
		    struct qmgr_batch *batch)
{
	memset(r, 0, sizeof(*r));
	r->q = lane->q;
	r->lane = lane;
	r->e = e;
	r->batch = batch;
	r->fd = -1;
	r->ro_fd = -1;
	r->now_us = qmgr_now_us();
	if (!open_message(r))
		return false;
	r->attempt = r->msg.attempts + 1;
	r->outcome = xcalloc(r->msg.rcpt_count, sizeof(*r->outcome));
	r->tried = xcalloc(r->msg.rcpt_count, sizeof(*r->tried));
	for (size_t i = 0; i < r->msg.rcpt_count; i++) {
		if (r->msg.rcpts[i].status == QF_RCPT_PENDING)
			process_rcpt(r, i);
	}
	return true;
}

void qmgr_run_free(struct qmgr_run *r)
{
	for (size_t i = 0; i < r->pair_count; i++) {
		free(r->pairs[i].final);
		free(r->pairs[i].reason);
		free(r->pairs[i].relay_peer);
	}
	free(r->pairs);
	free(r->outcome);
	free(r->tried);
	hashmap_free(&r->finals, NULL);
	qf_msg_free(&r->msg);
	if (r->fd >= 0)
		close(r->fd);
	if (r->ro_fd >= 0)
		close(r->ro_fd);
	free(r->path);
	memset(r, 0, sizeof(*r));
	r->fd = -1;
	r->ro_fd = -1;
}

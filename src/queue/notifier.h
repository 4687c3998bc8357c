/*
 * notifier.h - the smtp worker's side of the administrator's notices
 * (notice.h): which verdicts get one, to whom, how many a minute, and
 * queuing them off the event loop.
 *
 * A notice goes to notify_admin when a message is quarantined, or
 * refused or discarded because a virus was found in it; to the sender
 * as well only with notify_sender = yes, only for a quarantine, and
 * never for a virus or a sender <> (virus senders are forged: the notice
 * would go to an innocent third party). At most notify_rate_limit
 * notices a minute leave each worker; the others are counted and, at the
 * end of that minute, one summary notice lists them, so a burst of
 * viruses becomes at most limit + 1 notices a minute per worker.
 *
 * Building a notice reads the message's header section (for {subject})
 * and commits a new queue file: both block on the disk, so they run on
 * the commit threads (commit.h, queue_task_start); the event loop only
 * decides, copies what the notice needs and, once the notice is durable,
 * announces it to the queue manager (notify record flagged
 * QF_NOTIFY_NO_TOKEN: no flow token was taken for it).
 *
 * Privilege: the unprivileged smtp worker. Untrusted input: the values
 * of the verdict and envelope (copied, cleaned by notice.c).
 */
#ifndef POSTERN_NOTIFIER_H
#define POSTERN_NOTIFIER_H

#include <event2/event.h>
#include <stdbool.h>
#include <stdint.h>

#include "../lib/config.h"
#include "commit.h"
#include "notice.h"
#include "queue.h"

/* The rate bound of one worker: limit notices per window. */
struct notice_rate {
	uint64_t limit;
	uint64_t window_ms;
	uint64_t window_start_ms;
	uint64_t sent;       /* in the current window */
	uint64_t suppressed; /* since the last summary */
};
#define NOTICE_WINDOW_MS 60000
/* May a notice go at now_ms? false: over the limit, counted in
 * r->suppressed (for the summary). */
bool notice_rate_take(struct notice_rate *r, uint64_t now_ms);

struct notifier;

/* NULL if notices are off (no notify_admin and notify_sender = no). t
 * must outlive the notifier; so must c (free the committer first: its
 * last callbacks still use the notifier). */
struct notifier *notifier_new(struct event_base *base, const struct config *cfg,
			      const struct notice_template *t, struct queue_committer *c,
			      int notify_fd);
void notifier_free(struct notifier **n);

/*
 * A verdict is final (n may be NULL: nothing happens). For
 * NOTICE_QUARANTINED the message is committed in quarantine/ (its Subject:
 * is read from there); for NOTICE_REFUSED and NOTICE_DISCARDED pass its
 * open queue writer in *writer: if a notice is due the notifier takes it
 * (sets *writer to NULL), reads the Subject: back and removes the file.
 * info->subject, ->hostname and ->when_us are filled by the notifier.
 * Returns true if a notice is on its way.
 */
bool notifier_event(struct notifier *n, const struct notice_info *info,
		    struct queue_writer **writer);

/*
 * A notice of the worker's own to notify_admin (a rate passed its warn
 * level, a sender was blocked, the site panics): subject and body (LF
 * line ends; control characters other than LF become spaces) in a plain
 * message from <>, within the same rate bound as the others (one held
 * back is logged and counted in the summary). n may be NULL, and nothing
 * happens without notify_admin. Returns true if a notice is on its way.
 */
bool notifier_admin_text(struct notifier *n, const char *subject, const char *body);

/* For tests: the rate bound's window in milliseconds (NOTICE_WINDOW_MS). */
void notifier_set_window(struct notifier *n, uint64_t window_ms);

#endif

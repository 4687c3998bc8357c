/*
 * qmgr_internal.h - state shared by the queue manager's files: the set of
 * known messages, the ready list, the deferred heap and the spool paths.
 * Not a public interface (see qmgr.h).
 *
 * RFCs: see the .c files. Untrusted input: none here. Privilege:
 * unprivileged queue manager.
 */
#ifndef POSTERN_QMGR_INTERNAL_H
#define POSTERN_QMGR_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>

#include "../lib/config.h"
#include "../lib/hashmap.h"
#include "../mail/recipients.h"
#include "queue.h"
#include "queue_file.h"

/* Incoming files untouched this long belong to a receiver that died. */
#define QMGR_STALE_INCOMING_SECS (2 * 3600)
/* Wait this long before re-reading a file the disk failed to give us. */
#define QMGR_IO_RETRY_SECS 60

enum qmgr_state {
	QE_NEW,      /* just added, not yet placed */
	QE_READY,    /* in the ready list */
	QE_DEFERRED, /* in the deferred heap */
	QE_ACTIVE,   /* being delivered */
	QE_BROKEN,   /* corrupt and could not be moved aside: ignore */
};

struct qmgr_entry {
	char id[QUEUE_ID_LEN + 1];
	enum qmgr_state state;
	bool in_deferred_dir; /* file lives in deferred/ rather than queue/ */
	bool recovered;       /* found on disk, not notified in this run */
	uint64_t due_us;      /* deferred: next attempt, us since the epoch */
	size_t heap_idx;
	struct qmgr_entry *next; /* ready list link */
};

struct qmgr {
	const struct config *cfg;
	const struct recipient_tables *tables;
	int notify_fd;
	unsigned char notify_buf[QF_NOTIFY_LEN];
	size_t notify_have;
	char *dir_incoming;
	char *dir_queue;
	char *dir_deferred;
	char *dir_corrupt;
	hashmap_t known; /* id -> struct qmgr_entry */
	struct qmgr_entry *ready_head, *ready_tail;
	struct qmgr_entry **heap;
	size_t heap_len, heap_cap;
};

enum qmgr_outcome { QO_SENT, QO_TEMP, QO_PERM };

/* What happened to one final mailbox of one recipient in this attempt. */
struct qmgr_pair {
	size_t rcpt;        /* index into msg.rcpts */
	char *final;        /* final address after alias expansion */
	enum qmgr_outcome kind;
	char *reason;       /* "delivered to maildir", "5.1.1 unknown user"... */
	const char *relay;  /* "maildir" or "none" */
	size_t dir;         /* new/ folder to fsync: batch index + 1, 0 none */
};

/* Messages delivered together: every copy is linked into new/, then each
 * new/ folder touched is fsync'ed once, then the recipients are marked. */
#define QMGR_BATCH_MAX 64

struct qmgr_batch {
	hashmap_t dir_index; /* new/ path -> index + 1 */
	char **dirs;         /* distinct new/ folders touched */
	char **dir_errors;   /* per folder: NULL, or why its fsync failed */
	size_t dir_count, dir_cap;
};

/* One delivery attempt of one message. */
struct qmgr_run {
	struct qmgr *q;
	struct qmgr_batch *batch;
	struct qmgr_entry *e;
	char *path;
	int fd;
	struct qf_msg msg;
	uint32_t attempt;  /* number of this attempt, 1 = first */
	uint64_t now_us;   /* when this attempt started */
	hashmap_t finals;  /* final address -> pair index + 1 (one copy each) */
	struct qmgr_pair *pairs;
	size_t pair_count, pair_cap;
	enum qmgr_outcome *outcome; /* per recipient tried in this attempt */
	bool *tried;
};

/* qmgr_sched.c */
uint64_t qmgr_now_us(void);
/* Add a message not yet known; NULL if it is (nothing changes then). */
struct qmgr_entry *qmgr_add(struct qmgr *q, const char *id, bool in_deferred,
			    bool recovered, uint64_t due_us);
void qmgr_make_ready(struct qmgr *q, struct qmgr_entry *e);
struct qmgr_entry *qmgr_pop_ready(struct qmgr *q);
void qmgr_defer(struct qmgr *q, struct qmgr_entry *e, uint64_t due_us);
/* Move every deferred message that is due into the ready list. */
void qmgr_promote_due(struct qmgr *q, uint64_t now_us);
/* Next due time in the heap, or UINT64_MAX. */
uint64_t qmgr_next_due(const struct qmgr *q);
/* Drop the entry from the known set and free it. */
void qmgr_forget(struct qmgr *q, struct qmgr_entry *e);
void qmgr_sched_free(struct qmgr *q);

/* qmgr_scan.c */
void qmgr_scan(struct qmgr *q, bool startup);
/* Read every complete notify record available; never blocks. */
void qmgr_read_notify(struct qmgr *q);

/* qmgr_batch.c: deliver up to QMGR_BATCH_MAX ready messages together. */
void qmgr_deliver_ready(struct qmgr *q);
/* qmgr_batch.c: index + 1 of folder newdir in the batch (taken over). */
size_t qmgr_batch_dir(struct qmgr_batch *b, char *newdir);

/* qmgr_deliver.c: the first half of one delivery attempt: open the file
 * and write every pending recipient's copies, linked into new/ but not yet
 * fsync'ed (folders collected in batch). False if there is nothing to
 * deliver (the entry was already forgotten or rescheduled). The second
 * half is in qmgr_batch.c, once the batch's folders are synced. */
bool qmgr_run_start(struct qmgr_run *r, struct qmgr *q, struct qmgr_entry *e,
		    struct qmgr_batch *batch);
/* Free everything a run holds (started or not) and close its file. */
void qmgr_run_free(struct qmgr_run *r);

/* qmgr_deliver.c: "ID: to=<..> orig_to=<..> relay=.. delay=.. attempts=..
 * status=STATUS (reason)" for one pair. */
void qmgr_log_pair(const struct qmgr_run *r, const struct qmgr_pair *p,
		   const char *status, const char *reason);

/* qmgr_finish.c: after every pending recipient was tried, bounce what
 * failed for good, then defer or remove the message. */
void qmgr_finish(struct qmgr_run *r);
/* Retry delay after `attempts` failed attempts (1 = the first). */
uint64_t qmgr_backoff(const struct config *cfg, uint32_t attempts);

#endif

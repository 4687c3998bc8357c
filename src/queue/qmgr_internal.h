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
/* Try again this soon when a queue file is still locked by its writer
 * (its commit is in progress). */
#define QMGR_BUSY_RETRY_US 200000

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
	int agent_fd;        /* socket to the local delivery agent; -1 once lost */
	pid_t agent_pid;
	uint32_t agent_seq;  /* sequence number of the last request */
	bool agent_lost;     /* died or broke the protocol: finish the batch, exit */
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
	size_t dir;         /* new/ folder to fsync: the agent's number, 0 none */
};

/* Messages delivered together: every copy is linked into new/, then each
 * new/ folder touched is fsync'ed once, then the recipients are marked.
 * A batch also ends once its copies touched QMGR_BATCH_FOLDERS folders,
 * well below the agent's LOCAL_FOLDERS_MAX. */
#define QMGR_BATCH_MAX 64
#define QMGR_BATCH_FOLDERS 4096

struct qmgr_batch {
	size_t dir_count;  /* new/ folders the agent numbered, 1..dir_count */
	char **dir_errors; /* per folder: NULL, or why its fsync failed */
};

/* One delivery attempt of one message. */
struct qmgr_run {
	struct qmgr *q;
	struct qmgr_batch *batch;
	struct qmgr_entry *e;
	char *path;
	int fd;            /* the queue file, read-write, locked */
	int ro_fd;         /* the same file read-only, for the agent; -1 until needed */
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

/* qmgr_local.c: the client side of the local delivery agent protocol
 * (local_proto.h). Any failure of the agent marks it lost (logged once,
 * the agent killed): the requests then fail temporarily. */
/* HELLO: hand over the spool lock; -1 if the agent is already lost. */
int qmgr_local_hello(struct qmgr *q, int lock_fd);
/* One copy of r's message for p->final; sets p's outcome and folder. */
void qmgr_local_deliver(struct qmgr_run *r, struct qmgr_pair *p);
/* SYNC: fill b->dir_errors for the folders 1..b->dir_count. */
void qmgr_local_sync(struct qmgr *q, struct qmgr_batch *b);
/* The agent socket reported something while no request was open. */
void qmgr_local_unexpected(struct qmgr *q);
/* Close the socket and reap the agent (bounded wait, then SIGKILL). */
void qmgr_local_stop(struct qmgr *q);

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

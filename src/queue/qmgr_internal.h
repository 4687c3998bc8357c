/*
 * qmgr_internal.h - state shared by the queue manager's files: the set of
 * known messages, the ready list, the deferred heap, the spool paths and
 * the delivery lanes. Not a public interface (see qmgr.h).
 *
 * Threads: the main thread reads the notify pipe, scans the spool and
 * promotes due deferred messages; each lane is a thread that delivers
 * through its own agent. The scheduling state (known set, ready list,
 * heap, the entries' state, the stop flags, the owed flow tokens) is
 * shared and guarded by qmgr.lock, which the qmgr_sched.c functions take
 * for one operation and never hold across disk I/O or an agent request.
 * An entry in state QE_ACTIVE belongs to the lane delivering it: only
 * that lane touches its other fields until it hands it back (defer,
 * forget). The lane's agent fields belong to the lane's thread.
 *
 * RFCs: see the .c files. Untrusted input: none here. Privilege:
 * unprivileged queue manager.
 */
#ifndef POSTERN_QMGR_INTERNAL_H
#define POSTERN_QMGR_INTERNAL_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "../lib/config.h"
#include "../lib/hashmap.h"
#include "../mail/recipients.h"
#include "../relay/relay_route.h"
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
	bool holds_token;     /* an smtp worker took a flow token for it: give
			       * one back when it leaves the ready list */
	bool look_again;      /* a command woke it while it was active: if the
			       * lane forgets it, look once more (qmgr_hurry) */
	uint64_t due_us;      /* deferred: next attempt, us since the epoch */
	size_t heap_idx;
	struct qmgr_entry *next; /* ready list link */
};

struct qmgr;

/* One delivery lane: a thread and the local delivery agent it drives. */
struct qmgr_lane {
	struct qmgr *q;
	unsigned number;     /* 1.., for the log */
	/* The lane thread's own (the main thread's before and after it): */
	int agent_fd;        /* socket to the agent; -1 once lost */
	pid_t agent_pid;
	uint32_t agent_seq;  /* sequence number of the last request */
	bool agent_lost;     /* died or broke the protocol: finish the batch, stop */
	int wake_fd;         /* eventfd: ready work, or stop */
	pthread_t thread;
	bool thread_running;
	/* Under q->lock: */
	bool idle;           /* asleep until wake_fd is written */
	bool woken;          /* wake_fd was written since it last slept */
};

struct qmgr {
	const struct config *cfg;
	const struct recipient_tables *tables;
	int notify_fd;
	int flow_fd;         /* write end of the flow token pipe; -1 none */
	int wake_fd;         /* eventfd: the main thread must look again */
	int wake_fifo_fd;    /* spool_dir/qmgr.wake, read-write; -1 none */
	unsigned char notify_buf[QF_NOTIFY_LEN];
	size_t notify_have;
	unsigned char wake_fifo_buf[QF_NOTIFY_LEN];
	size_t wake_fifo_have;
	char *dir_incoming;
	char *dir_queue;
	char *dir_deferred;
	char *dir_corrupt;
	char *dir_quarantine;
	struct qmgr_lane *lanes;
	size_t lane_count;
	pthread_mutex_t lock;
	/* Under lock: */
	hashmap_t known; /* id -> struct qmgr_entry */
	struct qmgr_entry *ready_head, *ready_tail;
	size_t ready_count;
	struct qmgr_entry **heap;
	size_t heap_len, heap_cap;
	bool stopping;       /* lanes start no further message */
	/* The relay agent (qmgr_relay.c); its fields are under relay_lock. */
	struct qmgr_relay *relay;   /* NULL: no relay agent, remote mail defers */
	struct relay_router *router; /* routes of remote domains; NULL = all by MX */
	pthread_mutex_t router_lock; /* map lookups are not thread-safe */
	bool agent_lost;     /* some lane lost its agent: exit with 1 */
	size_t tokens_owed;  /* flow tokens not yet written */
};

enum qmgr_outcome { QO_SENT, QO_TEMP, QO_PERM };

/* What happened to one final mailbox of one recipient in this attempt. */
struct qmgr_pair {
	size_t rcpt;        /* index into msg.rcpts */
	char *final;        /* final address after alias expansion */
	enum qmgr_outcome kind;
	char *reason;       /* "delivered to maildir", "5.1.1 unknown user"... */
	const char *relay;  /* "maildir", "none", "discard", "error", or relay_peer */
	size_t dir;         /* new/ folder to fsync: the agent's number, 0 none */
	size_t dup_of;      /* same mailbox as pairs[dup_of - 1]; 0 = none */
	bool remote;        /* goes to the relay agent */
	struct relay_nexthop hop;      /* remote: where */
	enum relay_tls_level tls;      /* remote: with which TLS level */
	char *relay_peer;   /* remote: "host[addr]:port" the agent reported, owned */
	bool relayed_without_dsn; /* remote, sent: the peer offered no DSN, so a
				   * NOTIFY=SUCCESS is answered here ("relayed") */
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
	struct qmgr_lane *lane;
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

/* qmgr_sched.c: each function takes q->lock itself, for one operation. */
uint64_t qmgr_now_us(void);
/* Add a message not yet known; false if it is (nothing changes then).
 * holds_token: an smtp worker took a flow token for it. */
bool qmgr_add(struct qmgr *q, const char *id, bool in_deferred, bool recovered,
	      uint64_t due_us, bool holds_token);
bool qmgr_known(struct qmgr *q, const char *id);
/* A command asked for id now (postern queue flush, requeue, release): a
 * known deferred entry becomes ready at once (true); an active one is
 * looked at once more if its lane forgets it (the file was moved back
 * meanwhile). */
bool qmgr_hurry(struct qmgr *q, const char *id);
/* The next ready message for a lane (now QE_ACTIVE, the lane's); NULL if
 * none or the queue manager is stopping. */
struct qmgr_entry *qmgr_take_ready(struct qmgr *q);
/* An active message goes to the deferred heap after an attempt. */
void qmgr_defer(struct qmgr *q, struct qmgr_entry *e, uint64_t due_us);
/* The same without an attempt: its writer still commits it. */
void qmgr_try_again(struct qmgr *q, struct qmgr_entry *e, uint64_t due_us);
/* Corrupt and could not be moved aside: ignore it from now on. */
void qmgr_set_broken(struct qmgr *q, struct qmgr_entry *e);
/* Drop an active entry from the known set and free it. */
void qmgr_forget(struct qmgr *q, struct qmgr_entry *e);
/* Move every deferred message that is due into the ready list. */
void qmgr_promote_due(struct qmgr *q, uint64_t now_us);
/* Next due time in the heap, or UINT64_MAX. */
uint64_t qmgr_next_due(struct qmgr *q);
size_t qmgr_known_count(struct qmgr *q);
/* Write the flow tokens owed for messages that left the ready list. */
void qmgr_give_tokens(struct qmgr *q);
void qmgr_sched_free(struct qmgr *q);

/* qmgr_lanes.c: the lane threads and how they are woken. */
/* Start one thread per lane; -1 (logged) if none could start. */
int qmgr_lanes_start(struct qmgr *q);
/* Stop starting messages, let every lane finish its batch, join them. */
void qmgr_lanes_stop(struct qmgr *q);
/* With q->lock held: wake the idle lanes (work is ready) / every lane
 * and the main thread (stopping). */
void qmgr_lanes_wake_idle(struct qmgr *q);
void qmgr_lanes_wake_all(struct qmgr *q);
/* Wake the main thread (a new earliest deferred time, a lost agent). */
void qmgr_wake_main(struct qmgr *q);
/* Drain an eventfd after poll() said it is readable. */
void qmgr_eventfd_drain(int fd);
/* A lane lost its agent: stop everything, exit with 1. */
void qmgr_lanes_agent_lost(struct qmgr *q);

/* qmgr_scan.c */
/* Scan queue/ and deferred/ for messages not known yet, remove abandoned
 * incoming/ files and expired quarantine entries. */
void qmgr_scan(struct qmgr *q, bool startup);
/* Read every complete notify record available; never blocks. */
void qmgr_read_notify(struct qmgr *q);
/* Open (creating it if needed) the wake-up FIFO into q->wake_fifo_fd;
 * -1 (logged) if it cannot be had: released messages then wait for the
 * periodic scan. */
int qmgr_wake_fifo_open(struct qmgr *q);
/* Read every complete record of the wake-up FIFO; never blocks. */
void qmgr_read_wake_fifo(struct qmgr *q);
/*
 * Remove the files of quarantine_dir whose queue id (its time of arrival)
 * is older than retention_secs before now_us, each logged as "ID:
 * quarantine expired ...". A file whose commit is still in progress
 * (locked), anything but a regular file, and names that are not queue ids
 * are left alone. Returns the number removed.
 */
size_t qmgr_expire_quarantine(const char *quarantine_dir, uint64_t retention_secs,
			      uint64_t now_us);

/* qmgr_batch.c: deliver up to QMGR_BATCH_MAX ready messages together
 * through the lane's agent. */
void qmgr_lane_batch(struct qmgr_lane *lane);

/* qmgr_local.c: the client side of the local delivery agent protocol
 * (local_proto.h), one lane's agent. Any failure of the agent marks it
 * lost (logged once, the agent killed, every lane told to stop): the
 * requests then fail temporarily. */
/* HELLO: hand over the spool lock; -1 if the agent is already lost. */
int qmgr_local_hello(struct qmgr_lane *lane, int lock_fd);
/* One copy of r's message for p->final; sets p's outcome and folder. */
void qmgr_local_deliver(struct qmgr_run *r, struct qmgr_pair *p);
/* SYNC: fill b->dir_errors for the folders 1..b->dir_count. */
void qmgr_local_sync(struct qmgr_lane *lane, struct qmgr_batch *b);
/* The agent socket reported something while no request was open. */
void qmgr_local_unexpected(struct qmgr_lane *lane);
/* Close the socket (the agent sees the end of stream and exits). */
void qmgr_local_close(struct qmgr_lane *lane);
/* Reap the agent (bounded wait, then SIGKILL); closes the socket first. */
void qmgr_local_reap(struct qmgr_lane *lane);

/* qmgr_deliver.c: the first half of one delivery attempt: open the file
 * and write every pending recipient's copies, linked into new/ but not yet
 * fsync'ed (folders collected in batch). False if there is nothing to
 * deliver (the entry was already forgotten or rescheduled). The second
 * half is in qmgr_batch.c, once the batch's folders are synced. */
bool qmgr_run_start(struct qmgr_run *r, struct qmgr_lane *lane, struct qmgr_entry *e,
		    struct qmgr_batch *batch);
/* Free everything a run holds (started or not) and close its file. */
void qmgr_run_free(struct qmgr_run *r);

/* qmgr_deliver.c: "ID: to=<..> orig_to=<..> relay=.. delay=.. attempts=..
 * status=STATUS (reason)" for one pair. */
void qmgr_log_pair(const struct qmgr_run *r, const struct qmgr_pair *p,
		   const char *status, const char *reason);

/* qmgr_relay.c: the client side of the relay agent protocol
 * (relay_proto.h), one thread that keeps many requests in flight. */
/* Start the relay thread and say HELLO; -1 (logged) if it cannot. */
int qmgr_relay_start(struct qmgr *q, int fd, pid_t pid, int lock_fd);
/* Hand a run with remote pairs over (the relay thread owns *r from now
 * on: it completes and frees it once every result is in). May wait
 * while too many runs are in flight. */
void qmgr_relay_submit(struct qmgr *q, struct qmgr_run *r);
/* Let the runs in flight finish (bounded wait), then close the socket,
 * reap the agent, join the thread. */
void qmgr_relay_stop(struct qmgr *q);
/* Route one remote final address (qmgr_deliver.c). */
void qmgr_relay_route(struct qmgr_run *r, struct qmgr_pair *p);
/* Does the run have pairs for the relay agent? */
bool qmgr_run_has_remote(const struct qmgr_run *r);

/* qmgr_batch.c: the end of a run once all its results are in: outcomes
 * per recipient, mark done, then qmgr_finish. */
void qmgr_run_settle(struct qmgr_run *r);

/* qmgr_finish.c: after every pending recipient was tried, bounce what
 * failed for good, then defer or remove the message. */
void qmgr_finish(struct qmgr_run *r);
/* qmgr_finish.c: before the delivered recipients are marked done, queue
 * the reports of those that asked for them (NOTIFY=SUCCESS): "delivered"
 * for a local delivery, "relayed" for a peer that offered no DSN (one
 * that did gets the request and reports itself). A crash before the
 * marks leads to a second report, never to none. If the "delivered"
 * report cannot be queued, its pairs become temporary failures (4.3.0)
 * and false is returned: the caller settles r->outcome again, so they
 * are deferred, not marked done (a "relayed" one is given up, logged:
 * a retry would send the message to the peer twice). */
bool qmgr_report_successes(struct qmgr_run *r);
/* qmgr_local.c: a read-only descriptor of the run's queue file for an
 * agent (local or relay), the same file as the locked read-write one
 * (else -1, errno ESTALE); kept in r->ro_fd for the run's other requests. */
int qmgr_run_readonly_fd(struct qmgr_run *r);
/* Retry delay after `attempts` failed attempts (1 = the first). */
uint64_t qmgr_backoff(const struct config *cfg, uint32_t attempts);

#endif

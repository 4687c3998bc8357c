/*
 * qmgr.h - the queue manager role: the only process that moves accepted
 * queue files. It delivers each message to local Maildirs (expanding
 * aliases) through the local delivery agent (local.h), retries temporary
 * failures with backoff from deferred/, and bounces permanent failures
 * with an RFC 3464 report to the sender. It runs as `user` and can
 * neither read nor write a mailbox itself; delivery runs in parallel
 * lanes, one thread and one agent each.
 */
#ifndef POSTERN_QMGR_H
#define POSTERN_QMGR_H

#include <sys/types.h>

#include "../lib/config.h"
#include "../mail/recipients.h"

struct relay_router;

/* One local delivery agent: the queue manager's end of its socket pair
 * and its process id (each agent is the queue manager's child, reaped by
 * it at exit). */
struct qmgr_agent {
	int fd;
	pid_t pid;
};

/* Everything the queue manager talks to besides the spool. */
struct qmgr_links {
	int notify_fd;   /* read end of the notify pipe; -1 = rely on scans */
	int flow_fd;     /* write end of the in-flow token pipe (flow.h); -1 = none */
	const struct qmgr_agent *agents; /* one per delivery lane, at least one */
	size_t agent_count;
	struct qmgr_agent relay;         /* the relay delivery agent; fd -1 = none
					  * (remote mail then waits, deferred) */
	struct relay_router *router;     /* transport_file etc.; NULL = all by MX */
};

/*
 * Run the queue manager until SIGTERM/SIGINT (each lane finishes the
 * batch in progress, then 0 is returned). Takes an exclusive lock on
 * <spool_dir>/qmgr.lock first so that two queue managers never run on the
 * same spool (waits for an older one to exit), and hands the lock to
 * every agent too, so that it is held until all have gone.
 *
 * Delivery runs in one lane per agent: a thread of this process that
 * delivers batches of ready messages through its own agent, in parallel
 * with the other lanes. If any agent dies or breaks the protocol, that
 * lane's deliveries in flight fail temporarily, the other lanes finish
 * their batches and qmgr_run returns 1, so the supervisor restarts the
 * queue manager and all its agents. Puts cfg->in_flow_tokens tokens into
 * flow_fd at start (topping up what is there) and one more for each
 * accepted message that leaves the ready list. Always closes every
 * agent's fd and reaps every agent before returning. Returns non-zero on
 * a fatal error.
 *
 * SIGTERM and SIGINT are blocked for the whole run and taken only while
 * the manager waits (for the lock, for work); the caller may block them
 * before the call, so that one sent before the manager is ready is not
 * lost. One that arrives while the manager is already stopping is the
 * same stop: it is taken before the caller's handlers and mask come back,
 * so the process does not die of it after qmgr_run has returned.
 */
int qmgr_run(const struct config *cfg, const struct recipient_tables *rcpt,
	     const struct qmgr_links *links);

/* qmgr_run with one agent and no flow tokens (the unit tests' set-up). */
int qmgr_main(const struct config *cfg, const struct recipient_tables *rcpt,
	      int notify_fd, const struct qmgr_agent *agent);

#endif

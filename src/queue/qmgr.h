/*
 * qmgr.h - the queue manager role: the only process that moves accepted
 * queue files. It delivers each message to local Maildirs (expanding
 * aliases) through the local delivery agent (local.h), retries temporary
 * failures with backoff from deferred/, and bounces permanent failures
 * with an RFC 3464 report to the sender. It runs as `user` and can
 * neither read nor write a mailbox itself.
 */
#ifndef POSTERN_QMGR_H
#define POSTERN_QMGR_H

#include <sys/types.h>

#include "../lib/config.h"
#include "../mail/recipients.h"

/* The queue manager's local delivery agent: its end of the socket pair
 * and its process id (the agent is the queue manager's child, reaped by
 * it at exit). */
struct qmgr_agent {
	int fd;
	pid_t pid;
};

/*
 * Run the queue manager until SIGTERM/SIGINT (finish the delivery in
 * progress, then return 0). notify_fd is the read end of the pipe the smtp
 * workers write queue_notify() records to (-1: rely on scans only).
 * Takes an exclusive lock on <spool_dir>/qmgr.lock first so that two queue
 * managers never run on the same spool (waits for an older one to exit),
 * and hands the lock to the agent too, so that it is held until both have
 * gone. If the agent dies or breaks the protocol, the deliveries in
 * flight fail temporarily and qmgr_main returns 1 after the batch, so the
 * supervisor restarts the pair. Always closes agent->fd and reaps the
 * agent before returning. Returns non-zero on a fatal error.
 */
int qmgr_main(const struct config *cfg, const struct recipient_tables *rcpt,
	      int notify_fd, const struct qmgr_agent *agent);

#endif

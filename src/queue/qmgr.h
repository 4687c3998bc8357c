/*
 * qmgr.h - the queue manager role: the only process that moves accepted
 * queue files. It delivers each message to local Maildirs (expanding
 * aliases), retries temporary failures with backoff from deferred/, and
 * bounces permanent failures with an RFC 3464 report to the sender.
 */
#ifndef POSTERN_QMGR_H
#define POSTERN_QMGR_H

#include "../lib/config.h"
#include "../mail/recipients.h"

/*
 * Run the queue manager until SIGTERM/SIGINT (finish the delivery in
 * progress, then return 0). notify_fd is the read end of the pipe the smtp
 * workers write queue_notify() records to (-1: rely on scans only).
 * Takes an exclusive lock on <spool_dir>/qmgr.lock first so that two queue
 * managers never run on the same spool (waits for an older one to exit).
 * Returns non-zero on a fatal setup error.
 */
int qmgr_main(const struct config *cfg, const struct recipient_tables *rcpt,
	      int notify_fd);

#endif

/*
 * local.h - the local delivery agent: the only process that writes
 * Maildirs. It runs as mail_owner, forked by the queue manager's parent
 * while still root, and serves the queue manager's requests over a socket
 * pair (protocol in local_proto.h): write one copy into a mailbox, or make
 * the batch's new/ folders durable. It trusts nothing it is sent: each
 * address must be a user of the users table and a safe path under its own
 * mail_root, the queue file arrives as a read-only descriptor whose size
 * must match the content range, and folder paths never cross the socket.
 */
#ifndef POSTERN_LOCAL_H
#define POSTERN_LOCAL_H

#include "../lib/config.h"
#include "../mail/recipients.h"

/* New/ folders one batch may touch; a delivery beyond fails temporarily
 * (the queue manager ends a batch well before, QMGR_BATCH_FOLDERS). */
#define LOCAL_FOLDERS_MAX 65536

/*
 * Serve requests on sock until the queue manager closes its end. Returns
 * the exit status: 0 at end of stream, 1 after a protocol violation or a
 * socket error (the agent stops: fail closed).
 */
int local_main(const struct config *cfg, const struct recipient_tables *tables,
	       int sock);

#endif

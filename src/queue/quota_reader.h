/*
 * quota_reader.h - the quota reader: a small process, one per smtp
 * worker, that tells its worker how full a mailbox is.
 *
 * The smtp worker runs as `user` and cannot open a Maildir (they belong
 * to mail_owner, mode 0700), yet RCPT must know the usage to refuse a
 * full mailbox (552 5.2.2) before the message is accepted. The worker
 * forks this reader while still root; the reader becomes mail_owner and
 * answers ASK with the mailbox's quota and usage (maildirsize, read or
 * recalculated by maildir_quota.c) over a socket pair (quota_proto.h).
 * It builds every path itself from its own mail_root and an address it
 * checks is a user of its (inherited) users table, so a compromised
 * worker can learn how full a mailbox is and make it be recounted, and
 * nothing else. It holds no listener, no spool descriptor, no TLS key
 * (forked before the worker reads it) and no password hash.
 *
 * Privilege: mail_owner, non-dumpable, SIGTERM when its worker dies.
 */
#ifndef POSTERN_QUOTA_READER_H
#define POSTERN_QUOTA_READER_H

#include "../lib/config.h"
#include "../mail/recipients.h"

/* Is a reader needed: does any quota apply to anybody? */
bool quota_reader_wanted(const struct config *cfg, const struct recipient_tables *t);

/* Serve sock until the worker closes it; returns the exit status. */
int quota_reader_main(const struct config *cfg, const struct recipient_tables *t, int sock);

#endif

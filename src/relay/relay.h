/*
 * relay.h - the relay delivery agent: the outbound SMTP client of postern.
 *
 * A child of the queue manager (forked by the supervisor while it is
 * still root, then `user`; it never opens a spool folder by name, which
 * its account would allow), it holds no mailbox access and no
 * key: for each DELIVER request (relay_proto.h) it gets the queue file as
 * a read-only descriptor and a next hop, and answers with one RESULT per
 * request, one result per recipient. Many SMTP sessions run at once on a
 * libevent loop (delivery_concurrency in all, destination_concurrency per
 * destination), DNS goes through src/dns/ (c-ares on the same loop), TLS
 * through OpenSSL. See docs/architecture.md and docs/queue.md.
 *
 * Untrusted input: the SMTP servers' replies, DNS answers, the queue
 * manager's requests (checked like any peer's). Privilege: `user`,
 * non-dumpable.
 */
#ifndef POSTERN_RELAY_H
#define POSTERN_RELAY_H

#include "../lib/config.h"

/* Serve the queue manager on sock until it closes it; the exit status. */
int relay_main(const struct config *cfg, int sock);

#endif

/*
 * pop3.h - the pop3 role of "postern serve": a pop3 worker (runs as
 * `user`; one libevent loop serving every POP3 session on the
 * pop3_listen and pop3s_listen sockets) and its mailbox agent (runs as
 * mail_owner; the only process of the role that opens a Maildir), which
 * the worker forks while still root, as the queue manager does with its
 * local delivery agents.
 *
 *   supervisor (root)
 *     └─fork─▶ pop3 worker (user)        POP3 listeners, the auth process's
 *                │                       socket (logins), TLS
 *                └─ mailbox agent (mail_owner)  a socket pair with the worker
 *                                        (pop3_proto.h); the Maildirs
 *
 * The worker never opens a mailbox: it asks the agent to open the
 * maildrop of the account the auth process named, receives the list of
 * messages and, per RETR or TOP, one read-only descriptor of the message;
 * the deletions and Seen flags of QUIT are made by the agent. The worker
 * holds no password hash: every login goes to the auth process
 * (auth/auth_client.h).
 *
 * Untrusted input: the network (worker), the Maildirs' names and
 * contents (agent; contents are only counted there).
 */
#ifndef POSTERN_POP3_H
#define POSTERN_POP3_H

#include <openssl/ssl.h>
#include <stdbool.h>
#include <stddef.h>

#include "../lib/config.h"

/* What a pop3 worker inherits from the supervisor. */
struct pop3_links {
	const int *listen_fds;
	const bool *implicit_tls; /* per listener: pop3s (true) or pop3 (false) */
	size_t listen_count;
	int agent_fd;             /* the worker's end of the agent's socket pair */
};

/* The worker: serve until SIGTERM (sessions are closed without their
 * update: nothing is deleted without QUIT) or SIGUSR2 (retire: stop
 * accepting, serve the open sessions to their end). Exit status. */
int pop3_worker_main(const struct config *cfg, SSL_CTX *tls_ctx, const struct pop3_links *links);

/* The mailbox agent: serve the worker's requests on sock until it closes
 * the socket, opening a maildrop only with a login ticket made under
 * ticket_key (AUTH_TICKET_KEY_LEN bytes, src/auth/auth_ticket.h: copied,
 * and the caller's copy wiped). Exit status. */
int pop3_agent_main(const struct config *cfg, int sock, unsigned char *ticket_key);

#endif

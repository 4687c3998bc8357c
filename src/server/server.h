/*
 * server.h - the processes of "postern serve".
 *
 * The supervisor (master.c) starts as root or as the current user: it
 * reads the configuration, the user and alias tables and the TLS key,
 * binds the listeners, creates the spool, and forks the roles, which drop
 * to the unprivileged `user` at once:
 *
 *   supervisor ──fork──▶ smtp worker × N   (listeners, notify pipe: write end)
 *              └─fork──▶ queue manager     (notify pipe: read end)
 *
 * That is the whole map of who talks to whom: the smtp workers hand
 * accepted messages over through files in the spool plus a 32-byte record
 * on the notify pipe; nothing else crosses between processes. The
 * supervisor restarts a role that dies, forwards SIGTERM for a graceful
 * drain, and on SIGHUP re-reads everything and replaces the roles with a
 * new generation while the old one finishes its sessions.
 */
#ifndef POSTERN_SERVER_H
#define POSTERN_SERVER_H

#include <openssl/ssl.h>

#include "../lib/config.h"
#include "../mail/recipients.h"

/* Run the supervisor in the foreground; returns the exit status. */
int master_main(const char *config_path);

/* The smtp worker role: serve sessions on the listener fds until SIGTERM
 * (graceful drain up to shutdown_timeout). Returns the exit status. */
int smtp_worker_main(const struct config *cfg, const struct recipient_tables *rcpt,
		     SSL_CTX *tls_ctx, const int *listen_fds, size_t listen_count,
		     int notify_fd);

#endif

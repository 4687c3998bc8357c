/*
 * auth_role.h - the auth role (auth.c) as the supervisor and the tests
 * start it, and the control message the supervisor sends it over a
 * socket pair: at the start and at each reload, the throttling settings
 * and the users file, opened by the supervisor (root) and passed as a
 * descriptor (SCM_RIGHTS; none when users_file is ""), so that the auth
 * process, running as `user`, reads a file only root may open and the
 * supervisor never reads a hash.
 */
#ifndef POSTERN_AUTH_ROLE_H
#define POSTERN_AUTH_ROLE_H

#include <stddef.h>

#include "../auth/auth_throttle.h"
#include "../lib/config.h"

struct auth_ctl_msg {
	struct auth_throttle_settings settings;
	char users_path[4096]; /* for messages; "" = no users_file */
};

/* The settings of cfg (users_path from users_file). */
void auth_ctl_from_config(const struct config *cfg, struct auth_ctl_msg *m);
/* Send m with users_fd (or -1) on sock, without waiting; 0, or -1 with
 * errno (EAGAIN: the auth process has not read the messages before). */
int auth_ctl_send(int sock, const struct auth_ctl_msg *m, int users_fd);

/* Serve on socket_path until SIGTERM/SIGINT, with the given number of
 * hashing threads, reading struct auth_ctl_msg from ctl_fd (the first
 * one is waited for before serving). ticket_key (AUTH_TICKET_KEY_LEN
 * bytes, auth_ticket.h) is copied and the caller's copy wiped; with it,
 * a POP3 login's answer carries a login ticket (NULL: none, and the
 * mailbox agent then refuses every POP3 login). Returns the exit
 * status. */
int auth_server_run(const char *socket_path, int ctl_fd, size_t threads,
		    unsigned char *ticket_key);
/* The same at spool_dir/private/auth.sock with auth_threads. */
int auth_main(const struct config *cfg, int ctl_fd, unsigned char *ticket_key);

#endif

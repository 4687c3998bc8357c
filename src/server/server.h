/*
 * server.h - the processes of "postern serve".
 *
 * The supervisor (master.c) starts as root or as the current user: it
 * reads the configuration and the user and alias tables, checks the TLS
 * certificate and key in a child that exits,
 * binds the listeners, creates spool_dir and mail_root, checks as each
 * role's account that the role can work (preflight.c), and forks the
 * roles, which switch accounts at once and become non-dumpable
 * (privsep.c):
 *
 *   supervisor (root)
 *     ├─fork─▶ scan master (user)           spool/private/scan.sock (listens),
 *     │          │                          readiness pipe to the supervisor
 *     │          └─fork─▶ scanner × scan_workers (user)
 *     │                     one socket pair each with the scan master
 *     ├─fork─▶ key holder (root, then user) spool/private/keyholder-ID.sock
 *     │                                     (listens); one per generation with
 *     │                                     TLS, the only holder of tls_key
 *     ├─fork─▶ anvil (user)                 spool/private/anvil.sock (listens);
 *     │                                     one per supervisor, kept over reloads
 *     ├─fork─▶ auth (user)                  spool/private/auth.sock (listens);
 *     │                                     a socket pair with the supervisor
 *     │                                     (users_file as a descriptor);
 *     │                                     one per supervisor, kept over reloads
 *     ├─fork─▶ metrics (user)               metrics_listen (bound by the supervisor);
 *     │                                     only with metrics_listen, kept over
 *     │                                     reloads (metrics_role.h)
 *     ├─fork─▶ log writer (user)            the read end of the pipe that is
 *     │                                     everybody's stderr, a socket pair with
 *     │                                     the supervisor (log_file as a
 *     │                                     descriptor); only with log_to = file
 *     ├─fork─▶ pop3 worker (user)           the POP3 listeners, a connection to
 *     │          │                          the auth process's auth.sock
 *     │          └─fork─▶ mailbox agent (mail_owner)
 *     │                     a socket pair with the pop3 worker (pop3/pop3.h)
 *     ├─fork─▶ smtp worker × N (user)       listeners, notify pipe: write end,
 *     │                                     flow pipe: read end, a connection
 *     │                                     to scan.sock when scanning, one to
 *     │                                     anvil.sock, one to keyholder-ID.sock,
 *     │                                     one to auth.sock when AUTH is offered
 *     │     └─fork─▶ quota reader (mail_owner) one socket pair with its worker,
 *     │                                     when a quota applies
 *     └─fork─▶ queue manager (user)         notify pipe: read end,
 *                │                          flow pipe: write end
 *                └─fork─▶ local delivery agent × delivery_lanes (mail_owner)
 *                           one socket pair each with the queue manager
 *
 * (The local agents and the quota readers are forked while their parent
 * is still root, then each side switches to its own account.) That is the whole map of who
 * talks to whom: the smtp workers hand accepted messages over through
 * files in the spool plus a 32-byte record on the notify pipe, and take
 * one byte (a flow token, queue/flow.h) from the flow pipe per message,
 * which the queue manager refills as messages leave its ready list; the
 * queue manager asks each agent, over its own AF_UNIX SOCK_SEQPACKET
 * pair, to write each copy into a Maildir and to sync the new/ folders
 * (typed messages, queue file passed as a read-only descriptor,
 * src/queue/local_proto.h); with content scanning on, the smtp workers
 * pass each finished message the same way to the scan master, which
 * passes it on to a scanner and relays the verdict (src/scan/scan_proto.h,
 * docs/scanning.md); the smtp workers ask the anvil to count sessions,
 * rates and greylisting for all of them (src/policy/anvil_proto.h), and
 * the key holder to sign their TLS handshakes (src/smtp/keyholder_proto.h);
 * each smtp worker asks its quota reader how full a mailbox is
 * (src/queue/quota_proto.h);
 * the auth process to check logins (src/auth/auth_proto.h);
 * the pop3 worker asks the auth process to check logins and its mailbox
 * agent to open, read and update the maildrop of the account the auth
 * process named (src/pop3/pop3_proto.h: a message travels as a read-only
 * descriptor); every process adds to the metrics counters in the
 * anonymous shared segment the supervisor mapped before its first fork
 * (src/lib/metrics.h: counters only, read by the metrics role);
 * nothing else crosses between processes. Only the agents
 * (local delivery, the pop3 role's mailbox agent, the quota readers) can
 * open a mailbox; the
 * processes that parse network input hold no password hash (the users
 * table keeps addresses only) and cannot read the users file: only the
 * auth process holds the hashes, read from a descriptor the supervisor
 * opened.
 *
 * The supervisor restarts a role that dies (the queue manager exits when
 * one of its agents dies, so they all restart together), forwards SIGTERM for a
 * graceful drain, and on SIGHUP re-reads and re-checks everything and
 * replaces the roles with a new generation while the old one finishes its
 * sessions.
 */
#ifndef POSTERN_SERVER_H
#define POSTERN_SERVER_H

#include <openssl/ssl.h>
#include <stdbool.h>

#include "../lib/config.h"
#include "../mail/recipients.h"
#include "../policy/restrictions.h"
#include "../queue/notice.h"
#include "../smtp/session.h"

/* Run the supervisor in the foreground; returns the exit status. */
int master_main(const char *config_path);
/* The same for "postern milter" (src/milter/milter_server.h): the scan
 * master and one milter process per generation, nothing else (no
 * listener, queue manager, anvil, auth or key holder); reloads and
 * stops as for serve, the milter process taking SIGTERM both to retire
 * and to stop (it drains either way). */
int master_milter_main(const char *config_path);

/* What an smtp worker inherits from the supervisor. */
struct smtp_worker_links {
	const int *listen_fds;
	const enum smtp_listener *listen_kinds; /* what each is for (parallel) */
	size_t listen_count;
	int notify_fd; /* write end of the notify pipe */
	int flow_fd;   /* read end of the in-flow token pipe (queue/flow.h) */
	const struct notice_template *notice_template; /* read by the supervisor */
	/* The restriction lists, their maps read by the supervisor; each
	 * worker reloads a map whose file changes (map.h). */
	struct restrictions *restrictions;
	bool scan;     /* ask the scan master at the end of data */
	int quota_fd;  /* socket pair to this worker's quota reader; -1: none */
	pid_t quota_pid; /* the reader, reaped when the worker exits */
};

/* The smtp worker role: serve sessions on the listener fds until SIGTERM
 * (graceful drain up to shutdown_timeout). Returns the exit status. */
int smtp_worker_main(const struct config *cfg, const struct recipient_tables *rcpt,
		     SSL_CTX *tls_ctx, const struct smtp_worker_links *links);

/*
 * The scan master role (scan_role.c): build the content pipeline, then
 * either tell the supervisor there is nothing to scan (SCAN_READY_OFF on
 * ready_fd, exit 0: scan = auto and no stage configured) or listen on
 * spool/private/scan.sock, fork the scanners, write SCAN_READY_ON and serve
 * until SIGTERM (stop) or SIGUSR2 (retire: a newer scan master took over).
 * A pipeline that cannot be built is logged (FILE:LINE: message) and the
 * exit status is SCAN_EXIT_CONFIG, with nothing written on ready_fd.
 */
#define SCAN_READY_ON '1'
#define SCAN_READY_OFF '0'
#define SCAN_EXIT_CONFIG 78
int scan_master_main(const struct config *cfg, int ready_fd);

/* The same with the pipeline built by build (scan_pipeline_build in the
 * server; tests give their own) at the given pace: how often the pipeline
 * is asked whether its files changed, and the first pause after a rebuild
 * that failed (doubling up to 15 minutes). */
struct scan_pipeline;
typedef struct scan_pipeline *scan_build_fn(const struct config *cfg, char **err_r);
struct scan_master_pace {
	unsigned stale_poll_ms;
	unsigned rebuild_backoff_ms;
};
int scan_master_run(const struct config *cfg, int ready_fd, scan_build_fn *build,
		    const struct scan_master_pace *pace);

/* The anvil (anvil.c): count open sessions, rates, blocks and greylisting
 * for every smtp worker on spool_dir/private/anvil.sock until SIGTERM.
 * Returns the exit status. */
int anvil_main(const struct config *cfg);

/* The key holder (keyholder.c): answer the TLS workers' signature
 * requests with key (loaded by the caller as root, keyholder_key.h) on
 * spool_dir/private/keyholder-ID.sock until SIGTERM. Returns the exit
 * status. */
struct keyholder_key;
int keyholder_main(const struct config *cfg, struct keyholder_key *key);

/* A scanner (scanner.c): scan what the master sends on sock with p until
 * the master closes it. Returns the exit status. */
int scan_scanner_main(struct scan_pipeline *p, int sock);

#endif

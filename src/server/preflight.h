/*
 * preflight.h - what "postern serve" checks before it starts a generation
 * of roles (at start and on reload) and "postern check-config" reports:
 * the folders each role needs exist and are reachable and writable by the
 * account the role runs as, and the open-file limit covers
 * worker_connections. A server that cannot work refuses to start with a
 * message naming the path or key and the account, instead of listening
 * and answering 451 to every message.
 *
 * Untrusted input: the spool and mail_root belong to the roles, which may
 * have been compromised: the supervisor never follows a symbolic link in
 * them and never changes what it did not just create (safeio_mkdir_owned); the
 * folder checks run in a child that has become the role's account.
 * Privilege: root supervisor (or the invoking user) and check-config.
 */
#ifndef POSTERN_PREFLIGHT_H
#define POSTERN_PREFLIGHT_H

#include <stdbool.h>
#include <stdio.h>

#include "../lib/config.h"
#include "privsep.h"

/* Descriptors per smtp worker beyond two per session: listeners, notify
 * pipe, log, libevent's own. */
#define PREFLIGHT_FD_MARGIN 64

/* Whose folders a mode needs: "postern serve" runs every role, "postern
 * milter" no delivery agent (nothing of it opens mail_root). */
enum preflight_mode {
	PREFLIGHT_SERVE,
	PREFLIGHT_MILTER,
};

/*
 * Create spool_dir (for user) and, for PREFLIGHT_SERVE, mail_root (for
 * mail_owner) with mode 0700 when missing; root gives a folder it has just
 * created to its role by descriptor. An existing folder is never changed:
 * a wrong owner or mode is what preflight_check_folders reports. Returns
 * the number of problems, each printed to errors.
 */
int preflight_make_roots(const struct config *cfg, const struct privsep *ps,
			 enum preflight_mode mode, FILE *errors);

/*
 * Check, in a child that has become each role's account, that user can
 * reach and write spool_dir and each spool subfolder (created there when
 * `create`; each must be a real folder, not a symbolic link) and, for
 * PREFLIGHT_SERVE, that mail_owner can reach and write mail_root (a
 * PREFLIGHT_MILTER check leaves mail_root alone). Without `create` (check-config)
 * a missing folder is not a problem, but one that exists and is not a
 * folder is. When capture can be on, user must reach and write
 * capture_dir too (never created here: capture_dir.h), and, with a unix
 * milter_listen, create the socket in its folder (which must exist). Also warns when
 * user can read users_file (it holds password hashes). Problems name the key, the path and the account; returns their
 * number (warnings, printed with "warning: ", not counted).
 */
int preflight_check_folders(const struct config *cfg, const struct privsep *ps,
			    enum preflight_mode mode, bool create, FILE *errors);

/*
 * check-config: build the content pipeline in a child that has become
 * user (as the scan master would: rules compiled, signatures loaded) and
 * report a file that does not load as "FILE:LINE: message". Warns when
 * scan = no leaves configured stages unused, or when policy_timeout is not
 * longer than a scan may take. Returns the number of problems.
 */
int preflight_check_scan(const struct config *cfg, const struct privsep *ps, FILE *errors);

/*
 * check-config: with log_to = file, log_file must be a regular file or
 * missing from a folder that exists (serve creates the file, never its
 * folder, and never follows a link there). Problems are printed as
 * "FILE:LINE: log_file ..." (the configuration's line); returns their
 * number. Whether the supervisor may write there is not judged: it may
 * run as another account than check-config.
 */
int preflight_check_log_file(const struct config *cfg, FILE *errors);

/*
 * Each smtp worker needs two descriptors per session (the client socket
 * and, in DATA, the queue file) plus PREFLIGHT_FD_MARGIN. When `apply`,
 * raise the soft limit to the hard one and, as root, the hard limit too
 * if needed (at most /proc/sys/fs/nr_open); without it only say whether
 * that would work. Returns 0, or -1 after a message naming
 * worker_connections and the limit.
 */
int preflight_fd_limit(const struct config *cfg, bool apply, FILE *errors);

#endif

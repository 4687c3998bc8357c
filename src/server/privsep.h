/*
 * privsep.h - which account each process of "postern serve" runs as, and
 * how a forked child becomes it.
 *
 *   supervisor                    root (or the invoking user)
 *   smtp workers, queue manager   `user`
 *   local delivery agent          `mail_owner` (owns mail_root, every Maildir)
 *
 * Started as root, `user` and `mail_owner` must be set, exist, not be
 * root (uid 0) nor have root's group (gid 0) as primary group, and differ: no role runs as root, and the processes that
 * parse network input can neither read nor write a mailbox. Not started
 * as root, every process runs as the invoking user; the two keys are then
 * only checked to name existing accounts (a warning, since they change
 * nothing).
 *
 * Untrusted input: none (administrator's configuration, the system's
 * account database). Privilege: resolved by the root supervisor and by
 * check-config; privsep_become runs in each child right after fork().
 */
#ifndef POSTERN_PRIVSEP_H
#define POSTERN_PRIVSEP_H

#include <stdbool.h>
#include <stdio.h>
#include <sys/types.h>

#include "../lib/config.h"
#include "../mail/recipients.h"

struct privsep_account {
	char *name; /* account name, for messages */
	uid_t uid;
	gid_t gid;
	bool known; /* resolved without error */
};

struct privsep {
	bool as_root;                      /* roles switch accounts */
	struct privsep_account user;       /* smtp workers, queue manager */
	struct privsep_account mail_owner; /* local delivery agent */
	char *owner_label;                 /* "mail_owner vmail", for messages */
};

/*
 * Resolve cfg's accounts for a supervisor running as the current user.
 * Every problem is printed to errors as "CONFIG: key: message" (warnings
 * start "warning: "); returns the number of problems, warnings not
 * counted. *ps is filled either way and freed with privsep_free.
 */
int privsep_resolve(const struct config *cfg, struct privsep *ps, FILE *errors);
void privsep_free(struct privsep *ps);

/* The account the users file's uid/gid fields must name, filled into
 * *buf; NULL if mail_owner could not be resolved (already reported). */
const struct recipients_owner *privsep_mailbox_owner(const struct privsep *ps,
						     struct recipients_owner *buf);

/*
 * In a child just forked by the supervisor: become acct (when as_root: no
 * supplementary groups, its gid, its uid, and root cannot be regained),
 * forbid gaining privileges through exec (PR_SET_NO_NEW_PRIVS: set-user-id
 * bits and file capabilities are ignored from then on, here and in every
 * child), then make the process non-dumpable (another process of the same
 * account cannot ptrace it or read its memory) and, if deathsig is not
 * 0, ask for deathsig when the parent dies (set after the switch, which
 * would clear it; -1 if parent is already gone). Returns -1 after a
 * message in the log.
 */
int privsep_become(const struct privsep *ps, const struct privsep_account *acct,
		   int deathsig, pid_t parent);

#endif

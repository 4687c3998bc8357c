/*
 * queue_cli_change.h - the "postern queue" commands that change the
 * spool while the server runs: flush, requeue, hold, release, delete.
 *
 *   flush [ID...]       deferred messages (all, or those named) are due
 *                       now: next attempt and file time set to now, the
 *                       queue manager told through its wake-up FIFO
 *   requeue [ID...]     deferred messages back into queue/ with their
 *                       retry schedule started again (attempt count 0);
 *                       their lifetime still counts from arrival
 *   hold ID...          out of delivery: queue/ or deferred/ into hold/
 *   release ID...       hold/ back into queue/ (as "postern hold release")
 *   delete ID...|--all  removed from queue/, deferred/ or hold/ (--all:
 *                       every message of queue/ and deferred/)
 *
 * Each change takes the message file's lock first (flock LOCK_EX,
 * non-blocking), the lock the queue manager holds for a whole delivery
 * attempt and the smtp worker for a whole commit: a message being
 * delivered or committed is "busy, try again", never changed under them
 * (docs/queue.md, "Commands and the running queue manager").
 *
 * RFCs: none. Untrusted input: the spool's entries (opened without
 * following links or blocking, regular files only) and queue files
 * (validated by qf_read before any change). Privilege: root or the spool
 * owner; files keep their owner (renamed, rewritten in place or removed,
 * never copied).
 */
#ifndef POSTERN_QUEUE_CLI_CHANGE_H
#define POSTERN_QUEUE_CLI_CHANGE_H

#include <stdbool.h>

#include "../lib/config.h"

/* Is word one of the commands above? */
bool queue_cli_change_known(const char *word);
/*
 * Run command word with its arguments (ids, or --all for delete; --json
 * already taken out). Output on stdout ("ID: held", or one JSON document
 * with --json), problems on stderr. Returns the exit status: 0, 1 if
 * anything failed (the others are still done), 2 usage.
 */
int queue_cli_change(const struct config *cfg, const char *word, int argc, char **argv,
		     bool json);

#endif

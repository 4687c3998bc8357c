/*
 * queue_cli.h - "postern queue": look at the queue from the command line.
 *
 *   postern queue list       one line per message in queue/ and deferred/
 *   postern queue show ID    every record of one queue file as "key: value",
 *                            then the first header lines of the message
 *
 * RFCs: none. Untrusted input: queue files and message headers (printed
 * with control characters escaped), and whatever the unprivileged user
 * put in the spool's folders: links, FIFOs and devices are refused, never
 * followed or waited on. Privilege: an administrator running the command
 * as the spool owner or root; read-only.
 */
#ifndef POSTERN_QUEUE_CLI_H
#define POSTERN_QUEUE_CLI_H

#include "../lib/config.h"

/*
 * argv holds the words after "postern queue": argv[0] is the subcommand
 * ("list" or "show"); a leading "queue" word is skipped if present. Output
 * goes to stdout, problems to stderr. Returns the process exit status:
 * 0 on success, 1 on an error (unknown message, unreadable spool, or an
 * entry that is not a readable queue file: listed as "(unreadable)" after
 * a message naming it, the other messages still listed), 2 on a usage
 * error. Reads the spool only; never changes it and never blocks on it.
 */
int queue_cli_main(int argc, char **argv, const struct config *cfg);

#endif

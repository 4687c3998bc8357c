/*
 * quarantine_cli.h - "postern quarantine" and "postern hold": look at,
 * release and delete the messages a QUARANTINE or HOLD verdict kept out
 * of delivery.
 *
 *   postern quarantine list [--json]          one line per message
 *   postern quarantine show ID [--json]       envelope, why, header section
 *   postern quarantine release ID... [--json] into queue/: delivered
 *   postern quarantine delete ID... [--json]  removed
 *
 * "postern hold ..." is the same for hold/. Both folders hold queue files
 * with a q note (queue_file.h); they differ in who puts messages there
 * (a check's QUARANTINE or HOLD verdict) and in retention (quarantine/
 * expires after quarantine_retention, hold/ never).
 *
 * RFCs: none. Untrusted input: the spool's entries (anything the
 * unprivileged user put there: opened without following links or
 * blocking, regular files only) and the queue files and message headers
 * (printed escaped; --json strings escaped by lib/json). Privilege: root
 * or the spool owner; files keep their owner (they are renamed or
 * removed, never copied).
 */
#ifndef POSTERN_QUARANTINE_CLI_H
#define POSTERN_QUARANTINE_CLI_H

#include "../lib/config.h"

/*
 * folder: "quarantine" or "hold" (also the command's name in messages).
 * argv: the words after "postern quarantine" (argv[0] the subcommand;
 * "-c FILE" already taken out). Output on stdout (one JSON document with
 * --json), problems on stderr. Returns the exit status: 0 success, 1 if
 * anything failed (an unknown or busy message, an unreadable entry; the
 * others are still done), 2 usage.
 */
int quarantine_cli_main(const char *folder, int argc, char **argv,
			const struct config *cfg);

#endif

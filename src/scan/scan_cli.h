/*
 * scan_cli.h - `postern scan [-c FILE] [--json] FILE...|-`: the content
 * pipeline of the server, built in process, run on raw message files
 * (RFC 5322, LF or CRLF line ends); one verdict line per message.
 *
 * Untrusted input: the messages. Privilege: the invoking user; started as
 * root, postern.c opens the files first and then becomes `user` (as the
 * scanners are; nobody if that account does not exist) before the
 * pipeline is built and anything is parsed.
 */
#ifndef POSTERN_SCAN_CLI_H
#define POSTERN_SCAN_CLI_H

#include <stdbool.h>
#include <stddef.h>

#include "../lib/config.h"

/* Exit statuses: every message clean (accepted or tagged), at least one
 * blocked (refused, tempfailed, discarded or quarantined), an error (a
 * file that cannot be read, a pipeline that does not load, a scan that
 * failed) whatever else happened. */
#define SCAN_CLI_CLEAN 0
#define SCAN_CLI_BLOCKED 1
#define SCAN_CLI_ERROR 2

struct scan_cli_input {
	const char *name; /* as given; "-" for standard input */
	int fd;           /* open for reading, or -1 with errno_open set */
	int errno_open;
};

/* Build the pipeline from cfg and scan each input (read up to
 * message_size_limit bytes); closes the descriptors. Prints to stdout
 * (problems with a file to stderr, or as JSON objects with --json).
 * Returns one of the statuses above. */
int scan_cli_run(const struct config *cfg, struct scan_cli_input *inputs, size_t count,
		 bool json);

#endif

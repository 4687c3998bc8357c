/*
 * learn_cli.h - `postern learn`: teach Bayes (spam.h) what spam and ham
 * look like, take a message back, show the store, classify messages.
 *
 *   postern learn --spam|--ham [--progress] FILE|DIR|-...
 *   postern learn --forget [--progress] FILE|DIR|-...
 *   postern learn --classify FILE|DIR|-...
 *   postern learn --stats
 *   postern learn --expire
 *
 * A FILE is one message or an mbox; a DIR is a Maildir (cur/ and new/)
 * or a folder of such files; - is standard input.
 *
 * Untrusted input: the messages. Privilege: the invoking user; started
 * as root, a reader process stays root to read the inputs (and nothing
 * else) while the learner, forked from it, becomes `user` before it
 * parses anything or opens the store.
 */
#ifndef POSTERN_SCAN_LEARN_CLI_H
#define POSTERN_SCAN_LEARN_CLI_H

#include "../lib/config.h"

/* Exit statuses: done (every message learned, or already learned;
 * --classify: every message below 0.5); partly (a message was left out:
 * too large, empty, or --forget of one never learned; --classify: a
 * message at 0.5 or more); an error (an input that cannot be read, a
 * store that cannot be opened or written, a usage error; --classify:
 * too little learned). */
#define LEARN_CLI_DONE 0
#define LEARN_CLI_PARTLY 1
#define LEARN_CLI_ERROR 2

/* Become `user` when started as root (as `postern scan` does); own_dir,
 * when not NULL, is a folder to create for that account first if it is
 * missing. 0, or -1 after saying why on stderr. */
typedef int (*learn_become_fn)(const struct config *cfg, const char *own_dir);

/* argv: the arguments after "learn" (-c FILE already taken out). */
int learn_cli_main(const struct config *cfg, int argc, char **argv, learn_become_fn become);

#endif

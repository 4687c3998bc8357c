/*
 * table_watch.h - the supervisor notices when users_file, aliases_file or
 * domains_file change (`postern user|domain` replaces them by rename, an
 * administrator edits them) and reloads, as on SIGHUP.
 *
 * A file's signature is its device, inode, size, modification and
 * change times (nanoseconds), or "missing". The signatures of a
 * generation are taken before its tables are read, so a change made
 * while they are being read is seen at the next look.
 *
 * Untrusted input: none (stat of the administrator's paths). Privilege:
 * the supervisor (root).
 */
#ifndef POSTERN_TABLE_WATCH_H
#define POSTERN_TABLE_WATCH_H

#include <stdbool.h>
#include <stdint.h>

#include "../lib/config.h"

#define TABLE_WATCH_FILES 3

struct table_sig {
	bool exists;
	uint64_t dev, ino, size;
	int64_t mtime_sec, mtime_nsec, ctime_sec, ctime_nsec;
};

struct table_watch {
	char *paths[TABLE_WATCH_FILES]; /* users, aliases, domains; NULL = not set */
	struct table_sig sigs[TABLE_WATCH_FILES];
};

/* Take the current signatures of cfg's table files into w (replacing
 * what w held). */
void table_watch_take(struct table_watch *w, const struct config *cfg);
/* Move src into dst (dst's old contents freed; src left empty). */
void table_watch_move(struct table_watch *dst, struct table_watch *src);
/* Has any file changed since the last look? The new signatures are kept,
 * so one change is reported once; *which_r names the first changed file. */
bool table_watch_changed(struct table_watch *w, const char **which_r);
void table_watch_free(struct table_watch *w);

#endif

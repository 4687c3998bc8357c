/*
 * account_file.h - editing an administrator's line-based table
 * (users_file, domains_file) the way `postern user` and `postern domain`
 * do: read it whole under a lock, change some lines, replace it
 * atomically.
 *
 * Every line not changed is written back byte for byte (comments, blank
 * lines, CR LF endings, fields postern does not know). The replacement is
 * a temporary file in the same folder, written, fsync'ed, given the old
 * file's mode and owner, renamed over the old one, and the folder
 * fsync'ed: a reader (the supervisor, Dovecot) sees the old file or the
 * new one, never half of one. A symbolic link at the configured path is
 * followed: its target is replaced. Two commands never edit one folder's
 * tables at once (flock on the folder).
 *
 * Untrusted input: the file (administrator-written), bounded in size.
 * Privilege: whoever runs the command (root usually); nothing here drops
 * or gains privilege.
 */
#ifndef POSTERN_ACCOUNT_FILE_H
#define POSTERN_ACCOUNT_FILE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <sys/types.h>

#include "../lib/buf.h"

struct account_file {
	const char *key;   /* the configuration key naming it, for messages */
	char *path;        /* as configured */
	char *real_path;   /* the file replaced (symbolic links resolved) */
	int dir_fd;        /* its folder (locked when editing); -1 when closed */
	bool exists;       /* false: no file yet (created by the commit) */
	bool secret;       /* holds password hashes: every copy is wiped */
	mode_t new_mode;   /* the mode of a file created by the commit */
	buf_t text;        /* the file as read */
	char **lines;      /* count entries; NULL = deleted; without "\n" */
	bool *owned;       /* lines[i] was allocated (a new or changed line) */
	size_t count, cap;
	bool final_newline; /* the file ended with "\n" (or was empty) */
};

/* Lock path's folder (when lock: to edit; a reader does not lock) and
 * read path (a missing file is an empty one, made with new_mode by the
 * commit). max_len bounds the file. -1 with the reason printed to errors
 * as "KEY FILE: ...". */
int account_file_open(struct account_file *f, const char *key, const char *path,
		      bool secret, bool lock, mode_t new_mode, size_t max_len, FILE *errors);
/* Replace line i (0-based) with a copy of text / delete it / append a line. */
void account_file_set(struct account_file *f, size_t i, const char *text);
void account_file_delete(struct account_file *f, size_t i);
void account_file_append(struct account_file *f, const char *text);
/* The contents the commit would write, appended to out in one
 * allocation (with room for a final NUL), so that a secret file's text
 * can be checked and then wiped with safeio_free_secret. blank_deleted:
 * a deleted line is an empty line instead, so that every other line
 * keeps the number it has in the file as read (for FILE:LINE messages
 * about the file the administrator sees). */
void account_file_render(const struct account_file *f, bool blank_deleted, buf_t *out);
/* Write the lines as the new file, atomically (see above); -1 with the
 * reason printed to errors, the old file then untouched. */
int account_file_commit(struct account_file *f, FILE *errors);
/* Unlock, wipe (secret files) and free. */
void account_file_close(struct account_file *f);

/* A copy of s that account_wipe_free will wipe: for parsing a line of a
 * secret file without leaving a hash behind in freed memory. */
char *account_secret_dup(const char *s);
void account_wipe_free(char *s);

#endif

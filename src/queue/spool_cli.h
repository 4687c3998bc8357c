/*
 * spool_cli.h - what the administrator's commands ("postern queue",
 * "postern quarantine", "postern hold") share to look into the spool
 * safely: folders and files opened without following links and without
 * blocking, only regular files read, times and text printed so that a
 * message cannot drive a terminal.
 *
 * Untrusted input: the spool's folders belong to the unprivileged user,
 * so an entry may be a symbolic link, a FIFO or a device planted there;
 * queue files are validated by qf_read. Privilege: an administrator,
 * often root.
 */
#ifndef POSTERN_SPOOL_CLI_H
#define POSTERN_SPOOL_CLI_H

#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

#include "../lib/config.h"
#include "../lib/strutil.h"
#include "queue_file.h"

/* "2026-11-30T14:01:32Z" for seconds since the epoch. */
void spool_cli_format_time(char *out, size_t len, uint64_t seconds);
/* Print text with control characters (C0 but tab and LF, DEL, C1 as
 * UTF-8) and bytes that are not UTF-8 as \xNN. */
void spool_cli_put_escaped(FILE *out, const char *s, size_t len);
/* "a FIFO", "a socket", "a device", "a folder" for an entry that is not
 * a regular file. */
const char *spool_cli_file_kind(mode_t mode);

/*
 * Open spool folder `folder` without following a link. Returns the
 * descriptor, or -1 with errno and (unless errno is ENOENT) a malloc'ed
 * *err_r naming the path.
 */
int spool_cli_open_folder(const struct config *cfg, const char *folder, char **err_r);
/*
 * Open entry name of folder dirfd (path is for messages) for reading,
 * never following a link, never blocking, and only if it is a regular
 * file. Returns the descriptor, or -1 with errno and a malloc'ed *err_r;
 * an entry that is gone is -1 with errno ENOENT and *err_r NULL.
 */
int spool_cli_open_entry(int dirfd, const char *path, const char *name, char **err_r);
/* spool_cli_open_entry, then qf_read into *m (errno EINVAL if the file
 * is not a valid queue file). */
int spool_cli_load(int dirfd, const char *path, const char *name, int *fd_r,
		   struct qf_msg *m, char **err_r);
/* The queue ids in folder dirfd, sorted (oldest first); -1 with a
 * malloc'ed *err_r if it cannot be read. */
int spool_cli_folder_ids(int dirfd, const char *dir_path, strlist_t *ids, char **err_r);

/*
 * Open, lock (flock LOCK_EX, non-blocking) and check entry id of folder
 * dirfd (path dir, for messages) before changing it: a regular file, not
 * held by a commit, a delivery or another command, still the file its
 * name points to. Opened read-write (the A record may be rewritten).
 * Returns the locked descriptor (closing it drops the
 * lock), or -1 with a malloc'ed *err_r ("busy ... try again", "no
 * message ...").
 */
int spool_cli_take_entry(const char *dir, int dirfd, const char *id, char **err_r);
/* renameat(2) of id from one folder to another that never replaces an
 * existing file (EEXIST). */
int spool_cli_rename_noreplace(int from_dirfd, int to_dirfd, const char *id);

#endif

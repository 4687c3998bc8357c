/*
 * safeio.h - file I/O helpers that handle short writes, EINTR and the
 * durability rules of the queue (fsync of file and directory), reading
 * files that hold secrets without leaving copies behind, and creating a
 * folder for another user without following symbolic links.
 */
#ifndef POSTERN_SAFEIO_H
#define POSTERN_SAFEIO_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "buf.h"

/* write(2) all of data; -1 with errno set on failure. */
int safeio_write_all(int fd, const void *data, size_t len);
/* pwrite(2) all of data at offset; -1 with errno set on failure. */
int safeio_pwrite_all(int fd, const void *data, size_t len, off_t offset);
/* Read up to max_len bytes of a whole file into b (appending);
 * -1 with errno set (EFBIG if larger than max_len). */
int safeio_read_file(const char *path, size_t max_len, buf_t *b);
/* safeio_read_file for a file holding secrets (password hashes): the buffer is
 * never moved by a realloc that would leave a copy in freed memory, and
 * is wiped on failure. Release it with safeio_free_secret. */
int safeio_read_file_secret(const char *path, size_t max_len, buf_t *b);
/* The same from an open descriptor (read to its end, not closed): the
 * auth process reads the users file the supervisor opened for it. */
int safeio_read_fd_secret(int fd, size_t max_len, buf_t *b);
/* Overwrite the whole allocation of b with zeros (explicit_bzero, which
 * the compiler may not drop), then free it. */
void safeio_free_secret(buf_t *b);
/* fsync the directory at path; -1 with errno set. */
int safeio_fsync_dir(const char *path);
/* mkdir -p: the last component gets mode, created parents 0755;
 * -1 with errno set. */
int safeio_mkdir_p(const char *path, mode_t mode);
/*
 * Create folder path with mode if it is missing (its parents as safeio_mkdir_p
 * does). Only a folder this call created is handed to uid:gid (when
 * give_away), and by descriptor: the new entry is opened with
 * O_NOFOLLOW | O_DIRECTORY and changed with fchown only if it is still
 * the folder we made (owned by us), so a symbolic link or another folder
 * swapped in meanwhile is never followed or changed. An existing folder
 * (or a link to one: path's own folder is the administrator's) is left
 * as it is; its owner and mode are the caller's to check.
 * *created_r (may be NULL) tells whether it was created. -1 with errno
 * set: ENOTDIR if path exists but is not a folder, ELOOP if it is a
 * symbolic link.
 */
int safeio_mkdir_owned(const char *path, mode_t mode, bool give_away, uid_t uid,
		gid_t gid, bool *created_r);
/* Join dir and name with exactly one '/'; returns malloc'ed string. */
char *safeio_path_join(const char *dir, const char *name);

#endif

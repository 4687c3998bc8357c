/*
 * safeio.h - file I/O helpers that handle short writes, EINTR and the
 * durability rules of the queue (fsync of file and directory).
 */
#ifndef POSTERN_SAFEIO_H
#define POSTERN_SAFEIO_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "buf.h"

/* write(2) all of data; -1 with errno set on failure. */
int write_all(int fd, const void *data, size_t len);
/* pwrite(2) all of data at offset; -1 with errno set on failure. */
int pwrite_all(int fd, const void *data, size_t len, off_t offset);
/* Read up to max_len bytes of a whole file into b (appending);
 * -1 with errno set (EFBIG if larger than max_len). */
int read_file(const char *path, size_t max_len, buf_t *b);
/* fsync the directory at path; -1 with errno set. */
int fsync_dir(const char *path);
/* mkdir -p: the last component gets mode, created parents 0755;
 * -1 with errno set. */
int mkdir_p(const char *path, mode_t mode);
/* Join dir and name with exactly one '/'; returns malloc'ed string. */
char *path_join(const char *dir, const char *name);

#endif

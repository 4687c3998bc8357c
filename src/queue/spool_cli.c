/*
 * spool_cli.c - safe reading of the spool for the administrator's
 * commands (see spool_cli.h): every entry is opened with O_NOFOLLOW and
 * O_NONBLOCK (a FIFO opened for reading would otherwise wait for a writer
 * for ever) and checked with fstat before it is read.
 *
 * RFCs: none. Untrusted input: spool entries (anything the unprivileged
 * user put there) and queue files. Privilege: root or the spool owner.
 */
#include "spool_cli.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <stdio.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "../lib/json.h"
#include "../lib/safeio.h"

void spool_cli_format_time(char *out, size_t len, uint64_t seconds)
{
	time_t t = (time_t)seconds;
	struct tm tm;

	if (gmtime_r(&t, &tm) == NULL ||
	    strftime(out, len, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
		snprintf(out, len, "%llu", (unsigned long long)seconds);
}

void spool_cli_put_escaped(FILE *out, const char *s, size_t len)
{
	const unsigned char *p = (const unsigned char *)s;
	for (size_t i = 0; i < len;) {
		unsigned char c = p[i];
		size_t n = c < 0x80 ? 1 : json_utf8_char_len(p + i, len - i);
		/* C0 controls but tab and LF, DEL, the C1 controls U+0080 to
		 * U+009F (0xc2 0x80..0x9f: a terminal may take U+009B for CSI),
		 * and bytes that are not UTF-8 are shown as \xNN. */
		bool control = (c < 0x20 && c != '\t' && c != '\n') || c == 0x7f ||
			       (n == 2 && c == 0xc2 && p[i + 1] < 0xa0);
		if (n == 0 || control) {
			for (size_t k = 0; k < (n == 0 ? 1 : n); k++)
				fprintf(out, "\\x%02x", p[i + k]);
			i += n == 0 ? 1 : n;
			continue;
		}
		fwrite(p + i, 1, n, out);
		i += n;
	}
}

const char *spool_cli_file_kind(mode_t mode)
{
	if (S_ISFIFO(mode))
		return "a FIFO";
	if (S_ISSOCK(mode))
		return "a socket";
	if (S_ISCHR(mode) || S_ISBLK(mode))
		return "a device";
	if (S_ISDIR(mode))
		return "a folder";
	return "not a regular file";
}

int spool_cli_open_folder(const struct config *cfg, const char *folder, char **err_r)
{
	char *path = safeio_path_join(cfg->spool_dir, folder);
	int fd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	int err = errno;

	*err_r = NULL;
	if (fd < 0 && err != ENOENT)
		*err_r = qf_errf("%s: %s", path,
				 err == ELOOP || err == ENOTDIR ? "not a folder (a symbolic link?)"
								: strerror(err));
	free(path);
	errno = err;
	return fd;
}

/* spool_cli_open_entry with the access mode (O_RDONLY, O_RDWR). */
static int open_entry(int dirfd, const char *path, const char *name, int mode, char **err_r)
{
	struct stat st;
	int fd = openat(dirfd, name, mode | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY);

	*err_r = NULL;
	if (fd < 0) {
		int err = errno;
		if (err == ELOOP)
			*err_r = qf_errf("%s: is a symbolic link, not a queue file: not read", path);
		else if (err != ENOENT)
			*err_r = qf_errf("%s: %s", path, strerror(err));
		errno = err;
		return -1;
	}
	if (fstat(fd, &st) < 0) {
		*err_r = qf_errf("%s: %s", path, strerror(errno));
		close(fd);
		errno = EIO;
		return -1;
	}
	if (!S_ISREG(st.st_mode)) {
		*err_r = qf_errf("%s: is %s, not a queue file: not read", path,
				 spool_cli_file_kind(st.st_mode));
		close(fd);
		errno = EINVAL;
		return -1;
	}
	return fd;
}

int spool_cli_open_entry(int dirfd, const char *path, const char *name, char **err_r)
{
	return open_entry(dirfd, path, name, O_RDONLY, err_r);
}

int spool_cli_load(int dirfd, const char *path, const char *name, int *fd_r,
		   struct qf_msg *m, char **err_r)
{
	char *err = NULL;
	int fd = spool_cli_open_entry(dirfd, path, name, err_r);

	if (fd < 0)
		return -1;
	if (qf_read(fd, m, &err) != 0) {
		*err_r = qf_errf("%s: %s", path, err);
		free(err);
		close(fd);
		errno = EINVAL;
		return -1;
	}
	*fd_r = fd;
	return 0;
}

static int cmp_names(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

int spool_cli_folder_ids(int dirfd, const char *dir_path, strlist_t *ids, char **err_r)
{
	int fd = dup(dirfd);
	DIR *dir = fd >= 0 ? fdopendir(fd) : NULL;
	struct dirent *de;

	if (dir == NULL) {
		*err_r = qf_errf("%s: %s", dir_path, strerror(errno));
		if (fd >= 0)
			close(fd);
		return -1;
	}
	while ((de = readdir(dir)) != NULL) {
		if (queue_id_valid(de->d_name))
			strlist_add(ids, de->d_name);
	}
	closedir(dir);
	if (ids->count > 1)
		qsort(ids->items, ids->count, sizeof(*ids->items), cmp_names);
	return 0;
}

/* Open, lock and check entry id of dirfd for a change: a regular file,
 * not held by a commit in progress or another command, still the file
 * its name points to. Returns the locked descriptor, or -1 with a
 * malloc'ed *err_r. */
int spool_cli_take_entry(const char *dir, int dirfd, const char *id, char **err_r)
{
	char *path = safeio_path_join(dir, id);
	int fd = open_entry(dirfd, path, id, O_RDWR, err_r);
	struct stat st, named;

	free(path);
	if (fd < 0) {
		if (*err_r == NULL)
			*err_r = qf_errf("no message %s in %s", id, dir);
		return -1;
	}
	if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
		*err_r = errno == EWOULDBLOCK
				 ? qf_errf("%s is busy (its commit, or another command, holds it): "
					   "try again", id)
				 : qf_errf("lock %s/%s: %s", dir, id, strerror(errno));
		close(fd);
		return -1;
	}
	if (fstat(fd, &st) < 0 || fstatat(dirfd, id, &named, AT_SYMLINK_NOFOLLOW) < 0 ||
	    st.st_ino != named.st_ino || st.st_dev != named.st_dev || st.st_nlink == 0) {
		*err_r = qf_errf("no message %s in %s (it went away meanwhile)", id, dir);
		close(fd);
		return -1;
	}
	return fd;
}

/* rename(2) that never replaces an existing queue/ID. */
int spool_cli_rename_noreplace(int from_dirfd, int to_dirfd, const char *id)
{
	struct stat st;

	if (renameat2(from_dirfd, id, to_dirfd, id, RENAME_NOREPLACE) == 0)
		return 0;
	if (errno != EINVAL && errno != ENOSYS)
		return -1;
	/* A file system without RENAME_NOREPLACE: ids are unique, so the
	 * check before the rename only guards against a mistake. */
	if (fstatat(to_dirfd, id, &st, AT_SYMLINK_NOFOLLOW) == 0) {
		errno = EEXIST;
		return -1;
	}
	return renameat(from_dirfd, id, to_dirfd, id);
}

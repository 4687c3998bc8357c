/*
 * safeio.c - short-write-safe I/O, directory fsync, secret files and
 * folders created for another user (see safeio.h). Runs in every process;
 * safeio_mkdir_owned is what the root supervisor uses to create spool_dir and
 * mail_root.
 */
#include "safeio.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#include "xalloc.h"

int safeio_write_all(int fd, const void *data, size_t len)
{
	const char *p = data;
	while (len > 0) {
		ssize_t n = write(fd, p, len);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

int safeio_pwrite_all(int fd, const void *data, size_t len, off_t offset)
{
	const char *p = data;
	while (len > 0) {
		ssize_t n = pwrite(fd, p, len, offset);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		p += n;
		len -= (size_t)n;
		offset += n;
	}
	return 0;
}

int safeio_read_file(const char *path, size_t max_len, buf_t *b)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	size_t total = 0;
	for (;;) {
		buf_reserve(b, 8192);
		ssize_t n = read(fd, b->data + b->len, 8192);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			int saved = errno;
			close(fd);
			errno = saved;
			return -1;
		}
		if (n == 0)
			break;
		total += (size_t)n;
		if (total > max_len) {
			close(fd);
			errno = EFBIG;
			return -1;
		}
		b->len += (size_t)n;
		b->data[b->len] = '\0';
	}
	close(fd);
	return 0;
}

/* Grow b to hold at least need bytes plus the NUL without leaving the
 * old bytes in freed memory. */
static void secret_grow(buf_t *b, size_t need)
{
	if (need < b->cap)
		return;
	size_t cap = b->cap > 0 ? b->cap : 4096;
	while (cap <= need)
		cap = cap > SIZE_MAX / 2 ? need + 1 : cap * 2;
	char *p = xmalloc(cap);
	if (b->len > 0)
		memcpy(p, b->data, b->len);
	p[b->len] = '\0';
	safeio_free_secret(b);
	b->data = p;
	b->cap = cap;
}

int safeio_read_fd_secret(int fd, size_t max_len, buf_t *b)
{
	struct stat st;
	if (fstat(fd, &st) == 0 && st.st_size > 0 && (uint64_t)st.st_size <= max_len)
		secret_grow(b, b->len + (size_t)st.st_size + 1);
	size_t total = 0;
	int rc = 0;
	for (;;) {
		secret_grow(b, b->len + 1);
		ssize_t n = read(fd, b->data + b->len, b->cap - b->len - 1);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			rc = n < 0 ? -1 : 0;
			break;
		}
		total += (size_t)n;
		b->len += (size_t)n;
		b->data[b->len] = '\0';
		if (total > max_len) {
			errno = EFBIG;
			rc = -1;
			break;
		}
	}
	if (rc < 0) {
		int saved = errno;
		safeio_free_secret(b);
		errno = saved;
	}
	return rc;
}

int safeio_read_file_secret(const char *path, size_t max_len, buf_t *b)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	int rc = safeio_read_fd_secret(fd, max_len, b);
	int saved = errno;
	close(fd);
	errno = saved;
	return rc;
}

void safeio_free_secret(buf_t *b)
{
	if (b->data != NULL)
		explicit_bzero(b->data, b->cap);
	buf_free(b);
}

int safeio_fsync_dir(const char *path)
{
	int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	int rc = fsync(fd);
	int saved = errno;
	close(fd);
	errno = saved;
	return rc;
}

int safeio_mkdir_p(const char *path, mode_t mode)
{
	char *copy = xstrdup(path);
	int rc = 0;
	for (char *p = copy + 1;; p++) {
		if (*p != '/' && *p != '\0')
			continue;
		char saved = *p;
		*p = '\0';
		/* Intermediate folders must stay traversable by the roles. */
		if (mkdir(copy, saved == '\0' ? mode : 0755) < 0 && errno != EEXIST) {
			rc = -1;
			break;
		}
		*p = saved;
		if (saved == '\0')
			break;
	}
	int saved_errno = errno;
	free(copy);
	errno = saved_errno;
	return rc;
}

char *safeio_path_join(const char *dir, const char *name)
{
	size_t dl = strlen(dir), nl = strlen(name);
	while (dl > 1 && dir[dl - 1] == '/')
		dl--;
	while (nl > 0 && name[0] == '/') {
		name++;
		nl--;
	}
	char *p = xmalloc(dl + 1 + nl + 1);
	memcpy(p, dir, dl);
	p[dl] = '/';
	memcpy(p + dl + 1, name, nl);
	p[dl + 1 + nl] = '\0';
	return p;
}

/* Split path into its parent folder and last component (both malloc'ed);
 * trailing slashes are ignored. */
static void split_parent(const char *path, char **parent_r, char **base_r)
{
	char *copy = xstrdup(path);
	size_t n = strlen(copy);
	while (n > 1 && copy[n - 1] == '/')
		copy[--n] = '\0';
	char *slash = strrchr(copy, '/');
	if (slash == NULL) {
		*parent_r = xstrdup(".");
		*base_r = copy;
		return;
	}
	*base_r = xstrdup(slash + 1);
	*slash = '\0';
	*parent_r = xstrdup(slash == copy ? "/" : copy);
	free(copy);
}

/* Open the entry base of folder dfd as a folder, never following a link. */
static int open_dir_nofollow(int dfd, const char *base)
{
	int fd = openat(dfd, base, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	struct stat st;

	if (fd < 0 && errno == ENOTDIR &&
	    fstatat(dfd, base, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISLNK(st.st_mode))
		errno = ELOOP;
	return fd;
}

/* Give the folder base of dfd, just created by us, to uid:gid: only if
 * it is still a folder (not a link) that we own. */
static int give_new_dir(int dfd, const char *base, uid_t uid, gid_t gid)
{
	struct stat st;
	int fd = open_dir_nofollow(dfd, base);

	if (fd < 0)
		return -1;
	int rc = 0;
	if (fstat(fd, &st) < 0 || (st.st_uid == geteuid() && fchown(fd, uid, gid) < 0))
		rc = -1;
	int saved = errno;
	close(fd);
	errno = saved;
	return rc;
}

int safeio_mkdir_owned(const char *path, mode_t mode, bool give_away, uid_t uid,
		gid_t gid, bool *created_r)
{
	char *parent, *base;
	int dfd = -1, rc = -1;
	bool created = false;
	struct stat st;

	split_parent(path, &parent, &base);
	if (base[0] == '\0') {
		errno = EINVAL;
		goto out;
	}
	if (strcmp(parent, "/") != 0 && safeio_mkdir_p(parent, 0755) < 0)
		goto out;
	dfd = open(parent, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0)
		goto out;
	if (mkdirat(dfd, base, mode) == 0) {
		created = true;
		rc = give_away ? give_new_dir(dfd, base, uid, gid) : 0;
	} else if (errno == EEXIST && fstatat(dfd, base, &st, 0) == 0) {
		errno = ENOTDIR;
		rc = S_ISDIR(st.st_mode) ? 0 : -1;
	}
out:;
	int saved = errno;
	if (dfd >= 0)
		close(dfd);
	free(parent);
	free(base);
	if (created_r != NULL)
		*created_r = created;
	errno = saved;
	return rc;
}

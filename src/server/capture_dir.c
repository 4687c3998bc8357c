/*
 * capture_dir.c - make and check the capture folder (see capture_dir.h).
 *
 * RFCs: none. Untrusted input: none; the folder is made in its parent by
 * descriptor and changed only while it is still the folder this process
 * just made (never a link swapped in). Privilege: root supervisor (or the
 * invoking user), check-config.
 */
#include "capture_dir.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <libgen.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../lib/xalloc.h"

#define CAPTURE_DIR_MODE 02750

static void problem(const struct config *cfg, FILE *errors, const char *key, const char *fmt, ...)
	PRINTF_LIKE(4, 5);

/* "FILE:LINE: key VALUE: " and the message. */
static void problem(const struct config *cfg, FILE *errors, const char *key, const char *fmt, ...)
{
	va_list ap;
	const char *value = strcmp(key, "capture_group") == 0 ? cfg->capture_group : cfg->capture_dir;
	fprintf(errors, "%s:%u: %s %s: ", cfg->path != NULL ? cfg->path : "-",
		config_key_line(cfg, key), key, value);
	va_start(ap, fmt);
	vfprintf(errors, fmt, ap);
	va_end(ap);
	fputc('\n', errors);
}

/* Make capture_dir in its parent (open as dfd) and give it to uid (or
 * keep ours: -1) and gid, mode 2750; 0, or -1 with errno. */
static int make_dir(int dfd, const char *base, uid_t uid, gid_t gid)
{
	if (mkdirat(dfd, base, 0700) < 0)
		return -1;
	int fd = openat(dfd, base, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return -1;
	struct stat st;
	int rc = 0;
	if (fstat(fd, &st) < 0 || st.st_uid != geteuid())
		rc = -1; /* not what we made: leave it */
	if (rc == 0 && fchown(fd, uid, gid) < 0)
		rc = -1;
	if (rc == 0 && fchmod(fd, CAPTURE_DIR_MODE) < 0) /* after fchown, which clears S_ISGID */
		rc = -1;
	int saved = errno;
	close(fd);
	errno = saved;
	return rc;
}

/* The owner, group and mode of an existing capture_dir; problems counted. */
static int check_existing(const struct config *cfg, const struct stat *st, uid_t uid,
			  const char *owner_name, gid_t gid, FILE *errors)
{
	if (S_ISLNK(st->st_mode)) {
		problem(cfg, errors, "capture_dir", "is a symbolic link: make it a real folder");
		return 1;
	}
	if (!S_ISDIR(st->st_mode)) {
		problem(cfg, errors, "capture_dir", "exists but is not a folder");
		return 1;
	}
	mode_t mode = st->st_mode & 07777;
	bool owner_ok = owner_name == NULL || st->st_uid == uid;
	bool mode_ok = (mode & S_ISGID) != 0 && (mode & (S_IWGRP | S_IRWXO)) == 0 &&
		       (mode & S_IRWXU) == S_IRWXU;
	if (owner_ok && st->st_gid == gid && mode_ok)
		return 0;
	problem(cfg, errors, "capture_dir", "owner uid %lu, group gid %lu, mode %04o: it must "
		"belong to user %s and group %s (capture_group) with mode 2750, so that the "
		"captured messages are readable by that group only (chown %s:%s, chmod 2750)",
		(unsigned long)st->st_uid, (unsigned long)st->st_gid, (unsigned)mode,
		owner_name != NULL ? owner_name : "?", cfg->capture_group,
		owner_name != NULL ? owner_name : "USER", cfg->capture_group);
	return 1;
}

/* capture_dir missing: its parent must exist; create it if asked. */
static int check_missing(const struct config *cfg, bool create, uid_t uid, gid_t gid,
			 FILE *errors)
{
	char *copy = xstrdup(cfg->capture_dir), *base_copy = xstrdup(cfg->capture_dir);
	const char *parent = dirname(copy), *base = basename(base_copy);
	int problems = 0;
	struct stat st;
	if (stat(parent, &st) < 0 || !S_ISDIR(st.st_mode)) {
		problem(cfg, errors, "capture_dir", "its folder %s does not exist: postern creates "
			"capture_dir, not the folders above it", parent);
		problems = 1;
	} else if (create) {
		int dfd = open(parent, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (dfd < 0 || make_dir(dfd, base, uid, gid) < 0) {
			problem(cfg, errors, "capture_dir", "cannot create it for group %s: %s",
				cfg->capture_group, strerror(errno));
			problems = 1;
		}
		if (dfd >= 0)
			close(dfd);
	}
	free(copy);
	free(base_copy);
	return problems;
}

int capture_dir_prepare(const struct config *cfg, const struct privsep *ps, bool create,
			FILE *errors)
{
	if (!config_capture_possible(cfg) || cfg->capture_dir[0] == '\0')
		return 0; /* off, or capture_dir unset (reported with the settings) */
	errno = 0;
	struct group *gr = getgrnam(cfg->capture_group);
	if (gr == NULL) {
		problem(cfg, errors, "capture_group", "%s", errno != 0 ? strerror(errno)
			: "no such group");
		return 1;
	}
	gid_t gid = gr->gr_gid;
	/* As root the folder is the workers' (user); otherwise everything runs
	 * as the caller. An unresolved user was reported already. */
	bool owner_known = !ps->as_root || ps->user.known;
	uid_t uid = ps->as_root ? ps->user.uid : geteuid();
	const char *owner_name = !owner_known ? NULL : ps->as_root ? ps->user.name : "(the caller)";
	struct stat st;
	if (lstat(cfg->capture_dir, &st) == 0)
		return check_existing(cfg, &st, uid, owner_name, gid, errors);
	if (errno != ENOENT) {
		problem(cfg, errors, "capture_dir", "%s", strerror(errno));
		return 1;
	}
	return check_missing(cfg, create && owner_known, uid, gid, errors);
}

/*
 * qmgr_scan.c - how the queue manager learns about messages: the notify
 * pipe (fast path, one 32-byte record per committed message) and full
 * scans of queue/ and deferred/ (at start-up, then every
 * queue_scan_interval seconds, catching anything the pipe missed). A scan
 * also removes incoming/ files left by receivers that died: untouched for
 * two hours and not locked (a live receiver holds the lock on its file
 * however slow it is, see queue_writer.c).
 *
 * Runs in the queue manager's main thread; the lanes deliver what it adds.
 *
 * RFCs: none. Untrusted input: file names in the spool and records from
 * the notify pipe (written by smtp workers, which parse network input):
 * both are checked to be well-formed queue ids before use.
 * Privilege: unprivileged queue manager.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../lib/log.h"
#include "qmgr_internal.h"

static uint64_t mtime_us(const struct stat *st)
{
	if (st->st_mtim.tv_sec < 0)
		return 0;
	return (uint64_t)st->st_mtim.tv_sec * 1000000u +
	       (uint64_t)st->st_mtim.tv_nsec / 1000u;
}

/* Add every unknown message file of one folder. */
static void scan_folder(struct qmgr *q, const char *path, bool deferred,
			bool startup)
{
	DIR *dir = opendir(path);
	struct dirent *de;
	size_t added = 0;

	if (dir == NULL) {
		log_error("scan %s: %s", path, strerror(errno));
		return;
	}
	while ((de = readdir(dir)) != NULL) {
		if (de->d_name[0] == '.')
			continue;
		if (!queue_id_valid(de->d_name)) {
			log_warn("scan %s: ignoring unexpected file \"%s\"", path,
				 de->d_name);
			continue;
		}
		if (qmgr_known(q, de->d_name))
			continue;
		/* Still there? A lane may have delivered and removed it since
		 * readdir() (it forgets a message only after the unlink). */
		struct stat st;
		if (fstatat(dirfd(dir), de->d_name, &st, 0) < 0)
			continue;
		uint64_t due = deferred ? mtime_us(&st) : 0;
		/* A message found in queue/ after start-up missed its
		 * notification: its worker took a flow token for it. */
		qmgr_add(q, de->d_name, deferred, true, due, !deferred && !startup);
		added++;
	}
	closedir(dir);
	if (added > 0)
		log_info("scan %s: %zu message%s %s", path, added,
			 added == 1 ? "" : "s",
			 startup ? "recovered" : "found without notification");
}

/* Is incoming/NAME stale: a regular file, untouched since before limit? */
static bool stale(int dirfd, const char *name, uint64_t limit, struct stat *st)
{
	return fstatat(dirfd, name, st, AT_SYMLINK_NOFOLLOW) == 0 &&
	       S_ISREG(st->st_mode) && mtime_us(st) < limit;
}

/* Remove one stale incoming file if no receiver holds its lock; the
 * checks are repeated under the lock, on the same file. */
static void remove_if_abandoned(int dirfd, const char *name, uint64_t limit)
{
	struct stat before, st;
	int fd = openat(dirfd, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);

	if (fd < 0)
		return; /* gone meanwhile */
	if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
		log_debug("%s: incoming file untouched for long, but its receiver is alive",
			  name);
		close(fd);
		return;
	}
	if (fstat(fd, &st) == 0 && stale(dirfd, name, limit, &before) &&
	    before.st_ino == st.st_ino && before.st_dev == st.st_dev) {
		if (unlinkat(dirfd, name, 0) == 0)
			log_info("%s: removed stale incoming file (receiver died before "
				 "commit, never acknowledged)", name);
		else
			log_warn("%s: cannot remove stale incoming file: %s", name,
				 strerror(errno));
	}
	close(fd);
}

/* Remove incoming/ files whose receiver died (not touched for 2 hours,
 * not locked). */
static void clean_incoming(struct qmgr *q)
{
	DIR *dir = opendir(q->dir_incoming);
	struct dirent *de;
	uint64_t limit = qmgr_now_us() - (uint64_t)QMGR_STALE_INCOMING_SECS * 1000000u;

	if (dir == NULL) {
		log_error("scan %s: %s", q->dir_incoming, strerror(errno));
		return;
	}
	while ((de = readdir(dir)) != NULL) {
		struct stat st;
		if (de->d_name[0] != '.' && stale(dirfd(dir), de->d_name, limit, &st))
			remove_if_abandoned(dirfd(dir), de->d_name, limit);
	}
	closedir(dir);
}

void qmgr_scan(struct qmgr *q, bool startup)
{
	scan_folder(q, q->dir_queue, false, startup);
	scan_folder(q, q->dir_deferred, true, startup);
	clean_incoming(q);
}

/* Handle the complete records in data[0 .. len) (len % 32 == 0). */
static void take_records(struct qmgr *q, const unsigned char *data, size_t len)
{
	char id[QUEUE_ID_LEN + 1];

	for (size_t off = 0; off + QF_NOTIFY_LEN <= len; off += QF_NOTIFY_LEN) {
		if (!qf_notify_decode(data + off, id)) {
			log_warn("notify pipe: malformed record ignored");
			continue;
		}
		qmgr_add(q, id, false, false, 0, true);
	}
}

void qmgr_read_notify(struct qmgr *q)
{
	unsigned char data[QF_NOTIFY_LEN * 128];

	while (q->notify_fd >= 0) {
		size_t have = q->notify_have;
		memcpy(data, q->notify_buf, have);
		ssize_t n = read(q->notify_fd, data + have, sizeof(data) - have);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno != EAGAIN && errno != EWOULDBLOCK)
				log_error("notify pipe: %s", strerror(errno));
			return;
		}
		if (n == 0) {
			log_warn("notify pipe closed: relying on queue scans");
			q->notify_fd = -1;
			return;
		}
		size_t total = have + (size_t)n;
		size_t whole = total - total % QF_NOTIFY_LEN;
		take_records(q, data, whole);
		q->notify_have = total - whole;
		memcpy(q->notify_buf, data + whole, q->notify_have);
	}
}

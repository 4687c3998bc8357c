/*
 * qmgr_scan.c - how the queue manager learns about messages: the notify
 * pipe (fast path, one 32-byte record per committed message) and full
 * scans of queue/ and deferred/ (at start-up, then every
 * queue_scan_interval seconds, catching anything the pipe missed). A scan
 * also removes incoming/ files left by receivers that died: untouched for
 * two hours and not locked (a live receiver holds the lock on its file
 * however slow it is, see queue_writer.c), and quarantine/ files older
 * than quarantine_retention. The wake-up FIFO (spool_dir/qmgr.wake) is
 * the notify pipe of commands that have none: "postern quarantine
 * release" writes a record there once it has moved a message into
 * queue/.
 *
 * Runs in the queue manager's main thread; the lanes deliver what it adds.
 *
 * RFCs: none. Untrusted input: file names in the spool and records from
 * the notify pipe (written by smtp workers, which parse network input)
 * and the wake-up FIFO (anyone who can write the spool): all are checked
 * to be well-formed queue ids before use, and an id that names no file
 * in queue/ is forgotten when a lane finds it missing.
 * Privilege: unprivileged queue manager.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/file.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "../lib/log.h"
#include "../lib/safeio.h"
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
	if (q->cfg->quarantine_retention > 0)
		qmgr_expire_quarantine(q->dir_quarantine, q->cfg->quarantine_retention,
				       qmgr_now_us());
}

/* ---- quarantine retention ------------------------------------------------- */

static void format_utc(char *out, size_t len, uint64_t us)
{
	time_t t = (time_t)(us / 1000000u);
	struct tm tm;

	if (gmtime_r(&t, &tm) == NULL || strftime(out, len, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
		snprintf(out, len, "%llu", (unsigned long long)(us / 1000000u));
}

/* Remove quarantine/NAME (arrived at arrival_us) if it is still the
 * regular file we open and no commit holds it; true if it was removed. */
static bool expire_one(int dirfd, const char *dir, const char *name, uint64_t arrival_us)
{
	struct stat st, now_st;
	int fd = openat(dirfd, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);

	if (fd < 0)
		return false; /* gone meanwhile (released, deleted), or a link */
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		log_warn("%s: quarantine entry %s/%s is not a regular file: left alone", name,
			 dir, name);
		close(fd);
		return false;
	}
	if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
		close(fd); /* its commit (or a release) is in progress: next scan */
		return false;
	}
	struct qf_msg m;
	char *err = NULL, when[40];
	bool readable = qf_read(fd, &m, &err) == 0;
	bool removed = false;
	format_utc(when, sizeof(when), arrival_us);
	if (fstatat(dirfd, name, &now_st, AT_SYMLINK_NOFOLLOW) == 0 &&
	    now_st.st_ino == st.st_ino && now_st.st_dev == st.st_dev) {
		if (unlinkat(dirfd, name, 0) == 0) {
			removed = true;
			if (readable)
				log_info("%s: quarantine expired (arrived %s): removed from=<%s> "
					 "nrcpt=%zu size=%llu reason=%s", name, when, m.sender,
					 m.rcpt_count, (unsigned long long)m.content_len,
					 m.note.text != NULL ? m.note.text : "(none recorded)");
			else
				log_info("%s: quarantine expired (arrived %s): removed "
					 "(unreadable: %s)", name, when, err);
		} else {
			log_warn("%s: cannot remove expired quarantine entry: %s", name,
				 strerror(errno));
		}
	}
	if (readable)
		qf_msg_free(&m);
	free(err);
	close(fd);
	return removed;
}

size_t qmgr_expire_quarantine(const char *quarantine_dir, uint64_t retention_secs,
			      uint64_t now_us)
{
	uint64_t keep_us = retention_secs * 1000000u;
	struct dirent *de;
	size_t removed = 0;

	if (retention_secs == 0 || keep_us / 1000000u != retention_secs || keep_us > now_us)
		return 0; /* for ever, or longer than the clock has run */
	DIR *dir = opendir(quarantine_dir);
	if (dir == NULL) {
		log_error("scan %s: %s", quarantine_dir, strerror(errno));
		return 0;
	}
	uint64_t limit = now_us - keep_us;
	while ((de = readdir(dir)) != NULL) {
		if (!queue_id_valid(de->d_name))
			continue;
		uint64_t arrival = queue_id_time_us(de->d_name);
		if (arrival < limit && expire_one(dirfd(dir), quarantine_dir, de->d_name, arrival))
			removed++;
	}
	closedir(dir);
	return removed;
}

/* ---- notify records ------------------------------------------------------- */

/* Handle the complete records in data[0 .. len) (len % 32 == 0). Records
 * from the wake-up FIFO never owe a flow token: the workers do not write
 * there. */
static void take_records(struct qmgr *q, const unsigned char *data, size_t len,
			 bool from_fifo)
{
	char id[QUEUE_ID_LEN + 1];
	unsigned flags;

	for (size_t off = 0; off + QF_NOTIFY_LEN <= len; off += QF_NOTIFY_LEN) {
		if (!qf_notify_decode(data + off, id, &flags)) {
			log_warn("%s: malformed record ignored",
				 from_fifo ? "wake-up FIFO" : "notify pipe");
			continue;
		}
		bool token = !from_fifo && (flags & QF_NOTIFY_NO_TOKEN) == 0;
		if (qmgr_add(q, id, false, false, 0, token)) {
			if (from_fifo)
				log_info("%s: released into the queue", id);
		} else if (from_fifo && qmgr_hurry(q, id)) {
			log_info("%s: retrying now, as a command asked", id);
		}
	}
}

/* Read whole records from *fd, keeping a partial one in buf/have;
 * returns false at the end of the stream. */
static bool read_records(struct qmgr *q, int fd, unsigned char *buf, size_t *have_r,
			 bool from_fifo)
{
	unsigned char data[QF_NOTIFY_LEN * 128];

	for (;;) {
		size_t have = *have_r;
		memcpy(data, buf, have);
		ssize_t n = read(fd, data + have, sizeof(data) - have);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno != EAGAIN && errno != EWOULDBLOCK)
				log_error("%s: %s", from_fifo ? "wake-up FIFO" : "notify pipe",
					  strerror(errno));
			return true;
		}
		if (n == 0)
			return false;
		size_t total = have + (size_t)n;
		size_t whole = total - total % QF_NOTIFY_LEN;
		take_records(q, data, whole, from_fifo);
		*have_r = total - whole;
		memcpy(buf, data + whole, *have_r);
	}
}

void qmgr_read_notify(struct qmgr *q)
{
	if (q->notify_fd >= 0 && !read_records(q, q->notify_fd, q->notify_buf,
					       &q->notify_have, false)) {
		log_warn("notify pipe closed: relying on queue scans");
		q->notify_fd = -1;
	}
}

void qmgr_read_wake_fifo(struct qmgr *q)
{
	/* Opened read-write, so it never reaches an end of stream. */
	if (q->wake_fifo_fd >= 0 && !read_records(q, q->wake_fifo_fd, q->wake_fifo_buf,
						  &q->wake_fifo_have, true)) {
		close(q->wake_fifo_fd);
		q->wake_fifo_fd = -1;
	}
}

int qmgr_wake_fifo_open(struct qmgr *q)
{
	char *path = safeio_path_join(q->cfg->spool_dir, QUEUE_WAKE_FIFO);
	struct stat st;
	int fd = -1;

	/* Whatever else has the name (a file, a link) is not ours: replace it. */
	if (lstat(path, &st) == 0 && !S_ISFIFO(st.st_mode) && unlink(path) < 0)
		goto fail;
	if (mkfifo(path, 0600) < 0 && errno != EEXIST)
		goto fail;
	/* Read-write: a FIFO with no writer left would read as ended. */
	fd = open(path, O_RDWR | O_NONBLOCK | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		goto fail;
	if (fstat(fd, &st) < 0 || !S_ISFIFO(st.st_mode)) {
		errno = EINVAL;
		goto fail;
	}
	q->wake_fifo_fd = fd;
	free(path);
	return 0;
fail:
	log_warn("wake-up FIFO %s: %s: messages released from quarantine wait for the "
		 "next queue scan", path, strerror(errno));
	if (fd >= 0)
		close(fd);
	free(path);
	return -1;
}

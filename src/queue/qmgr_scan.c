/*
 * qmgr_scan.c - how the queue manager learns about messages: the notify
 * pipe (fast path, one 32-byte record per committed message) and full
 * scans of queue/ and deferred/ (at start-up, then every
 * queue_scan_interval seconds, catching anything the pipe missed). A scan
 * also removes incoming/ files left by receivers that died.
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
		if (hashmap_contains(&q->known, de->d_name))
			continue;
		uint64_t due = 0;
		if (deferred) {
			struct stat st;
			if (fstatat(dirfd(dir), de->d_name, &st, 0) < 0)
				continue; /* gone meanwhile */
			due = mtime_us(&st);
		}
		qmgr_add(q, de->d_name, deferred, true, due);
		added++;
	}
	closedir(dir);
	if (added > 0)
		log_info("scan %s: %zu message%s %s", path, added,
			 added == 1 ? "" : "s",
			 startup ? "recovered" : "found without notification");
}

/* Remove incoming/ files whose receiver died (not touched for 2 hours). */
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
		if (de->d_name[0] == '.' ||
		    fstatat(dirfd(dir), de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0 ||
		    !S_ISREG(st.st_mode) || mtime_us(&st) >= limit)
			continue;
		if (unlinkat(dirfd(dir), de->d_name, 0) == 0)
			log_info("%s: removed stale incoming file (receiver died before "
				 "commit, never acknowledged)", de->d_name);
		else
			log_warn("%s: cannot remove stale incoming file: %s",
				 de->d_name, strerror(errno));
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
		qmgr_add(q, id, false, false, 0);
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

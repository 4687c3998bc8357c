/*
 * maildir_quota.c - Maildir++ "maildirsize": parse, recalculate, rewrite,
 * append deltas (see maildir_quota.h for the format and the rules, which
 * are those of Dovecot's maildir quota backend).
 *
 * RFCs: none. Untrusted input: maildirsize (at most MAILDIRSIZE_MAX
 * bytes are read) and the names of the files in the Maildir. Privilege:
 * mail_owner (local delivery agent, quota reader, POP3).
 */
#include "maildir_quota.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "../lib/log.h"
#include "../lib/safeio.h"
#include "../lib/xalloc.h"
#include "queue_file.h"

#define MAILDIRSIZE_NAME "maildirsize"
#define MAILDIRSIZE_LOCK "maildirsize.lock"
/* A lock older than this was left by a process that died (Dovecot's
 * dotlock treats it the same way). */
#define MAILDIRSIZE_LOCK_STALE_SECONDS 30
/* Bound of one number in the file: far above any mailbox, far below
 * overflow when a few hundred are summed. */
#define MAILDIRSIZE_NUMBER_MAX (1ULL << 60)

/* ---- parsing ------------------------------------------------------------ */

/* Digits at *p..end as a number <= MAILDIRSIZE_NUMBER_MAX; false if none
 * or too big. Advances *p. */
static bool take_number(const char **p, const char *end, uint64_t *v_r)
{
	const char *s = *p;
	uint64_t v = 0;
	while (s < end && *s >= '0' && *s <= '9') {
		v = v * 10 + (uint64_t)(*s - '0');
		if (v > MAILDIRSIZE_NUMBER_MAX)
			return false;
		s++;
	}
	if (s == *p)
		return false;
	*p = s;
	*v_r = v;
	return true;
}

/* The limits line: comma-separated "<n>S" and "<n>C"; anything it does
 * not understand counts as no limit, as in Dovecot (which then finds the
 * limits changed and recalculates). */
static void parse_limits(const char *p, const char *end, struct maildir_quota_limits *l)
{
	memset(l, 0, sizeof(*l));
	while (p < end) {
		const char *item_end = memchr(p, ',', (size_t)(end - p));
		if (item_end == NULL)
			item_end = end;
		uint64_t v = 0;
		const char *q = p;
		if (take_number(&q, item_end, &v) && q + 1 == item_end) {
			if (*q == 'S')
				l->bytes = v;
			else if (*q == 'C')
				l->count = v;
		}
		p = item_end < end ? item_end + 1 : end;
	}
}

/* A signed number: optional '-', digits. */
static bool take_signed(const char **p, const char *end, int64_t *v_r)
{
	bool neg = *p < end && **p == '-';
	if (neg)
		(*p)++;
	uint64_t v = 0;
	if (!take_number(p, end, &v))
		return false;
	*v_r = neg ? -(int64_t)v : (int64_t)v;
	return true;
}

static bool is_blank(char c)
{
	return c == ' ' || c == '\t';
}

/* One "BYTES COUNT" line, blanks around and between. */
static bool parse_delta(const char *p, const char *end, int64_t *bytes_r, int64_t *count_r)
{
	while (p < end && is_blank(*p))
		p++;
	if (!take_signed(&p, end, bytes_r) || p == end || !is_blank(*p))
		return false;
	while (p < end && is_blank(*p))
		p++;
	if (!take_signed(&p, end, count_r))
		return false;
	while (p < end && is_blank(*p))
		p++;
	return p == end;
}

static bool over_limit(const struct maildir_quota_limits *l, int64_t bytes, int64_t count)
{
	return (l->bytes != 0 && (uint64_t)bytes > l->bytes) ||
	       (l->count != 0 && (uint64_t)count > l->count);
}

enum maildirsize_parse_result
maildirsize_parse(const char *data, size_t len, const struct maildir_quota_limits *configured,
		  bool over_is_stale, struct maildir_quota_limits *file_limits_r,
		  struct maildir_quota_usage *usage_r, const char **why_r)
{
	memset(file_limits_r, 0, sizeof(*file_limits_r));
	memset(usage_r, 0, sizeof(*usage_r));
	*why_r = NULL;
	if (len > MAILDIRSIZE_MAX) {
		*why_r = "larger than 5120 bytes";
		return MAILDIRSIZE_RECALCULATE;
	}
	if (len == 0 || data[len - 1] != '\n') {
		*why_r = len == 0 ? "empty" : "last line incomplete";
		return MAILDIRSIZE_RECALCULATE;
	}
	const char *end = data + len, *nl = memchr(data, '\n', len);
	parse_limits(data, nl, file_limits_r);
	if (file_limits_r->bytes != configured->bytes || file_limits_r->count != configured->count) {
		*why_r = "limits changed";
		return MAILDIRSIZE_RECALCULATE;
	}
	int64_t bytes = 0, count = 0;
	unsigned deltas = 0;
	for (const char *p = nl + 1; p < end; p = nl + 1) {
		nl = memchr(p, '\n', (size_t)(end - p)); /* never NULL: data ends with \n */
		int64_t b = 0, c = 0;
		if (!parse_delta(p, nl, &b, &c) || __builtin_add_overflow(bytes, b, &bytes) ||
		    __builtin_add_overflow(count, c, &count)) {
			*why_r = "malformed line";
			return MAILDIRSIZE_RECALCULATE;
		}
		deltas++;
	}
	if (deltas == 0) {
		*why_r = "no usage line";
		return MAILDIRSIZE_RECALCULATE;
	}
	if (bytes < 0 || count < 0) {
		*why_r = "negative usage";
		return MAILDIRSIZE_RECALCULATE;
	}
	if (over_limit(configured, bytes, count) && (deltas > 1 || over_is_stale)) {
		*why_r = "over quota with deltas or stale";
		return MAILDIRSIZE_RECALCULATE;
	}
	usage_r->bytes = (uint64_t)bytes;
	usage_r->count = (uint64_t)count;
	return MAILDIRSIZE_OK;
}

void maildirsize_format_limits(buf_t *out, const struct maildir_quota_limits *limits)
{
	if (limits->bytes != 0)
		buf_printf(out, "%" PRIu64 "S", limits->bytes);
	if (limits->count != 0)
		buf_printf(out, "%s%" PRIu64 "C", limits->bytes != 0 ? "," : "", limits->count);
}

/* ---- recalculation ------------------------------------------------------ */

/* The size a Maildir file name states (",S=<n>" before the next ',' or
 * ':'); false when it states none. */
static bool name_size(const char *name, uint64_t *size_r)
{
	const char *info = strchr(name, ':');
	for (const char *p = strstr(name, ",S="); p != NULL; p = strstr(p + 1, ",S=")) {
		if (info != NULL && p > info)
			return false;
		const char *q = p + 3;
		const char *stop = q + strcspn(q, ",:");
		if (take_number(&q, stop, size_r) && q == stop)
			return true;
	}
	return false;
}

/* Add the messages of folder (a new/ or cur/) to u. A folder that does
 * not exist holds nothing. */
static int sum_folder(const char *folder, struct maildir_quota_usage *u, char **err_r)
{
	DIR *dir = opendir(folder);
	if (dir == NULL) {
		if (errno == ENOENT || errno == ENOTDIR)
			return 0;
		*err_r = qf_errf("cannot read %s: %s", folder, strerror(errno));
		return -1;
	}
	struct dirent *de;
	errno = 0;
	while ((de = readdir(dir)) != NULL) {
		if (de->d_name[0] == '.')
			continue;
		uint64_t size = 0;
		if (!name_size(de->d_name, &size)) {
			struct stat st;
			if (fstatat(dirfd(dir), de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0 ||
			    !S_ISREG(st.st_mode)) {
				errno = 0;
				continue; /* gone meanwhile (read, expunged), or not a message */
			}
			size = (uint64_t)st.st_size;
		}
		if (size > MAILDIRSIZE_NUMBER_MAX)
			size = MAILDIRSIZE_NUMBER_MAX;
		u->bytes += size;
		u->count++;
		if (u->bytes > MAILDIRSIZE_NUMBER_MAX)
			u->bytes = MAILDIRSIZE_NUMBER_MAX;
		errno = 0;
	}
	int rc = 0;
	if (errno != 0) {
		*err_r = qf_errf("cannot read %s: %s", folder, strerror(errno));
		rc = -1;
	}
	closedir(dir);
	return rc;
}

/* new/ and cur/ of one Maildir (or Maildir++ folder). */
static int sum_maildir(const char *dir, struct maildir_quota_usage *u, char **err_r)
{
	static const char *const subs[] = { "new", "cur" };
	for (size_t i = 0; i < 2; i++) {
		char *path = safeio_path_join(dir, subs[i]);
		int rc = sum_folder(path, u, err_r);
		free(path);
		if (rc < 0)
			return -1;
	}
	return 0;
}

/* The whole mailbox: INBOX and every Maildir++ folder (".Name"). */
static int count_mailbox(const char *maildir, struct maildir_quota_usage *u, char **err_r)
{
	memset(u, 0, sizeof(*u));
	if (sum_maildir(maildir, u, err_r) < 0)
		return -1;
	DIR *dir = opendir(maildir);
	if (dir == NULL) {
		if (errno == ENOENT)
			return 0;
		*err_r = qf_errf("cannot read %s: %s", maildir, strerror(errno));
		return -1;
	}
	struct dirent *de;
	int rc = 0;
	while (rc == 0 && (de = readdir(dir)) != NULL) {
		if (de->d_name[0] != '.' || strcmp(de->d_name, ".") == 0 ||
		    strcmp(de->d_name, "..") == 0)
			continue;
		struct stat st;
		if (fstatat(dirfd(dir), de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0 ||
		    !S_ISDIR(st.st_mode))
			continue;
		char *sub = safeio_path_join(maildir, de->d_name);
		rc = sum_maildir(sub, u, err_r);
		free(sub);
	}
	closedir(dir);
	return rc;
}

/* Take maildirsize.lock exclusively: its descriptor, or -1 when another
 * process holds a fresh one or the Maildir does not exist (errno). */
static int take_lock(const char *lock)
{
	for (int attempt = 0; attempt < 2; attempt++) {
		int fd = open(lock, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
		if (fd >= 0 || errno != EEXIST)
			return fd;
		struct stat st;
		if (lstat(lock, &st) < 0) {
			if (errno == ENOENT)
				continue; /* released meanwhile */
			return -1;
		}
		if (st.st_mtime > time(NULL) - MAILDIRSIZE_LOCK_STALE_SECONDS) {
			errno = EEXIST;
			return -1;
		}
		if (unlink(lock) < 0 && errno != ENOENT)
			return -1;
	}
	errno = EEXIST;
	return -1;
}

/* Write the recount as the new maildirsize; 0 when written or left to a
 * process that holds the lock, -1 on an I/O error. */
static int rewrite(const char *maildir, const struct maildir_quota_limits *limits,
		   const struct maildir_quota_usage *u, char **err_r)
{
	char *lock = safeio_path_join(maildir, MAILDIRSIZE_LOCK);
	char *path = safeio_path_join(maildir, MAILDIRSIZE_NAME);
	buf_t text = BUF_INIT;
	int rc = 0, fd = take_lock(lock);
	if (fd < 0) {
		if (errno != EEXIST && errno != ENOENT) {
			*err_r = qf_errf("cannot create %s: %s", lock, strerror(errno));
			rc = -1;
		}
		goto out;
	}
	maildirsize_format_limits(&text, limits);
	buf_printf(&text, "\n%" PRIu64 " %" PRIu64 "\n", u->bytes, u->count);
	int written = safeio_write_all(fd, text.data, text.len);
	int saved = errno;
	if (close(fd) < 0 && written == 0) {
		written = -1;
		saved = errno;
	}
	if (written < 0) {
		*err_r = qf_errf("cannot write %s: %s", lock, strerror(saved));
		unlink(lock);
		rc = -1;
	} else if (rename(lock, path) < 0) {
		*err_r = qf_errf("cannot rename %s: %s", lock, strerror(errno));
		unlink(lock);
		rc = -1;
	}
out:
	buf_free(&text);
	free(lock);
	free(path);
	return rc;
}

int maildir_quota_recalculate(const char *maildir, const struct maildir_quota_limits *limits,
			      struct maildir_quota_usage *usage_r, char **err_r)
{
	char *err = NULL;
	if (count_mailbox(maildir, usage_r, err_r) < 0)
		return -1;
	if (rewrite(maildir, limits, usage_r, &err) < 0) {
		/* the count stands; the next reader counts again */
		log_warn("%s", err);
		free(err);
	}
	return 0;
}

/* ---- reading and appending -------------------------------------------------- */

/* Read maildirsize (at most MAILDIRSIZE_MAX + 1 bytes). 1 read, 0 missing
 * or not a regular file, -1 error. Opened non-blocking: a FIFO there
 * must not stop the process (it serves every mailbox). */
static int read_file(const char *path, char *data, size_t *len_r, time_t *mtime_r)
{
	int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
	if (fd < 0)
		return (errno == ENOENT || errno == ELOOP) ? 0 : -1;
	struct stat st;
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		close(fd);
		return 0;
	}
	*mtime_r = st.st_mtime;
	size_t len = 0;
	while (len < MAILDIRSIZE_MAX + 1) {
		ssize_t n = read(fd, data + len, MAILDIRSIZE_MAX + 1 - len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			int saved = errno;
			close(fd);
			errno = saved;
			return -1;
		}
		if (n == 0)
			break;
		len += (size_t)n;
	}
	close(fd);
	*len_r = len;
	return 1;
}

/* Is there room for need bytes and one more message? */
static bool room_for(const struct maildir_quota_limits *l, const struct maildir_quota_usage *u,
		     uint64_t need)
{
	bool bytes = l->bytes == 0 || (u->bytes <= l->bytes && l->bytes - u->bytes >= need);
	return bytes && (l->count == 0 || u->count < l->count);
}

int maildir_quota_get_for(const char *maildir, const struct maildir_quota_limits *limits,
			  uint64_t need, struct maildir_quota_usage *usage_r, char **err_r)
{
	char *path = safeio_path_join(maildir, MAILDIRSIZE_NAME);
	char *data = xmalloc(MAILDIRSIZE_MAX + 1);
	size_t len = 0;
	time_t mtime = 0, now = time(NULL);
	int rc = read_file(path, data, &len, &mtime);
	if (rc < 0) {
		*err_r = qf_errf("cannot read %s: %s", path, strerror(errno));
	} else {
		struct maildir_quota_limits in_file;
		const char *why = NULL;
		bool stale = mtime < now - MAILDIRSIZE_STALE_SECONDS;
		bool trusted = rc == 1 && maildirsize_parse(data, len, limits, stale, &in_file,
							    usage_r, &why) == MAILDIRSIZE_OK;
		/* a refusal rests on a recent file only: deletions that were not
		 * recorded in it (Dovecot without its quota plugin, a shell) are
		 * seen within MAILDIRSIZE_CONFIRM_SECONDS */
		if (trusted && need != 0 && !room_for(limits, usage_r, need) &&
		    mtime < now - MAILDIRSIZE_CONFIRM_SECONDS)
			trusted = false;
		rc = trusted ? 0 : maildir_quota_recalculate(maildir, limits, usage_r, err_r);
	}
	free(data);
	free(path);
	return rc;
}

int maildir_quota_get(const char *maildir, const struct maildir_quota_limits *limits,
		      struct maildir_quota_usage *usage_r, char **err_r)
{
	return maildir_quota_get_for(maildir, limits, 0, usage_r, err_r);
}

int maildir_quota_add(const char *maildir, int64_t bytes, int64_t count, char **err_r)
{
	char *path = safeio_path_join(maildir, MAILDIRSIZE_NAME);
	char line[64];
	int rc = 0;
	int fd = open(path, O_WRONLY | O_APPEND | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
	struct stat st;
	if (fd >= 0 && (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode))) {
		close(fd); /* not a maildirsize: as if missing, the next reader counts */
		fd = -1;
		errno = ENOENT;
	}
	if (fd < 0) {
		if (errno != ENOENT && errno != ELOOP && errno != ENXIO) {
			*err_r = qf_errf("cannot open %s: %s", path, strerror(errno));
			rc = -1;
		}
		free(path);
		return rc;
	}
	int n = snprintf(line, sizeof(line), "%" PRId64 " %" PRId64 "\n", bytes, count);
	ssize_t w = write(fd, line, (size_t)n); /* one write: appends never interleave */
	if (w != n) {
		*err_r = qf_errf("cannot append to %s: %s", path,
				 w < 0 ? strerror(errno) : "short write");
		rc = -1;
	}
	if (close(fd) < 0 && rc == 0) {
		*err_r = qf_errf("cannot append to %s: %s", path, strerror(errno));
		rc = -1;
	}
	free(path);
	return rc;
}

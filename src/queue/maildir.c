/*
 * maildir.c - deliver one message copy into a Maildir, exactly once.
 *
 * Follows qmail's maildir(5) protocol (write into tmp/ under a unique
 * name with O_EXCL, fsync, link into new/, unlink tmp/) with Maildir++
 * ",S=<size>,W=<rfc822 size>" in the name as Dovecot reads it. The unique
 * part is the queue id, so the name is the same on every attempt: link()
 * failing with EEXIST proves an earlier, crashed run already delivered.
 * The fsync of new/ that makes the link durable can be left to the caller
 * (maildir_deliver_unsynced), which lets the local delivery agent sync
 * each folder once for a whole batch of messages.
 * Mailbox folders are created 0700 on first delivery.
 *
 * The content is copied unchanged except that Return-Path: fields the
 * client put in the header section are dropped and the queue file's
 * header changes applied (maildir_header.c), so the copy holds exactly
 * one Return-Path, ours; a body replaced at the end of the message
 * (queue file version 4) is copied in place of the content's body
 * (qf_read_content). S= and W= count the bytes written.
 *
 * RFCs: RFC 5322 (the Return-Path:/Delivered-To: lines added on top), RFC
 * 5321 section 4.4 (only the delivering MTA adds Return-Path).
 * Untrusted input: the message content (copied; only the header field
 * names are looked at, to drop Return-Path) and the
 * recipient address (checked to be a safe path component). Privilege:
 * the local delivery agent (local.c), running as mail_owner, which owns
 * mail_root.
 */
#include "maildir.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../lib/log.h"
#include "../lib/safeio.h"
#include "../lib/xalloc.h"
#include "../mail/quota_rule.h"
#include "maildir_header.h"
#include "maildir_quota.h"

#define MAILDIR_COPY_CHUNK (64 * 1024)

void maildir_base_name(buf_t *out, uint64_t arrival_us, const char *queue_id,
		       const char *hostname)
{
	buf_printf(out, "%llu.Q%s.", (unsigned long long)(arrival_us / 1000000u),
		   queue_id);
	for (const char *p = hostname; *p != '\0'; p++) {
		if (*p == '/')
			buf_puts(out, "\\057");
		else if (*p == ':')
			buf_puts(out, "\\072");
		else
			buf_putc(out, *p);
	}
}

/* A name that is safe to use as one path component. */
static bool safe_component(const char *s, size_t len)
{
	if (len == 0 || s[0] == '.')
		return false;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c == '/' || c < 0x20 || c == 0x7f)
			return false;
	}
	return true;
}

bool maildir_path(buf_t *out, const char *mail_root, const char *address)
{
	const char *at = strrchr(address, '@');

	if (at == NULL)
		return false;
	size_t llen = (size_t)(at - address);
	const char *domain = at + 1;
	if (!safe_component(address, llen) ||
	    !safe_component(domain, strlen(domain)))
		return false;
	buf_printf(out, "%s/%s/%.*s/Maildir", mail_root, domain, (int)llen,
		   address);
	return true;
}

/* ---- failures ------------------------------------------------------------ */

static enum maildir_result tempfail(char **err_r, const char *what,
				    const char *path, int err)
{
	const char *code = "4.3.0";

	if (err == EDQUOT)
		code = "4.2.2";
	else if (err == ENOSPC)
		code = "4.3.1";
	*err_r = qf_errf("%s maildir %s %s: %s", code, what, path, strerror(err));
	return MAILDIR_TEMPFAIL;
}

/* ---- steps ----------------------------------------------------------------- */

/* Create <root>/<domain>/<local>/Maildir/{tmp,new,cur}, each level below
 * mail_root with mode 0700 (mail_root itself is the administrator's). */
static int make_dirs(const char *mail_root, const char *maildir)
{
	static const char *const subs[] = { "tmp", "new", "cur" };
	char *copy = xstrdup(maildir);
	int rc = 0;

	for (size_t i = strlen(mail_root) + 1; rc == 0; i++) {
		char c = copy[i];
		if (c != '/' && c != '\0')
			continue;
		copy[i] = '\0';
		rc = safeio_mkdir_p(copy, 0700);
		copy[i] = c;
		if (c == '\0')
			break;
	}
	for (size_t i = 0; rc == 0 && i < 3; i++) {
		char *p = safeio_path_join(maildir, subs[i]);
		if (mkdir(p, 0700) < 0 && errno != EEXIST)
			rc = -1;
		free(p);
	}
	int saved = errno;
	free(copy);
	errno = saved;
	return rc;
}

/* Create tmp/NAME exclusively: a stale file of the same name is left by a
 * crashed run of this same delivery, so it is removed once. */
static int open_tmp(const struct maildir_delivery *d, const char *maildir,
		    const char *tmp_path)
{
	bool made_dirs = false, unlinked = false;

	for (;;) {
		int fd = open(tmp_path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
		if (fd >= 0)
			return fd;
		if (errno == ENOENT && !made_dirs) {
			made_dirs = true;
			if (make_dirs(d->mail_root, maildir) < 0)
				return -1;
			continue;
		}
		if (errno == EEXIST && !unlinked) {
			unlinked = true;
			if (unlink(tmp_path) < 0 && errno != ENOENT)
				return -1;
			continue;
		}
		return -1;
	}
}

static uint64_t count_lf(const char *p, size_t n)
{
	uint64_t lines = 0;
	const char *end = p + n;

	while (p < end && (p = memchr(p, '\n', (size_t)(end - p))) != NULL) {
		lines++;
		p++;
	}
	return lines;
}

/* Write n bytes and add them to the counts. */
static int write_counted(int fd, const char *p, size_t n, uint64_t *size_r,
			 uint64_t *lines_r)
{
	*size_r += n;
	*lines_r += count_lf(p, n);
	return n > 0 ? safeio_write_all(fd, p, n) : 0;
}

/* Write one chunk of content: its header bytes through the Return-Path
 * filter (into head, reused), the body bytes unchanged. */
static int write_chunk(int fd, struct mhdr_filter *f, buf_t *head,
		       const char *chunk, size_t n, uint64_t *size_r,
		       uint64_t *lines_r)
{
	buf_reset(head);
	size_t used = mhdr_filter_feed(f, chunk, n, head);
	if (write_counted(fd, head->data, head->len, size_r, lines_r) < 0)
		return -1;
	return write_counted(fd, chunk + used, n - used, size_r, lines_r);
}

/* Write the delivery's header lines, then the content through the header
 * editor (the client's Return-Path: fields dropped, the queue file's
 * header changes applied); count the bytes and LFs actually written. */
static int write_copy(int fd, const struct maildir_delivery *d,
		      uint64_t *size_r, uint64_t *lines_r)
{
	buf_t head = BUF_INIT;
	struct mhdr_filter filter;
	const struct qf_msg *m = d->msg;
	char *chunk = xmalloc(MAILDIR_COPY_CHUNK);
	uint64_t pos = 0;

	*size_r = *lines_r = 0;
	mhdr_filter_init(&filter, m->edits, m->edit_count);
	char *err = NULL;
	if (mhdr_filter_prepare(&filter, d->queue_fd, m, &err) < 0) {
		free(err); /* errno tells the caller */
		mhdr_filter_free(&filter);
		free(chunk);
		return -1;
	}
	buf_printf(&head, "Return-Path: <%s>\nDelivered-To: %s\n", m->sender,
		   d->address);
	int rc = write_counted(fd, head.data, head.len, size_r, lines_r);
	while (rc == 0 && pos < qf_message_size(m)) {
		long n = qf_read_content(d->queue_fd, m, pos, chunk, MAILDIR_COPY_CHUNK);
		if (n <= 0) {
			rc = -1;
			break;
		}
		rc = write_chunk(fd, &filter, &head, chunk, (size_t)n, size_r, lines_r);
		pos += (uint64_t)n;
	}
	if (rc == 0) {
		buf_reset(&head);
		mhdr_filter_end(&filter, &head);
		rc = write_counted(fd, head.data, head.len, size_r, lines_r);
	}
	int saved = errno;
	mhdr_filter_free(&filter);
	free(chunk);
	buf_free(&head);
	errno = saved;
	return rc;
}

/* Does folder sub/ of maildir hold a file whose name starts with prefix? */
static int folder_has_prefix(const char *maildir, const char *sub,
			     const char *prefix, bool *found_r)
{
	char *path = safeio_path_join(maildir, sub);
	DIR *dir = opendir(path);
	size_t plen = strlen(prefix);

	free(path);
	*found_r = false;
	if (dir == NULL)
		return errno == ENOENT ? 0 : -1;
	struct dirent *de;
	errno = 0;
	while ((de = readdir(dir)) != NULL) {
		if (strncmp(de->d_name, prefix, plen) == 0) {
			*found_r = true;
			break;
		}
	}
	int rc = (de == NULL && errno != 0) ? -1 : 0;
	closedir(dir);
	return rc;
}

/* Recovered or retried messages: did an earlier run deliver a copy that
 * the user has read since (moved to cur/, flags appended)? A copy still in
 * new/ is found by link() failing with EEXIST instead. */
static int already_read(const char *maildir, const struct maildir_delivery *d,
			bool *found_r)
{
	buf_t prefix = BUF_INIT;

	buf_printf(&prefix, "%llu.Q%s.",
		   (unsigned long long)(d->msg->arrival_us / 1000000u), d->msg->id);
	int rc = folder_has_prefix(maildir, "cur", prefix.data, found_r);
	buf_free(&prefix);
	return rc;
}

/* Link tmp into new/ under its final name. On DELIVERED and ALREADY,
 * *newdir_r is the new/ folder whose fsync makes the link durable. */
static enum maildir_result publish(const struct maildir_delivery *d,
				   const char *maildir, const char *tmp_path,
				   const char *name, char **newdir_r,
				   char **err_r)
{
	char *newdir = safeio_path_join(maildir, "new");
	char *new_path = safeio_path_join(newdir, name);
	enum maildir_result res = MAILDIR_DELIVERED;
	int rc = link(tmp_path, new_path);

	if (rc < 0 && errno == ENOENT && make_dirs(d->mail_root, maildir) == 0)
		rc = link(tmp_path, new_path); /* new/ was missing */
	if (rc < 0) {
		if (errno == EEXIST)
			res = MAILDIR_ALREADY;
		else
			res = tempfail(err_r, "link", new_path, errno);
	}
	unlink(tmp_path);
	if (res != MAILDIR_TEMPFAIL)
		*newdir_r = newdir;
	else
		free(newdir);
	free(new_path);
	return res;
}

int maildir_sync_dir(const char *newdir, char **err_r)
{
	if (safeio_fsync_dir(newdir) == 0)
		return 0;
	tempfail(err_r, "fsync", newdir, errno);
	return -1;
}

/* Add a new copy to maildirsize. A failure costs accuracy until the next
 * recalculation, never the copy, so it is only logged. */
static void count_copy(const char *maildir, uint64_t size)
{
	char *err = NULL;
	if (maildir_quota_add(maildir, (int64_t)size, 1, &err) < 0) {
		log_warn("%s", err);
		free(err);
	}
}

/* Does a new copy of size bytes fit in the quota? MAILDIR_DELIVERED when
 * it does (or when quota does not apply), MAILDIR_PERMFAIL 5.2.2 when it
 * does not, MAILDIR_TEMPFAIL when the usage cannot be read. A copy an
 * earlier, crashed attempt already linked into new/ is counted in the
 * usage already: it passes, and publish() finds it. */
static enum maildir_result quota_admits(const struct maildir_delivery *d, const char *maildir,
					const char *name, uint64_t size, char **err_r)
{
	struct maildir_quota_limits limits = { d->quota_bytes, d->quota_messages };
	struct maildir_quota_usage used;
	char *err = NULL;

	if (d->quota_bytes == 0 && d->quota_messages == 0)
		return MAILDIR_DELIVERED;
	if (maildir_quota_get_for(maildir, &limits, size != 0 ? size : 1, &used, &err) < 0) {
		*err_r = qf_errf("4.3.0 cannot read the mailbox's usage: %s", err);
		free(err);
		return MAILDIR_TEMPFAIL;
	}
	/* an exempt sender may go past the quota by the grace, no further */
	uint64_t allowed_bytes = d->quota_bytes, allowed_count = d->quota_messages;
	if (d->quota_exempt) {
		allowed_bytes = quota_grace_limit(d->quota_bytes, d->quota_grace,
						  d->quota_grace_percent, true);
		allowed_count = quota_grace_limit(d->quota_messages, d->quota_grace,
						  d->quota_grace_percent, false);
	}
	bool bytes_fit = quota_fits(used.bytes, size, allowed_bytes);
	bool count_fits = quota_fits(used.count, 1, allowed_count);
	if (bytes_fit && count_fits)
		return MAILDIR_DELIVERED;
	buf_t earlier = BUF_INIT;
	struct stat st;
	buf_printf(&earlier, "%s/new/%s", maildir, name);
	bool linked = lstat(earlier.data, &st) == 0;
	buf_free(&earlier);
	if (linked)
		return MAILDIR_DELIVERED;
	const char *past = d->quota_exempt ? " with its grace" : "";
	if (!bytes_fit)
		*err_r = qf_errf("5.2.2 mailbox full: %s (quota%s %llu bytes, %llu used, message "
				 "%llu)", d->address, past, (unsigned long long)allowed_bytes,
				 (unsigned long long)used.bytes, (unsigned long long)size);
	else
		*err_r = qf_errf("5.2.2 mailbox full: %s (quota%s %llu messages, %llu kept)",
				 d->address, past, (unsigned long long)allowed_count,
				 (unsigned long long)used.count);
	return MAILDIR_PERMFAIL;
}

/* Write tmp/BASE, then publish it as new/BASE,S=..,W=.. */
static enum maildir_result deliver_into(const char *maildir,
					const struct maildir_delivery *d,
					const char *base, char **newdir_r,
					char **err_r)
{
	buf_t tmp_path = BUF_INIT, name = BUF_INIT;
	enum maildir_result res;
	uint64_t size = 0, lines = 0;

	buf_printf(&tmp_path, "%s/tmp/%s", maildir, base);
	int fd = open_tmp(d, maildir, tmp_path.data);
	if (fd < 0) {
		res = tempfail(err_r, "create", tmp_path.data, errno);
		goto out;
	}
	if (write_copy(fd, d, &size, &lines) < 0 || fdatasync(fd) < 0) {
		res = tempfail(err_r, "write", tmp_path.data, errno != 0 ? errno : EIO);
		close(fd);
		unlink(tmp_path.data);
		goto out;
	}
	if (close(fd) < 0) {
		res = tempfail(err_r, "close", tmp_path.data, errno);
		unlink(tmp_path.data);
		goto out;
	}
	buf_printf(&name, "%s,S=%llu,W=%llu", base, (unsigned long long)size,
		   (unsigned long long)(size + lines));
	res = quota_admits(d, maildir, name.data, size, err_r);
	if (res != MAILDIR_DELIVERED) {
		unlink(tmp_path.data);
		goto out;
	}
	res = publish(d, maildir, tmp_path.data, name.data, newdir_r, err_r);
	if (res == MAILDIR_DELIVERED && (d->quota_bytes != 0 || d->quota_messages != 0))
		count_copy(maildir, size);
out:
	buf_free(&tmp_path);
	buf_free(&name);
	return res;
}

enum maildir_result maildir_deliver_unsynced(const struct maildir_delivery *d,
					     char **newdir_r, char **err_r)
{
	buf_t maildir = BUF_INIT, base = BUF_INIT;
	enum maildir_result res;

	*newdir_r = NULL;
	if (!maildir_path(&maildir, d->mail_root, d->address)) {
		*err_r = qf_errf("5.1.3 mailbox name unusable as a folder");
		return MAILDIR_PERMFAIL;
	}
	if (d->check_cur) {
		bool found = false;
		if (already_read(maildir.data, d, &found) < 0) {
			res = tempfail(err_r, "scan", maildir.data, errno);
			goto out;
		}
		if (found) {
			res = MAILDIR_ALREADY;
			goto out;
		}
	}
	maildir_base_name(&base, d->msg->arrival_us, d->msg->id, d->hostname);
	res = deliver_into(maildir.data, d, base.data, newdir_r, err_r);
out:
	buf_free(&maildir);
	buf_free(&base);
	return res;
}

enum maildir_result maildir_deliver(const struct maildir_delivery *d,
				    char **err_r)
{
	char *newdir = NULL;
	enum maildir_result res = maildir_deliver_unsynced(d, &newdir, err_r);

	if (newdir != NULL && maildir_sync_dir(newdir, err_r) < 0)
		res = MAILDIR_TEMPFAIL;
	free(newdir);
	return res;
}

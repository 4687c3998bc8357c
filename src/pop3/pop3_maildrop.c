/*
 * pop3_maildrop.c - a Maildir as a POP3 maildrop: lock, new/ to cur/,
 * listing with stable unique ids and sizes, opening a message, the update
 * after QUIT (see pop3_maildrop.h).
 *
 * RFCs: RFC 1939 (maildrop lock, UPDATE state, unique-id syntax), the
 * Maildir format (cr.yp.to/proto/maildir.html; info ":2," + flags, as
 * Dovecot reads and writes it), Maildir++ maildirsize. Untrusted input:
 * the names in the Maildir and the message bytes. Privilege: the mailbox
 * agent (mail_owner).
 */
#include "pop3_maildrop.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include "../lib/xalloc.h"
#include "../queue/maildir_quota.h"
#include "pop3_message.h"

#define READ_CHUNK (64 * 1024)
/* A name longer than this in cur/ is not a message of ours to list. */
#define NAME_MAX_LEN 255

static size_t base_len(const char *name)
{
	const char *colon = strchr(name, ':');
	return colon != NULL ? (size_t)(colon - name) : strlen(name);
}

void pop3_uid_of(const char *base, size_t len, char uid_r[POP3_UID_MAX + 1])
{
	bool plain = len >= 1 && len <= POP3_UID_MAX;
	for (size_t i = 0; plain && i < len; i++)
		plain = (unsigned char)base[i] >= 0x21 && (unsigned char)base[i] <= 0x7e;
	if (plain) {
		memcpy(uid_r, base, len);
		uid_r[len] = '\0';
		return;
	}
	XXH128_hash_t h = XXH3_128bits(base, len);
	snprintf(uid_r, POP3_UID_MAX + 1, "H%016llx%016llx", (unsigned long long)h.high64,
		 (unsigned long long)h.low64);
}

/* The number after ",KEY=" in the base name; false if there is none. */
static bool name_field(const char *name, size_t blen, char key, uint64_t *v_r)
{
	for (size_t i = 0; i + 2 < blen; i++) {
		if (name[i] != ',' || name[i + 1] != key || name[i + 2] != '=')
			continue;
		uint64_t v = 0;
		size_t j = i + 3, digits = 0;
		for (; j < blen && name[j] >= '0' && name[j] <= '9' && digits < 19; j++, digits++)
			v = v * 10 + (uint64_t)(name[j] - '0');
		if (digits == 0 || (j < blen && name[j] != ','))
			return false;
		*v_r = v;
		return true;
	}
	return false;
}

/* fd (just opened) if it is a regular file; else it is closed and -1
 * with errno EINVAL. The open was non-blocking, so a FIFO put in the
 * Maildir did not stop the agent; reads of a regular file do not care. */
static int regular_only(int fd)
{
	struct stat st;
	if (fd < 0)
		return -1;
	if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode))
		return fd;
	close(fd);
	errno = EINVAL;
	return -1;
}

/* Size as sent and file size by reading the file (no W= in the name). */
static int measure(int dirfd, const char *name, uint64_t *size_r, uint64_t *file_size_r)
{
	int fd = regular_only(openat(dirfd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK));
	if (fd < 0)
		return -1;
	struct pop3_sizer s;
	pop3_sizer_init(&s);
	char *chunk = xmalloc(READ_CHUNK);
	uint64_t total = 0;
	ssize_t n;
	while ((n = read(fd, chunk, READ_CHUNK)) != 0) {
		if (n < 0) {
			if (errno == EINTR)
				continue;
			int e = errno;
			free(chunk);
			close(fd);
			errno = e;
			return -1;
		}
		pop3_sizer_add(&s, chunk, (size_t)n);
		total += (uint64_t)n;
	}
	free(chunk);
	close(fd);
	*size_r = pop3_sizer_end(&s);
	*file_size_r = total;
	return 0;
}

/* Move every message of new/ into cur/ with an empty info. */
static void move_new(const char *path)
{
	char *newdir = NULL, *curdir = NULL;
	buf_t b = BUF_INIT;
	buf_printf(&b, "%s/new", path);
	newdir = buf_steal(&b);
	buf_printf(&b, "%s/cur", path);
	curdir = buf_steal(&b);
	int nfd = open(newdir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	int cfd = open(curdir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	DIR *d = nfd >= 0 && cfd >= 0 ? fdopendir(nfd) : NULL;
	if (d != NULL) {
		nfd = -1; /* closedir closes it */
		struct dirent *de;
		while ((de = readdir(d)) != NULL) {
			if (de->d_name[0] == '.' || strlen(de->d_name) > NAME_MAX_LEN - 3)
				continue;
			buf_reset(&b);
			buf_puts(&b, de->d_name);
			if (strchr(de->d_name, ':') == NULL)
				buf_puts(&b, ":2,");
			/* ENOENT: another session moved it first. */
			(void)renameat(dirfd(d), de->d_name, cfd, buf_cstr(&b));
		}
		closedir(d);
	}
	if (nfd >= 0)
		close(nfd);
	if (cfd >= 0)
		close(cfd);
	buf_free(&b);
	free(newdir);
	free(curdir);
}

/* Arrival order: the leading number of the name (seconds), then the name. */
static int mail_cmp(const void *a, const void *b)
{
	const struct pop3_mail *x = a, *y = b;
	unsigned long long tx = strtoull(x->name, NULL, 10), ty = strtoull(y->name, NULL, 10);
	if (tx != ty)
		return tx < ty ? -1 : 1;
	return strcmp(x->name, y->name);
}

static int list_cur(struct pop3_maildrop *md, char **err_r)
{
	buf_t b = BUF_INIT;
	buf_printf(&b, "%s/cur", md->path);
	int cfd = open(buf_cstr(&b), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	DIR *d = cfd >= 0 ? fdopendir(cfd) : NULL;
	if (d == NULL) {
		int e = errno;
		if (cfd >= 0)
			close(cfd);
		if (e == ENOENT) {
			buf_free(&b);
			return 0; /* no cur/ yet: nothing was delivered */
		}
		buf_reset(&b);
		buf_printf(&b, "cannot read %s/cur: %s", md->path, strerror(e));
		*err_r = buf_steal(&b);
		return -1;
	}
	size_t cap = 0;
	struct dirent *de;
	while ((de = readdir(d)) != NULL) {
		const char *name = de->d_name;
		if (name[0] == '.' || strlen(name) > NAME_MAX_LEN ||
		    (de->d_type != DT_REG && de->d_type != DT_UNKNOWN))
			continue; /* not a message (a directory, a FIFO, a link) */
		size_t blen = base_len(name);
		struct pop3_mail m = { 0 };
		bool have_w = name_field(name, blen, 'W', &m.size);
		bool have_s = name_field(name, blen, 'S', &m.file_size);
		if (!have_w || !have_s) {
			uint64_t size, file_size;
			if (measure(dirfd(d), name, &size, &file_size) < 0)
				continue; /* gone meanwhile, or not a file we can read */
			m.size = have_w ? m.size : size;
			m.file_size = file_size;
		}
		m.name = xstrdup(name);
		pop3_uid_of(name, blen, m.uid);
		if (md->count == cap) {
			cap = cap != 0 ? cap * 2 : 64;
			md->mails = xreallocarray(md->mails, cap, sizeof(*md->mails));
		}
		md->mails[md->count++] = m;
	}
	closedir(d);
	buf_free(&b);
	if (md->count > 0)
		qsort(md->mails, md->count, sizeof(*md->mails), mail_cmp);
	/* The oldest POP3_MAILDROP_MAX; the others wait for a later session. */
	while (md->count > POP3_MAILDROP_MAX)
		free(md->mails[--md->count].name);
	return 0;
}

enum pop3_open_result pop3_maildrop_open(const char *path, struct pop3_maildrop *md,
					 char **err_r)
{
	memset(md, 0, sizeof(*md));
	md->lock_fd = -1;
	md->path = xstrdup(path);
	buf_t b = BUF_INIT;
	buf_printf(&b, "%s/" POP3_LOCK_NAME, path);
	md->lock_fd = open(buf_cstr(&b), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (md->lock_fd < 0 && errno != ENOENT) {
		int e = errno;
		buf_reset(&b);
		buf_printf(&b, "cannot open %s/" POP3_LOCK_NAME ": %s", path, strerror(e));
		*err_r = buf_steal(&b);
		pop3_maildrop_close(md);
		return POP3_OPEN_FAILED;
	}
	buf_free(&b);
	if (md->lock_fd < 0)
		return POP3_OPEN_OK; /* no Maildir yet: an empty maildrop */
	if (flock(md->lock_fd, LOCK_EX | LOCK_NB) < 0) {
		pop3_maildrop_close(md);
		return POP3_OPEN_IN_USE;
	}
	move_new(path);
	if (list_cur(md, err_r) < 0) {
		pop3_maildrop_close(md);
		return POP3_OPEN_FAILED;
	}
	return POP3_OPEN_OK;
}

/* Look for message i's file under another name (flags changed by
 * someone else); true with its name updated if found. */
static bool refind(struct pop3_maildrop *md, size_t i)
{
	struct pop3_mail *m = &md->mails[i];
	size_t blen = base_len(m->name);
	buf_t b = BUF_INIT;
	buf_printf(&b, "%s/cur", md->path);
	DIR *d = opendir(buf_cstr(&b));
	buf_free(&b);
	if (d == NULL)
		return false;
	bool found = false;
	struct dirent *de;
	while (!found && (de = readdir(d)) != NULL) {
		if (strncmp(de->d_name, m->name, blen) == 0 &&
		    (de->d_name[blen] == ':' || de->d_name[blen] == '\0')) {
			free(m->name);
			m->name = xstrdup(de->d_name);
			found = true;
		}
	}
	closedir(d);
	return found;
}

static int open_in_cur(const struct pop3_maildrop *md, const char *name)
{
	buf_t b = BUF_INIT;
	buf_printf(&b, "%s/cur/%s", md->path, name);
	int fd = regular_only(open(buf_cstr(&b), O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK));
	int e = errno;
	buf_free(&b);
	errno = e;
	return fd;
}

int pop3_maildrop_open_mail(struct pop3_maildrop *md, size_t i)
{
	if (i >= md->count) {
		errno = EINVAL;
		return -1;
	}
	int fd = open_in_cur(md, md->mails[i].name);
	if (fd < 0 && errno == ENOENT && refind(md, i))
		fd = open_in_cur(md, md->mails[i].name);
	return fd;
}

char *pop3_name_with_flag(const char *name, char flag)
{
	const char *info = strchr(name, ':');
	buf_t b = BUF_INIT;
	if (info == NULL) {
		buf_printf(&b, "%s:2,%c", name, flag);
		return buf_steal(&b);
	}
	if (strncmp(info, ":2,", 3) != 0 || strchr(info + 3, flag) != NULL)
		return NULL;
	buf_append(&b, name, (size_t)(info - name) + 3);
	const char *flags = info + 3;
	bool placed = false;
	for (const char *f = flags; *f != '\0'; f++) {
		if (!placed && *f > flag) {
			buf_putc(&b, flag);
			placed = true;
		}
		buf_putc(&b, *f);
	}
	if (!placed)
		buf_putc(&b, flag);
	return buf_steal(&b);
}

/* Run op (unlink or rename to the flagged name) on message i, finding
 * the file again if it was renamed. 0, 1 if gone, -1 with errno. */
static int on_file(struct pop3_maildrop *md, size_t i, bool remove)
{
	for (int attempt = 0; attempt < 2; attempt++) {
		struct pop3_mail *m = &md->mails[i];
		buf_t from = BUF_INIT;
		buf_printf(&from, "%s/cur/%s", md->path, m->name);
		int rc;
		if (remove) {
			rc = unlink(buf_cstr(&from));
		} else {
			char *flagged = pop3_name_with_flag(m->name, 'S');
			if (flagged == NULL) {
				buf_free(&from);
				return 0; /* seen already */
			}
			buf_t to = BUF_INIT;
			buf_printf(&to, "%s/cur/%s", md->path, flagged);
			rc = rename(buf_cstr(&from), buf_cstr(&to));
			if (rc == 0) {
				free(m->name);
				m->name = flagged;
			} else {
				free(flagged);
			}
			buf_free(&to);
		}
		int e = errno;
		buf_free(&from);
		if (rc == 0)
			return 0;
		if (e != ENOENT) {
			errno = e;
			return -1;
		}
		if (attempt == 0 && !refind(md, i))
			return 1;
	}
	return 1;
}

int pop3_maildrop_update(struct pop3_maildrop *md, const uint8_t *marks,
			 struct pop3_update_result *r, char **err_r)
{
	memset(r, 0, sizeof(*r));
	buf_t errors = BUF_INIT;
	for (size_t i = 0; i < md->count; i++) {
		bool del = (marks[i] & POP3_MARK_DELETE) != 0;
		if (!del && !(marks[i] & POP3_MARK_SEEN))
			continue;
		int rc = on_file(md, i, del);
		if (rc < 0 && del) {
			r->failed++;
			if (errors.len == 0)
				buf_printf(&errors, "cannot remove %s/cur/%s: %s", md->path,
					   md->mails[i].name, strerror(errno));
		} else if (rc == 1 && del) {
			r->gone++;
		} else if (rc == 0 && del) {
			r->deleted++;
			r->freed_bytes += md->mails[i].file_size;
		}
	}
	/* Maildir++: the usage goes down by what was removed (Dovecot and the
	 * quota checks read the same maildirsize). */
	char *quota_err = NULL;
	if (r->deleted > 0 &&
	    maildir_quota_add(md->path, -(int64_t)r->freed_bytes, -(int64_t)r->deleted,
			      &quota_err) < 0) {
		if (errors.len == 0)
			buf_puts(&errors, quota_err);
		free(quota_err);
	}
	if (errors.len == 0) {
		buf_free(&errors);
		return 0;
	}
	*err_r = buf_steal(&errors);
	return r->failed > 0 ? -1 : 0;
}

void pop3_maildrop_close(struct pop3_maildrop *md)
{
	for (size_t i = 0; i < md->count; i++)
		free(md->mails[i].name);
	xfree(&md->mails);
	md->count = 0;
	if (md->lock_fd >= 0)
		close(md->lock_fd);
	md->lock_fd = -1;
	xfree(&md->path);
}

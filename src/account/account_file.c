/*
 * account_file.c - locked, atomic editing of users_file and domains_file
 * (see account_file.h).
 *
 * Untrusted input: the file being edited (bounded). Privilege: the
 * invoking user (the `postern user` and `postern domain` commands).
 */
#include "account_file.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../lib/safeio.h"
#include "../lib/xalloc.h"

char *account_secret_dup(const char *s)
{
	return xstrdup(s);
}

void account_wipe_free(char *s)
{
	if (s == NULL)
		return;
	explicit_bzero(s, strlen(s));
	free(s);
}

static void add_line(struct account_file *f, char *text, bool owned)
{
	if (f->count == f->cap) {
		f->cap = f->cap != 0 ? f->cap * 2 : 64;
		f->lines = xreallocarray(f->lines, f->cap, sizeof(*f->lines));
		f->owned = xreallocarray(f->owned, f->cap, sizeof(*f->owned));
	}
	f->lines[f->count] = text;
	f->owned[f->count] = owned;
	f->count++;
}

/* Cut the text into lines in place ("\n" becomes NUL; a "\r" before it
 * stays part of the line, so that the line is written back as it was). */
static void split_lines(struct account_file *f)
{
	char *p = f->text.data, *end = p + f->text.len;
	f->final_newline = true;
	while (p != NULL && p < end) {
		char *nl = memchr(p, '\n', (size_t)(end - p));
		if (nl == NULL) {
			f->final_newline = false;
			add_line(f, p, false); /* the buffer holds a NUL after its end */
			break;
		}
		*nl = '\0';
		add_line(f, p, false);
		p = nl + 1;
	}
}

/* The file the path names once its symbolic links are followed; the path
 * itself when it does not exist yet. */
static char *resolve(const char *path)
{
	char *real = realpath(path, NULL);
	return real != NULL ? real : xstrdup(path);
}

static int open_dir(struct account_file *f, bool lock, FILE *errors)
{
	char *copy = xstrdup(f->real_path);
	const char *dir = dirname(copy);
	f->dir_fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (f->dir_fd < 0) {
		fprintf(errors, "%s %s: cannot open its folder %s: %s\n", f->key, f->path, dir,
			strerror(errno));
		free(copy);
		return -1;
	}
	free(copy);
	while (lock && flock(f->dir_fd, LOCK_EX) < 0) {
		if (errno == EINTR)
			continue;
		fprintf(errors, "%s %s: cannot lock its folder: %s\n", f->key, f->path,
			strerror(errno));
		return -1;
	}
	return 0;
}

int account_file_open(struct account_file *f, const char *key, const char *path,
		      bool secret, bool lock, mode_t new_mode, size_t max_len, FILE *errors)
{
	memset(f, 0, sizeof(*f));
	f->key = key;
	f->dir_fd = -1;
	f->secret = secret;
	f->new_mode = new_mode;
	f->path = xstrdup(path);
	f->real_path = resolve(path);
	if (open_dir(f, lock, errors) < 0)
		return -1;
	int rc = secret ? safeio_read_file_secret(f->real_path, max_len, &f->text)
			: safeio_read_file(f->real_path, max_len, &f->text);
	if (rc < 0 && errno == ENOENT) {
		f->exists = false;
		f->final_newline = true;
		return 0;
	}
	if (rc < 0) {
		fprintf(errors, "%s %s: cannot read: %s\n", key, path,
			errno == EFBIG ? "the file is too large" : strerror(errno));
		return -1;
	}
	f->exists = true;
	if (f->text.len > 0 && memchr(f->text.data, '\0', f->text.len) != NULL) {
		fprintf(errors, "%s %s: the file contains a NUL byte: fix it by hand first\n",
			key, path);
		return -1;
	}
	split_lines(f);
	return 0;
}

static void free_line(struct account_file *f, size_t i)
{
	if (f->owned[i] && f->secret)
		account_wipe_free(f->lines[i]);
	else if (f->owned[i])
		free(f->lines[i]);
	f->lines[i] = NULL;
	f->owned[i] = false;
}

void account_file_set(struct account_file *f, size_t i, const char *text)
{
	free_line(f, i);
	f->lines[i] = xstrdup(text);
	f->owned[i] = true;
}

void account_file_delete(struct account_file *f, size_t i)
{
	free_line(f, i);
}

void account_file_append(struct account_file *f, const char *text)
{
	/* a last line without "\n" gets one before the new line */
	f->final_newline = true;
	add_line(f, xstrdup(text), true);
}

void account_file_render(const struct account_file *f, bool blank_deleted, buf_t *out)
{
	size_t last = f->count, total = 1;
	while (last > 0 && f->lines[last - 1] == NULL && !blank_deleted)
		last--;
	for (size_t i = 0; i < f->count; i++)
		total += f->lines[i] != NULL ? strlen(f->lines[i]) + 1 : 1;
	buf_reserve(out, total); /* one allocation: no copy of a hash left by a realloc */
	for (size_t i = 0; i < f->count; i++) {
		if (f->lines[i] == NULL && !blank_deleted)
			continue;
		buf_puts(out, f->lines[i] != NULL ? f->lines[i] : "");
		if (i + 1 < last || f->final_newline)
			buf_putc(out, '\n');
	}
}

/* Mode and owner of the replacement: the old file's, or new_mode and
 * ours for a new file. */
static int copy_attributes(const struct account_file *f, int fd, FILE *errors)
{
	struct stat st, made;
	mode_t mode = f->new_mode;
	if (f->exists && stat(f->real_path, &st) == 0 && fstat(fd, &made) == 0) {
		mode = st.st_mode & 07777;
		if ((st.st_uid != made.st_uid || st.st_gid != made.st_gid) &&
		    fchown(fd, st.st_uid, st.st_gid) < 0) {
			fprintf(errors, "%s %s: cannot give the new file the owner of the old one "
				"(%lu:%lu): %s\n", f->key, f->path, (unsigned long)st.st_uid,
				(unsigned long)st.st_gid, strerror(errno));
			return -1;
		}
	}
	if (fchmod(fd, mode) < 0) {
		fprintf(errors, "%s %s: cannot set the mode of the new file: %s\n", f->key,
			f->path, strerror(errno));
		return -1;
	}
	return 0;
}

int account_file_commit(struct account_file *f, FILE *errors)
{
	char *copy = xstrdup(f->real_path);
	size_t tmp_size = strlen(f->real_path) + 16;
	char *tmp = xmalloc(tmp_size);
	char *slash = strrchr(copy, '/');
	const char *base = slash != NULL ? slash + 1 : copy;
	if (slash != NULL)
		*slash = '\0';
	snprintf(tmp, tmp_size, "%s%s.%s.XXXXXX", slash != NULL ? copy : "", slash != NULL ? "/" : "",
		base);
	buf_t out = BUF_INIT;
	int rc = -1;
	int fd = mkostemp(tmp, O_CLOEXEC);
	if (fd < 0) {
		fprintf(errors, "%s %s: cannot create a temporary file beside it: %s\n", f->key,
			f->path, strerror(errno));
		goto done;
	}
	account_file_render(f, false, &out);
	if (copy_attributes(f, fd, errors) < 0)
		goto fail;
	if (safeio_write_all(fd, out.data != NULL ? out.data : "", out.len) < 0 ||
	    fsync(fd) < 0) {
		fprintf(errors, "%s %s: cannot write %s: %s\n", f->key, f->path, tmp,
			strerror(errno));
		goto fail;
	}
	if (close(fd) < 0) {
		fd = -1;
		fprintf(errors, "%s %s: cannot write %s: %s\n", f->key, f->path, tmp,
			strerror(errno));
		goto fail;
	}
	fd = -1;
	if (rename(tmp, f->real_path) < 0) {
		fprintf(errors, "%s %s: cannot replace it: %s\n", f->key, f->path, strerror(errno));
		goto fail;
	}
	if (fsync(f->dir_fd) < 0)
		fprintf(errors, "%s %s: replaced, but its folder cannot be synced: %s\n", f->key,
			f->path, strerror(errno));
	f->exists = true;
	rc = 0;
	goto done;
fail:
	if (fd >= 0)
		close(fd);
	unlink(tmp);
done:
	if (f->secret)
		safeio_free_secret(&out);
	else
		buf_free(&out);
	free(tmp);
	free(copy);
	return rc;
}

void account_file_close(struct account_file *f)
{
	for (size_t i = 0; i < f->count; i++)
		free_line(f, i);
	free(f->lines);
	free(f->owned);
	if (f->secret)
		safeio_free_secret(&f->text);
	else
		buf_free(&f->text);
	if (f->dir_fd >= 0)
		close(f->dir_fd); /* releases the lock */
	free(f->path);
	free(f->real_path);
	memset(f, 0, sizeof(*f));
	f->dir_fd = -1;
}

/*
 * account_users.c - users_file entries for `postern user` (see
 * account_users.h). Lines are split with passwd_line_split on wiped
 * copies; unchanged lines are never rebuilt.
 *
 * Untrusted input: users_file (administrator-written, bounded).
 * Privilege: the invoking user.
 */
#include "account_users.h"
#include "account_password.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "../lib/buf.h"
#include "../lib/config.h"
#include "../lib/diag.h"
#include "../lib/hashmap.h"
#include "../lib/strutil.h"
#include "../lib/xalloc.h"
#include "../mail/passwd_line.h"

bool account_users_valid_address(const char *s)
{
	for (const char *p = s; *p != '\0'; p++)
		if (*p >= 'A' && *p <= 'Z')
			return false;
	return strlen(s) <= 320 && config_valid_address(s);
}

static void line_error(FILE *errors, const char *path, size_t i, const char *fmt, ...)
	PRINTF_LIKE(4, 5);

static void line_error(FILE *errors, const char *path, size_t i, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	diag_vprint(errors, path, account_users_lineno(i), fmt, ap);
	va_end(ap);
}

/* A wiped-on-free copy of line i without a trailing CR; *cr_r tells
 * whether it had one. */
static char *line_copy(const struct account_users *u, size_t i, bool *cr_r)
{
	char *copy = account_secret_dup(u->file.lines[i]);
	size_t len = strlen(copy);
	*cr_r = len > 0 && copy[len - 1] == '\r';
	if (*cr_r)
		copy[len - 1] = '\0';
	return copy;
}

static bool is_entry_text(const char *line)
{
	if (line[0] == '#')
		return false;
	return line[strspn(line, " \t\r")] != '\0';
}

/* Check entry line i and note its address; false (printed) if bad. */
static bool read_entry(struct account_users *u, size_t i, hashmap_t *seen, FILE *errors)
{
	const char *path = u->file.path;
	bool cr;
	if (strlen(u->file.lines[i]) > ACCOUNT_USERS_LINE_MAX) {
		line_error(errors, path, i, "line longer than %d bytes", ACCOUNT_USERS_LINE_MAX);
		return false;
	}
	char *copy = line_copy(u, i, &cr);
	struct passwd_line f;
	bool ok = false;
	if (!passwd_line_split(copy, &f)) {
		line_error(errors, path, i, "expected user@domain:{SCHEME}password:...");
	} else {
		str_lower(f.user);
		if (!account_users_valid_address(f.user)) {
			line_error(errors, path, i, "user \"%s\" is not an address local@domain",
				   f.user);
		} else if (hashmap_contains(seen, f.user)) {
			line_error(errors, path, i, "user \"%s\" is listed twice (first on line %u)",
				   f.user, account_users_lineno((size_t)(uintptr_t)hashmap_get(
						   seen, f.user, NULL) - 1));
		} else {
			hashmap_put(seen, f.user, (void *)(uintptr_t)(i + 1));
			u->addresses[i] = xstrdup(f.user);
			ok = true;
		}
	}
	account_wipe_free(copy);
	return ok;
}

int account_users_open(struct account_users *u, const char *path, bool lock, FILE *errors)
{
	memset(u, 0, sizeof(*u));
	if (account_file_open(&u->file, "users_file", path, true, lock, 0600,
			      ACCOUNT_USERS_FILE_MAX, errors) < 0)
		return -1;
	u->addresses = xcalloc(u->file.count + 1, sizeof(*u->addresses));
	hashmap_t seen = HASHMAP_INIT;
	int problems = 0;
	for (size_t i = 0; i < u->file.count; i++)
		if (is_entry_text(u->file.lines[i]) && !read_entry(u, i, &seen, errors))
			problems++;
	hashmap_free(&seen, NULL);
	if (problems > 0) {
		fprintf(errors, "%s: fix the lines above first: nothing changed\n", path);
		return -1;
	}
	return 0;
}

void account_users_close(struct account_users *u)
{
	for (size_t i = 0; u->addresses != NULL && i < u->file.count; i++)
		free(u->addresses[i]);
	free(u->addresses);
	account_file_close(&u->file);
	u->addresses = NULL;
}

long account_users_find(const struct account_users *u, const char *address)
{
	for (size_t i = 0; i < u->file.count; i++)
		if (u->addresses[i] != NULL && u->file.lines[i] != NULL &&
		    strcmp(u->addresses[i], address) == 0)
			return (long)i;
	return -1;
}

char *account_users_entry(const char *address, const char *hash, const char *extra)
{
	buf_t b = BUF_INIT;
	buf_reserve(&b, strlen(address) + strlen(hash) + strlen(extra) + 16);
	buf_printf(&b, "%s:%s::::::%s", address, hash, extra);
	return buf_steal(&b);
}

/* Fields back into a line; with set_extra, extra replaces the extra
 * fields and the empty fields before it are written out. */
static char *join(const struct passwd_line *f, const char *password, bool set_extra,
		  const char *extra, bool cr)
{
	const char *middle[] = { f->uid, f->gid, f->gecos, f->home, f->shell };
	size_t n = sizeof(middle) / sizeof(middle[0]);
	size_t size = strlen(f->user) + strlen(password) + 16 +
		      strlen(set_extra ? extra : f->extra != NULL ? f->extra : "");
	for (size_t k = 0; k < n; k++)
		size += middle[k] != NULL ? strlen(middle[k]) : 0;
	buf_t b = BUF_INIT;
	buf_reserve(&b, size); /* one allocation: no stray copy of the hash */
	buf_printf(&b, "%s:%s", f->user, password);
	for (size_t k = 0; k < n; k++) {
		if (middle[k] == NULL && !set_extra)
			break;
		buf_printf(&b, ":%s", middle[k] != NULL ? middle[k] : "");
	}
	if (set_extra)
		buf_printf(&b, ":%s", extra);
	else if (f->extra != NULL)
		buf_printf(&b, ":%s", f->extra);
	if (cr)
		buf_putc(&b, '\r');
	return buf_steal(&b);
}

char *account_users_with_password(const struct account_users *u, size_t i, const char *hash)
{
	bool cr;
	char *copy = line_copy(u, i, &cr);
	struct passwd_line f;
	char *line = NULL;
	if (passwd_line_split(copy, &f))
		line = join(&f, hash, false, NULL, cr);
	account_wipe_free(copy);
	return line;
}

/* extra without its quota rule words, plus the new one if size != NULL. */
static char *extra_with_quota(const char *extra, const char *size)
{
	buf_t b = BUF_INIT;
	size_t key_len = strlen(ACCOUNT_QUOTA_FIELD);
	const char *p = extra != NULL ? extra : "";
	while (*p != '\0') {
		p += strspn(p, " \t");
		size_t len = strcspn(p, " \t");
		bool quota = len > key_len && strncmp(p, ACCOUNT_QUOTA_FIELD, key_len) == 0 &&
			     p[key_len] == '=';
		if (len > 0 && !quota) {
			if (b.len > 0)
				buf_putc(&b, ' ');
			buf_append(&b, p, len);
		}
		p += len;
	}
	if (size != NULL)
		buf_printf(&b, "%s%s=%s%s", b.len > 0 ? " " : "", ACCOUNT_QUOTA_FIELD,
			   ACCOUNT_QUOTA_PREFIX, size);
	buf_putc(&b, '\0'); /* an empty result is "" rather than NULL */
	return buf_steal(&b);
}

char *account_users_with_quota(const struct account_users *u, size_t i, const char *size)
{
	bool cr;
	char *copy = line_copy(u, i, &cr);
	struct passwd_line f;
	char *line = NULL;
	if (passwd_line_split(copy, &f)) {
		char *extra = extra_with_quota(f.extra, size);
		line = join(&f, f.password, true, extra, cr);
		free(extra);
	}
	account_wipe_free(copy);
	return line;
}

static char *copy_field(const char *s)
{
	return s != NULL && s[0] != '\0' ? xstrdup(s) : NULL;
}

void account_users_info(const struct account_users *u, size_t i, struct account_user_info *r)
{
	bool cr;
	char *copy = line_copy(u, i, &cr);
	struct passwd_line f;
	char rule[128];
	memset(r, 0, sizeof(*r));
	r->scheme = "unknown";
	if (passwd_line_split(copy, &f)) {
		r->scheme = account_password_scheme(f.password);
		r->uid = copy_field(f.uid);
		r->gid = copy_field(f.gid);
		r->home = copy_field(f.home);
		size_t plen = strlen(ACCOUNT_QUOTA_PREFIX);
		if (passwd_line_extra(f.extra, ACCOUNT_QUOTA_FIELD, rule, sizeof(rule))) {
			snprintf(r->rule, sizeof(r->rule), "%s", rule);
			snprintf(r->quota, sizeof(r->quota), "%s",
				 strncmp(rule, ACCOUNT_QUOTA_PREFIX, plen) == 0 ? rule + plen : rule);
		}
		char *rest = extra_with_quota(f.extra, NULL);
		if (rest[0] != '\0')
			r->extra = rest;
		else
			free(rest);
	}
	account_wipe_free(copy);
}

void account_user_info_free(struct account_user_info *r)
{
	free(r->uid);
	free(r->gid);
	free(r->home);
	free(r->extra);
	memset(r, 0, sizeof(*r));
}

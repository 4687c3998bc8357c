/*
 * auth_users.c - the auth process's password table (see auth_users.h).
 * Untrusted input: the users file. Privilege: the auth process.
 */
#include "auth_users.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "../lib/buf.h"
#include "../lib/hashmap.h"
#include "../lib/log.h"
#include "../lib/safeio.h"
#include "../lib/strutil.h"
#include "../lib/xalloc.h"
#include "../mail/passwd_line.h"
#include "auth_verify.h"

#define USERS_FILE_MAX (256ULL * 1024 * 1024)
#define USERS_LINE_MAX 65536

struct auth_users {
	hashmap_t by_user; /* lower-case user@domain -> password field (malloc'ed) */
	const char *timing_field; /* one of by_user's values, or NULL */
};

/* The field of the most common cost class, unless clear-text fields (no
 * cost) are more common still. */
static void choose_timing_field(struct auth_users *u)
{
	hashmap_t classes = HASHMAP_INIT; /* cost class -> count, as a pointer */
	size_t pos = 0, best = 0, plain = 0;
	const char *user;
	void *value;
	while (hashmap_next(&u->by_user, &pos, &user, &value)) {
		const char *field = value;
		char class[64];
		if (!auth_hash_costly(field)) {
			plain += auth_hash_checkable(field);
			continue;
		}
		auth_hash_cost_class(field, class, sizeof(class));
		size_t n = (size_t)(uintptr_t)hashmap_get(&classes, class, NULL) + 1;
		hashmap_put(&classes, class, (void *)(uintptr_t)n);
		if (n > best) {
			best = n;
			u->timing_field = field;
		}
	}
	hashmap_free(&classes, NULL);
	if (plain >= best) /* a tie: the cheap check is the common one */
		u->timing_field = NULL;
}

static void wipe_free(void *p)
{
	if (p != NULL) {
		explicit_bzero(p, strlen(p));
		free(p);
	}
}

static void add_line(struct auth_users *u, char *line, const char *path, unsigned lineno)
{
	struct passwd_line f;
	const char *why = NULL;
	if (!passwd_line_split(line, &f)) {
		log_warn("%s:%u: no password field: no login for this line", path, lineno);
		return;
	}
	str_lower(f.user);
	if (strlen(f.user) > 320 || strchr(f.user, '@') == NULL) {
		log_warn("%s:%u: user is not an address local@domain: no login for it", path,
			 lineno);
		return;
	}
	if (!auth_hash_supported(f.password, &why))
		log_warn("%s:%u: %s: %s cannot log in", path, lineno, why, f.user);
	if (hashmap_contains(&u->by_user, f.user)) {
		log_warn("%s:%u: %s is listed twice: the first line counts", path, lineno, f.user);
		return;
	}
	hashmap_put(&u->by_user, f.user, xstrdup(f.password));
}

struct auth_users *auth_users_parse(char *text, size_t len, const char *path)
{
	struct auth_users *u = xcalloc(1, sizeof(*u));
	char *p = text, *end = text + len;
	unsigned lineno = 0;
	while (p < end) {
		char *nl = memchr(p, '\n', (size_t)(end - p));
		char *eol = nl != NULL ? nl : end;
		size_t n = (size_t)(eol - p);
		lineno++;
		if (n > 0 && p[n - 1] == '\r')
			n--;
		if (n > USERS_LINE_MAX) {
			log_warn("%s:%u: line longer than %d bytes: skipped", path, lineno,
				 USERS_LINE_MAX);
		} else if (n > 0 && p[0] != '#' && memchr(p, '\0', n) == NULL) {
			char saved = p[n];
			p[n] = '\0';
			if (slice_trim(slice_make(p, n)).len > 0)
				add_line(u, p, path, lineno);
			p[n] = saved;
		}
		p = eol + (nl != NULL ? 1 : 0);
	}
	explicit_bzero(text, len);
	choose_timing_field(u);
	return u;
}

struct auth_users *auth_users_load_fd(int fd, const char *path)
{
	if (fd < 0)
		return xcalloc(1, sizeof(struct auth_users));
	buf_t text = BUF_INIT;
	if (safeio_read_fd_secret(fd, USERS_FILE_MAX, &text) < 0) {
		log_error("users_file %s: cannot read: %s", path, strerror(errno));
		return NULL;
	}
	struct auth_users *u = auth_users_parse(text.data != NULL ? text.data : "", text.len,
						path);
	safeio_free_secret(&text);
	return u;
}

void auth_users_free(struct auth_users **up)
{
	struct auth_users *u = *up;
	if (u == NULL)
		return;
	hashmap_free(&u->by_user, wipe_free);
	free(u);
	*up = NULL;
}

const char *auth_users_password(const struct auth_users *u, const char *user)
{
	return hashmap_get(&u->by_user, user, NULL);
}

const char *auth_users_timing_field(const struct auth_users *u)
{
	return u->timing_field;
}

size_t auth_users_count(const struct auth_users *u)
{
	return u->by_user.count;
}

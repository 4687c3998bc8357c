/*
 * passwd_line.c - splitting Dovecot passwd-file lines (see passwd_line.h).
 *
 * Untrusted input: administrator-written lines. Privilege: whichever
 * role reads the users file (supervisor, auth process, the CLI).
 */
#include "passwd_line.h"

#include <string.h>

/* Cut the next ':'-separated field off *rest; NULL when none is left. */
static char *next_field(char **rest)
{
	char *field = *rest;
	if (field == NULL)
		return NULL;
	char *colon = strchr(field, ':');
	if (colon != NULL)
		*colon++ = '\0';
	*rest = colon;
	return field;
}

bool passwd_line_split(char *line, struct passwd_line *r)
{
	char *rest = line;
	memset(r, 0, sizeof(*r));
	r->user = next_field(&rest);
	if (rest == NULL)
		return false;
	r->password = next_field(&rest);
	r->uid = next_field(&rest);
	r->gid = next_field(&rest);
	r->gecos = next_field(&rest);
	r->home = next_field(&rest);
	r->shell = next_field(&rest);
	r->extra = rest; /* extra fields may hold colons (quota rules do) */
	return true;
}

bool passwd_line_extra(const char *extra, const char *key, char *value_r, size_t value_size)
{
	size_t key_len = strlen(key);
	const char *p = extra;
	if (p == NULL || key_len == 0 || value_size == 0)
		return false;
	while (*p != '\0') {
		while (*p == ' ' || *p == '\t')
			p++;
		const char *end = p + strcspn(p, " \t");
		if ((size_t)(end - p) >= key_len && strncmp(p, key, key_len) == 0 &&
		    (p[key_len] == '=' || p + key_len == end)) {
			const char *v = p + key_len + (p[key_len] == '=' ? 1 : 0);
			size_t len = (size_t)(end - v);
			if (len >= value_size)
				return false;
			memcpy(value_r, v, len);
			value_r[len] = '\0';
			return true;
		}
		p = end;
	}
	return false;
}

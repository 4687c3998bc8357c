/*
 * recipients.c - virtual users (Dovecot passwd-file) and aliases (see
 * recipients.h). Files are administrator input read by the supervisor as
 * root before the roles fork; each line is bounded and each problem is
 * reported as "FILE:LINE: message". The users file is read with
 * safeio_read_file_secret and parsed in place, so the only copy of its password
 * hashes is the buffer wiped by safeio_free_secret before the roles fork.
 * recipients_load_users_text runs the same line checks on a text
 * `postern user` is about to write (its caller wipes that buffer).
 */
#include "recipients.h"
#include "domains.h"
#include "passwd_line.h"
#include "quota_rule.h"

#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "../lib/buf.h"
#include "../lib/diag.h"
#include "../lib/hashmap.h"
#include "../lib/safeio.h"
#include "../lib/xalloc.h"

#define TABLE_FILE_MAX (256ULL * 1024 * 1024)
#define TABLE_LINE_MAX 65536

struct recipient_tables {
	size_t quota_rules; /* users with their own userdb_quota_rule */
	/* address -> NULL, or a struct user_quota * when the line has
	 * userdb_quota_rule; no password is kept */
	hashmap_t users;
	hashmap_t aliases; /* address -> strlist_t * */
	struct domain_table *domains; /* local domains (domains.c); NULL = none attached */
};

/* A user's own quota rule; 0 = no such limit. */
struct user_quota {
	uint64_t bytes;
	uint64_t messages;
};

struct table_file {
	const char *key; /* the configuration key naming the file */
	const char *path;
	FILE *errors;
	int error_count;
	const struct recipients_owner *owner; /* users file: the uid/gid check */
};

static void table_error(struct table_file *tf, unsigned line, const char *fmt, ...)
	PRINTF_LIKE(3, 4);

static void table_error(struct table_file *tf, unsigned line, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	diag_vprint(tf->errors, tf->path, line, fmt, ap);
	va_end(ap);
	tf->error_count++;
}

/* A table key: local@domain, no white space, one '@' not at either end. */
static bool valid_table_address(const char *s)
{
	const char *at = strrchr(s, '@');
	if (at == NULL || at == s || at[1] == '\0' || strlen(s) > 320)
		return false;
	for (const char *p = s; *p != '\0'; p++)
		if ((unsigned char)*p <= ' ' || *p == ',' || *p == ':' || *p == '<' || *p == '>')
			return false;
	return true;
}

/* Iterate over logical lines: '#' comments and blank lines skipped; for
 * aliases, lines starting with white space continue the previous one.
 * Without continuations (the users file) each line is handed over in
 * place, never copied, so that no stray copy of a password survives. */
typedef void line_fn(struct recipient_tables *t, struct table_file *tf,
		     char *line, unsigned lineno);

static void for_each_line(struct recipient_tables *t, struct table_file *tf,
			  buf_t *text, bool continuations, line_fn *fn)
{
	buf_t logical = BUF_INIT;
	unsigned lineno = 0, start_line = 0;
	char *p = text->data != NULL ? text->data : "", *end = p + text->len;
	while (p < end) {
		char *nl = memchr(p, '\n', (size_t)(end - p));
		char *eol = nl ? nl : end;
		lineno++;
		bool has_nul = memchr(p, '\0', (size_t)(eol - p)) != NULL;
		*eol = '\0';
		if (eol > p && eol[-1] == '\r')
			eol[-1] = '\0';
		size_t len = strlen(p);
		if (has_nul)
			table_error(tf, lineno, "line contains a NUL byte");
		else if (len > TABLE_LINE_MAX)
			table_error(tf, lineno, "line longer than %d bytes", TABLE_LINE_MAX);
		else if (p[0] == '#' || slice_trim(slice_from_cstr(p)).len == 0)
			; /* comment or blank */
		else if (!continuations)
			fn(t, tf, p, lineno);
		else if (continuations && (p[0] == ' ' || p[0] == '\t') && logical.len > 0)
			buf_printf(&logical, " %s", p);
		else {
			if (logical.len > 0)
				fn(t, tf, logical.data, start_line);
			buf_reset(&logical);
			buf_puts(&logical, p);
			start_line = lineno;
		}
		p = eol + 1;
	}
	if (logical.len > 0)
		fn(t, tf, logical.data, start_line);
	buf_free(&logical);
}

/* The numeric id a uid or gid field names (a number, or a user or group
 * name); false if it names nothing. */
static bool field_id(const char *field, bool group, uint64_t *id_r)
{
	if (str_parse_uint(field, id_r))
		return true;
	if (group) {
		struct group *gr = getgrnam(field);
		if (gr != NULL)
			*id_r = gr->gr_gid;
		return gr != NULL;
	}
	struct passwd *pw = getpwnam(field);
	if (pw != NULL)
		*id_r = pw->pw_uid;
	return pw != NULL;
}

/* An empty uid/gid field is fine; one that names the mailbox owner is
 * honoured (it is what postern does anyway); anything else is refused. */
static bool owner_field_ok(struct table_file *tf, unsigned lineno,
			   const char *what, const char *field, bool group)
{
	const struct recipients_owner *o = tf->owner;
	uint64_t id = 0;

	if (field == NULL || field[0] == '\0' || o == NULL)
		return true;
	uint64_t want = group ? (uint64_t)o->gid : (uint64_t)o->uid;
	if (!field_id(field, group, &id)) {
		table_error(tf, lineno, "%s \"%s\" is no %s on this system: postern writes "
			    "every mailbox as %s (%s %llu); leave the field empty",
			    what, field, group ? "group" : "user", o->label, what,
			    (unsigned long long)want);
		return false;
	}
	if (id != want) {
		table_error(tf, lineno, "%s \"%s\" is not the one of %s (%s %llu): postern "
			    "writes every mailbox as mail_owner, so leave the field empty "
			    "or set it to %llu", what, field, o->label, what,
			    (unsigned long long)want, (unsigned long long)want);
		return false;
	}
	return true;
}

/* The user's own quota, from the extra field userdb_quota_rule (Dovecot's
 * name, so that Dovecot reading the same file enforces the same limit):
 * *quota_r is NULL without one, else malloc'ed. */
static bool user_quota(struct table_file *tf, unsigned lineno, const char *extra,
		       struct user_quota **quota_r)
{
	const char *why = NULL;
	uint64_t bytes = 0, messages = 0;
	*quota_r = NULL;
	if (extra == NULL)
		return true;
	size_t size = strlen(extra) + 1; /* any value present fits */
	char *rule = xmalloc(size);
	bool found = passwd_line_extra(extra, "userdb_quota_rule", rule, size);
	bool ok = !found || quota_rule_parse(rule, &bytes, &messages, &why);
	if (!ok)
		table_error(tf, lineno, "userdb_quota_rule=%s: %s", rule, why);
	free(rule);
	if (!found || !ok)
		return ok;
	*quota_r = xmalloc(sizeof(**quota_r));
	(*quota_r)->bytes = bytes;
	(*quota_r)->messages = messages;
	return true;
}

static void user_line(struct recipient_tables *t, struct table_file *tf,
		      char *line, unsigned lineno)
{
	struct passwd_line f;
	if (!passwd_line_split(line, &f)) {
		table_error(tf, lineno, "expected user@domain:{SCHEME}password:...");
		return;
	}
	/* the password is checked by the auth process, never kept here */
	char *user = f.user, *uid = f.uid, *gid = f.gid;
	str_lower(user);
	if (!valid_table_address(user)) {
		table_error(tf, lineno, "user \"%s\" is not an address local@domain", user);
		return;
	}
	bool ids_ok = owner_field_ok(tf, lineno, "uid", uid, false);
	if (!owner_field_ok(tf, lineno, "gid", gid, true) || !ids_ok)
		return;
	if (hashmap_contains(&t->users, user)) {
		table_error(tf, lineno, "user \"%s\" is listed twice", user);
		return;
	}
	struct user_quota *quota = NULL;
	if (!user_quota(tf, lineno, f.extra, &quota))
		return;
	if (quota != NULL)
		t->quota_rules++;
	hashmap_put(&t->users, user, quota);
}

static void alias_line(struct recipient_tables *t, struct table_file *tf,
		       char *line, unsigned lineno)
{
	char *colon = strchr(line, ':');
	if (colon == NULL) {
		table_error(tf, lineno, "expected \"alias@domain: target, ...\"");
		return;
	}
	*colon = '\0';
	slice_t k = slice_trim(slice_from_cstr(line));
	char *key = xstrndup(k.ptr, k.len);
	str_lower(key);
	strlist_t *targets = xcalloc(1, sizeof(*targets));
	strlist_split(targets, colon + 1);
	const char *bad = NULL;
	for (size_t i = 0; i < targets->count && bad == NULL; i++) {
		str_lower(targets->items[i]);
		if (!valid_table_address(targets->items[i]))
			bad = targets->items[i];
	}
	if (!valid_table_address(key))
		table_error(tf, lineno, "alias \"%s\" is not an address local@domain", key);
	else if (targets->count == 0)
		table_error(tf, lineno, "alias \"%s\" has no targets", key);
	else if (targets->count > ALIAS_MAX_TARGETS)
		table_error(tf, lineno, "alias \"%s\" has more than %d targets", key, ALIAS_MAX_TARGETS);
	else if (bad != NULL)
		table_error(tf, lineno, "target \"%s\" is not an address local@domain", bad);
	else if (hashmap_contains(&t->aliases, key))
		table_error(tf, lineno, "alias \"%s\" is listed twice", key);
	else {
		hashmap_put(&t->aliases, key, targets);
		targets = NULL;
	}
	if (targets != NULL) {
		strlist_free(targets);
		free(targets);
	}
	free(key);
}

static int load_table(struct recipient_tables *t, struct table_file *tf,
		      bool continuations, line_fn *fn)
{
	buf_t text = BUF_INIT;
	if (tf->path[0] == '\0')
		return 0;
	if (safeio_read_file_secret(tf->path, TABLE_FILE_MAX, &text) < 0) {
		fprintf(tf->errors, "%s %s: cannot read: %s\n", tf->key, tf->path, strerror(errno));
		return -1;
	}
	for_each_line(t, tf, &text, continuations, fn);
	safeio_free_secret(&text);
	return tf->error_count == 0 ? 0 : -1;
}

/* Both loaders: the users from users_text when it is not NULL (parsed in
 * place, reported as users_file), else from the file users_file. */
static struct recipient_tables *load_tables(const char *users_file, buf_t *users_text,
					    const char *aliases_file,
					    const struct recipients_owner *owner, FILE *errors)
{
	struct recipient_tables *t = xcalloc(1, sizeof(*t));
	struct table_file users = { "users_file", users_file, errors, 0, owner };
	struct table_file aliases = { "aliases_file", aliases_file, errors, 0, NULL };
	int rc;
	if (users_text != NULL) {
		for_each_line(t, &users, users_text, false, user_line);
		rc = users.error_count == 0 ? 0 : -1;
	} else {
		rc = load_table(t, &users, false, user_line);
	}
	if (load_table(t, &aliases, true, alias_line) < 0)
		rc = -1;
	if (rc < 0)
		recipients_free(&t);
	return t;
}

struct recipient_tables *recipients_load(const char *users_file,
					 const char *aliases_file,
					 const struct recipients_owner *owner,
					 FILE *errors)
{
	return load_tables(users_file, NULL, aliases_file, owner, errors);
}

struct recipient_tables *recipients_load_users_text(const char *users_file, buf_t *users_text,
						    const char *aliases_file,
						    const struct recipients_owner *owner,
						    FILE *errors)
{
	if (users_text->len > TABLE_FILE_MAX) {
		fprintf(errors, "users_file %s: cannot read: %s\n", users_file, strerror(EFBIG));
		return NULL;
	}
	buf_reserve(users_text, 1); /* for_each_line ends the last line in place */
	return load_tables(users_file, users_text, aliases_file, owner, errors);
}

static void free_strlist(void *p)
{
	strlist_free(p);
	free(p);
}

void recipients_free(struct recipient_tables **t)
{
	if (*t == NULL)
		return;
	hashmap_free(&(*t)->users, free);
	hashmap_free(&(*t)->aliases, free_strlist);
	domains_free(&(*t)->domains);
	xfree(t);
}

bool recipients_is_user(const struct recipient_tables *t, const char *address)
{
	return hashmap_contains(&t->users, address);
}

uint64_t recipients_quota(const struct recipient_tables *t, const char *address,
			  uint64_t global_default)
{
	const struct user_quota *own = hashmap_get(&t->users, address, NULL);
	if (own != NULL)
		return own->bytes; /* the user's rule, even "0" (no limit), comes first */
	/* then the default of the user's domain (domains_file), then the
	 * global mailbox_quota */
	const char *at = strrchr(address, '@');
	uint64_t domain_default = at != NULL ? recipients_domain_quota(t, at + 1) : 0;
	return domain_default != 0 ? domain_default : global_default;
}

uint64_t recipients_quota_messages(const struct recipient_tables *t, const char *address)
{
	const struct user_quota *own = hashmap_get(&t->users, address, NULL);
	return own != NULL ? own->messages : 0;
}

size_t recipients_quota_rule_count(const struct recipient_tables *t)
{
	return t->quota_rules;
}

const strlist_t *recipients_alias(const struct recipient_tables *t, const char *address)
{
	return hashmap_get(&t->aliases, address, NULL);
}

void recipients_set_domains(struct recipient_tables *t, struct domain_table *domains)
{
	domains_free(&t->domains);
	t->domains = domains;
}

const struct domain_table *recipients_domains(const struct recipient_tables *t)
{
	return t->domains;
}

size_t recipients_user_count(const struct recipient_tables *t)
{
	return t->users.count;
}

size_t recipients_alias_count(const struct recipient_tables *t)
{
	return t->aliases.count;
}

struct expansion {
	const struct recipient_tables *t;
	hashmap_t on_path; /* aliases being expanded above us */
	hashmap_t emitted; /* final targets already in out */
	strlist_t *out;
};

static enum expand_status add_final(struct expansion *x, const char *address)
{
	if (hashmap_contains(&x->emitted, address))
		return EXPAND_OK;
	if (x->emitted.count >= ALIAS_MAX_TARGETS)
		return EXPAND_TOO_MANY;
	hashmap_put(&x->emitted, address, NULL);
	strlist_add(x->out, address);
	return EXPAND_OK;
}

static enum expand_status expand(struct expansion *x, const char *address, unsigned depth)
{
	const strlist_t *targets = recipients_alias(x->t, address);
	const char *catch_all = targets == NULL ? recipients_catch_all(x->t, address) : NULL;
	if (targets == NULL && catch_all == NULL)
		return add_final(x, address);
	if (depth >= ALIAS_MAX_DEPTH || hashmap_contains(&x->on_path, address))
		return EXPAND_LOOP;
	hashmap_put(&x->on_path, address, NULL);
	enum expand_status st = EXPAND_OK;
	if (catch_all != NULL) /* no such mailbox: the domain's catch-all takes it */
		st = expand(x, catch_all, depth + 1);
	for (size_t i = 0; targets != NULL && i < targets->count && st == EXPAND_OK; i++) {
		if (strcmp(targets->items[i], address) == 0)
			st = add_final(x, address); /* "a: a, b" delivers to a itself */
		else
			st = expand(x, targets->items[i], depth + 1);
	}
	hashmap_remove(&x->on_path, address);
	return st;
}

enum expand_status recipients_expand(const struct recipient_tables *t,
				     const char *address, strlist_t *out)
{
	struct expansion x = { t, HASHMAP_INIT, HASHMAP_INIT, out };
	for (size_t i = 0; i < out->count; i++)
		hashmap_put(&x.emitted, out->items[i], NULL);
	enum expand_status st = expand(&x, address, 0);
	hashmap_free(&x.on_path, NULL);
	hashmap_free(&x.emitted, NULL);
	return st;
}

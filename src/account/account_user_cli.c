/*
 * account_user_cli.c - `postern user add|passwd|quota|del|list|show`
 * (see account_cli.h): users_file entries in Dovecot passwd-file format.
 *
 * Untrusted input: the command line, the password (terminal or standard
 * input), users_file, aliases_file and domains_file. Privilege: the
 * invoking user. `user show` never prints a hash.
 */
#include "account_cli.h"
#include "account_password.h"
#include "account_users.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../lib/json.h"
#include "../lib/xalloc.h"
#include "../mail/domains.h"
#include "../mail/recipients.h"

/* What a user command works with: the configuration, its local domains
 * and the users file (opened for editing or reading). */
struct user_job {
	const char *what; /* "user add", for messages */
	struct config *cfg;
	struct domain_table *domains;
	struct account_users users;
	bool opened;
	char *address; /* the ADDRESS argument, lower-cased */
};

static int job_open(struct user_job *j, bool lock)
{
	if (j->cfg->users_file[0] == '\0') {
		fprintf(stderr, "postern %s: %s: users_file is not set: name the file of the users "
			"there (postern.conf(5))\n", j->what, j->cfg->path);
		return -1;
	}
	j->domains = domains_load_config(j->cfg, stderr);
	if (j->domains == NULL)
		return -1;
	j->opened = true; /* closed even when opening fails half-way */
	return account_users_open(&j->users, j->cfg->users_file, lock, stderr);
}

static void job_close(struct user_job *j)
{
	if (j->opened)
		account_users_close(&j->users);
	domains_free(&j->domains);
	free(j->address);
}

/* The index of the ADDRESS's entry, or -1 with "no such user" printed. */
static long existing_user(struct user_job *j)
{
	long i = account_users_find(&j->users, j->address);
	if (i < 0)
		fprintf(stderr, "postern %s: %s: no user %s\n", j->what, j->cfg->users_file,
			j->address);
	return i;
}

/* Is the address an alias? Aliases are looked up before users, so a user
 * of the same name would never get mail. */
static bool is_alias(const struct user_job *j)
{
	if (j->cfg->aliases_file[0] == '\0')
		return false;
	struct recipient_tables *t = recipients_load("", j->cfg->aliases_file, NULL, stderr);
	bool alias = t != NULL && recipients_alias(t, j->address) != NULL;
	recipients_free(&t);
	return alias;
}

static int commit(struct user_job *j, const char *done)
{
	if (account_file_commit(&j->users.file, stderr) < 0)
		return ACCOUNT_CLI_ERROR;
	printf("%s %s\n", done, j->address);
	return ACCOUNT_CLI_OK;
}

static int user_add(struct user_job *j, const struct account_options *o)
{
	char quota[64] = "";
	const char *at = strrchr(j->address, '@');
	if (o->quota != NULL && !account_parse_quota(j->what, o->quota, quota, sizeof(quota)))
		return ACCOUNT_CLI_USAGE;
	if (domains_find(j->domains, at + 1) == NULL) {
		fprintf(stderr, "postern %s: %s is not a local domain: add it first with "
			"\"postern domain add %s\" (or to local_domains in %s)\n", j->what, at + 1,
			at + 1, j->cfg->path);
		return ACCOUNT_CLI_ERROR;
	}
	long i = account_users_find(&j->users, j->address);
	if (i >= 0) {
		fprintf(stderr, "postern %s: %s:%u: user %s exists already (postern user passwd "
			"changes the password)\n", j->what, j->cfg->users_file,
			account_users_lineno((size_t)i), j->address);
		return ACCOUNT_CLI_ERROR;
	}
	if (is_alias(j)) {
		fprintf(stderr, "postern %s: %s is an alias in %s: a user of that name would never "
			"get mail; remove the alias first\n", j->what, j->address,
			j->cfg->aliases_file);
		return ACCOUNT_CLI_ERROR;
	}
	char *password = account_password_read(j->address, o->stdin_password, stderr);
	if (password == NULL)
		return ACCOUNT_CLI_ERROR;
	char *hash = account_password_hash(password, stderr);
	account_wipe_free(password);
	if (hash == NULL)
		return ACCOUNT_CLI_ERROR;
	char extra[192] = "";
	if (quota[0] != '\0')
		snprintf(extra, sizeof(extra), "%s=%s%s", ACCOUNT_QUOTA_FIELD, ACCOUNT_QUOTA_PREFIX,
			 quota);
	char *line = account_users_entry(j->address, hash, extra);
	account_wipe_free(hash);
	account_file_append(&j->users.file, line);
	account_wipe_free(line);
	return commit(j, "added user");
}

static int user_passwd(struct user_job *j, const struct account_options *o)
{
	long i = existing_user(j);
	if (i < 0)
		return ACCOUNT_CLI_ERROR;
	char *password = account_password_read(j->address, o->stdin_password, stderr);
	if (password == NULL)
		return ACCOUNT_CLI_ERROR;
	char *hash = account_password_hash(password, stderr);
	account_wipe_free(password);
	if (hash == NULL)
		return ACCOUNT_CLI_ERROR;
	char *line = account_users_with_password(&j->users, (size_t)i, hash);
	account_wipe_free(hash);
	account_file_set(&j->users.file, (size_t)i, line);
	account_wipe_free(line);
	return commit(j, "changed the password of");
}

static int user_quota(struct user_job *j, const struct account_options *o)
{
	char quota[64] = "";
	const char *size = o->args[1];
	bool none = strcmp(size, "none") == 0;
	if (!none && !account_parse_quota(j->what, size, quota, sizeof(quota)))
		return ACCOUNT_CLI_USAGE;
	long i = existing_user(j);
	if (i < 0)
		return ACCOUNT_CLI_ERROR;
	char *line = account_users_with_quota(&j->users, (size_t)i, none ? NULL : quota);
	account_file_set(&j->users.file, (size_t)i, line);
	account_wipe_free(line);
	return commit(j, none ? "removed the quota of" : "set the quota of");
}

static int user_del(struct user_job *j)
{
	long i = existing_user(j);
	if (i < 0)
		return ACCOUNT_CLI_ERROR;
	account_file_delete(&j->users.file, (size_t)i);
	if (account_file_commit(&j->users.file, stderr) < 0)
		return ACCOUNT_CLI_ERROR;
	const char *at = strrchr(j->address, '@');
	printf("deleted user %s (its mailbox %s/%s/%.*s/Maildir is kept)\n", j->address,
	       j->cfg->mail_root, at + 1, (int)(at - j->address), j->address);
	size_t n;
	const struct domain_entry **all = domains_sorted(j->domains, &n);
	for (size_t k = 0; k < n; k++)
		if (all[k]->catch_all != NULL && strcmp(all[k]->catch_all, j->address) == 0)
			fprintf(stderr, "warning: %s:%u: %s was the catch-all of %s: mail to its "
				"unknown addresses will bounce (postern domain set %s --catch-all "
				"ADDRESS|none)\n", j->cfg->domains_file, all[k]->line, j->address,
				all[k]->name, all[k]->name);
	free(all);
	return ACCOUNT_CLI_OK;
}

static int by_string(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Print b and free it. */
static void print_json(buf_t *b)
{
	buf_putc(b, '\n');
	fwrite(b->data, 1, b->len, stdout);
	buf_free(b);
}

/* [{"user": ..., "quota": "10M" or null}, ...] */
static void list_json(struct user_job *j, const char **list, size_t n)
{
	buf_t b = BUF_INIT;
	buf_putc(&b, '[');
	for (size_t k = 0; k < n; k++) {
		struct account_user_info info;
		account_users_info(&j->users, (size_t)account_users_find(&j->users, list[k]), &info);
		buf_puts(&b, k > 0 ? ", {\"user\": " : "{\"user\": ");
		json_put_cstr(&b, list[k]);
		buf_puts(&b, ", \"quota\": ");
		json_put_cstr(&b, info.quota[0] != '\0' ? info.quota : NULL);
		buf_putc(&b, '}');
		account_user_info_free(&info);
	}
	buf_putc(&b, ']');
	print_json(&b);
}

static int user_list(struct user_job *j, const char *domain, bool json)
{
	const char **list = xcalloc(j->users.file.count + 1, sizeof(*list));
	size_t n = 0;
	for (size_t i = 0; i < j->users.file.count; i++) {
		const char *a = j->users.addresses[i];
		if (a != NULL && (domain == NULL || str_eq_nocase(strrchr(a, '@') + 1, domain)))
			list[n++] = a;
	}
	qsort(list, n, sizeof(*list), by_string);
	if (json)
		list_json(j, list, n);
	for (size_t i = 0; !json && i < n; i++)
		printf("%s\n", list[i]);
	free(list);
	return ACCOUNT_CLI_OK;
}

static void json_field(buf_t *b, const char *name, const char *value)
{
	buf_printf(b, ", \"%s\": ", name);
	json_put_cstr(b, value);
}

static void show_json(struct user_job *j, size_t i, const struct account_user_info *info,
		      const char *quota, const char *quota_from, const char *mailbox)
{
	buf_t b = BUF_INIT;
	buf_puts(&b, "{\"user\": ");
	json_put_cstr(&b, j->address);
	json_field(&b, "file", j->cfg->users_file);
	buf_printf(&b, ", \"line\": %u", account_users_lineno(i));
	json_field(&b, "password_scheme", info->scheme);
	json_field(&b, "quota", quota);
	json_field(&b, "quota_from", quota_from);
	json_field(&b, "mailbox", mailbox);
	json_field(&b, "uid", info->uid);
	json_field(&b, "gid", info->gid);
	json_field(&b, "home", info->home);
	json_field(&b, "extra", info->extra);
	buf_putc(&b, '}');
	print_json(&b);
}

static int user_show(struct user_job *j, bool json)
{
	long i = existing_user(j);
	if (i < 0)
		return ACCOUNT_CLI_ERROR;
	struct account_user_info info;
	const char *at = strrchr(j->address, '@');
	account_users_info(&j->users, (size_t)i, &info);
	if (json) {
		const struct domain_entry *dd = domains_find(j->domains, at + 1);
		char dsize[32], *mailbox = NULL;
		const char *quota = NULL, *from = NULL;
		if (info.quota[0] != '\0') {
			quota = info.quota;
			from = "user";
		} else if (dd != NULL && dd->quota != 0) {
			domains_format_size(dd->quota, dsize, sizeof(dsize));
			quota = dsize;
			from = "domain";
		}
		buf_t m = BUF_INIT;
		buf_printf(&m, "%s/%s/%.*s/Maildir", j->cfg->mail_root, at + 1,
			   (int)(at - j->address), j->address);
		mailbox = buf_steal(&m);
		show_json(j, (size_t)i, &info, quota, from, mailbox);
		free(mailbox);
		account_user_info_free(&info);
		return ACCOUNT_CLI_OK;
	}
	printf("user:     %s\n", j->address);
	printf("line:     %s:%u\n", j->cfg->users_file, account_users_lineno((size_t)i));
	printf("password: %s\n", info.scheme);
	const struct domain_entry *d = domains_find(j->domains, at + 1);
	char size[32];
	if (info.quota[0] != '\0') {
		printf("quota:    %s\n", info.quota);
	} else if (d != NULL && d->quota != 0) {
		domains_format_size(d->quota, size, sizeof(size));
		printf("quota:    %s (the default of %s)\n", size, d->name);
	} else {
		printf("quota:    none\n");
	}
	printf("mailbox:  %s/%s/%.*s/Maildir\n", j->cfg->mail_root, at + 1,
	       (int)(at - j->address), j->address);
	if (d == NULL)
		printf("warning:  %s is not a local domain: this user gets no mail\n", at + 1);
	if (info.uid != NULL || info.gid != NULL)
		printf("uid:gid:  %s:%s\n", info.uid != NULL ? info.uid : "",
		       info.gid != NULL ? info.gid : "");
	if (info.home != NULL)
		printf("home:     %s\n", info.home);
	if (info.extra != NULL)
		printf("extra:    %s\n", info.extra);
	account_user_info_free(&info);
	return ACCOUNT_CLI_OK;
}

int account_user_main(struct config *cfg, int argc, char **argv)
{
	static const struct {
		const char *name, *what;
		unsigned options;
		size_t min_args, max_args;
		bool edits;
	} subs[] = {
		{ "add", "user add", ACCOUNT_OPT_STDIN | ACCOUNT_OPT_QUOTA, 1, 1, true },
		{ "passwd", "user passwd", ACCOUNT_OPT_STDIN, 1, 1, true },
		{ "quota", "user quota", 0, 2, 2, true },
		{ "del", "user del", 0, 1, 1, true },
		{ "list", "user list", ACCOUNT_OPT_JSON, 0, 1, false },
		{ "show", "user show", ACCOUNT_OPT_JSON, 1, 1, false },
	};
	if (argc < 1) {
		fprintf(stderr, "postern user: add, passwd, quota, del, list or show?\n");
		return ACCOUNT_CLI_USAGE;
	}
	for (size_t s = 0; s < sizeof(subs) / sizeof(subs[0]); s++) {
		if (strcmp(argv[0], subs[s].name) != 0)
			continue;
		struct account_options o;
		struct user_job j = { .what = subs[s].what, .cfg = cfg };
		if (account_parse_options(j.what, argc, argv, subs[s].options, subs[s].min_args,
					  subs[s].max_args, &o) < 0)
			return ACCOUNT_CLI_USAGE;
		bool lists = strcmp(argv[0], "list") == 0;
		if (!lists && (j.address = account_address_arg(j.what, o.args[0])) == NULL)
			return ACCOUNT_CLI_USAGE;
		int rc = ACCOUNT_CLI_ERROR;
		if (job_open(&j, subs[s].edits) == 0) {
			if (lists)
				rc = user_list(&j, o.arg_count > 0 ? o.args[0] : NULL, o.json);
			else if (strcmp(argv[0], "add") == 0)
				rc = user_add(&j, &o);
			else if (strcmp(argv[0], "passwd") == 0)
				rc = user_passwd(&j, &o);
			else if (strcmp(argv[0], "quota") == 0)
				rc = user_quota(&j, &o);
			else if (strcmp(argv[0], "del") == 0)
				rc = user_del(&j);
			else
				rc = user_show(&j, o.json);
		}
		job_close(&j);
		return rc;
	}
	fprintf(stderr, "postern user: unknown subcommand %s (add, passwd, quota, del, list, "
		"show)\n", argv[0]);
	return ACCOUNT_CLI_USAGE;
}

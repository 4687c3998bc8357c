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
#include "../lib/safeio.h"
#include "../lib/xalloc.h"
#include "../mail/domains.h"
#include "../mail/quota_rule.h"
#include "../mail/recipients.h"
#include "../server/privsep.h"

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

/* The account mailboxes are written as, resolved as the supervisor does
 * (privsep_resolve) into *ps; -1 with the problems printed if the server
 * could not resolve it either. Warnings are not printed: they concern
 * the server, not this command. */
static int resolve_owner(struct user_job *j, struct privsep *ps)
{
	char *text = NULL;
	size_t len = 0;
	FILE *found = open_memstream(&text, &len);
	int problems = privsep_resolve(j->cfg, ps, found != NULL ? found : stderr);
	if (found != NULL) {
		fclose(found);
		if (problems > 0)
			fputs(text, stderr);
		free(text);
	}
	return problems > 0 ? -1 : 0;
}

/* Would the server take users_file as this command is about to write it?
 * It is checked with the supervisor's own loader (recipients_load's
 * checks: addresses, duplicates, quota rules, uid and gid against
 * mail_owner) and with aliases_file as the server reads it; false with
 * the problems printed as FILE:LINE, and nothing is written then. */
static bool server_takes_users(struct user_job *j)
{
	struct privsep ps;
	struct recipients_owner owner;
	struct recipient_tables *t = NULL;
	buf_t text = BUF_INIT;
	if (resolve_owner(j, &ps) == 0) {
		account_file_render(&j->users.file, true, &text);
		t = recipients_load_users_text(j->cfg->users_file, &text, j->cfg->aliases_file,
					       privsep_mailbox_owner(&ps, &owner), stderr);
		safeio_free_secret(&text);
	}
	privsep_free(&ps);
	bool takes = t != NULL;
	recipients_free(&t);
	if (!takes)
		fprintf(stderr, "postern %s: %s: the server would refuse the users file with the "
			"problems above (and keep its old users): nothing changed\n", j->what,
			j->cfg->users_file);
	return takes;
}

static int commit(struct user_job *j, const char *done)
{
	if (!server_takes_users(j) || account_file_commit(&j->users.file, stderr) < 0)
		return ACCOUNT_CLI_ERROR;
	printf("%s %s\n", done, j->address);
	return ACCOUNT_CLI_OK;
}

/* A --quota SIZE as the size of a "*:storage=" rule, into buf_r; false
 * (printed) if it is not a size. A bare number there counts kilobytes
 * (quota_rule.h), so a size that is no whole number of kilobytes is
 * written with the unit B: 1000 bytes stay 1000 bytes. */
static bool storage_size(const char *what, const char *text, char *buf_r, size_t size)
{
	if (!account_parse_quota(what, text, buf_r, size))
		return false;
	size_t len = strlen(buf_r);
	if (len > 0 && len + 1 < size && buf_r[len - 1] >= '0' && buf_r[len - 1] <= '9' &&
	    strcmp(buf_r, "0") != 0) {
		buf_r[len] = 'B';
		buf_r[len + 1] = '\0';
	}
	return true;
}

static int user_add(struct user_job *j, const struct account_options *o)
{
	char quota[64] = "";
	const char *at = strrchr(j->address, '@');
	if (o->quota != NULL && !storage_size(j->what, o->quota, quota, sizeof(quota)))
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
	if (!none && !storage_size(j->what, size, quota, sizeof(quota)))
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
	if (!server_takes_users(j) || account_file_commit(&j->users.file, stderr) < 0)
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

/* The limits that apply to a user, as the server computes them
 * (recipients_quota): the user's own userdb_quota_rule, else its domain's
 * default (domains_file), else mailbox_quota. */
struct effective_quota {
	uint64_t bytes;    /* 0: no limit */
	uint64_t messages; /* 0: no limit (only a user's own rule sets one) */
	const char *from;  /* "user", "domain", "mailbox_quota"; NULL: no limit applies */
	const char *why;   /* the user's rule does not parse: why (the server refuses it) */
};

static void effective_quota(const struct user_job *j, const struct account_user_info *info,
			    const char *address, struct effective_quota *q_r)
{
	const struct domain_entry *d = domains_find(j->domains, strrchr(address, '@') + 1);
	memset(q_r, 0, sizeof(*q_r));
	if (info->rule[0] != '\0') {
		q_r->from = "user";
		if (!quota_rule_parse(info->rule, &q_r->bytes, &q_r->messages, &q_r->why))
			q_r->bytes = q_r->messages = 0;
	} else if (d != NULL && d->quota != 0) {
		q_r->bytes = d->quota;
		q_r->from = "domain";
	} else if (j->cfg->mailbox_quota != 0) {
		q_r->bytes = j->cfg->mailbox_quota;
		q_r->from = "mailbox_quota";
	}
}

/* A count in JSON: the number, or null for 0 (no limit). */
static void json_limit(buf_t *b, const char *name, uint64_t n)
{
	buf_printf(b, ", \"%s\": ", name);
	if (n != 0)
		buf_printf(b, "%llu", (unsigned long long)n);
	else
		buf_puts(b, "null");
}

/* [{"user": ..., "quota": bytes or null, "quota_from": ... or null}, ...] */
static void list_json(struct user_job *j, const char **list, size_t n)
{
	buf_t b = BUF_INIT;
	buf_putc(&b, '[');
	for (size_t k = 0; k < n; k++) {
		struct account_user_info info;
		struct effective_quota q;
		account_users_info(&j->users, (size_t)account_users_find(&j->users, list[k]), &info);
		effective_quota(j, &info, list[k], &q);
		buf_puts(&b, k > 0 ? ", {\"user\": " : "{\"user\": ");
		json_put_cstr(&b, list[k]);
		json_limit(&b, "quota", q.bytes);
		buf_puts(&b, ", \"quota_from\": ");
		json_put_cstr(&b, q.from);
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
		      const struct effective_quota *q, const char *mailbox)
{
	buf_t b = BUF_INIT;
	buf_puts(&b, "{\"user\": ");
	json_put_cstr(&b, j->address);
	json_field(&b, "file", j->cfg->users_file);
	buf_printf(&b, ", \"line\": %u", account_users_lineno(i));
	json_field(&b, "password_scheme", info->scheme);
	json_limit(&b, "quota", q->bytes);
	json_limit(&b, "quota_messages", q->messages);
	json_field(&b, "quota_from", q->from);
	json_field(&b, "quota_rule", info->rule[0] != '\0' ? info->rule : NULL);
	json_field(&b, "mailbox", mailbox);
	json_field(&b, "uid", info->uid);
	json_field(&b, "gid", info->gid);
	json_field(&b, "home", info->home);
	json_field(&b, "extra", info->extra);
	buf_putc(&b, '}');
	print_json(&b);
}

/* The "quota:" line(s) of `user show`: the limit and where it comes from. */
static void show_quota(const struct user_job *j, const struct account_user_info *info,
		       const struct effective_quota *q)
{
	char size[32];
	const char *domain = strrchr(j->address, '@') + 1;
	domains_format_size(q->bytes, size, sizeof(size));
	if (q->why != NULL)
		printf("quota:    %s: %s (the server refuses this line)\n", info->rule, q->why);
	else if (q->from == NULL)
		printf("quota:    none\n");
	else if (strcmp(q->from, "user") == 0)
		printf("quota:    %s (the user's own rule)\n", q->bytes != 0 ? size : "no limit");
	else if (strcmp(q->from, "domain") == 0)
		printf("quota:    %s (the default of %s)\n", size, domain);
	else
		printf("quota:    %s (mailbox_quota in %s)\n", size, j->cfg->path);
	if (q->messages != 0)
		printf("messages: at most %llu (the user's own rule)\n",
		       (unsigned long long)q->messages);
}

static int user_show(struct user_job *j, bool json)
{
	long i = existing_user(j);
	if (i < 0)
		return ACCOUNT_CLI_ERROR;
	struct account_user_info info;
	struct effective_quota q;
	const char *at = strrchr(j->address, '@');
	account_users_info(&j->users, (size_t)i, &info);
	effective_quota(j, &info, j->address, &q);
	buf_t m = BUF_INIT;
	buf_printf(&m, "%s/%s/%.*s/Maildir", j->cfg->mail_root, at + 1, (int)(at - j->address),
		   j->address);
	if (json) {
		show_json(j, (size_t)i, &info, &q, m.data);
		buf_free(&m);
		account_user_info_free(&info);
		return ACCOUNT_CLI_OK;
	}
	printf("user:     %s\n", j->address);
	printf("line:     %s:%u\n", j->cfg->users_file, account_users_lineno((size_t)i));
	printf("password: %s\n", info.scheme);
	show_quota(j, &info, &q);
	printf("mailbox:  %s\n", m.data);
	buf_free(&m);
	if (domains_find(j->domains, at + 1) == NULL)
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

/*
 * account_domain_cli.c - `postern domain add|set|del|list` (see
 * account_cli.h): the lines of domains_file (format in
 * src/mail/domains.h), with the domains of local_domains listed beside
 * them.
 *
 * Untrusted input: the command line, domains_file and users_file.
 * Privilege: the invoking user.
 */
#include "account_cli.h"
#include "account_users.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../lib/json.h"
#include "../lib/xalloc.h"
#include "../mail/domains.h"

struct domain_job {
	const char *what;
	struct config *cfg;
	strlist_t config_domains; /* local_domains as postern.conf has it */
	struct account_file file;
	bool opened;
	struct domain_entry *entries; /* by line; name NULL for other lines */
};

static void print_line_error(const char *path, size_t i, const char *msg)
{
	fprintf(stderr, "%s:%zu: %s\n", path, i + 1, msg);
}

static int job_open(struct domain_job *j, bool lock)
{
	for (size_t i = 0; i < j->cfg->local_domains.count; i++)
		strlist_add(&j->config_domains, j->cfg->local_domains.items[i]);
	if (j->cfg->domains_file[0] == '\0') {
		if (!lock)
			return 0; /* listing: local_domains alone */
		fprintf(stderr, "postern %s: %s: domains_file is not set: name a file for the "
			"domains there (postern.conf(5)), for instance domains_file = domains\n",
			j->what, j->cfg->path);
		return -1;
	}
	j->opened = true; /* closed even when opening fails half-way */
	if (account_file_open(&j->file, "domains_file", j->cfg->domains_file, false, lock, 0644,
			      DOMAINS_FILE_MAX, stderr) < 0)
		return -1;
	j->entries = xcalloc(j->file.count + 1, sizeof(*j->entries));
	int problems = 0;
	for (size_t i = 0; i < j->file.count; i++) {
		char *copy = xstrdup(j->file.lines[i]);
		size_t len = strlen(copy);
		if (len > 0 && copy[len - 1] == '\r')
			copy[--len] = '\0';
		char *first = copy + strspn(copy, " \t");
		const char *err = NULL;
		if (len > DOMAINS_LINE_MAX)
			err = "line too long";
		else if (*first != '\0' && *first != '#')
			err = domains_parse_line(first, &j->entries[i]);
		if (err != NULL) {
			print_line_error(j->file.path, i, err);
			problems++;
		}
		for (size_t k = 0; err == NULL && j->entries[i].name != NULL && k < i; k++)
			if (j->entries[k].name != NULL &&
			    strcmp(j->entries[k].name, j->entries[i].name) == 0) {
				print_line_error(j->file.path, i, "domain listed twice");
				problems++;
				break;
			}
		free(copy);
	}
	if (problems > 0) {
		fprintf(stderr, "%s: fix the lines above first: nothing changed\n", j->file.path);
		return -1;
	}
	return 0;
}

static void job_close(struct domain_job *j)
{
	for (size_t i = 0; j->entries != NULL && i < j->file.count; i++)
		domains_entry_clear(&j->entries[i]);
	free(j->entries);
	if (j->opened)
		account_file_close(&j->file);
	strlist_free(&j->config_domains);
}

static long find_line(const struct domain_job *j, const char *name)
{
	for (size_t i = 0; j->entries != NULL && i < j->file.count; i++)
		if (j->file.lines[i] != NULL && j->entries[i].name != NULL &&
		    strcmp(j->entries[i].name, name) == 0)
			return (long)i;
	return -1;
}

/* Apply --quota and --catch-all to e; false (printed) if one is bad. */
static bool apply_settings(const struct domain_job *j, const struct account_options *o,
			   struct domain_entry *e)
{
	if (o->quota != NULL) {
		char size[64];
		if (!account_parse_quota(j->what, o->quota, size, sizeof(size)))
			return false;
		str_parse_size(size, &e->quota);
	}
	if (o->catch_all != NULL && strcmp(o->catch_all, "none") == 0) {
		xfree(&e->catch_all);
	} else if (o->catch_all != NULL) {
		char *address = account_address_arg(j->what, o->catch_all);
		if (address == NULL)
			return false;
		free(e->catch_all);
		e->catch_all = address;
	}
	return true;
}

static int write_entry(struct domain_job *j, long i, const struct domain_entry *e,
		       const char *done)
{
	char *line = domains_format_line(e);
	if (i >= 0)
		account_file_set(&j->file, (size_t)i, line);
	else
		account_file_append(&j->file, line);
	free(line);
	if (account_file_commit(&j->file, stderr) < 0)
		return ACCOUNT_CLI_ERROR;
	printf("%s domain %s\n", done, e->name);
	return ACCOUNT_CLI_OK;
}

static int domain_add_or_set(struct domain_job *j, const struct account_options *o, bool add)
{
	struct domain_entry e = { 0 };
	char *name = xstrdup(o->args[0]);
	str_lower(name);
	int rc = ACCOUNT_CLI_ERROR;
	long i = -1;
	if (!config_valid_domain(name)) {
		fprintf(stderr, "postern %s: \"%s\" is not a domain name\n", j->what, o->args[0]);
		rc = ACCOUNT_CLI_USAGE;
		goto out;
	}
	if (strlist_contains_nocase(&j->cfg->relay_domains, name)) {
		fprintf(stderr, "postern %s: %s is in relay_domains (%s:%u): a domain is either "
			"delivered here or relayed\n", j->what, name, j->cfg->path,
			config_key_line(j->cfg, "relay_domains"));
		goto out;
	}
	i = find_line(j, name);
	if (add && i >= 0) {
		fprintf(stderr, "postern %s: %s:%ld: domain %s is there already (postern domain set "
			"changes its settings)\n", j->what, j->file.path, i + 1, name);
		goto out;
	}
	if (!add && i < 0 && !strlist_contains_nocase(&j->config_domains, name)) {
		fprintf(stderr, "postern %s: %s is not a local domain (postern domain add adds "
			"it)\n", j->what, name);
		goto out;
	}
	if (i >= 0) {
		e = j->entries[i];
		e.name = xstrdup(e.name);
		e.catch_all = e.catch_all != NULL ? xstrdup(e.catch_all) : NULL;
	} else {
		e.name = xstrdup(name);
	}
	if (!apply_settings(j, o, &e)) {
		rc = ACCOUNT_CLI_USAGE;
		goto out;
	}
	rc = write_entry(j, i, &e, add ? "added" : "changed");
	if (rc == ACCOUNT_CLI_OK && add && strlist_contains_nocase(&j->config_domains, name))
		printf("note: %s is also in local_domains in %s; the settings of %s apply\n", name,
		       j->cfg->path, j->cfg->domains_file);
out:
	domains_entry_clear(&e);
	free(name);
	return rc;
}

/* How many users of users_file are in domain; -1 if it cannot be read. */
static long users_in(const struct config *cfg, const char *domain)
{
	struct account_users u;
	long n = 0;
	if (cfg->users_file[0] == '\0')
		return 0;
	if (account_users_open(&u, cfg->users_file, false, stderr) < 0) {
		account_users_close(&u);
		return -1;
	}
	for (size_t i = 0; i < u.file.count; i++)
		if (u.addresses[i] != NULL && strcmp(strrchr(u.addresses[i], '@') + 1, domain) == 0)
			n++;
	account_users_close(&u);
	return n;
}

static int domain_del(struct domain_job *j, const struct account_options *o)
{
	char *name = xstrdup(o->args[0]);
	str_lower(name);
	int rc = ACCOUNT_CLI_ERROR;
	long i = find_line(j, name);
	long users = i >= 0 ? users_in(j->cfg, name) : 0;
	if (i < 0 && strlist_contains_nocase(&j->config_domains, name)) {
		fprintf(stderr, "postern %s: %s is in local_domains in %s:%u: remove it there\n",
			j->what, name, j->cfg->path, config_key_line(j->cfg, "local_domains"));
	} else if (i < 0) {
		fprintf(stderr, "postern %s: %s: no domain %s\n", j->what, j->file.path, name);
	} else if (users != 0) {
		if (users > 0)
			fprintf(stderr, "postern %s: %s still has %ld user%s in %s: delete them first "
				"(postern user list %s)\n", j->what, name, users, users == 1 ? "" : "s",
				j->cfg->users_file, name);
	} else if (strlist_contains_nocase(&j->config_domains, name)) {
		/* in both: the line goes, the domain stays local without settings */
		account_file_delete(&j->file, (size_t)i);
		rc = account_file_commit(&j->file, stderr) < 0 ? ACCOUNT_CLI_ERROR : ACCOUNT_CLI_OK;
		if (rc == ACCOUNT_CLI_OK)
			printf("deleted domain %s from %s (it stays local: it is in local_domains "
			       "in %s)\n", name, j->file.path, j->cfg->path);
	} else {
		account_file_delete(&j->file, (size_t)i);
		rc = account_file_commit(&j->file, stderr) < 0 ? ACCOUNT_CLI_ERROR : ACCOUNT_CLI_OK;
		if (rc == ACCOUNT_CLI_OK)
			printf("deleted domain %s\n", name);
	}
	free(name);
	return rc;
}

/* [{"domain": ..., "from": "domains_file"|"local_domains", "quota": bytes
 * or null, "catch_all": ... or null}, ...] */
static void list_json(const struct domain_entry **all, size_t n)
{
	buf_t b = BUF_INIT;
	buf_putc(&b, '[');
	for (size_t i = 0; i < n; i++) {
		buf_puts(&b, i > 0 ? ", {\"domain\": " : "{\"domain\": ");
		json_put_cstr(&b, all[i]->name);
		buf_printf(&b, ", \"from\": \"%s\", \"quota\": ",
			   all[i]->line != 0 ? "domains_file" : "local_domains");
		if (all[i]->quota != 0)
			buf_printf(&b, "%llu", (unsigned long long)all[i]->quota);
		else
			buf_puts(&b, "null");
		buf_puts(&b, ", \"catch_all\": ");
		json_put_cstr(&b, all[i]->catch_all);
		buf_putc(&b, '}');
	}
	buf_puts(&b, "]\n");
	fwrite(b.data, 1, b.len, stdout);
	buf_free(&b);
}

static int domain_list(struct domain_job *j, bool json)
{
	struct domain_table *t = domains_load_config(j->cfg, stderr);
	if (t == NULL)
		return ACCOUNT_CLI_ERROR;
	size_t n;
	const struct domain_entry **all = domains_sorted(t, &n);
	if (json)
		list_json(all, n);
	for (size_t i = 0; !json && i < n; i++) {
		const struct domain_entry *e = all[i];
		char size[32];
		printf("%-30s %s", e->name, e->line != 0 ? "domains_file" : "local_domains");
		if (e->quota != 0) {
			domains_format_size(e->quota, size, sizeof(size));
			printf(" quota=%s", size);
		}
		if (e->catch_all != NULL)
			printf(" catch_all=%s", e->catch_all);
		printf("\n");
	}
	free(all);
	domains_free(&t);
	return ACCOUNT_CLI_OK;
}

int account_domain_main(struct config *cfg, int argc, char **argv)
{
	static const struct {
		const char *name, *what;
		unsigned options;
		size_t min_args, max_args;
		bool edits;
	} subs[] = {
		{ "add", "domain add", ACCOUNT_OPT_QUOTA | ACCOUNT_OPT_CATCH_ALL, 1, 1, true },
		{ "set", "domain set", ACCOUNT_OPT_QUOTA | ACCOUNT_OPT_CATCH_ALL, 1, 1, true },
		{ "del", "domain del", 0, 1, 1, true },
		{ "list", "domain list", ACCOUNT_OPT_JSON, 0, 0, false },
	};
	if (argc < 1) {
		fprintf(stderr, "postern domain: add, set, del or list?\n");
		return ACCOUNT_CLI_USAGE;
	}
	for (size_t s = 0; s < sizeof(subs) / sizeof(subs[0]); s++) {
		if (strcmp(argv[0], subs[s].name) != 0)
			continue;
		struct account_options o;
		struct domain_job j = { .what = subs[s].what, .cfg = cfg };
		if (account_parse_options(j.what, argc, argv, subs[s].options, subs[s].min_args,
					  subs[s].max_args, &o) < 0)
			return ACCOUNT_CLI_USAGE;
		int rc = ACCOUNT_CLI_ERROR;
		if (job_open(&j, subs[s].edits) == 0) {
			if (strcmp(argv[0], "list") == 0)
				rc = domain_list(&j, o.json);
			else if (strcmp(argv[0], "del") == 0)
				rc = domain_del(&j, &o);
			else
				rc = domain_add_or_set(&j, &o, strcmp(argv[0], "add") == 0);
		}
		job_close(&j);
		return rc;
	}
	fprintf(stderr, "postern domain: unknown subcommand %s (add, set, del, list)\n", argv[0]);
	return ACCOUNT_CLI_USAGE;
}

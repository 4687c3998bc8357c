/*
 * fuzz_domains.c - libFuzzer target for the domains_file parser
 * (domains_load, domains_parse_line and its round trip through
 * domains_format_line) and for users_file as `postern user` reads and
 * edits it (account_users_open, then every entry's password and quota
 * rewritten and split again), and the catch-alls followed through the
 * recipient tables of both. The input is split at the first NUL:
 * domains_file before it, users_file after.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "account/account_users.h"
#include "mail/domains.h"
#include "mail/passwd_line.h"
#include "mail/recipients.h"

static int memfile(const uint8_t *data, size_t size, char *path, size_t pathlen)
{
	int fd = memfd_create("table", 0);
	if (fd < 0)
		return -1;
	if (write(fd, data, size) != (ssize_t)size) {
		close(fd);
		return -1;
	}
	snprintf(path, pathlen, "/proc/self/fd/%d", fd);
	return fd;
}

/* Every line that parses formats into a line that parses the same. */
static void round_trip(const uint8_t *data, size_t size)
{
	char *text = malloc(size + 1);
	memcpy(text, data, size);
	text[size] = '\0';
	for (char *line = text, *next; line != NULL; line = next) {
		next = strchr(line, '\n');
		if (next != NULL)
			*next++ = '\0';
		if (strlen(line) > DOMAINS_LINE_MAX)
			continue;
		struct domain_entry e, again;
		if (domains_parse_line(line, &e) != NULL)
			continue;
		char *formatted = domains_format_line(&e);
		if (domains_parse_line(formatted, &again) != NULL ||
		    strcmp(again.name, e.name) != 0 || again.quota != e.quota ||
		    (again.catch_all == NULL) != (e.catch_all == NULL) ||
		    (e.catch_all != NULL && strcmp(again.catch_all, e.catch_all) != 0))
			abort();
		domains_entry_clear(&again);
		domains_entry_clear(&e);
		free(formatted);
	}
	free(text);
}

/* The recipient tables of users_file with the domains attached: every
 * domain's catch-all followed for an unknown address of it. */
static void expand_catch_alls(const char *dpath, const char *upath, FILE *devnull)
{
	struct recipient_tables *t = recipients_load(upath, "", NULL, devnull);
	struct domain_table *d = domains_load(dpath, NULL, devnull);
	if (t == NULL || d == NULL) {
		recipients_free(&t);
		domains_free(&d);
		return;
	}
	recipients_set_domains(t, d);
	domains_warn_catch_all(t, dpath, devnull);
	size_t n;
	const struct domain_entry **all = domains_sorted(recipients_domains(t), &n);
	for (size_t i = 0; i < n; i++) {
		char address[300];
		snprintf(address, sizeof(address), "nobody@%s", all[i]->name);
		strlist_t out = { 0 };
		recipients_expand(t, address, &out);
		strlist_free(&out);
		(void)recipients_domain_quota(t, all[i]->name);
	}
	free(all);
	recipients_free(&t);
}

static void edit_users(const char *path, FILE *devnull)
{
	struct account_users u;
	if (account_users_open(&u, path, false, devnull) == 0) {
		for (size_t i = 0; i < u.file.count; i++) {
			if (u.addresses[i] == NULL)
				continue;
			char *lines[3] = { account_users_with_password(&u, i, "{CRYPT}$y$x"),
					   account_users_with_quota(&u, i, "10M"),
					   account_users_with_quota(&u, i, NULL) };
			for (size_t k = 0; k < 3; k++) {
				struct passwd_line f;
				if (lines[k] == NULL || !passwd_line_split(lines[k], &f))
					abort(); /* an entry stays an entry */
				free(lines[k]);
			}
			struct account_user_info info;
			account_users_info(&u, i, &info);
			account_user_info_free(&info);
		}
	}
	account_users_close(&u);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const uint8_t *nul = memchr(data, 0, size);
	size_t domains_len = nul ? (size_t)(nul - data) : size;
	char dpath[64], upath[64];
	FILE *devnull = fopen("/dev/null", "w");
	int dfd = memfile(data, domains_len, dpath, sizeof(dpath));
	if (dfd >= 0) {
		strlist_t config = { 0 };
		strlist_add(&config, "example.test");
		struct domain_table *t = domains_load(dpath, &config, devnull);
		if (t != NULL) {
			size_t n;
			const struct domain_entry **all = domains_sorted(t, &n);
			free(all);
			strlist_t merged = { 0 };
			domains_merge_into(t, &merged);
			strlist_free(&merged);
			domains_free(&t);
		}
		strlist_free(&config);
		round_trip(data, domains_len);
	}
	if (nul != NULL) {
		int ufd = memfile(nul + 1, size - domains_len - 1, upath, sizeof(upath));
		if (ufd >= 0) {
			edit_users(upath, devnull);
			if (dfd >= 0)
				expand_catch_alls(dpath, upath, devnull);
			close(ufd);
		}
	}
	if (dfd >= 0)
		close(dfd);
	fclose(devnull);
	return 0;
}

/*
 * test_accounts.c - the local domains table (domains_file lines, FILE:LINE
 * errors, local_domains merged, relay_domains refused), catch-all and
 * domain quota in the recipient tables, the atomic rewriting of a table
 * file (untouched lines byte for byte, mode kept, symbolic link
 * followed), the users_file field edits, and yescrypt hashing.
 */
#include <crypt.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include "testutil.h"

#include "account/account_cli.h"
#include "account/account_file.h"
#include "account/account_password.h"
#include "account/account_users.h"
#include "lib/buf.h"
#include "lib/config.h"
#include "lib/safeio.h"
#include "mail/domains.h"
#include "mail/recipients.h"
#include "server/table_watch.h"

TESTUTIL_PRIVATE_DIR("accounts")

static char *write_file(const char *name, const char *text)
{
	static char path[4][256];
	static int which;
	char *p = path[which++ % 4];
	snprintf(p, 256, "%s/%s", dir, name);
	FILE *f = fopen(p, "w");
	fputs(text, f);
	fclose(f);
	return p;
}

static char *read_back(const char *path)
{
	buf_t b = BUF_INIT;
	assert_int_equal(safeio_read_file(path, 1 << 20, &b), 0);
	buf_putc(&b, '\0');
	return buf_steal(&b);
}

/* ---- domains_file ---- */

static void domain_lines(void **state)
{
	(void)state;
	struct domain_entry e;
	char line[200];

	snprintf(line, sizeof(line), "Example.ORG\tquota=1G   catch_all=Info@Example.org");
	assert_null(domains_parse_line(line, &e));
	assert_string_equal(e.name, "example.org");
	assert_int_equal(e.quota, 1ULL << 30);
	assert_string_equal(e.catch_all, "info@example.org");
	char *formatted = domains_format_line(&e);
	assert_non_null(strstr(formatted, "quota=1G catch_all=info@example.org"));
	struct domain_entry again;
	assert_null(domains_parse_line(formatted, &again)); /* what we write reads back */
	assert_string_equal(again.name, e.name);
	assert_int_equal(again.quota, e.quota);
	assert_string_equal(again.catch_all, e.catch_all);
	domains_entry_clear(&again);
	free(formatted);
	domains_entry_clear(&e);

	snprintf(line, sizeof(line), "plain.test");
	assert_null(domains_parse_line(line, &e));
	assert_int_equal(e.quota, 0);
	assert_null(e.catch_all);
	formatted = domains_format_line(&e);
	assert_string_equal(formatted, "plain.test");
	free(formatted);
	domains_entry_clear(&e);

	static const struct { const char *line, *error; } bad[] = {
		{ "bad..domain", "not a valid domain name" },
		{ "x.test quota=lots", "quota: expected a size" },
		{ "x.test catch_all=nobody", "catch_all: expected an address" },
		{ "x.test colour=blue", "unknown setting" },
		{ "x.test quota", "expected key=value" },
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		snprintf(line, sizeof(line), "%s", bad[i].line);
		const char *err = domains_parse_line(line, &e);
		assert_non_null(err);
		assert_non_null(strstr(err, bad[i].error));
		assert_null(e.name);
	}
}

static void domain_file_errors_name_the_line(void **state)
{
	(void)state;
	char err[2048] = "";
	FILE *errors = fmemopen(err, sizeof(err), "w");
	const char *path = write_file("domains", "# comment\r\n\none.test\r\n-bad.test\n"
				      "one.test quota=1M\n");
	assert_null(domains_load(path, NULL, errors));
	fclose(errors);
	assert_non_null(strstr(err, "domains:4: not a valid domain name"));
	assert_non_null(strstr(err, "domains:5: domain \"one.test\" is listed twice "
			       "(first on line 3)"));

	errors = fmemopen(err, sizeof(err), "w");
	assert_null(domains_load("/nonexistent/domains", NULL, errors));
	fclose(errors);
	assert_non_null(strstr(err, "cannot read: no such file"));
}

static void domain_table_merges_local_domains(void **state)
{
	(void)state;
	const char *path = write_file("domains", "one.test quota=10M catch_all=all@one.test\n"
				      "Two.test\n");
	strlist_t config = { 0 };
	strlist_add(&config, "two.test");
	strlist_add(&config, "three.test");
	struct domain_table *t = domains_load(path, &config, stderr);
	assert_non_null(t);
	assert_int_equal(domains_count(t), 3);
	assert_int_equal(domains_find(t, "ONE.test")->line, 1);
	assert_int_equal(domains_find(t, "two.test")->line, 2); /* the file's entry wins */
	assert_int_equal(domains_find(t, "three.test")->line, 0);
	assert_null(domains_find(t, "four.test"));
	strlist_t merged = { 0 };
	strlist_add(&merged, "three.test");
	domains_merge_into(t, &merged);
	assert_int_equal(merged.count, 3);
	assert_true(strlist_contains_nocase(&merged, "one.test"));
	strlist_free(&merged);
	strlist_free(&config);
	domains_free(&t);
	assert_null(t);
}

static void domain_in_relay_domains_is_refused(void **state)
{
	(void)state;
	write_file("domains", "# d\nrelayed.test\n");
	write_file("relay.conf", "local_domains = example.test\ndomains_file = domains\n"
		   "relay_domains = relayed.test\n");
	struct config cfg;
	char path[300];
	snprintf(path, sizeof(path), "%s/relay.conf", dir);
	assert_int_equal(config_load(path, &cfg, stderr), 0);
	char err[2048] = "";
	FILE *errors = fmemopen(err, sizeof(err), "w");
	assert_null(domains_load_config(&cfg, errors));
	fclose(errors);
	assert_non_null(strstr(err, "domains:2: domain \"relayed.test\" is also in relay_domains"));
	config_free(&cfg);

	write_file("relay.conf", "local_domains = example.test\ndomains_file = domains\n");
	assert_int_equal(config_load(path, &cfg, stderr), 0);
	struct domain_table *t = domains_load_config(&cfg, stderr);
	assert_non_null(t);
	/* the file's domain is local for every reader of local_domains */
	assert_true(strlist_contains_nocase(&cfg.local_domains, "relayed.test"));
	assert_true(strlist_contains_nocase(&cfg.local_domains, "example.test"));
	domains_free(&t);
	config_free(&cfg);
}

static void domain_sizes_format(void **state)
{
	(void)state;
	char b[32];
	domains_format_size(10ULL << 20, b, sizeof(b));
	assert_string_equal(b, "10M");
	domains_format_size(3ULL << 30, b, sizeof(b));
	assert_string_equal(b, "3G");
	domains_format_size(65536, b, sizeof(b));
	assert_string_equal(b, "64K");
	domains_format_size(1000, b, sizeof(b));
	assert_string_equal(b, "1000");
}

/* ---- catch-all and domain quota in the recipient tables ---- */

static struct recipient_tables *tables_with_domains(void)
{
	const char *users = write_file("users", "alice@one.test:{PLAIN}x::::::\n"
				       "bob@two.test:{PLAIN}x::::::\n");
	const char *aliases = write_file("aliases", "team@one.test: alice@one.test\n"
					 "loopy@two.test: ghost@two.test\n");
	const char *domains = write_file("domains", "one.test quota=2G catch_all=alice@one.test\n"
					 "two.test catch_all=loopy@two.test\n"
					 "three.test catch_all=gone@one.test\n"
					 "four.test catch_all=nobody@four.test\n");
	struct recipient_tables *t = recipients_load(users, aliases, NULL, stderr);
	assert_non_null(t);
	struct domain_table *d = domains_load(domains, NULL, stderr);
	assert_non_null(d);
	recipients_set_domains(t, d);
	return t;
}

static void catch_all_takes_unknown_addresses(void **state)
{
	(void)state;
	struct recipient_tables *t = tables_with_domains();
	strlist_t out = { 0 };

	assert_true(recipients_domain_is_local(t, "ONE.test"));
	assert_false(recipients_domain_is_local(t, "far.test"));
	assert_int_equal(recipients_domain_quota(t, "one.test"), 2ULL << 30);
	assert_int_equal(recipients_domain_quota(t, "two.test"), 0);
	assert_int_equal(recipients_domain_quota(t, "far.test"), 0);

	/* users and aliases are never caught */
	assert_null(recipients_catch_all(t, "alice@one.test"));
	assert_null(recipients_catch_all(t, "team@one.test"));
	assert_string_equal(recipients_catch_all(t, "whoever@one.test"), "alice@one.test");
	assert_null(recipients_catch_all(t, "whoever@far.test"));
	/* the catch-all address itself is not caught again */
	assert_null(recipients_catch_all(t, "nobody@four.test"));

	assert_int_equal(recipients_expand(t, "whoever@one.test", &out), EXPAND_OK);
	assert_int_equal(out.count, 1);
	assert_string_equal(out.items[0], "alice@one.test");
	strlist_free(&out);
	/* a catch-all in another domain, to a missing user: that address
	 * comes out (and bounces as unknown), it is not caught again */
	assert_int_equal(recipients_expand(t, "x@three.test", &out), EXPAND_OK);
	assert_int_equal(out.count, 1);
	assert_string_equal(out.items[0], "alice@one.test"); /* gone@one.test -> one's catch-all */
	strlist_free(&out);
	assert_int_equal(recipients_expand(t, "x@four.test", &out), EXPAND_OK);
	assert_string_equal(out.items[0], "nobody@four.test");
	strlist_free(&out);
	/* catch-all -> alias -> unknown address of the domain -> catch-all: a loop */
	assert_int_equal(recipients_expand(t, "x@two.test", &out), EXPAND_LOOP);
	strlist_free(&out);
	recipients_free(&t);
}

static void catch_all_to_nobody_is_a_warning(void **state)
{
	(void)state;
	struct recipient_tables *t = tables_with_domains();
	char err[2048] = "";
	FILE *out = fmemopen(err, sizeof(err), "w");
	domains_warn_catch_all(t, "domains", out);
	fclose(out);
	assert_non_null(strstr(err, "warning: domains:3: catch_all gone@one.test of three.test "
			       "is neither a user nor an alias"));
	assert_non_null(strstr(err, "warning: domains:4: catch_all nobody@four.test"));
	assert_null(strstr(err, "domains:1:"));
	assert_null(strstr(err, "domains:2:")); /* an alias is fine */
	recipients_free(&t);
}

static void tables_without_domains_know_none(void **state)
{
	(void)state;
	const char *users = write_file("users", "alice@one.test:{PLAIN}x::::::\n");
	struct recipient_tables *t = recipients_load(users, "", NULL, stderr);
	assert_false(recipients_domain_is_local(t, "one.test"));
	assert_null(recipients_catch_all(t, "x@one.test"));
	recipients_free(&t);
}

/* ---- the atomic rewrite ---- */

static void rewrite_keeps_other_lines_and_mode(void **state)
{
	(void)state;
	const char *path = write_file("table", "# comment\r\n\nfirst\r\nsecond\nlast-no-newline");
	chmod(path, 0640);
	struct account_file f;
	assert_int_equal(account_file_open(&f, "users_file", path, true, true, 0600, 1 << 20,
					   stderr), 0);
	assert_int_equal(f.count, 5);
	assert_string_equal(f.lines[2], "first\r");
	account_file_set(&f, 3, "SECOND");
	account_file_append(&f, "appended");
	assert_int_equal(account_file_commit(&f, stderr), 0);
	account_file_close(&f);
	char *text = read_back(path);
	assert_string_equal(text, "# comment\r\n\nfirst\r\nSECOND\nlast-no-newline\nappended\n");
	free(text);
	struct stat st;
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0640);

	assert_int_equal(account_file_open(&f, "users_file", path, true, true, 0600, 1 << 20,
					   stderr), 0);
	account_file_delete(&f, 5);
	account_file_delete(&f, 0);
	assert_int_equal(account_file_commit(&f, stderr), 0);
	account_file_close(&f);
	text = read_back(path);
	assert_string_equal(text, "\nfirst\r\nSECOND\nlast-no-newline\n");
	free(text);
}

static void rewrite_creates_a_missing_file_and_follows_a_link(void **state)
{
	(void)state;
	char path[300], link_path[300];
	snprintf(path, sizeof(path), "%s/new-table", dir);
	unlink(path);
	struct account_file f;
	assert_int_equal(account_file_open(&f, "domains_file", path, false, true, 0644, 1 << 20,
					   stderr), 0);
	assert_false(f.exists);
	account_file_append(&f, "one.test");
	assert_int_equal(account_file_commit(&f, stderr), 0);
	account_file_close(&f);
	struct stat st;
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0644);

	snprintf(link_path, sizeof(link_path), "%s/link-to-table", dir);
	unlink(link_path);
	assert_int_equal(symlink("new-table", link_path), 0);
	assert_int_equal(account_file_open(&f, "domains_file", link_path, false, true, 0644,
					   1 << 20, stderr), 0);
	account_file_append(&f, "two.test");
	assert_int_equal(account_file_commit(&f, stderr), 0);
	account_file_close(&f);
	assert_int_equal(lstat(link_path, &st), 0);
	assert_true(S_ISLNK(st.st_mode)); /* still a link: its target was replaced */
	char *text = read_back(path);
	assert_string_equal(text, "one.test\ntwo.test\n");
	free(text);
}

static void rewrite_refuses_a_nul_byte(void **state)
{
	(void)state;
	char path[300];
	snprintf(path, sizeof(path), "%s/nul-table", dir);
	FILE *fp = fopen(path, "w");
	fwrite("a\0b\n", 1, 4, fp);
	fclose(fp);
	char err[512] = "";
	FILE *errors = fmemopen(err, sizeof(err), "w");
	struct account_file f;
	assert_int_equal(account_file_open(&f, "users_file", path, true, true, 0600, 1 << 20,
					   errors), -1);
	account_file_close(&f);
	fclose(errors);
	assert_non_null(strstr(err, "NUL byte"));
}

/* ---- users_file entries ---- */

static void user_fields_edited_in_place(void **state)
{
	(void)state;
	const char *path = write_file("users",
		"# users\n"
		"short@x.test:{PLAIN}a\n"
		"full@x.test:{PLAIN}b:5000:5001:Full Name:/home/full:/bin/false:"
		"userdb_quota_rule=*:storage=1M userdb_mail=maildir:~/M\r\n"
		"five@x.test:{PLAIN}c:::::\n");
	struct account_users u;
	assert_int_equal(account_users_open(&u, path, true, stderr), 0);
	assert_int_equal(account_users_find(&u, "short@x.test"), 1);
	assert_int_equal(account_users_find(&u, "full@x.test"), 2);
	assert_int_equal(account_users_find(&u, "none@x.test"), -1);

	char *line = account_users_with_quota(&u, 1, "10M");
	assert_string_equal(line, "short@x.test:{PLAIN}a::::::userdb_quota_rule=*:storage=10M");
	free(line);
	line = account_users_with_quota(&u, 2, "2G");
	assert_string_equal(line, "full@x.test:{PLAIN}b:5000:5001:Full Name:/home/full:/bin/false:"
			    "userdb_mail=maildir:~/M userdb_quota_rule=*:storage=2G\r");
	free(line);
	line = account_users_with_quota(&u, 2, NULL);
	assert_string_equal(line, "full@x.test:{PLAIN}b:5000:5001:Full Name:/home/full:/bin/false:"
			    "userdb_mail=maildir:~/M\r");
	free(line);
	line = account_users_with_password(&u, 2, "{CRYPT}$y$new");
	assert_string_equal(line, "full@x.test:{CRYPT}$y$new:5000:5001:Full Name:/home/full:"
			    "/bin/false:userdb_quota_rule=*:storage=1M userdb_mail=maildir:~/M\r");
	free(line);
	line = account_users_with_password(&u, 3, "{CRYPT}$y$z");
	assert_string_equal(line, "five@x.test:{CRYPT}$y$z:::::");
	free(line);

	struct account_user_info info;
	account_users_info(&u, 2, &info);
	assert_string_equal(info.scheme, "PLAIN");
	assert_string_equal(info.quota, "1M");
	assert_string_equal(info.uid, "5000");
	assert_string_equal(info.home, "/home/full");
	assert_string_equal(info.extra, "userdb_mail=maildir:~/M");
	account_user_info_free(&info);
	account_users_info(&u, 1, &info);
	assert_string_equal(info.quota, "");
	assert_null(info.uid);
	assert_null(info.extra);
	account_user_info_free(&info);
	account_users_close(&u);

	line = account_users_entry("new@x.test", "{CRYPT}$y$h", "");
	assert_string_equal(line, "new@x.test:{CRYPT}$y$h::::::");
	free(line);
}

static void users_file_problems_name_the_line(void **state)
{
	(void)state;
	const char *path = write_file("users", "a@x.test:{PLAIN}a\nno colon here\n"
				      "A@X.test:{PLAIN}b\nnot-an-address:{PLAIN}c\n");
	char err[2048] = "";
	FILE *errors = fmemopen(err, sizeof(err), "w");
	struct account_users u;
	assert_int_equal(account_users_open(&u, path, false, errors), -1);
	account_users_close(&u);
	fclose(errors);
	assert_non_null(strstr(err, "users:2: expected user@domain:{SCHEME}password"));
	assert_non_null(strstr(err, "users:3: user \"a@x.test\" is listed twice (first on line 1)"));
	assert_non_null(strstr(err, "users:4: user \"not-an-address\" is not an address"));
}

/* ---- passwords ---- */

static void new_hash_is_yescrypt_in_dovecot_form(void **state)
{
	(void)state;
	char *hash = account_password_hash("correct horse", stderr);
	assert_non_null(hash);
	assert_memory_equal(hash, "{CRYPT}$y$", 10);
	const char *bare = hash + strlen(ACCOUNT_HASH_PREFIX);
	struct crypt_data *cd = calloc(1, sizeof(*cd));
	assert_string_equal(crypt_r("correct horse", bare, cd), bare);
	assert_string_not_equal(crypt_r("wrong horse", bare, cd), bare);
	free(cd);
	char *other = account_password_hash("correct horse", stderr);
	assert_string_not_equal(hash, other); /* a new salt each time */
	free(other);
	assert_string_equal(account_password_scheme(hash), "yescrypt");
	free(hash);
}

static void scheme_names_never_show_the_hash(void **state)
{
	(void)state;
	assert_string_equal(account_password_scheme("{SHA512-CRYPT}$6$abc$def"), "SHA512-CRYPT");
	assert_string_equal(account_password_scheme("{SHA512-CRYPT}!"), "none (login disabled)");
	assert_string_equal(account_password_scheme("{BLF-CRYPT}$2y$05$abc"), "BLF-CRYPT");
	assert_string_equal(account_password_scheme("{CRYPT}$2b$05$abc"), "BLF-CRYPT");
	assert_string_equal(account_password_scheme("$y$j9T$abc"), "yescrypt");
	assert_string_equal(account_password_scheme("{PLAIN}!"), "PLAIN");
	assert_string_equal(account_password_scheme(""), "none (login disabled)");
	assert_string_equal(account_password_scheme("{WEIRD}x"), "another scheme");
}

static void quota_arguments(void **state)
{
	(void)state;
	char b[64];
	assert_true(account_parse_quota("t", "10m", b, sizeof(b)));
	assert_string_equal(b, "10M");
	assert_true(account_parse_quota("t", "1048576", b, sizeof(b)));
	assert_string_equal(b, "1M");
	assert_true(account_parse_quota("t", "0", b, sizeof(b)));
	assert_string_equal(b, "0");
	assert_false(account_parse_quota("t", "ten", b, sizeof(b)));
	assert_false(account_parse_quota("t", "-1", b, sizeof(b)));
}

/* ---- the supervisor's look at the table files ---- */

static void table_change_is_reported_once(void **state)
{
	(void)state;
	char conf[300], tmp[300];
	write_file("users", "a@x.test:{PLAIN}a\n");
	write_file("aliases", "");
	write_file("watch.conf", "users_file = users\naliases_file = aliases\n"
		   "domains_file = not-there-yet\n");
	snprintf(conf, sizeof(conf), "%s/watch.conf", dir);
	struct config cfg;
	assert_int_equal(config_load(conf, &cfg, stderr), 0);
	struct table_watch w = { 0 }, taken = { 0 };
	const char *which;
	table_watch_take(&taken, &cfg);
	table_watch_move(&w, &taken);
	assert_false(table_watch_changed(&w, &which));

	/* replaced by rename, as postern user does */
	snprintf(tmp, sizeof(tmp), "%s/users.new", dir);
	FILE *f = fopen(tmp, "w");
	fputs("a@x.test:{PLAIN}a\nb@x.test:{PLAIN}b\n", f);
	fclose(f);
	assert_int_equal(rename(tmp, cfg.users_file), 0);
	assert_true(table_watch_changed(&w, &which));
	assert_string_equal(which, cfg.users_file);
	assert_false(table_watch_changed(&w, &which)); /* once */

	/* a file that appears counts as a change too */
	write_file("not-there-yet", "x.test\n");
	assert_true(table_watch_changed(&w, &which));
	assert_string_equal(which, cfg.domains_file);
	assert_false(table_watch_changed(&w, &which));
	table_watch_free(&w);
	config_free(&cfg);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(domain_lines),
		cmocka_unit_test(domain_file_errors_name_the_line),
		cmocka_unit_test(domain_table_merges_local_domains),
		cmocka_unit_test(domain_in_relay_domains_is_refused),
		cmocka_unit_test(domain_sizes_format),
		cmocka_unit_test(catch_all_takes_unknown_addresses),
		cmocka_unit_test(catch_all_to_nobody_is_a_warning),
		cmocka_unit_test(tables_without_domains_know_none),
		cmocka_unit_test(rewrite_keeps_other_lines_and_mode),
		cmocka_unit_test(rewrite_creates_a_missing_file_and_follows_a_link),
		cmocka_unit_test(rewrite_refuses_a_nul_byte),
		cmocka_unit_test(user_fields_edited_in_place),
		cmocka_unit_test(users_file_problems_name_the_line),
		cmocka_unit_test(new_hash_is_yescrypt_in_dovecot_form),
		cmocka_unit_test(scheme_names_never_show_the_hash),
		cmocka_unit_test(quota_arguments),
		cmocka_unit_test(table_change_is_reported_once),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}

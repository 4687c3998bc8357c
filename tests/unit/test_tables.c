/*
 * test_tables.c - mynetworks matching, users/aliases files (the uid and
 * gid fields honoured or refused), alias expansion (lists, duplicates,
 * loops) and the relay decision.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "testutil.h"

#include "lib/cidr.h"
#include "mail/recipients.h"
#include "policy/policy.h"

static struct sockaddr_in v4(const char *a)
{
	struct sockaddr_in sa = { .sin_family = AF_INET };
	inet_pton(AF_INET, a, &sa.sin_addr);
	return sa;
}

static void test_cidr(void **state)
{
	(void)state;
	cidr_list_t l = { 0 };
	char *err = NULL;
	assert_true(cidr_list_parse(&l, "127.0.0.0/8, 10.1.0.0/16 ::1/128 2001:db8::/32", &err));
	struct sockaddr_in a = v4("127.1.2.3"), b = v4("10.2.0.1"), c = v4("10.1.255.1");
	assert_true(cidr_list_match(&l, (struct sockaddr *)&a));
	assert_false(cidr_list_match(&l, (struct sockaddr *)&b));
	assert_true(cidr_list_match(&l, (struct sockaddr *)&c));
	struct sockaddr_in6 m = { .sin6_family = AF_INET6 };
	inet_pton(AF_INET6, "::ffff:127.0.0.1", &m.sin6_addr);
	assert_true(cidr_list_match(&l, (struct sockaddr *)&m));
	inet_pton(AF_INET6, "2001:db9::1", &m.sin6_addr);
	assert_false(cidr_list_match(&l, (struct sockaddr *)&m));
	cidr_list_free(&l);
	assert_false(cidr_list_parse(&l, "300.0.0.0/8", &err));
	free(err);
	cidr_list_free(&l);
}

TESTUTIL_PRIVATE_DIR("tables")

static char *write_file(const char *name, const char *text)
{
	static char path[2][256];
	static int which;
	char *p = path[which++ % 2];
	snprintf(p, 256, "%s/%s", dir, name);
	FILE *f = fopen(p, "w");
	fputs(text, f);
	fclose(f);
	return p;
}

/* The mailbox owner the tests load the users file for. */
static const struct recipients_owner owner = { "mail_owner vmail", 5000, 5001 };

static struct recipient_tables *tables(void)
{
	const char *users = write_file("users",
		"# comment\nalice@example.test:{PLAIN}pw::::::\n"
		"Bob@Example.test:{SHA512-CRYPT}$6$x:5000:5001::/home::\n"
		"admin@example.test:x\n");
	const char *aliases = write_file("aliases",
		"postmaster@example.test: admin@example.test\n"
		"team@example.test: alice@example.test,\n  bob@example.test alice@example.test\n"
		"all@example.test: team@example.test, postmaster@example.test, remote@far.test\n"
		"self@example.test: self@example.test, alice@example.test\n"
		"loop1@example.test: loop2@example.test\nloop2@example.test: loop1@example.test\n");
	return recipients_load(users, aliases, &owner, stderr);
}

static void test_users_and_aliases(void **state)
{
	(void)state;
	struct recipient_tables *t = tables();
	assert_non_null(t);
	assert_true(recipients_is_user(t, "alice@example.test"));
	assert_true(recipients_is_user(t, "bob@example.test"));
	assert_false(recipients_is_user(t, "carol@example.test"));
	assert_int_equal(recipients_user_count(t), 3);
	assert_int_equal(recipients_alias_count(t), 6);
	const strlist_t *team = recipients_alias(t, "team@example.test");
	assert_non_null(team);
	assert_int_equal(team->count, 3);
	recipients_free(&t);
	assert_null(t);
}

static void test_expansion(void **state)
{
	(void)state;
	struct recipient_tables *t = tables();
	strlist_t out = { 0 };
	assert_int_equal(recipients_expand(t, "all@example.test", &out), EXPAND_OK);
	assert_int_equal(out.count, 4); /* alice, bob, admin, remote: each once */
	assert_string_equal(out.items[0], "alice@example.test");
	assert_string_equal(out.items[3], "remote@far.test");
	strlist_free(&out);
	assert_int_equal(recipients_expand(t, "self@example.test", &out), EXPAND_OK);
	assert_int_equal(out.count, 2);
	assert_string_equal(out.items[0], "self@example.test");
	strlist_free(&out);
	assert_int_equal(recipients_expand(t, "loop1@example.test", &out), EXPAND_LOOP);
	strlist_free(&out);
	assert_int_equal(recipients_expand(t, "alice@example.test", &out), EXPAND_OK);
	assert_int_equal(out.count, 1);
	strlist_free(&out);
	recipients_free(&t);
}

static void test_table_errors(void **state)
{
	(void)state;
	char err[2048] = "";
	FILE *errors = fmemopen(err, sizeof(err), "w");
	const char *users = write_file("users", "alice@example.test:x\nnodomain:x\nalice@example.test:y\n");
	const char *aliases = write_file("aliases", "a@example.test:\nb@example.test bad\n");
	assert_null(recipients_load(users, aliases, &owner, errors));
	fclose(errors);
	assert_non_null(strstr(err, "users:2: user \"nodomain\" is not an address"));
	assert_non_null(strstr(err, "users:3: user \"alice@example.test\" is listed twice"));
	assert_non_null(strstr(err, "aliases:1: alias \"a@example.test\" has no targets"));
	assert_non_null(strstr(err, "aliases:2: expected"));
}

/* uid/gid fields: empty or the owner's (number or name) are honoured,
 * anything else is a FILE:LINE error, never ignored. */
static void test_users_uid_gid(void **state)
{
	(void)state;
	char err[4096] = "";
	FILE *errors = fmemopen(err, sizeof(err), "w");
	const char *users = write_file("users",
		"a@example.test:{PLAIN}x:5000:5001::::\n"
		"b@example.test:{PLAIN}x:5000\n"
		"c@example.test:{PLAIN}x::5001\n"
		"d@example.test:{PLAIN}x:1:5001::::\n"
		"e@example.test:{PLAIN}x:5000:1::::\n"
		"f@example.test:{PLAIN}x:root:::::\n"
		"g@example.test:{PLAIN}x:no-such-user-here:::::\n"
		"h@example.test:{PLAIN}x::no-such-group-here::::\n");
	const char *aliases = write_file("aliases", "");
	assert_null(recipients_load(users, aliases, &owner, errors));
	fclose(errors);
	assert_null(strstr(err, "users:1:"));
	assert_null(strstr(err, "users:2:"));
	assert_null(strstr(err, "users:3:"));
	assert_non_null(strstr(err, "users:4: uid \"1\" is not the one of mail_owner vmail "
				    "(uid 5000): postern writes every mailbox as mail_owner"));
	assert_non_null(strstr(err, "users:5: gid \"1\" is not the one of mail_owner vmail "
				    "(gid 5001)"));
	assert_non_null(strstr(err, "users:6: uid \"root\" is not the one of"));
	assert_non_null(strstr(err, "users:7: uid \"no-such-user-here\" is no user"));
	assert_non_null(strstr(err, "users:8: gid \"no-such-group-here\" is no group"));

	/* Names that resolve to the owner are honoured too. */
	struct recipients_owner root_owner = { "mail_owner root", 0, 0 };
	users = write_file("users", "a@example.test:{PLAIN}x:root:root::::\n"
				    "b@example.test:{PLAIN}x:0:0\n");
	aliases = write_file("aliases", "");
	struct recipient_tables *t = recipients_load(users, aliases, &root_owner, stderr);
	assert_non_null(t);
	assert_int_equal(recipients_user_count(t), 2);
	recipients_free(&t);
	/* Owner unknown (already reported elsewhere): not compared. */
	users = write_file("users", "a@example.test:{PLAIN}x:12:34\n");
	aliases = write_file("aliases", "");
	t = recipients_load(users, aliases, NULL, stderr);
	assert_non_null(t);
	recipients_free(&t);
}

/* The users text a command is about to write gets the file's checks,
 * reported under the file's name, line by line. */
static void test_users_text(void **state)
{
	(void)state;
	char err[2048] = "";
	FILE *errors = fmemopen(err, sizeof(err), "w");
	buf_t text = BUF_INIT;
	buf_puts(&text, "# comment\n"
			"a@example.test:{PLAIN}x::::::userdb_quota_rule=*:storage=+10M\n"
			"b@example.test:{PLAIN}x::1::::\n"
			"c@example.test:{PLAIN}x::::::userdb_quota_rule=*:storage=10M");
	assert_null(recipients_load_users_text("/etc/users", &text, "", &owner, errors));
	fclose(errors);
	buf_free(&text);
	assert_non_null(strstr(err, "/etc/users:2: userdb_quota_rule=*:storage=+10M: "));
	assert_non_null(strstr(err, "/etc/users:3: gid \"1\" is not the one of"));
	assert_null(strstr(err, "/etc/users:4:"));

	buf_puts(&text, "c@example.test:{PLAIN}x::::::userdb_quota_rule=*:storage=10M\n");
	struct recipient_tables *t = recipients_load_users_text("/etc/users", &text, "", &owner,
								stderr);
	buf_free(&text);
	assert_non_null(t);
	assert_true(recipients_is_user(t, "c@example.test"));
	assert_int_equal(recipients_quota(t, "c@example.test", 0), 10 << 20);
	recipients_free(&t);
}

static enum policy_verdict relay(struct policy_env *env, const char *client,
				 const char *rcpt, struct policy_reply *r)
{
	struct mail_address a;
	const char *why;
	struct sockaddr_in sa = v4(client);
	if (address_parse_path(rcpt, strlen(rcpt), ADDR_ALLOW_BARE_POSTMASTER, &a, &why) < 0)
		fail_msg("cannot parse %s: %s", rcpt, why);
	struct policy_request req = { .stage = POLICY_RCPT, .has_rcpt = true, .rcpt = a };
	memcpy(&req.client, &sa, sizeof(sa));
	snprintf(req.client_addr, sizeof(req.client_addr), "%s", client);
	/* relay control never waits: the run finishes at once */
	assert_null(policy_run_start(env, &req, NULL, NULL, r));
	policy_reply_free(r);
	return r->verdict;
}

static void test_relay_control(void **state)
{
	(void)state;
	struct config cfg = { 0 };
	char *err = NULL;
	strlist_split(&cfg.local_domains, "example.test");
	strlist_split(&cfg.relay_domains, "relay.test");
	assert_true(cidr_list_parse(&cfg.mynetworks, "10.0.0.0/8", &err));
	struct policy_env env;
	policy_env_init(&env, &cfg, tables(), NULL);
	struct policy_reply r;
	const char *outside = "192.0.2.7", *inside = "10.1.1.1";

	assert_int_equal(relay(&env, outside, "<alice@example.test>", &r), POLICY_DUNNO);
	assert_int_equal(relay(&env, outside, "<ALICE@EXAMPLE.TEST>", &r), POLICY_DUNNO);
	assert_int_equal(relay(&env, outside, "<\"alice\"@example.test>", &r), POLICY_DUNNO);
	assert_int_equal(relay(&env, outside, "<team@example.test>", &r), POLICY_DUNNO);
	assert_int_equal(relay(&env, outside, "<Postmaster>", &r), POLICY_DUNNO);
	assert_int_equal(relay(&env, outside, "<@far.test:alice@example.test>", &r), POLICY_DUNNO);
	assert_int_equal(relay(&env, outside, "<anyone@relay.test>", &r), POLICY_DUNNO);
	assert_int_equal(relay(&env, inside, "<anyone@far.test>", &r), POLICY_DUNNO);

	assert_int_equal(relay(&env, outside, "<carol@example.test>", &r), POLICY_REJECT);
	assert_int_equal(r.code, 550);
	assert_string_equal(r.status, "5.1.1");
	const char *denied[] = {
		"<user@far.test>", "<user%far.test@example.test>", "<far.test!user@example.test>",
		"<\"user@far.test\"@example.test>", "<\"user%far.test\"@example.test>",
		"<@example.test:user@far.test>", "<user@[192.0.2.1]>", "<user%far.test@relay.test>",
		"<user!x@relay.test>",
	};
	for (size_t i = 0; i < sizeof(denied) / sizeof(denied[0]); i++) {
		if (relay(&env, outside, denied[i], &r) != POLICY_REJECT || r.code != 554 ||
		    strcmp(r.status, "5.7.1") != 0)
			fail_msg("%s was not refused with 554 5.7.1", denied[i]);
	}
	recipients_free((struct recipient_tables **)&env.rcpt_tables);
	strlist_free(&cfg.local_domains);
	strlist_free(&cfg.relay_domains);
	cidr_list_free(&cfg.mynetworks);
}

static void test_units(void **state)
{
	(void)state;
	uint64_t v;
	assert_true(str_parse_size("10M", &v));
	assert_int_equal(v, 10485760);
	assert_false(str_parse_size("10X", &v));
	assert_false(str_parse_size("99999999999999999999", &v));
	assert_false(str_parse_size("18446744073709551615G", &v));
	assert_true(str_parse_duration("5d", &v));
	assert_int_equal(v, 432000);
	assert_false(str_parse_duration("", &v));
	assert_false(str_parse_duration("5 m", &v));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_cidr),
		cmocka_unit_test(test_users_and_aliases),
		cmocka_unit_test(test_expansion),
		cmocka_unit_test(test_table_errors),
		cmocka_unit_test(test_users_uid_gid),
		cmocka_unit_test(test_users_text),
		cmocka_unit_test(test_relay_control),
		cmocka_unit_test(test_units),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}

/*
 * test_address.c - RFC 5321 path parser: valid forms, limits, routing
 * tricks and UTF-8 handling.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "mail/address.h"

static long parse(const char *text, unsigned flags, struct mail_address *a)
{
	const char *err = NULL;
	return address_parse_path(text, strlen(text), flags, a, &err);
}

static void test_plain(void **state)
{
	(void)state;
	struct mail_address a;
	assert_int_equal(parse("<Alice@Example.TEST>", 0, &a), 20);
	assert_string_equal(a.local, "Alice");
	assert_string_equal(a.domain, "example.test");
	assert_false(a.is_null);
	char out[300];
	address_format(&a, out, sizeof(out));
	assert_string_equal(out, "Alice@example.test");
}

static void test_null_path(void **state)
{
	(void)state;
	struct mail_address a;
	assert_int_equal(parse("<>", ADDR_ALLOW_NULL, &a), 2);
	assert_true(a.is_null);
	assert_int_equal(parse("<>", 0, &a), -1);
}

static void test_source_route_dropped(void **state)
{
	(void)state;
	struct mail_address a;
	assert_true(parse("<@relay.test,@other.test:bob@example.test>", 0, &a) > 0);
	assert_true(a.had_source_route);
	assert_string_equal(a.local, "bob");
	assert_string_equal(a.domain, "example.test");
	assert_int_equal(parse("<@relay.test bob@example.test>", 0, &a), -1);
}

static void test_quoted_local(void **state)
{
	(void)state;
	struct mail_address a;
	char local[70];
	assert_true(parse("<\"bob\"@example.test>", 0, &a) > 0);
	assert_true(a.local_quoted);
	assert_true(address_unquoted_local(&a, local, sizeof(local)));
	assert_string_equal(local, "bob");
	assert_true(parse("<\"bob@evil.test\"@example.test>", 0, &a) > 0);
	assert_false(address_unquoted_local(&a, local, sizeof(local)));
	assert_true(parse("<\"a\\\"b\"@example.test>", 0, &a) > 0);
	assert_false(address_unquoted_local(&a, local, sizeof(local)));
	assert_int_equal(parse("<\"unterminated@example.test>", 0, &a), -1);
}

static void test_routing_characters(void **state)
{
	(void)state;
	struct mail_address a;
	char local[70];
	assert_true(parse("<user%evil.test@example.test>", 0, &a) > 0);
	assert_false(address_unquoted_local(&a, local, sizeof(local)));
	assert_true(parse("<evil.test!user@example.test>", 0, &a) > 0);
	assert_false(address_unquoted_local(&a, local, sizeof(local)));
	assert_int_equal(parse("<user@evil.test@example.test>", 0, &a), -1);
}

static void test_address_literals(void **state)
{
	(void)state;
	struct mail_address a;
	assert_true(parse("<user@[192.0.2.1]>", 0, &a) > 0);
	assert_true(a.domain_literal);
	assert_true(parse("<user@[IPv6:2001:db8::1]>", 0, &a) > 0);
	assert_int_equal(parse("<user@[300.1.1.1]>", 0, &a), -1);
	assert_int_equal(parse("<user@[IPv6:zz]>", 0, &a), -1);
}

static void test_bad_syntax(void **state)
{
	(void)state;
	struct mail_address a;
	const char *bad[] = { "user@example.test", "<user>", "<@example.test>", "<user@>",
			      "<user@-bad.test>", "<user@bad-.test>", "<user@example.test.>",
			      "<user..x@example.test>", "<.user@example.test>", "<user@exa mple.test>",
			      "<user@example.test", "<us er@example.test>", "<user@ex_ample.test>" };
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		if (parse(bad[i], ADDR_ALLOW_NULL, &a) != -1)
			fail_msg("accepted bad address %s", bad[i]);
	}
}

static void test_length_limits(void **state)
{
	(void)state;
	struct mail_address a;
	char text[400];
	memset(text, 0, sizeof(text));
	text[0] = '<';
	memset(text + 1, 'a', 64);
	strcat(text, "@example.test>");
	assert_true(parse(text, 0, &a) > 0);
	text[0] = '<';
	memset(text + 1, 'a', 65);
	text[66] = '\0';
	strcat(text, "@example.test>");
	assert_int_equal(parse(text, 0, &a), -1);
	/* domain of 300 octets */
	strcpy(text, "<a@");
	for (int i = 0; i < 50; i++)
		strcat(text, "abcde.");
	strcat(text, "test>");
	assert_int_equal(parse(text, 0, &a), -1);
}

static void test_postmaster(void **state)
{
	(void)state;
	struct mail_address a;
	assert_true(parse("<Postmaster>", ADDR_ALLOW_BARE_POSTMASTER, &a) > 0);
	assert_string_equal(a.domain, "");
	assert_int_equal(parse("<Postmaster>", 0, &a), -1);
	assert_int_equal(parse("<admin>", ADDR_ALLOW_BARE_POSTMASTER, &a), -1);
}

static void test_utf8(void **state)
{
	(void)state;
	struct mail_address a;
	assert_int_equal(parse("<j\xc3\xb6rg@example.test>", 0, &a), -1);
	assert_true(parse("<j\xc3\xb6rg@example.test>", ADDR_ALLOW_UTF8, &a) > 0);
	assert_true(a.utf8);
	assert_true(parse("<user@b\xc3\xbc\x63her.test>", ADDR_ALLOW_UTF8, &a) > 0);
	/* overlong and invalid sequences */
	assert_int_equal(parse("<j\xc0\xafrg@example.test>", ADDR_ALLOW_UTF8, &a), -1);
	assert_int_equal(parse("<j\xed\xa0\x80@example.test>", ADDR_ALLOW_UTF8, &a), -1);
	assert_int_equal(parse("<j\xff@example.test>", ADDR_ALLOW_UTF8, &a), -1);
}

static void test_consumed_length(void **state)
{
	(void)state;
	struct mail_address a;
	const char *text = "<a@b.test> SIZE=10";
	assert_int_equal(parse(text, 0, &a), 10);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_plain),
		cmocka_unit_test(test_null_path),
		cmocka_unit_test(test_source_route_dropped),
		cmocka_unit_test(test_quoted_local),
		cmocka_unit_test(test_routing_characters),
		cmocka_unit_test(test_address_literals),
		cmocka_unit_test(test_bad_syntax),
		cmocka_unit_test(test_length_limits),
		cmocka_unit_test(test_postmaster),
		cmocka_unit_test(test_utf8),
		cmocka_unit_test(test_consumed_length),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

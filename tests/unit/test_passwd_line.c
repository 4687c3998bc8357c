/*
 * test_passwd_line.c - splitting Dovecot passwd-file lines and reading
 * their extra fields.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>

#include <cmocka.h>

#include "../../src/mail/passwd_line.h"

static void full_line_has_every_field(void **state)
{
	(void)state;
	char line[] = "a@x.test:{SHA512-CRYPT}$6$s$h:1000:1000:Alice:/home/a:/bin/sh:"
		      "userdb_quota_rule=*:storage=10M nopassword";
	struct passwd_line f;
	assert_true(passwd_line_split(line, &f));
	assert_string_equal(f.user, "a@x.test");
	assert_string_equal(f.password, "{SHA512-CRYPT}$6$s$h");
	assert_string_equal(f.uid, "1000");
	assert_string_equal(f.gid, "1000");
	assert_string_equal(f.gecos, "Alice");
	assert_string_equal(f.home, "/home/a");
	assert_string_equal(f.shell, "/bin/sh");
	assert_string_equal(f.extra, "userdb_quota_rule=*:storage=10M nopassword");

	char v[32];
	assert_true(passwd_line_extra(f.extra, "userdb_quota_rule", v, sizeof(v)));
	assert_string_equal(v, "*:storage=10M");
	assert_true(passwd_line_extra(f.extra, "nopassword", v, sizeof(v)));
	assert_string_equal(v, "");
	assert_false(passwd_line_extra(f.extra, "userdb", v, sizeof(v)));
	assert_false(passwd_line_extra(f.extra, "userdb_quota_rule", v, 5)); /* too long */
}

static void short_lines(void **state)
{
	(void)state;
	char two[] = "b@x.test:{BLF-CRYPT}$2y$05$abc";
	struct passwd_line f;
	assert_true(passwd_line_split(two, &f));
	assert_string_equal(f.password, "{BLF-CRYPT}$2y$05$abc");
	assert_null(f.uid);
	assert_null(f.extra);

	char empty_password[] = "c@x.test::";
	assert_true(passwd_line_split(empty_password, &f));
	assert_string_equal(f.password, "");
	assert_string_equal(f.uid, "");

	char no_password[] = "d@x.test";
	assert_false(passwd_line_split(no_password, &f));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(full_line_has_every_field),
		cmocka_unit_test(short_lines),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

/*
 * test_sasl.c - the SASL decoders the smtp (and pop3) workers run on
 * client bytes: strict base64 (RFC 4648 / RFC 4954 section 4), PLAIN
 * (RFC 4616) and LOGIN responses, and the AUTH command's parse.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>

#include <cmocka.h>

#include "../../src/auth/sasl.h"
#include "../../src/smtp/command.h"

static void base64_strict(void **state)
{
	(void)state;
	unsigned char out[64];
	size_t n;
	assert_true(sasl_base64_decode("YWJj", 4, out, sizeof(out), &n));
	assert_int_equal(n, 3);
	assert_memory_equal(out, "abc", 3);
	assert_true(sasl_base64_decode("YWI=", 4, out, sizeof(out), &n));
	assert_int_equal(n, 2);
	assert_true(sasl_base64_decode("YQ==", 4, out, sizeof(out), &n));
	assert_int_equal(n, 1);
	assert_true(sasl_base64_decode("=", 1, out, sizeof(out), &n)); /* the empty response */
	assert_int_equal(n, 0);
	assert_true(sasl_base64_decode("", 0, out, sizeof(out), &n));
	assert_int_equal(n, 0);
	const char *bad[] = { "YWJ", "YW=j", "Y===", "YQ=", "YWJj YWJj", "YWJj\r", "YQ==YWJj",
			      "YR==", /* non-zero bits under the padding */ "YWK=", "====", "@@@@" };
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_false(sasl_base64_decode(bad[i], strlen(bad[i]), out, sizeof(out), &n));
	/* bounded: what does not fit is refused */
	assert_false(sasl_base64_decode("YWJjYWJj", 8, out, 5, &n));
	buf_t b = BUF_INIT;
	sasl_base64_encode("\0user\0pass", 10, &b);
	assert_string_equal(buf_cstr(&b), "AHVzZXIAcGFzcw==");
	buf_reset(&b);
	sasl_base64_encode("Username:", 9, &b);
	assert_string_equal(buf_cstr(&b), "VXNlcm5hbWU6");
	buf_free(&b);
}

static enum sasl_status plain_of(const char *raw, size_t len, struct sasl_credentials *c)
{
	buf_t b = BUF_INIT;
	sasl_base64_encode(raw, len, &b);
	enum sasl_status st = sasl_plain_decode(b.data != NULL ? b.data : "", b.len, c);
	buf_free(&b);
	return st;
}

static void plain(void **state)
{
	(void)state;
	struct sasl_credentials c;
	assert_int_equal(plain_of("\0alice@x.test\0pw d", 18, &c), SASL_OK);
	assert_string_equal(c.user, "alice@x.test");
	assert_string_equal(c.password, "pw d");
	/* the same authorization identity is fine, another is a proxy login */
	assert_int_equal(plain_of("a@x\0a@x\0p", 9, &c), SASL_OK);
	assert_int_equal(plain_of("b@x\0a@x\0p", 9, &c), SASL_PROXY);
	assert_string_equal(c.password, ""); /* wiped */
	assert_int_equal(plain_of("\0a@x\0", 5, &c), SASL_BAD_MESSAGE);   /* no password */
	assert_int_equal(plain_of("\0\0p", 3, &c), SASL_BAD_MESSAGE);     /* no user */
	assert_int_equal(plain_of("a@x\0p", 5, &c), SASL_BAD_MESSAGE);    /* one NUL */
	assert_int_equal(plain_of("\0a\0p\0q", 6, &c), SASL_BAD_MESSAGE); /* three */
	assert_int_equal(sasl_plain_decode("=", 1, &c), SASL_BAD_MESSAGE);
	assert_int_equal(sasl_plain_decode("%%%%", 4, &c), SASL_BAD_BASE64);
	char big[AUTH_PASSWORD_MAX + 16];
	big[0] = '\0';
	memcpy(big + 1, "u\0", 2);
	memset(big + 3, 'p', AUTH_PASSWORD_MAX + 1);
	assert_int_equal(plain_of(big, AUTH_PASSWORD_MAX + 4, &c), SASL_TOO_LONG);
	assert_int_equal(plain_of(big, AUTH_PASSWORD_MAX + 3, &c), SASL_OK);
	assert_int_equal(strlen(c.password), AUTH_PASSWORD_MAX);
	sasl_credentials_wipe(&c);
}

static void login(void **state)
{
	(void)state;
	char out[16];
	assert_int_equal(sasl_login_decode("YWxpY2U=", 8, out, sizeof(out) - 1), SASL_OK);
	assert_string_equal(out, "alice");
	assert_int_equal(sasl_login_decode("=", 1, out, sizeof(out) - 1), SASL_BAD_MESSAGE);
	assert_int_equal(sasl_login_decode("YQBi", 4, out, sizeof(out) - 1), SASL_BAD_MESSAGE);
	assert_int_equal(sasl_login_decode("YWxp Y2U=", 9, out, sizeof(out) - 1), SASL_BAD_BASE64);
	assert_int_equal(sasl_login_decode("YWFhYWFhYWFhYWFhYWFhYWFh", 24, out, 4), SASL_TOO_LONG);
}

static void auth_command(void **state)
{
	(void)state;
	struct smtp_command cmd;
	struct smtp_parse_error err;
	const char *line = "AUTH PLAIN AHVAeAB";
	assert_true(smtp_command_parse(line, strlen(line), 0, &cmd, &err));
	assert_int_equal(cmd.verb, SMTP_AUTH);
	assert_true(slice_eq_nocase(cmd.auth_mechanism, "plain"));
	assert_true(cmd.auth_has_initial);
	assert_int_equal(cmd.auth_initial.len, 7);
	line = "auth login";
	assert_true(smtp_command_parse(line, strlen(line), 0, &cmd, &err));
	assert_false(cmd.auth_has_initial);
	line = "AUTH PLAIN =";
	assert_true(smtp_command_parse(line, strlen(line), 0, &cmd, &err));
	assert_int_equal(cmd.auth_initial.len, 1);
	const char *bad[] = { "AUTH", "AUTH PLAIN a b", "AUTH PL@IN", "AUTH ABCDEFGHIJKLMNOPQRSTU" };
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_false(smtp_command_parse(bad[i], strlen(bad[i]), 0, &cmd, &err));
		assert_int_equal(err.code, 501);
		assert_string_equal(err.status, "5.5.4");
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(base64_strict),
		cmocka_unit_test(plain),
		cmocka_unit_test(login),
		cmocka_unit_test(auth_command),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

/*
 * test_smtp_parse.c - SMTP command parser and DATA/BDAT decoder:
 * transparency, end-of-data detection, smuggling sequences and limits.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "smtp/command.h"
#include "smtp/data.h"

static bool cmd(const char *line, struct smtp_command *c, struct smtp_parse_error *e)
{
	return smtp_command_parse(line, strlen(line), false, c, e);
}

static void test_verbs(void **state)
{
	(void)state;
	struct smtp_command c;
	struct smtp_parse_error e;
	assert_true(cmd("ehlo client.test", &c, &e));
	assert_int_equal(c.verb, SMTP_EHLO);
	assert_true(cmd("QUIT", &c, &e));
	assert_int_equal(c.verb, SMTP_QUIT);
	assert_false(cmd("QUIT now", &c, &e));
	assert_int_equal(e.code, 501);
	assert_false(cmd("FOO bar", &c, &e));
	assert_int_equal(e.code, 500);
	assert_false(cmd("", &c, &e));
	assert_int_equal(e.code, 500);
	assert_false(cmd("EHLO", &c, &e));
	assert_int_equal(e.code, 501);
	assert_false(smtp_command_parse("NOOP\0x", 6, false, &c, &e));
}

static void test_mail_params(void **state)
{
	(void)state;
	struct smtp_command c;
	struct smtp_parse_error e;
	assert_true(cmd("MAIL FROM:<a@b.test> SIZE=100 BODY=8BITMIME", &c, &e));
	assert_int_equal(c.param_count, 2);
	const struct smtp_param *p = smtp_command_param(&c, "size");
	assert_non_null(p);
	assert_int_equal(p->value.len, 3);
	assert_true(cmd("MAIL FROM: <a@b.test>", &c, &e));
	assert_true(cmd("mail from:<>", &c, &e));
	assert_true(c.path.is_null);
	assert_false(cmd("MAIL FROM:a@b.test", &c, &e));
	assert_string_equal(e.status, "5.1.7");
	assert_false(cmd("MAIL TO:<a@b.test>", &c, &e));
	assert_false(cmd("MAIL FROM:<a@b.test>SIZE=1", &c, &e));
	assert_false(cmd("MAIL FROM:<a@b.test> SIZE=", &c, &e));
	assert_false(cmd("MAIL FROM:<a@b.test> =1", &c, &e));
}

static void test_utf8_needs_smtputf8(void **state)
{
	(void)state;
	struct smtp_command c;
	struct smtp_parse_error e;
	assert_false(cmd("MAIL FROM:<j\xc3\xb6rg@b.test>", &c, &e));
	assert_int_equal(e.code, 553);
	assert_string_equal(e.status, "5.6.7");
	assert_true(cmd("MAIL FROM:<j\xc3\xb6rg@b.test> SMTPUTF8", &c, &e));
	assert_false(cmd("MAIL FROM:<j\xc3\xb6rg@b.test> SMTPUTF8=yes", &c, &e));
	assert_false(cmd("RCPT TO:<j\xc3\xb6rg@b.test>", &c, &e));
	assert_int_equal(e.code, 553);
	const char *r = "RCPT TO:<j\xc3\xb6rg@b.test>";
	assert_true(smtp_command_parse(r, strlen(r), true, &c, &e));
}

/* Issue 5 defect 6: "SMTPUTF8" inside a quoted local part, after a '>',
 * is part of the address, not a parameter. */
static void test_smtputf8_inside_quoted_local_part(void **state)
{
	(void)state;
	struct smtp_command c;
	struct smtp_parse_error e;
	assert_false(cmd("MAIL FROM:<\"j\xc3\xb6rg> SMTPUTF8 \"@remote.test>", &c, &e));
	assert_int_equal(e.code, 553);
	assert_true(cmd("MAIL FROM:<\"j\xc3\xb6rg> SMTPUTF8 \"@remote.test> SMTPUTF8", &c, &e));
	assert_true(c.path.utf8);
	assert_int_equal(c.param_count, 1);
	/* An ASCII quoted local part with '>' keeps its parameters apart. */
	assert_true(cmd("MAIL FROM:<\"a> SIZE=1 \"@remote.test> SIZE=20", &c, &e));
	assert_int_equal(c.param_count, 1);
	assert_int_equal(c.params[0].value.len, 2);
}

static void test_too_many_params(void **state)
{
	(void)state;
	struct smtp_command c;
	struct smtp_parse_error e;
	char line[1024] = "MAIL FROM:<a@b.test>";
	for (int i = 0; i < SMTP_MAX_PARAMS + 1; i++)
		strcat(line, " X=1");
	assert_false(cmd(line, &c, &e));
	assert_int_equal(e.code, 555);
}

static void test_bdat(void **state)
{
	(void)state;
	struct smtp_command c;
	struct smtp_parse_error e;
	assert_true(cmd("BDAT 1000 LAST", &c, &e));
	assert_int_equal(c.chunk_size, 1000);
	assert_true(c.chunk_last);
	assert_true(cmd("BDAT 0", &c, &e));
	assert_false(c.chunk_last);
	assert_false(cmd("BDAT", &c, &e));
	assert_false(cmd("BDAT x", &c, &e));
	assert_false(cmd("BDAT 10 FIRST", &c, &e));
	assert_false(cmd("BDAT 99999999999999999999999", &c, &e));
}

static const struct data_limits limits = { 1000000, 998, 100000, false, false };

/* Decode text in DATA mode in pieces of `step` bytes. */
static size_t decode(const char *text, size_t step, const struct data_limits *l,
		     struct data_decoder *d, buf_t *out)
{
	size_t len = strlen(text), pos = 0;
	data_decoder_init(d, l, true);
	while (pos < len && !d->done) {
		size_t n = len - pos < step ? len - pos : step;
		pos += data_decode(d, text + pos, n, out);
	}
	return pos;
}

static void test_data_transparency(void **state)
{
	(void)state;
	const char *in = "Subject: x\r\n\r\n..leading dot\r\n.\r\n";
	for (size_t step = 1; step <= 8; step++) {
		struct data_decoder d;
		buf_t out = BUF_INIT;
		size_t used = decode(in, step, &limits, &d, &out);
		assert_true(d.done);
		assert_int_equal(used, strlen(in));
		assert_int_equal(d.problems, DATA_OK);
		assert_string_equal(buf_cstr(&out), "Subject: x\n\n.leading dot\n");
		buf_free(&out);
	}
}

static void test_data_stops_at_end(void **state)
{
	(void)state;
	struct data_decoder d;
	buf_t out = BUF_INIT;
	const char *in = "a\r\n.\r\nQUIT\r\n";
	size_t used = decode(in, 100, &limits, &d, &out);
	assert_int_equal(used, 6);
	assert_string_equal(buf_cstr(&out), "a\n");
	buf_free(&out);
}

static void test_smuggling_sequences(void **state)
{
	(void)state;
	const char *attacks[] = {
		"a\n.\nMAIL FROM:<x@y>\r\n.\r\n",  "a\r\n.\nMAIL FROM:<x@y>\r\n.\r\n",
		"a\n.\r\nMAIL FROM:<x@y>\r\n.\r\n", "a\r.\r\nMAIL FROM:<x@y>\r\n.\r\n",
		"a\r\n.\rMAIL FROM:<x@y>\r\n.\r\n", "a\rb\r\n.\r\n", "a\nb\r\n.\r\n",
	};
	for (size_t i = 0; i < sizeof(attacks) / sizeof(attacks[0]); i++) {
		struct data_decoder d;
		buf_t out = BUF_INIT;
		size_t used = decode(attacks[i], 3, &limits, &d, &out);
		assert_true(d.done);
		/* Only the real CRLF.CRLF at the very end terminates. */
		assert_int_equal(used, strlen(attacks[i]));
		if (!(d.problems & DATA_BARE_NEWLINE))
			fail_msg("attack %zu not flagged", i);
		buf_free(&out);
	}
}

static void test_normalize_mode(void **state)
{
	(void)state;
	struct data_limits l = limits;
	l.normalize_bare_newlines = true;
	struct data_decoder d;
	buf_t out = BUF_INIT;
	decode("a\nb\rc\r\n.\r\n", 2, &l, &d, &out);
	assert_true(d.done);
	assert_int_equal(d.problems, DATA_OK);
	assert_string_equal(buf_cstr(&out), "a\nbc\n");
	buf_free(&out);
}

/* Issue 5 defect 7: a lone dot on a line ended by a bare LF is content,
 * not stuffing: deleting it would end the header section early. */
static void test_normalize_keeps_lone_dot(void **state)
{
	(void)state;
	struct data_limits l = limits;
	l.normalize_bare_newlines = true;
	for (size_t step = 1; step <= 5; step++) {
		struct data_decoder d;
		buf_t out = BUF_INIT;
		decode("Subject: x\r\n.\nX-After: y\r\n\r\n..body\r\n.\r\n", step, &l, &d, &out);
		assert_true(d.done);
		assert_int_equal(d.problems, DATA_OK);
		assert_string_equal(buf_cstr(&out), "Subject: x\n.\nX-After: y\n\n.body\n");
		assert_true(d.in_header == false);
		buf_free(&out);
	}
	struct data_decoder d;
	buf_t out = BUF_INIT;
	decode("a\r\n.\nb\r\n.\r\n", 3, &limits, &d, &out);
	assert_true(d.problems & DATA_BARE_NEWLINE); /* reject mode still refuses */
	buf_free(&out);
}

/* In normalize mode a bare LF ends a line like CRLF, so a dot-stuffed
 * line after it is unstuffed too; it still never ends the data. */
static void test_normalize_unstuffs_after_bare_lf(void **state)
{
	(void)state;
	struct data_limits l = limits;
	l.normalize_bare_newlines = true;
	for (size_t step = 1; step <= 4; step++) {
		struct data_decoder d;
		buf_t out = BUF_INIT;
		decode("line1\n..after-lf\r\n..after-crlf\n.\r\nlast\r\n.\r\n", step, &l, &d,
		       &out);
		assert_true(d.done);
		assert_int_equal(d.problems, DATA_OK);
		assert_string_equal(buf_cstr(&out), "line1\n.after-lf\n.after-crlf\n.\nlast\n");
		buf_free(&out);
	}
}

static void test_limits(void **state)
{
	(void)state;
	struct data_limits l = { 20, 10, 15, false, false };
	struct data_decoder d;
	buf_t out = BUF_INIT;
	decode("0123456789abc\r\n.\r\n", 4, &l, &d, &out);
	assert_true(d.problems & DATA_LINE_TOO_LONG);
	buf_reset(&out);
	decode("H: 1234567890123\r\n\r\nbody\r\n.\r\n", 4, &l, &d, &out);
	assert_true(d.problems & DATA_HEADER_TOO_BIG);
	buf_reset(&out);
	decode("a\r\nb\r\nc\r\nd\r\ne\r\nf\r\ng\r\nh\r\n.\r\n", 4, &l, &d, &out);
	assert_true(d.done);
	assert_true(d.problems & DATA_TOO_BIG);
	buf_free(&out);
}

static void test_size_limit_is_inclusive(void **state)
{
	(void)state;
	/* "ab\r\n" is 4 octets; the end marker does not count. */
	struct data_limits l = { 4, 998, 100, false, false };
	struct data_decoder d;
	buf_t out = BUF_INIT;
	decode("ab\r\n.\r\n", 1, &l, &d, &out);
	assert_true(d.done);
	assert_int_equal(d.size, 4);
	assert_int_equal(d.problems, DATA_OK);
	decode("abc\r\n.\r\n", 1, &l, &d, &out);
	assert_true(d.problems & DATA_TOO_BIG);
	buf_free(&out);
}

static void test_bdat_chunks(void **state)
{
	(void)state;
	struct data_decoder d;
	buf_t out = BUF_INIT;
	data_decoder_init(&d, &limits, false);
	const char *c1 = "Subject: x\r\n\r\n.dot stays\r";
	const char *c2 = "\nlast line no newline";
	data_decode(&d, c1, strlen(c1), &out);
	data_decode(&d, c2, strlen(c2), &out);
	data_decoder_finish(&d, &out);
	assert_int_equal(d.problems, DATA_OK);
	assert_string_equal(buf_cstr(&out), "Subject: x\n\n.dot stays\nlast line no newline\n");
	buf_free(&out);
	data_decoder_init(&d, &limits, false);
	data_decode(&d, "a\r", 2, &out);
	data_decoder_finish(&d, &out);
	assert_true(d.problems & DATA_BARE_NEWLINE);
	buf_free(&out);
}

/* Run one parameter of a MAIL (rcpt false) or RCPT line through the
 * DSN parameter parser; returns its result. */
static int dsn_param(const char *line, bool rcpt, bool utf8, struct smtp_mail_dsn *md,
		     struct smtp_rcpt_dsn *rd, struct smtp_parse_error *e)
{
	struct smtp_command c;
	assert_true(smtp_command_parse(line, strlen(line), utf8 ? SMTP_PARSE_RCPT_UTF8 : 0,
				       &c, e));
	int rc = 0;
	for (size_t i = 0; i < c.param_count && rc >= 0; i++)
		rc = rcpt ? smtp_rcpt_dsn_param(&c.params[i], utf8, rd, e)
			  : smtp_mail_dsn_param(&c.params[i], md, e);
	return rc;
}

/* RFC 3461: RET and ENVID on MAIL, NOTIFY and ORCPT on RCPT; xtext is
 * decoded, anything malformed is a 501, other keywords are not ours. */
static void test_dsn_params(void **state)
{
	(void)state;
	struct smtp_mail_dsn md;
	struct smtp_rcpt_dsn rd;
	struct smtp_parse_error e;

	memset(&md, 0, sizeof(md));
	assert_int_equal(dsn_param("MAIL FROM:<a@b.test> RET=hdrs ENVID=QQ+2B1+3D2", false, false,
				   &md, &rd, &e), 1);
	assert_int_equal(md.ret, DSN_RET_HDRS);
	assert_string_equal(md.envid, "QQ+1=2");
	memset(&md, 0, sizeof(md));
	assert_int_equal(dsn_param("MAIL FROM:<a@b.test> SIZE=10", false, false, &md, &rd, &e), 0);
	const char *bad_mail[] = {
		"MAIL FROM:<a@b.test> RET=FULL RET=FULL", "MAIL FROM:<a@b.test> RET=ALL",
		"MAIL FROM:<a@b.test> RET", "MAIL FROM:<a@b.test> ENVID=a+2",
		"MAIL FROM:<a@b.test> ENVID=a+2b", "MAIL FROM:<a@b.test> ENVID=a+0A",
		"MAIL FROM:<a@b.test> ENVID=a=b", "MAIL FROM:<a@b.test> ENVID=\xc3\xa9",
		"MAIL FROM:<a@b.test> ENVID=x ENVID=y",
		"MAIL FROM:<a@b.test> ENVID=01234567890123456789012345678901234567890123456789"
		"012345678901234567890123456789012345678901234567890",
	};
	for (size_t i = 0; i < sizeof(bad_mail) / sizeof(bad_mail[0]); i++) {
		memset(&md, 0, sizeof(md));
		if (dsn_param(bad_mail[i], false, false, &md, &rd, &e) != -1)
			fail_msg("accepted: %s", bad_mail[i]);
		assert_int_equal(e.code, 501);
	}
	/* exactly 100 characters is fine */
	memset(&md, 0, sizeof(md));
	assert_int_equal(dsn_param("MAIL FROM:<a@b.test> ENVID=0123456789012345678901234567890123"
				   "456789012345678901234567890123456789012345678901234567890123"
				   "456789", false, false, &md, &rd, &e), 1);

	memset(&rd, 0, sizeof(rd));
	assert_int_equal(dsn_param("RCPT TO:<a@b.test> NOTIFY=delay,Success ORCPT=rfc822;x+2By@b.test",
				   true, false, &md, &rd, &e), 1);
	assert_int_equal(rd.notify, DSN_NOTIFY_DELAY | DSN_NOTIFY_SUCCESS);
	assert_string_equal(rd.orcpt, "rfc822;x+y@b.test");
	memset(&rd, 0, sizeof(rd));
	assert_int_equal(dsn_param("RCPT TO:<a@b.test> NOTIFY=NEVER ORCPT=UTF-8;J\\x{E9}r\\x{f4}me@b.test",
				   true, false, &md, &rd, &e), 1);
	assert_int_equal(rd.notify, DSN_NOTIFY_NEVER);
	assert_string_equal(rd.orcpt, "utf-8;J\xc3\xa9r\xc3\xb4me@b.test");
	/* raw UTF-8 only in an SMTPUTF8 transaction */
	memset(&rd, 0, sizeof(rd));
	assert_int_equal(dsn_param("RCPT TO:<a@b.test> ORCPT=utf-8;J\xc3\xa9@b.test", true, true,
				   &md, &rd, &e), 1);
	assert_string_equal(rd.orcpt, "utf-8;J\xc3\xa9@b.test");
	memset(&rd, 0, sizeof(rd));
	assert_int_equal(dsn_param("RCPT TO:<a@b.test> ORCPT=utf-8;J\xc3\xa9@b.test", true, false,
				   &md, &rd, &e), -1);
	const char *bad_rcpt[] = {
		"RCPT TO:<a@b.test> NOTIFY=NEVER,SUCCESS", "RCPT TO:<a@b.test> NOTIFY=FAILURE,FAILURE",
		"RCPT TO:<a@b.test> NOTIFY=", "RCPT TO:<a@b.test> NOTIFY=SUCCESS,",
		"RCPT TO:<a@b.test> NOTIFY=ALWAYS", "RCPT TO:<a@b.test> NOTIFY",
		"RCPT TO:<a@b.test> NOTIFY=DELAY NOTIFY=DELAY",
		"RCPT TO:<a@b.test> ORCPT=a@b.test", "RCPT TO:<a@b.test> ORCPT=;a@b.test",
		"RCPT TO:<a@b.test> ORCPT=rfc822;", "RCPT TO:<a@b.test> ORCPT=rfc822;a+0Db",
		"RCPT TO:<a@b.test> ORCPT=utf-8;a+2Bb", "RCPT TO:<a@b.test> ORCPT=utf-8;\\x{41}",
		"RCPT TO:<a@b.test> ORCPT=utf-8;\\x{D800}", "RCPT TO:<a@b.test> ORCPT=utf-8;\\x{110000}",
		"RCPT TO:<a@b.test> ORCPT=utf-8;\\x{0A}", "RCPT TO:<a@b.test> ORCPT=utf-8;\\x{E9",
		"RCPT TO:<a@b.test> ORCPT=rfc822;a ORCPT=rfc822;b",
	};
	for (size_t i = 0; i < sizeof(bad_rcpt) / sizeof(bad_rcpt[0]); i++) {
		memset(&rd, 0, sizeof(rd));
		struct smtp_command c;
		if (!smtp_command_parse(bad_rcpt[i], strlen(bad_rcpt[i]), 0, &c, &e)) {
			assert_int_equal(e.code, 501); /* "NOTIFY=" fails in the command parser */
			continue;
		}
		if (dsn_param(bad_rcpt[i], true, false, &md, &rd, &e) != -1)
			fail_msg("accepted: %s", bad_rcpt[i]);
		assert_int_equal(e.code, 501);
	}
	/* a 500-octet address fits, 501 does not */
	char line[700];
	memcpy(line, "RCPT TO:<a@b.test> ORCPT=rfc822;", 32);
	memset(line + 32, 'x', 500);
	line[532] = '\0';
	memset(&rd, 0, sizeof(rd));
	assert_int_equal(dsn_param(line, true, false, &md, &rd, &e), 1);
	line[532] = 'x';
	line[533] = '\0';
	memset(&rd, 0, sizeof(rd));
	assert_int_equal(dsn_param(line, true, false, &md, &rd, &e), -1);

	/* defaults of RFC 3461 4.1 and the stored form */
	assert_true(dsn_notify_wants(0, DSN_NOTIFY_FAILURE));
	assert_true(dsn_notify_wants(0, DSN_NOTIFY_DELAY));
	assert_false(dsn_notify_wants(0, DSN_NOTIFY_SUCCESS));
	assert_false(dsn_notify_wants(DSN_NOTIFY_NEVER, DSN_NOTIFY_FAILURE));
	assert_false(dsn_notify_wants(DSN_NOTIFY_SUCCESS, DSN_NOTIFY_DELAY));
	buf_t b = BUF_INIT;
	dsn_xtext_encode("a+b=c d\xc3\xa9", &b);
	assert_string_equal(buf_cstr(&b), "a+2Bb+3Dc+20d+C3+A9");
	buf_reset(&b);
	dsn_notify_format(DSN_NOTIFY_SUCCESS | DSN_NOTIFY_DELAY, &b);
	assert_string_equal(buf_cstr(&b), "SUCCESS,DELAY");
	buf_free(&b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_verbs),
		cmocka_unit_test(test_mail_params),
		cmocka_unit_test(test_dsn_params),
		cmocka_unit_test(test_utf8_needs_smtputf8),
		cmocka_unit_test(test_smtputf8_inside_quoted_local_part),
		cmocka_unit_test(test_too_many_params),
		cmocka_unit_test(test_bdat),
		cmocka_unit_test(test_data_transparency),
		cmocka_unit_test(test_data_stops_at_end),
		cmocka_unit_test(test_smuggling_sequences),
		cmocka_unit_test(test_normalize_mode),
		cmocka_unit_test(test_normalize_keeps_lone_dot),
		cmocka_unit_test(test_normalize_unstuffs_after_bare_lf),
		cmocka_unit_test(test_limits),
		cmocka_unit_test(test_size_limit_is_inclusive),
		cmocka_unit_test(test_bdat_chunks),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

/*
 * test_milter_proto.c - the milter protocol's packets (milter_proto.h):
 * the bytes of the MTA's commands, the framing bounds, and the decoder of
 * every reply kind with what it refuses (unterminated fields, bytes left
 * over, reply codes that are not 4xx/5xx, multi-line replies whose lines
 * disagree, bad header names, unknown letters).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "lib/buf.h"
#include "milter/milter_proto.h"

/* Decode a packet given as letter + data (data_len bytes). */
static int decode(char kind, const void *data, size_t data_len, struct milter_reply *r,
		  char *text, const char **err)
{
	unsigned char packet[512];
	packet[0] = (unsigned char)kind;
	memcpy(packet + 1, data, data_len);
	return milter_decode_reply(packet, data_len + 1, r, text, err);
}

static void test_command_bytes(void **state)
{
	(void)state;
	buf_t b = BUF_INIT;
	milter_encode_optneg(&b, 6, 0x1ff, 0x1fffff);
	static const unsigned char optneg[] = { 0, 0, 0, 13, 'O', 0, 0, 0, 6, 0, 0, 1, 0xff,
						0, 0x1f, 0xff, 0xff };
	assert_int_equal(b.len, sizeof(optneg));
	assert_memory_equal(b.data, optneg, sizeof(optneg));
	buf_reset(&b);
	milter_encode_connect(&b, "[192.0.2.1]", '4', 25, "192.0.2.1");
	static const char connect[] = "\0\0\0\x1a" "C[192.0.2.1]\0" "4\0\x19" "192.0.2.1";
	assert_int_equal(b.len, sizeof(connect));
	assert_memory_equal(b.data, connect, sizeof(connect));
	buf_reset(&b);
	const char *names[] = { "j", "{client_addr}" }, *values[] = { "mx", "192.0.2.1" };
	milter_encode_macros(&b, 'C', names, values, 2);
	static const char macros[] = "\0\0\0\x1f" "DCj\0mx\0{client_addr}\0" "192.0.2.1";
	assert_int_equal(b.len, sizeof(macros));
	assert_memory_equal(b.data, macros, sizeof(macros));
	buf_reset(&b);
	milter_encode_simple(&b, MILTER_CMD_BODYEOB);
	assert_int_equal(b.len, 5);
	assert_memory_equal(b.data, "\0\0\0\1E", 5);
	buf_free(&b);
}

static void test_framing(void **state)
{
	(void)state;
	uint32_t len = 0;
	assert_int_equal(milter_frame("\0\0", 2, &len), 1);
	assert_int_equal(milter_frame("\0\0\0\2c", 5, &len), 1);
	assert_int_equal(len, 2);
	assert_int_equal(milter_frame("\0\0\0\1c", 5, &len), 0);
	assert_int_equal(len, 1);
	assert_int_equal(milter_frame("\0\0\0\0", 4, &len), -1);         /* empty */
	assert_int_equal(milter_frame("\0\x20\0\0", 4, &len), -1);       /* 2 MB */
	assert_int_equal(milter_frame("\xff\xff\xff\xff", 4, &len), -1);
}

static void test_simple_replies(void **state)
{
	(void)state;
	struct milter_reply r;
	char text[MILTER_REPLY_TEXT_MAX + 1];
	const char *err = NULL;
	const char kinds[] = "cadrtsp4f";
	for (size_t i = 0; kinds[i] != '\0'; i++) {
		assert_int_equal(decode(kinds[i], "", 0, &r, text, &err), 0);
		assert_int_equal(r.kind, kinds[i]);
	}
	assert_true(milter_reply_is_final('c'));
	assert_false(milter_reply_is_final('p'));
	assert_false(milter_reply_is_final('h'));
	assert_int_equal(decode('c', "x", 1, &r, text, &err), -1); /* bytes left over */
	assert_int_equal(decode('Z', "", 0, &r, text, &err), -1);
	assert_string_equal(err, "unknown reply");
}

static void test_optneg_with_macro_lists(void **state)
{
	(void)state;
	static const char data[] = "\0\0\0\6\0\0\0\x21\0\0\0\x80"
				   "\0\0\0\0{client_addr} j\0"
				   "\0\0\0\5i\0";
	struct milter_reply r;
	char text[MILTER_REPLY_TEXT_MAX + 1];
	const char *err = NULL;
	assert_int_equal(decode('O', data, sizeof(data) - 1, &r, text, &err), 0);
	assert_int_equal(r.version, 6);
	assert_int_equal(r.actions, 0x21);
	assert_int_equal(r.protocol, 0x80);
	assert_string_equal(r.macros[MILTER_MACROS_CONNECT], "{client_addr} j");
	assert_string_equal(r.macros[MILTER_MACROS_EOM], "i");
	assert_null(r.macros[MILTER_MACROS_HELO]);
	/* a stage that does not exist; the same stage twice; cut short */
	static const char bad1[] = "\0\0\0\6\0\0\0\0\0\0\0\0\0\0\0\x09x\0";
	assert_int_equal(decode('O', bad1, sizeof(bad1) - 1, &r, text, &err), -1);
	static const char bad2[] = "\0\0\0\6\0\0\0\0\0\0\0\0\0\0\0\1x\0\0\0\0\1y\0";
	assert_int_equal(decode('O', bad2, sizeof(bad2) - 1, &r, text, &err), -1);
	assert_int_equal(decode('O', "\0\0\0\6\0\0", 6, &r, text, &err), -1);
}

static void test_reply_codes(void **state)
{
	(void)state;
	struct milter_reply r;
	char text[MILTER_REPLY_TEXT_MAX + 1];
	const char *err = NULL;
	static const char one[] = "550 5.7.1 Go away";
	assert_int_equal(decode('y', one, sizeof(one), &r, text, &err), 0);
	assert_int_equal(r.code, 550);
	assert_string_equal(r.status, "5.7.1");
	assert_string_equal(text, "Go away");
	static const char bare[] = "451 Later please";
	assert_int_equal(decode('y', bare, sizeof(bare), &r, text, &err), 0);
	assert_int_equal(r.code, 451);
	assert_string_equal(r.status, "");
	assert_string_equal(text, "Later please");
	static const char multi[] = "554-5.7.0 First\r\n554-5.7.0 Second\r\n554 5.7.0 Third";
	assert_int_equal(decode('y', multi, sizeof(multi), &r, text, &err), 0);
	assert_string_equal(text, "First\nSecond\nThird");
	static const char *const bad[] = {
		"250 2.0.0 fine",             /* not a refusal */
		"55 short",
		"550x5.7.1 no space",
		"550-5.7.1 a\r\n551 5.7.1 b", /* codes differ */
		"550-5.7.1 only",             /* continued, but last */
		"550 5.7.1 a\r\n550 5.7.1 b", /* goes on after the last */
		"550 bare\nLF",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		if (decode('y', bad[i], strlen(bad[i]) + 1, &r, text, &err) == 0)
			fail_msg("accepted \"%s\"", bad[i]);
	/* not terminated */
	assert_int_equal(decode('y', "550 x", 5, &r, text, &err), -1);
}

static void test_modifications(void **state)
{
	(void)state;
	struct milter_reply r;
	char text[MILTER_REPLY_TEXT_MAX + 1];
	const char *err = NULL;
	static const char add[] = "X-Spam\0yes";
	assert_int_equal(decode('h', add, sizeof(add), &r, text, &err), 0);
	assert_string_equal(r.name, "X-Spam");
	assert_string_equal(r.value, "yes");
	static const char ins[] = "\0\0\0\1DKIM-Signature\0v=1;\r\n\tb=abc";
	assert_int_equal(decode('i', ins, sizeof(ins), &r, text, &err), 0);
	assert_int_equal(r.index, 1);
	assert_string_equal(r.value, "v=1;\r\n\tb=abc");
	static const char chg[] = "\0\0\0\2Subject\0";
	assert_int_equal(decode('m', chg, sizeof(chg), &r, text, &err), 0);
	assert_int_equal(r.index, 2);
	assert_string_equal(r.value, "");
	static const char badname[] = "Bad Name\0x";
	assert_int_equal(decode('h', badname, sizeof(badname), &r, text, &err), -1);
	static const char colon[] = "A:B\0x";
	assert_int_equal(decode('h', colon, sizeof(colon), &r, text, &err), -1);
	static const char ctl[] = "X\0a\x01" "b";
	assert_int_equal(decode('h', ctl, sizeof(ctl), &r, text, &err), -1);
	static const char rcpt[] = "<new@example.test>";
	assert_int_equal(decode('+', rcpt, sizeof(rcpt), &r, text, &err), 0);
	assert_string_equal(r.address, "<new@example.test>");
	static const char par[] = "<new@example.test>\0NOTIFY=NEVER";
	assert_int_equal(decode('2', par, sizeof(par), &r, text, &err), 0);
	assert_string_equal(r.args, "NOTIFY=NEVER");
	assert_int_equal(decode('-', par, sizeof(par), &r, text, &err), -1); /* no args here */
	assert_int_equal(decode('e', "<>", 3, &r, text, &err), 0);
	assert_int_equal(decode('e', "", 1, &r, text, &err), -1);
	assert_int_equal(decode('b', "new body\r\n", 10, &r, text, &err), 0);
	assert_int_equal(r.body_len, 10);
	assert_int_equal(decode('q', "why", 4, &r, text, &err), 0);
	assert_string_equal(r.value, "why");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_command_bytes),
		cmocka_unit_test(test_framing),
		cmocka_unit_test(test_simple_replies),
		cmocka_unit_test(test_optneg_with_macro_lists),
		cmocka_unit_test(test_reply_codes),
		cmocka_unit_test(test_modifications),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

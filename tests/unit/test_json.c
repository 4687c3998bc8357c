/*
 * test_json.c - JSON string escaping: what scripts reading --json output
 * get for ordinary text, for every control character, and for bytes that
 * are not UTF-8 (a hostile Subject: or a broken sender address).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "lib/buf.h"
#include "lib/json.h"

static void expect(const char *in, size_t len, const char *want)
{
	buf_t b = BUF_INIT;
	json_put_string(&b, in, len);
	if (strcmp(buf_cstr(&b), want) != 0)
		fail_msg("escaping %zu bytes gave %s, expected %s", len, buf_cstr(&b), want);
	buf_free(&b);
}

#define EXPECT(lit, want) expect(lit, sizeof(lit) - 1, want)

static void test_plain_and_escaped(void **state)
{
	(void)state;
	EXPECT("", "\"\"");
	EXPECT("virus found: Eicar", "\"virus found: Eicar\"");
	EXPECT("a\"b\\c/d", "\"a\\\"b\\\\c/d\"");
	EXPECT("line\nnext\ttab", "\"line\\nnext\\ttab\"");
	EXPECT("\r\x01\x1b[31m\x7f", "\"\\u000d\\u0001\\u001b[31m\\u007f\"");
	EXPECT("nul\0inside", "\"nul\\u0000inside\"");
	buf_t b = BUF_INIT;
	json_put_cstr(&b, NULL);
	json_put_cstr(&b, "x");
	assert_string_equal(buf_cstr(&b), "null\"x\"");
	buf_free(&b);
}

static void test_utf8(void **state)
{
	(void)state;
	/* well-formed: é, €, U+10348, U+10FFFF, U+D7FF, U+E000 */
	EXPECT("\xc3\xa9\xe2\x82\xac\xf0\x90\x8d\x88\xf4\x8f\xbf\xbf\xed\x9f\xbf\xee\x80\x80",
	       "\"\xc3\xa9\xe2\x82\xac\xf0\x90\x8d\x88\xf4\x8f\xbf\xbf\xed\x9f\xbf\xee\x80\x80\"");
	/* each byte that is not part of a well-formed character: U+FFFD */
	EXPECT("\xc0\x80", "\"\xef\xbf\xbd\xef\xbf\xbd\"");              /* overlong NUL */
	EXPECT("\xe0\x80\xaf", "\"\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\""); /* overlong / */
	EXPECT("\xed\xa0\x80", "\"\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\""); /* surrogate */
	EXPECT("\xf4\x90\x80\x80x", "\"\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbdx\"");
	EXPECT("a\xe2\x82", "\"a\xef\xbf\xbd\xef\xbf\xbd\"");             /* cut short */
	EXPECT("\x80z", "\"\xef\xbf\xbdz\"");                              /* lone continuation */
	EXPECT("\xff\xfe", "\"\xef\xbf\xbd\xef\xbf\xbd\"");
	EXPECT("\xc3\"", "\"\xef\xbf\xbd\\\"\"");  /* a quote is never swallowed */
}

/* Whatever the bytes, the output is one well-formed JSON string: valid
 * UTF-8, no raw control character, quotes only at the ends or escaped. */
static void test_any_bytes(void **state)
{
	(void)state;
	unsigned seed = 12345;
	for (int round = 0; round < 20000; round++) {
		unsigned char in[24];
		size_t len = (size_t)(round % 24);
		for (size_t i = 0; i < len; i++) {
			seed = seed * 1103515245u + 12345u;
			in[i] = (unsigned char)(seed >> 16);
		}
		buf_t b = BUF_INIT;
		json_put_string(&b, (const char *)in, len);
		const unsigned char *o = (const unsigned char *)b.data;
		assert_true(b.len >= 2 && o[0] == '"' && o[b.len - 1] == '"');
		for (size_t i = 1; i + 1 < b.len;) {
			assert_true(o[i] >= 0x20 && o[i] != 0x7f);
			if (o[i] == '\\') {
				assert_non_null(strchr("\"\\ntu", o[i + 1]));
				i += o[i + 1] == 'u' ? 6 : 2;
				continue;
			}
			assert_true(o[i] != '"');
			size_t n = json_utf8_char_len(o + i, b.len - 1 - i);
			assert_true(n > 0);
			i += n;
		}
		buf_free(&b);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_plain_and_escaped),
		cmocka_unit_test(test_utf8),
		cmocka_unit_test(test_any_bytes),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

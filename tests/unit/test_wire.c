/*
 * test_wire.c - the shared writer and reader of the internal protocols:
 * integers go out big-endian and come back the same; a reader that runs
 * out keeps its first violation and reads zeros from then on.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "lib/buf.h"
#include "lib/wire.h"

static void test_round_trip_big_endian(void **state)
{
	(void)state;
	buf_t b = BUF_INIT;
	struct wire_writer w = { &b, 64, "test" };
	wire_put_u8(&w, 0xAB);
	wire_put_u16(&w, 0x0102);
	wire_put_u32(&w, 0x03040506u);
	wire_put_u64(&w, 0x0708090A0B0C0D0EULL);
	wire_put_bytes(&w, "xy", 2);
	static const unsigned char expect[] = { 0xAB, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14,
						'x', 'y' };
	assert_int_equal(b.len, sizeof(expect));
	assert_memory_equal(b.data, expect, sizeof(expect));

	struct wire_reader r = wire_reader_init(b.data, b.len);
	const unsigned char *d;
	assert_int_equal(wire_get_u8(&r), 0xAB);
	assert_int_equal(wire_get_u16(&r), 0x0102);
	assert_int_equal(wire_get_u32(&r), 0x03040506u);
	assert_true(wire_get_u64(&r) == 0x0708090A0B0C0D0EULL);
	assert_true(wire_take(&r, 2, &d));
	assert_memory_equal(d, "xy", 2);
	assert_int_equal(wire_left(&r), 0);
	assert_null(r.err);
	buf_free(&b);
}

static void test_running_out_keeps_the_first_violation(void **state)
{
	(void)state;
	static const unsigned char three[] = { 1, 2, 3 };
	struct wire_reader r = wire_reader_init(three, sizeof(three));
	const unsigned char *d;
	assert_int_equal(wire_get_u16(&r), 0x0102);
	assert_int_equal(wire_get_u32(&r), 0); /* only one byte left */
	assert_string_equal(r.err, "message ends inside a field");
	wire_fail(&r, "a later complaint");
	assert_string_equal(r.err, "message ends inside a field");
	assert_int_equal(wire_get_u8(&r), 0); /* the byte left is not read any more */
	assert_false(wire_take(&r, 0, &d));
	assert_int_equal(wire_left(&r), 1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_round_trip_big_endian),
		cmocka_unit_test(test_running_out_keeps_the_first_violation),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

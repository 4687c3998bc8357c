/*
 * fuzz_anvil_proto.c - libFuzzer target for the decoder of the anvil's
 * messages (anvil_proto.h): the anvil decodes what any smtp worker sends
 * it and the workers decode its answers, so any packet must be either
 * refused or decoded into fields within their bounds. Invariants checked:
 * a message that decodes encodes back to exactly the same bytes (one
 * meaning per encoding), its keys are within bounds and free of control
 * characters, and a decoded request can be given to the anvil's table
 * (in memory) without harm.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "lib/buf.h"
#include "policy/anvil_proto.h"
#include "policy/anvil_table.h"

static void check_key(const char *s)
{
	size_t n = strnlen(s, ANVIL_KEY_MAX + 1);
	if (n == 0 || n > ANVIL_KEY_MAX)
		abort();
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
			abort();
}

static struct anvil_table *table;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct anvil_msg m, answer;
	const char *err = NULL;
	if (anvil_msg_decode(data, size, &m, &err) != 0) {
		if (err == NULL)
			abort();
		return 0;
	}
	buf_t again = BUF_INIT;
	anvil_msg_encode(&m, &again);
	if (again.len != size || memcmp(again.data, data, size) != 0)
		abort();
	buf_free(&again);
	if (m.type == ANVIL_MSG_OPEN || m.type == ANVIL_MSG_GREY)
		check_key(m.client);
	if (m.type == ANVIL_MSG_GREY)
		check_key(m.triplet);
	if (m.type == ANVIL_MSG_OPEN || m.type == ANVIL_MSG_RATE)
		for (size_t i = 0; i < m.n; i++)
			check_key(m.items[i].key);
	if (table == NULL)
		table = anvil_table_new(anvil_store_memory());
	uint64_t now = 1700000000000ULL + (size * 7919u) % 100000u;
	anvil_msg_init(&answer, ANVIL_MSG_RATED);
	switch (m.type) {
	case ANVIL_MSG_OPEN:
		anvil_table_open(table, 1, &m, now, &answer);
		break;
	case ANVIL_MSG_CLOSE:
		anvil_table_close(table, 1, m.session);
		break;
	case ANVIL_MSG_RATE:
		anvil_table_rate(table, m.items, m.n, now, answer.results);
		break;
	case ANVIL_MSG_GREY:
		anvil_table_grey(table, &m, now, &answer);
		break;
	default:
		break;
	}
	if (anvil_table_sessions(table) > 10000)
		anvil_table_drop_owner(table, 1);
	return 0;
}

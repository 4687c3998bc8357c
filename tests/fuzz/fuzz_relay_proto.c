/*
 * fuzz_relay_proto.c - libFuzzer target for the decoder of the messages
 * between the queue manager and the relay agent (relay_proto.h): each
 * side decodes what the other sends, so any packet must be refused with
 * a reason or decoded into fields within their bounds. Invariant: a
 * message that decodes encodes back to exactly the same bytes.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "relay/relay_proto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct relay_msg m;
	static unsigned char again[RELAY_MSG_MAX];
	const char *err = NULL;

	if (size > RELAY_MSG_MAX)
		return 0;
	if (relay_msg_decode(data, size, &m, &err) != 0) {
		if (err == NULL)
			abort();
		return 0;
	}
	if (m.rcpt_count > RELAY_RCPTS_MAX)
		abort();
	size_t n = relay_msg_encode(&m, again);
	if (n != size || memcmp(again, data, size) != 0)
		abort();
	return 0;
}

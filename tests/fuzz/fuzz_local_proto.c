/*
 * fuzz_local_proto.c - libFuzzer target for the decoder of the messages
 * between the queue manager and the local delivery agent (local_proto.h):
 * the agent runs as mail_owner and decodes what a process running as the
 * smtp workers' account sends it, so any packet must be either refused or
 * decoded into fields within their bounds. Invariant checked: a message
 * that decodes encodes back to exactly the same bytes (one meaning per
 * encoding), and its strings hold no control character.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "queue/local_proto.h"

static void check_text(const char *s, size_t max)
{
	size_t n = strnlen(s, max + 1);
	if (n > max)
		abort();
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
			abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct local_msg m;
	const char *err = NULL;
	unsigned char again[LOCAL_MSG_MAX];

	if (size > LOCAL_MSG_MAX)
		return 0; /* local_recv refuses longer packets before decoding */
	if (local_msg_decode(data, size, &m, &err) != 0) {
		if (err == NULL)
			abort();
		return 0;
	}
	check_text(m.sender, QF_ADDR_MAX);
	check_text(m.address, QF_ADDR_MAX);
	check_text(m.reason, LOCAL_REASON_MAX);
	if (m.type == LOCAL_DELIVER && (!queue_id_valid(m.id) || m.address[0] == '\0'))
		abort();
	size_t n = local_msg_encode(&m, again);
	if (n != size || memcmp(again, data, size) != 0)
		abort();
	return 0;
}

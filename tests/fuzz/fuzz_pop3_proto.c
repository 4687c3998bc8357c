/*
 * fuzz_pop3_proto.c - libFuzzer target for the decoder of the messages
 * between the pop3 worker and its mailbox agent (pop3_proto.h): each
 * decodes what the other sends, so any packet must be refused or
 * decoded into fields within their bounds. Invariants: a message that
 * decodes has a known type, strings within their bounds and free of
 * control characters, unique ids of printable characters only, marks
 * that point inside the packet and use only the two defined bits, a
 * FETCH of 1..POP3_FETCH_MAX messages, a MAIL that carries descriptors
 * exactly when it says ok, an OPEN's ticket of printable characters that
 * the agent's check (with a key the input cannot know) never accepts.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "pop3/pop3_proto.h"

static void check_text(const char *s, size_t max, bool uid)
{
	size_t n = strnlen(s, max + 1);
	if (n > max)
		abort();
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c < 0x20 || c == 0x7f || (uid && c == ' '))
			abort();
	}
}

static struct pop3_msg m;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *err = NULL;
	if (pop3_msg_decode(data, size, &m, &err) != 0) {
		if (err == NULL)
			abort();
		return 0;
	}
	switch (m.type) {
	case POP3_MSG_OPEN:
		if (m.user[0] == '\0')
			abort();
		check_text(m.user, POP3_PROTO_USER_MAX, false);
		check_text(m.ticket, POP3_PROTO_TICKET_MAX, true);
		{
			static const unsigned char key[AUTH_TICKET_KEY_LEN] = "fuzz key, not known";
			if (auth_ticket_check(key, AUTH_SERVICE_POP3, m.user, m.ticket, 0, NULL) ==
			    AUTH_TICKET_OK)
				abort();
		}
		break;
	case POP3_MSG_UPDATE:
		if (m.count > POP3_MAILDROP_MAX ||
		    (m.count > 0 && (m.marks < data || m.marks + m.count > data + size)))
			abort();
		for (uint32_t i = 0; i < m.count; i++)
			if (m.marks[i] & ~(POP3_MARK_DELETE | POP3_MARK_SEEN))
				abort();
		break;
	case POP3_MSG_ENTRIES:
		if (m.entry_count == 0 || m.entry_count > POP3_ENTRIES_PER_PACKET)
			abort();
		for (uint16_t i = 0; i < m.entry_count; i++) {
			if (m.entries[i].uid[0] == '\0')
				abort();
			check_text(m.entries[i].uid, POP3_UID_MAX, true);
		}
		break;
	case POP3_MSG_OPENED:
	case POP3_MSG_UPDATED:
		if (m.status > 2)
			abort();
		check_text(m.reason, POP3_PROTO_REASON_MAX, false);
		break;
	case POP3_MSG_MAIL:
		if (m.status > 2 || (m.status == 0) != (m.fetch_count > 0) ||
		    m.fetch_count > POP3_FETCH_MAX)
			abort();
		break;
	case POP3_MSG_FETCH:
		if (m.fetch_count == 0 || m.fetch_count > POP3_FETCH_MAX)
			abort();
		break;
	case POP3_MSG_CLOSE:
		break;
	default:
		abort();
	}
	return 0;
}

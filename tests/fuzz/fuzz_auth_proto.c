/*
 * fuzz_auth_proto.c - libFuzzer target for what the auth process reads
 * from others: the workers' packets (src/auth/auth_proto.h; a compromised
 * smtp worker may send anything) and the users file
 * (src/auth/auth_users.h). The first byte chooses: a request, an answer,
 * or the users file. Invariants: a packet that decodes encodes back to
 * exactly the same bytes, with every field within its bound; a login
 * ticket only with a successful verdict, "" or of the exact length in
 * lower-case hex, and (checked as the mailbox agent would, with a key the
 * input cannot know) never valid; the users
 * file is read without harm and each user found has a password field;
 * its timing field, if any, costs a hash.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "auth/auth_proto.h"
#include "auth/auth_ticket.h"
#include "auth/auth_users.h"
#include "auth/auth_verify.h"
#include "lib/buf.h"
#include "lib/log.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static bool quiet;
	if (!quiet) {
		log_set_level(LOG_ERROR); /* the users file's warnings */
		quiet = true;
	}
	if (size == 0)
		return 0;
	const uint8_t *rest = data + 1;
	size_t len = size - 1;
	if (data[0] % 3 < 2) {
		struct auth_msg m;
		const char *err = NULL;
		if (!auth_msg_decode(rest, len, data[0] % 3 == 0, &m, &err)) {
			if (err == NULL)
				abort();
			return 0;
		}
		if (strlen(m.user) > AUTH_USER_MAX || strlen(m.password) > AUTH_PASSWORD_MAX ||
		    strlen(m.client_ip) > AUTH_IP_MAX || strlen(m.why) > AUTH_WHY_MAX ||
		    strlen(m.ticket) > AUTH_TICKET_TEXT_LEN)
			abort();
		if (m.ticket[0] != '\0') {
			static const unsigned char key[AUTH_TICKET_KEY_LEN] = "fuzz key, not known";
			if (m.verdict != AUTH_OK || strlen(m.ticket) != AUTH_TICKET_TEXT_LEN ||
			    !auth_ticket_syntax_ok(m.ticket) ||
			    auth_ticket_check(key, AUTH_SERVICE_POP3, m.user, m.ticket, 0, NULL) ==
				    AUTH_TICKET_OK)
				abort();
		}
		buf_t again = BUF_INIT;
		auth_msg_encode(&m, &again);
		if (again.len != len || memcmp(again.data, rest, len) != 0)
			abort();
		buf_free(&again);
		auth_msg_wipe(&m);
		return 0;
	}
	char *text = malloc(len + 1);
	memcpy(text, rest, len);
	text[len] = '\0';
	struct auth_users *u = auth_users_parse(text, len, "users");
	if (auth_users_count(u) > len)
		abort();
	/* the field unknown users are checked against costs a hash */
	const char *timing = auth_users_timing_field(u);
	if (timing != NULL) {
		char class[64];
		if (!auth_hash_costly(timing))
			abort();
		auth_hash_cost_class(timing, class, sizeof(class));
		if (strlen(class) >= sizeof(class))
			abort();
	}
	auth_users_free(&u);
	free(text);
	return 0;
}

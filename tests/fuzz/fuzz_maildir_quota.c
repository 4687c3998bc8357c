/*
 * fuzz_maildir_quota.c - libFuzzer target for what the quota code reads
 * from outside: a Maildir++ maildirsize file (the mailbox's owner, or an
 * IMAP client through Dovecot, can write it), a users_file quota rule,
 * and the messages between an smtp worker and its quota reader. The
 * first byte chooses. Invariants checked: a maildirsize that parses gives
 * sums that fit a signed 64-bit count and the limits it was asked with;
 * a refused one says why; a rule that parses is within bounds; a message
 * that decodes encodes back to exactly the same bytes.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "mail/quota_rule.h"
#include "queue/maildir_quota.h"
#include "queue/quota_proto.h"

static void maildirsize(const uint8_t *data, size_t size)
{
	static const struct maildir_quota_limits configured[] = {
		{ 0, 0 }, { 10485760, 0 }, { 10485760, 1000 }, { 100, 5 },
	};
	for (size_t i = 0; i < sizeof(configured) / sizeof(configured[0]); i++) {
		struct maildir_quota_limits file;
		struct maildir_quota_usage u;
		const char *why = NULL;
		enum maildirsize_parse_result r =
			maildirsize_parse((const char *)data, size, &configured[i], i & 1, &file, &u,
					  &why);
		if (r == MAILDIRSIZE_OK && (why != NULL || size > MAILDIRSIZE_MAX ||
					    file.bytes != configured[i].bytes ||
					    file.count != configured[i].count))
			abort();
		if (r == MAILDIRSIZE_RECALCULATE && why == NULL)
			abort();
		/* the sums are kept signed and checked for overflow */
		if (r == MAILDIRSIZE_OK && (u.bytes > INT64_MAX || u.count > INT64_MAX))
			abort();
	}
}

static void rule(const uint8_t *data, size_t size)
{
	char *s = malloc(size + 1);
	memcpy(s, data, size);
	s[size] = '\0';
	uint64_t bytes = 0, messages = 0;
	const char *why = NULL;
	if (quota_rule_parse(s, &bytes, &messages, &why)) {
		if (bytes > QUOTA_RULE_MAX || messages > QUOTA_RULE_MAX)
			abort();
	} else if (why == NULL) {
		abort();
	}
	(void)quota_sender_exempt(s, &(strlist_t){ NULL, 0 });
	free(s);
}

static void message(const uint8_t *data, size_t size)
{
	struct quota_msg m;
	const char *why = NULL;
	if (size > QUOTA_MSG_MAX || quota_msg_decode(data, size, &m, &why) < 0)
		return;
	unsigned char out[QUOTA_MSG_MAX];
	size_t n = quota_msg_encode(&m, out);
	if (n != size || memcmp(out, data, size) != 0)
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size == 0)
		return 0;
	switch (data[0] % 3) {
	case 0:
		maildirsize(data + 1, size - 1);
		break;
	case 1:
		rule(data + 1, size - 1);
		break;
	default:
		message(data + 1, size - 1);
		break;
	}
	return 0;
}

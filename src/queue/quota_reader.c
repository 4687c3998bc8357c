/*
 * quota_reader.c - the quota reader's loop (see quota_reader.h): one
 * request at a time, answered in order.
 *
 * RFCs: none. Untrusted input: the worker's requests (quota_proto.c
 * decodes them; a violation ends the reader) and the Maildir's
 * maildirsize and file names (maildir_quota.c). Privilege: mail_owner.
 */
#include "quota_reader.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "../lib/buf.h"
#include "../lib/log.h"
#include "maildir.h"
#include "maildir_quota.h"
#include "quota_proto.h"

bool quota_reader_wanted(const struct config *cfg, const struct recipient_tables *t)
{
	return cfg->mailbox_quota != 0 || recipients_quota_rule_count(t) != 0 ||
	       recipients_any_domain_quota(t);
}

/* The answer to one ASK. */
static void answer(const struct config *cfg, const struct recipient_tables *t,
		   const struct quota_msg *ask, struct quota_msg *reply)
{
	buf_t maildir = BUF_INIT;
	char *err = NULL;

	reply->type = QUOTA_USAGE;
	reply->seq = ask->seq;
	reply->status = QUOTA_NONE;
	if (!recipients_is_user(t, ask->address))
		return;
	reply->limit = recipients_quota(t, ask->address, cfg->mailbox_quota);
	reply->count_limit = recipients_quota_messages(t, ask->address);
	if ((reply->limit == 0 && reply->count_limit == 0) ||
	    !maildir_path(&maildir, cfg->mail_root, ask->address)) {
		reply->limit = reply->count_limit = 0;
		buf_free(&maildir);
		return;
	}
	struct maildir_quota_limits limits = { reply->limit, reply->count_limit };
	struct maildir_quota_usage used;
	if (maildir_quota_get_for(maildir.data, &limits, ask->need, &used, &err) == 0) {
		reply->status = QUOTA_KNOWN;
		reply->used = used.bytes;
		reply->count_used = used.count;
	} else {
		log_warn("usage of <%s> unknown: %s", ask->address, err);
		free(err);
		reply->status = QUOTA_UNKNOWN;
	}
	buf_free(&maildir);
}

int quota_reader_main(const struct config *cfg, const struct recipient_tables *t, int sock)
{
	unsigned char packet[QUOTA_MSG_MAX + 1];

	log_set_role("quota");
	log_info("quota reader started: mail_root=%s uid=%lu", cfg->mail_root,
		 (unsigned long)getuid());
	for (;;) {
		ssize_t n = recv(sock, packet, sizeof(packet), MSG_TRUNC);
		if (n < 0 && errno == EINTR)
			continue;
		if (n == 0)
			return 0; /* the worker is gone */
		if (n < 0) {
			log_error("worker socket: %s; stopping", strerror(errno));
			return 1;
		}
		struct quota_msg ask, reply = { 0 };
		const char *why = NULL;
		if ((size_t)n > QUOTA_MSG_MAX ||
		    quota_msg_decode(packet, (size_t)n, &ask, &why) < 0 || ask.type != QUOTA_ASK) {
			log_error("protocol violation from the smtp worker: %s; stopping",
				  why != NULL ? why : "not a request");
			return 1;
		}
		answer(cfg, t, &ask, &reply);
		size_t len = quota_msg_encode(&reply, packet);
		if (send(sock, packet, len, MSG_NOSIGNAL) != (ssize_t)len) {
			log_error("cannot answer the smtp worker: %s; stopping", strerror(errno));
			return 1;
		}
	}
}

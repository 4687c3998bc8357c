/*
 * policy.h - the per-stage decision hook of the SMTP session.
 *
 * The session asks the policy at every stage of the dialogue (connect,
 * HELO, MAIL, RCPT, DATA start, end of data) and answers the client with
 * the verdict. Each stage runs an ordered list of checks, cheapest first;
 * the first check that does not answer POLICY_DUNNO decides. Today the
 * list holds relay control at RCPT; restrictions, DNSBL, rate limits and
 * content scanning add their checks to the same lists.
 *
 * Contract for checks: a check reads the request, never blocks for longer
 * than a local table lookup, and fills reply_r when it returns a verdict
 * other than POLICY_DUNNO. (Checks that must wait for the network, such as
 * DNSBL, will return POLICY_PENDING and resume the session through a
 * callback; the session already stops reading input while a verdict is
 * outstanding, so the seam is in place.)
 */
#ifndef POSTERN_POLICY_H
#define POSTERN_POLICY_H

#include <stdbool.h>
#include <sys/socket.h>

#include "../lib/config.h"
#include "../mail/address.h"
#include "../mail/recipients.h"

enum policy_stage {
	POLICY_CONNECT,
	POLICY_HELO,
	POLICY_MAIL,
	POLICY_RCPT,
	POLICY_DATA,
	POLICY_END_OF_DATA,
	POLICY_STAGE_COUNT
};

enum policy_verdict {
	POLICY_DUNNO,    /* no opinion: ask the next check */
	POLICY_ACCEPT,   /* accept now, skip the remaining checks of the stage */
	POLICY_REJECT,   /* 5xx */
	POLICY_TEMPFAIL, /* 4xx */
};

struct policy_reply {
	int code;           /* 250, 451, 550, 554 ... */
	char status[12];    /* enhanced status code "5.7.1" */
	char text[512];     /* human text, without code */
	char reason[64];    /* short key for the log: "relay_denied" */
};

struct policy_request {
	enum policy_stage stage;
	const struct sockaddr *client;
	const char *client_addr;
	const char *helo;
	bool tls;
	const char *auth_user;              /* NULL until AUTH exists */
	const struct mail_address *sender;  /* MAIL and later */
	const struct mail_address *rcpt;    /* RCPT only */
	unsigned rcpt_count;                /* recipients accepted so far */
};

struct policy_env {
	const struct config *cfg;
	const struct recipient_tables *rcpt_tables;
};

/* Run the checks of req->stage. Returns the verdict; for POLICY_DUNNO or
 * POLICY_ACCEPT the session uses its default success reply. */
enum policy_verdict policy_check(const struct policy_env *env,
				 const struct policy_request *req,
				 struct policy_reply *reply_r);

/* The relay-control check (relay.c), exported for unit tests. */
enum policy_verdict policy_check_recipient(const struct policy_env *env,
					   const struct policy_request *req,
					   struct policy_reply *reply_r);

/* "local@domain" lookup key for a local recipient: local part unquoted
 * and lower-cased; false if the local part does not unquote to a plain
 * mailbox name. "<Postmaster>" maps to postmaster@<first local domain>. */
bool policy_local_key(const struct config *cfg, const struct mail_address *a,
		      char *key, size_t keylen);

#endif

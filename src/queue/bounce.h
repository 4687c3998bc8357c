/*
 * bounce.h - delivery status notifications (RFC 3464 multipart/report):
 * failures (bounces), delays (warnings), successes (RFC 3461
 * NOTIFY=SUCCESS) and double bounces to the postmaster, written as new
 * queue messages from <>.
 *
 * RFCs: 3461, 3464, 6522, 6533, 3463, 5322, 3834. Untrusted input: the
 * original message (its header section, or for RET=FULL the whole
 * message up to BOUNCE_FULL_MAX), quoted verbatim. Privilege:
 * unprivileged queue manager.
 */
#ifndef POSTERN_BOUNCE_H
#define POSTERN_BOUNCE_H

#include <stddef.h>
#include <stdint.h>

#include "../lib/buf.h"
#include "queue.h"
#include "queue_file.h"

/* What a report says happened (its Action:, RFC 3464 2.3.3). */
enum bounce_kind {
	BOUNCE_FAILED,    /* to the sender: delivery failed for good */
	BOUNCE_DELAYED,   /* to the sender: not delivered yet, still trying */
	BOUNCE_DELIVERED, /* to the sender: delivered (NOTIFY=SUCCESS) */
	BOUNCE_DOUBLE,    /* to the postmaster: a message from <> failed */
	BOUNCE_RELAYED,   /* to the sender: passed to a peer that takes no DSN
			   * request, so the last report (NOTIFY=SUCCESS) */
};

struct bounce_item {
	const char *final_rcpt; /* mailbox the report is about */
	const char *orig_rcpt;  /* as given in RCPT TO; NULL if the same */
	const char *orcpt;      /* RCPT ORCPT= "type;address"; NULL if not given */
	const char *reason;     /* "5.1.1 unknown user" (status code first) */
	const char *remote_mta; /* BOUNCE_RELAYED: the peer's host name; else NULL */
};

struct bounce_request {
	const char *spool_dir;
	const char *hostname;
	const struct qf_msg *msg; /* the original message */
	int queue_fd;             /* its open queue file (for its content) */
	const struct bounce_item *items;
	size_t count;
	uint64_t now_us;
	enum bounce_kind kind;
	const char *recipient;    /* BOUNCE_DOUBLE: the postmaster's address;
				   * otherwise NULL (the message's sender) */
	uint64_t retry_until;     /* BOUNCE_DELAYED: when we give up, epoch s */
};

/* Largest part of the original header section quoted in a report. */
#define BOUNCE_HEADERS_MAX (64 * 1024)
/* Largest message returned whole (RET=FULL, failures only): a bigger
 * one is returned as its header section, and the report says so. */
#define BOUNCE_FULL_MAX (10 * 1024 * 1024)

/* The enhanced status code at the start of reason ("5.1.1"), or fallback. */
void bounce_status_code(const char *reason, const char *fallback,
			char *out, size_t outlen);
/* Append an RFC 5322 date ("Sun, 22 Nov 2026 22:03:01 +0000"). */
void bounce_format_date(buf_t *out, uint64_t time_us);

/* Build the whole report (LF line ends) for a bounce with id bounce_id. */
int bounce_build(buf_t *out, const struct bounce_request *req,
		 const char *bounce_id, char **err_r);
/*
 * Build the report and commit it as a new queue message (sender <>,
 * recipient the original sender, or req->recipient for a double bounce;
 * origin QUEUE_ORIGIN_NOTICE, QUEUE_ORIGIN_DOUBLE_BOUNCE for a double
 * bounce). Fills bounce_id_r (QUEUE_ID_LEN + 1). Returns 0 once it is
 * durable, -1 with a malloc'ed *err_r (a report to <> is refused).
 */
int bounce_send(const struct bounce_request *req, char *bounce_id_r,
		char **err_r);

#endif

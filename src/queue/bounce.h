/*
 * bounce.h - delivery status notifications (RFC 3464 multipart/report)
 * for recipients that failed, written as new queue messages from <>.
 *
 * RFCs: 3464, 6522, 3463, 5322, 3834. Untrusted input: the original
 * message's header section, quoted verbatim and bounded. Privilege:
 * unprivileged queue manager.
 */
#ifndef POSTERN_BOUNCE_H
#define POSTERN_BOUNCE_H

#include <stddef.h>
#include <stdint.h>

#include "../lib/buf.h"
#include "queue.h"
#include "queue_file.h"

struct bounce_item {
	const char *final_rcpt; /* mailbox that failed */
	const char *orig_rcpt;  /* as given in RCPT TO; NULL if the same */
	const char *reason;     /* "5.1.1 unknown user" (status code first) */
};

struct bounce_request {
	const char *spool_dir;
	const char *hostname;
	const struct qf_msg *msg; /* the original message */
	int queue_fd;             /* its open queue file (for its headers) */
	const struct bounce_item *items;
	size_t count;
	uint64_t now_us;
};

/* Largest part of the original header section quoted in a bounce. */
#define BOUNCE_HEADERS_MAX (64 * 1024)

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
 * recipient the original sender). Fills bounce_id_r (QUEUE_ID_LEN + 1).
 * Returns 0 once it is durable, -1 with a malloc'ed *err_r.
 */
int bounce_send(const struct bounce_request *req, char *bounce_id_r,
		char **err_r);

#endif

/*
 * milter_scan.h - the milter server's side of content scanning: one
 * message handed to the scan master the way an smtp worker's scan client
 * does it (src/scan/scan_client.h): a REQUEST with the envelope, the
 * content range and the spool file as a read-only descriptor, over the
 * scan master's socket; the VERDICT back. The milter's conversations each
 * run on a thread of their own (libmilter's), so the wait blocks that
 * thread only.
 *
 * One connection per message: no state shared between threads. A DRAIN
 * (the scan master is being replaced) on the way is ignored: the verdict
 * still comes on this connection, and the next message connects to the
 * new master. The wait is bounded by 2 x scan_timeout +
 * SCAN_CLIENT_MARGIN, as in the smtp worker; a scan that cannot be had
 * gets the failure verdict (451 4.7.0, or accepted with
 * scan_fail_open = yes), reasons scan_unavailable and scan_timeout.
 *
 * Untrusted input: the verdict (decoded by scan_proto.c). Privilege: the
 * milter process (`user`).
 */
#ifndef POSTERN_MILTER_SCAN_H
#define POSTERN_MILTER_SCAN_H

#include <stdint.h>

#include "../lib/config.h"
#include "../lib/strutil.h"
#include "../scan/scan_proto.h"

struct milter_scan_request {
	const char *socket_path;  /* the scan master's */
	const char *id;           /* postern's id of the message (QUEUE_ID_LEN) */
	int fd;                   /* the content, read-only */
	uint64_t len;             /* its bytes, from offset 0 */
	const char *sender;       /* "" for <> */
	const char *client_addr;
	const char *helo;
	const strlist_t *rcpts;
};

/*
 * Ask for the verdict. *reply_r (a VERDICT, free it with scan_msg_free)
 * always holds one: the scan master's, or the failure verdict, whose
 * reason starts with "scan_" (then detail_r says why, for the log).
 */
void milter_scan_ask(const struct config *cfg, const struct milter_scan_request *req,
		     struct scan_msg *reply_r, char *detail_r, size_t detail_size);

#endif

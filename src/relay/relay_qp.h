/*
 * relay_qp.h - 8-bit mail for a peer without 8BITMIME (RFC 6152 section
 * 3): what can be done with a message, and the quoted-printable encoder
 * (RFC 2045 section 6.7) of its body.
 *
 * A message whose header section holds 8-bit bytes, or whose top-level
 * Content-Type is multipart/ or message/ (the 8-bit parts are inside),
 * cannot be converted here: it bounces (5.6.3). Any other 8-bit message
 * (a single part, text or not, or no MIME at all) is sent with its body
 * encoded quoted-printable and its header section saying so: every
 * Content-Transfer-Encoding field replaced by "quoted-printable", and
 * MIME-Version and Content-Type (text/plain; charset=unknown-8bit, RFC
 * 1428) added when the message had no MIME-Version.
 *
 * Untrusted input: the message content (bounded: at most
 * RELAY_QP_HEADER_MAX bytes of header section are read to decide).
 * Privilege: the relay agent.
 */
#ifndef POSTERN_RELAY_QP_H
#define POSTERN_RELAY_QP_H

#include <stdbool.h>
#include <stddef.h>

#include "../lib/buf.h"
#include "../queue/queue_file.h"

#define RELAY_QP_HEADER_MAX (256 * 1024)
#define RELAY_QP_LINE 76

enum relay_qp_verdict {
	RELAY_QP_7BIT,      /* nothing 8-bit: send as it is */
	RELAY_QP_CONVERT,   /* send with the body quoted-printable */
	RELAY_QP_CANNOT,    /* bounce: *why_r says why */
	RELAY_QP_IO_ERROR,  /* the queue file did not read */
};

/* Decide for the message in fd (described by msg). On RELAY_QP_CONVERT,
 * *edits_r / *count_r are the header changes to apply instead of msg's
 * own (msg's edits followed by ours; free with relay_qp_edits_free). */
enum relay_qp_verdict relay_qp_plan(int fd, const struct qf_msg *msg, const char **why_r,
				    struct qf_header_edit **edits_r, size_t *count_r);
void relay_qp_edits_free(struct qf_header_edit *edits, size_t count, size_t own);

/* The streaming encoder of a body (LF line ends in and out). */
struct relay_qp {
	size_t col;      /* characters on the current output line */
	char held;       /* a space or tab not yet written (0: none): it
			  * must be encoded if the line ends right after */
};

void relay_qp_init(struct relay_qp *q);
void relay_qp_feed(struct relay_qp *q, const char *in, size_t n, buf_t *out);
void relay_qp_end(struct relay_qp *q, buf_t *out);

#endif

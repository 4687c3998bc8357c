/*
 * scan_proto.h - the messages of content scanning, over AF_UNIX
 * SOCK_SEQPACKET sockets, one message per packet:
 *
 *   smtp worker --REQUEST--> scan master --REQUEST--> scanner
 *   smtp worker <--VERDICT-- scan master <--VERDICT-- scanner
 *   smtp worker <--DRAIN---- scan master
 *
 * The smtp workers connect to the scan master's socket
 * (spool_dir/private/scan.sock) and may have many requests outstanding
 * on one connection, told apart by their seq (chosen by the sender of the
 * REQUEST, echoed in its VERDICT; verdicts come in any order). The scan
 * master hands each request on to an idle scanner over that scanner's
 * socket pair (one at a time) and relays the verdict with the worker's
 * seq.
 *
 * Every message is a type byte followed by that type's fixed list of
 * fields; integers are unsigned big-endian; a string is a u16 length then
 * that many bytes, bounded per field, with no byte below 0x20 and no 0x7f
 * (header fields: see scan_header_field_ok, which allows TAB and folding);
 * lists are a count then their items. A message must end exactly after
 * its last field and be at most SCAN_MSG_MAX bytes (the bounds of the
 * verdict's fields are scan.h's, see scan_verdict_normalize). A
 * descriptor travels as SCM_RIGHTS ancillary data with REQUEST, and only
 * there. Anything else
 * (unknown type, a wrong length, a bad field, bytes left over, a missing or
 * extra descriptor, a truncated packet, a message sent the wrong way) is a
 * protocol violation: the receiver logs it and ends that connection (fail
 * closed).
 *
 *   REQUEST 0x01  u32 seq, id[19] (queue id), u64 content_off,
 *                 u64 content_len, str sender (0..512, "" for <>),
 *                 str client_addr (0..64), str helo (0..255),
 *                 u32 rcpt_total, u16 rcpt_count (<= rcpt_total),
 *                 rcpt_count x str recipient (1..512)
 *                                      + fd: the spool file, read-only
 *   VERDICT 0x81  u32 seq, u8 action (enum scan_action), u16 code,
 *                 str status (0..11), str text (0..511), str reason
 *                 (0..63, [A-Za-z0-9_.:-]), u8 header count (0..16) x
 *                 str header field (1..SCAN_HEADER_TEXT_MAX), u8 hit count
 *                 (0..32) x str hit (1..255, no space or comma), u8
 *                 timing count (0..8) x
 *                 (str stage (1..31, [a-z0-9_]), u32 microseconds)
 *   DRAIN   0x82  (no field)
 *
 * REQUEST: the message is content_len bytes at content_off of the file
 * (LF line ends, as queued, our Received: first). The envelope is bounded:
 * the recipients that fit in the packet are listed (about a thousand
 * ordinary addresses), rcpt_total says how many there are.
 * VERDICT: code is 0 for ACCEPT, TAG, DISCARD and QUARANTINE, 500..599
 * for REJECT and 400..499 for TEMPFAIL, whose status then is an enhanced
 * status code of the same class ("5.7.1") and whose text is not empty.
 * DRAIN: the scan master is going away (a reload started a new one): the
 * worker sends no new request on this connection (it connects again for
 * the next one) and closes it once the verdicts it waits for have come.
 *
 * Untrusted input: each side decodes what it receives as hostile (the
 * scanners parse hostile mail; a compromised smtp worker may send
 * anything). Privilege: unprivileged smtp workers, scan master and
 * scanners (all `user`).
 */
#ifndef POSTERN_SCAN_PROTO_H
#define POSTERN_SCAN_PROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../lib/buf.h"
#include "../lib/strutil.h"
#include "../queue/queue.h"
#include "../queue/queue_file.h"
#include "scan.h"

#define SCAN_MSG_MAX 65536       /* largest packet either side sends */
#define SCAN_CLIENT_ADDR_MAX 64
#define SCAN_HELO_MAX 255
#define SCAN_SOCKET_FOLDER "private"
#define SCAN_SOCKET_NAME "scan.sock"

enum scan_msg_type {
	SCAN_MSG_REQUEST = 0x01,
	SCAN_MSG_VERDICT = 0x81,
	SCAN_MSG_DRAIN = 0x82,
};

/* One decoded message; only the fields of its type are meaningful. Free
 * with scan_msg_free (rcpts, and the verdict's lists). */
struct scan_msg {
	enum scan_msg_type type;
	uint32_t seq;                                /* REQUEST, VERDICT */
	/* REQUEST */
	char id[QUEUE_ID_LEN + 1];
	uint64_t content_off;
	uint64_t content_len;
	char sender[QF_ADDR_MAX + 1];
	char client_addr[SCAN_CLIENT_ADDR_MAX + 1];
	char helo[SCAN_HELO_MAX + 1];
	uint32_t rcpt_total;
	strlist_t rcpts;                             /* the first rcpts.count */
	/* VERDICT: timings[i].stage points into timing_names. */
	struct scan_verdict verdict;
	char timing_names[SCAN_TIMINGS_MAX][SCAN_STAGE_NAME_MAX + 1];
};

void scan_msg_init(struct scan_msg *m, enum scan_msg_type type);
void scan_msg_free(struct scan_msg *m);

/* Is type sent towards the scanners (a REQUEST)? */
static inline bool scan_msg_is_request(enum scan_msg_type type)
{
	return (unsigned)type < 0x80;
}

/*
 * Fill a REQUEST's envelope from text that may be anything: control
 * characters become '?', the client address and HELO are cut at their
 * bounds; a sender or recipient longer than QF_ADDR_MAX is cut too (the
 * queue refuses such addresses, so it never happens with a real one).
 */
void scan_msg_set_envelope(struct scan_msg *m, const char *sender, const char *client_addr,
			   const char *helo, const strlist_t *rcpts);

/*
 * Encode m into out (emptied first); at most SCAN_MSG_MAX bytes. A field
 * out of its bounds is our bug (log_panic): build REQUESTs with
 * scan_msg_set_envelope and VERDICTs through scan_verdict_normalize. A
 * REQUEST lists the recipients that fit.
 */
void scan_msg_encode(const struct scan_msg *m, buf_t *out);

/*
 * Decode one packet into *m (initialised here; free it even on failure).
 * Returns 0, or -1 with *err_r pointing to a static description of the
 * first violation.
 */
int scan_msg_decode(const unsigned char *data, size_t len, struct scan_msg *m,
		    const char **err_r);

/*
 * Send m as one packet, with fd attached for a REQUEST (and only then).
 * MSG_NOSIGNAL: returns 0, or -1 with errno (on a non-blocking socket
 * EAGAIN when the peer's queue is full: try again when it is writable;
 * EPIPE when the peer is gone).
 */
int scan_send(int sock, const struct scan_msg *m, int fd);
/* The same with the packet already encoded (the master keeps some). */
int scan_send_encoded(int sock, const buf_t *packet, int fd);

/*
 * Receive one message of the expected direction (requests: REQUEST;
 * otherwise VERDICT or DRAIN). Returns 1 with *m filled (free it) and
 * *fd_r its descriptor (-1 if none; the caller closes it), 0 at end of
 * stream, -1 on a violation (errno EPROTO) or an I/O error (errno kept,
 * EAGAIN when nothing is waiting on a non-blocking socket) with *err_r
 * set to a static text. Descriptors that came with a bad message are
 * closed. A REQUEST's descriptor must be a regular file open read-only.
 * Blocks unless the socket is non-blocking.
 */
int scan_recv(int sock, bool requests, struct scan_msg *m, int *fd_r, const char **err_r);

/* spool_dir/private/scan.sock, malloc'ed. */
char *scan_socket_path(const char *spool_dir);
/*
 * Connect a non-blocking SOCK_SEQPACKET socket to the scan master at path
 * (any length: a path too long for sockaddr_un goes through the folder's
 * descriptor). Returns the socket, or -1 with errno.
 */
int scan_socket_connect(const char *path);
/*
 * Bind and listen on path (any length, as above). Returns the listening
 * socket (non-blocking), or -1 with errno.
 */
int scan_socket_listen(const char *path);

#endif

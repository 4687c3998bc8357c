/*
 * local_proto.h - the messages between the queue manager (runs as `user`)
 * and the local delivery agent (runs as `mail_owner`, the only process
 * that writes Maildirs), over an AF_UNIX SOCK_SEQPACKET socket pair: one
 * message per packet, strictly one request then its reply or replies.
 *
 * Every message is a type byte followed by that type's fixed list of
 * fields; integers are unsigned big-endian; a string is a u16 length then
 * that many bytes, bounded per field, with no byte below 0x20 and no 0x7f.
 * A message must end exactly after its last field. A file descriptor
 * travels as SCM_RIGHTS ancillary data where the type says so, and only
 * there. Anything else (unknown type, a wrong length, a bad field, bytes
 * left over, a missing or extra descriptor, a truncated packet) is a
 * protocol violation: the receiver logs it and stops (fail closed).
 *
 *   queue manager -> agent (requests)
 *   HELLO     0x01  u32 version (1)                  + fd: the spool lock
 *   DELIVER   0x02  u32 seq, id[19], u64 arrival_us, str sender (<= 512),
 *                   u64 content_off, u64 content_len, str address (1..512),
 *                   u8 flags (bit 0: look in cur/ too; others 0)
 *                                                    + fd: queue file, read-only
 *   SYNC      0x03  u32 seq
 *
 *   agent -> queue manager (replies)
 *   RESULT    0x81  u32 seq, u8 result (0 delivered, 1 already there,
 *                   2 temporary failure, 3 permanent failure),
 *                   u32 folder (0 = none, else 1-based index of the new/
 *                   folder in the agent's table for this batch),
 *                   str reason (<= 1000; "4.x.x ..." or "5.x.x ..." on failure)
 *   SYNC_FAIL 0x82  u32 seq, u32 folder (1-based), str reason (<= 1000)
 *   SYNC_DONE 0x83  u32 seq, u32 folders, u32 failed
 *
 * DELIVER is answered by one RESULT; SYNC by one SYNC_FAIL per folder whose
 * fsync failed, then SYNC_DONE; HELLO has no reply. The agent keeps the
 * table of new/ folders the batch's deliveries touched and numbers them
 * from 1; SYNC fsyncs each once and empties the table. The queue manager
 * never sends a path: the agent builds every path itself from its own
 * mail_root and a checked address.
 *
 * Untrusted input: both directions are decoded as hostile. Privilege:
 * unprivileged queue manager and local delivery agent.
 */
#ifndef POSTERN_LOCAL_PROTO_H
#define POSTERN_LOCAL_PROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "queue.h"
#include "queue_file.h"

#define LOCAL_PROTO_VERSION 1
#define LOCAL_MSG_MAX 2048      /* largest packet either side sends */
#define LOCAL_REASON_MAX 1000   /* bytes of a reason text */
#define LOCAL_FLAG_CHECK_CUR 0x01

enum local_msg_type {
	LOCAL_HELLO = 0x01,
	LOCAL_DELIVER = 0x02,
	LOCAL_SYNC = 0x03,
	LOCAL_RESULT = 0x81,
	LOCAL_SYNC_FAIL = 0x82,
	LOCAL_SYNC_DONE = 0x83,
};

enum local_result {
	LOCAL_DELIVERED = 0, /* a new copy is linked into new/ (not yet synced) */
	LOCAL_ALREADY = 1,   /* an earlier attempt delivered it */
	LOCAL_TEMPFAIL = 2,
	LOCAL_PERMFAIL = 3,
};

/* One decoded message; only the fields of its type are meaningful. */
struct local_msg {
	enum local_msg_type type;
	uint32_t version;                  /* HELLO */
	uint32_t seq;                      /* all but HELLO */
	char id[QUEUE_ID_LEN + 1];         /* DELIVER */
	uint64_t arrival_us;               /* DELIVER */
	char sender[QF_ADDR_MAX + 1];      /* DELIVER, "" for <> */
	uint64_t content_off;              /* DELIVER */
	uint64_t content_len;              /* DELIVER */
	char address[QF_ADDR_MAX + 1];     /* DELIVER */
	bool check_cur;                    /* DELIVER */
	enum local_result result;          /* RESULT */
	uint32_t folder;                   /* RESULT, SYNC_FAIL */
	char reason[LOCAL_REASON_MAX + 1]; /* RESULT, SYNC_FAIL */
	uint32_t folders, failed;          /* SYNC_DONE */
};

/* Is type a request (queue manager to agent)? */
static inline bool local_is_request(enum local_msg_type type)
{
	return (unsigned)type < 0x80;
}

/* Descriptors that travel with a message of this type (0 or 1). */
int local_msg_fd_count(enum local_msg_type type);

/*
 * Copy text into dst (LOCAL_REASON_MAX + 1 bytes) as a valid reason:
 * control characters become '?', cut at LOCAL_REASON_MAX bytes.
 */
void local_set_reason(char *dst, const char *text);

/*
 * Encode m into out (LOCAL_MSG_MAX bytes); returns the length. A field
 * out of its bounds is our bug (log_panic): build messages from checked
 * values only.
 */
size_t local_msg_encode(const struct local_msg *m, unsigned char *out);

/*
 * Decode one packet. Returns 0 and fills *m, or -1 with *err_r pointing to
 * a static description of the first violation.
 */
int local_msg_decode(const unsigned char *data, size_t len, struct local_msg *m,
		     const char **err_r);

/*
 * Send m as one packet with fd attached (fd < 0: none; the type decides,
 * see local_msg_fd_count). MSG_NOSIGNAL: a closed peer is EPIPE, not a
 * signal. Returns 0, or -1 with errno.
 */
int local_send(int sock, const struct local_msg *m, int fd);

/*
 * Receive one message of the expected direction (requests or replies).
 * Returns 1 with *m filled and *fd_r the descriptor it carried (-1 if its
 * type carries none; the caller closes it), 0 at end of stream (the peer
 * is gone), -1 on a violation (errno EPROTO) or an I/O error (errno
 * kept) with *err_r set to a static text. Descriptors received with a bad
 * message are closed.
 */
int local_recv(int sock, bool requests, struct local_msg *m, int *fd_r,
	       const char **err_r);

#endif

/*
 * quota_proto.h - the messages between an smtp worker (runs as `user`)
 * and its quota reader (runs as `mail_owner`, the only account that can
 * open a Maildir), over an AF_UNIX SOCK_SEQPACKET socket pair: one
 * message per packet.
 *
 *   worker -> reader
 *   ASK    0x01  u32 seq, str address (1..512 bytes, none below 0x21, no 0x7f),
 *                u64 need (the bytes the worker wants free: its margin or
 *                the SIZE announced; a usage that leaves less is counted
 *                again if its file is not recent, maildir_quota_get_for)
 *   reader -> worker
 *   USAGE  0x81  u32 seq, u8 status, u64 limit, u64 used (bytes),
 *                u64 count limit, u64 count used (messages)
 *
 * status: 0 the mailbox has a quota (the numbers are meaningful; a
 * limit of 0 is no limit), 1 no
 * quota applies (not a user, or unlimited), 2 the usage cannot be read
 * now (the reader logged why). Integers are unsigned big-endian, a
 * string is a u16 length then its bytes; a message must end exactly
 * after its last field. The reader answers every ASK, in order. Anything
 * else is a protocol violation: the receiver stops using the socket
 * (the reader exits; the worker stops asking and lets mail through to
 * the delivery-time check).
 *
 * Untrusted input: both directions are decoded as hostile. Privilege:
 * smtp worker and quota reader.
 */
#ifndef POSTERN_QUOTA_PROTO_H
#define POSTERN_QUOTA_PROTO_H

#include <stddef.h>
#include <stdint.h>

#include "queue_file.h"

#define QUOTA_MSG_MAX 600

enum quota_msg_type {
	QUOTA_ASK = 0x01,
	QUOTA_USAGE = 0x81,
};

enum quota_status {
	QUOTA_KNOWN = 0,
	QUOTA_NONE = 1,
	QUOTA_UNKNOWN = 2,
};

struct quota_msg {
	enum quota_msg_type type;
	uint32_t seq;
	char address[QF_ADDR_MAX + 1]; /* ASK */
	uint64_t need;                 /* ASK */
	enum quota_status status;      /* USAGE */
	uint64_t limit, used;          /* USAGE: bytes */
	uint64_t count_limit, count_used; /* USAGE: messages */
};

/* Encode m into out (QUOTA_MSG_MAX bytes); its length. m must be valid
 * (log_panic otherwise: our bug). */
size_t quota_msg_encode(const struct quota_msg *m, unsigned char *out);
/* Decode one packet; 0, or -1 with a static *why_r. */
int quota_msg_decode(const unsigned char *data, size_t len, struct quota_msg *m,
		     const char **why_r);

#endif

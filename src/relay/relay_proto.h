/*
 * relay_proto.h - the messages between the queue manager (`user`) and
 * the relay delivery agent (the outbound SMTP client, `user`, no access
 * to the spool's folders or any mailbox), over an AF_UNIX SOCK_SEQPACKET
 * socket pair, one message per packet. Unlike the local agent's protocol
 * many requests are in flight at once: each DELIVER is answered by
 * exactly one RESULT carrying its sequence number, in any order.
 *
 * Encoding as in local_proto.h: a type byte, then the type's fixed
 * fields; integers unsigned big-endian; a string is a u16 length then
 * bytes >= 0x20 other than 0x7f (bytes >= 0x80 allowed: SMTPUTF8
 * addresses), each bounded; nothing may follow the last field; a
 * descriptor travels only with HELLO and DELIVER. Anything else is a
 * protocol violation and ends the receiver.
 *
 *   queue manager -> agent
 *   HELLO    0x01  u32 version (1)                          + fd: qmgr.lock
 *   DELIVER  0x02  u32 seq, id[19], str sender (<= 512),
 *                  u64 content_off, u64 content_len,
 *                  u8 flags (bit 0 SMTPUTF8, bit 1 BODY=8BITMIME),
 *                  str host (1..255), u16 port (1..65535),
 *                  u8 hop flags (bit 0 look up MX, bit 1 address literal),
 *                  u8 tls level (0 none, 1 may, 2 encrypt, 3 verify),
 *                  str envid (<= 100; DSN ENVID, "" = none),
 *                  u8 ret (0 none, 1 FULL, 2 HDRS; DSN RET),
 *                  u16 recipients (1..RELAY_RCPTS_MAX), each:
 *                    str address (1..512),
 *                    u8 notify (0 = not given; DSN NOTIFY bits:
 *                               1 NEVER, 2 SUCCESS, 4 FAILURE, 8 DELAY),
 *                    str orcpt (<= 500; DSN ORCPT "type;addr", "" = none)
 *                                                           + fd: queue file, read-only
 *   agent -> queue manager
 *   RESULT   0x81  u32 seq, str peer (<= 300; "host[addr]:port" or ""),
 *                  u16 recipients (as in the DELIVER), each:
 *                    u8 result (0 sent, 1 sent to a peer without DSN,
 *                               2 temporary, 3 permanent failure),
 *                    str reason (<= 1000)
 *
 * The DSN fields (envid, ret, notify, orcpt) are the DSN parameters the
 * message came with (RFC 3461), from the queue file; the agent gives them
 * to a peer that offers DSN, and says RELAY_SENT_NO_DSN for a recipient
 * it handed to one that does not.
 *
 * Untrusted input: every packet, in both directions. Privilege: the
 * unprivileged queue manager and relay agent.
 */
#ifndef POSTERN_RELAY_PROTO_H
#define POSTERN_RELAY_PROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../queue/queue.h"
#include "../queue/queue_file.h"
#include "relay_route.h"

#define RELAY_PROTO_VERSION 1
#define RELAY_MSG_MAX 65536      /* largest packet */
#define RELAY_RCPTS_MAX 50       /* recipients per DELIVER (and per SMTP transaction) */
#define RELAY_ENVID_MAX 100
#define RELAY_ORCPT_MAX 500

/* DELIVER's ret: the DSN RET parameter. */
enum { RELAY_RET_NONE = 0, RELAY_RET_FULL = 1, RELAY_RET_HDRS = 2 };
#define RELAY_PEER_MAX 300
#define RELAY_REASON_MAX 1000

#define RELAY_FLAG_SMTPUTF8 0x01
#define RELAY_FLAG_8BITMIME 0x02
#define RELAY_HOP_MX 0x01
#define RELAY_HOP_LITERAL 0x02

enum relay_msg_type {
	RELAY_HELLO = 0x01,
	RELAY_DELIVER = 0x02,
	RELAY_RESULT = 0x81,
};

enum relay_result {
	RELAY_SENT = 0,         /* the peer took it, and the DSN requests with it */
	RELAY_SENT_NO_DSN = 1,  /* the peer took it but offers no DSN: the requests
				 * stopped here (RFC 3461 4.3: "relayed") */
	RELAY_TEMPFAIL = 2,
	RELAY_PERMFAIL = 3,
};

struct relay_rcpt {
	char address[QF_ADDR_MAX + 1];
	uint8_t notify;                     /* DSN, 0 = not given */
	char orcpt[RELAY_ORCPT_MAX + 1];    /* DSN, "" = none */
	enum relay_result result;           /* RESULT */
	char reason[RELAY_REASON_MAX + 1];  /* RESULT */
};

/* One decoded message; only the fields of its type mean anything. About
 * 76 KiB: allocate it, do not put it on a thread's stack. */
struct relay_msg {
	enum relay_msg_type type;
	uint32_t version;                 /* HELLO */
	uint32_t seq;                     /* DELIVER, RESULT */
	char id[QUEUE_ID_LEN + 1];        /* DELIVER */
	char sender[QF_ADDR_MAX + 1];     /* DELIVER, "" for <> */
	uint64_t content_off, content_len;
	uint8_t flags;                    /* RELAY_FLAG_* */
	struct relay_nexthop hop;         /* DELIVER */
	enum relay_tls_level tls;         /* DELIVER */
	char envid[RELAY_ENVID_MAX + 1];  /* DELIVER, DSN */
	uint8_t ret;                      /* DELIVER, DSN */
	char peer[RELAY_PEER_MAX + 1];    /* RESULT */
	size_t rcpt_count;
	struct relay_rcpt rcpts[RELAY_RCPTS_MAX];
};

/* Copy text into dst (max + 1 bytes) as a valid string field: control
 * characters become '?', cut at max bytes. */
void relay_set_text(char *dst, size_t max, const char *text);

/* Encode m into out (RELAY_MSG_MAX bytes); returns the length. A field
 * out of bounds is our bug (log_panic). */
size_t relay_msg_encode(const struct relay_msg *m, unsigned char *out);
/* Decode one packet: 0, or -1 with *err_r (static text). */
int relay_msg_decode(const unsigned char *data, size_t len, struct relay_msg *m,
		     const char **err_r);

/* Send m (with fd when its type carries one, else fd must be -1). 0, or
 * -1 with errno (EAGAIN on a non-blocking socket that is full). */
int relay_send(int sock, const struct relay_msg *m, int fd);
/* Send an encoded message without a descriptor (the same rules). */
int relay_send_raw(int sock, const unsigned char *data, size_t len);
/* Receive one message of the expected direction. 1 with *m and *fd_r
 * (-1 if none; the caller closes it), 0 at end of stream, -1 with errno
 * (EPROTO: a violation, *err_r says which; EAGAIN: nothing there). */
int relay_recv(int sock, bool requests, struct relay_msg *m, int *fd_r, const char **err_r);

#endif

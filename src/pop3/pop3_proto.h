/*
 * pop3_proto.h - the messages between the pop3 worker (runs as `user`,
 * talks to the network) and its mailbox agent (runs as mail_owner, the
 * only process of the pop3 role that opens a Maildir), over an AF_UNIX
 * SOCK_SEQPACKET socket pair: one message per packet; the agent answers
 * the requests in the order they came.
 *
 * Every message is a type byte and that type's fixed fields; integers are
 * unsigned big-endian; a string is a u16 length and that many bytes,
 * bounded per field, no byte below 0x20 and no 0x7f (a unique id and a
 * ticket: 0x21 to 0x7e). A message ends exactly after its last field.
 * Anything else
 * (unknown type, wrong direction, bad field, bytes left over, a missing or
 * extra descriptor, a truncated packet) is a violation: the receiver logs
 * it and stops (fail closed).
 *
 *   worker -> agent (requests)
 *   OPEN     0x01  u32 sid, str user (1..512: the account the auth process
 *                  named, "local@domain"), str ticket (0..112: the login
 *                  ticket the auth process gave with it, auth_ticket.h)
 *   FETCH    0x02  u32 sid, u32 index (0-based), u8 count (1..POP3_FETCH_MAX):
 *                  the message at index and the ones after it (read ahead:
 *                  clients read in order)
 *   UPDATE   0x03  u32 sid, u32 count, count bytes of marks (bit 0 delete,
 *                  bit 1 seen; the other bits 0)
 *   CLOSE    0x04  u32 sid                       (no reply)
 *
 *   agent -> worker (replies)
 *   ENTRIES  0x81  u32 sid, u16 n (1..POP3_ENTRIES_PER_PACKET),
 *                  n x (u64 size as sent, str uid (1..70))
 *   OPENED   0x82  u32 sid, u8 status (0 ok, 1 in use, 2 failed),
 *                  u32 count (the entries sent before it), str reason (<= 200)
 *   MAIL     0x83  u32 sid, u8 status (of the first: 0 ok, 1 gone, 2 failed),
 *                  u8 n (status 0: 1..count, else 0)
 *                                            + n fds: messages index .. index+n-1,
 *                                              read-only
 *   UPDATED  0x84  u32 sid, u8 status (0 ok, 2 failed), u32 deleted,
 *                  u32 gone, u32 failed, str reason (<= 200)
 *
 * OPEN is answered by zero or more ENTRIES then OPENED (the agent holds
 * the maildrop and its lock until CLOSE); FETCH by MAIL; UPDATE by UPDATED.
 * A session that ends while its OPEN is unanswered sends CLOSE at once:
 * taken in order, it releases what the OPEN took (a CLOSE for a session
 * that holds nothing is ignored).
 * The agent does not take the worker's word for the account: it opens a
 * maildrop only with a login ticket the auth process made for that
 * account (HMAC under a key the worker never holds, unexpired, each
 * taken once), else OPENED says failed. It builds every path itself
 * from its own mail_root.
 *
 * Untrusted input: both directions are decoded as hostile. Privilege:
 * the pop3 worker and the mailbox agent.
 */
#ifndef POSTERN_POP3_PROTO_H
#define POSTERN_POP3_PROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../auth/auth_ticket.h"
#include "pop3_maildrop.h"

#define POP3_PROTO_USER_MAX 512
#define POP3_PROTO_TICKET_MAX AUTH_TICKET_TEXT_LEN
#define POP3_PROTO_REASON_MAX 200
#define POP3_ENTRIES_PER_PACKET 256
/* Messages opened by one FETCH at most. */
#define POP3_FETCH_MAX 4
/* The largest packet: an UPDATE of POP3_MAILDROP_MAX marks. */
#define POP3_PROTO_MAX (POP3_MAILDROP_MAX + 64)

enum pop3_msg_type {
	POP3_MSG_OPEN = 0x01,
	POP3_MSG_FETCH = 0x02,
	POP3_MSG_UPDATE = 0x03,
	POP3_MSG_CLOSE = 0x04,
	POP3_MSG_ENTRIES = 0x81,
	POP3_MSG_OPENED = 0x82,
	POP3_MSG_MAIL = 0x83,
	POP3_MSG_UPDATED = 0x84,
};

enum pop3_status { POP3_STATUS_OK = 0, POP3_STATUS_IN_USE = 1, POP3_STATUS_GONE = 1,
		   POP3_STATUS_FAILED = 2 };

struct pop3_entry {
	uint64_t size;
	char uid[POP3_UID_MAX + 1];
};

/* One decoded message; only the fields of its type are meaningful. */
struct pop3_msg {
	enum pop3_msg_type type;
	uint32_t sid;
	char user[POP3_PROTO_USER_MAX + 1];    /* OPEN */
	char ticket[POP3_PROTO_TICKET_MAX + 1]; /* OPEN */
	uint32_t index;                        /* FETCH */
	uint8_t fetch_count;                   /* FETCH: count; MAIL: n */
	uint32_t count;                        /* UPDATE (marks), OPENED (entries) */
	const uint8_t *marks;                  /* UPDATE: into the packet buffer */
	uint8_t status;                        /* OPENED, MAIL, UPDATED */
	uint32_t deleted, gone, failed;        /* UPDATED */
	char reason[POP3_PROTO_REASON_MAX + 1]; /* OPENED, UPDATED */
	uint16_t entry_count;                  /* ENTRIES */
	struct pop3_entry entries[POP3_ENTRIES_PER_PACKET];
};

/* Is type a request (worker to agent)? */
static inline bool pop3_msg_is_request(enum pop3_msg_type type)
{
	return (unsigned)type < 0x80;
}

/* Copy text into dst (POP3_PROTO_REASON_MAX + 1 bytes) as a valid reason. */
void pop3_msg_set_reason(char *dst, const char *text);

/* Decode one packet; 0, or -1 with a static *err_r. m->marks points
 * into data. */
int pop3_msg_decode(const unsigned char *data, size_t len, struct pop3_msg *m,
		    const char **err_r);

/* Send m as one packet with the nfds descriptors of fds (MAIL: its n;
 * none for the other types). 0, or -1 with errno. A field out of bounds
 * is our bug (log_panic). */
int pop3_msg_send(int sock, const struct pop3_msg *m, const int *fds, size_t nfds);

/* Receive one message of the expected direction into m, using buf
 * (POP3_PROTO_MAX + 1 bytes, which m->marks may point into). 1 with the
 * descriptors the message carried in fds_r (POP3_FETCH_MAX entries; the
 * caller closes them; as many as m->fetch_count says for MAIL, else
 * none), 0 at end of stream, -1 on a violation (errno EPROTO) or an error
 * (errno kept) with a static *err_r. */
int pop3_msg_recv(int sock, bool requests, struct pop3_msg *m, unsigned char *buf,
		  int *fds_r, const char **err_r);

#endif

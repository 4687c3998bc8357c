/*
 * anvil_proto.h - the messages between the smtp workers and the anvil,
 * the service that counts for all of them (connections open, rates,
 * blocks, greylisting; docs/architecture.md, "Limits across workers").
 * AF_UNIX SOCK_SEQPACKET, one message per packet, each worker keeping one
 * connection to spool_dir/private/anvil.sock with many requests
 * outstanding, told apart by seq (chosen by the worker, echoed in the
 * answer; answers come in the order of the requests):
 *
 *   worker --OPEN--->  anvil   a session starts: count it, its client's
 *          <-OPENED--          open sessions, its connection rates
 *   worker --CLOSE-->  anvil   the session ended (no answer)
 *   worker --RATE--->  anvil   count events (messages, recipients)
 *          <-RATED---
 *   worker --GREY--->  anvil   a greylisting triplet
 *          <-GREYED--
 *
 * Every message is a type byte and that type's fixed list of fields;
 * integers are unsigned big-endian; a string is a u16 length and that
 * many bytes, none below 0x20 and no 0x7f (UTF-8 allowed: addresses);
 * lists are a u8 count and their items. A message must end exactly after
 * its last field and be at most ANVIL_MSG_MAX bytes. Anything else
 * (unknown type, a field out of bounds, bytes left over, a message sent
 * the wrong way) is a protocol violation: the receiver logs it and ends
 * that connection (the anvil then forgets the worker's sessions; a worker
 * answers its waiting requests as if the anvil were away: fail open).
 *
 *   OPEN   0x01  u32 seq, u64 session, u8 flags (ANVIL_OPEN_*), str client
 *                (1..ANVIL_KEY_MAX), u8 n (0..ANVIL_ITEMS_MAX), n x item
 *   CLOSE  0x02  u64 session
 *   RATE   0x03  u32 seq, u8 n (1..ANVIL_ITEMS_MAX), n x item
 *   GREY   0x04  u32 seq, str client (1..ANVIL_KEY_MAX), str triplet
 *                (1..ANVIL_KEY_MAX), u32 delay (1..ANVIL_WINDOW_MAX),
 *                u32 retry_window (1..ANVIL_LONG_MAX), u32 expiry
 *                (1..ANVIL_LONG_MAX), u32 auto_allow (0..ANVIL_COUNT_MAX)
 *   OPENED 0x81  u32 seq, u32 total, u32 client_count, u8 n, n x result
 *   RATED  0x83  u32 seq, u8 n, n x result
 *   GREYED 0x84  u32 seq, u8 outcome (enum anvil_grey_outcome), u32 wait
 *                (0..ANVIL_LONG_MAX), u32 client_passes
 *
 *   item   str key (1..ANVIL_KEY_MAX), u8 metric (enum anvil_metric), u32
 *          cost (0..ANVIL_COUNT_MAX), u32 window (1..ANVIL_WINDOW_MAX), u32
 *          warn, u32 limit (0..ANVIL_COUNT_MAX; 0 = none), u32 block_time
 *          (0..ANVIL_BLOCK_MAX)
 *   result u32 count, u8 flags (ANVIL_RESULT_*), u32 blocked_for
 *          (0..ANVIL_BLOCK_MAX)
 *
 * OPEN: session is unique in the worker; with ANVIL_OPEN_REPLAY the worker
 * tells a new anvil about a session that was open before (nothing is
 * counted but the session, nothing is refused, and no OPENED answers it).
 * total and client_count include the new session. The items are counted as a RATE's are.
 * RATE: the items are all counted, or, if any is refused, none is (a
 * refused MAIL counts for nobody). An item is refused when its key is
 * blocked, or when cost would take its count past limit; with a
 * block_time the key is then blocked for that long. cost 0 only looks.
 * GREY: see anvil_table.h for the outcomes.
 *
 * Untrusted input: each side decodes what it receives as hostile (a
 * compromised smtp worker may send anything). Privilege: unprivileged
 * smtp workers and anvil (`user`).
 */
#ifndef POSTERN_ANVIL_PROTO_H
#define POSTERN_ANVIL_PROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../lib/buf.h"

#define ANVIL_MSG_MAX 16384
#define ANVIL_KEY_MAX 1200
#define ANVIL_ITEMS_MAX 8
#define ANVIL_COUNT_MAX 1000000u
#define ANVIL_WINDOW_MAX 86400u            /* a day */
#define ANVIL_BLOCK_MAX (7u * 86400u)      /* a week */
#define ANVIL_LONG_MAX (3650u * 86400u)    /* ten years */
#define ANVIL_SOCKET_NAME "anvil.sock"

enum anvil_msg_type {
	ANVIL_MSG_OPEN = 0x01,
	ANVIL_MSG_CLOSE = 0x02,
	ANVIL_MSG_RATE = 0x03,
	ANVIL_MSG_GREY = 0x04,
	ANVIL_MSG_OPENED = 0x81,
	ANVIL_MSG_RATED = 0x83,
	ANVIL_MSG_GREYED = 0x84,
};

enum anvil_metric { ANVIL_CONNECTIONS, ANVIL_MESSAGES, ANVIL_RECIPIENTS, ANVIL_METRIC_COUNT };

#define ANVIL_OPEN_REPLAY 0x01u

#define ANVIL_RESULT_WARNED 0x01u      /* this event took the count past warn */
#define ANVIL_RESULT_REFUSED 0x02u     /* refused: blocked, or past limit */
#define ANVIL_RESULT_BLOCKED_NOW 0x04u /* this event blocked the key */
#define ANVIL_RESULT_OVER_NOW 0x08u    /* first refusal since the last accepted event */
#define ANVIL_RESULT_ALL 0x0fu

enum anvil_grey_outcome {
	ANVIL_GREY_NEW,       /* first attempt (or one after the retry window): defer */
	ANVIL_GREY_EARLY,     /* retried before the delay: defer */
	ANVIL_GREY_PASSED,    /* retried after the delay, or passed before: accept */
	ANVIL_GREY_ALLOWED,   /* the client passed often enough: accept, no triplet */
	ANVIL_GREY_OUTCOMES
};

struct anvil_item {
	char key[ANVIL_KEY_MAX + 1];
	enum anvil_metric metric;
	uint32_t cost, window, warn, limit, block_time;
};

struct anvil_result {
	uint32_t count;
	uint8_t flags;
	uint32_t blocked_for;
};

/* One decoded message; only the fields of its type are meaningful. */
struct anvil_msg {
	enum anvil_msg_type type;
	uint32_t seq;
	uint64_t session;                /* OPEN, CLOSE */
	uint8_t flags;                   /* OPEN */
	char client[ANVIL_KEY_MAX + 1];  /* OPEN, GREY */
	size_t n;                        /* OPEN, RATE: items; OPENED, RATED: results */
	struct anvil_item items[ANVIL_ITEMS_MAX];
	struct anvil_result results[ANVIL_ITEMS_MAX];
	uint32_t total, client_count;    /* OPENED */
	char triplet[ANVIL_KEY_MAX + 1]; /* GREY */
	uint32_t delay, retry_window, expiry, auto_allow; /* GREY */
	enum anvil_grey_outcome outcome; /* GREYED */
	uint32_t wait, client_passes;    /* GREYED */
};

void anvil_msg_init(struct anvil_msg *m, enum anvil_msg_type type);

/* Is type a request (worker to anvil)? */
static inline bool anvil_msg_is_request(enum anvil_msg_type type)
{
	return (unsigned)type < 0x80;
}

/* Copy text into a key field (ANVIL_KEY_MAX + 1 bytes): control
 * characters become '?', cut at ANVIL_KEY_MAX bytes. */
void anvil_key_set(char *key, const char *text);

/* Encode m into out (emptied first). A field out of its bounds is our
 * bug (log_panic): keys go through anvil_key_set. */
void anvil_msg_encode(const struct anvil_msg *m, buf_t *out);

/* Decode one packet into *m. Returns 0, or -1 with *err_r pointing to a
 * static description of the first violation. */
int anvil_msg_decode(const unsigned char *data, size_t len, struct anvil_msg *m,
		     const char **err_r);

/* Send m as one packet (MSG_NOSIGNAL): 0, or -1 with errno (EAGAIN on a
 * full non-blocking socket, EPIPE when the peer is gone). */
int anvil_send(int sock, const struct anvil_msg *m);

/* Receive one message of the expected direction. 1 with *m filled, 0 at
 * the end of the stream, -1 on a violation (errno EPROTO) or an I/O
 * error (errno kept; EAGAIN when nothing waits) with *err_r set. */
int anvil_recv(int sock, bool requests, struct anvil_msg *m, const char **err_r);

/* Packets a non-blocking socket had no room for, kept in order until it
 * is writable again (both ends use one: the workers for requests, the
 * anvil for answers). Zero-initialised is empty; at most max packets. */
struct anvil_packet;
struct anvil_outbox {
	struct anvil_packet *head, *tail;
	size_t count, max;
};

enum anvil_out {
	ANVIL_OUT_SENT,   /* nothing waits any more */
	ANVIL_OUT_QUEUED, /* something waits: watch the socket for writing */
	ANVIL_OUT_FULL,   /* max packets wait already; m was not queued */
	ANVIL_OUT_ERROR,  /* the connection broke (errno says how) */
};

/* Send m at once when nothing waits and the socket takes it, else queue
 * it behind what waits. */
enum anvil_out anvil_outbox_push(struct anvil_outbox *o, int sock, const struct anvil_msg *m);

/* Send what waits, in order, until the socket is full: SENT, QUEUED or
 * ERROR. */
enum anvil_out anvil_outbox_flush(struct anvil_outbox *o, int sock);

/* Drop what waits. */
void anvil_outbox_clear(struct anvil_outbox *o);

/* spool_dir/private/anvil.sock, malloc'ed. */
char *anvil_socket_path(const char *spool_dir);

#endif

/*
 * auth_proto.h - the messages between the network workers (smtp, pop3)
 * and the auth process on spool_dir/private/auth.sock (AF_UNIX
 * SOCK_SEQPACKET, one message per packet, big-endian, lib/wire.h).
 *
 *   CHECK  (worker -> auth)  u8 type, u32 seq, u8 service,
 *                            str client_ip, str user, str password,
 *                            str session_id
 *   RESULT (auth -> worker)  u8 type, u32 seq, u8 verdict,
 *                            str user (canonical; "" unless OK), str why,
 *                            str ticket ("" or, only with OK, exactly
 *                            AUTH_TICKET_TEXT_LEN lower-case hex digits:
 *                            the login ticket of auth_ticket.h, which the
 *                            auth process gives for service POP3 only)
 *
 * str = u16 length + bytes, no NUL inside. Each field has its own bound
 * (below); a packet longer than AUTH_MSG_MAX, a bound passed, a NUL, an
 * unknown type, service or verdict, or bytes left over is a violation:
 * the receiver ends the connection (fail closed).
 *
 * Untrusted input: either side's packets (a compromised smtp worker may
 * send anything to the auth process). The password travels only in
 * CHECK; both sides wipe their copies.
 */
#ifndef POSTERN_AUTH_PROTO_H
#define POSTERN_AUTH_PROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../lib/buf.h"
#include "auth_client.h"
#include "auth_ticket.h"

#define AUTH_MSG_CHECK 1
#define AUTH_MSG_RESULT 2

#define AUTH_IP_MAX 63
#define AUTH_USER_MAX 320       /* an address: RFC 5321 local@domain at most */
#define AUTH_PASSWORD_MAX 1024  /* longer passwords are refused before hashing */
#define AUTH_SESSION_MAX 63
#define AUTH_WHY_MAX 127
#define AUTH_MSG_MAX 2048

#define AUTH_SOCKET_NAME "auth.sock"

/* One decoded message; strings NUL-terminated copies. Wipe with
 * auth_msg_wipe (the password). */
struct auth_msg {
	uint8_t type;
	uint32_t seq;
	uint8_t service;  /* CHECK: enum auth_service */
	uint8_t verdict;  /* RESULT: enum auth_verdict */
	char client_ip[AUTH_IP_MAX + 1];
	char user[AUTH_USER_MAX + 1];
	char password[AUTH_PASSWORD_MAX + 1];
	char session_id[AUTH_SESSION_MAX + 1];
	char why[AUTH_WHY_MAX + 1];
	char ticket[AUTH_TICKET_TEXT_LEN + 1]; /* RESULT */
};

/* Encode m into out (reset first). Fields longer than their bound are the
 * caller's bug (callers check): log_panic. */
void auth_msg_encode(const struct auth_msg *m, buf_t *out);
/* Decode one packet; false with *err_r (static text) on any violation.
 * requests: true on the auth process's side (only CHECK is accepted),
 * false on the worker's (only RESULT). */
bool auth_msg_decode(const void *data, size_t len, bool requests, struct auth_msg *m,
		     const char **err_r);
/* Clear the password (and everything else) of m, not optimised away. */
void auth_msg_wipe(struct auth_msg *m);

/* spool_dir/private/auth.sock (malloc'ed). */
char *auth_socket_path(const char *spool_dir);

#endif

/*
 * auth_ticket.h - login tickets: the auth process's proof, checked by the
 * pop3 role's mailbox agent, that it has just accepted a password for an
 * account, which the pop3 worker (the process that talks to the network)
 * carries but cannot forge.
 *
 * A ticket is HMAC-SHA256 (OpenSSL) under a 32-byte key the supervisor
 * draws with getrandom(2) at its start and gives only to the auth process
 * and to the mailbox agents (the pop3 worker wipes its inherited copy
 * before it reads anything from the network). It binds the service, the
 * canonical account name, an expiry AUTH_TICKET_LIFETIME seconds after
 * the login (CLOCK_MONOTONIC seconds: both processes are on one machine)
 * and a random nonce (which lets the agent take each ticket once):
 *
 *   MAC over  "postern login ticket 1" NUL, u8 service, u16 account
 *             length, account, u64 expiry, nonce (16 bytes)
 *   text  =   lower-case hex of  u64 expiry, nonce, MAC
 *             (AUTH_TICKET_TEXT_LEN characters)
 *
 * Integers big-endian. The key changes only when the supervisor starts
 * again: a reload keeps it (the auth process outlives reloads).
 *
 * Untrusted input: the ticket text auth_ticket_check is given (the pop3
 * worker's). Privilege: the auth process (`user`) makes tickets, the
 * mailbox agent (mail_owner) checks them, the supervisor (root) makes
 * the key.
 */
#ifndef POSTERN_AUTH_TICKET_H
#define POSTERN_AUTH_TICKET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "auth_client.h"

#define AUTH_TICKET_KEY_LEN 32
#define AUTH_TICKET_NONCE_LEN 16
#define AUTH_TICKET_MAC_LEN 32
#define AUTH_TICKET_TEXT_LEN (2 * (8 + AUTH_TICKET_NONCE_LEN + AUTH_TICKET_MAC_LEN))
/* Seconds from the login to the OPEN that uses its ticket, at most. */
#define AUTH_TICKET_LIFETIME 60

enum auth_ticket_status {
	AUTH_TICKET_OK,
	AUTH_TICKET_MISSING,   /* "" */
	AUTH_TICKET_MALFORMED, /* not AUTH_TICKET_TEXT_LEN lower-case hex digits */
	AUTH_TICKET_FORGED,    /* the MAC is not ours for this service and account */
	AUTH_TICKET_EXPIRED,   /* expired, or dated beyond a fresh ticket's expiry */
};

/* A new random key into key_r; 0, or -1 with errno. */
int auth_ticket_key_new(unsigned char key_r[AUTH_TICKET_KEY_LEN]);

/* Seconds of CLOCK_MONOTONIC: the clock of the expiries. */
uint64_t auth_ticket_now(void);

/* A ticket for account at service, made at now, into text_r
 * (AUTH_TICKET_TEXT_LEN + 1 bytes, NUL-terminated); false (text_r "")
 * if OpenSSL or getrandom fails. */
bool auth_ticket_make(const unsigned char key[AUTH_TICKET_KEY_LEN], enum auth_service service,
		      const char *account, uint64_t now, char *text_r);

/* Is text a ticket of account at service, unexpired at now? In constant
 * time over the MAC. On AUTH_TICKET_OK the nonce is in nonce_r (may be
 * NULL), for a caller that takes each ticket once. */
enum auth_ticket_status auth_ticket_check(const unsigned char key[AUTH_TICKET_KEY_LEN],
					  enum auth_service service, const char *account,
					  const char *text, uint64_t now,
					  unsigned char nonce_r[AUTH_TICKET_NONCE_LEN]);

/* Is text "" or the right length of lower-case hex digits (the decoders'
 * syntax check)? */
bool auth_ticket_syntax_ok(const char *text);

/* A short English phrase for status, for the log. */
const char *auth_ticket_status_text(enum auth_ticket_status status);

#endif

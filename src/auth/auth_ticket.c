/*
 * auth_ticket.c - making and checking login tickets (see auth_ticket.h)
 * with OpenSSL's HMAC-SHA256 and getrandom(2).
 *
 * RFCs: 2104 (HMAC, through OpenSSL). Untrusted input: the ticket text
 * given to auth_ticket_check (the pop3 worker's), and the account name.
 * Privilege: the auth process (`user`), the mailbox agent (mail_owner),
 * the supervisor (root, the key only).
 */
#include "auth_ticket.h"

#include <errno.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>


#define DOMAIN_TAG "postern login ticket 1"
#define BODY_LEN (8 + AUTH_TICKET_NONCE_LEN) /* expiry, nonce */

static int random_bytes(unsigned char *out, size_t n)
{
	size_t got = 0;
	while (got < n) {
		ssize_t r = getrandom(out + got, n - got, 0);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return -1;
		got += (size_t)r;
	}
	return 0;
}

int auth_ticket_key_new(unsigned char key_r[AUTH_TICKET_KEY_LEN])
{
	return random_bytes(key_r, AUTH_TICKET_KEY_LEN);
}

uint64_t auth_ticket_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec;
}

static void put_u64(unsigned char *p, uint64_t v)
{
	for (int i = 7; i >= 0; i--, v >>= 8)
		p[i] = (unsigned char)v;
}

static uint64_t get_u64(const unsigned char *p)
{
	uint64_t v = 0;
	for (int i = 0; i < 8; i++)
		v = v << 8 | p[i];
	return v;
}

/* Longest account framed (auth names at most 320 bytes, OPEN 512). */
#define ACCOUNT_MAX 1024

/* The MAC of service, account and body (expiry, nonce); false if
 * OpenSSL fails or the account is too long. */
static bool compute_mac(const unsigned char *key, enum auth_service service,
			const char *account, const unsigned char *body,
			unsigned char mac_r[AUTH_TICKET_MAC_LEN])
{
	unsigned char input[sizeof(DOMAIN_TAG) + 3 + ACCOUNT_MAX + BODY_LEN];
	size_t alen = strlen(account), n = 0;
	if (alen > ACCOUNT_MAX)
		return false;
	memcpy(input, DOMAIN_TAG, sizeof(DOMAIN_TAG)); /* with its NUL */
	n += sizeof(DOMAIN_TAG);
	input[n++] = (unsigned char)service;
	input[n++] = (unsigned char)(alen >> 8);
	input[n++] = (unsigned char)alen;
	memcpy(input + n, account, alen);
	n += alen;
	memcpy(input + n, body, BODY_LEN);
	n += BODY_LEN;
	unsigned int len = 0;
	bool ok = HMAC(EVP_sha256(), key, AUTH_TICKET_KEY_LEN, input, n, mac_r, &len) != NULL &&
		  len == AUTH_TICKET_MAC_LEN;
	explicit_bzero(input, n);
	return ok;
}

static const char hex_digits[] = "0123456789abcdef";

static int hex_value(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

bool auth_ticket_syntax_ok(const char *text)
{
	size_t n = strnlen(text, AUTH_TICKET_TEXT_LEN + 1);
	if (n == 0)
		return true;
	if (n != AUTH_TICKET_TEXT_LEN)
		return false;
	for (size_t i = 0; i < n; i++)
		if (hex_value(text[i]) < 0)
			return false;
	return true;
}

bool auth_ticket_make(const unsigned char key[AUTH_TICKET_KEY_LEN], enum auth_service service,
		      const char *account, uint64_t now, char *text_r)
{
	unsigned char raw[BODY_LEN + AUTH_TICKET_MAC_LEN];
	text_r[0] = '\0';
	put_u64(raw, now + AUTH_TICKET_LIFETIME);
	if (random_bytes(raw + 8, AUTH_TICKET_NONCE_LEN) < 0 ||
	    !compute_mac(key, service, account, raw, raw + BODY_LEN))
		return false;
	for (size_t i = 0; i < sizeof(raw); i++) {
		text_r[2 * i] = hex_digits[raw[i] >> 4];
		text_r[2 * i + 1] = hex_digits[raw[i] & 15];
	}
	text_r[AUTH_TICKET_TEXT_LEN] = '\0';
	return true;
}

enum auth_ticket_status auth_ticket_check(const unsigned char key[AUTH_TICKET_KEY_LEN],
					  enum auth_service service, const char *account,
					  const char *text, uint64_t now,
					  unsigned char nonce_r[AUTH_TICKET_NONCE_LEN])
{
	unsigned char raw[BODY_LEN + AUTH_TICKET_MAC_LEN], mac[AUTH_TICKET_MAC_LEN];
	if (text[0] == '\0')
		return AUTH_TICKET_MISSING;
	if (!auth_ticket_syntax_ok(text))
		return AUTH_TICKET_MALFORMED;
	for (size_t i = 0; i < sizeof(raw); i++)
		raw[i] = (unsigned char)(hex_value(text[2 * i]) << 4 | hex_value(text[2 * i + 1]));
	if (!compute_mac(key, service, account, raw, mac))
		return AUTH_TICKET_FORGED;
	if (CRYPTO_memcmp(mac, raw + BODY_LEN, AUTH_TICKET_MAC_LEN) != 0)
		return AUTH_TICKET_FORGED;
	uint64_t expiry = get_u64(raw);
	/* a ticket expires at the end of its second; one dated beyond a
	 * fresh ticket's expiry was not made on this clock */
	if (expiry < now || expiry > now + AUTH_TICKET_LIFETIME)
		return AUTH_TICKET_EXPIRED;
	if (nonce_r != NULL)
		memcpy(nonce_r, raw + 8, AUTH_TICKET_NONCE_LEN);
	return AUTH_TICKET_OK;
}

const char *auth_ticket_status_text(enum auth_ticket_status status)
{
	switch (status) {
	case AUTH_TICKET_OK:
		return "valid";
	case AUTH_TICKET_MISSING:
		return "no login ticket";
	case AUTH_TICKET_MALFORMED:
		return "a malformed login ticket";
	case AUTH_TICKET_FORGED:
		return "a login ticket not made for this account";
	case AUTH_TICKET_EXPIRED:
		return "an expired login ticket";
	}
	return "an unknown ticket status";
}

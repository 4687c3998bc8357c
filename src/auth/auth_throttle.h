/*
 * auth_throttle.h - failed logins counted per client address (an IPv6
 * client by its /64) and per user: each failure makes the next answer
 * wait longer (a delay doubling from delay_ms up to delay_max_ms), and
 * past a number of failures the client (or the user) is banned for
 * ban_ms: every login is then refused
 * as AUTH_THROTTLED without looking at the password. Failures are
 * forgotten ban_ms after the last one; a successful login forgets the
 * client's and the user's.
 *
 * The counts live behind a small store interface (struct
 * auth_throttle_store): memory now (auth_throttle_store_memory), Redis
 * later for several nodes behind one MX. The store is called from the
 * auth process's pool threads, where blocking is allowed (a Redis
 * backend keeps one blocking connection per thread), so its operations
 * are synchronous and must be thread-safe.
 *
 * Untrusted input: the keys (a client address, a user name as typed),
 * bounded by the auth protocol. Privilege: the auth process.
 */
#ifndef POSTERN_AUTH_THROTTLE_H
#define POSTERN_AUTH_THROTTLE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct auth_throttle_record {
	uint32_t failures;
	uint64_t last_failure_ms;  /* wall clock */
	uint64_t banned_until_ms;  /* 0: not banned */
};

struct auth_throttle_store;
struct auth_throttle_store_ops {
	const char *name;
	/* False when key has no record. */
	bool (*get)(struct auth_throttle_store *s, const char *key,
		    struct auth_throttle_record *r);
	/* Create or replace; expires_ms: when the record may be dropped. */
	void (*put)(struct auth_throttle_store *s, const char *key,
		    const struct auth_throttle_record *r, uint64_t expires_ms);
	void (*del)(struct auth_throttle_store *s, const char *key);
	/* Drop what expired (memory stores; Redis expires by itself). */
	void (*sweep)(struct auth_throttle_store *s, uint64_t now_ms);
	void (*free)(struct auth_throttle_store *s);
};
struct auth_throttle_store {
	const struct auth_throttle_store_ops *ops;
};

/* A store in this process's memory, at most max_records records (new
 * keys are not counted beyond that, logged once a minute). */
struct auth_throttle_store *auth_throttle_store_memory(size_t max_records);

struct auth_throttle_settings {
	uint64_t delay_ms;          /* the first failure's delay; 0 = none */
	uint64_t delay_max_ms;
	uint32_t client_ban_failures; /* 0 = never banned */
	uint32_t user_ban_failures;   /* 0 = never banned */
	uint64_t ban_ms;
};

struct auth_throttle;
/* Takes the store over. */
struct auth_throttle *auth_throttle_new(struct auth_throttle_store *store);
void auth_throttle_free(struct auth_throttle **t);
void auth_throttle_set(struct auth_throttle *t, const struct auth_throttle_settings *set);

/* Is the client or the user (NULL: not a known user) banned now? Then
 * true, with which ("client" or "user") for the log. */
bool auth_throttle_banned(struct auth_throttle *t, const char *client, const char *user,
			  uint64_t now_ms, const char **which_r);
/* A failed login: counted for the client and, when known, the user.
 * Returns how long the answer waits; *banned_r says whether a ban
 * started with it. */
uint64_t auth_throttle_failed(struct auth_throttle *t, const char *client, const char *user,
			      uint64_t now_ms, bool *banned_r);
/* A successful login: the user's failures are forgotten. The client's
 * are not (they expire): a login to an account of one's own must not
 * clear the count of guesses at other accounts. */
void auth_throttle_succeeded(struct auth_throttle *t, const char *user);
void auth_throttle_sweep(struct auth_throttle *t, uint64_t now_ms);

#endif

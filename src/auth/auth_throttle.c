/*
 * auth_throttle.c - delays and bans after failed logins, over a store
 * (see auth_throttle.h); the memory store. Untrusted input: keys.
 * Privilege: the auth process, called from its pool threads.
 */
#include "auth_throttle.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../lib/hashmap.h"
#include "../lib/log.h"
#include "../lib/strutil.h"
#include "../lib/xalloc.h"

#define KEY_MAX 400

struct auth_throttle {
	struct auth_throttle_store *store;
	pthread_mutex_t lock; /* the settings, and each read-modify-write */
	struct auth_throttle_settings set;
};

/* ---- the memory store ---------------------------------------------------------- */

struct mem_record {
	struct auth_throttle_record r;
	uint64_t expires_ms;
};

struct mem_store {
	struct auth_throttle_store base;
	pthread_mutex_t lock;
	hashmap_t records; /* key -> struct mem_record */
	size_t max_records;
	time_t full_warned;
};

static bool mem_get(struct auth_throttle_store *s, const char *key,
		    struct auth_throttle_record *r)
{
	struct mem_store *m = (struct mem_store *)s;
	pthread_mutex_lock(&m->lock);
	struct mem_record *rec = hashmap_get(&m->records, key, NULL);
	if (rec != NULL)
		*r = rec->r;
	pthread_mutex_unlock(&m->lock);
	return rec != NULL;
}

static void mem_put(struct auth_throttle_store *s, const char *key,
		    const struct auth_throttle_record *r, uint64_t expires_ms)
{
	struct mem_store *m = (struct mem_store *)s;
	pthread_mutex_lock(&m->lock);
	struct mem_record *rec = hashmap_get(&m->records, key, NULL);
	if (rec == NULL && m->records.count >= m->max_records) {
		time_t now = time(NULL);
		if (now - m->full_warned >= 60) {
			log_warn("auth: %zu failing clients and users counted already: new ones "
				 "are not throttled until old records expire", m->records.count);
			m->full_warned = now;
		}
	} else {
		if (rec == NULL) {
			rec = xcalloc(1, sizeof(*rec));
			hashmap_put(&m->records, key, rec);
		}
		rec->r = *r;
		rec->expires_ms = expires_ms;
	}
	pthread_mutex_unlock(&m->lock);
}

static void mem_del(struct auth_throttle_store *s, const char *key)
{
	struct mem_store *m = (struct mem_store *)s;
	pthread_mutex_lock(&m->lock);
	free(hashmap_remove(&m->records, key));
	pthread_mutex_unlock(&m->lock);
}

static void mem_sweep(struct auth_throttle_store *s, uint64_t now_ms)
{
	struct mem_store *m = (struct mem_store *)s;
	strlist_t expired = { 0 };
	size_t pos = 0;
	const char *key;
	void *value;
	pthread_mutex_lock(&m->lock);
	while (hashmap_next(&m->records, &pos, &key, &value))
		if (((struct mem_record *)value)->expires_ms <= now_ms)
			strlist_add(&expired, key);
	for (size_t i = 0; i < expired.count; i++)
		free(hashmap_remove(&m->records, expired.items[i]));
	pthread_mutex_unlock(&m->lock);
	strlist_free(&expired);
}

static void mem_free(struct auth_throttle_store *s)
{
	struct mem_store *m = (struct mem_store *)s;
	hashmap_free(&m->records, free);
	pthread_mutex_destroy(&m->lock);
	free(m);
}

static const struct auth_throttle_store_ops mem_ops = {
	"memory", mem_get, mem_put, mem_del, mem_sweep, mem_free,
};

struct auth_throttle_store *auth_throttle_store_memory(size_t max_records)
{
	struct mem_store *m = xcalloc(1, sizeof(*m));
	m->base.ops = &mem_ops;
	m->max_records = max_records;
	pthread_mutex_init(&m->lock, NULL);
	return &m->base;
}

/* ---- the policy ------------------------------------------------------------------ */

struct auth_throttle *auth_throttle_new(struct auth_throttle_store *store)
{
	struct auth_throttle *t = xcalloc(1, sizeof(*t));
	t->store = store;
	pthread_mutex_init(&t->lock, NULL);
	return t;
}

void auth_throttle_free(struct auth_throttle **tp)
{
	struct auth_throttle *t = *tp;
	if (t == NULL)
		return;
	t->store->ops->free(t->store);
	pthread_mutex_destroy(&t->lock);
	free(t);
	*tp = NULL;
}

void auth_throttle_set(struct auth_throttle *t, const struct auth_throttle_settings *set)
{
	pthread_mutex_lock(&t->lock);
	t->set = *set;
	pthread_mutex_unlock(&t->lock);
}

static void make_key(char *key, const char *kind, const char *name)
{
	snprintf(key, KEY_MAX, "%s:%s", kind, name);
}

/* Does a6 carry an IPv4 client's address in its last 32 bits, behind a
 * prefix that many clients share: IPv4-mapped and IPv4-compatible
 * (RFC 4291), a translator's (RFC 6052 64:ff9b::/96, RFC 8215
 * 64:ff9b:1::/48), Teredo (RFC 4380 2001::/32)? */
static bool embeds_ipv4(const struct in6_addr *a6)
{
	const uint8_t *b = a6->s6_addr;
	static const uint8_t zeros[12] = { 0 };
	if (IN6_IS_ADDR_V4MAPPED(a6) || memcmp(b, zeros, 12) == 0)
		return true;
	if (b[0] == 0x00 && b[1] == 0x64 && b[2] == 0xff && b[3] == 0x9b &&
	    ((b[4] == 0 && b[5] == 0) || (b[4] == 0 && b[5] == 1)))
		return true; /* 64:ff9b::/96 (the rest of the /64 is zero) and 64:ff9b:1::/48 */
	return b[0] == 0x20 && b[1] == 0x01 && b[2] == 0 && b[3] == 0;
}

/* A client's key: its IPv4 address, or the /64 of its IPv6 address (one
 * site's prefix: a client that changes addresses inside it stays one),
 * unless that /64 is shared by the IPv4 clients a translator or a tunnel
 * brings (embeds_ipv4): then the whole address. */
static void client_key(char *key, const char *client)
{
	struct in6_addr a6;
	char text[INET6_ADDRSTRLEN];
	if (strchr(client, ':') != NULL && inet_pton(AF_INET6, client, &a6) == 1 &&
	    !embeds_ipv4(&a6)) {
		memset(a6.s6_addr + 8, 0, 8);
		if (inet_ntop(AF_INET6, &a6, text, sizeof(text)) != NULL) {
			snprintf(key, KEY_MAX, "c:%s/64", text);
			return;
		}
	}
	make_key(key, "c", client);
}

/* The record of key as it stands at now (failures forgotten ban_ms after
 * the last, a ban over once its time passed). */
static struct auth_throttle_record current(struct auth_throttle *t, const char *key,
					   uint64_t now_ms)
{
	struct auth_throttle_record r = { 0, 0, 0 };
	if (!t->store->ops->get(t->store, key, &r))
		return r;
	if (r.banned_until_ms != 0 && r.banned_until_ms <= now_ms) {
		r.banned_until_ms = 0;
		r.failures = 0;
	}
	if (r.banned_until_ms == 0 && r.last_failure_ms + t->set.ban_ms <= now_ms)
		r.failures = 0;
	return r;
}

bool auth_throttle_banned(struct auth_throttle *t, const char *client, const char *user,
			  uint64_t now_ms, const char **which_r)
{
	char key[KEY_MAX];
	bool banned = false;
	pthread_mutex_lock(&t->lock);
	client_key(key, client);
	if (current(t, key, now_ms).banned_until_ms > now_ms) {
		*which_r = "client";
		banned = true;
	} else if (user != NULL) {
		make_key(key, "u", user);
		if (current(t, key, now_ms).banned_until_ms > now_ms) {
			*which_r = "user";
			banned = true;
		}
	}
	pthread_mutex_unlock(&t->lock);
	return banned;
}

/* One more failure for key; its count after. */
static uint32_t count_failure(struct auth_throttle *t, const char *key, uint32_t ban_at,
			      uint64_t now_ms, bool *banned_r)
{
	struct auth_throttle_record r = current(t, key, now_ms);
	if (r.failures < UINT32_MAX)
		r.failures++;
	r.last_failure_ms = now_ms;
	if (ban_at != 0 && r.failures >= ban_at && r.banned_until_ms == 0) {
		r.banned_until_ms = now_ms + t->set.ban_ms;
		*banned_r = true;
	}
	uint64_t expires = (r.banned_until_ms > now_ms ? r.banned_until_ms : now_ms) + t->set.ban_ms;
	t->store->ops->put(t->store, key, &r, expires);
	return r.failures;
}

uint64_t auth_throttle_failed(struct auth_throttle *t, const char *client, const char *user,
			      uint64_t now_ms, bool *banned_r)
{
	char key[KEY_MAX];
	*banned_r = false;
	pthread_mutex_lock(&t->lock);
	client_key(key, client);
	uint32_t n = count_failure(t, key, t->set.client_ban_failures, now_ms, banned_r);
	if (user != NULL) {
		make_key(key, "u", user);
		uint32_t u = count_failure(t, key, t->set.user_ban_failures, now_ms, banned_r);
		n = u > n ? u : n;
	}
	uint64_t delay = t->set.delay_ms;
	for (uint32_t i = 1; i < n && delay < t->set.delay_max_ms; i++)
		delay *= 2;
	if (delay > t->set.delay_max_ms)
		delay = t->set.delay_max_ms;
	pthread_mutex_unlock(&t->lock);
	return delay;
}

void auth_throttle_succeeded(struct auth_throttle *t, const char *user)
{
	char key[KEY_MAX];
	if (user == NULL)
		return;
	pthread_mutex_lock(&t->lock);
	make_key(key, "u", user);
	t->store->ops->del(t->store, key);
	pthread_mutex_unlock(&t->lock);
}

void auth_throttle_sweep(struct auth_throttle *t, uint64_t now_ms)
{
	t->store->ops->sweep(t->store, now_ms);
}

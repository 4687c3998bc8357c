/*
 * anvil_table.c - the anvil's counting (see anvil_table.h): open sessions
 * per worker and per client network, sliding-window rates with their
 * warn and block levels, the block map and greylisting over the store.
 *
 * Untrusted input: keys from the workers' messages (bounded and checked
 * by anvil_proto.c). Privilege: the anvil (`user`).
 */
#include "anvil_table.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../lib/hashmap.h"
#include "../lib/log.h"
#include "../lib/strutil.h"
#include "../lib/xalloc.h"

/* Say that the counter table is full at most this often. */
#define FULL_WARN_MS 60000

struct owner {
	hashmap_t sessions; /* "session" -> char *client */
};

struct counter {
	uint64_t window_ms;
	uint64_t start_ms;       /* of the current window */
	uint64_t cur, prev;      /* events in the current and the previous window */
	uint64_t warned_until_ms;
	uint64_t last_ms;        /* the last event, for the sweep */
	bool over;               /* the last event was refused for the limit */
};

struct anvil_table {
	struct anvil_store *store;
	hashmap_t owners;   /* "owner" -> struct owner */
	hashmap_t clients;  /* client key -> size_t open sessions */
	size_t total;
	hashmap_t counters; /* "metric:key" -> struct counter */
	uint64_t full_warned_ms;
};

struct anvil_table *anvil_table_new(struct anvil_store *store)
{
	struct anvil_table *t = xcalloc(1, sizeof(*t));
	t->store = store;
	return t;
}

static void owner_free(void *p)
{
	struct owner *o = p;
	hashmap_free(&o->sessions, free);
	free(o);
}

void anvil_table_free(struct anvil_table **tp)
{
	struct anvil_table *t = *tp;
	if (t == NULL)
		return;
	hashmap_free(&t->owners, owner_free);
	hashmap_free(&t->clients, free);
	hashmap_free(&t->counters, free);
	anvil_store_free(&t->store);
	free(t);
	*tp = NULL;
}

size_t anvil_table_sessions(const struct anvil_table *t)
{
	return t->total;
}

size_t anvil_table_counters(const struct anvil_table *t)
{
	return t->counters.count;
}

const char *anvil_table_store_name(const struct anvil_table *t)
{
	return t->store->name;
}

static uint32_t sat32(uint64_t v)
{
	return v > UINT32_MAX ? UINT32_MAX : (uint32_t)v;
}

/* ---- the block map ------------------------------------------------------------ */

/* Seconds left of key's block, 0 if it is not blocked. */
static uint32_t block_left(struct anvil_table *t, const char *key, uint64_t now_ms)
{
	unsigned char rec[ANVIL_RECORD_MAX];
	size_t len;
	if (t->store->ops->get(t->store, ANVIL_DB_BLOCKS, key, rec, &len) != 1 || len < 8)
		return 0;
	uint64_t until = anvil_get_u64(rec);
	if (until <= now_ms)
		return 0;
	uint64_t left = (until - now_ms + 999) / 1000;
	return left > ANVIL_BLOCK_MAX ? ANVIL_BLOCK_MAX : (uint32_t)left;
}

static void block(struct anvil_table *t, const char *key, uint32_t seconds, uint64_t now_ms)
{
	unsigned char rec[8];
	anvil_put_u64(rec, now_ms + (uint64_t)seconds * 1000u);
	t->store->ops->put(t->store, ANVIL_DB_BLOCKS, key, rec, sizeof(rec));
}

/* ---- sessions ------------------------------------------------------------------ */

static void id_text(char *buf, size_t len, uint64_t id)
{
	snprintf(buf, len, "%" PRIu64, id);
}

static size_t *client_slot(struct anvil_table *t, const char *client)
{
	size_t *n = hashmap_get(&t->clients, client, NULL);
	if (n == NULL) {
		n = xcalloc(1, sizeof(*n));
		hashmap_put(&t->clients, client, n);
	}
	return n;
}

static void client_release(struct anvil_table *t, const char *client)
{
	size_t *n = hashmap_get(&t->clients, client, NULL);
	if (n == NULL)
		log_panic("anvil: session of unknown client %s", client);
	if (--*n == 0)
		free(hashmap_remove(&t->clients, client));
	t->total--;
}

void anvil_table_open(struct anvil_table *t, uint64_t owner, const struct anvil_msg *req,
		      uint64_t now_ms, struct anvil_msg *answer)
{
	char okey[24], skey[24];
	id_text(okey, sizeof(okey), owner);
	id_text(skey, sizeof(skey), req->session);
	struct owner *o = hashmap_get(&t->owners, okey, NULL);
	if (o == NULL) {
		o = xcalloc(1, sizeof(*o));
		hashmap_put(&t->owners, okey, o);
	}
	if (!hashmap_contains(&o->sessions, skey)) {
		hashmap_put(&o->sessions, skey, xstrdup(req->client));
		(*client_slot(t, req->client))++;
		t->total++;
	}
	answer->seq = req->seq;
	answer->total = sat32(t->total);
	const size_t *open = hashmap_get(&t->clients, req->client, NULL);
	answer->client_count = sat32(open != NULL ? *open : 0);
	answer->n = 0;
	if (!(req->flags & ANVIL_OPEN_REPLAY) && req->n > 0) {
		anvil_table_rate(t, req->items, req->n, now_ms, answer->results);
		answer->n = req->n;
	}
}

void anvil_table_close(struct anvil_table *t, uint64_t owner, uint64_t session)
{
	char okey[24], skey[24];
	id_text(okey, sizeof(okey), owner);
	id_text(skey, sizeof(skey), session);
	struct owner *o = hashmap_get(&t->owners, okey, NULL);
	char *client = o != NULL ? hashmap_remove(&o->sessions, skey) : NULL;
	if (client == NULL)
		return; /* never opened (or the worker said it twice) */
	client_release(t, client);
	free(client);
}

size_t anvil_table_drop_owner(struct anvil_table *t, uint64_t owner)
{
	char okey[24];
	id_text(okey, sizeof(okey), owner);
	struct owner *o = hashmap_remove(&t->owners, okey);
	if (o == NULL)
		return 0;
	size_t pos = 0, n = 0;
	const char *key;
	void *value;
	while (hashmap_next(&o->sessions, &pos, &key, &value)) {
		client_release(t, value);
		n++;
	}
	owner_free(o);
	return n;
}

/* ---- rates ----------------------------------------------------------------------- */

/* The counter of an item, made if need be; NULL when the table is full. */
static struct counter *counter_of(struct anvil_table *t, const struct anvil_item *it,
				  uint64_t now_ms)
{
	char key[ANVIL_KEY_MAX + 8];
	snprintf(key, sizeof(key), "%d:%s", (int)it->metric, it->key);
	struct counter *c = hashmap_get(&t->counters, key, NULL);
	if (c != NULL)
		return c;
	if (t->counters.count >= ANVIL_COUNTERS_MAX) {
		if (now_ms - t->full_warned_ms >= FULL_WARN_MS || t->full_warned_ms == 0) {
			log_warn("anvil: %d rate counters in use: new keys are not limited until "
				 "old ones expire", ANVIL_COUNTERS_MAX);
			t->full_warned_ms = now_ms;
		}
		return NULL;
	}
	c = xcalloc(1, sizeof(*c));
	c->window_ms = (uint64_t)it->window * 1000u;
	c->start_ms = now_ms;
	hashmap_put(&t->counters, key, c);
	return c;
}

/* Move c's windows on to now. */
static void counter_advance(struct counter *c, uint64_t window_ms, uint64_t now_ms)
{
	if (c->window_ms != window_ms || now_ms < c->start_ms) {
		/* A new window length (a reload), or the clock went back. */
		c->window_ms = window_ms;
		c->cur = c->prev = 0;
		c->start_ms = now_ms;
		return;
	}
	uint64_t elapsed = now_ms - c->start_ms;
	if (elapsed >= 2 * window_ms) {
		c->cur = c->prev = 0;
		c->start_ms = now_ms;
	} else if (elapsed >= window_ms) {
		c->prev = c->cur;
		c->cur = 0;
		c->start_ms += window_ms;
	}
}

/* Events in the window that ends now: the current window's, and the
 * previous one's in proportion to how much of it is still inside. */
static uint64_t counter_value(const struct counter *c, uint64_t now_ms)
{
	uint64_t into = now_ms - c->start_ms;
	uint64_t overlap = c->window_ms > into ? c->window_ms - into : 0;
	return c->cur + c->prev * overlap / c->window_ms;
}

struct pending_item {
	struct counter *c;
	uint64_t value;
	uint32_t blocked_for;
	bool refused;
};

void anvil_table_rate(struct anvil_table *t, const struct anvil_item *items, size_t n,
		      uint64_t now_ms, struct anvil_result *results)
{
	struct pending_item p[ANVIL_ITEMS_MAX];
	bool any_refused = false;
	if (n > ANVIL_ITEMS_MAX)
		log_panic("anvil: %zu rate items", n);
	for (size_t i = 0; i < n; i++) {
		const struct anvil_item *it = &items[i];
		p[i].blocked_for = block_left(t, it->key, now_ms);
		p[i].c = counter_of(t, it, now_ms);
		p[i].value = 0;
		if (p[i].c != NULL) {
			counter_advance(p[i].c, (uint64_t)it->window * 1000u, now_ms);
			p[i].value = counter_value(p[i].c, now_ms);
		}
		p[i].refused = p[i].blocked_for > 0 ||
			       (it->limit != 0 && it->cost > 0 && p[i].value + it->cost > it->limit);
		any_refused |= p[i].refused;
	}
	for (size_t i = 0; i < n; i++) {
		const struct anvil_item *it = &items[i];
		struct counter *c = p[i].c;
		struct anvil_result *r = &results[i];
		memset(r, 0, sizeof(*r));
		r->count = sat32(p[i].value);
		r->blocked_for = p[i].blocked_for;
		if (c != NULL)
			c->last_ms = now_ms;
		if (p[i].refused) {
			r->flags |= ANVIL_RESULT_REFUSED;
			if (p[i].blocked_for == 0) { /* refused for the limit, now */
				if (c == NULL || !c->over)
					r->flags |= ANVIL_RESULT_OVER_NOW;
				if (c != NULL)
					c->over = true;
				if (it->block_time > 0) {
					block(t, it->key, it->block_time, now_ms);
					r->flags |= ANVIL_RESULT_BLOCKED_NOW;
					r->blocked_for = it->block_time;
				}
			}
			continue;
		}
		if (any_refused || c == NULL || it->cost == 0)
			continue; /* another item refused the event: nobody counts it */
		uint64_t after = p[i].value + it->cost;
		c->cur = c->cur + it->cost > UINT32_MAX ? UINT32_MAX : c->cur + it->cost;
		c->over = false;
		r->count = sat32(after);
		if (it->warn != 0 && p[i].value <= it->warn && after > it->warn &&
		    now_ms >= c->warned_until_ms) {
			r->flags |= ANVIL_RESULT_WARNED;
			c->warned_until_ms = now_ms + c->window_ms;
		}
	}
}

/* ---- greylisting ---------------------------------------------------------------------- */

/* Triplet record: expires, first seen, last seen, passed (u64 each). */
enum { T_EXPIRES = 0, T_FIRST = 8, T_LAST = 16, T_PASSED = 24, T_LEN = 32 };
/* Client record: expires, last pass, passes. */
enum { C_EXPIRES = 0, C_LAST = 8, C_PASSES = 16, C_LEN = 24 };

static bool get_record(struct anvil_table *t, enum anvil_db db, const char *key, size_t want,
		       unsigned char *rec, uint64_t now_ms)
{
	size_t len;
	return t->store->ops->get(t->store, db, key, rec, &len) == 1 && len == want &&
	       anvil_get_u64(rec + 0) > now_ms;
}

static void put_triplet(struct anvil_table *t, const char *key, uint64_t expires,
			uint64_t first, uint64_t last, bool passed)
{
	unsigned char rec[T_LEN];
	anvil_put_u64(rec + T_EXPIRES, expires);
	anvil_put_u64(rec + T_FIRST, first);
	anvil_put_u64(rec + T_LAST, last);
	anvil_put_u64(rec + T_PASSED, passed);
	t->store->ops->put(t->store, ANVIL_DB_TRIPLETS, key, rec, sizeof(rec));
}

static void put_client(struct anvil_table *t, const char *key, uint64_t expires, uint64_t last,
		       uint64_t passes)
{
	unsigned char rec[C_LEN];
	anvil_put_u64(rec + C_EXPIRES, expires);
	anvil_put_u64(rec + C_LAST, last);
	anvil_put_u64(rec + C_PASSES, passes);
	t->store->ops->put(t->store, ANVIL_DB_CLIENTS, key, rec, sizeof(rec));
}

void anvil_table_grey(struct anvil_table *t, const struct anvil_msg *req, uint64_t now_ms,
		      struct anvil_msg *answer)
{
	uint64_t delay = (uint64_t)req->delay * 1000u, retry = (uint64_t)req->retry_window * 1000u;
	uint64_t expiry = (uint64_t)req->expiry * 1000u;
	unsigned char crec[ANVIL_RECORD_MAX], trec[ANVIL_RECORD_MAX];
	bool have_client = get_record(t, ANVIL_DB_CLIENTS, req->client, C_LEN, crec, now_ms);
	uint64_t passes = have_client ? anvil_get_u64(crec + C_PASSES) : 0;
	answer->seq = req->seq;
	answer->wait = 0;
	if (req->auto_allow != 0 && passes >= req->auto_allow) {
		put_client(t, req->client, now_ms + expiry, now_ms, passes);
		answer->outcome = ANVIL_GREY_ALLOWED;
		answer->client_passes = sat32(passes);
		return;
	}
	bool known = get_record(t, ANVIL_DB_TRIPLETS, req->triplet, T_LEN, trec, now_ms);
	uint64_t first = known ? anvil_get_u64(trec + T_FIRST) : 0;
	bool passed = known && anvil_get_u64(trec + T_PASSED) != 0;
	if (!known || (!passed && now_ms >= first + retry)) {
		/* New, or its first attempt was never retried in time. */
		put_triplet(t, req->triplet, now_ms + retry, now_ms, now_ms, false);
		answer->outcome = ANVIL_GREY_NEW;
		answer->wait = req->delay;
	} else if (passed) {
		put_triplet(t, req->triplet, now_ms + expiry, first, now_ms, true);
		answer->outcome = ANVIL_GREY_PASSED;
	} else if (now_ms < first + delay) {
		put_triplet(t, req->triplet, first + retry, first, now_ms, false);
		answer->outcome = ANVIL_GREY_EARLY;
		answer->wait = sat32((first + delay - now_ms + 999) / 1000);
	} else {
		/* The retry that proves a queue: the triplet passes, and counts
		 * once for its client. */
		put_triplet(t, req->triplet, now_ms + expiry, first, now_ms, true);
		passes++;
		put_client(t, req->client, now_ms + expiry, now_ms, passes);
		answer->outcome = ANVIL_GREY_PASSED;
	}
	answer->client_passes = sat32(passes);
}

/* ---- upkeep ------------------------------------------------------------------------------ */

void anvil_table_sweep(struct anvil_table *t, uint64_t now_ms)
{
	strlist_t idle = { NULL, 0 };
	size_t pos = 0;
	const char *key;
	void *value;
	while (hashmap_next(&t->counters, &pos, &key, &value)) {
		const struct counter *c = value;
		if (now_ms < c->last_ms || now_ms - c->last_ms >= 2 * c->window_ms)
			strlist_add(&idle, key);
	}
	for (size_t i = 0; i < idle.count; i++)
		free(hashmap_remove(&t->counters, idle.items[i]));
	strlist_free(&idle);
	t->store->ops->expire(t->store, now_ms);
}

void anvil_table_sync(struct anvil_table *t)
{
	t->store->ops->sync(t->store);
}

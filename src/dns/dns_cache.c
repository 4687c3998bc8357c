/*
 * dns_cache.c - the resolver's answers, kept for their TTL: a hash table
 * from "TYPE/name" to the result, and a list in the order of use so that
 * a full cache lets the least recently used answer go. Positive answers
 * live at most DNS_TTL_MAX, negative ones at most the resolver's
 * negative_ttl_max (both capped in dns_answer.c); failures are never
 * kept. Bounded: at most capacity entries.
 *
 * Input: results built from DNS answers (bounded there) and names that
 * passed dns_name_valid.
 */
#include "dns_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../lib/strutil.h"
#include "../lib/xalloc.h"

struct dns_cache_entry {
	struct dns_cache_entry *prev, *next; /* toward head, toward tail */
	char *key;                           /* the map's own copy */
	struct dns_result *result;
	uint64_t expires_ms;
};

void dns_cache_init(struct dns_cache *c, size_t capacity)
{
	memset(c, 0, sizeof(*c));
	c->capacity = capacity;
}

static void unlink_entry(struct dns_cache *c, struct dns_cache_entry *e)
{
	if (e->prev != NULL)
		e->prev->next = e->next;
	else
		c->head = e->next;
	if (e->next != NULL)
		e->next->prev = e->prev;
	else
		c->tail = e->prev;
	e->prev = e->next = NULL;
}

static void push_head(struct dns_cache *c, struct dns_cache_entry *e)
{
	e->prev = NULL;
	e->next = c->head;
	if (c->head != NULL)
		c->head->prev = e;
	c->head = e;
	if (c->tail == NULL)
		c->tail = e;
}

static void drop(struct dns_cache *c, struct dns_cache_entry *e)
{
	unlink_entry(c, e);
	hashmap_remove(&c->map, e->key);
	free(e->key);
	dns_result_unref(&e->result);
	free(e);
	c->count--;
}

void dns_cache_free(struct dns_cache *c)
{
	while (c->head != NULL)
		drop(c, c->head);
	hashmap_free(&c->map, NULL);
}

bool dns_cache_key(enum dns_type type, const char *name, char *key, size_t keylen)
{
	size_t n = strlen(name);
	if (n > 0 && name[n - 1] == '.')
		n--;
	int w = snprintf(key, keylen, "%u/%.*s", (unsigned)type, (int)n, name);
	if (w < 0 || (size_t)w >= keylen)
		return false;
	str_lower(key);
	return true;
}

struct dns_result *dns_cache_get(struct dns_cache *c, const char *key, uint64_t now_ms)
{
	struct dns_cache_entry *e = hashmap_get(&c->map, key, NULL);
	if (e == NULL)
		return NULL;
	if (now_ms >= e->expires_ms) {
		drop(c, e);
		return NULL;
	}
	unlink_entry(c, e);
	push_head(c, e);
	return dns_result_ref(e->result);
}

void dns_cache_put(struct dns_cache *c, const char *key, struct dns_result *res,
		   uint64_t now_ms)
{
	if (c->capacity == 0 || res->ttl == 0 || res->status == DNS_TEMPFAIL ||
	    res->status == DNS_TIMEOUT)
		return;
	struct dns_cache_entry *old = hashmap_get(&c->map, key, NULL);
	if (old != NULL)
		drop(c, old);
	while (c->count >= c->capacity && c->tail != NULL)
		drop(c, c->tail);
	struct dns_cache_entry *e = xcalloc(1, sizeof(*e));
	e->key = xstrdup(key);
	e->result = dns_result_ref(res);
	e->expires_ms = now_ms + (uint64_t)res->ttl * 1000u;
	hashmap_put(&c->map, key, e);
	push_head(c, e);
	c->count++;
}

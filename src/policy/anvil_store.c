/*
 * anvil_store.c - the anvil's store in memory (see anvil_store.h): one
 * hash table per table of records. Used by the unit tests and when the
 * LMDB files cannot be opened (then blocks and greylisting are forgotten
 * when the anvil restarts, which the log says).
 *
 * Untrusted input: keys derived from client data, bounded by the caller.
 * Privilege: the anvil.
 */
#include "anvil_store.h"

#include <stdlib.h>
#include <string.h>

#include "../lib/buf.h"
#include "../lib/hashmap.h"
#include "../lib/strutil.h"
#include "../lib/xalloc.h"

struct memory_record {
	size_t len;
	unsigned char val[ANVIL_RECORD_MAX];
};

struct memory_store {
	struct anvil_store base;
	hashmap_t tables[ANVIL_DB_COUNT];
};

static int memory_get(struct anvil_store *s, enum anvil_db db, const char *key,
		      unsigned char *val, size_t *len_r)
{
	struct memory_store *m = (struct memory_store *)s;
	const struct memory_record *r = hashmap_get(&m->tables[db], key, NULL);
	if (r == NULL)
		return 0;
	memcpy(val, r->val, r->len);
	*len_r = r->len;
	return 1;
}

static int memory_put(struct anvil_store *s, enum anvil_db db, const char *key,
		      const unsigned char *val, size_t len)
{
	struct memory_store *m = (struct memory_store *)s;
	struct memory_record *r = xcalloc(1, sizeof(*r));
	r->len = len < ANVIL_RECORD_MAX ? len : ANVIL_RECORD_MAX;
	memcpy(r->val, val, r->len);
	free(hashmap_put(&m->tables[db], key, r));
	return 0;
}

static int memory_del(struct anvil_store *s, enum anvil_db db, const char *key)
{
	struct memory_store *m = (struct memory_store *)s;
	free(hashmap_remove(&m->tables[db], key));
	return 0;
}

static size_t memory_expire(struct anvil_store *s, uint64_t now_ms)
{
	struct memory_store *m = (struct memory_store *)s;
	size_t gone = 0;
	for (int db = 0; db < ANVIL_DB_COUNT; db++) {
		strlist_t doomed = { NULL, 0 };
		size_t pos = 0;
		const char *key;
		void *value;
		while (hashmap_next(&m->tables[db], &pos, &key, &value)) {
			const struct memory_record *r = value;
			if (r->len < 8 || anvil_get_u64(r->val) <= now_ms)
				strlist_add(&doomed, key);
		}
		for (size_t i = 0; i < doomed.count; i++)
			free(hashmap_remove(&m->tables[db], doomed.items[i]));
		gone += doomed.count;
		strlist_free(&doomed);
	}
	return gone;
}

static void memory_sync(struct anvil_store *s)
{
	(void)s;
}

static void memory_free(struct anvil_store *s)
{
	struct memory_store *m = (struct memory_store *)s;
	for (int db = 0; db < ANVIL_DB_COUNT; db++)
		hashmap_free(&m->tables[db], free);
	free(m);
}

static const struct anvil_store_ops memory_ops = {
	memory_get, memory_put, memory_del, memory_expire, memory_sync, memory_free,
};

struct anvil_store *anvil_store_memory(void)
{
	struct memory_store *m = xcalloc(1, sizeof(*m));
	m->base.ops = &memory_ops;
	m->base.name = "memory";
	return &m->base;
}

void anvil_store_free(struct anvil_store **s)
{
	if (*s == NULL)
		return;
	(*s)->ops->free(*s);
	*s = NULL;
}

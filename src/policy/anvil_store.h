/*
 * anvil_store.h - where the anvil keeps what must outlive it: the block
 * map (clients, senders and users blocked for a cool-down) and the
 * greylisting records (triplets, clients that passed). Rates and open
 * sessions are not here: they live in the anvil's memory (anvil_table.c).
 *
 * Records are small binary values under string keys, in one of a few
 * tables; every value starts with its expiry (u64 milliseconds since the
 * epoch, big-endian), so that a store can drop what has expired without
 * knowing the rest. Two backends: LMDB in spool_dir/private/anvil/
 * (anvil_store_lmdb.c: survives restarts; the anvil is its only writer)
 * and memory (anvil_store.c: tests, and the fallback when the LMDB files
 * cannot be opened). A Redis backend would implement the same operations
 * for several nodes.
 *
 * Untrusted input: keys derived from client data (addresses), bounded by
 * ANVIL_KEY_MAX. Privilege: the anvil (`user`), and tests.
 */
#ifndef POSTERN_ANVIL_STORE_H
#define POSTERN_ANVIL_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum anvil_db { ANVIL_DB_BLOCKS, ANVIL_DB_TRIPLETS, ANVIL_DB_CLIENTS, ANVIL_DB_COUNT };

#define ANVIL_RECORD_MAX 64 /* longest value */

struct anvil_store;

struct anvil_store_ops {
	/* 1 and *len_r bytes in val (ANVIL_RECORD_MAX), 0 if absent, -1 on error. */
	int (*get)(struct anvil_store *s, enum anvil_db db, const char *key, unsigned char *val,
		   size_t *len_r);
	/* 0, or -1 on error (logged by the store). */
	int (*put)(struct anvil_store *s, enum anvil_db db, const char *key,
		   const unsigned char *val, size_t len);
	int (*del)(struct anvil_store *s, enum anvil_db db, const char *key);
	/* Remove every record whose expiry is at or before now_ms; returns how
	 * many went. */
	size_t (*expire)(struct anvil_store *s, uint64_t now_ms);
	/* Make what was written durable (may block on the disk). */
	void (*sync)(struct anvil_store *s);
	void (*free)(struct anvil_store *s);
};

struct anvil_store {
	const struct anvil_store_ops *ops;
	const char *name; /* "lmdb", "memory" */
};

/* A store in memory (never fails). */
struct anvil_store *anvil_store_memory(void);
/* The LMDB store in folder dir (created, mode 0700); NULL after logging
 * why it cannot be opened. */
struct anvil_store *anvil_store_lmdb(const char *dir);
void anvil_store_free(struct anvil_store **s);

/* Big-endian u64 helpers for the record layouts. */
static inline void anvil_put_u64(unsigned char *p, uint64_t v)
{
	for (int i = 7; i >= 0; i--, v >>= 8)
		p[i] = (unsigned char)v;
}

static inline uint64_t anvil_get_u64(const unsigned char *p)
{
	uint64_t v = 0;
	for (int i = 0; i < 8; i++)
		v = v << 8 | p[i];
	return v;
}

#endif

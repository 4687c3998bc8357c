/*
 * hashmap.h - string-keyed hash table (open addressing, linear probing)
 * used for users, aliases, sets of queue ids and the smtp worker's set of
 * a transaction's recipients. Keys are copied; values are caller-owned
 * pointers.
 *
 * Keys are hashed with SipHash-2-4 (OpenSSL's "SIPHASH" MAC, from the
 * default provider in a private library context, so the system's OpenSSL
 * configuration cannot take it away) under a 128-bit key drawn from
 * getrandom() the first time a process hashes anything. Processes forked
 * after that share the key: they must, since they inherit tables built
 * before the fork (the roles inherit the supervisor's user and alias
 * tables), so every role of one run of the supervisor hashes alike; a
 * new run draws a new key.
 *
 * What this protects against: hash flooding with keys chosen in advance
 * (for example recipient addresses whose hashes share their low bits),
 * which with an unkeyed hash would make every insert and lookup walk the
 * same probe sequence, quadratic in the number of keys. Without the key
 * an attacker cannot tell which keys collide, and SipHash is designed so
 * that watching the table (timing, iteration order) does not give the key
 * away in practice.
 * What it does not protect against: a process whose memory can be read
 * (the key is in it); many distinct keys as such (memory and the count of
 * entries are bounded by the callers' limits, recipient_limit for
 * instance); keys that are equal as strings.
 *
 * Iteration order (hashmap_next) is unspecified and differs from run to
 * run: nothing may depend on it.
 */
#ifndef POSTERN_HASHMAP_H
#define POSTERN_HASHMAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct hashmap_entry {
	char *key; /* NULL = empty slot */
	void *value;
	uint64_t hash; /* of key, kept so that growing does not rehash */
	bool deleted;
};

typedef struct {
	struct hashmap_entry *slots;
	size_t cap;   /* power of two or 0 */
	size_t count; /* live entries */
	size_t used;  /* live + deleted */
} hashmap_t;

#define HASHMAP_INIT { NULL, 0, 0, 0 }

/* Insert or replace; returns the previous value or NULL. */
void *hashmap_put(hashmap_t *m, const char *key, void *value);
/* Value for key, or NULL. *found_r (may be NULL) tells a stored NULL apart. */
void *hashmap_get(const hashmap_t *m, const char *key, bool *found_r);
bool hashmap_contains(const hashmap_t *m, const char *key);
/* Remove key; returns its value or NULL. */
void *hashmap_remove(hashmap_t *m, const char *key);
/* Free the table and keys; values are passed to free_value if not NULL. */
void hashmap_free(hashmap_t *m, void (*free_value)(void *));
/* Iterate: start with *pos = 0; returns false at the end. The order is
 * unspecified (it depends on the process's hash key). */
bool hashmap_next(const hashmap_t *m, size_t *pos, const char **key_r,
		  void **value_r);
/* How many slots a lookup of key examines (at least 1; 0 for an empty
 * table): what flooding would drive up, for tests and diagnostics. */
size_t hashmap_probe_count(const hashmap_t *m, const char *key);

#endif

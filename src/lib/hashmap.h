/*
 * hashmap.h - string-keyed hash table (open addressing, FNV-1a) used for
 * users, aliases and sets of queue ids. Keys are copied; values are
 * caller-owned pointers.
 */
#ifndef POSTERN_HASHMAP_H
#define POSTERN_HASHMAP_H

#include <stdbool.h>
#include <stddef.h>

struct hashmap_entry {
	char *key; /* NULL = empty slot */
	void *value;
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
/* Iterate: start with *pos = 0; returns false at the end. */
bool hashmap_next(const hashmap_t *m, size_t *pos, const char **key_r,
		  void **value_r);

#endif

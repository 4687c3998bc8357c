/*
 * hashmap.c - open-addressing string hash table (see hashmap.h).
 */
#include "hashmap.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "xalloc.h"

static uint64_t hash_key(const char *s)
{
	uint64_t h = 1469598103934665603ULL;
	for (; *s != '\0'; s++) {
		h ^= (unsigned char)*s;
		h *= 1099511628211ULL;
	}
	return h;
}

/* Slot holding key, or the slot where it would be inserted. */
static struct hashmap_entry *find_slot(const hashmap_t *m, const char *key)
{
	size_t mask = m->cap - 1, i = (size_t)hash_key(key) & mask;
	struct hashmap_entry *tomb = NULL;
	for (;;) {
		struct hashmap_entry *e = &m->slots[i];
		if (e->key == NULL) {
			if (!e->deleted)
				return tomb != NULL ? tomb : e;
			if (tomb == NULL)
				tomb = e;
		} else if (strcmp(e->key, key) == 0) {
			return e;
		}
		i = (i + 1) & mask;
	}
}

static void grow(hashmap_t *m)
{
	hashmap_t bigger = { NULL, m->cap ? m->cap * 2 : 16, 0, 0 };
	if (m->count * 4 < m->cap)
		bigger.cap = m->cap; /* mostly tombstones: rehash at the same size */
	bigger.slots = xcalloc(bigger.cap, sizeof(*bigger.slots));
	for (size_t i = 0; i < m->cap; i++) {
		struct hashmap_entry *e = &m->slots[i];
		if (e->key == NULL)
			continue;
		struct hashmap_entry *d = find_slot(&bigger, e->key);
		*d = *e;
		bigger.count++;
		bigger.used++;
	}
	free(m->slots);
	*m = bigger;
}

void *hashmap_put(hashmap_t *m, const char *key, void *value)
{
	if ((m->used + 1) * 4 >= m->cap * 3)
		grow(m);
	struct hashmap_entry *e = find_slot(m, key);
	if (e->key != NULL) {
		void *old = e->value;
		e->value = value;
		return old;
	}
	if (!e->deleted)
		m->used++;
	e->key = xstrdup(key);
	e->value = value;
	e->deleted = false;
	m->count++;
	return NULL;
}

void *hashmap_get(const hashmap_t *m, const char *key, bool *found_r)
{
	if (found_r != NULL)
		*found_r = false;
	if (m->cap == 0)
		return NULL;
	struct hashmap_entry *e = find_slot(m, key);
	if (e->key == NULL)
		return NULL;
	if (found_r != NULL)
		*found_r = true;
	return e->value;
}

bool hashmap_contains(const hashmap_t *m, const char *key)
{
	bool found;
	hashmap_get(m, key, &found);
	return found;
}

void *hashmap_remove(hashmap_t *m, const char *key)
{
	if (m->cap == 0)
		return NULL;
	struct hashmap_entry *e = find_slot(m, key);
	if (e->key == NULL)
		return NULL;
	void *value = e->value;
	xfree(&e->key);
	e->value = NULL;
	e->deleted = true;
	m->count--;
	return value;
}

void hashmap_free(hashmap_t *m, void (*free_value)(void *))
{
	for (size_t i = 0; i < m->cap; i++) {
		if (m->slots[i].key == NULL)
			continue;
		free(m->slots[i].key);
		if (free_value != NULL)
			free_value(m->slots[i].value);
	}
	xfree(&m->slots);
	m->cap = m->count = m->used = 0;
}

bool hashmap_next(const hashmap_t *m, size_t *pos, const char **key_r,
		  void **value_r)
{
	for (; *pos < m->cap; (*pos)++) {
		const struct hashmap_entry *e = &m->slots[*pos];
		if (e->key != NULL) {
			*key_r = e->key;
			*value_r = e->value;
			(*pos)++;
			return true;
		}
	}
	return false;
}

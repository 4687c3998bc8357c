/*
 * report_top.c - space-saving heavy hitters with a fixed number of
 * counters (see report_top.h): an open-addressing table from key to
 * counter (linear probing, backward-shift deletion, so no tombstones pile
 * up) and a min-heap of the counters to find the one to evict.
 *
 * Untrusted input: keys from log lines; their hash is seeded per process
 * so that chosen keys cannot pile up in one probe chain. Privilege: the
 * caller's (postern report runs as whoever invokes it).
 */
#include "report_top.h"

#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "../lib/xalloc.h"

static uint64_t top_seed(void)
{
	static uint64_t seed;
	if (seed == 0) {
		if (getrandom(&seed, sizeof(seed), GRND_NONBLOCK) != (ssize_t)sizeof(seed))
			seed = (uint64_t)(uintptr_t)&seed ^ 0x9e3779b97f4a7c15ull;
		seed |= 1;
	}
	return seed;
}

/* A keyed multiply-xorshift hash: fast, and good enough for a table that
 * never holds more than a few thousand keys. */
static uint64_t top_hash(uint64_t seed, const char *key, size_t len)
{
	uint64_t h = seed ^ (len * 0xff51afd7ed558ccdull);
	size_t i = 0;
	for (; i + 8 <= len; i += 8) {
		uint64_t w;
		memcpy(&w, key + i, 8);
		h = (h ^ w) * 0x9fb21c651e98df25ull;
		h ^= h >> 29;
	}
	uint64_t w = 0;
	memcpy(&w, key + i, len - i);
	h = (h ^ w) * 0x9fb21c651e98df25ull;
	h ^= h >> 32;
	h *= 0xc4ceb9fe1a85ec53ull;
	return h ^ (h >> 29);
}

void report_top_init(struct report_top *t, size_t capacity)
{
	memset(t, 0, sizeof(*t));
	t->capacity = capacity > 0 ? capacity : 1;
	t->items = xcalloc(t->capacity, sizeof(*t->items));
	t->heap = xcalloc(t->capacity, sizeof(*t->heap));
	size_t slots = 4;
	while (slots < t->capacity * 2)
		slots *= 2;
	t->slots = xcalloc(slots, sizeof(*t->slots));
	t->slot_mask = slots - 1;
	t->seed = top_seed();
}

void report_top_free(struct report_top *t)
{
	for (size_t i = 0; i < t->used; i++)
		free(t->items[i].key);
	free(t->items);
	free(t->heap);
	free(t->slots);
	memset(t, 0, sizeof(*t));
}

static void heap_swap(struct report_top *t, size_t a, size_t b)
{
	struct report_top_item *x = t->heap[a];
	t->heap[a] = t->heap[b];
	t->heap[b] = x;
	t->heap[a]->heap_pos = a;
	t->heap[b]->heap_pos = b;
}

static void heap_down(struct report_top *t, size_t i)
{
	for (;;) {
		size_t l = 2 * i + 1, r = l + 1, m = i;
		if (l < t->used && t->heap[l]->count < t->heap[m]->count)
			m = l;
		if (r < t->used && t->heap[r]->count < t->heap[m]->count)
			m = r;
		if (m == i)
			return;
		heap_swap(t, i, m);
		i = m;
	}
}

static void heap_up(struct report_top *t, size_t i)
{
	while (i > 0) {
		size_t p = (i - 1) / 2;
		if (t->heap[p]->count <= t->heap[i]->count)
			return;
		heap_swap(t, i, p);
		i = p;
	}
}

/* The slot holding key, or the free slot where it would go. */
static size_t find_slot(const struct report_top *t, const char *key, size_t len, bool *found_r)
{
	size_t s = (size_t)top_hash(t->seed, key, len) & t->slot_mask;
	for (;;) {
		uint32_t v = t->slots[s];
		if (v == 0) {
			*found_r = false;
			return s;
		}
		const char *k = t->items[v - 1].key;
		if (strlen(k) == len && memcmp(k, key, len) == 0) {
			*found_r = true;
			return s;
		}
		s = (s + 1) & t->slot_mask;
	}
}

/* Remove the slot at s, shifting later members of its chain back. */
static void slot_delete(struct report_top *t, size_t s)
{
	size_t hole = s, i = s;
	for (;;) {
		i = (i + 1) & t->slot_mask;
		uint32_t v = t->slots[i];
		if (v == 0)
			break;
		const char *k = t->items[v - 1].key;
		size_t home = (size_t)top_hash(t->seed, k, strlen(k)) & t->slot_mask;
		/* Move v into the hole unless its home lies cyclically in (hole, i]. */
		bool stays = hole <= i ? (home > hole && home <= i) : (home > hole || home <= i);
		if (!stays) {
			t->slots[hole] = v;
			hole = i;
		}
	}
	t->slots[hole] = 0;
}

void report_top_add(struct report_top *t, const char *key, size_t len, uint64_t n)
{
	if (len > REPORT_TOP_KEY_MAX)
		len = REPORT_TOP_KEY_MAX;
	if (memchr(key, '\0', len) != NULL)
		len = strnlen(key, len);
	t->total += n;
	bool found;
	size_t s = find_slot(t, key, len, &found);
	if (found) {
		struct report_top_item *it = &t->items[t->slots[s] - 1];
		it->count += n;
		heap_down(t, it->heap_pos);
		return;
	}
	struct report_top_item *it;
	uint64_t base = 0;
	if (t->used < t->capacity) {
		it = &t->items[t->used];
		it->heap_pos = t->used;
		t->heap[t->used] = it;
		t->used++;
	} else {
		/* Evict the smallest counter: the newcomer inherits its count. */
		it = t->heap[0];
		bool old_found;
		size_t old = find_slot(t, it->key, strlen(it->key), &old_found);
		if (old_found)
			slot_delete(t, old);
		free(it->key);
		base = it->count;
		t->evictions++;
		s = find_slot(t, key, len, &found);
	}
	it->key = xmalloc(len + 1);
	memcpy(it->key, key, len);
	it->key[len] = '\0';
	it->count = base + n;
	it->error = base;
	t->slots[s] = (uint32_t)(it - t->items) + 1;
	heap_up(t, it->heap_pos);
	heap_down(t, it->heap_pos);
}

static int by_count_desc(const void *a, const void *b)
{
	const struct report_top_item *x = *(const struct report_top_item *const *)a;
	const struct report_top_item *y = *(const struct report_top_item *const *)b;
	if (x->count != y->count)
		return x->count < y->count ? 1 : -1;
	return strcmp(x->key, y->key);
}

size_t report_top_sorted(const struct report_top *t, const struct report_top_item **out_r,
			 size_t max)
{
	if (t->used == 0 || max == 0)
		return 0;
	const struct report_top_item **all = xcalloc(t->used, sizeof(*all));
	for (size_t i = 0; i < t->used; i++)
		all[i] = &t->items[i];
	qsort(all, t->used, sizeof(*all), by_count_desc);
	size_t n = t->used < max ? t->used : max;
	memcpy(out_r, all, n * sizeof(*all));
	free(all);
	return n;
}

bool report_top_exact(const struct report_top *t)
{
	return t->evictions == 0;
}

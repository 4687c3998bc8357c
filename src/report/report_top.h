/*
 * report_top.h - bounded "top N" counting for postern report: the
 * space-saving algorithm (Metwally, Agrawal, El Abbadi 2005) over a fixed
 * number of counters.
 *
 * A table holds at most `capacity` keys, whatever the number of distinct
 * keys it is fed: memory is capacity * (counter + key copy), keys are cut
 * at REPORT_TOP_KEY_MAX bytes. While fewer than `capacity` distinct keys
 * have been seen every count is exact. Past that, a new key takes the
 * counter of the smallest one, inheriting its count as its possible
 * overcount (`error`): every key whose true count exceeds total/capacity is
 * in the table, and each count is at most `error` too high.
 *
 * Untrusted input: the keys (text from log lines). Privilege: the caller's.
 */
#ifndef POSTERN_REPORT_TOP_H
#define POSTERN_REPORT_TOP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define REPORT_TOP_KEY_MAX 255

struct report_top_item {
	char *key;
	uint64_t count;
	uint64_t error; /* the count may be this much too high (0 = exact) */
	size_t heap_pos;
};

struct report_top {
	size_t capacity;
	size_t used;
	struct report_top_item *items;  /* capacity items */
	struct report_top_item **heap;  /* min-heap by count */
	uint32_t *slots;                /* open addressing: item index + 1, 0 = free */
	size_t slot_mask;
	uint64_t seed;
	uint64_t total;                 /* every count added */
	uint64_t evictions;
};

void report_top_init(struct report_top *t, size_t capacity);
void report_top_free(struct report_top *t);
/* Count `n` more for key[0 .. len) (cut at REPORT_TOP_KEY_MAX bytes). */
void report_top_add(struct report_top *t, const char *key, size_t len, uint64_t n);
/* The up to `max` largest counts, largest first (ties by key): fills
 * out_r[0 .. return) with pointers into the table, valid until the next
 * add or free. */
size_t report_top_sorted(const struct report_top *t, const struct report_top_item **out_r,
			 size_t max);
/* True while every count in the table is exact (no key was evicted). */
bool report_top_exact(const struct report_top *t);

#endif

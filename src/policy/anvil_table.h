/*
 * anvil_table.h - what the anvil counts for all smtp workers, as plain
 * functions of the time given (the anvil's loop, src/server/anvil.c, does
 * the I/O; the unit tests drive the clock).
 *
 * Open sessions: each belongs to an owner (a worker's connection to the
 * anvil) and to a client key (the client's network, "192.0.2.0/24"); the
 * table knows the total and the count per client key. When an owner goes
 * away (a worker exited or was killed: its socket closed) its sessions
 * are forgotten at once, so a dead worker never leaves counts behind.
 *
 * Rates: a counter per (metric, key) over a sliding window of the item's
 * length: the count is the events of the current window plus those of the
 * previous one weighted by how much of it still overlaps, so a burst
 * across a window boundary is still seen. An event is refused when its
 * key is in the block map or when it would take the count past the
 * item's limit; then, with a block_time, the key is blocked for that long
 * (written to the store: a restart keeps it). A refused event is not
 * counted. warn is reported once per window when an event takes the count
 * past it. Counters idle for two windows are dropped; at most
 * ANVIL_COUNTERS_MAX are kept (beyond, new keys are not limited, and the
 * anvil says so in its log).
 *
 * Greylisting (postgrey's model): a triplet (client network, sender,
 * recipient) seen for the first time is deferred; a retry after delay
 * passes (and counts once for the client); one before is deferred again;
 * a first attempt not retried within retry_window is forgotten. A passed
 * triplet lives expiry after it was last seen. A client with auto_allow
 * passed triplets passes at once (its record lives expiry after its last
 * pass). Times are wall-clock milliseconds (records outlive restarts).
 *
 * Untrusted input: keys (bounded by the protocol). Privilege: the anvil.
 */
#ifndef POSTERN_ANVIL_TABLE_H
#define POSTERN_ANVIL_TABLE_H

#include <stdbool.h>
#include <stdint.h>

#include "anvil_proto.h"
#include "anvil_store.h"

#define ANVIL_COUNTERS_MAX 200000

struct anvil_table;

/* The table takes the store (freed with it). */
struct anvil_table *anvil_table_new(struct anvil_store *store);
void anvil_table_free(struct anvil_table **t);

/* OPEN: fills answer's total, client_count and results (answer->n). A
 * session already open for this owner is counted once. */
void anvil_table_open(struct anvil_table *t, uint64_t owner, const struct anvil_msg *req,
		      uint64_t now_ms, struct anvil_msg *answer);
void anvil_table_close(struct anvil_table *t, uint64_t owner, uint64_t session);
/* The owner went away: forget its sessions; returns how many. */
size_t anvil_table_drop_owner(struct anvil_table *t, uint64_t owner);

/* RATE (and OPEN's items): results[i] for items[i]. */
void anvil_table_rate(struct anvil_table *t, const struct anvil_item *items, size_t n,
		      uint64_t now_ms, struct anvil_result *results);

/* GREY: fills answer's outcome, wait (seconds) and client_passes. */
void anvil_table_grey(struct anvil_table *t, const struct anvil_msg *req, uint64_t now_ms,
		      struct anvil_msg *answer);

/* Drop idle counters and expired records. */
void anvil_table_sweep(struct anvil_table *t, uint64_t now_ms);
/* Make the store durable (may block on the disk). */
void anvil_table_sync(struct anvil_table *t);

/* For logs and tests. */
size_t anvil_table_sessions(const struct anvil_table *t);
size_t anvil_table_counters(const struct anvil_table *t);
const char *anvil_table_store_name(const struct anvil_table *t);

#endif

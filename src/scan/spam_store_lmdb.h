/*
 * spam_store_lmdb.h - what the LMDB token store (spam_store_lmdb.c)
 * offers beyond struct spam_store (spam.h): the tests' clock.
 */
#ifndef POSTERN_SCAN_SPAM_STORE_LMDB_H
#define POSTERN_SCAN_SPAM_STORE_LMDB_H

#include <stdint.h>

#include "spam.h"

/* Make the store's "today" (days since the epoch) day instead of the
 * clock's (0 = the clock again), for the expiry tests. */
void spam_store_lmdb_set_today(struct spam_store *s, uint32_t day);

#endif

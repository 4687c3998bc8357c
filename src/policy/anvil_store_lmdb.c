/*
 * anvil_store_lmdb.c - the anvil's store in LMDB (see anvil_store.h): the
 * block map and the greylisting records in spool_dir/private/anvil/, so
 * that a restart of the anvil (or of postern) keeps them.
 *
 * The anvil is the only process that opens the environment, and its only
 * writer: one short write transaction per change, MDB_NOSYNC (a change
 * costs a copy into the map, never a wait for the disk on the anvil's
 * loop); the anvil calls sync every few seconds, so a crash of the
 * machine loses at most those seconds of greylisting (a triplet seen
 * again is greylisted again: nothing is lost that matters). A full map is
 * answered by expiring old records and, failing that, growing the map up
 * to ANVIL_MAP_MAX.
 *
 * Untrusted input: keys derived from client data (bounded by the caller,
 * shorter than LMDB's key limit). Privilege: the anvil (`user`).
 */
#include "anvil_store.h"

#include <errno.h>
#include <lmdb.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>

#include "../lib/log.h"
#include "../lib/xalloc.h"

#define ANVIL_MAP_START (64ULL << 20)
#define ANVIL_MAP_MAX (4ULL << 30)

static const char *const db_names[ANVIL_DB_COUNT] = { "blocks", "triplets", "clients" };

struct lmdb_store {
	struct anvil_store base;
	MDB_env *env;
	MDB_dbi dbi[ANVIL_DB_COUNT];
	size_t map_size;
	char *dir;
};

static uint64_t wall_ms(void)
{
	struct timeval tv;
	gettimeofday(&tv, NULL);
	return (uint64_t)tv.tv_sec * 1000u + (uint64_t)tv.tv_usec / 1000u;
}

static int lmdb_get(struct anvil_store *s, enum anvil_db db, const char *key,
		    unsigned char *val, size_t *len_r)
{
	struct lmdb_store *st = (struct lmdb_store *)s;
	MDB_txn *txn;
	int rc = mdb_txn_begin(st->env, NULL, MDB_RDONLY, &txn);
	if (rc != 0) {
		log_error("anvil store: %s", mdb_strerror(rc));
		return -1;
	}
	MDB_val k = { strlen(key), (void *)key }, v;
	rc = mdb_get(txn, st->dbi[db], &k, &v);
	int found = 0;
	if (rc == 0 && v.mv_size <= ANVIL_RECORD_MAX) {
		memcpy(val, v.mv_data, v.mv_size);
		*len_r = v.mv_size;
		found = 1;
	} else if (rc != 0 && rc != MDB_NOTFOUND) {
		log_error("anvil store: %s: %s", db_names[db], mdb_strerror(rc));
		found = -1;
	}
	mdb_txn_abort(txn);
	return found;
}

static size_t lmdb_expire(struct anvil_store *s, uint64_t now_ms);

/* The map is full: expire what is old, else grow it. false: no room. */
static bool make_room(struct lmdb_store *st)
{
	if (lmdb_expire(&st->base, wall_ms()) > 0)
		return true;
	if (st->map_size >= ANVIL_MAP_MAX)
		return false;
	size_t bigger = st->map_size * 2;
	if (mdb_env_set_mapsize(st->env, bigger) != 0)
		return false;
	st->map_size = bigger;
	log_info("anvil store: map grown to %zu MiB", bigger >> 20);
	return true;
}

/* One write: put (val != NULL) or delete. */
static int write_one(struct lmdb_store *st, enum anvil_db db, const char *key,
		     const unsigned char *val, size_t len)
{
	for (int attempt = 0; attempt < 2; attempt++) {
		MDB_txn *txn;
		int rc = mdb_txn_begin(st->env, NULL, 0, &txn);
		if (rc == 0) {
			MDB_val k = { strlen(key), (void *)key }, v = { len, (void *)val };
			rc = val != NULL ? mdb_put(txn, st->dbi[db], &k, &v, 0)
					 : mdb_del(txn, st->dbi[db], &k, NULL);
			if (rc == MDB_NOTFOUND)
				rc = 0;
			if (rc == 0)
				rc = mdb_txn_commit(txn);
			else
				mdb_txn_abort(txn);
		}
		if (rc == 0)
			return 0;
		if (rc == MDB_MAP_FULL && attempt == 0 && make_room(st))
			continue;
		log_error("anvil store: %s: cannot write: %s", db_names[db], mdb_strerror(rc));
		return -1;
	}
	return -1;
}

static int lmdb_put(struct anvil_store *s, enum anvil_db db, const char *key,
		    const unsigned char *val, size_t len)
{
	return write_one((struct lmdb_store *)s, db, key, val, len);
}

static int lmdb_del(struct anvil_store *s, enum anvil_db db, const char *key)
{
	return write_one((struct lmdb_store *)s, db, key, NULL, 0);
}

static size_t lmdb_expire(struct anvil_store *s, uint64_t now_ms)
{
	struct lmdb_store *st = (struct lmdb_store *)s;
	size_t gone = 0;
	MDB_txn *txn;
	if (mdb_txn_begin(st->env, NULL, 0, &txn) != 0)
		return 0;
	for (int db = 0; db < ANVIL_DB_COUNT; db++) {
		MDB_cursor *cur;
		if (mdb_cursor_open(txn, st->dbi[db], &cur) != 0)
			continue;
		MDB_val k, v;
		int rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST);
		while (rc == 0) {
			if (v.mv_size < 8 || anvil_get_u64(v.mv_data) <= now_ms) {
				if (mdb_cursor_del(cur, 0) != 0)
					break;
				gone++;
				/* After a delete, MDB_NEXT gives the record that
				 * took the deleted one's place (none is skipped). */
			}
			rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
		}
		mdb_cursor_close(cur);
	}
	if (mdb_txn_commit(txn) != 0)
		return 0;
	return gone;
}

static void lmdb_sync(struct anvil_store *s)
{
	struct lmdb_store *st = (struct lmdb_store *)s;
	int rc = mdb_env_sync(st->env, 1);
	if (rc != 0)
		log_warn("anvil store: sync: %s", mdb_strerror(rc));
}

static void lmdb_free(struct anvil_store *s)
{
	struct lmdb_store *st = (struct lmdb_store *)s;
	mdb_env_sync(st->env, 1);
	mdb_env_close(st->env);
	free(st->dir);
	free(st);
}

static const struct anvil_store_ops lmdb_ops = {
	lmdb_get, lmdb_put, lmdb_del, lmdb_expire, lmdb_sync, lmdb_free,
};

struct anvil_store *anvil_store_lmdb(const char *dir)
{
	if (mkdir(dir, 0700) < 0 && errno != EEXIST) {
		log_error("anvil store %s: %s", dir, strerror(errno));
		return NULL;
	}
	struct lmdb_store *st = xcalloc(1, sizeof(*st));
	st->base.ops = &lmdb_ops;
	st->base.name = "lmdb";
	st->dir = xstrdup(dir);
	st->map_size = ANVIL_MAP_START;
	MDB_txn *txn = NULL;
	int rc = mdb_env_create(&st->env);
	if (rc == 0) {
		mdb_env_set_maxdbs(st->env, ANVIL_DB_COUNT);
		mdb_env_set_mapsize(st->env, st->map_size);
		rc = mdb_env_open(st->env, dir, MDB_NOTLS | MDB_NOSYNC, 0600);
	}
	if (rc == 0) {
		MDB_envinfo info;
		mdb_env_info(st->env, &info);
		if (info.me_mapsize > st->map_size)
			st->map_size = info.me_mapsize; /* grown by an earlier run */
		rc = mdb_txn_begin(st->env, NULL, 0, &txn);
	}
	for (int db = 0; rc == 0 && db < ANVIL_DB_COUNT; db++)
		rc = mdb_dbi_open(txn, db_names[db], MDB_CREATE, &st->dbi[db]);
	if (rc == 0) {
		rc = mdb_txn_commit(txn);
		txn = NULL;
	}
	if (rc != 0) {
		log_error("anvil store %s: %s", dir, mdb_strerror(rc));
		if (txn != NULL)
			mdb_txn_abort(txn);
		if (st->env != NULL)
			mdb_env_close(st->env);
		free(st->dir);
		free(st);
		return NULL;
	}
	return &st->base;
}

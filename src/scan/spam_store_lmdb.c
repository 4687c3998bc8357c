/*
 * spam_store_lmdb.c - Bayes's token store (struct spam_store, spam.h) in
 * LMDB: one environment in a folder, three tables:
 *
 *   tokens   8-byte token (big-endian)  -> spam u32, ham u32, atime u32 (little-endian)
 *   learned  8-byte message id          -> day u32, class byte ('s' or 'h'), 3 zero bytes
 *   meta     "version", "nspam", "nham", "last_expire" -> u32
 *
 * Each learning is one write transaction (tokens, totals and the learned
 * record together). LMDB's copy-on-write pages give every reader a
 * snapshot: a scanner never waits for a learner and never sees half a
 * learning; writers take turns on LMDB's lock (a robust mutex, so a
 * writer killed mid-transaction loses only that transaction).
 *
 * Processes: an LMDB environment must not cross fork(), and a process
 * must not open the same store twice. A handle opens the environment on
 * first use in a process, and again in any process forked after that;
 * the handles of one process share one environment per folder
 * (struct shared_env). So the scan master opens the handle (a writable
 * one is made and checked, then closed again) and every scanner gets its
 * own environment. An environment a parent used before forking is left
 * alone in the child (its descriptors and mappings are the parent's; two
 * descriptors stay open there), so a parent should not use the handle
 * before it forks. Reader transactions are MDB_NOTLS (one reader slot per
 * handle), kept reset between uses. An environment only readers use is
 * opened MDB_RDONLY: a read-write one allocates LMDB's write buffers
 * (about 2 MB a scanner) whether it writes or not; a writer joining it in
 * the same process reopens it read-write.
 *
 * The map grows: a write that finds it full doubles it and tries again;
 * a reader told the map grew (MDB_MAP_RESIZED) adopts the new size.
 *
 * Untrusted input: the store's contents (records of the wrong size read
 * as zero). Privilege: `user` (scanners, `postern learn`).
 */
#include "spam_store_lmdb.h"

#include <errno.h>
#include <limits.h>
#include <lmdb.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "../lib/xalloc.h"

#define STORE_VERSION 1
#define TOKEN_VALUE_SIZE 12
#define LEARNED_VALUE_SIZE 8
#define MAX_READERS 1024
#define MAP_SIZE_MAX (1ULL << 40)
#define WRITE_ATTEMPTS 8   /* map growths one write may need */
/* Beside LMDB's codes (errno values, and MDB_* from -30799 up): a store
 * whose version is not ours. */
#define WRONG_VERSION INT_MIN

/* One environment per store folder and process: LMDB breaks when a
 * process opens the same files twice (closing one descriptor drops the
 * process's fcntl locks on them all, and a second open may find itself
 * alone and reset the reader table), so handles of this process share it.
 * Entries of another pid were inherited over fork() and are left alone:
 * their descriptors and mappings are the parent's. Not thread-safe. */
struct shared_env {
	struct shared_env *next;
	char *dir;
	pid_t pid;
	unsigned users;
	MDB_env *env;
	bool rdonly;         /* opened MDB_RDONLY */
	bool forced_rdonly;  /* ... because the files are not ours to write */
	bool have_tables;    /* the tables exist (a reader may come before them) */
	MDB_dbi tokens, learned, meta;
	struct lmdb_store *handles;  /* the handles using it (lmdb_store.next_handle) */
};
static struct shared_env *shared_envs;

struct lmdb_store {
	struct spam_store base;
	char *dir;
	bool writable;
	uint64_t map_size;        /* writable: the least map size */
	uint32_t today;           /* 0 = the clock's */
	struct shared_env *sh;    /* this process's environment, or NULL */
	struct lmdb_store *next_handle;  /* the next handle of sh */
	MDB_txn *rtxn;            /* reader transaction, reset between uses */
	char err[512];
};

static struct lmdb_store *store_of(struct spam_store *s)
{
	return (struct lmdb_store *)s;
}

static int fail(struct lmdb_store *st, const char *fmt, ...) PRINTF_LIKE(2, 3);
static int fail(struct lmdb_store *st, const char *fmt, ...)
{
	char what[256];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(what, sizeof(what), fmt, ap);
	va_end(ap);
	snprintf(st->err, sizeof(st->err), "%s: %s", st->dir, what);
	return -1;
}

static uint32_t today(const struct lmdb_store *st)
{
	return st->today != 0 ? st->today : (uint32_t)(time(NULL) / 86400);
}

/* ---- records --------------------------------------------------------------------- */

static void put_be64(unsigned char *p, uint64_t v)
{
	for (int i = 7; i >= 0; i--, v >>= 8)
		p[i] = (unsigned char)v;
}

static void put_le32(unsigned char *p, uint32_t v)
{
	for (int i = 0; i < 4; i++, v >>= 8)
		p[i] = (unsigned char)v;
}

static uint32_t get_le32(const unsigned char *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static void decode_counts(const MDB_val *v, struct spam_token_counts *c)
{
	memset(c, 0, sizeof(*c));
	if (v->mv_size != TOKEN_VALUE_SIZE)
		return;
	const unsigned char *p = v->mv_data;
	c->spam = get_le32(p);
	c->ham = get_le32(p + 4);
	c->atime = get_le32(p + 8);
}

/* A u32 of the meta table; 0 when missing or malformed. */
static int meta_get(struct lmdb_store *st, MDB_txn *txn, const char *name, uint32_t *v_r)
{
	MDB_val k = { strlen(name), (void *)name }, v;
	int rc = mdb_get(txn, st->sh->meta, &k, &v);
	*v_r = rc == 0 && v.mv_size == 4 ? get_le32(v.mv_data) : 0;
	return rc == MDB_NOTFOUND ? 0 : rc;
}

static int meta_put(struct lmdb_store *st, MDB_txn *txn, const char *name, uint32_t value)
{
	unsigned char b[4];
	put_le32(b, value);
	MDB_val k = { strlen(name), (void *)name }, v = { sizeof(b), b };
	return mdb_put(txn, st->sh->meta, &k, &v, 0);
}

/* ---- opening, per process -------------------------------------------------------- */

static int open_tables(struct lmdb_store *st, MDB_txn *txn, bool create)
{
	struct shared_env *sh = st->sh;
	unsigned flags = create ? MDB_CREATE : 0;
	int rc = mdb_dbi_open(txn, "tokens", flags, &sh->tokens);
	if (rc == 0)
		rc = mdb_dbi_open(txn, "learned", flags, &sh->learned);
	if (rc == 0)
		rc = mdb_dbi_open(txn, "meta", flags, &sh->meta);
	if (rc != 0)
		return rc;
	uint32_t version;
	rc = meta_get(st, txn, "version", &version);
	if (rc != 0)
		return rc;
	if (version == 0 && create)
		return meta_put(st, txn, "version", STORE_VERSION);
	if (version != STORE_VERSION) {
		fail(st, "made by another version of postern's Bayes store (%u, not %u)",
		     version, STORE_VERSION);
		return WRONG_VERSION;
	}
	return 0;
}

/* Find (or, when the writer of this process made them, create) the
 * tables: 0, 1 = not made yet, -1. */
static int load_tables(struct lmdb_store *st)
{
	struct shared_env *sh = st->sh;
	bool create = st->writable && !sh->rdonly;
	MDB_txn *txn;
	int rc = mdb_txn_begin(sh->env, NULL, create ? 0 : MDB_RDONLY, &txn);
	if (rc == MDB_MAP_RESIZED) {
		mdb_env_set_mapsize(sh->env, 0);
		rc = mdb_txn_begin(sh->env, NULL, create ? 0 : MDB_RDONLY, &txn);
	}
	if (rc != 0)
		return fail(st, "cannot open the Bayes store: %s", mdb_strerror(rc));
	rc = open_tables(st, txn, create);
	if (rc == MDB_NOTFOUND && !create) {
		mdb_txn_abort(txn);  /* no learning has made the tables yet */
		return 1;
	}
	if (rc == 0)
		rc = mdb_txn_commit(txn);  /* keeps the table handles */
	else
		mdb_txn_abort(txn);
	if (rc == WRONG_VERSION)
		return -1;
	if (rc != 0)
		return fail(st, "cannot open the Bayes store: %s", mdb_strerror(rc));
	sh->have_tables = true;
	return 0;
}

/* Open the environment of dir, MDB_RDONLY when asked (or when the files
 * are not ours to write): *rdonly_r says which, *forced_r why. */
static int env_open_files(struct lmdb_store *st, bool want_rdonly, MDB_env **env_r,
			  bool *rdonly_r, bool *forced_r)
{
	MDB_env *env;
	bool rdonly = want_rdonly, forced = false;
	for (;;) {
		int rc = mdb_env_create(&env);
		if (rc != 0)
			return fail(st, "%s", mdb_strerror(rc));
		mdb_env_set_maxdbs(env, 4);
		mdb_env_set_maxreaders(env, MAX_READERS);
		rc = mdb_env_open(env, st->dir, MDB_NOTLS | (rdonly ? MDB_RDONLY : MDB_NOMETASYNC),
				  0600);
		if (rc == 0)
			break;
		mdb_env_close(env);
		if ((rc == EACCES || rc == EROFS) && !rdonly && !st->writable) {
			rdonly = forced = true;
			continue;
		}
		return fail(st, "cannot open the Bayes store: %s", mdb_strerror(rc));
	}
	int dead;
	mdb_reader_check(env, &dead);  /* slots of readers that died (a killed scanner) */
	*env_r = env;
	*rdonly_r = rdonly;
	*forced_r = forced;
	return 0;
}

/* Open the environment of dir for this process: read-only for a reader
 * (a read-write environment allocates its write buffers, megabytes per
 * scanner, whether it writes or not), read-write for a writer. */
static int env_open(struct lmdb_store *st, struct shared_env **sh_r)
{
	MDB_env *env;
	bool rdonly, forced;
	if (env_open_files(st, !st->writable, &env, &rdonly, &forced) < 0)
		return -1;
	struct shared_env *sh = xcalloc(1, sizeof(*sh));
	sh->dir = xstrdup(st->dir);
	sh->pid = getpid();
	sh->env = env;
	sh->rdonly = rdonly;
	sh->forced_rdonly = forced;
	sh->next = shared_envs;
	shared_envs = sh;
	*sh_r = sh;
	return 0;
}

/* A writer joins an environment its readers opened read-only: close it
 * and open it read-write (the readers' transactions, reset between uses,
 * go with it; they begin anew in the new one). */
static int env_upgrade(struct lmdb_store *st, struct shared_env *sh)
{
	for (struct lmdb_store *h = sh->handles; h != NULL; h = h->next_handle) {
		if (h->rtxn != NULL)
			mdb_txn_abort(h->rtxn);
		h->rtxn = NULL;
	}
	mdb_env_close(sh->env);
	sh->env = NULL;
	sh->have_tables = false;
	bool rdonly, forced;
	if (env_open_files(st, false, &sh->env, &rdonly, &forced) == 0) {
		sh->rdonly = false;
		return 0;
	}
	/* cannot write after all: the readers keep a read-only one */
	char why[sizeof(st->err)];
	memcpy(why, st->err, sizeof(why));
	struct lmdb_store reader = { .dir = st->dir };
	if (env_open_files(&reader, true, &sh->env, &rdonly, &forced) < 0)
		sh->env = NULL;
	memcpy(st->err, why, sizeof(why));
	return -1;
}

static void release_env(struct lmdb_store *st)
{
	struct shared_env *sh = st->sh;
	st->sh = NULL;
	if (sh == NULL || sh->pid != getpid()) {
		st->rtxn = NULL;  /* a parent's, inherited: not ours to touch */
		st->next_handle = NULL;
		return;
	}
	if (st->rtxn != NULL)
		mdb_txn_abort(st->rtxn);
	st->rtxn = NULL;
	for (struct lmdb_store **h = &sh->handles; *h != NULL; h = &(*h)->next_handle)
		if (*h == st) {
			*h = st->next_handle;
			break;
		}
	st->next_handle = NULL;
	if (--sh->users > 0)
		return;
	for (struct shared_env **p = &shared_envs; *p != NULL; p = &(*p)->next)
		if (*p == sh) {
			*p = sh->next;
			break;
		}
	if (sh->env != NULL && !sh->rdonly)
		mdb_env_sync(sh->env, 1);
	if (sh->env != NULL)
		mdb_env_close(sh->env);
	free(sh->dir);
	free(sh);
}

/* This process's environment with its tables: 0; 1 = a read-only handle
 * of a store with nothing learned yet (it reads as empty); -1. */
static int ensure_open(struct lmdb_store *st)
{
	if (st->sh != NULL && st->sh->pid != getpid())
		release_env(st);  /* forked since */
	if (st->sh == NULL) {
		char path[4096];
		snprintf(path, sizeof(path), "%s/data.mdb", st->dir);
		if (!st->writable && access(path, F_OK) != 0 && errno == ENOENT)
			return 1;
		struct shared_env *sh = shared_envs;
		while (sh != NULL && (sh->pid != getpid() || strcmp(sh->dir, st->dir) != 0))
			sh = sh->next;
		if (sh != NULL && st->writable && sh->rdonly &&
		    (sh->forced_rdonly || env_upgrade(st, sh) < 0))
			return sh->forced_rdonly ? fail(st, "opened read-only in this process") : -1;
		if (sh == NULL && env_open(st, &sh) < 0)
			return -1;
		sh->users++;
		st->sh = sh;
		st->next_handle = sh->handles;
		sh->handles = st;
	}
	if (st->sh->env == NULL)
		return fail(st, "the Bayes store could not be opened again read-only");
	if (st->writable && !st->sh->rdonly) {
		MDB_envinfo info;
		mdb_env_info(st->sh->env, &info);
		if (info.me_mapsize < st->map_size)
			mdb_env_set_mapsize(st->sh->env, st->map_size);
	}
	return st->sh->have_tables ? 0 : load_tables(st);
}

/* A read transaction of the newest snapshot; 1 = the store is empty. */
static int read_begin(struct lmdb_store *st, MDB_txn **txn_r)
{
	int rc = ensure_open(st);
	if (rc != 0)
		return rc;
	for (int attempt = 0; attempt < 2; attempt++) {
		rc = st->rtxn != NULL ? mdb_txn_renew(st->rtxn)
				      : mdb_txn_begin(st->sh->env, NULL, MDB_RDONLY, &st->rtxn);
		if (rc != MDB_MAP_RESIZED)
			break;
		/* Another process grew the map: adopt its size. */
		if (st->rtxn != NULL)
			mdb_txn_abort(st->rtxn);
		st->rtxn = NULL;
		mdb_env_set_mapsize(st->sh->env, 0);
	}
	if (rc != 0) {
		if (st->rtxn != NULL)
			mdb_txn_abort(st->rtxn);
		st->rtxn = NULL;
		return fail(st, "cannot read the Bayes store: %s", mdb_strerror(rc));
	}
	*txn_r = st->rtxn;
	return 0;
}

static void read_end(struct lmdb_store *st)
{
	mdb_txn_reset(st->rtxn);
}

/* ---- reading ---------------------------------------------------------------------- */

static int read_totals(struct lmdb_store *st, MDB_txn *txn, uint32_t *nspam_r, uint32_t *nham_r)
{
	uint32_t nspam, nham;
	int rc = meta_get(st, txn, "nspam", &nspam);
	if (rc == 0)
		rc = meta_get(st, txn, "nham", &nham);
	if (rc != 0)
		return fail(st, "cannot read the totals: %s", mdb_strerror(rc));
	if (nspam_r != NULL)
		*nspam_r = nspam;
	if (nham_r != NULL)
		*nham_r = nham;
	return 0;
}

static int lmdb_totals(struct spam_store *s, uint32_t *nspam_r, uint32_t *nham_r)
{
	struct lmdb_store *st = store_of(s);
	MDB_txn *txn;
	*nspam_r = *nham_r = 0;
	int rc = read_begin(st, &txn);
	if (rc != 0)
		return rc > 0 ? 0 : -1;
	rc = read_totals(st, txn, nspam_r, nham_r);
	read_end(st);
	return rc;
}

static int lmdb_lookup(struct spam_store *s, const uint64_t *tokens, size_t n,
		       struct spam_token_counts *out, uint32_t *nspam_r, uint32_t *nham_r)
{
	struct lmdb_store *st = store_of(s);
	MDB_txn *txn;
	memset(out, 0, n * sizeof(*out));
	if (nspam_r != NULL)
		*nspam_r = 0;
	if (nham_r != NULL)
		*nham_r = 0;
	int rc = read_begin(st, &txn);
	if (rc != 0)
		return rc > 0 ? 0 : -1;
	rc = read_totals(st, txn, nspam_r, nham_r);
	for (size_t i = 0; rc == 0 && i < n; i++) {
		unsigned char key[8];
		put_be64(key, tokens[i]);
		MDB_val k = { sizeof(key), key }, v;
		int got = mdb_get(txn, st->sh->tokens, &k, &v);
		if (got == 0)
			decode_counts(&v, &out[i]);
		else if (got != MDB_NOTFOUND)
			rc = fail(st, "cannot read a token: %s", mdb_strerror(got));
	}
	read_end(st);
	return rc;
}

/* ---- writing ---------------------------------------------------------------------- */

/* Run one write transaction of fn, growing the map while it is full. */
static int write_txn(struct lmdb_store *st, int (*fn)(struct lmdb_store *, MDB_txn *, void *),
		     void *arg)
{
	if (!st->writable)
		return fail(st, "the Bayes store is open read-only");
	int rc = ensure_open(st);
	if (rc != 0)
		return -1;
	for (int attempt = 0; attempt < WRITE_ATTEMPTS; attempt++) {
		MDB_txn *txn;
		rc = mdb_txn_begin(st->sh->env, NULL, 0, &txn);
		if (rc == MDB_MAP_RESIZED) {
			mdb_env_set_mapsize(st->sh->env, 0);
			continue;
		}
		if (rc != 0)
			return fail(st, "cannot write the Bayes store: %s", mdb_strerror(rc));
		rc = fn(st, txn, arg);
		if (rc == 0)
			rc = mdb_txn_commit(txn);
		else
			mdb_txn_abort(txn);
		if (rc == 0)
			return 0;
		if (rc != MDB_MAP_FULL)
			return fail(st, "cannot write the Bayes store: %s", mdb_strerror(rc));
		MDB_envinfo info;
		mdb_env_info(st->sh->env, &info);
		if (info.me_mapsize >= MAP_SIZE_MAX)
			break;
		rc = mdb_env_set_mapsize(st->sh->env, info.me_mapsize * 2);
		if (rc != 0)
			return fail(st, "cannot grow the map to %zu bytes: %s", info.me_mapsize * 2,
				    mdb_strerror(rc));
	}
	return fail(st, "the Bayes store is full and cannot grow");
}

static uint32_t add_sat(uint32_t v, int delta)
{
	if (delta > 0)
		return v == UINT32_MAX ? v : v + 1;
	return v == 0 ? 0 : v - 1;
}

/* Add delta (+1 or -1) to the counts of class spam of every token. */
static int apply(struct lmdb_store *st, MDB_txn *txn, const uint64_t *tokens, size_t n,
		 bool spam, int delta)
{
	uint32_t day = today(st);
	for (size_t i = 0; i < n; i++) {
		unsigned char key[8], val[TOKEN_VALUE_SIZE];
		put_be64(key, tokens[i]);
		MDB_val k = { sizeof(key), key }, v;
		struct spam_token_counts c;
		int rc = mdb_get(txn, st->sh->tokens, &k, &v);
		if (rc != 0 && rc != MDB_NOTFOUND)
			return rc;
		bool found = rc == 0;
		if (found)
			decode_counts(&v, &c);
		else
			memset(&c, 0, sizeof(c));
		if (spam)
			c.spam = add_sat(c.spam, delta);
		else
			c.ham = add_sat(c.ham, delta);
		if (delta > 0 && day > c.atime)
			c.atime = day;
		if (c.spam == 0 && c.ham == 0) {
			rc = found ? mdb_del(txn, st->sh->tokens, &k, NULL) : 0;
		} else {
			put_le32(val, c.spam);
			put_le32(val + 4, c.ham);
			put_le32(val + 8, c.atime);
			v.mv_size = sizeof(val);
			v.mv_data = val;
			rc = mdb_put(txn, st->sh->tokens, &k, &v, 0);
		}
		if (rc != 0)
			return rc;
	}
	return 0;
}

static int add_total(struct lmdb_store *st, MDB_txn *txn, bool spam, int delta)
{
	const char *name = spam ? "nspam" : "nham";
	uint32_t v;
	int rc = meta_get(st, txn, name, &v);
	return rc != 0 ? rc : meta_put(st, txn, name, add_sat(v, delta));
}

struct learning {
	uint64_t id;
	const uint64_t *tokens;
	size_t n;
	enum spam_learn_as as;
	enum spam_learn_outcome outcome;
};

/* Take back (delta -1) or add (+1) one message of class spam. */
static int count_message(struct lmdb_store *st, MDB_txn *txn, const struct learning *l,
			 bool spam, int delta)
{
	int rc = apply(st, txn, l->tokens, l->n, spam, delta);
	return rc != 0 ? rc : add_total(st, txn, spam, delta);
}

static int learn_in(struct lmdb_store *st, MDB_txn *txn, void *arg)
{
	struct learning *l = arg;
	unsigned char key[8], val[LEARNED_VALUE_SIZE] = { 0 };
	put_be64(key, l->id);
	MDB_val k = { sizeof(key), key }, v;
	int rc = mdb_get(txn, st->sh->learned, &k, &v);
	if (rc != 0 && rc != MDB_NOTFOUND)
		return rc;
	bool known = rc == 0 && v.mv_size == LEARNED_VALUE_SIZE;
	bool was_spam = known && ((const unsigned char *)v.mv_data)[4] == 's';
	if (l->as == SPAM_LEARN_FORGET) {
		if (!known) {
			l->outcome = SPAM_LEARN_UNKNOWN;
			return 0;
		}
		l->outcome = SPAM_LEARN_DONE;
		rc = count_message(st, txn, l, was_spam, -1);
		return rc != 0 ? rc : mdb_del(txn, st->sh->learned, &k, NULL);
	}
	bool spam = l->as == SPAM_LEARN_SPAM;
	if (known && was_spam == spam) {
		l->outcome = SPAM_LEARN_ALREADY;
		return 0;
	}
	l->outcome = known ? SPAM_LEARN_SWITCHED : SPAM_LEARN_DONE;
	if (known && (rc = count_message(st, txn, l, was_spam, -1)) != 0)
		return rc;
	if ((rc = count_message(st, txn, l, spam, +1)) != 0)
		return rc;
	put_le32(val, today(st));
	val[4] = spam ? 's' : 'h';
	v.mv_size = sizeof(val);
	v.mv_data = val;
	return mdb_put(txn, st->sh->learned, &k, &v, 0);
}

static int lmdb_learn(struct spam_store *s, uint64_t id, const uint64_t *tokens, size_t n,
		      enum spam_learn_as as, enum spam_learn_outcome *outcome_r)
{
	struct learning l = { id, tokens, n, as, SPAM_LEARN_DONE };
	int rc = write_txn(store_of(s), learn_in, &l);
	if (rc == 0 && outcome_r != NULL)
		*outcome_r = l.outcome;
	return rc;
}

/* ---- expiry ------------------------------------------------------------------------ */

struct expiry {
	uint32_t before, min;
	uint64_t max_tokens;
	uint64_t removed;
};

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

/* The order in which tokens go when the store is too big: the least
 * recently learned first, the rarest first among those. */
static uint64_t age_key(const struct spam_token_counts *c)
{
	return (uint64_t)c->atime << 32 | ((uint64_t)c->spam + c->ham > UINT32_MAX
						   ? UINT32_MAX : c->spam + c->ham);
}

/* Delete the tokens for which keep() is false. */
static int sweep(struct lmdb_store *st, MDB_txn *txn,
		 bool (*keep)(const struct spam_token_counts *, void *), void *arg,
		 uint64_t *removed_r)
{
	MDB_cursor *cur;
	int rc = mdb_cursor_open(txn, st->sh->tokens, &cur);
	if (rc != 0)
		return rc;
	MDB_val k, v;
	for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
	     rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
		struct spam_token_counts c;
		decode_counts(&v, &c);
		if (keep(&c, arg))
			continue;
		/* The cursor then stands on the next token, which MDB_NEXT
		 * returns without moving. */
		if ((rc = mdb_cursor_del(cur, 0)) != 0)
			break;
		(*removed_r)++;
	}
	mdb_cursor_close(cur);
	return rc == MDB_NOTFOUND ? 0 : rc;
}

static bool keep_by_age(const struct spam_token_counts *c, void *arg)
{
	const struct expiry *e = arg;
	return c->atime >= e->before || (uint64_t)c->spam + c->ham >= e->min;
}

struct cutoff {
	uint64_t key;       /* tokens below it go */
	uint64_t at_key;    /* and this many of those equal to it */
};

static bool keep_by_cutoff(const struct spam_token_counts *c, void *arg)
{
	struct cutoff *cut = arg;
	uint64_t key = age_key(c);
	if (key < cut->key)
		return false;
	if (key == cut->key && cut->at_key > 0) {
		cut->at_key--;
		return false;
	}
	return true;
}

/* Keys of every token, sorted; NULL when there are none. */
static int collect_keys(struct lmdb_store *st, MDB_txn *txn, uint64_t **keys_r, size_t *n_r)
{
	MDB_stat ms;
	int rc = mdb_stat(txn, st->sh->tokens, &ms);
	if (rc != 0)
		return rc;
	uint64_t *keys = xreallocarray(NULL, ms.ms_entries + 1, sizeof(*keys));
	size_t n = 0;
	MDB_cursor *cur;
	if ((rc = mdb_cursor_open(txn, st->sh->tokens, &cur)) != 0) {
		free(keys);
		return rc;
	}
	MDB_val k, v;
	for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0 && n < ms.ms_entries;
	     rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
		struct spam_token_counts c;
		decode_counts(&v, &c);
		keys[n++] = age_key(&c);
	}
	mdb_cursor_close(cur);
	qsort(keys, n, sizeof(*keys), cmp_u64);
	*keys_r = keys;
	*n_r = n;
	return rc == MDB_NOTFOUND || rc == 0 ? 0 : rc;
}

/* Delete the learned records dated before day `before`: the totals keep
 * counting those messages, but they can no longer be forgotten, and one
 * learned again counts again (as SpamAssassin's seen records with a TTL).
 * Without it the table grows by one record for every message learned,
 * autolearning included, for ever. */
static int forget_old_records(struct lmdb_store *st, MDB_txn *txn, uint32_t before)
{
	MDB_cursor *cur;
	int rc = mdb_cursor_open(txn, st->sh->learned, &cur);
	if (rc != 0)
		return rc;
	MDB_val k, v;
	for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
	     rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
		uint32_t day = v.mv_size == LEARNED_VALUE_SIZE ? get_le32(v.mv_data) : 0;
		if (day >= before)
			continue;
		/* as in sweep(): the cursor then stands on the next record */
		if ((rc = mdb_cursor_del(cur, 0)) != 0)
			break;
	}
	mdb_cursor_close(cur);
	return rc == MDB_NOTFOUND ? 0 : rc;
}

static int expire_in(struct lmdb_store *st, MDB_txn *txn, void *arg)
{
	struct expiry *e = arg;
	e->removed = 0;
	int rc = e->before > 0 ? sweep(st, txn, keep_by_age, e, &e->removed) : 0;
	if (rc == 0 && e->before > 0)
		rc = forget_old_records(st, txn, e->before);
	if (rc != 0)
		return rc;
	MDB_stat ms;
	if ((rc = mdb_stat(txn, st->sh->tokens, &ms)) != 0)
		return rc;
	if (e->max_tokens > 0 && ms.ms_entries > e->max_tokens) {
		uint64_t *keys;
		size_t n;
		if ((rc = collect_keys(st, txn, &keys, &n)) != 0)
			return rc;
		size_t excess = n > e->max_tokens ? n - (size_t)e->max_tokens : 0;
		if (excess > 0) {
			struct cutoff cut = { keys[excess - 1], 0 };
			size_t below = 0;
			while (keys[below] < cut.key)
				below++;
			cut.at_key = excess - below;
			rc = sweep(st, txn, keep_by_cutoff, &cut, &e->removed);
		}
		free(keys);
		if (rc != 0)
			return rc;
	}
	return meta_put(st, txn, "last_expire", today(st));
}

static int lmdb_expire(struct spam_store *s, uint32_t before, uint32_t min, uint64_t max_tokens,
		       uint64_t *removed_r)
{
	struct expiry e = { before, min, max_tokens, 0 };
	int rc = write_txn(store_of(s), expire_in, &e);
	if (removed_r != NULL)
		*removed_r = rc == 0 ? e.removed : 0;
	return rc;
}

/* ---- statistics --------------------------------------------------------------------- */

static int stats_in(struct lmdb_store *st, MDB_txn *txn, struct spam_store_stats *r)
{
	int rc = read_totals(st, txn, &r->nspam, &r->nham);
	if (rc != 0)
		return rc;
	MDB_stat ts, ls;
	if ((rc = mdb_stat(txn, st->sh->tokens, &ts)) != 0 ||
	    (rc = mdb_stat(txn, st->sh->learned, &ls)) != 0 ||
	    (rc = meta_get(st, txn, "last_expire", &r->last_expire)) != 0)
		return fail(st, "cannot read the statistics: %s", mdb_strerror(rc));
	r->tokens = ts.ms_entries;
	r->messages = ls.ms_entries;
	MDB_envinfo info;
	MDB_stat es;
	mdb_env_info(st->sh->env, &info);
	mdb_env_stat(st->sh->env, &es);
	r->used_bytes = ((uint64_t)info.me_last_pgno + 1) * es.ms_psize;
	r->map_bytes = info.me_mapsize;
	return 0;
}

static int lmdb_stats(struct spam_store *s, struct spam_store_stats *r)
{
	struct lmdb_store *st = store_of(s);
	memset(r, 0, sizeof(*r));
	MDB_txn *txn;
	int rc = read_begin(st, &txn);
	if (rc != 0)
		return rc > 0 ? 0 : -1;
	rc = stats_in(st, txn, r);
	read_end(st);
	return rc;
}

static const char *lmdb_last_error(struct spam_store *s)
{
	return store_of(s)->err;
}

static void lmdb_close(struct spam_store *s)
{
	struct lmdb_store *st = store_of(s);
	if (st == NULL)
		return;
	release_env(st);
	free(st->dir);
	free(st);
}

static const struct spam_store_ops lmdb_ops = {
	lmdb_totals, lmdb_lookup, lmdb_learn, lmdb_expire, lmdb_stats, lmdb_last_error, lmdb_close,
};

void spam_store_lmdb_set_today(struct spam_store *s, uint32_t day)
{
	store_of(s)->today = day;
}

struct spam_store *spam_store_lmdb_open(const char *dir, bool writable, uint64_t map_size,
					char **err_r)
{
	struct lmdb_store *st = xcalloc(1, sizeof(*st));
	st->base.ops = &lmdb_ops;
	st->dir = xstrdup(dir);
	st->writable = writable;
	st->map_size = map_size;
	*err_r = NULL;
	if (writable) {
		/* made (and checked) now, but closed again: each process that
		 * uses the handle, this one or one forked from it, then opens
		 * its own environment */
		if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
			fail(st, "cannot create the Bayes store's folder: %s", strerror(errno));
			*err_r = xstrdup(st->err);
		} else if (ensure_open(st) != 0) {
			*err_r = xstrdup(st->err);
		}
		if (*err_r != NULL) {
			lmdb_close(&st->base);
			return NULL;
		}
		release_env(st);
	}
	return &st->base;
}

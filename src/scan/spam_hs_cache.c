/*
 * spam_hs_cache.c - the compiled-database cache of the spam rule engine
 * (spam_hs_cache.h): reading and checking the file, finding entries by
 * their key bytes, writing it again.
 *
 * Layout (integers little-endian):
 *   "PSTNHSC\n"  u32 format  u32 entries  u64 identity  u64 checksum
 *   entries: u32 kind  u32 status  u32 key_len  u32 data_len  u64 info  key  data
 * identity = XXH64 of this library's hs_version(), the CPU features
 * Hyperscan sees (hs_populate_platform) and the format; checksum = XXH64
 * of everything after the header. Entries must fill the file exactly.
 *
 * Untrusted input: the file's bytes (a bounded parser that never trusts a
 * length before checking it against what is left; fuzzed). Privilege:
 * `user`.
 */
#include "spam_hs_cache.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include "../lib/buf.h"
#include "../lib/safeio.h"
#include "../lib/xalloc.h"

#define CACHE_MAGIC "PSTNHSC\n"
#define CACHE_FORMAT 1u
#define HEADER_SIZE 32u
#define ENTRY_HEAD_SIZE 24u
#define KEY_SEED 0x70737468u  /* "psth" */

struct entry {
	uint32_t kind, status;
	const unsigned char *key;   /* into the file's bytes, or owned (fresh) */
	size_t key_len;
	const unsigned char *data;
	size_t data_len;
	uint64_t info;
	uint64_t hash;              /* of kind and key */
	bool used;                  /* got or put during this load: saved */
	bool owned;                 /* key and data are malloc'ed */
};

struct spam_hs_cache {
	char *path;                 /* NULL: never saved */
	buf_t file;                 /* the bytes read */
	struct entry *entries;      /* the file's, sorted by hash, then the new ones */
	size_t count, cap;
	size_t sorted;              /* entries[0..sorted) are sorted by hash */
	bool dirty;                 /* something to write */
};

/* ---- little-endian fields --------------------------------------------------------- */

static uint32_t get32(const unsigned char *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t get64(const unsigned char *p)
{
	return (uint64_t)get32(p) | (uint64_t)get32(p + 4) << 32;
}

static void put32(buf_t *b, uint32_t v)
{
	unsigned char p[4] = { (unsigned char)v, (unsigned char)(v >> 8), (unsigned char)(v >> 16),
			       (unsigned char)(v >> 24) };
	buf_append(b, p, sizeof(p));
}

static void put64(buf_t *b, uint64_t v)
{
	put32(b, (uint32_t)v);
	put32(b, (uint32_t)(v >> 32));
}

/* ---- identity and keys -------------------------------------------------------------- */

/* This library and CPU: a database compiled elsewhere is not ours. */
static uint64_t identity(void)
{
	hs_platform_info_t plat;
	memset(&plat, 0, sizeof(plat));
	(void)hs_populate_platform(&plat);
	XXH64_state_t *st = XXH64_createState();
	if (st == NULL)
		return 0;
	XXH64_reset(st, CACHE_FORMAT);
	const char *v = hs_version();
	XXH64_update(st, v, strlen(v));
	uint32_t fields[2] = { plat.tune, CACHE_FORMAT };
	unsigned long long features = plat.cpu_features;
	XXH64_update(st, fields, sizeof(fields));
	XXH64_update(st, &features, sizeof(features));
	uint64_t h = XXH64_digest(st);
	XXH64_freeState(st);
	return h;
}

uint64_t spam_hs_cache_identity(void)
{
	return identity();
}

static uint64_t key_hash(uint32_t kind, const void *key, size_t len)
{
	return XXH64(key, len, KEY_SEED + kind);
}

/* ---- the table ------------------------------------------------------------------------ */

static struct entry *add_entry(struct spam_hs_cache *c)
{
	if (c->count == c->cap) {
		c->cap = c->cap ? c->cap * 2 : 64;
		c->entries = xreallocarray(c->entries, c->cap, sizeof(*c->entries));
	}
	struct entry *e = &c->entries[c->count++];
	memset(e, 0, sizeof(*e));
	return e;
}

static int by_hash(const void *a, const void *b)
{
	uint64_t x = ((const struct entry *)a)->hash, y = ((const struct entry *)b)->hash;
	return x < y ? -1 : x > y;
}

static bool same_key(const struct entry *e, uint32_t kind, uint64_t hash, const void *key,
		     size_t len)
{
	return e->hash == hash && e->kind == kind && e->key_len == len &&
	       memcmp(e->key, key, len) == 0;
}

static struct entry *find(struct spam_hs_cache *c, uint32_t kind, const void *key, size_t len)
{
	uint64_t h = key_hash(kind, key, len);
	/* the file's entries: the first of this hash, then its equals */
	size_t lo = 0, hi = c->sorted;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (c->entries[mid].hash < h)
			lo = mid + 1;
		else
			hi = mid;
	}
	for (size_t i = lo; i < c->sorted && c->entries[i].hash == h; i++)
		if (same_key(&c->entries[i], kind, h, key, len))
			return &c->entries[i];
	for (size_t i = c->sorted; i < c->count; i++)
		if (same_key(&c->entries[i], kind, h, key, len))
			return &c->entries[i];
	return NULL;
}

struct spam_hs_cache *spam_hs_cache_new(void)
{
	return xcalloc(1, sizeof(struct spam_hs_cache));
}

size_t spam_hs_cache_entries(const struct spam_hs_cache *c)
{
	return c != NULL ? c->count : 0;
}

void spam_hs_cache_entry_key(const struct spam_hs_cache *c, size_t i, enum spam_hs_kind *kind_r,
			     const void **key_r, size_t *len_r)
{
	*kind_r = (enum spam_hs_kind)c->entries[i].kind;
	*key_r = c->entries[i].key;
	*len_r = c->entries[i].key_len;
}

static void entry_release(struct entry *e)
{
	if (e->owned) {
		free((void *)e->key);
		free((void *)e->data);
	}
	e->key = e->data = NULL;
	e->owned = false;
}

void spam_hs_cache_free(struct spam_hs_cache **cp)
{
	struct spam_hs_cache *c = *cp;
	if (c == NULL)
		return;
	for (size_t i = 0; i < c->count; i++)
		entry_release(&c->entries[i]);
	free(c->entries);
	buf_free(&c->file);
	free(c->path);
	free(c);
	*cp = NULL;
}

/* ---- reading ------------------------------------------------------------------------------ */

int spam_hs_cache_parse(struct spam_hs_cache *c, const unsigned char *data, size_t len,
			char *why, size_t why_len)
{
	if (len < HEADER_SIZE || memcmp(data, CACHE_MAGIC, 8) != 0) {
		snprintf(why, why_len, "not a cache file of this kind");
		return -1;
	}
	if (get32(data + 8) != CACHE_FORMAT) {
		snprintf(why, why_len, "format %u, not %u", get32(data + 8), CACHE_FORMAT);
		return -1;
	}
	uint32_t count = get32(data + 12);
	if (get64(data + 16) != identity()) {
		snprintf(why, why_len, "made by another Hyperscan library or for another CPU");
		return -1;
	}
	if (XXH64(data + HEADER_SIZE, len - HEADER_SIZE, 0) != get64(data + 24)) {
		snprintf(why, why_len, "damaged or truncated (the checksum does not match)");
		return -1;
	}
	if (count > SPAM_HS_CACHE_ENTRIES_MAX) {
		snprintf(why, why_len, "more than %u entries", SPAM_HS_CACHE_ENTRIES_MAX);
		return -1;
	}
	size_t pos = HEADER_SIZE;
	for (uint32_t i = 0; i < count; i++) {
		if (len - pos < ENTRY_HEAD_SIZE) {
			snprintf(why, why_len, "entry %u is cut short", i);
			goto bad;
		}
		uint32_t kind = get32(data + pos), status = get32(data + pos + 4);
		size_t klen = get32(data + pos + 8), dlen = get32(data + pos + 12);
		uint64_t info = get64(data + pos + 16);
		pos += ENTRY_HEAD_SIZE;
		if ((kind != SPAM_HS_KIND_GATE && kind != SPAM_HS_KIND_LITERALS) ||
		    status > SPAM_HS_TOO_LARGE || klen == 0 || klen > SPAM_HS_CACHE_KEY_MAX ||
		    klen > len - pos || dlen > len - pos - klen ||
		    (status != SPAM_HS_COMPILED && dlen != 0)) {
			snprintf(why, why_len, "entry %u is malformed", i);
			goto bad;
		}
		struct entry *e = add_entry(c);
		e->kind = kind;
		e->status = status;
		e->key = data + pos;
		e->key_len = klen;
		e->data = data + pos + klen;
		e->data_len = dlen;
		e->info = info;
		e->hash = key_hash(kind, e->key, klen);
		pos += klen + dlen;
	}
	if (pos != len) {
		snprintf(why, why_len, "%zu bytes after the last entry", len - pos);
		goto bad;
	}
	if (c->count > 1)
		qsort(c->entries, c->count, sizeof(*c->entries), by_hash);
	c->sorted = c->count;
	return 0;
bad:
	c->count = 0;
	return -1;
}

/* Open the file if it is one we may trust to be ours: a regular file,
 * owned by this user, writable by nobody else. -1 (errno ENOENT: there
 * is none) or the descriptor. */
static int open_ours(const char *path, char *why, size_t why_len, off_t *size_r)
{
	int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
	if (fd < 0) {
		int e = errno;
		snprintf(why, why_len, "cannot open it: %s", strerror(e));
		errno = e;
		return -1;
	}
	struct stat st;
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		snprintf(why, why_len, "not a regular file");
	} else if (st.st_uid != geteuid()) {
		snprintf(why, why_len, "owned by uid %lu, not by this process's user (uid %lu)",
			 (unsigned long)st.st_uid, (unsigned long)geteuid());
	} else if ((st.st_mode & 022) != 0) {
		snprintf(why, why_len, "writable by other users (mode %04o)",
			 (unsigned)(st.st_mode & 07777));
	} else if ((uint64_t)st.st_size > SPAM_HS_CACHE_FILE_MAX) {
		snprintf(why, why_len, "larger than %u bytes", SPAM_HS_CACHE_FILE_MAX);
	} else {
		*size_r = st.st_size;
		return fd;
	}
	close(fd);
	errno = EPERM;
	return -1;
}

static int read_fd(int fd, size_t size, buf_t *out)
{
	buf_reserve(out, size + 1);
	size_t got = 0;
	while (got < size) {
		ssize_t n = read(fd, out->data + got, size - got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		got += (size_t)n;
	}
	out->len = got;
	return 0;
}

struct spam_hs_cache *spam_hs_cache_load(const char *path, char **why_r)
{
	struct spam_hs_cache *c = spam_hs_cache_new();
	*why_r = NULL;
	if (path == NULL)
		return c;
	c->path = xstrdup(path);
	char why[256];
	off_t size = 0;
	int fd = open_ours(path, why, sizeof(why), &size);
	if (fd < 0) {
		if (errno != ENOENT)
			*why_r = xstrdup(why);
		c->dirty = errno != ENOENT;  /* replace what is there */
		return c;
	}
	int rc = read_fd(fd, (size_t)size, &c->file);
	close(fd);
	if (rc < 0) {
		snprintf(why, sizeof(why), "cannot read it");
	} else if (spam_hs_cache_parse(c, (const unsigned char *)c->file.data, c->file.len, why,
				       sizeof(why)) == 0) {
		return c;
	}
	*why_r = xstrdup(why);
	buf_free(&c->file);
	c->dirty = true;
	return c;
}

/* ---- getting and putting --------------------------------------------------------------------- */

enum spam_hs_status spam_hs_cache_get(struct spam_hs_cache *c, enum spam_hs_kind kind,
				      const void *key, size_t key_len, hs_database_t **db_r,
				      uint64_t *info_r)
{
	*db_r = NULL;
	*info_r = 0;
	struct entry *e = find(c, (uint32_t)kind, key, key_len);
	if (e == NULL)
		return SPAM_HS_MISS;
	if (e->status == SPAM_HS_COMPILED) {
		hs_database_t *db = NULL;
		if (hs_deserialize_database((const char *)e->data, e->data_len, &db) != HS_SUCCESS) {
			/* refused by Hyperscan's own checks: dropped (the caller
			 * compiles it again, and may put it back) */
			e->used = false;
			c->dirty = true;
			return SPAM_HS_MISS;
		}
		*db_r = db;
	}
	*info_r = e->info;
	e->used = true;
	return (enum spam_hs_status)e->status;
}

enum spam_hs_status spam_hs_cache_peek(struct spam_hs_cache *c, enum spam_hs_kind kind,
				       const void *key, size_t key_len, uint64_t *info_r,
				       size_t *db_size_r)
{
	*info_r = 0;
	*db_size_r = 0;
	struct entry *e = find(c, (uint32_t)kind, key, key_len);
	if (e == NULL)
		return SPAM_HS_MISS;
	if (e->status == SPAM_HS_COMPILED &&
	    hs_serialized_database_size((const char *)e->data, e->data_len, db_size_r) !=
		    HS_SUCCESS) {
		c->dirty = true;
		return SPAM_HS_MISS;
	}
	*info_r = e->info;
	e->used = true;
	return (enum spam_hs_status)e->status;
}

void spam_hs_cache_put(struct spam_hs_cache *c, enum spam_hs_kind kind, const void *key,
		       size_t key_len, enum spam_hs_status status, const hs_database_t *db,
		       uint64_t info)
{
	if (key_len == 0 || key_len > SPAM_HS_CACHE_KEY_MAX)
		return;
	char *bytes = NULL;
	size_t len = 0;
	if (status == SPAM_HS_COMPILED) {
		if (db == NULL || hs_serialize_database(db, &bytes, &len) != HS_SUCCESS)
			return;
		if (len > UINT32_MAX) {
			free(bytes);
			return;
		}
	}
	struct entry *e = find(c, (uint32_t)kind, key, key_len);
	if (e != NULL) {
		entry_release(e);
	} else {
		e = add_entry(c);
		e->kind = (uint32_t)kind;
		e->hash = key_hash((uint32_t)kind, key, key_len);
	}
	unsigned char *k = xmalloc(key_len);
	memcpy(k, key, key_len);
	e->key = k;
	e->key_len = key_len;
	e->status = (uint32_t)status;
	e->data = (const unsigned char *)bytes;
	e->data_len = len;
	e->info = info;
	e->owned = true;
	e->used = true;
	c->dirty = true;
}

/* ---- writing ------------------------------------------------------------------------------------ */

int spam_hs_cache_save(struct spam_hs_cache *c, char **why_r)
{
	*why_r = NULL;
	if (c->path == NULL)
		return 0;
	size_t kept = 0;
	for (size_t i = 0; i < c->count; i++)
		kept += c->entries[i].used;
	if (!c->dirty && kept == c->count)
		return 0;  /* the file holds exactly what is used */
	buf_t out = BUF_INIT;
	buf_append(&out, CACHE_MAGIC, 8);
	put32(&out, CACHE_FORMAT);
	put32(&out, (uint32_t)kept);
	put64(&out, identity());
	put64(&out, 0);  /* the checksum, below */
	for (size_t i = 0; i < c->count; i++) {
		const struct entry *e = &c->entries[i];
		if (!e->used)
			continue;
		put32(&out, e->kind);
		put32(&out, e->status);
		put32(&out, (uint32_t)e->key_len);
		put32(&out, (uint32_t)e->data_len);
		put64(&out, e->info);
		buf_append(&out, e->key, e->key_len);
		buf_append(&out, e->data, e->data_len);
	}
	uint64_t sum = XXH64(out.data + HEADER_SIZE, out.len - HEADER_SIZE, 0);
	buf_t s = BUF_INIT;
	put64(&s, sum);
	memcpy(out.data + 24, s.data, 8);
	buf_free(&s);
	int rc = -1;
	buf_t tmp = BUF_INIT;
	buf_printf(&tmp, "%s.tmp.%ld", c->path, (long)getpid());
	if (out.len > SPAM_HS_CACHE_FILE_MAX) {
		buf_printf(&s, "it would be larger than %u bytes", SPAM_HS_CACHE_FILE_MAX);
		*why_r = buf_steal(&s);
		goto done;
	}
	unlink(buf_cstr(&tmp));  /* left by a process of this pid that died writing */
	int fd = open(buf_cstr(&tmp), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0) {
		buf_printf(&s, "cannot write %s: %s", buf_cstr(&tmp), strerror(errno));
		*why_r = buf_steal(&s);
		goto done;
	}
	int written = safeio_write_all(fd, out.data, out.len);
	int err = errno;
	if (close(fd) < 0 && written == 0) {
		written = -1;
		err = errno;
	}
	if (written == 0 && rename(buf_cstr(&tmp), c->path) < 0) {
		written = -1;
		err = errno;
	}
	if (written < 0) {
		buf_printf(&s, "cannot write %s: %s", c->path, strerror(err));
		*why_r = buf_steal(&s);
		unlink(buf_cstr(&tmp));
		goto done;
	}
	c->dirty = false;
	rc = 1;
done:
	buf_free(&tmp);
	buf_free(&out);
	return rc;
}

/*
 * hashmap.c - open-addressing string hash table (see hashmap.h), keyed
 * with SipHash from OpenSSL under a per-process random key.
 *
 * RFCs: none. Untrusted input: the keys (recipient addresses from SMTP
 * clients among them), which is why the hash is keyed. Privilege: every
 * process; the key comes from getrandom() and never leaves the process.
 */
#include "hashmap.h"

#include <errno.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/params.h>
#include <openssl/provider.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "log.h"
#include "xalloc.h"

#define HASH_KEY_BYTES 16 /* SipHash's key */
#define HASH_OUT_BYTES 8  /* SipHash-2-4 with a 64-bit result */

/* The process's keyed SipHash context, made once; each hash works on a
 * copy, so threads may hash at the same time. */
static struct {
	pthread_once_t once;
	OSSL_LIB_CTX *libctx;
	OSSL_PROVIDER *provider;
	EVP_MAC *mac;
	EVP_MAC_CTX *keyed;
} hash_state = { .once = PTHREAD_ONCE_INIT };

/* A random key from the kernel; fatal if there is none (a broken
 * environment: every table would be open to flooding). */
static void random_key(unsigned char key[HASH_KEY_BYTES])
{
	size_t got = 0;
	while (got < HASH_KEY_BYTES) {
		ssize_t n = getrandom(key + got, HASH_KEY_BYTES - got, 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			log_fatal("hash table key: getrandom: %s", strerror(errno));
		got += (size_t)n;
	}
}

static void hash_state_init(void)
{
	unsigned char key[HASH_KEY_BYTES];
	size_t out_len = HASH_OUT_BYTES;
	OSSL_PARAM params[] = { OSSL_PARAM_construct_size_t(OSSL_MAC_PARAM_SIZE, &out_len),
				OSSL_PARAM_construct_end() };

	hash_state.libctx = OSSL_LIB_CTX_new();
	if (hash_state.libctx != NULL)
		hash_state.provider = OSSL_PROVIDER_load(hash_state.libctx, "default");
	if (hash_state.provider != NULL)
		hash_state.mac = EVP_MAC_fetch(hash_state.libctx, OSSL_MAC_NAME_SIPHASH, NULL);
	if (hash_state.mac != NULL)
		hash_state.keyed = EVP_MAC_CTX_new(hash_state.mac);
	if (hash_state.keyed == NULL)
		log_fatal("hash table key: OpenSSL offers no SipHash");
	random_key(key);
	int ok = EVP_MAC_init(hash_state.keyed, key, sizeof(key), params);
	OPENSSL_cleanse(key, sizeof(key));
	if (!ok)
		log_fatal("hash table key: cannot key SipHash");
}

static uint64_t hash_key(const char *s)
{
	unsigned char out[HASH_OUT_BYTES];
	size_t out_len = 0;
	uint64_t h = 0;

	pthread_once(&hash_state.once, hash_state_init);
	EVP_MAC_CTX *ctx = EVP_MAC_CTX_dup(hash_state.keyed);
	if (ctx == NULL || !EVP_MAC_update(ctx, (const unsigned char *)s, strlen(s)) ||
	    !EVP_MAC_final(ctx, out, &out_len, sizeof(out)) || out_len != sizeof(out))
		log_fatal("hash table: SipHash failed");
	EVP_MAC_CTX_free(ctx);
	memcpy(&h, out, sizeof(h));
	return h;
}

/* Slot holding key, or the slot where it would be inserted; *probes_r
 * (may be NULL) counts the slots examined. */
static struct hashmap_entry *find_slot(const hashmap_t *m, const char *key, uint64_t h,
				       size_t *probes_r)
{
	size_t mask = m->cap - 1, i = (size_t)h & mask, probes = 0;
	struct hashmap_entry *tomb = NULL;
	for (;;) {
		struct hashmap_entry *e = &m->slots[i];
		probes++;
		if (e->key == NULL) {
			if (!e->deleted) {
				if (probes_r != NULL)
					*probes_r = probes;
				return tomb != NULL ? tomb : e;
			}
			if (tomb == NULL)
				tomb = e;
		} else if (e->hash == h && strcmp(e->key, key) == 0) {
			if (probes_r != NULL)
				*probes_r = probes;
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
		struct hashmap_entry *d = find_slot(&bigger, e->key, e->hash, NULL);
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
	uint64_t h = hash_key(key);
	struct hashmap_entry *e = find_slot(m, key, h, NULL);
	if (e->key != NULL) {
		void *old = e->value;
		e->value = value;
		return old;
	}
	if (!e->deleted)
		m->used++;
	e->key = xstrdup(key);
	e->value = value;
	e->hash = h;
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
	struct hashmap_entry *e = find_slot(m, key, hash_key(key), NULL);
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
	struct hashmap_entry *e = find_slot(m, key, hash_key(key), NULL);
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

size_t hashmap_probe_count(const hashmap_t *m, const char *key)
{
	size_t probes = 0;
	if (m->cap == 0)
		return 0;
	find_slot(m, key, hash_key(key), &probes);
	return probes;
}

/*
 * fuzz_spam_hs_cache.c - libFuzzer target for the reader of the spam
 * rules' compiled-database cache (spam_hs_cache_parse, src/scan/
 * spam_hs_cache.c): any bytes, as a file's. The first byte says whether
 * to fix up the header first (bit 0: put this machine's identity and the
 * right checksum in, so that the fuzzer reaches the entries; a seed file
 * made on one machine is not another's); every entry a parse accepts is
 * then looked up by its key, which deserializes its database (Hyperscan
 * checks it). Invariants: no crash, no leak; a rejected file leaves no
 * entry; an accepted one finds each of its entries by its own key.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "scan/spam_hs_cache.h"

static void check(int ok, const char *what)
{
	if (!ok) {
		fprintf(stderr, "invariant broken: %s\n", what);
		abort();
	}
}

static void put64(unsigned char *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (unsigned char)(v >> (8 * i));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	size_t len = size - 1;
	unsigned char *file = malloc(len + 1);
	memcpy(file, data + 1, len);
	if ((data[0] & 1) && len >= 32) {
		put64(file + 16, spam_hs_cache_identity());
		put64(file + 24, XXH64(file + 32, len - 32, 0));
	}
	struct spam_hs_cache *c = spam_hs_cache_new();
	char why[256];
	int rc = spam_hs_cache_parse(c, file, len, why, sizeof(why));
	if (rc < 0) {
		check(spam_hs_cache_entries(c) == 0, "a rejected file leaves no entry");
		check(why[0] != '\0', "a rejection says why");
	}
	for (size_t i = 0; rc == 0 && i < spam_hs_cache_entries(c); i++) {
		enum spam_hs_kind kind;
		const void *key;
		size_t klen;
		spam_hs_cache_entry_key(c, i, &kind, &key, &klen);
		hs_database_t *db = NULL;
		uint64_t info;
		enum spam_hs_status st = spam_hs_cache_get(c, kind, key, klen, &db, &info);
		check(st != SPAM_HS_MISS || db == NULL, "a miss has no database");
		check(st == SPAM_HS_COMPILED || db == NULL, "only a compiled entry has one");
		hs_free_database(db);
	}
	char *err = NULL;
	check(spam_hs_cache_save(c, &err) == 0, "a cache without a path is never saved");
	spam_hs_cache_free(&c);
	free(file);
	return 0;
}

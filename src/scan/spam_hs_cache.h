/*
 * spam_hs_cache.h - the file that keeps the spam rule engine's compiled
 * Hyperscan databases between loads (the gates of the regexes and the
 * literal databases of the prefilter, spam_rules_gate.c and
 * spam_rules_build.c), so that a start or a reload compiles only what is
 * new. Private to the rule engine.
 *
 * The file (docs/spam-rules.md, "The compiled-database cache"): a header
 * (magic, format, entry count, the identity of this Hyperscan library and
 * CPU, a checksum of the rest), then entries, each the kind and bytes of
 * what was compiled (the key: flags and pattern, or a literal list), a
 * status (compiled, rejected by Hyperscan, too large to keep), a number
 * the caller keeps with it (a gate's measured speed, a size) and the
 * serialized database. An entry is found by its key bytes, compared
 * whole. A file that is damaged, truncated, of another format, library or
 * CPU, not a regular file, not owned by this process's user or writable
 * by others is ignored (and replaced by the next save); a database that
 * hs_deserialize_database refuses counts as missing.
 *
 * Untrusted input: the file (bounded parser; tests/fuzz/fuzz_spam_hs_cache.c).
 * Privilege: `user` (the scan master, `postern scan`), which owns the
 * folder it is kept in (spool_dir/private).
 */
#ifndef POSTERN_SCAN_SPAM_HS_CACHE_H
#define POSTERN_SCAN_SPAM_HS_CACHE_H

#include <hs.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SPAM_HS_CACHE_FILE_MAX (256u * 1024 * 1024) /* bytes of the whole file */
#define SPAM_HS_CACHE_ENTRIES_MAX 1000000u
#define SPAM_HS_CACHE_KEY_MAX (4u * 1024 * 1024)    /* bytes of one key */

/* What an entry holds. */
enum spam_hs_kind {
	SPAM_HS_KIND_GATE = 1,      /* one regex in prefilter mode: key = flags + expression */
	SPAM_HS_KIND_LITERALS = 2,  /* a view's literal database: key = its literal list */
};

enum spam_hs_status {
	SPAM_HS_MISS = -1,       /* (spam_hs_cache_get only) not in the cache */
	SPAM_HS_COMPILED = 0,    /* the database follows */
	SPAM_HS_REJECTED = 1,    /* Hyperscan cannot compile it: do not try again */
	SPAM_HS_TOO_LARGE = 2,   /* compiled to more bytes than a gate may take */
};

struct spam_hs_cache;

/* Read the cache at path (NULL: an empty cache that is never saved).
 * Never fails: a file that cannot be used is described in *why_r
 * (malloc'ed; NULL when the file was used or did not exist) and the cache
 * starts empty. */
struct spam_hs_cache *spam_hs_cache_load(const char *path, char **why_r);

/* The entry of this kind and key: its status and *info_r (what was put
 * with it), and when compiled *db_r (a database of its own; if it no
 * longer deserializes, SPAM_HS_MISS). The entry is kept at the next save. */
enum spam_hs_status spam_hs_cache_get(struct spam_hs_cache *c, enum spam_hs_kind kind,
				      const void *key, size_t key_len, hs_database_t **db_r,
				      uint64_t *info_r);

/* The same without deserializing the database: its status, *info_r and
 * (compiled) the size it takes once deserialized, in *db_size_r. The
 * entry is kept at the next save. */
enum spam_hs_status spam_hs_cache_peek(struct spam_hs_cache *c, enum spam_hs_kind kind,
				       const void *key, size_t key_len, uint64_t *info_r,
				       size_t *db_size_r);

/* Remember what compiling this key gave: the status, the database when
 * compiled (serialized, not kept) and info. Replaces an entry with the
 * same key. */
void spam_hs_cache_put(struct spam_hs_cache *c, enum spam_hs_kind kind, const void *key,
		       size_t key_len, enum spam_hs_status status, const hs_database_t *db,
		       uint64_t info);

/* Write the file again if anything changed: the entries got or put since
 * the load, nothing else (a new file beside it, renamed over it). 1
 * written, 0 nothing to write, -1 with *why_r (malloc'ed). */
int spam_hs_cache_save(struct spam_hs_cache *c, char **why_r);

/* Entries read from the file, got and put (for the logs and tests). */
size_t spam_hs_cache_entries(const struct spam_hs_cache *c);

void spam_hs_cache_free(struct spam_hs_cache **c);

/* Parse a cache file's bytes into c (which must be empty): 0, or -1 with
 * why (the file is then ignored). For the loader and the fuzzer. */
int spam_hs_cache_parse(struct spam_hs_cache *c, const unsigned char *data, size_t len,
			char *why, size_t why_len);
/* An empty cache that is never saved (the fuzzer's). */
struct spam_hs_cache *spam_hs_cache_new(void);
/* The identity a file must carry to be read here (the fuzzer's). */
uint64_t spam_hs_cache_identity(void);
/* Entry i's kind and key (i < spam_hs_cache_entries; the fuzzer's). */
void spam_hs_cache_entry_key(const struct spam_hs_cache *c, size_t i, enum spam_hs_kind *kind_r,
			     const void **key_r, size_t *len_r);

#endif

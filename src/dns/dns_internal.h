/*
 * dns_internal.h - the parts of src/dns/ shared between its files and
 * the tests (the answer's TTLs, results, the cache); not for other
 * modules, which use dns.h.
 */
#ifndef POSTERN_DNS_INTERNAL_H
#define POSTERN_DNS_INTERNAL_H

#include "../lib/hashmap.h"
#include "dns.h"

/* A positive answer is kept at most a day, whatever its TTL says; a
 * negative one without an SOA to take its TTL from at most a minute. */
#define DNS_TTL_MAX 86400u
#define DNS_NEGATIVE_TTL_NO_SOA 60u

/* ---- dns_packet.c: what c-ares does not tell: TTLs --------------------------- */

struct dns_packet_ttls {
	bool has_answer;   /* at least one record in the answer section */
	uint32_t answer;   /* the least TTL of the answer section's records */
	bool has_soa;      /* an SOA in the authority section */
	uint32_t negative; /* RFC 2308 section 5: min(SOA TTL, SOA MINIMUM) */
};

/* Read the TTLs of a DNS message of len bytes. TTLs with the top bit set
 * count as 0 (RFC 2181 section 8). False if the message is malformed
 * (it is then not cached). Reads nothing beyond len. */
bool dns_packet_ttls(const unsigned char *msg, size_t len, struct dns_packet_ttls *ttls_r);

/* ---- dns_answer.c: a result from what c-ares reports ---------------------------- */

/* The result of a query of type: ares_status is c-ares's status, msg the
 * answer (may be NULL), negative_ttl_max caps negative TTLs. Never NULL;
 * refs is 1. */
struct dns_result *dns_result_from_answer(enum dns_type type, int ares_status,
					  const unsigned char *msg, size_t len,
					  uint32_t negative_ttl_max);
/* A result with no records (TEMPFAIL, TIMEOUT, NXDOMAIN for a bad name). */
struct dns_result *dns_result_new(enum dns_type type, enum dns_status status);
struct dns_result *dns_result_ref(struct dns_result *res);
/* Drop one reference; the last frees. *res becomes NULL; NULL is fine. */
void dns_result_unref(struct dns_result **res);

/* ---- dns_cache.c ------------------------------------------------------------------ */

struct dns_cache_entry;

struct dns_cache {
	hashmap_t map;                /* "type/name" -> entry */
	struct dns_cache_entry *head; /* most recently used */
	struct dns_cache_entry *tail; /* least recently used: evicted first */
	size_t count, capacity;
};

void dns_cache_init(struct dns_cache *c, size_t capacity);
void dns_cache_free(struct dns_cache *c);
/* The cache key of a lookup: "TYPE/name" lower-cased, without the
 * trailing dot. False if it does not fit. */
bool dns_cache_key(enum dns_type type, const char *name, char *key, size_t keylen);
/* A live entry's result (a new reference), or NULL. now_ms is monotonic. */
struct dns_result *dns_cache_get(struct dns_cache *c, const char *key, uint64_t now_ms);
/* Keep res (a reference is taken) until now_ms + its TTL; results with
 * TTL 0, TEMPFAIL and TIMEOUT are not kept. The least recently used entry
 * goes when the cache is full. */
void dns_cache_put(struct dns_cache *c, const char *key, struct dns_result *res,
		   uint64_t now_ms);

#endif

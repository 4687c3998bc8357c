/*
 * dns.h - asynchronous DNS lookups on a libevent loop (c-ares), with a
 * cache that honours the answers' TTLs (RFC 1035, RFC 2308 for negative
 * answers, RFC 2181 section 8 for TTLs, RFC 3596 for AAAA).
 *
 * One resolver per event loop (an smtp worker has one, shared by all its
 * sessions). c-ares does the protocol: it sends the queries over UDP
 * (TCP when an answer is truncated), retries, and parses the answers;
 * this module drives its sockets and timers from the loop, so no call
 * here ever blocks. Lookups of the same name and type in flight at the
 * same time share one query; answers are cached per resolver.
 *
 * Contract of a lookup:
 *   - dns_lookup_start() never calls the callback itself: the result
 *     always comes later, from the event loop (even a cached one or an
 *     immediate failure), exactly once, unless the lookup is cancelled
 *     first with dns_lookup_cancel(), after which it never comes;
 *   - the handle is valid until the callback has been called or the
 *     lookup cancelled (never cancel from inside its own callback: it is
 *     gone by then); the result is valid during the callback only;
 *   - a callback may start and cancel other lookups; it must not free the
 *     resolver;
 *   - every lookup ends within the resolver's timeout (DNS_TIMEOUT if the
 *     servers did not answer by then), whatever c-ares does.
 * Freeing the resolver drops the lookups still outstanding without
 * calling them (their handles become invalid): owners cancel theirs
 * first, or are themselves gone.
 *
 * Untrusted input: the DNS answers (parsed by c-ares, TTLs and SOA by
 * dns_packet.c, all bounded) and names built from client data (checked
 * by dns_name_valid before they are asked). Runs in whichever process
 * owns the loop (the unprivileged smtp worker).
 */
#ifndef POSTERN_DNS_H
#define POSTERN_DNS_H

#include <event2/event.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "../lib/config.h"

/* The record types asked for (their numbers in DNS). */
enum dns_type {
	DNS_TYPE_A = 1,
	DNS_TYPE_PTR = 12,
	DNS_TYPE_MX = 15,
	DNS_TYPE_TXT = 16,
	DNS_TYPE_AAAA = 28,
};

enum dns_status {
	DNS_FOUND,    /* records of the type (count > 0) */
	DNS_NXDOMAIN, /* the name does not exist (or is no valid name) */
	DNS_NODATA,   /* the name exists, without records of the type */
	DNS_TEMPFAIL, /* SERVFAIL, REFUSED, unreachable server, bad answer */
	DNS_TIMEOUT,  /* no answer within the resolver's timeout */
};

/* Bounds of one answer: records kept, bytes of one name or text. */
#define DNS_MAX_RECORDS 32
#define DNS_NAME_MAX 253
#define DNS_TEXT_MAX 1024

struct dns_record {
	int family;               /* A, AAAA: AF_INET or AF_INET6 */
	unsigned char addr[16];   /* A: 4 bytes, AAAA: 16 */
	unsigned preference;      /* MX */
	char *text;               /* MX: exchange ("" for a null MX, RFC 7505);
				   * PTR: name; TXT: the record's strings joined
				   * (at most DNS_TEXT_MAX bytes); A/AAAA: NULL */
};

struct dns_result {
	enum dns_type type;
	enum dns_status status;
	uint32_t ttl;             /* seconds this answer may be kept (0 = not at all) */
	size_t count;             /* records, at most DNS_MAX_RECORDS */
	struct dns_record *records;
	unsigned refs;            /* private: holders of this result */
};

/* The resolver's settings: from the configuration (dns_options_from_config)
 * or set by a test. */
struct dns_options {
	const strlist_t *servers;  /* "addr", "addr:port", "[v6]:port"; NULL or
				    * empty: the system's /etc/resolv.conf */
	unsigned timeout_ms;       /* a lookup's whole time, every try included */
	unsigned tries;            /* tries per server */
	size_t cache_size;         /* answers kept; 0 = no cache */
	uint32_t negative_ttl_max; /* seconds a negative answer is kept at most */
	size_t max_queries;        /* queries in flight at most; 0 = the default */
};

struct dns_resolver;
struct dns_lookup;

typedef void dns_callback(void *arg, const struct dns_result *result);

/* Counters, for logs and tests. */
struct dns_stats {
	uint64_t lookups;     /* dns_lookup_start calls */
	uint64_t sent;        /* queries handed to c-ares */
	uint64_t cache_hits;  /* answered from the cache */
	uint64_t shared;      /* joined a query already in flight */
	uint64_t timeouts;    /* queries ended by the resolver's own deadline */
	uint64_t cached;      /* entries in the cache now */
};

void dns_options_from_config(const struct config *cfg, struct dns_options *opt_r);
/* Can a resolver be made from cfg's dns_* keys (c-ares takes the server
 * list, resolv.conf is readable)? If not, print "FILE:LINE: dns_servers:
 * ..." to errors and return 1; else 0. */
int dns_config_check(const struct config *cfg, FILE *errors);

/* A resolver on base. NULL with *err_r (malloc'ed) if c-ares cannot be
 * set up (bad server list, no memory). */
struct dns_resolver *dns_resolver_new(struct event_base *base, const struct dns_options *opt,
				      char **err_r);
/* Drop every outstanding lookup (no callbacks) and free; NULL is fine. */
void dns_resolver_free(struct dns_resolver **r);
void dns_resolver_stats(const struct dns_resolver *r, struct dns_stats *stats_r);
/* The loop the resolver runs on (for the timers of checks built on it). */
struct event_base *dns_resolver_base(const struct dns_resolver *r);

/* Look name up (absolute, without or with the trailing dot; ASCII case
 * is ignored). Never NULL. */
struct dns_lookup *dns_lookup_start(struct dns_resolver *r, enum dns_type type,
				    const char *name, dns_callback *cb, void *arg);
/* The callback will not be called; *l becomes NULL; NULL is fine. */
void dns_lookup_cancel(struct dns_lookup **l);

const char *dns_status_name(enum dns_status status);
const char *dns_type_name(enum dns_type type);

/* ---- names (dns_names.c) ---------------------------------------------------- */

/* A name that may be asked: 1..253 bytes (a trailing dot aside), labels
 * of 1..63 bytes, printable ASCII without white space, '\\' or '"'
 * (DNSBL and MX names, not only host names: '_' and the like pass). */
bool dns_name_valid(const char *name);

/* The address of sa (IPv4, IPv6; an IPv4-mapped IPv6 address counts as
 * IPv4) as a reverse name under zone: "4.3.2.1.zone" or the 32 nibbles
 * of RFC 3596 section 2.5; zone NULL = in-addr.arpa / ip6.arpa (for PTR).
 * False if the family is another or the name does not fit in out. */
bool dns_reverse_name(const struct sockaddr *sa, const char *zone, char *out, size_t outlen);

/* Is sa the same address as the record's (IPv4-mapped counts as IPv4)? */
bool dns_record_matches(const struct dns_record *rec, const struct sockaddr *sa);

#endif

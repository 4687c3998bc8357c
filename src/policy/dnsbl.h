/*
 * dnsbl.h - DNS blocklists and allow-lists (RFC 5782): which lists list
 * a client's address (DNSBL) or a sender's domain (RHSBL), with weights
 * and answer filters, evaluated asynchronously on the event loop.
 *
 * A list is written as
 *     DOMAIN[=FILTER][*WEIGHT]
 * DOMAIN is the list's zone ("bl.example.org"); FILTER says which answers
 * count as a listing: one or more addresses separated by ';', each octet
 * a number, or a set in brackets of numbers and ranges separated by ';'
 * ("127.0.0.2", "127.0.0.[2..11]", "127.0.[0..255].[2;4;10..11]",
 * "127.0.0.2;127.0.0.4"); without a filter any answer in 127.0.0.0/8
 * counts, except 127.255.255.0/24, which lists use for their own errors
 * ("query refused", "over quota"). WEIGHT is a whole number, default 1,
 * negative for an allow-list (a DNSWL): the weights of the lists that
 * list the client are added up, and the client is listed when the sum
 * reaches the threshold.
 *
 * An evaluation asks every list at once (type A; then TXT for each list
 * that lists, for its reason) and is ready when all have answered or at
 * its deadline, whichever comes first. A list that has not answered by
 * then, or that failed (SERVFAIL, a dead server), is reported as failed;
 * the caller decides whether that fails open.
 *
 * Contract of an evaluation: start it (never NULL), then look at it when
 * it suits (dnsbl_ready / dnsbl_verdict) or ask to be told
 * (dnsbl_notify: the call comes from the event loop, never from inside
 * dnsbl_notify or dnsbl_*_start); dnsbl_free ends it at any time,
 * outstanding lookups included, also from inside its own notification.
 *
 * Untrusted input: the client's address, the sender's domain (from the
 * dialogue), the lists' answers (addresses, TXT texts, which are made
 * printable and bounded before anyone sees them); list specs and reply
 * templates from the administrator's configuration. Runs in the
 * unprivileged smtp worker.
 */
#ifndef POSTERN_DNSBL_H
#define POSTERN_DNSBL_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/socket.h>

#include "../dns/dns.h"
#include "../lib/strutil.h"

#define DNSBL_MAX_SITES 32       /* lists per key */
#define DNSBL_MAX_PATTERNS 8     /* addresses in one filter */
#define DNSBL_MAX_RANGES 16      /* numbers and ranges in one octet's set */
#define DNSBL_WEIGHT_MAX 1000    /* |WEIGHT| */
#define DNSBL_TXT_MAX 256        /* bytes of a list's reason kept */
/* A list's zone leaves room for the 64 bytes of an IPv6 query's nibbles. */
#define DNSBL_DOMAIN_MAX (DNS_NAME_MAX - 64)

struct dnsbl_octet {
	size_t count; /* 0 = any value */
	struct { uint8_t lo, hi; } ranges[DNSBL_MAX_RANGES];
};

struct dnsbl_pattern {
	struct dnsbl_octet octets[4];
};

struct dnsbl_site {
	char domain[DNSBL_DOMAIN_MAX + 1]; /* lower case, no trailing dot */
	size_t pattern_count;              /* 0 = the default filter */
	struct dnsbl_pattern patterns[DNSBL_MAX_PATTERNS];
	int weight;
	char spec[DNS_NAME_MAX + 256];     /* as written, for logs */
};

struct dnsbl_sites {
	size_t count;
	struct dnsbl_site *items;
};

/* Parse one spec; false with a static message in *err_r. */
bool dnsbl_site_parse(const char *spec, struct dnsbl_site *site_r, const char **err_r);
/* Parse every spec of list into sites_r; false with *err_r and *bad_r
 * (the spec that failed) on the first problem (sites_r is then empty). */
bool dnsbl_sites_parse(const strlist_t *list, struct dnsbl_sites *sites_r, const char **err_r,
		       const char **bad_r);
void dnsbl_sites_free(struct dnsbl_sites *sites);
/* Does the answer addr (4 bytes, network order) count as a listing? */
bool dnsbl_site_matches(const struct dnsbl_site *site, const unsigned char addr[4]);

/* ---- reply templates ------------------------------------------------------------ */

/*
 * A reply template is text with variables: $name or ${name}; ${name?TEXT}
 * is TEXT when the variable is not empty, ${name:TEXT} is TEXT when it
 * is (TEXT may hold $name and ${name}, not braces); $$ is a dollar sign.
 * The variables: client_address, rbl_class ("Client host" or "Sender
 * domain"), rbl_what (the address or domain looked up), rbl_domain (the
 * list), rbl_txt (its TXT reason, "" if none), rbl_answer (the address
 * it answered).
 */
struct dnsbl_vars {
	const char *client_address, *rbl_class, *rbl_what, *rbl_domain, *rbl_txt, *rbl_answer;
};

/* NULL if tpl is a valid template, else a static message. */
const char *dnsbl_template_check(const char *tpl);
/* Expand a valid template into out (truncated to outlen - 1 bytes; bytes
 * that are not printable ASCII become '?'). */
void dnsbl_template_expand(const char *tpl, const struct dnsbl_vars *vars, char *out,
			   size_t outlen);

/* ---- evaluation (dnsbl.c) --------------------------------------------------------- */

struct dnsbl_hit {
	const struct dnsbl_site *site;
	char answer[16];          /* the address that matched, "127.0.0.2" */
	char txt[DNSBL_TXT_MAX];  /* the list's TXT reason (printable), "" if none */
};

struct dnsbl_verdict {
	char what[DNS_NAME_MAX + 1]; /* the address or domain looked up */
	int score;                /* the sum of the weights of the lists that list it */
	size_t hit_count;         /* lists that list it, in configuration order */
	struct dnsbl_hit hits[DNSBL_MAX_SITES];
	size_t failed_count;      /* lists that did not answer in time, or failed */
	const struct dnsbl_site *failed[DNSBL_MAX_SITES];
	/* The listing a refusal names: the heaviest positive weight, the
	 * first in configuration order among equals; NULL if none. */
	const struct dnsbl_hit *top;
};

struct dnsbl_eval;
typedef void dnsbl_ready_fn(void *arg, const struct dnsbl_verdict *verdict);

/* Ask every list of sites about client (IPv4, IPv6, IPv4-mapped), at
 * most timeout_ms. sites must outlive the evaluation. */
struct dnsbl_eval *dnsbl_start_client(struct dns_resolver *r, const struct dnsbl_sites *sites,
				      const struct sockaddr *client, unsigned timeout_ms);
/* The same for a domain (RHSBL): DOMAIN.LIST. */
struct dnsbl_eval *dnsbl_start_domain(struct dns_resolver *r, const struct dnsbl_sites *sites,
				      const char *domain, unsigned timeout_ms);
bool dnsbl_ready(const struct dnsbl_eval *e);
/* The verdict once ready (NULL before); valid until dnsbl_free. */
const struct dnsbl_verdict *dnsbl_verdict(const struct dnsbl_eval *e);
/* Call fn(arg, verdict) once the verdict is there (soon, if it already
 * is), from the event loop. Replaces an earlier fn. */
void dnsbl_notify(struct dnsbl_eval *e, dnsbl_ready_fn *fn, void *arg);
/* End the evaluation; *e becomes NULL; NULL is fine. */
void dnsbl_free(struct dnsbl_eval **e);
/* "bl.test(127.0.0.2)*2 wl.test(127.0.0.5)*-3" and the failed lists,
 * for log lines. */
void dnsbl_verdict_describe(const struct dnsbl_verdict *v, char *out, size_t outlen);

/* ---- the checks of the smtp worker (dnsbl_check.c) ----------------------------------- */

struct config;
struct policy_env;
struct dnsbl_checks;

/* Check the dnsbl_* and rhsbl_* keys: problems are printed to errors as
 * "FILE:LINE: key: message"; returns their number. */
int dnsbl_config_check(const struct config *cfg, FILE *errors);
/* Does cfg ask for DNS blocklists at all? */
bool dnsbl_configured(const struct config *cfg);
/* The checks of cfg on resolver r: dnsbl_sites at POLICY_CONNECT,
 * rhsbl_sender_sites at POLICY_MAIL (none are added for empty lists).
 * cfg must have passed dnsbl_config_check. */
struct dnsbl_checks *dnsbl_checks_new(const struct config *cfg, struct dns_resolver *r);
void dnsbl_checks_register(struct dnsbl_checks *c, struct policy_env *env);
/* After the sessions are gone. */
void dnsbl_checks_free(struct dnsbl_checks **c);

#endif

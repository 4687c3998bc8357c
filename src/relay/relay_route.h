/*
 * relay_route.h - where mail for a domain goes: the transport map
 * (transport_file), relayhost, and the TLS policy of each destination
 * (tls_policy, tls_policy_file). See postern.conf(5), ROUTING.
 *
 * transport_file is a "key value" file (the file: map type of map.h).
 * A recipient domain is looked up as itself, then as each parent domain
 * with a leading dot (for a.b.example: "a.b.example", ".b.example",
 * ".example"); the first entry found decides. Values:
 *
 *   smtp:[host]:port   that host (no MX lookup), port optional
 *   smtp:[192.0.2.1]   an address literal (IPv6: [ipv6:2001:db8::1] or [2001:db8::1])
 *   smtp:host:port     the MX records of host (implicit MX: its address)
 *   smtp               the recipient domain's own MX records
 *   local              local delivery (users and aliases tables)
 *   discard            accepted and dropped (logged)
 *   error:5.x.y text   bounced with that status and text (4.x.y defers)
 *
 * A domain without an entry that is not local goes to relayhost when it
 * is set (same forms as the smtp: values without "smtp:"), else to its
 * own MX records. The port defaults to relay_port (25).
 *
 * tls_policy is the default level of every destination; tls_policy_file
 * maps a destination (the recipient domain, a parent ".domain", or the
 * next hop exactly as written: "[host]:port", "host") to a level:
 *   none     never STARTTLS
 *   may      STARTTLS when offered, any certificate (the default)
 *   encrypt  STARTTLS required (defer otherwise), any certificate
 *   verify   STARTTLS required and the certificate must verify against
 *            tls_ca_file (or the system's store when empty) and name the
 *            host connected to
 *
 * Untrusted input: the recipient domains (from the queue file; looked
 * up, never parsed as routes); the administrator's files. Privilege: the
 * maps are opened by the root supervisor and check-config, looked up by
 * the queue manager (`user`).
 */
#ifndef POSTERN_RELAY_ROUTE_H
#define POSTERN_RELAY_ROUTE_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "../lib/config.h"

#define RELAY_HOST_MAX 255

enum relay_route_kind {
	RELAY_ROUTE_SMTP,
	RELAY_ROUTE_LOCAL,
	RELAY_ROUTE_DISCARD,
	RELAY_ROUTE_ERROR,
};

enum relay_tls_level {
	RELAY_TLS_NONE = 0,
	RELAY_TLS_MAY = 1,
	RELAY_TLS_ENCRYPT = 2,
	RELAY_TLS_VERIFY = 3,
};

/* Where one SMTP delivery goes. host is a DNS name or (literal) an
 * address; mx says whether its MX records are looked up. */
struct relay_nexthop {
	char host[RELAY_HOST_MAX + 1];
	uint16_t port;
	bool mx;       /* look up MX records of host (else: host's own addresses) */
	bool literal;  /* host is an IP address */
};

struct relay_route {
	enum relay_route_kind kind;
	struct relay_nexthop nexthop;   /* SMTP */
	bool nexthop_is_domain;         /* SMTP: "smtp" alone, MX of the recipient domain */
	char error[512];                /* ERROR: "5.x.y text" */
	bool error_temporary;           /* ERROR: 4.x.y */
};

/*
 * Parse a next hop: "[host]", "[host]:port", "host", "host:port",
 * "[ipv6:addr]:port", "[addr]". 0, or -1 with *err_r (static text).
 */
int relay_nexthop_parse(const char *text, uint16_t default_port, struct relay_nexthop *nh_r,
			const char **err_r);
/* "[host]:port" or "host:port", the form used in logs and as key. */
void relay_nexthop_format(const struct relay_nexthop *nh, char *out, size_t outlen);

/* Parse one transport value (above). 0, or -1 with *err_r. */
int relay_route_parse(const char *value, uint16_t default_port, struct relay_route *r,
		      const char **err_r);
/* map.h's value check for transport_file. */
const char *relay_route_check_value(const char *value);

/* Parse a TLS level word; false if it is none of them. */
bool relay_tls_level_parse(const char *word, enum relay_tls_level *level_r);
const char *relay_tls_level_name(enum relay_tls_level level);

struct relay_router;

/*
 * Open transport_file and tls_policy_file and parse relayhost and
 * tls_policy. Problems are printed to errors as "FILE:LINE: message";
 * NULL if there was any. With none of the keys set it still returns a
 * router (everything remote goes by MX).
 */
struct relay_router *relay_router_load(const struct config *cfg, FILE *errors);
void relay_router_free(struct relay_router **r);

/*
 * The route of a recipient domain that is not in local_domains (lower
 * case, no trailing dot). An SMTP route to the domain's own MX gets
 * nexthop.host = domain. Not thread-safe: the caller serialises.
 */
void relay_router_route(struct relay_router *r, const char *domain, struct relay_route *route_r);
/* The TLS level for a destination: domain first, then the next hop. */
enum relay_tls_level relay_router_tls(struct relay_router *r, const char *domain,
				      const struct relay_nexthop *nh);

#endif

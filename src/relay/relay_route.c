/*
 * relay_route.c - the routing of remote recipients: transport_file
 * lookups with parent domains, relayhost, and each destination's TLS
 * level (the rules are in relay_route.h).
 *
 * RFCs: RFC 5321 section 5.1 (an address literal is not looked up).
 * Untrusted input: recipient domains, only ever used as lookup keys.
 * Privilege: the root supervisor and check-config open the files, the
 * queue manager (`user`) looks up.
 */
#include "relay_route.h"

#include <arpa/inet.h>
#include <stdlib.h>
#include <string.h>

#include "../dns/dns.h"
#include "../lib/strutil.h"
#include "../lib/xalloc.h"
#include "../map/map.h"

struct relay_router {
	struct map *transport;   /* NULL: no transport_file */
	struct map *tls_map;     /* NULL: no tls_policy_file */
	bool have_relayhost;
	struct relay_nexthop relayhost;
	enum relay_tls_level tls_default;
	uint16_t port;
};

static bool address_literal(const char *s)
{
	unsigned char tmp[16];

	if (str_has_prefix_nocase(s, "ipv6:"))
		return inet_pton(AF_INET6, s + 5, tmp) == 1;
	return inet_pton(AF_INET, s, tmp) == 1 || inet_pton(AF_INET6, s, tmp) == 1;
}

static int parse_port(const char *s, uint16_t *port_r)
{
	uint64_t v;

	if (!str_parse_uint(s, &v) || v == 0 || v > 65535)
		return -1;
	*port_r = (uint16_t)v;
	return 0;
}

int relay_nexthop_parse(const char *text, uint16_t default_port, struct relay_nexthop *nh_r,
			const char **err_r)
{
	char host[RELAY_HOST_MAX + 8];
	const char *port = NULL;

	memset(nh_r, 0, sizeof(*nh_r));
	nh_r->port = default_port;
	if (text[0] == '[') {
		const char *close = strchr(text, ']');
		if (close == NULL || (size_t)(close - text - 1) >= sizeof(host)) {
			*err_r = "unbalanced or too long [host]";
			return -1;
		}
		memcpy(host, text + 1, (size_t)(close - text - 1));
		host[close - text - 1] = '\0';
		if (close[1] == ':')
			port = close + 2;
		else if (close[1] != '\0') {
			*err_r = "unexpected text after [host]";
			return -1;
		}
		nh_r->mx = false;
	} else {
		const char *colon = strrchr(text, ':');
		size_t hl = colon != NULL ? (size_t)(colon - text) : strlen(text);
		if (hl >= sizeof(host)) {
			*err_r = "host name too long";
			return -1;
		}
		memcpy(host, text, hl);
		host[hl] = '\0';
		if (colon != NULL)
			port = colon + 1;
		nh_r->mx = true;
	}
	if (port != NULL && parse_port(port, &nh_r->port) < 0) {
		*err_r = "the port is not a number from 1 to 65535";
		return -1;
	}
	const char *bare = str_has_prefix_nocase(host, "ipv6:") ? host + 5 : host;
	if (strlen(host) > RELAY_HOST_MAX) {
		*err_r = "host name too long";
		return -1;
	}
	if (address_literal(host)) {
		if (nh_r->mx) {
			*err_r = "an address must be written in brackets: [address]";
			return -1;
		}
		nh_r->literal = true;
		memcpy(nh_r->host, bare, strlen(bare) + 1);
		return 0;
	}
	if (host[0] == '\0' || strlen(host) > RELAY_HOST_MAX || !dns_name_valid(host)) {
		*err_r = "not a valid host name";
		return -1;
	}
	memcpy(nh_r->host, host, strlen(host) + 1);
	str_lower(nh_r->host);
	size_t n = strlen(nh_r->host);
	if (n > 0 && nh_r->host[n - 1] == '.')
		nh_r->host[n - 1] = '\0';
	return 0;
}

void relay_nexthop_format(const struct relay_nexthop *nh, char *out, size_t outlen)
{
	if (nh->mx)
		snprintf(out, outlen, "%s:%u", nh->host, (unsigned)nh->port);
	else if (strchr(nh->host, ':') != NULL)
		snprintf(out, outlen, "[ipv6:%s]:%u", nh->host, (unsigned)nh->port);
	else
		snprintf(out, outlen, "[%s]:%u", nh->host, (unsigned)nh->port);
}

/* "4.x.y" or "5.x.y" (RFC 3463 syntax) at the start of s; its length or 0. */
static size_t status_len(const char *s)
{
	size_t i = 2, d;

	if ((s[0] != '4' && s[0] != '5') || s[1] != '.')
		return 0;
	for (d = 0; s[i] >= '0' && s[i] <= '9' && d < 3; i++, d++)
		;
	if (d == 0 || s[i] != '.')
		return 0;
	i++;
	for (d = 0; s[i] >= '0' && s[i] <= '9' && d < 3; i++, d++)
		;
	if (d == 0 || (s[i] != '\0' && s[i] != ' '))
		return 0;
	return i;
}

int relay_route_parse(const char *value, uint16_t default_port, struct relay_route *r,
		      const char **err_r)
{
	memset(r, 0, sizeof(*r));
	if (strcasecmp(value, "local") == 0) {
		r->kind = RELAY_ROUTE_LOCAL;
		return 0;
	}
	if (strcasecmp(value, "discard") == 0) {
		r->kind = RELAY_ROUTE_DISCARD;
		return 0;
	}
	if (str_has_prefix_nocase(value, "error:")) {
		const char *text = value + 6;
		size_t sl = status_len(text);
		if (sl == 0) {
			*err_r = "error: needs a status code 4.x.y or 5.x.y, then text";
			return -1;
		}
		if (strlen(text) >= sizeof(r->error)) {
			*err_r = "error: text too long";
			return -1;
		}
		for (const char *p = text; *p != '\0'; p++)
			if ((unsigned char)*p < 0x20 || *p == 0x7f) {
				*err_r = "error: control character in the text";
				return -1;
			}
		r->kind = RELAY_ROUTE_ERROR;
		r->error_temporary = text[0] == '4';
		snprintf(r->error, sizeof(r->error), "%s", text);
		return 0;
	}
	if (strcasecmp(value, "smtp") == 0 || strcasecmp(value, "smtp:") == 0) {
		r->kind = RELAY_ROUTE_SMTP;
		r->nexthop_is_domain = true;
		r->nexthop.mx = true;
		r->nexthop.port = default_port;
		return 0;
	}
	if (str_has_prefix_nocase(value, "smtp:")) {
		r->kind = RELAY_ROUTE_SMTP;
		return relay_nexthop_parse(value + 5, default_port, &r->nexthop, err_r);
	}
	*err_r = "unknown transport (smtp:[host]:port, smtp:host, local, discard, error:5.x.y text)";
	return -1;
}

const char *relay_route_check_value(const char *value)
{
	struct relay_route r;
	const char *err = NULL;

	return relay_route_parse(value, 25, &r, &err) == 0 ? NULL : err;
}

static const char *const tls_words[] = { "none", "may", "encrypt", "verify", NULL };

bool relay_tls_level_parse(const char *word, enum relay_tls_level *level_r)
{
	for (size_t i = 0; tls_words[i] != NULL; i++)
		if (strcasecmp(word, tls_words[i]) == 0) {
			*level_r = (enum relay_tls_level)i;
			return true;
		}
	return false;
}

const char *relay_tls_level_name(enum relay_tls_level level)
{
	return (unsigned)level <= RELAY_TLS_VERIFY ? tls_words[level] : "?";
}

static const char *check_tls_value(const char *value)
{
	enum relay_tls_level level;

	return relay_tls_level_parse(value, &level) ? NULL
						    : "not a TLS level (none, may, encrypt, verify)";
}

static struct map *open_file_map(const char *path, map_value_check_fn *check, FILE *errors)
{
	char *spec = xmalloc(strlen(path) + 6);

	memcpy(spec, "file:", 5);
	strcpy(spec + 5, path);
	struct map *m = map_open(spec, "/", check, errors);
	free(spec);
	return m;
}

struct relay_router *relay_router_load(const struct config *cfg, FILE *errors)
{
	struct relay_router *r = xcalloc(1, sizeof(*r));
	int problems = 0;
	const char *err = NULL;

	r->port = cfg->relay_port > 0 && cfg->relay_port <= 65535 ? (uint16_t)cfg->relay_port : 25;
	r->tls_default = RELAY_TLS_MAY;
	if (cfg->relayhost[0] != '\0') {
		if (relay_nexthop_parse(cfg->relayhost, r->port, &r->relayhost, &err) < 0) {
			fprintf(errors, "%s:%u: relayhost: %s\n", cfg->path,
				config_key_line(cfg, "relayhost"), err);
			problems++;
		} else {
			r->have_relayhost = true;
		}
	}
	if (!relay_tls_level_parse(cfg->tls_policy, &r->tls_default)) {
		fprintf(errors, "%s:%u: tls_policy: %s is not one of none, may, encrypt, verify\n",
			cfg->path, config_key_line(cfg, "tls_policy"), cfg->tls_policy);
		problems++;
	}
	if (cfg->transport_file[0] != '\0' &&
	    (r->transport = open_file_map(cfg->transport_file, relay_route_check_value,
					  errors)) == NULL)
		problems++;
	if (cfg->tls_policy_file[0] != '\0' &&
	    (r->tls_map = open_file_map(cfg->tls_policy_file, check_tls_value, errors)) == NULL)
		problems++;
	if (problems > 0)
		relay_router_free(&r);
	return r;
}

void relay_router_free(struct relay_router **r)
{
	if (*r == NULL)
		return;
	map_free(&(*r)->transport);
	map_free(&(*r)->tls_map);
	free(*r);
	*r = NULL;
}

/* The value for domain or its first parent ".domain" with an entry. */
static const char *lookup_domain(struct map *m, const char *domain)
{
	const char *v = map_lookup(m, domain);

	for (const char *p = strchr(domain, '.'); v == NULL && p != NULL;
	     p = strchr(p + 1, '.'))
		v = map_lookup(m, p);
	return v;
}

void relay_router_route(struct relay_router *r, const char *domain, struct relay_route *route_r)
{
	const char *err = NULL;
	const char *v = r->transport != NULL ? lookup_domain(r->transport, domain) : NULL;

	if (v != NULL && relay_route_parse(v, r->port, route_r, &err) == 0) {
		if (route_r->kind == RELAY_ROUTE_SMTP && route_r->nexthop_is_domain)
			snprintf(route_r->nexthop.host, sizeof(route_r->nexthop.host), "%s", domain);
		return;
	}
	memset(route_r, 0, sizeof(*route_r));
	route_r->kind = RELAY_ROUTE_SMTP;
	if (r->have_relayhost) {
		route_r->nexthop = r->relayhost;
		return;
	}
	route_r->nexthop_is_domain = true;
	route_r->nexthop.mx = true;
	route_r->nexthop.port = r->port;
	snprintf(route_r->nexthop.host, sizeof(route_r->nexthop.host), "%s", domain);
}

enum relay_tls_level relay_router_tls(struct relay_router *r, const char *domain,
				      const struct relay_nexthop *nh)
{
	enum relay_tls_level level = r->tls_default;
	const char *v = NULL;
	char key[RELAY_HOST_MAX + 32];

	if (r->tls_map == NULL)
		return level;
	v = lookup_domain(r->tls_map, domain);
	if (v == NULL) {
		relay_nexthop_format(nh, key, sizeof(key));
		v = map_lookup(r->tls_map, key);
	}
	if (v == NULL)
		v = map_lookup(r->tls_map, nh->host);
	if (v != NULL)
		relay_tls_level_parse(v, &level);
	return level;
}

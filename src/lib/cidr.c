/*
 * cidr.c - network lists for mynetworks (see cidr.h). Input comes from
 * the configuration file; addresses matched come from accept(2).
 */
#include "cidr.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>

#include "strutil.h"
#include "xalloc.h"

bool cidr_parse(const char *text, struct cidr *c, const char **err_r)
{
	char host[INET6_ADDRSTRLEN + 8];
	const char *slash = strchr(text, '/');
	size_t hl = slash ? (size_t)(slash - text) : strlen(text);
	if (hl == 0 || hl >= sizeof(host)) {
		*err_r = "bad network address";
		return false;
	}
	memcpy(host, text, hl);
	host[hl] = '\0';
	memset(c, 0, sizeof(*c));
	unsigned max;
	if (inet_pton(AF_INET, host, c->addr) == 1) {
		c->family = AF_INET;
		max = 32;
	} else if (inet_pton(AF_INET6, host, c->addr) == 1) {
		c->family = AF_INET6;
		max = 128;
	} else {
		*err_r = "bad network address";
		return false;
	}
	c->prefix = max;
	if (slash != NULL) {
		uint64_t p;
		if (!str_parse_uint(slash + 1, &p) || p > max) {
			*err_r = "bad prefix length";
			return false;
		}
		c->prefix = (unsigned)p;
	}
	/* The host bits must be zero: "10.1.2.3/8" is a typo, not a network. */
	for (unsigned bit = c->prefix; bit < max; bit++) {
		if (c->addr[bit / 8] & (0x80 >> (bit % 8))) {
			*err_r = "address has bits set beyond the prefix length";
			return false;
		}
	}
	return true;
}

bool cidr_list_parse(cidr_list_t *l, const char *text, char **err_r)
{
	strlist_t items = { 0 };
	strlist_split(&items, text);
	for (size_t i = 0; i < items.count; i++) {
		struct cidr c;
		const char *why;
		if (!cidr_parse(items.items[i], &c, &why)) {
			size_t n = strlen(items.items[i]) + strlen(why) + 8;
			*err_r = xmalloc(n);
			snprintf(*err_r, n, "\"%s\": %s", items.items[i], why);
			strlist_free(&items);
			return false;
		}
		l->items = xreallocarray(l->items, l->count + 1, sizeof(*l->items));
		l->items[l->count++] = c;
	}
	strlist_free(&items);
	return true;
}

void cidr_list_free(cidr_list_t *l)
{
	xfree(&l->items);
	l->count = 0;
}

static bool prefix_match(const unsigned char *a, const unsigned char *net,
			 unsigned prefix)
{
	unsigned whole = prefix / 8, rest = prefix % 8;
	if (memcmp(a, net, whole) != 0)
		return false;
	if (rest == 0)
		return true;
	unsigned char mask = (unsigned char)(0xff << (8 - rest));
	return (a[whole] & mask) == (net[whole] & mask);
}

bool cidr_list_match(const cidr_list_t *l, const struct sockaddr *sa)
{
	unsigned char addr[16];
	int family = sa->sa_family;
	if (family == AF_INET) {
		memcpy(addr, &((const struct sockaddr_in *)sa)->sin_addr, 4);
	} else if (family == AF_INET6) {
		const struct in6_addr *a6 = &((const struct sockaddr_in6 *)sa)->sin6_addr;
		if (IN6_IS_ADDR_V4MAPPED(a6)) {
			family = AF_INET;
			memcpy(addr, a6->s6_addr + 12, 4);
		} else {
			memcpy(addr, a6->s6_addr, 16);
		}
	} else {
		return false;
	}
	for (size_t i = 0; i < l->count; i++)
		if (l->items[i].family == family &&
		    prefix_match(addr, l->items[i].addr, l->items[i].prefix))
			return true;
	return false;
}

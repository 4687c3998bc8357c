/*
 * map_cidr.c - cidr: maps (see map.h): "network[/prefix] value" lines,
 * IPv4 and IPv6; a lookup key that is an address matches the first
 * network in file order that holds it. A network with bits set beyond
 * its prefix ("10.1.2.3/8") is an error, as in mynetworks: it is a typo
 * more often than a network.
 *
 * Input: an administrator's file (lines bounded by map.c); lookup keys
 * from the session (client addresses) or from clients (a key that is not
 * an address matches nothing). Runs in the supervisor, check-config and
 * the smtp workers.
 */
#include <arpa/inet.h>
#include <stdlib.h>
#include <string.h>

#include "../lib/cidr.h"
#include "../lib/xalloc.h"
#include "map_internal.h"

struct cidr_entry {
	struct cidr net;
	char *value;
};

struct cidr_map {
	struct cidr_entry *items;
	size_t count, cap;
	bool full;
};

static void *cidr_create(void)
{
	return xcalloc(1, sizeof(struct cidr_map));
}

static bool cidr_add(void *data, struct map_parse *p, unsigned line, char *text)
{
	struct cidr_map *cm = data;
	char *key, *value;
	const char *why;
	struct cidr net;
	if (!map_split_entry(p, line, text, &key, &value))
		return false;
	if (!cidr_parse(key, &net, &why)) {
		map_report(p, line, "\"%s\": %s", key, why);
		return false;
	}
	if (!map_check_value(p, line, value))
		return false;
	if (cm->count >= MAP_ENTRIES_MAX) {
		if (!cm->full)
			map_report(p, line, "more than %u entries", MAP_ENTRIES_MAX);
		cm->full = true;
		return false;
	}
	if (cm->count == cm->cap) {
		cm->cap = cm->cap == 0 ? 16 : cm->cap * 2;
		cm->items = xreallocarray(cm->items, cm->cap, sizeof(*cm->items));
	}
	cm->items[cm->count].net = net;
	cm->items[cm->count].value = xstrdup(value);
	cm->count++;
	return true;
}

static void cidr_done(void *data, struct map_parse *p)
{
	(void)data;
	(void)p;
}

static bool in_network(const unsigned char *addr, const struct cidr *net)
{
	unsigned whole = net->prefix / 8, rest = net->prefix % 8;
	if (memcmp(addr, net->addr, whole) != 0)
		return false;
	if (rest == 0)
		return true;
	unsigned char mask = (unsigned char)(0xff << (8 - rest));
	return (addr[whole] & mask) == (net->addr[whole] & mask);
}

static const char *cidr_lookup(void *data, const char *key, buf_t *scratch)
{
	const struct cidr_map *cm = data;
	unsigned char addr[16];
	int family;
	(void)scratch;
	if (inet_pton(AF_INET, key, addr) == 1) {
		family = AF_INET;
	} else if (inet_pton(AF_INET6, key, addr) == 1) {
		family = AF_INET6;
		static const unsigned char mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };
		if (memcmp(addr, mapped, sizeof(mapped)) == 0) {
			memmove(addr, addr + 12, 4);
			family = AF_INET;
		}
	} else {
		return NULL;
	}
	for (size_t i = 0; i < cm->count; i++)
		if (cm->items[i].net.family == family && in_network(addr, &cm->items[i].net))
			return cm->items[i].value;
	return NULL;
}

static size_t cidr_size(const void *data)
{
	return ((const struct cidr_map *)data)->count;
}

static void cidr_destroy(void *data)
{
	struct cidr_map *cm = data;
	for (size_t i = 0; i < cm->count; i++)
		free(cm->items[i].value);
	free(cm->items);
	free(cm);
}

const struct map_ops map_cidr_ops = {
	"cidr", cidr_create, cidr_add, cidr_done, cidr_lookup, cidr_size, cidr_destroy,
};

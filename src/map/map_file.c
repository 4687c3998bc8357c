/*
 * map_file.c - file: maps (see map.h): "key value" lines held in memory
 * in a hash table (lib/hashmap.h, keyed SipHash: keys chosen by a client
 * cannot flood it). Keys are folded to lower case (ASCII) when the file
 * is read and when they are looked up; a key given twice is an error,
 * since only one of the two values could ever be found.
 *
 * Input: an administrator's file (lines bounded by map.c); lookup keys
 * from SMTP clients. Runs in the supervisor, check-config and the smtp
 * workers.
 */
#include <stdlib.h>
#include <string.h>

#include "../lib/hashmap.h"
#include "../lib/strutil.h"
#include "../lib/xalloc.h"
#include "map_internal.h"

/* A value with the line it came from (for the duplicate report). */
struct file_entry {
	unsigned line;
	char value[]; /* NUL-terminated */
};

struct file_map {
	hashmap_t table;
	bool full; /* MAP_ENTRIES_MAX reached and reported */
};

static void *file_create(void)
{
	return xcalloc(1, sizeof(struct file_map));
}

static bool file_add(void *data, struct map_parse *p, unsigned line, char *text)
{
	struct file_map *fm = data;
	char *key, *value;
	if (!map_split_entry(p, line, text, &key, &value) || !map_check_value(p, line, value))
		return false;
	if (fm->table.count >= MAP_ENTRIES_MAX) {
		if (!fm->full)
			map_report(p, line, "more than %u entries", MAP_ENTRIES_MAX);
		fm->full = true;
		return false;
	}
	str_lower(key);
	const struct file_entry *old = hashmap_get(&fm->table, key, NULL);
	if (old != NULL) {
		map_report(p, line, "key \"%s\" is given twice (first on line %u)", key, old->line);
		return false;
	}
	size_t vlen = strlen(value);
	struct file_entry *e = xmalloc(sizeof(*e) + vlen + 1);
	e->line = line;
	memcpy(e->value, value, vlen + 1);
	hashmap_put(&fm->table, key, e);
	return true;
}

static void file_done(void *data, struct map_parse *p)
{
	(void)data;
	(void)p;
}

static const char *file_lookup(void *data, const char *key, buf_t *scratch)
{
	struct file_map *fm = data;
	/* The folded key goes through scratch, which the caller resets. */
	buf_puts(scratch, key);
	if (scratch->data != NULL)
		str_lower(scratch->data);
	const struct file_entry *e = hashmap_get(&fm->table, buf_cstr(scratch), NULL);
	return e != NULL ? e->value : NULL;
}

static size_t file_size(const void *data)
{
	return ((const struct file_map *)data)->table.count;
}

static void file_destroy(void *data)
{
	struct file_map *fm = data;
	hashmap_free(&fm->table, free);
	free(fm);
}

const struct map_ops map_file_ops = {
	"file", file_create, file_add, file_done, file_lookup, file_size, file_destroy,
};

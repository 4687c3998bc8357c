/*
 * map_internal.h - what the map types (map_file.c, map_cidr.c,
 * map_regexp.c) share with map.c: the parser's context with its
 * FILE:LINE reporting, and each type's operations. Not for use outside
 * src/map/.
 */
#ifndef POSTERN_MAP_INTERNAL_H
#define POSTERN_MAP_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include "../lib/buf.h"
#include "../lib/compat.h"
#include "map.h"

/* Reading one version of a map file. */
struct map_parse {
	const char *path;          /* for FILE:LINE */
	FILE *errors;
	unsigned problems;
	map_value_check_fn *check;
};

void map_report(struct map_parse *p, unsigned line, const char *fmt, ...) PRINTF_LIKE(3, 4);

/* Split a logical line into its first word (the key or pattern) and the
 * rest, trimmed (the value); false after reporting a line without a
 * value. */
bool map_split_entry(struct map_parse *p, unsigned line, char *text, char **key_r,
		     char **value_r);
/* The check of the map's user on one value; false after reporting. */
bool map_check_value(struct map_parse *p, unsigned line, const char *value);

/* One type: its data is built from logical lines (add) and then owns
 * them; lookup fills out (a file: or cidr: value is returned as is). */
struct map_ops {
	const char *name;
	void *(*create)(void);
	/* text is the logical line, writable; false after reporting. */
	bool (*add)(void *data, struct map_parse *p, unsigned line, char *text);
	/* Called once every line was added (the version is complete). */
	void (*done)(void *data, struct map_parse *p);
	const char *(*lookup)(void *data, const char *key, buf_t *scratch);
	size_t (*size)(const void *data);
	void (*destroy)(void *data);
};

extern const struct map_ops map_file_ops;
extern const struct map_ops map_cidr_ops;
extern const struct map_ops map_regexp_ops;

#endif

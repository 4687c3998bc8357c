/*
 * strutil.h - small string helpers: ASCII case folding, lists and
 * parsing of sizes and durations as used in the configuration.
 */
#ifndef POSTERN_STRUTIL_H
#define POSTERN_STRUTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* A NULL-terminated array of malloc'ed strings. */
typedef struct {
	char **items;
	size_t count;
} strlist_t;

void strlist_add(strlist_t *l, const char *s);
void strlist_free(strlist_t *l);
bool strlist_contains_nocase(const strlist_t *l, const char *s);
/* Split on commas and/or white space, skipping empty items. */
void strlist_split(strlist_t *l, const char *text);

/* ASCII lower-casing in place (UTF-8 bytes >= 0x80 untouched). */
void str_lower(char *s);
bool str_eq_nocase(const char *a, const char *b);
/* The value of a hexadecimal digit (either case), or -1. */
int str_hex_digit(int c);
bool str_has_prefix_nocase(const char *s, const char *prefix);

/* "10485760", "10M", "64k", "1G" -> bytes; false if malformed/overflow. */
bool str_parse_size(const char *s, uint64_t *value_r);
/* "300", "300s", "5m", "1h", "5d" -> seconds; false if malformed. */
bool str_parse_duration(const char *s, uint64_t *seconds_r);
/* Decimal unsigned integer, whole string; false if malformed/overflow. */
bool str_parse_uint(const char *s, uint64_t *value_r);

#endif

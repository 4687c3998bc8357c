/*
 * strutil.c - string lists, ASCII case folding, size/duration parsing
 * (see strutil.h).
 */
#include "strutil.h"

#include <stdlib.h>
#include <string.h>

#include "xalloc.h"

void strlist_add(strlist_t *l, const char *s)
{
	l->items = xreallocarray(l->items, l->count + 2, sizeof(*l->items));
	l->items[l->count++] = xstrdup(s);
	l->items[l->count] = NULL;
}

void strlist_free(strlist_t *l)
{
	for (size_t i = 0; i < l->count; i++)
		free(l->items[i]);
	xfree(&l->items);
	l->count = 0;
}

bool strlist_contains_nocase(const strlist_t *l, const char *s)
{
	for (size_t i = 0; i < l->count; i++)
		if (str_eq_nocase(l->items[i], s))
			return true;
	return false;
}

void strlist_split(strlist_t *l, const char *text)
{
	const char *p = text;
	while (*p != '\0') {
		while (*p == ',' || *p == ' ' || *p == '\t')
			p++;
		const char *start = p;
		while (*p != '\0' && *p != ',' && *p != ' ' && *p != '\t')
			p++;
		if (p > start) {
			char *item = xstrndup(start, (size_t)(p - start));
			strlist_add(l, item);
			free(item);
		}
	}
}

static char ascii_lower(char c)
{
	return (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : c;
}

void str_lower(char *s)
{
	for (; *s != '\0'; s++)
		*s = ascii_lower(*s);
}

bool str_eq_nocase(const char *a, const char *b)
{
	for (; *a != '\0' && *b != '\0'; a++, b++)
		if (ascii_lower(*a) != ascii_lower(*b))
			return false;
	return *a == *b;
}

bool str_has_prefix_nocase(const char *s, const char *prefix)
{
	for (; *prefix != '\0'; s++, prefix++)
		if (*s == '\0' || ascii_lower(*s) != ascii_lower(*prefix))
			return false;
	return true;
}

/* Parse leading decimal digits; *end_r points after them. */
static bool parse_digits(const char *s, uint64_t *value_r, const char **end_r)
{
	uint64_t v = 0;
	const char *p = s;
	if (*p < '0' || *p > '9')
		return false;
	for (; *p >= '0' && *p <= '9'; p++) {
		unsigned d = (unsigned)(*p - '0');
		if (v > (UINT64_MAX - d) / 10)
			return false;
		v = v * 10 + d;
	}
	*value_r = v;
	*end_r = p;
	return true;
}

static bool scale(uint64_t v, uint64_t unit, uint64_t *value_r)
{
	if (unit != 0 && v > UINT64_MAX / unit)
		return false;
	*value_r = v * unit;
	return true;
}

bool str_parse_uint(const char *s, uint64_t *value_r)
{
	const char *end;
	return parse_digits(s, value_r, &end) && *end == '\0';
}

struct unit {
	char suffix;
	uint64_t factor;
};

/* A number with an optional one-letter unit suffix from units[]. */
static bool parse_scaled(const char *s, const struct unit *units, uint64_t *value_r)
{
	const char *end;
	uint64_t v;
	if (!parse_digits(s, &v, &end))
		return false;
	if (*end == '\0')
		return scale(v, 1, value_r);
	for (; units->suffix != '\0'; units++)
		if (units->suffix == *end)
			return end[1] == '\0' && scale(v, units->factor, value_r);
	return false;
}

bool str_parse_size(const char *s, uint64_t *value_r)
{
	static const struct unit units[] = {
		{ 'k', 1024 }, { 'K', 1024 }, { 'm', 1024 * 1024 }, { 'M', 1024 * 1024 },
		{ 'g', 1024ULL * 1024 * 1024 }, { 'G', 1024ULL * 1024 * 1024 }, { '\0', 0 },
	};
	return parse_scaled(s, units, value_r);
}

bool str_parse_duration(const char *s, uint64_t *seconds_r)
{
	static const struct unit units[] = {
		{ 's', 1 }, { 'm', 60 }, { 'h', 3600 }, { 'd', 86400 }, { 'w', 7 * 86400 }, { '\0', 0 },
	};
	return parse_scaled(s, units, seconds_r);
}

int str_hex_digit(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/*
 * map.h - lookup tables named in the configuration as TYPE:PATH, the
 * access maps of the SMTP restrictions (docs/postern.conf.5, MAPS):
 *
 *   file:PATH    "key value" lines; a key matches exactly (ASCII case
 *                folded); held in memory as a hash table
 *   cidr:PATH    "network[/prefix] value" lines, IPv4 and IPv6; the
 *                first network in file order that holds the address
 *   regexp:PATH  "/pattern/flags value" lines (PCRE2), or "!/pattern/
 *                value" (matches when the pattern does not); the first
 *                match in file order; $1..$9 in the value take the
 *                pattern's captures. pcre:PATH is the same.
 *
 * All three read logical lines as Postfix's tables do: a line whose first
 * character other than white space is '#' is a comment, blank lines are
 * skipped, and a line that starts with white space continues the logical
 * line before it. Lines, files, entries and patterns are bounded; each
 * problem is reported as "FILE:LINE: message".
 *
 * Reload: a lookup looks at the file (inode, size, modification time) at
 * most once a second; when it changed (and has not changed again in the
 * last second) it is read again. A version with a problem is not taken:
 * the map keeps the one it has, the problems are logged once, and the
 * next change of the file is tried again.
 *
 * Input: the administrator's files (read by the supervisor as root, by
 * check-config, and on reload by the smtp workers as `user`) and lookup
 * keys from SMTP clients (untrusted: addresses, HELO names).
 */
#ifndef POSTERN_MAP_H
#define POSTERN_MAP_H

#include <stdbool.h>
#include <stdio.h>

#define MAP_LINE_MAX 4096               /* one logical line, continuations included */
#define MAP_FILE_MAX (64u * 1024 * 1024) /* bytes of one map file */
#define MAP_ENTRIES_MAX 1000000u        /* entries of a file: or cidr: map */
#define MAP_REGEXP_MAX 10000u           /* patterns of a regexp: map */
#define MAP_RESULT_MAX 1024             /* a value after $N substitution */
/* A regexp: map's patterns, as the content rules bound theirs. */
#define MAP_REGEX_MATCH_LIMIT 100000
#define MAP_REGEX_DEPTH_LIMIT 1000
#define MAP_REGEX_HEAP_KIB 4096

enum map_type { MAP_TYPE_FILE, MAP_TYPE_CIDR, MAP_TYPE_REGEXP };

struct map;

/* What the map's user accepts as a value (an access result, say): NULL
 * if value is fine, else a short text saying what is wrong. Called for
 * every value when the file is read (a regexp: value with its $N as
 * written). */
typedef const char *map_value_check_fn(const char *value);

/*
 * Open "TYPE:PATH" (PATH relative to base_dir when it is not absolute).
 * Problems are printed to errors as "FILE:LINE: message" (the whole
 * spec "TYPE:PATH: message" when no file is involved); returns NULL if
 * there was any. check may be NULL; it is kept for reloads.
 */
struct map *map_open(const char *spec, const char *base_dir, map_value_check_fn *check,
		     FILE *errors);
void map_free(struct map **m);
/* The name map_open would give spec ("file:/abs/path"), without reading
 * anything; NULL if spec is not TYPE:PATH of a known type. */
char *map_canonical_name(const char *spec, const char *base_dir);

/* "file:/etc/postern/access": the type and the absolute, normalised path. */
const char *map_name(const struct map *m);
enum map_type map_get_type(const struct map *m);
/* Entries in the version loaded now. */
size_t map_size(const struct map *m);

/*
 * The value for key, or NULL. For a file: map the key is folded to
 * lower case; a cidr: map matches a key that is an IPv4 or IPv6 address
 * (an IPv4-mapped IPv6 address as IPv4) and nothing else; a regexp: map
 * matches the key as it is. The value stays valid until the next lookup
 * in this map. First, the file is looked at if a second has passed since
 * the last time (see the reload rule above).
 */
const char *map_lookup(struct map *m, const char *key);

/* Look at the file now, whatever the time since the last look; true if
 * a new version was loaded. Problems are logged (log_warn). */
bool map_refresh_now(struct map *m);

#endif

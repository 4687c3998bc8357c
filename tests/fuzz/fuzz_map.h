/*
 * fuzz_map.h - what the map fuzzers (fuzz_map_file.c, fuzz_map_cidr.c,
 * fuzz_map_regexp.c) share: the input is split at its first NUL byte,
 * the map file before it (read through a memfd, as map.c reads files),
 * lookup keys after it, one per line; each key is also looked up as a
 * client, a name and an address, in the access order (policy/access.h).
 * Invariants: a map that opens answers every key without crashing, its
 * values stay within their bounds and, for file: and cidr: maps, each
 * one is a valid access result.
 */
#ifndef POSTERN_FUZZ_MAP_H
#define POSTERN_FUZZ_MAP_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "lib/buf.h"
#include "lib/log.h"
#include "map/map.h"
#include "policy/access.h"

static void fuzz_map_check_value(const struct map *m, const char *v)
{
	if (v == NULL)
		return;
	size_t len = strlen(v);
	if (len > MAP_LINE_MAX + MAP_RESULT_MAX) {
		fprintf(stderr, "%s: value of %zu bytes\n", map_name(m), len);
		abort();
	}
	struct access_result r;
	if (map_get_type(m) != MAP_TYPE_REGEXP && access_parse(v, &r) != NULL) {
		fprintf(stderr, "%s: value \"%s\" was checked but does not parse\n", map_name(m), v);
		abort();
	}
}

static int fuzz_map_run(const char *type, const uint8_t *data, size_t size)
{
	log_set_level(LOG_ERROR);
	const uint8_t *nul = memchr(data, 0, size);
	size_t text_len = nul != NULL ? (size_t)(nul - data) : size;
	int fd = memfd_create("map", 0);
	if (fd < 0)
		return 0;
	if (write(fd, data, text_len) != (ssize_t)text_len) {
		close(fd);
		return 0;
	}
	char spec[64];
	snprintf(spec, sizeof(spec), "%s:/proc/self/fd/%d", type, fd);
	FILE *devnull = fopen("/dev/null", "w");
	struct map *m = map_open(spec, "/", access_check_value, devnull);
	fclose(devnull);
	close(fd);
	if (m == NULL)
		return 0;
	buf_t key = BUF_INIT, found = BUF_INIT;
	const char *p = nul != NULL ? (const char *)nul + 1 : "";
	const char *end = (const char *)data + size;
	if (nul == NULL)
		end = p;
	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		const char *eol = nl != NULL ? nl : end;
		buf_reset(&key);
		buf_append(&key, p, (size_t)(eol - p));
		const char *k = buf_cstr(&key);
		if (strlen(k) == key.len) { /* keys are C strings */
			fuzz_map_check_value(m, map_lookup(m, k));
			fuzz_map_check_value(m, access_lookup_client(m, k, k, &found));
			fuzz_map_check_value(m, access_lookup_name(m, k, &found));
			if (key.len > 0 && key.len < ADDR_PATH_MAX) {
				char path[ADDR_PATH_MAX + 3];
				struct mail_address a;
				const char *why;
				snprintf(path, sizeof(path), "<%s>", k);
				if (address_parse_path(path, strlen(path),
						       ADDR_ALLOW_NULL | ADDR_ALLOW_UTF8 |
						       ADDR_ALLOW_BARE_POSTMASTER, &a, &why) > 0)
					fuzz_map_check_value(m, access_lookup_address(m, &a, &found));
			}
		}
		p = eol + 1;
	}
	buf_free(&key);
	buf_free(&found);
	map_free(&m);
	return 0;
}

#endif

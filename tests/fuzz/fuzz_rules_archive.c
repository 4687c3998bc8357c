/*
 * fuzz_rules_archive.c - libFuzzer target for the listing of names inside
 * archives (src/scan/rules_archive.c, libarchive over message bytes).
 * Invariants: the listing stays within its bounds, and a listing that
 * stopped says why.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "scan/rules.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct scan_rules_archive_limits lim = scan_rules_archive_default_limits;
	lim.max_entries = 200;
	lim.max_bytes = 4u << 20;
	lim.max_inner_bytes = 1u << 20;
	lim.max_ms = 1000;
	struct scan_rules_archive_listing l;
	scan_rules_archive_list(data, size, &lim, &l);
	if (l.count > lim.max_entries || (l.unreadable && l.problem[0] == '\0'))
		abort();
	for (size_t i = 0; i < l.count; i++)
		if (l.members[i].name == NULL || l.members[i].depth < 1 ||
		    l.members[i].depth > lim.max_depth)
			abort();
	scan_rules_archive_listing_free(&l);
	return 0;
}

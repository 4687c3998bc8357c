/*
 * fuzz_map_regexp.c - libFuzzer target for the regexp: map parser
 * (src/map/map_regexp.c and the logical lines of src/map/map.c, file input)
 * and its lookups with untrusted keys; see fuzz_map.h for the input's
 * shape and the invariants.
 */
#include "fuzz_map.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	return fuzz_map_run("regexp", data, size);
}

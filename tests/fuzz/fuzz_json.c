/*
 * fuzz_json.c - libFuzzer target for JSON string escaping: any bytes (a
 * Subject:, an address, a verdict text) must come out as one well-formed
 * JSON string; a violation aborts.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "lib/json.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	buf_t b = BUF_INIT;
	json_put_string(&b, (const char *)data, size);
	const unsigned char *o = (const unsigned char *)b.data;
	if (b.len < 2 || o[0] != '"' || o[b.len - 1] != '"')
		abort();
	for (size_t i = 1; i + 1 < b.len;) {
		if (o[i] < 0x20 || o[i] == 0x7f || o[i] == '"')
			abort();
		if (o[i] == '\\') {
			i += o[i + 1] == 'u' ? 6 : 2;
			continue;
		}
		size_t n = json_utf8_char_len(o + i, b.len - 1 - i);
		if (n == 0)
			abort();
		i += n;
	}
	buf_free(&b);
	return 0;
}

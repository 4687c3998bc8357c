/*
 * fuzz_address.c - libFuzzer target for the RFC 5321 path parser and the
 * unquoting used by relay control.
 */
#include <stddef.h>
#include <stdint.h>

#include "mail/address.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct mail_address a;
	const char *why;
	char out[ADDR_PATH_MAX + 1], local[ADDR_LOCAL_MAX + 1];
	unsigned flags = size > 0 ? data[0] & 7 : 0;
	if (size > 0) {
		data++;
		size--;
	}
	long n = address_parse_path((const char *)data, size, flags, &a, &why);
	if (n > 0) {
		if ((size_t)n > size)
			__builtin_trap();
		address_format(&a, out, sizeof(out));
		address_unquoted_local(&a, local, sizeof(local));
	}
	return 0;
}

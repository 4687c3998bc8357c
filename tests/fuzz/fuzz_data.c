/*
 * fuzz_data.c - libFuzzer target for the DATA/BDAT decoder: the input is
 * split into pieces at arbitrary points; invariants are checked.
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "smtp/data.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 2)
		return 0;
	struct data_limits limits = { 4096, 200, 1024, data[0] & 1, (data[0] & 2) != 0 };
	bool dot_mode = (data[0] & 2) == 0;
	size_t step = (size_t)data[1] % 17 + 1;
	data += 2;
	size -= 2;
	struct data_decoder d;
	buf_t out = BUF_INIT;
	data_decoder_init(&d, &limits, dot_mode);
	size_t pos = 0;
	while (pos < size && !d.done) {
		size_t n = size - pos < step ? size - pos : step;
		size_t used = data_decode(&d, (const char *)data + pos, n, &out);
		if (used > n || (used < n && !d.done))
			__builtin_trap();
		pos += used;
	}
	if (!dot_mode)
		data_decoder_finish(&d, &out);
	/* Output never holds a CR and never grows beyond the input. */
	if (memchr(out.data ? out.data : "", '\r', out.len) != NULL || out.len > size + 1)
		__builtin_trap();
	buf_free(&out);
	return 0;
}

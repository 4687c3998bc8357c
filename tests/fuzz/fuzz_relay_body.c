/*
 * fuzz_relay_body.c - libFuzzer target for the relay agent's DATA
 * encoder (relay_body.c: CR LF, dot stuffing, folding at 998 octets) on
 * arbitrary message content. Invariants: the output does not depend on
 * how the content is cut into chunks; no line is longer than 998 octets;
 * the only "." line is the last one; and when the content is valid UTF-8
 * every output line is too (a fold never cuts a character).
 */

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "relay/relay_body.h"

static void encode(const uint8_t *in, size_t n, size_t cut1, size_t cut2, buf_t *out)
{
	struct relay_body b;
	size_t cuts[4] = { 0, cut1, cut2, n };

	relay_body_init(&b);
	for (int k = 0; k < 3; k++)
		if (cuts[k + 1] > cuts[k])
			relay_body_feed(&b, (const char *)in + cuts[k], cuts[k + 1] - cuts[k], out);
	relay_body_end(&b, out);
}

/* Is p[0..n) valid UTF-8 (structure only: lead and continuation octets)? */
static bool utf8_ok(const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n;) {
		uint8_t c = p[i];
		size_t need = c < 0x80 ? 1 : c >= 0xf0 && c < 0xf8 ? 4 : c >= 0xe0 && c < 0xf0 ? 3
			      : c >= 0xc2 && c < 0xe0 ? 2 : 0;
		if (need == 0 || i + need > n)
			return false;
		for (size_t k = 1; k < need; k++)
			if ((p[i + k] & 0xc0) != 0x80)
				return false;
		i += need;
	}
	return true;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 2)
		return 0;
	size_t n = size - 2;
	const uint8_t *in = data + 2;
	size_t cut1 = n > 0 ? data[0] * 17 % (n + 1) : 0;
	size_t cut2 = n > 0 ? data[1] * 31 % (n + 1) : 0;
	if (cut2 < cut1)
		cut2 = cut1;
	/* Repeat the content so that lines reach the fold point. */
	size_t big_n = n * 4;
	uint8_t *big = malloc(big_n + 1);
	for (size_t k = 0; k < 4; k++)
		if (n > 0)
			memcpy(big + k * n, in, n);

	buf_t whole = BUF_INIT, cut = BUF_INIT;
	encode(big, big_n, 0, 0, &whole);
	encode(big, big_n, cut1 * 4, cut2 * 4 + 1 > big_n ? big_n : cut2 * 4 + 1, &cut);
	if (whole.len != cut.len || memcmp(whole.data, cut.data, whole.len) != 0)
		abort();
	bool valid = utf8_ok(big, big_n);
	const uint8_t *p = (const uint8_t *)whole.data, *end = p + whole.len;
	if (whole.len < 3 || memcmp(end - 3, ".\r\n", 3) != 0)
		abort();
	while (p < end) {
		const uint8_t *nl = memchr(p, '\n', (size_t)(end - p));
		if (nl == NULL)
			abort(); /* every line ends in LF */
		size_t len = (size_t)(nl - p);
		if (len > 0 && p[len - 1] == '\r')
			len--;
		if (len > RELAY_LINE_MAX)
			abort();
		if (len == 1 && p[0] == '.' && nl + 1 != end)
			abort();
		if (valid && !utf8_ok(p, len))
			abort();
		p = nl + 1;
	}
	buf_free(&whole);
	buf_free(&cut);
	free(big);
	return 0;
}

/*
 * fuzz_sasl.c - libFuzzer target for the SASL decoders the smtp and pop3
 * workers run on client lines (src/auth/sasl.h): strict base64, PLAIN and
 * LOGIN responses. The first byte chooses the decoder, the rest is the
 * line. Invariants: base64 that decodes is canonical (it encodes back to
 * the same text); a PLAIN response that decodes has a non-empty user and
 * password within their bounds and without NULs, and a refused one leaves
 * nothing behind; a LOGIN string is non-empty, NUL-free and bounded.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "auth/sasl.h"
#include "lib/buf.h"

static void check_field(const char *s, size_t max, bool empty_ok)
{
	size_t n = strnlen(s, max + 1);
	if (n > max || (n == 0 && !empty_ok))
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size == 0)
		return 0;
	const char *text = (const char *)data + 1;
	size_t len = size - 1;
	switch (data[0] % 3) {
	case 0: {
		static unsigned char out[SASL_DECODED_MAX];
		size_t n;
		if (!sasl_base64_decode(text, len, out, sizeof(out), &n))
			return 0;
		if (len == 1 && text[0] == '=') {
			if (n != 0)
				abort();
			return 0;
		}
		buf_t again = BUF_INIT;
		sasl_base64_encode(out, n, &again);
		if (again.len != len || (len > 0 && memcmp(again.data, text, len) != 0))
			abort();
		buf_free(&again);
		return 0;
	}
	case 1: {
		struct sasl_credentials c;
		enum sasl_status st = sasl_plain_decode(text, len, &c);
		if (st == SASL_OK) {
			check_field(c.user, AUTH_USER_MAX, false);
			check_field(c.password, AUTH_PASSWORD_MAX, false);
		} else if (c.user[0] != '\0' || c.password[0] != '\0') {
			abort(); /* a refusal keeps nothing */
		}
		sasl_credentials_wipe(&c);
		return 0;
	}
	default: {
		char out[AUTH_USER_MAX + 1];
		if (sasl_login_decode(text, len, out, AUTH_USER_MAX) == SASL_OK)
			check_field(out, AUTH_USER_MAX, false);
		return 0;
	}
	}
}

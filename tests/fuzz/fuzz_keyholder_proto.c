/*
 * fuzz_keyholder_proto.c - libFuzzer target for the decoder of the key
 * holder's messages (keyholder_proto.h) and for what the key holder does
 * with a request (keyholder_key.h): the key holder decodes what any worker
 * sends it and the workers decode its answers, so any packet must be
 * either refused or decoded into fields within their bounds. Invariants
 * checked: a message that decodes encodes back to exactly the same bytes;
 * a SIGN request, given (with its key id set to the key's, so that the
 * signing code runs) to an RSA and an ECDSA key, gets an answer that
 * encodes and decodes back to itself, with data only when it succeeded;
 * a raw RSA operation is only ever done on a PSS-shaped input, so random
 * inputs must be refused.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/ec.h>
#include <openssl/rsa.h>

#include "lib/buf.h"
#include "smtp/keyholder_key.h"
#include "smtp/keyholder_proto.h"

static struct keyholder_key *rsa_key, *ec_key;
static size_t raw_signed;

static struct keyholder_key *make_key(EVP_PKEY *pkey)
{
	char *err = NULL;
	struct keyholder_key *k = pkey != NULL ? keyholder_key_new(pkey, pkey, &err) : NULL;
	if (k == NULL)
		abort();
	return k;
}

static void check_answer(const struct keyholder_key *k, const struct keyholder_msg *req)
{
	struct keyholder_msg *m = malloc(sizeof(*m)), *ans = malloc(sizeof(*ans)),
			     *back = malloc(sizeof(*back));
	memcpy(m, req, sizeof(*m));
	memcpy(m->key_id, keyholder_key_id_of(k), KEYHOLDER_ID_LEN);
	keyholder_key_answer(k, m, ans);
	if (ans->type != KEYHOLDER_SIGNED || ans->seq != m->seq ||
	    (ans->status != KEYHOLDER_OK && ans->len != 0) ||
	    (ans->status == KEYHOLDER_OK && ans->len == 0))
		abort();
	if (ans->status == KEYHOLDER_OK && m->op == KEYHOLDER_OP_RSA_RAW && ++raw_signed > 16)
		abort(); /* random inputs are PSS-shaped far less often than this */
	buf_t out = BUF_INIT;
	keyholder_msg_encode(ans, &out);
	const char *err = NULL;
	if (keyholder_msg_decode(out.data, out.len, back, &err) != 0 || back->len != ans->len ||
	    back->status != ans->status || memcmp(back->data, ans->data, ans->len) != 0)
		abort();
	buf_free(&out);
	free(m);
	free(ans);
	free(back);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct keyholder_msg *m = malloc(sizeof(*m));
	const char *err = NULL;
	if (keyholder_msg_decode(data, size, m, &err) != 0) {
		if (err == NULL)
			abort();
		free(m);
		return 0;
	}
	if (m->len > KEYHOLDER_DATA_MAX)
		abort();
	buf_t again = BUF_INIT;
	keyholder_msg_encode(m, &again);
	if (again.len != size || memcmp(again.data, data, size) != 0)
		abort();
	buf_free(&again);
	if (m->type == KEYHOLDER_SIGN) {
		if (rsa_key == NULL) {
			rsa_key = make_key(EVP_RSA_gen(2048));
			ec_key = make_key(EVP_EC_gen("P-256"));
		}
		check_answer(rsa_key, m);
		check_answer(ec_key, m);
	}
	free(m);
	return 0;
}

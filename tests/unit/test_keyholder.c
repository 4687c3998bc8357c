/*
 * test_keyholder.c - the key holder's protocol and key (issue 11): a
 * request and an answer survive encoding; malformed packets are refused
 * with a reason; the key signs what a TLS handshake needs (an ECDSA
 * signature, an RSA PKCS#1 v1.5 signature, the RSA operation on a PSS
 * encoding), each verifiable with the public key, and refuses the rest: a
 * raw RSA operation on anything but a PSS encoding (which would decrypt),
 * an operation of the other key type, a request for another key.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/ec.h>
#include <openssl/rand.h>
#include <openssl/rsa.h>

#include "lib/buf.h"
#include "smtp/keyholder_key.h"
#include "smtp/keyholder_proto.h"

static EVP_PKEY *rsa_pkey, *ec_pkey; /* owned by the keys below */
static struct keyholder_key *rsa_key, *ec_key;

static int setup(void **state)
{
	(void)state;
	char *err = NULL;
	rsa_pkey = EVP_RSA_gen(2048);
	ec_pkey = EVP_EC_gen("P-256");
	if (rsa_pkey == NULL || ec_pkey == NULL)
		return -1;
	rsa_key = keyholder_key_new(rsa_pkey, rsa_pkey, &err);
	ec_key = keyholder_key_new(ec_pkey, ec_pkey, &err);
	return rsa_key != NULL && ec_key != NULL ? 0 : -1;
}

static int teardown(void **state)
{
	(void)state;
	keyholder_key_free(&rsa_key);
	keyholder_key_free(&ec_key);
	return 0;
}

static struct keyholder_msg *request(const struct keyholder_key *k, enum keyholder_op op,
				     const unsigned char *data, size_t len)
{
	struct keyholder_msg *m = calloc(1, sizeof(*m));
	m->type = KEYHOLDER_SIGN;
	m->seq = 77;
	memcpy(m->key_id, keyholder_key_id_of(k), KEYHOLDER_ID_LEN);
	m->op = op;
	m->len = len;
	memcpy(m->data, data, len);
	return m;
}

/* ---- protocol ------------------------------------------------------------------- */

static void test_messages_round_trip(void **state)
{
	(void)state;
	static const unsigned char digest[32] = { 1, 2, 3 };
	struct keyholder_msg *m = request(ec_key, KEYHOLDER_OP_ECDSA, digest, sizeof(digest));
	struct keyholder_msg *back = calloc(1, sizeof(*back));
	buf_t b = BUF_INIT;
	const char *err = NULL;
	keyholder_msg_encode(m, &b);
	assert_int_equal(b.len, 1 + 4 + 32 + 1 + 2 + 32);
	assert_int_equal(keyholder_msg_decode(b.data, b.len, back, &err), 0);
	assert_int_equal(back->type, KEYHOLDER_SIGN);
	assert_int_equal(back->seq, 77);
	assert_int_equal(back->op, KEYHOLDER_OP_ECDSA);
	assert_memory_equal(back->key_id, m->key_id, KEYHOLDER_ID_LEN);
	assert_int_equal(back->len, 32);
	assert_memory_equal(back->data, digest, 32);
	buf_free(&b);

	struct keyholder_msg ans = { .type = KEYHOLDER_SIGNED, .seq = 9,
				     .status = KEYHOLDER_UNKNOWN_KEY };
	keyholder_msg_encode(&ans, &b);
	assert_int_equal(keyholder_msg_decode(b.data, b.len, back, &err), 0);
	assert_int_equal(back->type, KEYHOLDER_SIGNED);
	assert_int_equal(back->status, KEYHOLDER_UNKNOWN_KEY);
	assert_int_equal(back->len, 0);
	buf_free(&b);
	free(m);
	free(back);
}

/* Decode bytes expecting the refusal why. */
static void refused(const unsigned char *p, size_t len, const char *why)
{
	struct keyholder_msg *m = calloc(1, sizeof(*m));
	const char *err = NULL;
	assert_int_equal(keyholder_msg_decode(p, len, m, &err), -1);
	assert_string_equal(err, why);
	free(m);
}

static void test_malformed_packets_are_refused(void **state)
{
	(void)state;
	static const unsigned char digest[20] = { 9 };
	struct keyholder_msg *m = request(ec_key, KEYHOLDER_OP_ECDSA, digest, sizeof(digest));
	buf_t b = BUF_INIT;
	keyholder_msg_encode(m, &b);
	unsigned char *p = (unsigned char *)b.data;

	refused(p, b.len - 1, "message ends inside a field");
	buf_append(&b, "x", 1);
	p = (unsigned char *)b.data;
	refused(p, b.len, "bytes left over");
	b.len--;
	p[0] = 0x02;
	refused(p, b.len, "unknown message type");
	p[0] = KEYHOLDER_SIGN;
	p[1 + 4 + 32] = 4;
	refused(p, b.len, "unknown operation");
	p[1 + 4 + 32] = KEYHOLDER_OP_ECDSA;
	p[1 + 4 + 32 + 1] = 0x04; /* length 0x0414: more than the packet and the maximum */
	refused(p, b.len, "data too long");
	p[1 + 4 + 32 + 1] = 0;
	p[1 + 4 + 32 + 2] = 0;
	refused(p, 1 + 4 + 32 + 1 + 2, "nothing to sign");
	static const unsigned char failed_with_data[] = { 0x81, 0, 0, 0, 1, 2, 0, 1, 'x' };
	refused(failed_with_data, sizeof(failed_with_data), "data with a failure");
	static const unsigned char bad_status[] = { 0x81, 0, 0, 0, 1, 3, 0, 0 };
	refused(bad_status, sizeof(bad_status), "unknown status");
	refused((const unsigned char *)"", 0, "message ends inside a field");
	buf_free(&b);
	free(m);
}

static void test_socket_path_names_the_key(void **state)
{
	(void)state;
	unsigned char id[KEYHOLDER_ID_LEN] = { 0xde, 0xad, 0xbe, 0xef, 0, 1, 2, 0xff, 0x55 };
	char *path = keyholder_socket_path("/var/spool/postern/private", id);
	assert_string_equal(path, "/var/spool/postern/private/keyholder-deadbeef000102ff.sock");
	free(path);
}

/* ---- signatures ----------------------------------------------------------------- */

static struct keyholder_msg *answer(const struct keyholder_key *k, const struct keyholder_msg *req)
{
	struct keyholder_msg *ans = calloc(1, sizeof(*ans));
	keyholder_key_answer(k, req, ans);
	assert_int_equal(ans->type, KEYHOLDER_SIGNED);
	assert_int_equal(ans->seq, req->seq);
	return ans;
}

static void test_ecdsa_signature_verifies(void **state)
{
	(void)state;
	unsigned char digest[32];
	RAND_bytes(digest, sizeof(digest));
	struct keyholder_msg *req = request(ec_key, KEYHOLDER_OP_ECDSA, digest, sizeof(digest));
	struct keyholder_msg *ans = answer(ec_key, req);
	assert_int_equal(ans->status, KEYHOLDER_OK);
	EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new(ec_pkey, NULL);
	assert_int_equal(EVP_PKEY_verify_init(ctx), 1);
	assert_int_equal(EVP_PKEY_verify(ctx, ans->data, ans->len, digest, sizeof(digest)), 1);
	EVP_PKEY_CTX_free(ctx);
	/* the other key type's operations are refused */
	req->op = KEYHOLDER_OP_RSA_PKCS1;
	free(ans);
	ans = answer(ec_key, req);
	assert_int_equal(ans->status, KEYHOLDER_FAILED);
	assert_int_equal(ans->len, 0);
	free(ans);
	free(req);
}

static void test_rsa_pkcs1_signature_verifies(void **state)
{
	(void)state;
	/* a DigestInfo of SHA-256, as RSA_sign builds it */
	static const unsigned char prefix[] = { 0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86,
						0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01, 0x05,
						0x00, 0x04, 0x20 };
	unsigned char info[sizeof(prefix) + 32];
	memcpy(info, prefix, sizeof(prefix));
	RAND_bytes(info + sizeof(prefix), 32);
	struct keyholder_msg *req = request(rsa_key, KEYHOLDER_OP_RSA_PKCS1, info, sizeof(info));
	struct keyholder_msg *ans = answer(rsa_key, req);
	assert_int_equal(ans->status, KEYHOLDER_OK);
	assert_int_equal(ans->len, 256);
	unsigned char digest[32];
	memcpy(digest, info + sizeof(prefix), 32);
	EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new(rsa_pkey, NULL);
	assert_int_equal(EVP_PKEY_verify_init(ctx), 1);
	assert_int_equal(EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_PADDING), 1);
	assert_int_equal(EVP_PKEY_CTX_set_signature_md(ctx, EVP_sha256()), 1);
	assert_int_equal(EVP_PKEY_verify(ctx, ans->data, ans->len, digest, 32), 1);
	EVP_PKEY_CTX_free(ctx);
	free(ans);
	free(req);
}

/* The PSS encoding OpenSSL would give the key holder for md: a real
 * PSS signature, opened with the public key. */
static size_t pss_encoding(const EVP_MD *md, const unsigned char *digest, unsigned char *em)
{
	unsigned char sig[256];
	size_t sig_len = sizeof(sig), em_len = 256;
	EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new(rsa_pkey, NULL);
	assert_int_equal(EVP_PKEY_sign_init(ctx), 1);
	assert_int_equal(EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_PSS_PADDING), 1);
	assert_int_equal(EVP_PKEY_CTX_set_signature_md(ctx, md), 1);
	assert_int_equal(EVP_PKEY_CTX_set_rsa_pss_saltlen(ctx, RSA_PSS_SALTLEN_DIGEST), 1);
	assert_int_equal(EVP_PKEY_sign(ctx, sig, &sig_len, digest, (size_t)EVP_MD_get_size(md)),
			 1);
	EVP_PKEY_CTX_free(ctx);
	ctx = EVP_PKEY_CTX_new(rsa_pkey, NULL);
	assert_int_equal(EVP_PKEY_encrypt_init(ctx), 1);
	assert_int_equal(EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_NO_PADDING), 1);
	assert_int_equal(EVP_PKEY_encrypt(ctx, em, &em_len, sig, sig_len), 1);
	EVP_PKEY_CTX_free(ctx);
	return em_len;
}

static void test_rsa_raw_operation_only_on_pss_encodings(void **state)
{
	(void)state;
	const EVP_MD *mds[] = { EVP_sha256(), EVP_sha384(), EVP_sha512() };
	for (size_t i = 0; i < 3; i++) {
		unsigned char digest[64], em[256];
		RAND_bytes(digest, sizeof(digest));
		size_t len = pss_encoding(mds[i], digest, em);
		assert_int_equal(len, 256);
		struct keyholder_msg *req = request(rsa_key, KEYHOLDER_OP_RSA_RAW, em, len);
		struct keyholder_msg *ans = answer(rsa_key, req);
		assert_int_equal(ans->status, KEYHOLDER_OK);
		EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new(rsa_pkey, NULL);
		assert_int_equal(EVP_PKEY_verify_init(ctx), 1);
		assert_int_equal(EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_PSS_PADDING), 1);
		assert_int_equal(EVP_PKEY_CTX_set_signature_md(ctx, mds[i]), 1);
		assert_int_equal(EVP_PKEY_verify(ctx, ans->data, ans->len, digest,
						 (size_t)EVP_MD_get_size(mds[i])), 1);
		EVP_PKEY_CTX_free(ctx);
		free(ans);
		/* one bit off and it is no PSS encoding: refused */
		req->data[40] ^= 0x01;
		ans = answer(rsa_key, req);
		assert_int_equal(ans->status, KEYHOLDER_FAILED);
		free(ans);
		free(req);
	}
}

static void test_rsa_raw_operation_does_not_decrypt(void **state)
{
	(void)state;
	/* A PKCS#1 v1.5 encryption (a TLS RSA key exchange, say): the raw
	 * operation would reveal the secret. */
	unsigned char secret[48], cipher[256];
	size_t cipher_len = sizeof(cipher);
	RAND_bytes(secret, sizeof(secret));
	EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new(rsa_pkey, NULL);
	assert_int_equal(EVP_PKEY_encrypt_init(ctx), 1);
	assert_int_equal(EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_PADDING), 1);
	assert_int_equal(EVP_PKEY_encrypt(ctx, cipher, &cipher_len, secret, sizeof(secret)), 1);
	EVP_PKEY_CTX_free(ctx);
	struct keyholder_msg *req = request(rsa_key, KEYHOLDER_OP_RSA_RAW, cipher, cipher_len);
	struct keyholder_msg *ans = answer(rsa_key, req);
	assert_int_equal(ans->status, KEYHOLDER_FAILED);
	assert_int_equal(ans->len, 0);
	free(ans);
	/* nor does a PKCS#1 "signature" of it: type 1 padding is added */
	req->op = KEYHOLDER_OP_RSA_PKCS1;
	ans = answer(rsa_key, req);
	assert_int_equal(ans->status, KEYHOLDER_FAILED); /* too long to pad */
	free(ans);
	free(req);
}

static void test_request_for_another_key(void **state)
{
	(void)state;
	unsigned char digest[32] = { 0 };
	struct keyholder_msg *req = request(ec_key, KEYHOLDER_OP_ECDSA, digest, sizeof(digest));
	struct keyholder_msg *ans = answer(rsa_key, req);
	assert_int_equal(ans->status, KEYHOLDER_UNKNOWN_KEY);
	assert_int_equal(ans->len, 0);
	free(ans);
	free(req);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_messages_round_trip),
		cmocka_unit_test(test_malformed_packets_are_refused),
		cmocka_unit_test(test_socket_path_names_the_key),
		cmocka_unit_test(test_ecdsa_signature_verifies),
		cmocka_unit_test(test_rsa_pkcs1_signature_verifies),
		cmocka_unit_test(test_rsa_raw_operation_only_on_pss_encodings),
		cmocka_unit_test(test_rsa_raw_operation_does_not_decrypt),
		cmocka_unit_test(test_request_for_another_key),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}

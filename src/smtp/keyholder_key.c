/*
 * keyholder_key.c - the key holder's key and its signatures (see
 * keyholder_key.h).
 *
 * RFCs: RFC 8017 (PKCS #1 v2.2: the RSA-PSS encoding checked before a raw
 * RSA operation, MGF1). Untrusted input: the SIGN requests (already
 * decoded, fields within bounds). Privilege: root while loading, then
 * `user`.
 */
#include "keyholder_key.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

#include "../lib/buf.h"
#include "../lib/xalloc.h"

struct keyholder_key {
	EVP_PKEY *pkey;
	int type; /* EVP_PKEY_RSA or EVP_PKEY_EC */
	int bits; /* of the RSA modulus */
	unsigned char id[KEYHOLDER_ID_LEN];
};

static char *load_error(const char *what, const char *file)
{
	char detail[256] = "unknown error";
	unsigned long e = ERR_get_error();
	if (e != 0)
		ERR_error_string_n(e, detail, sizeof(detail));
	ERR_clear_error();
	buf_t msg = BUF_INIT;
	buf_printf(&msg, "%s %s: %s", what, file, detail);
	return buf_steal(&msg);
}

/* The public key of the first certificate in cert_file; NULL on error. */
static EVP_PKEY *certificate_key(const char *cert_file, char **err_r)
{
	FILE *f = fopen(cert_file, "r");
	X509 *cert = f != NULL ? PEM_read_X509(f, NULL, NULL, NULL) : NULL;
	if (f != NULL)
		fclose(f);
	EVP_PKEY *pub = cert != NULL ? X509_get_pubkey(cert) : NULL;
	X509_free(cert);
	if (pub == NULL)
		*err_r = load_error("cannot load certificate", cert_file);
	return pub;
}

struct keyholder_key *keyholder_key_load(const char *cert_file, const char *key_file,
					 char **err_r)
{
	EVP_PKEY *pub = certificate_key(cert_file, err_r);
	if (pub == NULL)
		return NULL;
	FILE *f = fopen(key_file, "r");
	EVP_PKEY *pkey = f != NULL ? PEM_read_PrivateKey(f, NULL, NULL, NULL) : NULL;
	if (f != NULL)
		fclose(f);
	struct keyholder_key *k = NULL;
	if (pkey == NULL) {
		*err_r = load_error("cannot load key", key_file);
	} else if (EVP_PKEY_eq(pub, pkey) != 1) {
		*err_r = load_error("key does not match certificate", cert_file);
		EVP_PKEY_free(pkey);
	} else {
		/* known by the id of the certificate's encoding, as the
		 * workers compute it */
		k = keyholder_key_new(pkey, pub, err_r);
	}
	EVP_PKEY_free(pub);
	return k;
}

struct keyholder_key *keyholder_key_new(EVP_PKEY *pkey, EVP_PKEY *pub, char **err_r)
{
	struct keyholder_key *k = xcalloc(1, sizeof(*k));
	k->pkey = pkey;
	k->type = EVP_PKEY_get_base_id(pkey);
	if (k->type != EVP_PKEY_RSA && k->type != EVP_PKEY_EC) {
		buf_t msg = BUF_INIT;
		buf_printf(&msg, "a key of type %s: the key holder signs with RSA and ECDSA "
			   "keys only", keyholder_key_type_name(k->type));
		*err_r = buf_steal(&msg);
	} else if (keyholder_key_id(pub, k->id) < 0) {
		*err_r = load_error("cannot compute the key id of", "the certificate");
	} else {
		k->bits = EVP_PKEY_get_bits(pkey);
		return k;
	}
	keyholder_key_free(&k);
	return NULL;
}

void keyholder_key_free(struct keyholder_key **kp)
{
	if (*kp == NULL)
		return;
	EVP_PKEY_free((*kp)->pkey);
	xfree(kp);
}

const unsigned char *keyholder_key_id_of(const struct keyholder_key *k)
{
	return k->id;
}

const char *keyholder_key_id_text(const struct keyholder_key *k)
{
	static char text[2 * KEYHOLDER_ID_LEN + 1];
	for (size_t i = 0; i < KEYHOLDER_ID_LEN; i++)
		snprintf(text + 2 * i, 3, "%02x", k->id[i]);
	return text;
}

/* ---- RSA-PSS encodings (RFC 8017 9.1.2, the steps that need no message) ----------- */

/* MGF1 with md: len bytes of mask from seed; false on error. */
static bool mgf1(const EVP_MD *md, const unsigned char *seed, size_t seed_len,
		 unsigned char *mask, size_t len)
{
	unsigned char block[EVP_MAX_MD_SIZE];
	size_t hlen = (size_t)EVP_MD_get_size(md);
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	bool ok = ctx != NULL;
	for (uint32_t counter = 0; ok && len > 0; counter++) {
		unsigned char c[4] = { (unsigned char)(counter >> 24), (unsigned char)(counter >> 16),
				       (unsigned char)(counter >> 8), (unsigned char)counter };
		ok = EVP_DigestInit_ex(ctx, md, NULL) == 1 &&
		     EVP_DigestUpdate(ctx, seed, seed_len) == 1 &&
		     EVP_DigestUpdate(ctx, c, sizeof(c)) == 1 &&
		     EVP_DigestFinal_ex(ctx, block, NULL) == 1;
		size_t n = len < hlen ? len : hlen;
		memcpy(mask, block, n);
		mask += n;
		len -= n;
	}
	EVP_MD_CTX_free(ctx);
	return ok;
}

/* Is em (emLen bytes for a key of em_bits + 1 bits) a PSS encoding with
 * hash md, MGF1 with md and a salt of the hash's length? */
static bool pss_shaped_with(const EVP_MD *md, const unsigned char *em, size_t em_len,
			    size_t em_bits)
{
	size_t hlen = (size_t)EVP_MD_get_size(md);
	if (em_len < 2 * hlen + 2 || em[em_len - 1] != 0xbc)
		return false;
	size_t db_len = em_len - hlen - 1;
	unsigned char db[KEYHOLDER_DATA_MAX];
	if (!mgf1(md, em + db_len, hlen, db, db_len))
		return false;
	for (size_t i = 0; i < db_len; i++)
		db[i] ^= em[i];
	unsigned top_bits = (unsigned)(8 * em_len - em_bits);
	if ((em[0] & (0xffu << (8 - top_bits)) & 0xffu) != 0)
		return false; /* the bits above emBits must be zero */
	db[0] &= (unsigned char)(0xffu >> top_bits);
	size_t zeros = db_len - hlen - 1; /* PS, then 0x01, then the salt */
	for (size_t i = 0; i < zeros; i++)
		if (db[i] != 0)
			return false;
	return db[zeros] == 0x01;
}

/* Is in (the modulus's length) an RSA-PSS encoding TLS would make? */
static bool pss_shaped(const unsigned char *in, size_t len, int mod_bits)
{
	size_t em_bits = (size_t)mod_bits - 1;
	size_t em_len = (em_bits + 7) / 8;
	if (len != ((size_t)mod_bits + 7) / 8 || em_len == 0)
		return false;
	if (em_len < len) { /* modBits = 8k + 1: a leading zero byte */
		if (in[0] != 0)
			return false;
		in++;
	}
	const EVP_MD *mds[] = { EVP_sha256(), EVP_sha384(), EVP_sha512() };
	for (size_t i = 0; i < sizeof(mds) / sizeof(mds[0]); i++)
		if (pss_shaped_with(mds[i], in, em_len, em_bits))
			return true;
	return false;
}

/* ---- signing -------------------------------------------------------------------- */

static enum keyholder_status sign(const struct keyholder_key *k, const struct keyholder_msg *req,
				  unsigned char *out, size_t *out_len)
{
	bool rsa_op = req->op == KEYHOLDER_OP_RSA_RAW || req->op == KEYHOLDER_OP_RSA_PKCS1;
	if (rsa_op != (k->type == EVP_PKEY_RSA))
		return KEYHOLDER_FAILED;
	if (req->op == KEYHOLDER_OP_RSA_RAW && !pss_shaped(req->data, req->len, k->bits))
		return KEYHOLDER_FAILED;
	EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_pkey(NULL, k->pkey, NULL);
	int ok = ctx != NULL && EVP_PKEY_sign_init(ctx) == 1;
	if (ok && rsa_op)
		ok = EVP_PKEY_CTX_set_rsa_padding(ctx, req->op == KEYHOLDER_OP_RSA_RAW
						  ? RSA_NO_PADDING : RSA_PKCS1_PADDING) == 1;
	ok = ok && EVP_PKEY_sign(ctx, out, out_len, req->data, req->len) == 1;
	EVP_PKEY_CTX_free(ctx);
	ERR_clear_error();
	return ok ? KEYHOLDER_OK : KEYHOLDER_FAILED;
}

void keyholder_key_answer(const struct keyholder_key *k, const struct keyholder_msg *req,
			  struct keyholder_msg *ans)
{
	memset(ans, 0, offsetof(struct keyholder_msg, data));
	ans->type = KEYHOLDER_SIGNED;
	ans->seq = req->seq;
	if (CRYPTO_memcmp(req->key_id, k->id, KEYHOLDER_ID_LEN) != 0) {
		ans->status = KEYHOLDER_UNKNOWN_KEY;
		return;
	}
	size_t len = sizeof(ans->data);
	ans->status = sign(k, req, ans->data, &len);
	ans->len = ans->status == KEYHOLDER_OK ? len : 0;
}

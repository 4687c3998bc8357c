/*
 * keyholder_key.h - the key holder's key: loaded once (as root, before the
 * role switches accounts) from tls_key and checked against tls_cert, and
 * the one thing done with it, answering a SIGN request
 * (smtp/keyholder_proto.h).
 *
 * What a request may get, even from a compromised worker: an ECDSA
 * signature of a digest, an RSA PKCS#1 v1.5 signature (type 1 padding,
 * never a decryption), or an RSA private operation on an input that is a
 * well-formed RSA-PSS encoding (RFC 8017 9.1.1: zero padding, the 0x01
 * separator, the 0xbc trailer, a salt as long as the hash, SHA-256, -384
 * or -512 as TLS uses it): an arbitrary input (a recorded RSA key
 * exchange, blinded or not) is refused, so the raw operation cannot
 * decrypt.
 *
 * Untrusted input: the requests. Privilege: the key holder (root while
 * loading, then `user`).
 */
#ifndef POSTERN_KEYHOLDER_KEY_H
#define POSTERN_KEYHOLDER_KEY_H

#include "keyholder_proto.h"

struct keyholder_key;

/* Load key_file and check that it belongs to cert_file's certificate:
 * the key, or NULL with a malloc'ed *err_r. */
struct keyholder_key *keyholder_key_load(const char *cert_file, const char *key_file,
					 char **err_r);
/* The key pkey (taken over, freed on failure too), known by the id of
 * pub (the certificate's public key; pkey itself will do in tests): NULL
 * with a malloc'ed *err_r if it is neither RSA nor EC. */
struct keyholder_key *keyholder_key_new(EVP_PKEY *pkey, EVP_PKEY *pub, char **err_r);
void keyholder_key_free(struct keyholder_key **kp);

/* The key's id (KEYHOLDER_ID_LEN bytes). */
const unsigned char *keyholder_key_id_of(const struct keyholder_key *k);

/* The key's id, hex, for logs (static buffer). */
const char *keyholder_key_id_text(const struct keyholder_key *k);

/* The SIGNED answer to the SIGN request req, in *ans. */
void keyholder_key_answer(const struct keyholder_key *k, const struct keyholder_msg *req,
			  struct keyholder_msg *ans);

#endif

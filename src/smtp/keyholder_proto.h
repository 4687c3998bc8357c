/*
 * keyholder_proto.h - the messages between a TLS worker (smtp, pop3) and
 * the key holder, the one process of "postern serve" that holds the TLS
 * private key (src/server/keyholder.c, docs/architecture.md "The key
 * holder"). AF_UNIX SOCK_SEQPACKET at
 * spool_dir/private/keyholder-ID.sock, where ID is the start of the key
 * id (below) in hex, so a worker reaches a key holder with its own key
 * whichever generation either belongs to; one message per packet, one
 * request outstanding per connection (the worker waits for the answer,
 * see tls_remote_key.c):
 *
 *   worker --SIGN--->  key holder   sign these bytes with the key whose
 *          <-SIGNED--               public key has this identifier
 *
 * Every message is a type byte and that type's fixed list of fields;
 * integers are unsigned big-endian; a message must end exactly after its
 * last field and be at most KEYHOLDER_MSG_MAX bytes. Anything else is a
 * protocol violation: the key holder ends that worker's connection, a
 * worker fails the signature (the handshake fails, the session goes on
 * without TLS or ends).
 *
 *   SIGN   0x01  u32 seq, 32 bytes key id, u8 op (enum keyholder_op),
 *                u16 n (1..KEYHOLDER_DATA_MAX), n bytes input
 *   SIGNED 0x81  u32 seq (the request's), u8 status (enum
 *                keyholder_status), u16 n (0..KEYHOLDER_DATA_MAX; 0 unless
 *                status is KEYHOLDER_OK), n bytes signature
 *
 * The operations are the raw private-key primitives OpenSSL's TLS code
 * reaches through a key's method table: an RSA private-key operation on
 * an input already padded (RSA_NO_PADDING, as for RSA-PSS) or to be
 * padded as PKCS#1 v1.5 type 1 (a DigestInfo, as for RSA PKCS#1
 * signatures), or an ECDSA signature of a digest (answer: DER
 * ECDSA-Sig-Value). No decryption is offered: the servers refuse the RSA
 * key exchange (no forward secrecy), so no operation turns the key
 * holder into a decryption oracle.
 *
 * The key id is the SHA-256 of the public key's DER SubjectPublicKeyInfo
 * (keyholder_key_id); a request for another key than the key holder's
 * (which only a stale socket name could bring) gets KEYHOLDER_UNKNOWN_KEY,
 * not a signature the worker's certificate does not match.
 *
 * Untrusted input: each side decodes what it receives as hostile (a
 * compromised worker may send anything; it may still get signatures,
 * never the key). Privilege: unprivileged workers and key holder (`user`).
 */
#ifndef POSTERN_KEYHOLDER_PROTO_H
#define POSTERN_KEYHOLDER_PROTO_H

#include <stddef.h>
#include <stdint.h>

#include <openssl/evp.h>

#include "../lib/buf.h"

#define KEYHOLDER_ID_LEN 32
#define KEYHOLDER_DATA_MAX 1024 /* an RSA modulus of 8192 bits */
#define KEYHOLDER_MSG_MAX (1 + 4 + KEYHOLDER_ID_LEN + 1 + 2 + KEYHOLDER_DATA_MAX)
#define KEYHOLDER_NAME_ID_BYTES 8 /* of the key id, in the socket's name */

enum keyholder_msg_type {
	KEYHOLDER_SIGN = 0x01,
	KEYHOLDER_SIGNED = 0x81,
};

enum keyholder_op {
	KEYHOLDER_OP_RSA_RAW = 1,   /* RSA private operation, input padded already */
	KEYHOLDER_OP_RSA_PKCS1 = 2, /* RSA private operation, PKCS#1 v1.5 type 1 padding */
	KEYHOLDER_OP_ECDSA = 3,     /* ECDSA over a digest, DER answer */
};

enum keyholder_status {
	KEYHOLDER_OK = 0,
	KEYHOLDER_UNKNOWN_KEY = 1, /* no key of that id here */
	KEYHOLDER_FAILED = 2,      /* the operation failed (wrong length, wrong key type) */
};

struct keyholder_msg {
	enum keyholder_msg_type type;
	uint32_t seq;
	unsigned char key_id[KEYHOLDER_ID_LEN]; /* SIGN */
	enum keyholder_op op;                   /* SIGN */
	enum keyholder_status status;           /* SIGNED */
	size_t len;                             /* of data */
	unsigned char data[KEYHOLDER_DATA_MAX];
};

/* Append m's encoding to out (panics if m breaks a bound: our bug). */
void keyholder_msg_encode(const struct keyholder_msg *m, buf_t *out);

/* Decode one packet into *m: 0, or -1 with a static *err_r saying what
 * was wrong. */
int keyholder_msg_decode(const void *data, size_t len, struct keyholder_msg *m,
			 const char **err_r);

/* The key id of pkey's public key into id_r: 0, or -1 (OpenSSL error). */
int keyholder_key_id(const EVP_PKEY *pkey, unsigned char id_r[KEYHOLDER_ID_LEN]);

/* The short name of an EVP_PKEY type for messages ("RSA", "ED25519",
 * "none"). */
const char *keyholder_key_type_name(int type);

/* The folder of the key holders' sockets: spool_dir/private (malloc'ed). */
char *keyholder_socket_dir(const char *spool_dir);
/* The socket of the key holder of key id in dir: dir/keyholder-ID.sock
 * (malloc'ed). */
char *keyholder_socket_path(const char *dir, const unsigned char id[KEYHOLDER_ID_LEN]);

#endif

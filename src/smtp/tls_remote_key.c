/*
 * tls_remote_key.c - private-key operations asked of the key holder (see
 * tls_remote_key.h).
 *
 * OpenSSL 3 reaches a key's private operations either through a provider
 * or, for a key whose RSA or EC_KEY object carries its own method table,
 * through that table (the "legacy" path it keeps for engines). The table
 * is by far the smaller of the two (two functions per key type against a
 * key manager, a signature implementation and their parameter plumbing),
 * and its functions are deprecated but kept through OpenSSL 3.x: this is
 * the only file that uses them, hence OPENSSL_SUPPRESS_DEPRECATED here and
 * nowhere else. When OpenSSL drops them this file becomes a provider;
 * nothing outside it changes.
 *
 * OpenSSL's TLS code signs through EVP_PKEY_sign, which for these keys
 * calls RSA_private_encrypt (RSA-PSS: padded here already, RSA_NO_PADDING;
 * RSA PKCS#1 v1.5: a DigestInfo with RSA_PKCS1_PADDING) or ECDSA_sign:
 * exactly the three operations of keyholder_proto.h. Decryption (the RSA
 * key exchange) is refused: tls.c does not offer those cipher suites.
 *
 * One connection per key object to the key holder of its key, opened
 * when first needed and again after the key holder went away; one
 * request at a time.
 *
 * RFCs: none (RFC 8446 4.4.3 and RFC 5246 7.4.8 are OpenSSL's).
 * Untrusted input: the key holder's answers. Privilege: any unprivileged
 * TLS worker.
 */
#define OPENSSL_SUPPRESS_DEPRECATED 1

#include "tls_remote_key.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/rsa.h>

#include "../lib/buf.h"
#include "../lib/log.h"
#include "../lib/unixsock.h"
#include "../lib/xalloc.h"
#include "keyholder_proto.h"

/* What a key object carries: the id the key holder knows its key by and
 * the connection to it. */
struct remote_key {
	unsigned char id[KEYHOLDER_ID_LEN];
	char *path; /* the key holder's socket */
	int fd;     /* -1: not connected */
	uint32_t seq;
	long long no_wait_until; /* it was away: do not wait for it again before */
};

static int rsa_index = -1, ec_index = -1;
static RSA_METHOD *rsa_method;
static EC_KEY_METHOD *ec_method;

/* ---- asking the key holder ------------------------------------------------------ */

static long long now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void disconnect(struct remote_key *k)
{
	if (k->fd >= 0)
		close(k->fd);
	k->fd = -1;
}

/* Wait until fd is ready for events or deadline: 1 ready, 0 timed out,
 * -1 error. */
static int wait_for(int fd, short events, long long deadline)
{
	for (;;) {
		long long left = deadline - now_ms();
		if (left <= 0)
			return 0;
		struct pollfd p = { fd, events, 0 };
		int n = poll(&p, 1, (int)left);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -1;
		if (n > 0)
			return 1;
	}
}

/* Connect to the key holder. One that is not there (starting, or being
 * started again after it died) is waited for up to
 * TLS_REMOTE_KEY_CONNECT_WAIT_MS, but not again for as long after that
 * wait failed: a key holder away for long costs each worker at most that
 * much time every other interval, not every handshake. */
static int connect_holder(struct remote_key *k, long long deadline)
{
	long long start = now_ms();
	long long until = start >= k->no_wait_until
			  ? start + TLS_REMOTE_KEY_CONNECT_WAIT_MS : start;
	if (until > deadline)
		until = deadline;
	for (;;) {
		k->fd = unixsock_connect(k->path);
		if (k->fd >= 0)
			return 0;
		int err = errno;
		if ((err != ENOENT && err != ECONNREFUSED && err != EAGAIN) || now_ms() >= until) {
			if (until > start)
				k->no_wait_until = now_ms() + TLS_REMOTE_KEY_CONNECT_WAIT_MS;
			log_warn("TLS key holder %s: %s", k->path, strerror(err));
			return -1;
		}
		struct timespec pause = { 0, 50 * 1000 * 1000 };
		nanosleep(&pause, NULL);
	}
}

enum attempt { ATTEMPT_OK, ATTEMPT_LOST, ATTEMPT_FAILED };

/* One request on the current connection; the answer in *answer. LOST:
 * the connection failed (worth one more try on a new one). */
static enum attempt exchange(int fd, const buf_t *request, uint32_t seq, long long deadline,
			     struct keyholder_msg *answer)
{
	for (;;) {
		ssize_t n = send(fd, request->data, request->len, MSG_NOSIGNAL);
		if (n == (ssize_t)request->len)
			break;
		if (n < 0 && errno == EINTR)
			continue;
		int err = n < 0 ? errno : EMSGSIZE;
		if ((err == EAGAIN || err == EWOULDBLOCK) && wait_for(fd, POLLOUT, deadline) > 0)
			continue;
		log_warn("TLS key holder: cannot send a request: %s", strerror(err));
		bool lost = err != EAGAIN && err != EWOULDBLOCK && err != EMSGSIZE;
		return lost ? ATTEMPT_LOST : ATTEMPT_FAILED;
	}
	for (;;) {
		int ready = wait_for(fd, POLLIN, deadline);
		if (ready <= 0) {
			log_warn("TLS key holder: no answer within %d ms", TLS_REMOTE_KEY_WAIT_MS);
			return ATTEMPT_FAILED;
		}
		unsigned char packet[KEYHOLDER_MSG_MAX + 1];
		ssize_t n = recv(fd, packet, sizeof(packet), MSG_TRUNC);
		if (n < 0 && (errno == EINTR || errno == EAGAIN))
			continue;
		if (n <= 0) {
			log_warn("TLS key holder: connection lost: %s",
				 n < 0 ? strerror(errno) : "closed");
			return ATTEMPT_LOST;
		}
		const char *err = NULL;
		if ((size_t)n > KEYHOLDER_MSG_MAX)
			err = "message too long";
		else if (keyholder_msg_decode(packet, (size_t)n, answer, &err) == 0 &&
			 answer->type != KEYHOLDER_SIGNED)
			err = "a request instead of an answer";
		if (err != NULL) {
			log_warn("TLS key holder: protocol violation: %s", err);
			return ATTEMPT_FAILED;
		}
		if (answer->seq == seq)
			return ATTEMPT_OK;
		/* the late answer to a request that timed out: skip it */
	}
}

/* Ask k's key holder for op on in; the answer's data into out (at most
 * out_max bytes): its length, or -1 after a log line. */
static long ask(struct remote_key *k, enum keyholder_op op, const unsigned char *in,
		size_t in_len, unsigned char *out, size_t out_max)
{
	if (in_len == 0 || in_len > KEYHOLDER_DATA_MAX) {
		log_warn("TLS key holder: cannot ask for %zu bytes", in_len);
		return -1;
	}
	struct keyholder_msg *m = xcalloc(1, sizeof(*m));
	buf_t request = BUF_INIT;
	m->type = KEYHOLDER_SIGN;
	m->seq = ++k->seq;
	memcpy(m->key_id, k->id, KEYHOLDER_ID_LEN);
	m->op = op;
	m->len = in_len;
	memcpy(m->data, in, in_len);
	keyholder_msg_encode(m, &request);
	long long deadline = now_ms() + TLS_REMOTE_KEY_WAIT_MS;
	enum attempt a = ATTEMPT_LOST;
	for (int tries = 0; tries < 2 && a == ATTEMPT_LOST; tries++) {
		bool fresh = k->fd < 0;
		if (fresh && connect_holder(k, deadline) < 0) {
			a = ATTEMPT_FAILED;
			break;
		}
		a = exchange(k->fd, &request, m->seq, deadline, m);
		if (a != ATTEMPT_OK)
			disconnect(k);
		if (fresh)
			break; /* a new connection that fails is not tried again */
	}
	buf_free(&request);
	long result = -1;
	if (a == ATTEMPT_OK && m->status == KEYHOLDER_OK && m->len <= out_max) {
		memcpy(out, m->data, m->len);
		result = (long)m->len;
	} else if (a == ATTEMPT_OK) {
		const char *why = "the operation failed";
		if (m->status == KEYHOLDER_UNKNOWN_KEY)
			why = "it does not hold this certificate's key";
		else if (m->status == KEYHOLDER_OK)
			why = "answer too long";
		log_warn("TLS key holder: %s", why);
	}
	explicit_bzero(m, sizeof(*m));
	free(m);
	return result;
}

/* ---- RSA ------------------------------------------------------------------------ */

static int rsa_priv_enc(int flen, const unsigned char *from, unsigned char *to, RSA *rsa,
			int padding)
{
	struct remote_key *k = RSA_get_ex_data(rsa, rsa_index);
	enum keyholder_op op = padding == RSA_NO_PADDING ? KEYHOLDER_OP_RSA_RAW
			     : padding == RSA_PKCS1_PADDING ? KEYHOLDER_OP_RSA_PKCS1 : 0;
	if (k == NULL || op == 0 || flen <= 0) {
		ERR_raise(ERR_LIB_RSA, RSA_R_UNKNOWN_PADDING_TYPE);
		return -1;
	}
	long n = ask(k, op, from, (size_t)flen, to, (size_t)RSA_size(rsa));
	if (n != RSA_size(rsa)) { /* an RSA result is exactly as long as the modulus */
		ERR_raise(ERR_LIB_RSA, ERR_R_INTERNAL_ERROR);
		return -1;
	}
	return (int)n;
}

/* The RSA key exchange is not offered: no decryption. */
static int rsa_priv_dec(int flen, const unsigned char *from, unsigned char *to, RSA *rsa,
			int padding)
{
	(void)flen;
	(void)from;
	(void)to;
	(void)rsa;
	(void)padding;
	ERR_raise(ERR_LIB_RSA, ERR_R_OPERATION_FAIL);
	return -1;
}

/* ---- ECDSA ---------------------------------------------------------------------- */

static int ec_sign(int type, const unsigned char *dgst, int dlen, unsigned char *sig,
		   unsigned int *siglen, const BIGNUM *kinv, const BIGNUM *r, EC_KEY *eckey)
{
	(void)type;
	(void)kinv;
	(void)r;
	struct remote_key *k = EC_KEY_get_ex_data(eckey, ec_index);
	int max = ECDSA_size(eckey);
	if (k == NULL || dlen <= 0 || max <= 0) {
		ERR_raise(ERR_LIB_EC, ERR_R_PASSED_INVALID_ARGUMENT);
		return 0;
	}
	long n = ask(k, KEYHOLDER_OP_ECDSA, dgst, (size_t)dlen, sig, (size_t)max);
	if (n <= 0) {
		ERR_raise(ERR_LIB_EC, ERR_R_INTERNAL_ERROR);
		return 0;
	}
	*siglen = (unsigned int)n;
	return 1;
}

static ECDSA_SIG *ec_sign_sig(const unsigned char *dgst, int dlen, const BIGNUM *kinv,
			      const BIGNUM *r, EC_KEY *eckey)
{
	unsigned char der[KEYHOLDER_DATA_MAX];
	unsigned int len = 0;
	if (ECDSA_size(eckey) > (int)sizeof(der) ||
	    ec_sign(0, dgst, dlen, der, &len, kinv, r, eckey) != 1)
		return NULL;
	const unsigned char *p = der;
	return d2i_ECDSA_SIG(NULL, &p, (long)len);
}

/* ---- the key objects ------------------------------------------------------------ */

static void remote_key_ex_free(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx, long argl,
			    void *argp)
{
	(void)parent;
	(void)ad;
	(void)idx;
	(void)argl;
	(void)argp;
	struct remote_key *k = ptr;
	if (k == NULL)
		return;
	disconnect(k);
	free(k->path);
	free(k);
}

/* The method tables, made once per process. */
static void methods_init(void)
{
	if (rsa_method != NULL)
		return;
	rsa_index = RSA_get_ex_new_index(0, NULL, NULL, NULL, remote_key_ex_free);
	ec_index = EC_KEY_get_ex_new_index(0, NULL, NULL, NULL, remote_key_ex_free);
	rsa_method = RSA_meth_dup(RSA_PKCS1_OpenSSL());
	ec_method = EC_KEY_METHOD_new(EC_KEY_OpenSSL());
	if (rsa_index < 0 || ec_index < 0 || rsa_method == NULL || ec_method == NULL)
		log_fatal("cannot create the key holder's key methods");
	RSA_meth_set1_name(rsa_method, "postern key holder");
	RSA_meth_set_priv_enc(rsa_method, rsa_priv_enc);
	RSA_meth_set_priv_dec(rsa_method, rsa_priv_dec);
	int (*sign_setup)(EC_KEY *, BN_CTX *, BIGNUM **, BIGNUM **) = NULL;
	EC_KEY_METHOD_get_sign(EC_KEY_OpenSSL(), NULL, &sign_setup, NULL);
	EC_KEY_METHOD_set_sign(ec_method, ec_sign, sign_setup, ec_sign_sig);
}

static struct remote_key *remote_key_of(EVP_PKEY *pub, const char *keyholder_dir)
{
	struct remote_key *k = xcalloc(1, sizeof(*k));
	k->fd = -1;
	if (keyholder_key_id(pub, k->id) < 0) {
		free(k);
		return NULL;
	}
	k->path = keyholder_socket_path(keyholder_dir, k->id);
	return k;
}

static void remote_key_free(struct remote_key *k)
{
	free(k->path);
	free(k);
}

/* A public RSA key with our method; NULL on failure. */
static EVP_PKEY *remote_rsa(EVP_PKEY *pub, struct remote_key *k)
{
	const RSA *src = EVP_PKEY_get0_RSA(pub);
	RSA *rsa = RSA_new();
	BIGNUM *n = src != NULL ? BN_dup(RSA_get0_n(src)) : NULL;
	BIGNUM *e = src != NULL ? BN_dup(RSA_get0_e(src)) : NULL;
	EVP_PKEY *pk = EVP_PKEY_new();
	if (rsa == NULL || n == NULL || e == NULL || pk == NULL || RSA_set0_key(rsa, n, e, NULL) != 1) {
		BN_free(n);
		BN_free(e);
		RSA_free(rsa);
		EVP_PKEY_free(pk);
		remote_key_free(k);
		return NULL;
	}
	if (RSA_set_method(rsa, rsa_method) != 1 || RSA_set_ex_data(rsa, rsa_index, k) != 1) {
		remote_key_free(k);
		RSA_free(rsa);
		EVP_PKEY_free(pk);
		return NULL;
	}
	if (EVP_PKEY_assign_RSA(pk, rsa) != 1) {
		RSA_free(rsa); /* frees k */
		EVP_PKEY_free(pk);
		return NULL;
	}
	return pk;
}

/* A public EC key with our method; NULL on failure. */
static EVP_PKEY *remote_ec(EVP_PKEY *pub, struct remote_key *k)
{
	const EC_KEY *src = EVP_PKEY_get0_EC_KEY(pub);
	EC_KEY *ec = EC_KEY_new();
	EVP_PKEY *pk = EVP_PKEY_new();
	if (src == NULL || ec == NULL || pk == NULL ||
	    EC_KEY_set_group(ec, EC_KEY_get0_group(src)) != 1 ||
	    EC_KEY_set_public_key(ec, EC_KEY_get0_public_key(src)) != 1 ||
	    EC_KEY_set_method(ec, ec_method) != 1) {
		EC_KEY_free(ec);
		EVP_PKEY_free(pk);
		remote_key_free(k);
		return NULL;
	}
	if (EC_KEY_set_ex_data(ec, ec_index, k) != 1) {
		EC_KEY_free(ec);
		EVP_PKEY_free(pk);
		remote_key_free(k);
		return NULL;
	}
	if (EVP_PKEY_assign_EC_KEY(pk, ec) != 1) {
		EC_KEY_free(ec); /* frees k */
		EVP_PKEY_free(pk);
		return NULL;
	}
	return pk;
}

EVP_PKEY *tls_remote_key_new(X509 *cert, const char *keyholder_dir, char **err_r)
{
	EVP_PKEY *pub = X509_get0_pubkey(cert);
	methods_init();
	int type = pub != NULL ? EVP_PKEY_get_base_id(pub) : EVP_PKEY_NONE;
	if (type != EVP_PKEY_RSA && type != EVP_PKEY_EC) {
		buf_t msg = BUF_INIT;
		buf_printf(&msg, "the certificate's key is of type %s: the key holder signs "
			   "with RSA and ECDSA keys only", keyholder_key_type_name(type));
		*err_r = buf_steal(&msg);
		return NULL;
	}
	struct remote_key *k = remote_key_of(pub, keyholder_dir);
	EVP_PKEY *pk = k == NULL ? NULL : type == EVP_PKEY_RSA ? remote_rsa(pub, k)
									  : remote_ec(pub, k);
	if (pk == NULL) {
		char detail[256] = "unknown error";
		unsigned long e = ERR_get_error();
		if (e != 0)
			ERR_error_string_n(e, detail, sizeof(detail));
		ERR_clear_error();
		buf_t msg = BUF_INIT;
		buf_printf(&msg, "cannot make the key holder's key object: %s", detail);
		*err_r = buf_steal(&msg);
	}
	return pk;
}

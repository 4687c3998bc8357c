/*
 * tls.c - OpenSSL server context for STARTTLS (RFC 3207) and the TLS
 * listeners. The worker roles load the certificate (as root, before
 * dropping privileges) and do the handshakes with a key object whose
 * private operations the key holder does (tls_remote_key.h); only the key
 * holder loads the key. The supervisor checks the pair in a child that
 * exits. Untrusted input: none (the administrator's files). Privilege:
 * root in the roles before they switch accounts, and in check-config.
 */
#include "tls.h"

#include <errno.h>
#include <openssl/err.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../lib/safeio.h"
#include "../lib/xalloc.h"
#include "keyholder_proto.h"
#include "tls_remote_key.h"

/* tls_server_configure's settings. */
static char *keyholder_dir;
static int min_version = TLS1_2_VERSION;

/* The suites of TLS 1.2 and older: OpenSSL's default list without the
 * RSA key exchange (no forward secrecy, and it would need the key holder
 * to decrypt). Versions older than 1.2 need security level 0 in OpenSSL 3. */
#define CIPHERS "DEFAULT:!kRSA"
#define CIPHERS_OLD "DEFAULT:!kRSA:@SECLEVEL=0"

void tls_server_configure(const char *dir, int version)
{
	free(keyholder_dir);
	keyholder_dir = dir != NULL ? xstrdup(dir) : NULL;
	min_version = version;
}

int tls_min_version_of(enum tls_version v)
{
	switch (v) {
	case TLS_VERSION_1_0:
		return TLS1_VERSION;
	case TLS_VERSION_1_1:
		return TLS1_1_VERSION;
	case TLS_VERSION_1_3:
		return TLS1_3_VERSION;
	case TLS_VERSION_1_2:
		break;
	}
	return TLS1_2_VERSION;
}

static char *ssl_error(const char *what, const char *file)
{
	char detail[256] = "unknown error";
	unsigned long e = ERR_get_error();
	if (e != 0)
		ERR_error_string_n(e, detail, sizeof(detail));
	ERR_clear_error();
	size_t n = strlen(what) + strlen(file) + strlen(detail) + 8;
	char *msg = xmalloc(n);
	snprintf(msg, n, "%s %s: %s", what, file, detail);
	return msg;
}

/* The private key: a key object for the certificate ctx has whose key
 * holder listens in dir, or (dir NULL) key_file itself. 1, or 0 with
 * *err_r. */
static int use_key(SSL_CTX *ctx, const char *dir, const char *cert_file,
		   const char *key_file, char **err_r)
{
	if (dir == NULL) {
		if (SSL_CTX_use_PrivateKey_file(ctx, key_file, SSL_FILETYPE_PEM) != 1) {
			*err_r = ssl_error("cannot load key", key_file);
			return 0;
		}
		if (SSL_CTX_check_private_key(ctx) != 1) {
			*err_r = ssl_error("key does not match certificate", cert_file);
			return 0;
		}
		/* What the key holder could not use fails here, in the checks
		 * of serve and check-config, not in a role that restarts. */
		int type = EVP_PKEY_get_base_id(SSL_CTX_get0_privatekey(ctx));
		if (type != EVP_PKEY_RSA && type != EVP_PKEY_EC) {
			size_t n = strlen(key_file) + 128;
			*err_r = xmalloc(n);
			snprintf(*err_r, n, "%s: a key of type %s: the key holder signs with RSA and "
				 "ECDSA keys only", key_file, keyholder_key_type_name(type));
			return 0;
		}
		return 1;
	}
	EVP_PKEY *pk = tls_remote_key_new(SSL_CTX_get0_certificate(ctx), dir, err_r);
	if (pk == NULL)
		return 0;
	int ok = SSL_CTX_use_PrivateKey(ctx, pk);
	EVP_PKEY_free(pk);
	if (ok != 1)
		*err_r = ssl_error("cannot use the key holder's key for", cert_file);
	return ok;
}

/* The context, its key from a key holder in dir or (NULL) key_file. */
static SSL_CTX *build_context(const char *cert_file, const char *key_file, const char *dir,
			      char **err_r)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
	if (ctx == NULL) {
		*err_r = ssl_error("cannot create TLS context for", cert_file);
		return NULL;
	}
	SSL_CTX_set_min_proto_version(ctx, min_version);
	SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_CIPHER_SERVER_PREFERENCE |
				 SSL_OP_NO_RENEGOTIATION);
	if (SSL_CTX_set_cipher_list(ctx, min_version < TLS1_2_VERSION ? CIPHERS_OLD : CIPHERS)
	    != 1) {
		*err_r = ssl_error("cannot set the cipher list for", cert_file);
	} else if (SSL_CTX_use_certificate_chain_file(ctx, cert_file) != 1) {
		*err_r = ssl_error("cannot load certificate", cert_file);
	} else if (use_key(ctx, dir, cert_file, key_file, err_r) == 1) {
		return ctx;
	}
	SSL_CTX_free(ctx);
	return NULL;
}

SSL_CTX *tls_server_context(const char *cert_file, const char *key_file, char **err_r)
{
	return build_context(cert_file, key_file, keyholder_dir, err_r);
}

int tls_check_in_child(const char *cert_file, const char *key_file, char **err_r)
{
	int p[2];
	if (pipe(p) < 0) {
		*err_r = xstrdup("cannot check the TLS key: pipe failed");
		return -1;
	}
	pid_t pid = fork();
	if (pid < 0) {
		close(p[0]);
		close(p[1]);
		*err_r = xstrdup("cannot check the TLS key: fork failed");
		return -1;
	}
	if (pid == 0) {
		close(p[0]);
		char *err = NULL;
		SSL_CTX *ctx = build_context(cert_file, key_file, NULL, &err);
		if (ctx == NULL) {
			(void)safeio_write_all(p[1], err, strlen(err));
			_exit(1);
		}
		_exit(0); /* the key dies with this process */
	}
	close(p[1]);
	char text[1024];
	size_t n = 0;
	for (;;) {
		ssize_t r = read(p[0], text + n, sizeof(text) - 1 - n);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0 || (n += (size_t)r) == sizeof(text) - 1)
			break;
	}
	text[n] = '\0';
	close(p[0]);
	int status = 0;
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
		return 0;
	*err_r = xstrdup(n > 0 ? text : "the TLS key check ended abnormally");
	return -1;
}

const char *tls_describe(SSL *ssl)
{
	static char text[128];
	snprintf(text, sizeof(text), "%s:%s", SSL_get_version(ssl),
		 SSL_CIPHER_get_name(SSL_get_current_cipher(ssl)));
	return text;
}

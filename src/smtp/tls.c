/*
 * tls.c - OpenSSL server context for STARTTLS (RFC 3207). Runs in the
 * supervisor (loading the key) and the smtp workers (handshakes).
 */
#include "tls.h"

#include <openssl/err.h>
#include <stdio.h>
#include <string.h>

#include "../lib/xalloc.h"

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

SSL_CTX *tls_server_context(const char *cert_file, const char *key_file, char **err_r)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
	if (ctx == NULL) {
		*err_r = ssl_error("cannot create TLS context for", cert_file);
		return NULL;
	}
	SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
	SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_CIPHER_SERVER_PREFERENCE |
				 SSL_OP_NO_RENEGOTIATION);
	if (SSL_CTX_use_certificate_chain_file(ctx, cert_file) != 1) {
		*err_r = ssl_error("cannot load certificate", cert_file);
	} else if (SSL_CTX_use_PrivateKey_file(ctx, key_file, SSL_FILETYPE_PEM) != 1) {
		*err_r = ssl_error("cannot load key", key_file);
	} else if (SSL_CTX_check_private_key(ctx) != 1) {
		*err_r = ssl_error("key does not match certificate", cert_file);
	} else {
		return ctx;
	}
	SSL_CTX_free(ctx);
	return NULL;
}

const char *tls_describe(SSL *ssl)
{
	static char text[128];
	snprintf(text, sizeof(text), "%s:%s", SSL_get_version(ssl),
		 SSL_CIPHER_get_name(SSL_get_current_cipher(ssl)));
	return text;
}

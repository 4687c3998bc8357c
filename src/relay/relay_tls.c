/*
 * relay_tls.c - the relay agent's TLS client contexts (RFC 3207
 * STARTTLS, RFC 8996: TLS 1.2 at least): one that does not require a
 * valid certificate (levels may and encrypt: opportunistic TLS, RFC
 * 7435), and one that does (level verify: the chain must verify against
 * tls_ca_file, or the system's store when it is empty, and the
 * certificate must name the host connected to; RFC 6125).
 *
 * Untrusted input: none here (the handshakes are OpenSSL's). Privilege:
 * the relay agent; the CA file is read when the agent starts (as `user`).
 */
#include <openssl/err.h>
#include <openssl/ssl.h>

#include "../lib/log.h"
#include "relay_internal.h"

static SSL_CTX *new_ctx(void)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());

	if (ctx == NULL)
		return NULL;
	SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
	SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION);
	/* The verification result is always computed (and logged); whether
	 * it matters is the session's decision, by level. */
	SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
	return ctx;
}

static void log_ssl_error(const char *what)
{
	unsigned long e = ERR_get_error();
	char text[256];

	ERR_error_string_n(e, text, sizeof(text));
	log_warn("relay: %s: %s", what, e != 0 ? text : "unknown error");
	ERR_clear_error();
}

int relay_tls_init(struct relay_agent *a)
{
	a->tls_ctx = new_ctx();
	if (a->tls_ctx == NULL) {
		log_ssl_error("cannot make a TLS client context");
		return -1;
	}
	SSL_CTX *v = new_ctx();
	if (v == NULL) {
		log_ssl_error("cannot make a TLS client context");
		return -1;
	}
	const char *ca = a->cfg->tls_ca_file;
	/* The opportunistic context verifies too, for the log only. */
	if ((ca != NULL && ca[0] != '\0' ? SSL_CTX_load_verify_locations(a->tls_ctx, ca, NULL)
					  : SSL_CTX_set_default_verify_paths(a->tls_ctx)) != 1)
		ERR_clear_error();
	int ok = ca != NULL && ca[0] != '\0' ? SSL_CTX_load_verify_locations(v, ca, NULL)
					     : SSL_CTX_set_default_verify_paths(v);
	if (ok != 1) {
		log_ssl_error(ca != NULL && ca[0] != '\0' ? "cannot load tls_ca_file"
							  : "cannot load the system's CA store");
		SSL_CTX_free(v);
		v = NULL; /* "verify" destinations then defer, saying why */
	} else {
		SSL_CTX_set_verify(v, SSL_VERIFY_PEER, NULL);
	}
	a->tls_ctx_verify = v;
	return 0;
}

void relay_tls_free(struct relay_agent *a)
{
	if (a->tls_ctx != NULL)
		SSL_CTX_free(a->tls_ctx);
	if (a->tls_ctx_verify != NULL)
		SSL_CTX_free(a->tls_ctx_verify);
	a->tls_ctx = NULL;
	a->tls_ctx_verify = NULL;
}

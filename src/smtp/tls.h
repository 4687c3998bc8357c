/*
 * tls.h - OpenSSL server context for STARTTLS (RFC 3207).
 */
#ifndef POSTERN_SMTP_TLS_H
#define POSTERN_SMTP_TLS_H

#include <openssl/ssl.h>

/* Load certificate chain and key; NULL with a malloc'ed *err_r on error.
 * TLS 1.2 and newer only, server cipher preference, no compression,
 * no renegotiation. */
SSL_CTX *tls_server_context(const char *cert_file, const char *key_file, char **err_r);

/* "TLSv1.3:TLS_AES_256_GCM_SHA384" for logs and Received: (static buffer). */
const char *tls_describe(SSL *ssl);

#endif

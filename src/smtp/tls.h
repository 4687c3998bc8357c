/*
 * tls.h - OpenSSL server context for STARTTLS (RFC 3207): built in each
 * smtp worker (as root, before it drops privileges), checked by the
 * supervisor in a short-lived child.
 */
#ifndef POSTERN_SMTP_TLS_H
#define POSTERN_SMTP_TLS_H

#include <openssl/ssl.h>

/* Load certificate chain and key; NULL with a malloc'ed *err_r on error.
 * TLS 1.2 and newer only, server cipher preference, no compression,
 * no renegotiation. */
SSL_CTX *tls_server_context(const char *cert_file, const char *key_file, char **err_r);

/* Check that tls_server_context would succeed, in a child process that
 * exits after, so that the caller's memory never holds the decoded key
 * (OpenSSL frees the PEM text and DER copies without clearing them, and
 * whatever the supervisor holds, every role it forks inherits). 0, or -1
 * with a malloc'ed *err_r. The caller must not reap children meanwhile. */
int tls_check_in_child(const char *cert_file, const char *key_file, char **err_r);

/* "TLSv1.3:TLS_AES_256_GCM_SHA384" for logs and Received: (static buffer). */
const char *tls_describe(SSL *ssl);

#endif

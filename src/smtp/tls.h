/*
 * tls.h - OpenSSL server context for the TLS listeners and STARTTLS (RFC
 * 3207): built in each worker role (smtp, pop3) from the certificate and
 * a key object whose private operations the key holder does
 * (tls_remote_key.h), so that no process that parses the network holds
 * the private key; checked by the supervisor in a short-lived child.
 */
#ifndef POSTERN_SMTP_TLS_H
#define POSTERN_SMTP_TLS_H

#include <openssl/ssl.h>

#include "../lib/config.h"

/*
 * How every later tls_server_context of this process works, set by the
 * supervisor in each role it forks, before the role builds its context:
 * with keyholder_dir, the private key stays in the key holder of
 * the certificate's key, which listens in that folder
 * (keyholder_proto.h), and key_file is only named in messages; with NULL
 * (the default: check-config, tests) key_file is loaded into this
 * process.
 * min_version is an OpenSSL protocol version (TLS1_2_VERSION unless
 * tls_min_version says otherwise, tls_min_version_of).
 */
void tls_server_configure(const char *keyholder_dir, int min_version);

/* The OpenSSL protocol version of tls_min_version. */
int tls_min_version_of(enum tls_version v);

/* Certificate chain from cert_file and the private key (see
 * tls_server_configure); NULL with a malloc'ed *err_r on error. TLS 1.2
 * and newer by default, no RSA key exchange (forward secrecy only),
 * server cipher preference, no compression, no renegotiation. */
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

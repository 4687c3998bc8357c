/*
 * tls_remote_key.h - a key object for OpenSSL that holds only the public
 * half of the certificate's key and asks the key holder
 * (keyholder_proto.h) for every private-key operation, so that a TLS
 * server context can be built in a process that never has the private
 * key. RSA and ECDSA keys.
 *
 * The worker waits for each answer synchronously (a poll on the key
 * holder's socket, at most TLS_REMOTE_KEY_WAIT_MS): OpenSSL asks for the
 * signature inside SSL_do_handshake, which must return it. While it
 * waits, the worker's event loop serves none of its other sessions; the
 * key holder answers in the time of one signature (docs/architecture.md,
 * "The key holder"). A key holder that is not there (starting, or started
 * again after it died) is waited for up to TLS_REMOTE_KEY_CONNECT_WAIT_MS;
 * one that stays away or does not answer in time fails the signature: the
 * handshake fails with an alert, the worker goes on.
 *
 * Untrusted input: the key holder's answers (decoded strictly).
 * Privilege: any unprivileged TLS worker role.
 */
#ifndef POSTERN_TLS_REMOTE_KEY_H
#define POSTERN_TLS_REMOTE_KEY_H

#include <openssl/evp.h>
#include <openssl/x509.h>

#define TLS_REMOTE_KEY_WAIT_MS 5000
#define TLS_REMOTE_KEY_CONNECT_WAIT_MS 1000

/* A private-key object for cert's public key whose private operations
 * are asked of the key holder of that key listening in keyholder_dir
 * (connected when first needed, again after it went away). NULL with a malloc'ed *err_r (a key
 * type other than RSA or EC). */
EVP_PKEY *tls_remote_key_new(X509 *cert, const char *keyholder_dir, char **err_r);

#endif

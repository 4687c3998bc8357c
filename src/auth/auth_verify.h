/*
 * auth_verify.h - checking a password against the password field of a
 * Dovecot passwd-file line, with libcrypt's crypt_r(3):
 *
 *   {SHA512-CRYPT}$6$...   {SHA256-CRYPT}$5$...   {BLF-CRYPT}$2y$...
 *   {CRYPT}<any crypt(3) hash>   and a raw crypt(3) hash without a
 *   scheme: $y$ (yescrypt), $gy$, $7$, $6$, $5$, $2b$/$2y$/$2a$
 *   {PLAIN}text (Dovecot's clear-text scheme: compared in constant time)
 *
 * A field that is empty or starts with '!' or '*' (after the scheme)
 * matches no password (a locked account). Any other scheme is refused
 * (the loader reports it). Comparisons of the computed and the stored
 * hash take a time that does not depend on where they differ.
 *
 * Untrusted input: the password (client bytes, NUL-free) and the stored
 * field (administrator's file). Runs in the auth process's pool threads:
 * reentrant, each thread with its own struct crypt_data.
 */
#ifndef POSTERN_AUTH_VERIFY_H
#define POSTERN_AUTH_VERIFY_H

#include <crypt.h>
#include <stdbool.h>
#include <stddef.h>

/* Can field be checked at all? False with a static *why_r (for the
 * loader's FILE:LINE warning) when the scheme is unknown or the hash is
 * not one libcrypt computes. A locked account ("!", "*", "") is fine. */
bool auth_hash_supported(const char *field, const char **why_r);

/* Does checking field cost a crypt(3) hash (a crypt scheme, not locked,
 * a method libcrypt computes)? False for {PLAIN} and for fields that
 * never match. */
bool auth_hash_costly(const char *field);

/* Can field match any password ({PLAIN}, or a costly crypt hash)? */
bool auth_hash_checkable(const char *field);

/* The cost class of a costly field: its method and parameters, without
 * salt and hash ("$6$", "$6$rounds=N$", "$2b$12$", "$y$j9T$"), into out
 * (at most outlen bytes, truncated). Two fields of one class take the
 * same time to check. */
void auth_hash_cost_class(const char *field, char *out, size_t outlen);

/* Does password match field? cd: the thread's work area. */
bool auth_hash_matches(const char *field, const char *password, struct crypt_data *cd);

/* Constant-time equality of two byte strings of possibly different
 * lengths (the time depends on the lengths only). */
bool auth_equal_ct(const void *a, size_t alen, const void *b, size_t blen);

#endif

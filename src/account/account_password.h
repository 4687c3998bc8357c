/*
 * account_password.h - new passwords for users_file: read from the
 * terminal (no echo, asked twice) or from standard input, never from
 * the command line, and hashed with yescrypt through libcrypt (crypt(3)
 * of libxcrypt) into the form Dovecot 2.3 reads: "{CRYPT}$y$...".
 * (Dovecot's CRYPT scheme hands the hash to crypt(3), which knows $y$;
 * `doveadm pw -t` verifies these hashes.)
 *
 * Checking a password at login is the auth process's work, not this.
 *
 * Untrusted input: the password typed or piped (bounded by
 * ACCOUNT_PASSWORD_MAX). Privilege: the invoking user. Every copy of a
 * password is wiped before it is freed.
 */
#ifndef POSTERN_ACCOUNT_PASSWORD_H
#define POSTERN_ACCOUNT_PASSWORD_H

#include <stdbool.h>
#include <stdio.h>

#define ACCOUNT_PASSWORD_MAX 1024
#define ACCOUNT_HASH_PREFIX "{CRYPT}"

/*
 * The new password for address (malloc'ed; free with account_wipe_free):
 * from standard input when from_stdin or when standard input is not a
 * terminal (one line; its CR LF or LF is not part of it), else asked
 * twice on the terminal without echo. NULL with the reason printed to
 * errors: empty, longer than ACCOUNT_PASSWORD_MAX, not the same twice, no
 * input.
 */
char *account_password_read(const char *address, bool from_stdin, FILE *errors);

/* "{CRYPT}$y$..." for password with a new random salt (malloc'ed); NULL
 * with the reason printed to errors when libcrypt cannot. */
char *account_password_hash(const char *password, FILE *errors);

/* The scheme of a users_file password field, for `postern user show`:
 * "yescrypt", "SHA512-CRYPT", "BLF-CRYPT", "PLAIN", ... or "none (login
 * disabled)". Never returns any part of the hash. */
const char *account_password_scheme(const char *field);

#endif

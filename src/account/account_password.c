/*
 * account_password.c - reading and hashing new passwords (see
 * account_password.h). RFCs: none; the hash format is crypt(3)'s
 * (libxcrypt) with Dovecot's "{CRYPT}" scheme prefix.
 *
 * Untrusted input: the password (bounded). Privilege: the invoking user.
 */
#include "account_password.h"
#include "account_file.h"

#include <crypt.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

#include "../lib/strutil.h"
#include "../lib/xalloc.h"

/* The terminal's settings while echo is off, restored by a signal too. */
static int tty_fd = -1;
static struct termios tty_saved;
static volatile sig_atomic_t tty_echo_off;

static void restore_tty(void)
{
	if (tty_echo_off) {
		tcsetattr(tty_fd, TCSAFLUSH, &tty_saved);
		tty_echo_off = 0;
	}
}

static void on_signal(int sig)
{
	restore_tty();
	signal(sig, SIG_DFL);
	raise(sig);
}

/* Read one line from fd into buf (size bytes, NUL-terminated, without
 * its line end). 1: a line; 0: end of input before anything; -1: error,
 * too long (errno E2BIG) or holding a NUL byte (errno EILSEQ: crypt(3)
 * would hash the bytes before it only). Byte by byte: nothing after the
 * line is consumed. */
static int read_line(int fd, char *buf, size_t size)
{
	size_t len = 0;
	bool any = false, too_long = false, nul = false;
	for (;;) {
		char c;
		ssize_t n = read(fd, &c, 1);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -1;
		if (n == 0 || c == '\n')
			break;
		any = true;
		nul = nul || c == '\0';
		if (len + 1 < size)
			buf[len++] = c;
		else
			too_long = true;
	}
	if (len > 0 && buf[len - 1] == '\r')
		len--;
	buf[len] = '\0';
	if (too_long || nul) {
		explicit_bzero(buf, size);
		errno = too_long ? E2BIG : EILSEQ;
		return -1;
	}
	return any || len > 0 ? 1 : 0;
}

/* Prompt on the terminal, echo off; 1, 0 or -1 as read_line. */
static int ask(const char *prompt, char *buf, size_t size)
{
	struct termios quiet;
	if (write(tty_fd, prompt, strlen(prompt)) < 0)
		return -1;
	if (tcgetattr(tty_fd, &tty_saved) < 0)
		return -1;
	quiet = tty_saved;
	quiet.c_lflag &= ~(tcflag_t)(ECHO | ECHONL);
	quiet.c_lflag |= ICANON;
	tty_echo_off = 1;
	if (tcsetattr(tty_fd, TCSAFLUSH, &quiet) < 0) {
		tty_echo_off = 0;
		return -1;
	}
	int rc = read_line(tty_fd, buf, size);
	restore_tty();
	if (write(tty_fd, "\n", 1) < 0) {
		/* the newline the user typed was not echoed; nothing to do */
	}
	return rc;
}

static char *from_terminal(const char *address, FILE *errors)
{
	char first[ACCOUNT_PASSWORD_MAX + 2], again[ACCOUNT_PASSWORD_MAX + 2];
	char prompt[400];
	char *result = NULL;
	tty_fd = open("/dev/tty", O_RDWR | O_CLOEXEC | O_NOCTTY);
	if (tty_fd < 0) {
		fprintf(errors, "no terminal to ask the password on (%s): give it on standard "
			"input with --stdin\n", strerror(errno));
		return NULL;
	}
	struct sigaction sa = { .sa_handler = on_signal }, old_int, old_term, old_tstp;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, &old_int);
	sigaction(SIGTERM, &sa, &old_term);
	sigaction(SIGTSTP, &sa, &old_tstp);
	snprintf(prompt, sizeof(prompt), "New password for %s: ", address);
	int rc = ask(prompt, first, sizeof(first));
	if (rc > 0 && first[0] != '\0')
		rc = ask("Repeat the password: ", again, sizeof(again));
	sigaction(SIGINT, &old_int, NULL);
	sigaction(SIGTERM, &old_term, NULL);
	sigaction(SIGTSTP, &old_tstp, NULL);
	if (rc < 0 && errno == E2BIG)
		fprintf(errors, "the password is longer than %d bytes\n", ACCOUNT_PASSWORD_MAX);
	else if (rc < 0 && errno == EILSEQ)
		fprintf(errors, "the password holds a NUL byte: nothing changed\n");
	else if (rc < 0)
		fprintf(errors, "cannot read the password from the terminal: %s\n",
			strerror(errno));
	else if (rc == 0 || first[0] == '\0')
		fprintf(errors, "no password given: nothing changed\n");
	else if (strcmp(first, again) != 0)
		fprintf(errors, "the two passwords differ: nothing changed\n");
	else
		result = xstrdup(first);
	explicit_bzero(first, sizeof(first));
	explicit_bzero(again, sizeof(again));
	close(tty_fd);
	tty_fd = -1;
	return result;
}

static char *from_stdin(FILE *errors)
{
	char line[ACCOUNT_PASSWORD_MAX + 2];
	char *result = NULL;
	int rc = read_line(STDIN_FILENO, line, sizeof(line));
	if (rc < 0 && errno == E2BIG)
		fprintf(errors, "the password is longer than %d bytes\n", ACCOUNT_PASSWORD_MAX);
	else if (rc < 0 && errno == EILSEQ)
		fprintf(errors, "the password holds a NUL byte: nothing changed\n");
	else if (rc < 0)
		fprintf(errors, "cannot read the password from standard input: %s\n",
			strerror(errno));
	else if (rc == 0 || line[0] == '\0')
		fprintf(errors, "no password on standard input (an empty line): nothing changed\n");
	else
		result = xstrdup(line);
	explicit_bzero(line, sizeof(line));
	return result;
}

char *account_password_read(const char *address, bool stdin_only, FILE *errors)
{
	if (stdin_only || !isatty(STDIN_FILENO))
		return from_stdin(errors);
	return from_terminal(address, errors);
}

char *account_password_hash(const char *password, FILE *errors)
{
	char salt[CRYPT_GENSALT_OUTPUT_SIZE];
	/* count 0: libxcrypt's default cost; NULL: random bytes from the OS */
	if (crypt_gensalt_rn("$y$", 0, NULL, 0, salt, (int)sizeof(salt)) == NULL) {
		fprintf(errors, "libcrypt cannot make a yescrypt salt: %s\n", strerror(errno));
		return NULL;
	}
	struct crypt_data *data = xcalloc(1, sizeof(*data));
	const char *hash = crypt_r(password, salt, data);
	char *result = NULL;
	if (hash == NULL || hash[0] == '*' || strncmp(hash, "$y$", 3) != 0) {
		fprintf(errors, "libcrypt cannot hash with yescrypt: %s\n",
			hash == NULL ? strerror(errno) : "it returned a failure token");
	} else {
		size_t len = strlen(ACCOUNT_HASH_PREFIX) + strlen(hash) + 1;
		result = xmalloc(len);
		snprintf(result, len, "%s%s", ACCOUNT_HASH_PREFIX, hash);
	}
	explicit_bzero(data, sizeof(*data));
	free(data);
	return result;
}

/* A crypt(3) hash's method, by its prefix. */
static const char *crypt_method(const char *hash)
{
	static const struct { const char *prefix, *name; } methods[] = {
		{ "$y$", "yescrypt" }, { "$gy$", "gost-yescrypt" }, { "$7$", "scrypt" },
		{ "$2b$", "BLF-CRYPT" }, { "$2y$", "BLF-CRYPT" }, { "$2a$", "BLF-CRYPT" },
		{ "$6$", "SHA512-CRYPT" }, { "$5$", "SHA256-CRYPT" }, { "$1$", "MD5-CRYPT" },
	};
	if (hash[0] == '\0' || hash[0] == '!' || hash[0] == '*')
		return "none (login disabled)";
	for (size_t i = 0; i < sizeof(methods) / sizeof(methods[0]); i++)
		if (strncmp(hash, methods[i].prefix, strlen(methods[i].prefix)) == 0)
			return methods[i].name;
	return "CRYPT (unknown method)";
}

const char *account_password_scheme(const char *field)
{
	static const char *const schemes[] = {
		"SHA512-CRYPT", "SHA256-CRYPT", "BLF-CRYPT", "MD5-CRYPT", "PLAIN", "CLEAR",
		"CLEARTEXT", "SSHA512", "SSHA256", "SSHA", "SHA512", "SHA256", "ARGON2ID",
		"ARGON2I", "PBKDF2",
	};
	if (field[0] != '{')
		return crypt_method(field); /* passwd-file's default scheme is CRYPT */
	const char *end = strchr(field, '}');
	if (end == NULL)
		return "unknown";
	const char *rest = end + 1;
	size_t len = (size_t)(end - field - 1);
	if (len == 5 && strncmp(field + 1, "CRYPT", 5) == 0)
		return crypt_method(rest);
	bool crypt_kind = len > 6 && strncmp(end - 6, "-CRYPT", 6) == 0;
	if (rest[0] == '\0' || (crypt_kind && (rest[0] == '!' || rest[0] == '*')))
		return "none (login disabled)";
	for (size_t i = 0; i < sizeof(schemes) / sizeof(schemes[0]); i++)
		if (strlen(schemes[i]) == len && strncmp(field + 1, schemes[i], len) == 0)
			return schemes[i];
	return "another scheme";
}

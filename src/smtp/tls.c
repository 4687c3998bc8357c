/*
 * tls.c - OpenSSL server context for STARTTLS (RFC 3207). The smtp
 * workers load the key (as root, before dropping privileges) and do the
 * handshakes; the supervisor only checks it, in a child that exits.
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
		SSL_CTX *ctx = tls_server_context(cert_file, key_file, &err);
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

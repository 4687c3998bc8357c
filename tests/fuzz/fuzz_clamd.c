/*
 * fuzz_clamd.c - libFuzzer target for what the clamd client parses:
 * clamd's answer (network input) and the host:port form of clamd_socket.
 * The first byte picks which; names and messages must come out
 * NUL-terminated, within their buffer and printable.
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "scan/clamd.h"

static void check_printable(const char *s, size_t size)
{
	size_t n = strnlen(s, size);
	if (n >= size)
		__builtin_trap();
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)s[i] < 0x20 || (unsigned char)s[i] >= 0x7f)
			__builtin_trap();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size == 0)
		return 0;
	unsigned mode = data[0];
	data++;
	size--;
	if (mode & 1) {
		char name[CLAMD_NAME_MAX], small[5];
		enum clamd_verdict v = clamd_reply_parse((const char *)data, size, name, sizeof(name));
		check_printable(name, sizeof(name));
		if (v == CLAMD_FOUND && name[0] == '\0')
			__builtin_trap();
		clamd_reply_parse((const char *)data, size, small, sizeof(small));
		check_printable(small, sizeof(small));
	} else {
		char spec[300], host[256], port[8];
		size_t n = size < sizeof(spec) - 1 ? size : sizeof(spec) - 1;
		memcpy(spec, data, n);
		spec[n] = '\0';
		if (clamd_split_host_port(spec, host, sizeof(host), port, sizeof(port)) == 0) {
			if (strnlen(host, sizeof(host)) == sizeof(host) || host[0] == '\0' ||
			    strnlen(port, sizeof(port)) == sizeof(port) || port[0] == '\0')
				__builtin_trap();
		}
	}
	return 0;
}

/*
 * milter_listen.c - the milter_listen setting: "unix:/PATH" or
 * "inet:HOST:PORT", turned into what libmilter's smfi_setconn takes
 * (see milter_server.h).
 *
 * RFCs: none. Untrusted input: none (the administrator's configuration).
 * Privilege: any.
 */
#include "milter_server.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Room left in path for the name a new socket is bound under. */
#define PATH_SUFFIX_ROOM 24

static bool host_char_ok(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       c == '.' || c == '-' || c == ':' || c == '_';
}

/* The lowest port an account without privileges may bind (the kernel's
 * net.ipv4.ip_unprivileged_port_start; 1024 if it cannot be read). */
static long unprivileged_port_start(void)
{
	long start = 1024;
	FILE *f = fopen("/proc/sys/net/ipv4/ip_unprivileged_port_start", "re");
	if (f != NULL) {
		if (fscanf(f, "%ld", &start) != 1 || start < 0 || start > 65536)
			start = 1024;
		fclose(f);
	}
	return start;
}

static int parse_inet(const char *hp, struct milter_listen *out, char *err, size_t size)
{
	const char *colon = strrchr(hp, ':');
	if (colon == NULL || colon == hp) {
		snprintf(err, size, "expected inet:HOST:PORT");
		return -1;
	}
	const char *port = colon + 1;
	size_t plen = strlen(port);
	if (plen == 0 || plen > 5 || strspn(port, "0123456789") != plen || atoi(port) < 1 ||
	    atoi(port) > 65535) {
		snprintf(err, size, "the port must be a number from 1 to 65535");
		return -1;
	}
	const char *host = hp;
	size_t hlen = (size_t)(colon - hp);
	bool v6 = false;
	if (host[0] == '[') {
		if (hlen < 3 || host[hlen - 1] != ']') {
			snprintf(err, size, "an IPv6 address goes in brackets: inet:[::1]:PORT");
			return -1;
		}
		host++;
		hlen -= 2;
		v6 = true;
	}
	for (size_t i = 0; i < hlen; i++) {
		if (!host_char_ok(host[i]) || (host[i] == ':' && !v6)) {
			snprintf(err, size, "bad host name or address%s",
				 host[i] == ':' ? " (an IPv6 address goes in brackets)" : "");
			return -1;
		}
	}
	if (hlen == 0 || hlen > 100) {
		snprintf(err, size, "bad host name or address");
		return -1;
	}
	long lowest = unprivileged_port_start();
	if (atoi(port) < lowest) {
		snprintf(err, size, "port %s is below %ld: the milter process runs as user, "
			 "without the privilege to bind it (choose a port above %ld)", port, lowest,
			 lowest - 1);
		return -1;
	}
	snprintf(out->conn, sizeof(out->conn), "%s:%s@%.*s", v6 ? "inet6" : "inet", port,
		 (int)hlen, host);
	snprintf(out->host, sizeof(out->host), "%.*s", (int)hlen, host);
	snprintf(out->port, sizeof(out->port), "%s", port);
	out->v6 = v6;
	return 0;
}

int milter_listen_parse(const char *spec, struct milter_listen *out, char *err, size_t size)
{
	memset(out, 0, sizeof(*out));
	if (strncmp(spec, "unix:", 5) == 0) {
		const char *path = spec + 5;
		if (path[0] != '/') {
			snprintf(err, size, "the socket's path must be absolute: unix:/PATH");
			return -1;
		}
		if (strlen(path) + PATH_SUFFIX_ROOM >= sizeof(out->path)) {
			snprintf(err, size, "the socket's path is too long (at most %zu bytes)",
				 sizeof(out->path) - PATH_SUFFIX_ROOM - 1);
			return -1;
		}
		out->is_unix = true;
		snprintf(out->path, sizeof(out->path), "%s", path);
		return 0;
	}
	if (strncmp(spec, "inet:", 5) == 0)
		return parse_inet(spec + 5, out, err, size);
	snprintf(err, size, "expected unix:/PATH or inet:HOST:PORT, not \"%.60s\"", spec);
	return -1;
}

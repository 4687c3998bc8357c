/*
 * dns_names.c - names to ask: the reverse name of an address (RFC 1035
 * section 3.5 for IPv4, RFC 3596 section 2.5 for IPv6, also the form
 * DNS blocklists use under their own zone), and the check a name built
 * from client data must pass before it is sent.
 *
 * Input: addresses of clients and names from the SMTP dialogue (HELO,
 * the sender's domain), untrusted; everything is bounded by the caller's
 * buffer and DNS_NAME_MAX.
 */
#include "dns.h"

#include <netinet/in.h>
#include <stdio.h>
#include <string.h>

bool dns_name_valid(const char *name)
{
	size_t len = strnlen(name, DNS_NAME_MAX + 2), label = 0;
	if (len > 0 && name[len - 1] == '.')
		len--;
	if (len == 0 || len > DNS_NAME_MAX)
		return false;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)name[i];
		if (c == '.') {
			if (label == 0)
				return false;
			label = 0;
			continue;
		}
		if (c <= ' ' || c >= 127 || c == '\\' || c == '"' || ++label > 63)
			return false;
	}
	return label > 0;
}

/* The 4 bytes of an IPv4 address in sa (plain or IPv4-mapped), or NULL. */
static const unsigned char *ipv4_bytes(const struct sockaddr *sa)
{
	if (sa->sa_family == AF_INET)
		return (const unsigned char *)&((const struct sockaddr_in *)sa)->sin_addr;
	if (sa->sa_family == AF_INET6) {
		const struct in6_addr *a6 = &((const struct sockaddr_in6 *)sa)->sin6_addr;
		if (IN6_IS_ADDR_V4MAPPED(a6))
			return a6->s6_addr + 12;
	}
	return NULL;
}

bool dns_reverse_name(const struct sockaddr *sa, const char *zone, char *out, size_t outlen)
{
	const unsigned char *v4 = ipv4_bytes(sa);
	int n;
	if (v4 != NULL) {
		n = snprintf(out, outlen, "%u.%u.%u.%u.%s", v4[3], v4[2], v4[1], v4[0],
			     zone != NULL ? zone : "in-addr.arpa");
	} else if (sa->sa_family == AF_INET6) {
		static const char hex[] = "0123456789abcdef";
		const unsigned char *b = ((const struct sockaddr_in6 *)sa)->sin6_addr.s6_addr;
		char nibbles[64 + 1];
		for (size_t i = 0; i < 16; i++) {
			unsigned char byte = b[15 - i];
			nibbles[4 * i] = hex[byte & 15];
			nibbles[4 * i + 1] = '.';
			nibbles[4 * i + 2] = hex[byte >> 4];
			nibbles[4 * i + 3] = '.';
		}
		nibbles[64] = '\0';
		n = snprintf(out, outlen, "%s%s", nibbles, zone != NULL ? zone : "ip6.arpa");
	} else {
		return false;
	}
	return n > 0 && (size_t)n < outlen && strlen(out) <= DNS_NAME_MAX;
}

bool dns_record_matches(const struct dns_record *rec, const struct sockaddr *sa)
{
	const unsigned char *v4 = ipv4_bytes(sa);
	if (rec->family == AF_INET)
		return v4 != NULL && memcmp(rec->addr, v4, 4) == 0;
	if (rec->family == AF_INET6 && v4 == NULL && sa->sa_family == AF_INET6)
		return memcmp(rec->addr, ((const struct sockaddr_in6 *)sa)->sin6_addr.s6_addr,
			      16) == 0;
	return false;
}

/*
 * cidr.h - IPv4/IPv6 network lists ("127.0.0.0/8, ::1/128") and matching
 * of client addresses against them (mynetworks).
 */
#ifndef POSTERN_CIDR_H
#define POSTERN_CIDR_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

struct cidr {
	int family; /* AF_INET or AF_INET6 */
	unsigned char addr[16];
	unsigned prefix;
};

typedef struct {
	struct cidr *items;
	size_t count;
} cidr_list_t;

/* Parse one "addr[/prefix]"; false with *err_r (static text) if bad. */
bool cidr_parse(const char *text, struct cidr *c, const char **err_r);
/* Parse a comma/space separated list; false and *err_r names the bad item
 * (malloc'ed) on error. */
bool cidr_list_parse(cidr_list_t *l, const char *text, char **err_r);
void cidr_list_free(cidr_list_t *l);
/* Does the socket address fall in any network of the list?  IPv4-mapped
 * IPv6 addresses are matched as IPv4. */
bool cidr_list_match(const cidr_list_t *l, const struct sockaddr *sa);

#endif

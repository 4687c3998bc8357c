/*
 * address.h - RFC 5321 envelope addresses (Reverse-path / Forward-path).
 *
 * Parses the path argument of MAIL FROM and RCPT TO: "<>", "<local@domain>",
 * source routes "<@a,@b:local@domain>" (accepted in syntax, dropped),
 * quoted local parts, address literals "[192.0.2.1]" / "[IPv6:...]", and
 * UTF-8 (RFC 6531) when the client asked for SMTPUTF8. Input is untrusted
 * network text from the smtp worker; every length is bounded by RFC 5321
 * (local part 64, domain 255, path 256 octets).
 */
#ifndef POSTERN_ADDRESS_H
#define POSTERN_ADDRESS_H

#include <stdbool.h>
#include <stddef.h>

#include "../lib/strutil.h"

#define ADDR_LOCAL_MAX 64
#define ADDR_DOMAIN_MAX 255
#define ADDR_PATH_MAX 256

struct mail_address {
	/* Local part as it appears between the brackets, quotes included
	 * ("\"a b\"" stays quoted); "" for the null path. */
	char local[ADDR_LOCAL_MAX + 1];
	/* Domain, lower-cased; "" for the null path or "postmaster". */
	char domain[ADDR_DOMAIN_MAX + 1];
	bool is_null;         /* "<>" */
	bool had_source_route; /* "<@relay:...>" was given and dropped */
	bool local_quoted;    /* local part was a quoted string */
	bool domain_literal;  /* domain is "[...]" */
	bool utf8;            /* contains bytes >= 0x80 */
};

enum addr_flags {
	ADDR_ALLOW_NULL = 1 << 0,     /* "<>" is valid (MAIL FROM) */
	ADDR_ALLOW_UTF8 = 1 << 1,     /* SMTPUTF8 was given on MAIL */
	ADDR_ALLOW_BARE_POSTMASTER = 1 << 2, /* "<Postmaster>" (RCPT) */
};

/*
 * Parse a path starting at text[0] (which must be '<'). On success returns
 * the number of bytes consumed (up to and including '>') and fills *addr.
 * On failure returns -1 and sets *err_r to a static reason.
 */
long address_parse_path(const char *text, size_t len, unsigned flags,
			struct mail_address *addr, const char **err_r);

/* "local@domain" (or "" for the null path), at most ADDR_PATH_MAX. */
void address_format(const struct mail_address *addr, char *out, size_t outlen);

/* Local part with the quoting removed, if it is a plain dot-atom after
 * unquoting; false if the unquoted form is not a simple mailbox name. */
bool address_unquoted_local(const struct mail_address *addr, char *out,
			    size_t outlen);

/* Does address ("local@domain", as address_format writes it) match an
 * entry of list: "local@domain" (that address), "@domain" or "domain"
 * (any address at that domain)? Case does not matter. */
bool address_listed(const strlist_t *list, const char *address);

#endif

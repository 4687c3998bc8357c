/*
 * access.h - access maps, as the check_*_access restrictions read them:
 * what a value means (OK, REJECT [text], DEFER [text], "5xx x.y.z text",
 * DISCARD, HOLD, WARN, DUNNO; an all-numerical value is OK, as in
 * Postfix's access(5)), and the keys looked up for a client, a host name
 * or an address, in Postfix's order:
 *
 *   client   its host name and parent domains (when the name is known),
 *            then its address and, in a file: map, the address less its
 *            last part, one part at a time: 192.0.2.1, 192.0.2, 192.0,
 *            192 (IPv6: 2001:db8::1, 2001:db8:, 2001:db8, 2001)
 *   name     the name, then (file: maps) each parent domain, both as
 *            "example.com" and ".example.com"; an address literal
 *            "[192.0.2.1]" only as it is (and its address in a cidr: map)
 *   address  user@domain, then (file: maps) domain and its parent
 *            domains as above, then "user@"; the null sender is "<>"
 *
 * A parent domain "example.com" matches every name below it (Postfix's
 * default, parent_domain_matches_subdomains naming smtpd_access_maps);
 * ".example.com" matches only the names below it. cidr: and regexp: maps
 * are asked with whole keys only (the host name, the address, the whole
 * address), as in Postfix.
 *
 * Input: map values (checked when the map is read) and keys built from
 * untrusted client data. Runs in the smtp worker (and check-config).
 */
#ifndef POSTERN_ACCESS_H
#define POSTERN_ACCESS_H

#include <stdbool.h>

#include "../lib/buf.h"
#include "../mail/address.h"
#include "../map/map.h"

#define ACCESS_TEXT_MAX 400

enum access_action {
	ACCESS_OK,      /* permit: the rest of the list is skipped */
	ACCESS_DUNNO,   /* go on with the next restriction */
	ACCESS_REFUSE,  /* REJECT, DEFER, or a reply of its own: code and status */
	ACCESS_DISCARD, /* accept, then drop the message */
	ACCESS_HOLD,    /* accept into the spool's hold/ */
	ACCESS_WARN,    /* log the text, go on */
};

struct access_result {
	enum access_action action;
	int code;           /* ACCESS_REFUSE: 4xx or 5xx */
	char status[12];    /* ACCESS_REFUSE: "5.7.1" */
	const char *text;   /* the text after the action (in the value), "" if none */
};

/* The meaning of a value; NULL if it is one, else what is wrong. */
const char *access_parse(const char *value, struct access_result *r);
/* access_parse as a map's value check (map_value_check_fn), which also
 * bounds the text (ACCESS_TEXT_MAX; a regexp: value's $N captures may
 * make it longer when looked up: the reply cuts it). */
const char *access_check_value(const char *value);

/* The lookups above; the value, or NULL when no key is found. key_r
 * gets the key that was found. */
const char *access_lookup_client(struct map *m, const char *addr, const char *name,
				 buf_t *key_r);
const char *access_lookup_name(struct map *m, const char *name, buf_t *key_r);
const char *access_lookup_address(struct map *m, const struct mail_address *a, buf_t *key_r);

#endif

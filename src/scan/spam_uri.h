/*
 * spam_uri.h - URIs in the text of a message, for the spam tests (private
 * to spam_text.c): the forms mail clients turn into links, found the way
 * SpamAssassin finds them in rendered text (its reading of Thunderbird's
 * and Outlook's rules): "http://", "https://", "ftp://", "www.", "ftp.",
 * "mailto:", user@domain, and bare host names that end in a known
 * top-level domain ("example.com/offer"); and the host of a URI.
 *
 * One line at a time, in time linear in its length (the places where
 * each kind of URI can end are found first, from the right).
 *
 * Untrusted input: the rendered text of a message. Privilege:
 * unprivileged scanners and `postern scan`.
 */
#ifndef POSTERN_SCAN_SPAM_URI_H
#define POSTERN_SCAN_SPAM_URI_H

#include <stdbool.h>
#include <stddef.h>

#include "../lib/buf.h"

/* A URI found in text: uri as a client would follow it (a scheme added
 * to "www.example.com" and the others: "http://www.example.com",
 * "mailto:user@example.com"), not NUL-terminated. */
typedef void spam_uri_found_fn(void *arg, const char *uri, size_t len);

/* Find the URIs of one line of text (no line end). work is scratch space
 * the caller keeps between calls. */
void spam_uri_scan_line(const char *line, size_t len, buf_t *work, spam_uri_found_fn *found,
			void *arg);

/* The host a URI names, lower case (ASCII letters only; IDNA left as
 * written), its %-escapes decoded: the authority of scheme://host/ (no
 * user, no port), the domain of mailto:, the first component of a URI
 * without a scheme that looks like a host ("www.example.com/x",
 * "//example.com"); NULL (malloc'ed otherwise) when it names none. */
char *spam_uri_host(const char *uri, size_t len);

/* Is host (lower case or not) a dotted quad, or two labels or more of
 * letters, digits, non-ASCII bytes, '-' inside and '_' but in the last two
 * (at most 63 bytes each, 253 in all), ending in a known top-level domain? */
bool spam_uri_host_valid(const char *host, size_t len);

/* Does host end in a top-level domain we know (every country's, the
 * generic ones mail sees most, "xn--" ones)? */
bool spam_uri_known_tld(const char *host, size_t len);

#endif

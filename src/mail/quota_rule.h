/*
 * quota_rule.h - a Dovecot quota rule as users_file carries it in the
 * extra field userdb_quota_rule: "*:storage=10M", "*:bytes=10485760",
 * "*:storage=1G:messages=1000".
 *
 * As in Dovecot: "storage" takes a size whose bare number counts
 * kilobytes, "bytes" one whose bare number counts bytes; both take the
 * units B, k, M, G and T (powers of 1024, any case); 0 means no limit.
 * "messages" limits the number of messages. Only the rule of the whole mailbox ("*") is
 * understood; anything else is an error, so that a rule postern would
 * apply differently from Dovecot is never silently ignored.
 *
 * Untrusted input: a field of a file the administrator wrote (bounded
 * by the line). Privilege: the supervisor, reading users_file.
 */
#ifndef POSTERN_QUOTA_RULE_H
#define POSTERN_QUOTA_RULE_H

#include <stdbool.h>
#include <stdint.h>

#include "../lib/strutil.h"

/* The largest limit accepted (2^60 bytes, an exbibyte). */
#define QUOTA_RULE_MAX (1ULL << 60)

/* Parse rule; true with *bytes_r and *messages_r (0 = no such limit), or
 * false with a static *why_r for a FILE:LINE message. */
bool quota_rule_parse(const char *rule, uint64_t *bytes_r, uint64_t *messages_r,
		      const char **why_r);

/*
 * Is mail from sender ("local@domain", "" for the null sender) let past a
 * mailbox's quota, up to its grace (quota_grace_limit)? The null sender
 * (bounces), MAILER-DAEMON at any domain, and postmaster at one of
 * local_domains: the reports a user must get, and the administrator who
 * must be able to reach them. Local parts are compared
 * case-insensitively. Anyone can claim these addresses, which is why the
 * exemption ends at the grace.
 */
bool quota_sender_exempt(const char *sender, const strlist_t *local_domains);

/*
 * The limit an exempt sender's mail is held to: limit plus its grace,
 * saturating at UINT64_MAX, never below limit. grace is a percentage of
 * limit (percent true, rounded down) or, for a byte limit only (is_bytes),
 * an absolute number of bytes; an absolute grace adds nothing to a
 * message-count limit. limit 0 (no limit) stays 0.
 */
uint64_t quota_grace_limit(uint64_t limit, uint64_t grace, bool percent, bool is_bytes);

/*
 * Do size more bytes (or, for a count, size more messages) fit when used
 * are kept, under limit (0 = no limit)? Without overflow for any values.
 */
bool quota_fits(uint64_t used, uint64_t size, uint64_t limit);

#endif

/*
 * quota_rule.c - Dovecot's quota rule syntax, the part postern enforces
 * (see quota_rule.h).
 *
 * Untrusted input: the administrator's users_file field, parsed without
 * copying; every number is bounded before it is scaled. Privilege: the
 * supervisor.
 */
#include "quota_rule.h"

#include <string.h>
#include <strings.h>

/* "<digits>[unit]" in s[0..len) scaled to bytes; a bare number counts
 * bare_unit bytes. */
static bool parse_size(const char *s, size_t len, uint64_t bare_unit, uint64_t *bytes_r,
		       const char **why_r)
{
	uint64_t v = 0;
	size_t i = 0;
	for (; i < len && s[i] >= '0' && s[i] <= '9'; i++) {
		v = v * 10 + (uint64_t)(s[i] - '0');
		if (v > QUOTA_RULE_MAX) {
			*why_r = "quota limit too large";
			return false;
		}
	}
	if (i == 0) {
		*why_r = (len > 0 && (s[0] == '+' || s[0] == '-'))
				 ? "relative quota limits (+/-) are not supported"
				 : "quota limit is not a number";
		return false;
	}
	uint64_t unit = bare_unit;
	if (i < len) {
		static const char units[] = "BKMGT";
		const char *u = i + 1 == len ? strchr(units, s[i] & ~0x20) : NULL;
		if (u == NULL || *u == '\0') { /* strchr finds the terminator too */
			*why_r = "unknown quota unit (expected B, k, M, G or T)";
			return false;
		}
		unit = 1ULL << (10 * (unsigned)(u - units));
	}
	if (v != 0 && unit > QUOTA_RULE_MAX / v) {
		*why_r = "quota limit too large";
		return false;
	}
	*bytes_r = v * unit;
	return true;
}

static bool starts(const char *p, size_t len, const char *key)
{
	size_t n = strlen(key);
	return len > n && strncmp(p, key, n) == 0;
}

bool quota_rule_parse(const char *rule, uint64_t *bytes_r, uint64_t *messages_r,
		      const char **why_r)
{
	*bytes_r = *messages_r = 0;
	if (strncmp(rule, "*:", 2) != 0) {
		*why_r = "only the quota rule of the whole mailbox (\"*:storage=SIZE\") is "
			 "understood";
		return false;
	}
	for (const char *p = rule + 2;;) {
		size_t len = strcspn(p, ":");
		if (starts(p, len, "storage=")) {
			if (!parse_size(p + 8, len - 8, 1024, bytes_r, why_r))
				return false;
		} else if (starts(p, len, "bytes=")) {
			if (!parse_size(p + 6, len - 6, 1, bytes_r, why_r))
				return false;
		} else if (starts(p, len, "messages=")) {
			if (!parse_size(p + 9, len - 9, 1, messages_r, why_r))
				return false;
		} else {
			*why_r = "unknown quota limit (expected storage=, bytes= or messages=)";
			return false;
		}
		if (p[len] == '\0')
			break;
		p += len + 1;
	}
	return true;
}

bool quota_sender_exempt(const char *sender, const strlist_t *local_domains)
{
	const char *at = strrchr(sender, '@');
	size_t local_len = at != NULL ? (size_t)(at - sender) : strlen(sender);
	if (sender[0] == '\0')
		return true;
	if (local_len == 13 && strncasecmp(sender, "mailer-daemon", 13) == 0)
		return true;
	return local_len == 10 && strncasecmp(sender, "postmaster", 10) == 0 && at != NULL &&
	       strlist_contains_nocase(local_domains, at + 1);
}

/*
 * quota_rule.c - Dovecot's quota rule syntax, the part postern enforces
 * (see quota_rule.h).
 *
 * Untrusted input: the administrator's users_file field, parsed without
 * copying; every number is bounded before it is scaled. Privilege: the
 * supervisor.
 */
#include "quota_rule.h"

#include <stdint.h>
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

/* a + b, or UINT64_MAX when that does not fit. */
static uint64_t add_saturating(uint64_t a, uint64_t b)
{
	return b > UINT64_MAX - a ? UINT64_MAX : a + b;
}

uint64_t quota_grace_limit(uint64_t limit, uint64_t grace, bool percent, bool is_bytes)
{
	if (limit == 0)
		return 0;
	if (!percent)
		return is_bytes ? add_saturating(limit, grace) : limit;
	/* floor(limit * grace / 100) without the product: with limit =
	 * 100h + r and grace = 100q + p (r, p < 100) it is
	 * 100hq + hp + rq + floor(rp / 100), each term checked */
	uint64_t h = limit / 100, r = limit % 100, q = grace / 100, p = grace % 100;
	if (q != 0 && h > UINT64_MAX / 100 / q)
		return UINT64_MAX;
	uint64_t extra = add_saturating(100 * h * q, h * p); /* h * p < 100h <= limit */
	extra = add_saturating(extra, r * q);                /* r * q < 100q <= grace */
	extra = add_saturating(extra, r * p / 100);
	return add_saturating(limit, extra);
}

bool quota_fits(uint64_t used, uint64_t size, uint64_t limit)
{
	return limit == 0 || (used <= limit && size <= limit - used);
}

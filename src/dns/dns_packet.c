/*
 * dns_packet.c - the TTLs of a DNS answer (RFC 1035 section 4.1: header,
 * question, answer and authority sections; RFC 2308 section 5: the TTL
 * of a negative answer; RFC 2181 section 8: a TTL with the top bit set is
 * 0). c-ares parses the records themselves but does not report the TTLs
 * of MX, TXT and PTR answers nor the SOA of a negative one; the cache
 * needs them.
 *
 * Untrusted input: the whole message, from a DNS server. Every read is
 * checked against the length; names are skipped, never followed (a
 * compression pointer ends a name), so the walk is linear in the length.
 */
#include "dns_internal.h"

#include <string.h>

#define TYPE_SOA 6

struct reader {
	const unsigned char *p;
	size_t len, pos;
};

static bool take(struct reader *r, size_t n)
{
	if (n > r->len - r->pos)
		return false;
	r->pos += n;
	return true;
}

static bool get16(struct reader *r, unsigned *v)
{
	if (2 > r->len - r->pos)
		return false;
	*v = (unsigned)r->p[r->pos] << 8 | r->p[r->pos + 1];
	r->pos += 2;
	return true;
}

static bool get32(struct reader *r, uint32_t *v)
{
	if (4 > r->len - r->pos)
		return false;
	const unsigned char *b = r->p + r->pos;
	*v = (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 | b[3];
	r->pos += 4;
	return true;
}

/* Skip a name: labels up to the root label or a compression pointer. */
static bool skip_name(struct reader *r)
{
	for (size_t labels = 0; labels < 128; labels++) {
		if (r->pos >= r->len)
			return false;
		unsigned c = r->p[r->pos];
		if (c == 0)
			return take(r, 1);
		if ((c & 0xc0) == 0xc0)
			return take(r, 2);
		if ((c & 0xc0) != 0)
			return false; /* the reserved label types */
		if (!take(r, 1 + c))
			return false;
	}
	return false;
}

static uint32_t ttl_value(uint32_t raw)
{
	return (raw & 0x80000000u) != 0 ? 0 : raw;
}

/* One resource record: its type and TTL; r is left at the rdata, whose
 * length is *rdlen. */
static bool record_head(struct reader *r, unsigned *type, uint32_t *ttl, unsigned *rdlen)
{
	unsigned klass;
	uint32_t raw;
	if (!skip_name(r) || !get16(r, type) || !get16(r, &klass) || !get32(r, &raw) ||
	    !get16(r, rdlen))
		return false;
	*ttl = ttl_value(raw);
	return *rdlen <= r->len - r->pos;
}

/* An SOA's MINIMUM: the last field of its rdata, after two names. */
static bool soa_minimum(const struct reader *outer, unsigned rdlen, uint32_t *min)
{
	struct reader r = { outer->p, outer->pos + rdlen, outer->pos };
	uint32_t fields[5];
	if (!skip_name(&r) || !skip_name(&r))
		return false;
	for (size_t i = 0; i < 5; i++)
		if (!get32(&r, &fields[i]))
			return false;
	*min = ttl_value(fields[4]);
	return true;
}

bool dns_packet_ttls(const unsigned char *msg, size_t len, struct dns_packet_ttls *ttls_r)
{
	struct reader r = { msg, len, 0 };
	unsigned id, flags, qd, an, ns, ar;
	memset(ttls_r, 0, sizeof(*ttls_r));
	if (msg == NULL || !get16(&r, &id) || !get16(&r, &flags) || !get16(&r, &qd) ||
	    !get16(&r, &an) || !get16(&r, &ns) || !get16(&r, &ar))
		return false;
	for (unsigned i = 0; i < qd; i++)
		if (!skip_name(&r) || !take(&r, 4))
			return false;
	for (unsigned i = 0; i < an; i++) {
		unsigned type, rdlen;
		uint32_t ttl;
		if (!record_head(&r, &type, &ttl, &rdlen))
			return false;
		if (!ttls_r->has_answer || ttl < ttls_r->answer)
			ttls_r->answer = ttl;
		ttls_r->has_answer = true;
		r.pos += rdlen;
	}
	for (unsigned i = 0; i < ns; i++) {
		unsigned type, rdlen;
		uint32_t ttl, minimum;
		if (!record_head(&r, &type, &ttl, &rdlen))
			return false;
		if (type == TYPE_SOA && !ttls_r->has_soa && soa_minimum(&r, rdlen, &minimum)) {
			ttls_r->has_soa = true;
			ttls_r->negative = ttl < minimum ? ttl : minimum;
		}
		r.pos += rdlen;
	}
	return true;
}

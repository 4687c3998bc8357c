/*
 * test_dns.c - the parts of src/dns/ that need no server: reverse names
 * (IPv4, IPv6 nibbles, IPv4-mapped, under a list's zone), the name check,
 * the TTLs read from hand-made DNS messages (the least answer TTL, the
 * top bit, RFC 2308's SOA minimum, truncated and looping messages),
 * results built from those messages, and the cache (expiry, the least
 * recently used going first, failures never kept). The resolver itself
 * is tested against unbound in tests/integration/test_dns.py.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <ares.h>

#include "dns/dns.h"
#include "dns/dns_internal.h"

static struct sockaddr_storage addr(const char *text)
{
	struct sockaddr_storage ss;
	memset(&ss, 0, sizeof(ss));
	struct sockaddr_in *a4 = (struct sockaddr_in *)&ss;
	struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)&ss;
	if (inet_pton(AF_INET, text, &a4->sin_addr) == 1)
		a4->sin_family = AF_INET;
	else if (inet_pton(AF_INET6, text, &a6->sin6_addr) == 1)
		a6->sin6_family = AF_INET6;
	else
		fail_msg("bad test address %s", text);
	return ss;
}

static void expect_reverse(const char *address, const char *zone, const char *want)
{
	struct sockaddr_storage ss = addr(address);
	char out[300];
	assert_true(dns_reverse_name((struct sockaddr *)&ss, zone, out, sizeof(out)));
	assert_string_equal(out, want);
}

static void test_reverse_names(void **state)
{
	(void)state;
	expect_reverse("192.0.2.1", NULL, "1.2.0.192.in-addr.arpa");
	expect_reverse("127.0.0.2", "zen.example.org", "2.0.0.127.zen.example.org");
	expect_reverse("::ffff:192.0.2.1", "bl.test", "1.2.0.192.bl.test");
	expect_reverse("2001:db8::1", NULL,
		       "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa");
	expect_reverse("2001:db8:abcd:12::f0", "bl.test",
		       "0.f.0.0.0.0.0.0.0.0.0.0.0.0.0.0.2.1.0.0.d.c.b.a.8.b.d.0.1.0.0.2.bl.test");
	struct sockaddr_storage ss = addr("192.0.2.1");
	char small[10];
	assert_false(dns_reverse_name((struct sockaddr *)&ss, NULL, small, sizeof(small)));
	struct sockaddr un = { .sa_family = AF_UNIX };
	char out[100];
	assert_false(dns_reverse_name(&un, NULL, out, sizeof(out)));
}

static void test_name_valid(void **state)
{
	(void)state;
	char label64[80], long_name[300];
	assert_true(dns_name_valid("example.org"));
	assert_true(dns_name_valid("example.org."));
	assert_true(dns_name_valid("_spf.example.org"));
	assert_true(dns_name_valid("2.0.0.127.zen.example.org"));
	assert_false(dns_name_valid(""));
	assert_false(dns_name_valid("."));
	assert_false(dns_name_valid("a..b"));
	assert_false(dns_name_valid(".a"));
	assert_false(dns_name_valid("a b.example"));
	assert_false(dns_name_valid("a\\.example"));
	assert_false(dns_name_valid("caf\xc3\xa9.example"));
	memset(label64, 'x', 64);
	label64[64] = '\0';
	assert_false(dns_name_valid(label64));
	label64[63] = '\0';
	assert_true(dns_name_valid(label64));
	memset(long_name, 'a', sizeof(long_name));
	for (size_t i = 50; i < sizeof(long_name); i += 50)
		long_name[i] = '.';
	long_name[254] = '\0';
	assert_false(dns_name_valid(long_name));
	long_name[253] = '\0';
	assert_true(dns_name_valid(long_name));
}

/* ---- hand-made DNS messages --------------------------------------------------------- */

struct msg {
	unsigned char b[1024];
	size_t n;
};

static void put8(struct msg *m, unsigned v)
{
	m->b[m->n++] = (unsigned char)v;
}

static void put16(struct msg *m, unsigned v)
{
	put8(m, v >> 8);
	put8(m, v & 0xff);
}

static void put32(struct msg *m, uint32_t v)
{
	put16(m, v >> 16);
	put16(m, v & 0xffff);
}

static void put_name(struct msg *m, const char *name)
{
	while (*name != '\0') {
		const char *dot = strchr(name, '.');
		size_t len = dot != NULL ? (size_t)(dot - name) : strlen(name);
		put8(m, (unsigned)len);
		memcpy(m->b + m->n, name, len);
		m->n += len;
		name += len + (dot != NULL);
	}
	put8(m, 0);
}

static void header(struct msg *m, unsigned rcode, unsigned an, unsigned ns)
{
	m->n = 0;
	put16(m, 0x1234);
	put16(m, 0x8180 | rcode);
	put16(m, 1);
	put16(m, an);
	put16(m, ns);
	put16(m, 0);
}

static void question(struct msg *m, const char *name, unsigned type)
{
	put_name(m, name);
	put16(m, type);
	put16(m, 1);
}

/* An A record for the question's name (a compression pointer to it). */
static void answer_a(struct msg *m, uint32_t ttl, const char *ip)
{
	struct in_addr a;
	inet_pton(AF_INET, ip, &a);
	put16(m, 0xc00c);
	put16(m, 1);
	put16(m, 1);
	put32(m, ttl);
	put16(m, 4);
	memcpy(m->b + m->n, &a, 4);
	m->n += 4;
}

static void authority_soa(struct msg *m, const char *zone, uint32_t ttl, uint32_t minimum)
{
	put_name(m, zone);
	put16(m, 6);
	put16(m, 1);
	put32(m, ttl);
	size_t len_at = m->n;
	put16(m, 0);
	size_t start = m->n;
	put_name(m, "ns.test");
	put_name(m, "hostmaster.test");
	put32(m, 1);
	put32(m, 3600);
	put32(m, 600);
	put32(m, 86400);
	put32(m, minimum);
	m->b[len_at] = (unsigned char)((m->n - start) >> 8);
	m->b[len_at + 1] = (unsigned char)((m->n - start) & 0xff);
}

static void test_packet_ttls(void **state)
{
	(void)state;
	struct msg m;
	struct dns_packet_ttls t;
	header(&m, 0, 3, 0);
	question(&m, "x.test", 1);
	answer_a(&m, 300, "192.0.2.1");
	answer_a(&m, 120, "192.0.2.2");
	answer_a(&m, 0x80000005u, "192.0.2.3"); /* top bit: counts as 0 */
	assert_true(dns_packet_ttls(m.b, m.n, &t));
	assert_true(t.has_answer);
	assert_int_equal(t.answer, 0);
	assert_false(t.has_soa);

	header(&m, 3, 0, 1);
	question(&m, "x.test", 1);
	authority_soa(&m, "test", 900, 60);
	assert_true(dns_packet_ttls(m.b, m.n, &t));
	assert_false(t.has_answer);
	assert_true(t.has_soa);
	assert_int_equal(t.negative, 60);
	header(&m, 3, 0, 1);
	question(&m, "x.test", 1);
	authority_soa(&m, "test", 30, 600);
	assert_true(dns_packet_ttls(m.b, m.n, &t));
	assert_int_equal(t.negative, 30);

	/* Every truncation of a good message is refused, never over-read
	 * (ASan would tell). */
	header(&m, 0, 1, 1);
	question(&m, "x.test", 1);
	answer_a(&m, 300, "192.0.2.1");
	authority_soa(&m, "test", 900, 60);
	for (size_t n = 0; n < m.n; n++) {
		unsigned char *copy = malloc(n > 0 ? n : 1);
		memcpy(copy, m.b, n);
		assert_false(dns_packet_ttls(copy, n, &t));
		free(copy);
	}
	assert_true(dns_packet_ttls(m.b, m.n, &t));
	assert_false(dns_packet_ttls(NULL, 0, &t));

	/* A name of reserved label types ends the walk. */
	header(&m, 0, 0, 0);
	put8(&m, 0x40);
	put8(&m, 0);
	put32(&m, 0);
	assert_false(dns_packet_ttls(m.b, m.n, &t));
}

static void test_results_from_answers(void **state)
{
	(void)state;
	struct msg m;
	header(&m, 0, 2, 0);
	question(&m, "x.test", 1);
	answer_a(&m, 300, "127.0.0.2");
	answer_a(&m, 200, "127.0.0.4");
	struct dns_result *r = dns_result_from_answer(DNS_TYPE_A, ARES_SUCCESS, m.b, m.n, 300);
	assert_int_equal(r->status, DNS_FOUND);
	assert_int_equal(r->count, 2);
	assert_int_equal(r->ttl, 200);
	assert_int_equal(r->records[0].family, AF_INET);
	assert_int_equal(r->records[1].addr[3], 4);
	dns_result_unref(&r);
	assert_null(r);

	header(&m, 0, 1, 0);
	question(&m, "x.test", 1);
	answer_a(&m, 7 * 86400, "127.0.0.2");
	r = dns_result_from_answer(DNS_TYPE_A, ARES_SUCCESS, m.b, m.n, 300);
	assert_int_equal(r->ttl, DNS_TTL_MAX);
	dns_result_unref(&r);

	header(&m, 3, 0, 1);
	question(&m, "x.test", 1);
	authority_soa(&m, "test", 3600, 3600);
	r = dns_result_from_answer(DNS_TYPE_A, ARES_ENOTFOUND, m.b, m.n, 300);
	assert_int_equal(r->status, DNS_NXDOMAIN);
	assert_int_equal(r->ttl, 300); /* capped by the resolver's negative_ttl_max */
	dns_result_unref(&r);
	r = dns_result_from_answer(DNS_TYPE_MX, ARES_ENODATA, NULL, 0, 300);
	assert_int_equal(r->status, DNS_NODATA);
	assert_int_equal(r->ttl, DNS_NEGATIVE_TTL_NO_SOA);
	dns_result_unref(&r);

	static const struct { int ares; enum dns_status want; } map[] = {
		{ ARES_ESERVFAIL, DNS_TEMPFAIL }, { ARES_EREFUSED, DNS_TEMPFAIL },
		{ ARES_ECONNREFUSED, DNS_TEMPFAIL }, { ARES_ETIMEOUT, DNS_TIMEOUT },
		{ ARES_EBADRESP, DNS_TEMPFAIL }, { ARES_ENOTFOUND, DNS_NXDOMAIN },
	};
	for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++) {
		r = dns_result_from_answer(DNS_TYPE_A, map[i].ares, NULL, 0, 300);
		assert_int_equal(r->status, map[i].want);
		assert_int_equal(r->count, 0);
		dns_result_unref(&r);
	}
	/* Success said, but the message does not parse: a temporary failure. */
	unsigned char junk[5] = { 1, 2, 3, 4, 5 };
	r = dns_result_from_answer(DNS_TYPE_A, ARES_SUCCESS, junk, sizeof(junk), 300);
	assert_int_equal(r->status, DNS_TEMPFAIL);
	dns_result_unref(&r);
}

static void test_cache(void **state)
{
	(void)state;
	struct dns_cache c;
	char k1[300], k2[300], k3[300];
	dns_cache_init(&c, 2);
	assert_true(dns_cache_key(DNS_TYPE_A, "One.Test.", k1, sizeof(k1)));
	assert_string_equal(k1, "1/one.test");
	assert_true(dns_cache_key(DNS_TYPE_MX, "two.test", k2, sizeof(k2)));
	assert_true(dns_cache_key(DNS_TYPE_A, "three.test", k3, sizeof(k3)));
	assert_false(dns_cache_key(DNS_TYPE_A, "three.test", k3, 5));

	struct dns_result *pos = dns_result_new(DNS_TYPE_A, DNS_FOUND);
	pos->ttl = 10;
	struct dns_result *neg = dns_result_new(DNS_TYPE_MX, DNS_NXDOMAIN);
	neg->ttl = 5;
	dns_cache_put(&c, k1, pos, 1000);
	dns_cache_put(&c, k2, neg, 1000);
	struct dns_result *got = dns_cache_get(&c, k1, 10999);
	assert_ptr_equal(got, pos);
	assert_int_equal(pos->refs, 3); /* ours, the cache's, got */
	dns_result_unref(&got);
	assert_null(dns_cache_get(&c, k2, 6000)); /* expired, and dropped */
	assert_int_equal(c.count, 1);
	assert_int_equal(neg->refs, 1);

	/* Full: the least recently used goes. */
	dns_cache_put(&c, k2, neg, 7000);
	got = dns_cache_get(&c, k1, 7000); /* k1 is now the most recent */
	dns_result_unref(&got);
	struct dns_result *third = dns_result_new(DNS_TYPE_A, DNS_NODATA);
	third->ttl = 100;
	dns_cache_put(&c, k3, third, 7000);
	assert_int_equal(c.count, 2);
	assert_null(dns_cache_get(&c, k2, 7001));
	got = dns_cache_get(&c, k1, 7001);
	assert_non_null(got);
	dns_result_unref(&got);

	/* Never kept: failures, TTL 0; and nothing at all with capacity 0. */
	struct dns_result *fail = dns_result_new(DNS_TYPE_A, DNS_TEMPFAIL);
	fail->ttl = 100;
	dns_cache_put(&c, "1/fail.test", fail, 7000);
	assert_null(dns_cache_get(&c, "1/fail.test", 7000));
	struct dns_result *zero = dns_result_new(DNS_TYPE_A, DNS_FOUND);
	dns_cache_put(&c, "1/zero.test", zero, 7000);
	assert_null(dns_cache_get(&c, "1/zero.test", 7000));
	dns_cache_free(&c);
	dns_cache_init(&c, 0);
	dns_cache_put(&c, k1, pos, 0);
	assert_null(dns_cache_get(&c, k1, 0));
	dns_cache_free(&c);

	assert_int_equal(pos->refs, 1);
	dns_result_unref(&pos);
	dns_result_unref(&neg);
	dns_result_unref(&third);
	dns_result_unref(&fail);
	dns_result_unref(&zero);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_reverse_names),
		cmocka_unit_test(test_name_valid),
		cmocka_unit_test(test_packet_ttls),
		cmocka_unit_test(test_results_from_answers),
		cmocka_unit_test(test_cache),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

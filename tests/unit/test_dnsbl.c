/*
 * test_dnsbl.c - DNS blocklist settings: list specs (domain, filters with
 * numbers, [sets], ranges and ';' alternatives, weights), what each
 * filter counts as a listing (and the default: 127.0.0.0/8 without the
 * lists' own 127.255.255.x error codes), the refusal of bad specs with a
 * message, reply templates, and the configuration check that reports
 * FILE:LINE. The evaluation against a DNS server is tested with unbound
 * in tests/integration/test_dnsbl.py.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "lib/config.h"
#include "policy/dnsbl.h"

static struct dnsbl_site parse_ok(const char *spec)
{
	struct dnsbl_site s;
	const char *err = NULL;
	if (!dnsbl_site_parse(spec, &s, &err))
		fail_msg("\"%s\" refused: %s", spec, err);
	return s;
}

static const char *parse_err(const char *spec)
{
	struct dnsbl_site s;
	const char *err = NULL;
	if (dnsbl_site_parse(spec, &s, &err))
		fail_msg("\"%s\" accepted", spec);
	return err;
}

static bool matches(const struct dnsbl_site *s, unsigned a, unsigned b, unsigned c, unsigned d)
{
	const unsigned char addr[4] = { (unsigned char)a, (unsigned char)b, (unsigned char)c,
					(unsigned char)d };
	return dnsbl_site_matches(s, addr);
}

static void test_plain_list(void **state)
{
	(void)state;
	struct dnsbl_site s = parse_ok("ZEN.Example.ORG.");
	assert_string_equal(s.domain, "zen.example.org");
	assert_int_equal(s.weight, 1);
	assert_int_equal(s.pattern_count, 0);
	assert_string_equal(s.spec, "ZEN.Example.ORG.");
	assert_true(matches(&s, 127, 0, 0, 2));
	assert_true(matches(&s, 127, 0, 0, 11));
	assert_true(matches(&s, 127, 1, 2, 3));
	assert_false(matches(&s, 127, 255, 255, 254)); /* the list's error code */
	assert_false(matches(&s, 127, 255, 255, 252));
	assert_true(matches(&s, 127, 255, 0, 1));
	assert_false(matches(&s, 192, 0, 2, 1));       /* a wildcard, not a listing */
}

static void test_filters(void **state)
{
	(void)state;
	struct dnsbl_site s = parse_ok("bl.test=127.0.0.2");
	assert_true(matches(&s, 127, 0, 0, 2));
	assert_false(matches(&s, 127, 0, 0, 3));

	s = parse_ok("bl.test=127.0.0.[2..11]");
	assert_true(matches(&s, 127, 0, 0, 2));
	assert_true(matches(&s, 127, 0, 0, 11));
	assert_false(matches(&s, 127, 0, 0, 12));
	assert_false(matches(&s, 127, 0, 0, 1));

	s = parse_ok("bl.test=127.0.[0..255].[2;4;10..11]");
	assert_true(matches(&s, 127, 0, 9, 4));
	assert_true(matches(&s, 127, 0, 255, 10));
	assert_false(matches(&s, 127, 0, 9, 3));
	assert_false(matches(&s, 127, 1, 9, 4));

	s = parse_ok("bl.test=127.0.0.2;127.0.0.4*3");
	assert_int_equal(s.pattern_count, 2);
	assert_int_equal(s.weight, 3);
	assert_true(matches(&s, 127, 0, 0, 4));
	assert_false(matches(&s, 127, 0, 0, 3));

	/* An explicit filter may count what the default would not. */
	s = parse_ok("odd.test=192.0.2.[0..255]");
	assert_true(matches(&s, 192, 0, 2, 77));
}

static void test_weights(void **state)
{
	(void)state;
	assert_int_equal(parse_ok("bl.test*2").weight, 2);
	assert_int_equal(parse_ok("bl.test*+2").weight, 2);
	assert_int_equal(parse_ok("wl.test=127.0.[0..255].[2..3]*-5").weight, -5);
	assert_int_equal(parse_ok("wl.test*-1000").weight, -1000);
	struct dnsbl_site s = parse_ok("wl.test=127.0.15.[0..255]*-2");
	assert_true(matches(&s, 127, 0, 15, 0));
}

static void test_bad_specs(void **state)
{
	(void)state;
	char long_domain[300];
	assert_non_null(strstr(parse_err(""), "domain"));
	assert_non_null(strstr(parse_err("=127.0.0.2"), "domain"));
	assert_non_null(strstr(parse_err("bl.test="), "filter"));
	assert_non_null(strstr(parse_err("bl.test=127.0.0"), "four octets"));
	assert_non_null(strstr(parse_err("bl.test=127.0.0.256"), "0 to 255"));
	assert_non_null(strstr(parse_err("bl.test=127.0.0.[5..2]"), "N <= M"));
	assert_non_null(strstr(parse_err("bl.test=127.0.0.[2"), "']'"));
	assert_non_null(strstr(parse_err("bl.test=127.0.0.[]"), "[set]"));
	assert_non_null(strstr(parse_err("bl.test=127.0.0.2,3"), "';'"));
	assert_non_null(strstr(parse_err("bl.test*0"), "0"));
	assert_non_null(strstr(parse_err("bl.test*1001"), "-1000 to 1000"));
	assert_non_null(strstr(parse_err("bl.test*x"), "whole number"));
	assert_non_null(parse_err("bl.test*2*3"));
	assert_non_null(strstr(parse_err("b*l.test=127.0.0.2"), "letters"));
	assert_non_null(strstr(parse_err("bl..test"), "valid DNS name"));
	assert_non_null(strstr(parse_err("bl.test=127.0.0.[1;2;3;4;5;6;7;8;9;10;11;12;13;14;15;"
					 "16;17]"), "too many"));
	assert_non_null(strstr(parse_err("bl.test=1.1.1.1;1.1.1.1;1.1.1.1;1.1.1.1;1.1.1.1;1.1.1.1;"
					 "1.1.1.1;1.1.1.1;1.1.1.1"), "too many"));
	memset(long_domain, 'a', sizeof(long_domain));
	for (size_t i = 60; i < sizeof(long_domain); i += 60)
		long_domain[i] = '.';
	long_domain[DNSBL_DOMAIN_MAX + 1] = '\0';
	assert_non_null(strstr(parse_err(long_domain), "IPv6"));
	long_domain[DNSBL_DOMAIN_MAX] = '\0';
	parse_ok(long_domain);
}

static void test_site_lists(void **state)
{
	(void)state;
	strlist_t l = { 0 };
	struct dnsbl_sites sites;
	const char *err = NULL, *bad = NULL;
	strlist_split(&l, "a.test*2, b.test=127.0.0.2 c.test=[2");
	assert_false(dnsbl_sites_parse(&l, &sites, &err, &bad));
	assert_string_equal(bad, "c.test=[2");
	assert_int_equal(sites.count, 0);
	strlist_free(&l);
	strlist_split(&l, "a.test*2, b.test=127.0.0.2");
	assert_true(dnsbl_sites_parse(&l, &sites, &err, &bad));
	assert_int_equal(sites.count, 2);
	assert_string_equal(sites.items[1].domain, "b.test");
	dnsbl_sites_free(&sites);
	strlist_free(&l);
	for (int i = 0; i < DNSBL_MAX_SITES + 1; i++) {
		char name[32];
		snprintf(name, sizeof(name), "l%d.test", i);
		strlist_add(&l, name);
	}
	assert_false(dnsbl_sites_parse(&l, &sites, &err, &bad));
	assert_non_null(strstr(err, "too many"));
	strlist_free(&l);
}

static void expand(const char *tpl, const struct dnsbl_vars *v, const char *want)
{
	char out[512];
	const char *err = dnsbl_template_check(tpl);
	if (err != NULL)
		fail_msg("template \"%s\" refused: %s", tpl, err);
	dnsbl_template_expand(tpl, v, out, sizeof(out));
	assert_string_equal(out, want);
}

static void test_templates(void **state)
{
	(void)state;
	struct dnsbl_vars v = {
		.client_address = "192.0.2.1", .rbl_class = "Client host",
		.rbl_what = "192.0.2.1", .rbl_domain = "bl.test",
		.rbl_txt = "Listed\r\nsee http://bl.test/?192.0.2.1", .rbl_answer = "127.0.0.2",
	};
	struct dnsbl_vars no_txt = v;
	no_txt.rbl_txt = "";
	const char *dflt = "$rbl_class [$rbl_what] is listed by $rbl_domain${rbl_txt?: $rbl_txt}";
	expand(dflt, &v, "Client host [192.0.2.1] is listed by bl.test: "
			 "Listed??see http://bl.test/?192.0.2.1");
	expand(dflt, &no_txt, "Client host [192.0.2.1] is listed by bl.test");
	expand("${rbl_txt:no reason given by ${rbl_domain}}", &no_txt,
	       "no reason given by bl.test");
	expand("${rbl_txt:no reason}", &v, "");
	expand("$$5 {x} ${client_address}x $rbl_answer.", &v, "$5 {x} 192.0.2.1x 127.0.0.2.");
	expand("plain", &v, "plain");
	expand("", &v, "");

	assert_non_null(dnsbl_template_check("$"));
	assert_non_null(dnsbl_template_check("$1"));
	assert_non_null(strstr(dnsbl_template_check("$nosuch"), "unknown variable"));
	assert_non_null(dnsbl_template_check("${rbl_txt"));
	assert_non_null(dnsbl_template_check("${rbl_txt?x"));
	assert_non_null(dnsbl_template_check("${rbl_txt!x}"));
	assert_non_null(strstr(dnsbl_template_check("${rbl_txt?${rbl_txt?x}}"), "nested"));
	assert_non_null(dnsbl_template_check("${rbl_txt?$nosuch}"));

	char small[8];
	dnsbl_template_expand(dflt, &v, small, sizeof(small));
	assert_string_equal(small, "Client ");
	dnsbl_template_expand("$nosuch", &v, small, sizeof(small));
	assert_string_equal(small, "");
}

static void test_config_check_names_file_and_line(void **state)
{
	(void)state;
	char dir[] = "/tmp/postern-test-dnsbl-XXXXXX";
	assert_non_null(mkdtemp(dir));
	char path[128];
	snprintf(path, sizeof(path), "%s/postern.conf", dir);
	FILE *f = fopen(path, "w");
	fprintf(f, "hostname = mx.example.test\n# a comment\n"
		   "dnsbl_sites = good.test*2,\n    bad.test=127.0.0.[9..1]\n"
		   "dnsbl_reply = listed: $what\n"
		   "rhsbl_sender_sites = dbl.test\n");
	fclose(f);
	struct config cfg;
	assert_int_equal(config_load(path, &cfg, stderr), 0);
	assert_true(dnsbl_configured(&cfg));
	assert_int_equal(config_key_line(&cfg, "dnsbl_sites"), 3);
	assert_int_equal(config_key_line(&cfg, "dnsbl_threshold"), 0);
	assert_int_equal(config_key_line(&cfg, "no_such_key"), 0);
	char *text = NULL;
	size_t len = 0;
	FILE *errors = open_memstream(&text, &len);
	assert_int_equal(dnsbl_config_check(&cfg, errors), 2);
	fclose(errors);
	char want1[256], want2[256];
	snprintf(want1, sizeof(want1), "%s:3: dnsbl_sites: \"bad.test=127.0.0.[9..1]\": ", path);
	snprintf(want2, sizeof(want2), "%s:5: dnsbl_reply: unknown variable", path);
	if (strstr(text, want1) == NULL || strstr(text, want2) == NULL)
		fail_msg("unexpected report:\n%s", text);
	free(text);
	config_free(&cfg);

	f = fopen(path, "w");
	fprintf(f, "hostname = mx.example.test\ndnsbl_sites = bl.test\n"
		   "policy_timeout = 10s\ndnsbl_timeout = 10s\n");
	fclose(f);
	assert_int_equal(config_load(path, &cfg, stderr), 0);
	errors = open_memstream(&text, &len);
	assert_int_equal(dnsbl_config_check(&cfg, errors), 1);
	fclose(errors);
	assert_non_null(strstr(text, ":4: dnsbl_timeout: must be shorter than policy_timeout"));
	free(text);
	config_free(&cfg);
	unlink(path);
	rmdir(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_plain_list),
		cmocka_unit_test(test_filters),
		cmocka_unit_test(test_weights),
		cmocka_unit_test(test_bad_specs),
		cmocka_unit_test(test_site_lists),
		cmocka_unit_test(test_templates),
		cmocka_unit_test(test_config_check_names_file_and_line),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

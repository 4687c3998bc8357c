/*
 * test_maps.c - the map types (file:, cidr:, regexp:), their FILE:LINE
 * reports, their reload when the file changes, the meaning of access map
 * values, and the order of the access lookups (client, name, address).
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "testutil.h"

#include "lib/buf.h"
#include "lib/xalloc.h"
#include "mail/address.h"
#include "map/map.h"
#include "policy/access.h"

TESTUTIL_PRIVATE_DIR("maps")

/* Write name in the test folder, dated age seconds ago (a map reads a
 * file only once it has not changed for a second). */
static void write_aged(const char *name, const char *text, int age)
{
	char path[256];
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	char tmp[300];
	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	FILE *f = fopen(tmp, "w");
	assert_non_null(f);
	fputs(text, f);
	fclose(f);
	struct timespec t[2];
	clock_gettime(CLOCK_REALTIME, &t[0]);
	t[0].tv_sec -= age;
	t[1] = t[0];
	assert_int_equal(utimensat(AT_FDCWD, tmp, t, 0), 0);
	assert_int_equal(rename(tmp, path), 0);
}

static void write_map(const char *name, const char *text)
{
	write_aged(name, text, 10);
}

/* Open spec (relative to the test folder); the problems it printed go
 * to *report_r (malloc'ed, "" if none) when report_r is not NULL. */
static struct map *open_map(const char *spec, char **report_r)
{
	char *text = NULL;
	size_t len = 0;
	FILE *errors = open_memstream(&text, &len);
	struct map *m = map_open(spec, dir, access_check_value, errors);
	fclose(errors);
	if (report_r != NULL)
		*report_r = text;
	else {
		if (m == NULL)
			fail_msg("cannot open %s:\n%s", spec, text);
		free(text);
	}
	return m;
}

/* The report of a map that must not open must contain want. */
static void assert_refused(const char *spec, const char *want)
{
	char *report;
	struct map *m = open_map(spec, &report);
	if (m != NULL)
		fail_msg("%s opened, expected: %s", spec, want);
	if (strstr(report, want) == NULL)
		fail_msg("%s: expected \"%s\" in:\n%s", spec, want, report);
	free(report);
}

static void assert_value(struct map *m, const char *key, const char *want)
{
	const char *v = map_lookup(m, key);
	if (want == NULL && v != NULL)
		fail_msg("%s: %s: expected no value, got \"%s\"", map_name(m), key, v);
	if (want != NULL && (v == NULL || strcmp(v, want) != 0))
		fail_msg("%s: %s: expected \"%s\", got %s%s%s", map_name(m), key, want,
			 v ? "\"" : "", v ? v : "nothing", v ? "\"" : "");
}

/* ---- file: ------------------------------------------------------------------------ */

static void test_file_map(void **state)
{
	(void)state;
	write_map("access", "# a comment\n"
		  "Example.COM   REJECT spam from here\n"
		  "\n"
		  "   # an indented comment\n"
		  "user@example.org\tOK\r\n"
		  "long.example  550 5.7.1 this text\n"
		  "  goes on here\n"
		  "192.0.2       DUNNO\n"
		  "hash#in.key   OK\n");
	struct map *m = open_map("file:access", NULL);
	assert_int_equal(map_get_type(m), MAP_TYPE_FILE);
	assert_int_equal(map_size(m), 5);
	char want[300];
	snprintf(want, sizeof(want), "file:%s/access", dir);
	assert_string_equal(map_name(m), want);
	assert_value(m, "example.com", "REJECT spam from here");
	assert_value(m, "EXAMPLE.com", "REJECT spam from here");
	assert_value(m, "USER@Example.Org", "OK");
	assert_value(m, "long.example", "550 5.7.1 this text goes on here");
	assert_value(m, "192.0.2", "DUNNO");
	assert_value(m, "hash#in.key", "OK");
	assert_value(m, "sub.example.com", NULL); /* exact keys: parents are the caller's */
	assert_value(m, "", NULL);
	map_free(&m);
	assert_null(m);
}

static void test_file_map_problems(void **state)
{
	(void)state;
	write_map("dup", "a OK\nb OK\nA REJECT\n");
	assert_refused("file:dup", "/dup:3: key \"a\" is given twice (first on line 1)");
	write_map("novalue", "a OK\nlonely\n");
	assert_refused("file:novalue", "/novalue:2: expected \"key value\"");
	write_map("badvalue", "a OK\nb REJCT\n");
	assert_refused("file:badvalue", "/badvalue:2: unknown action");
	write_map("cont", "  starts indented\n");
	assert_refused("file:cont", "/cont:1: continuation line without a line before it");
	char nul[] = "a OK\nb\0c OK\n";
	char path[256];
	snprintf(path, sizeof(path), "%s/nul", dir);
	FILE *f = fopen(path, "w");
	fwrite(nul, 1, sizeof(nul) - 1, f);
	fclose(f);
	assert_refused("file:nul", "/nul:2: line contains a NUL byte");
	buf_t big = BUF_INIT;
	buf_puts(&big, "k ");
	for (int i = 0; i < MAP_LINE_MAX; i++)
		buf_putc(&big, 'x');
	buf_puts(&big, "\n");
	write_map("long", buf_cstr(&big));
	assert_refused("file:long", "/long:1: line longer than 4096 bytes");
	buf_reset(&big);
	buf_puts(&big, "k REJECT ");
	for (int i = 0; i < 3000; i++)
		buf_putc(&big, 'x');
	buf_puts(&big, "\n  ");
	for (int i = 0; i < 3000; i++)
		buf_putc(&big, 'y');
	buf_puts(&big, "\n");
	write_map("longlogical", buf_cstr(&big));
	assert_refused("file:longlogical", "/longlogical:1: logical line longer than 4096 bytes");
	buf_free(&big);
	assert_refused("file:missing", "/missing: cannot read: No such file or directory");
	assert_refused("hash:/etc/postfix/access", "not a map");
	assert_refused("access", "not a map");
	assert_refused("file:", "names no file");
	assert_refused("file:.", "not a regular file");
}

/* ---- cidr: ------------------------------------------------------------------------- */

static void test_cidr_map(void **state)
{
	(void)state;
	write_map("nets", "192.0.2.7        REJECT one host\n"
		  "192.0.2.0/24     DUNNO\n"
		  "192.0.0.0/16     OK\n"
		  "2001:db8::/32    HOLD v6\n"
		  "0.0.0.0/0        DEFER everyone else\n");
	struct map *m = open_map("cidr:nets", NULL);
	assert_int_equal(map_get_type(m), MAP_TYPE_CIDR);
	assert_int_equal(map_size(m), 5);
	assert_value(m, "192.0.2.7", "REJECT one host");
	assert_value(m, "192.0.2.8", "DUNNO"); /* first match in file order */
	assert_value(m, "192.0.3.1", "OK");
	assert_value(m, "198.51.100.1", "DEFER everyone else");
	assert_value(m, "::ffff:192.0.2.7", "REJECT one host"); /* IPv4-mapped */
	assert_value(m, "2001:db8:1::5", "HOLD v6");
	assert_value(m, "2001:db9::1", NULL);
	assert_value(m, "example.com", NULL);
	assert_value(m, "192.0.2", NULL);
	map_free(&m);
	write_map("badnet", "10.0.0.0/8 OK\n10.1.2.3/8 OK\n");
	assert_refused("cidr:badnet", "/badnet:2: \"10.1.2.3/8\": address has bits set beyond");
	write_map("badaddr", "10.0.0.300 OK\n");
	assert_refused("cidr:badaddr", "/badaddr:1: \"10.0.0.300\": bad network address");
	write_map("badprefix", "10.0.0.0/33 OK\n");
	assert_refused("cidr:badprefix", "/badprefix:1: \"10.0.0.0/33\": bad prefix length");
}

/* ---- regexp: ----------------------------------------------------------------------- */

static void test_regexp_map(void **state)
{
	(void)state;
	write_map("re", "/^(.*)@spam\\.example$/       REJECT $1 is not welcome\n"
		  "/^Exact@Case\\.example$/i      OK\n"
		  "%^a/b%                        REJECT slash $$5\n"
		  "!/\\.example$/                DUNNO\n"
		  "/^([a-z]+)\\.(test)\\.example$/ 550 5.7.1 ${2}-${1}\n"
		  "/esc\\/aped/                  WARN escaped delimiter\n");
	struct map *m = open_map("regexp:re", NULL);
	assert_int_equal(map_get_type(m), MAP_TYPE_REGEXP);
	assert_int_equal(map_size(m), 6);
	assert_value(m, "joe@spam.example", "REJECT joe is not welcome");
	assert_value(m, "JOE@SPAM.EXAMPLE", "REJECT JOE is not welcome"); /* case-insensitive */
	assert_value(m, "Exact@Case.example", "OK");
	assert_value(m, "exact@case.example", NULL); /* i makes it case-sensitive */
	assert_value(m, "a/b", "REJECT slash $5");
	assert_value(m, "elsewhere.org", "DUNNO"); /* negated */
	assert_value(m, "mx.test.example", "550 5.7.1 test-mx");
	assert_value(m, "x esc/aped.example", "WARN escaped delimiter");
	/* UTF-8 keys match as characters; bytes that are not UTF-8 match no
	 * character class (PCRE2_MATCH_INVALID_UTF), and never crash. */
	assert_value(m, "j\xc3\xb6rg@spam.example", "REJECT j\xc3\xb6rg is not welcome");
	assert_value(m, "\xff\xfe@spam.example", NULL);
	map_free(&m);
	write_map("pcre", "/x/ OK\n");
	m = open_map("pcre:pcre", NULL);
	assert_int_equal(map_get_type(m), MAP_TYPE_REGEXP);
	map_free(&m);
}

static void test_regexp_map_problems(void **state)
{
	(void)state;
	write_map("r1", "/a(/ OK\n");
	assert_refused("regexp:r1", "/r1:1: bad pattern: missing closing parenthesis");
	write_map("r2", "/a/q OK\n");
	assert_refused("regexp:r2", "/r2:1: unknown pattern flag 'q'");
	write_map("r3", "/(a)/ REJECT $2\n");
	assert_refused("regexp:r3", "/r3:1: $2: the pattern has 1 capture");
	write_map("r4", "!/(a)/ REJECT $1\n");
	assert_refused("regexp:r4", "/r4:1: $1: a negated pattern has no captures");
	write_map("r5", "/a/ REJECT costs $x\n");
	assert_refused("regexp:r5", "/r5:1: a '$' in the value must be");
	write_map("r6", "/a OK\n");
	assert_refused("regexp:r6", "/r6:1: the pattern has no closing '/'");
	write_map("r7", "/a/\n");
	assert_refused("regexp:r7", "/r7:1: the pattern has no value after it");
	write_map("r8", "if /a/\n/b/ OK\nendif\n");
	assert_refused("regexp:r8", "/r8:1: if/endif blocks are not supported");
	write_map("r9", "a OK\n");
	assert_refused("regexp:r9", "/r9:1: expected /pattern/ at the start of the line");
	write_map("r10", "// OK\n");
	assert_refused("regexp:r10", "/r10:1: empty pattern");
	write_map("r11", "/(a)/ $1\n");
	assert_refused("regexp:r11", "/r11:1: unknown action");
	write_map("r12", "/a/ REJECT ${100}\n");
	assert_refused("regexp:r12", "/r12:1: bad reference in the value");
}

/* A pattern that backtracks without end on a hostile key: the match
 * limit makes it a non-match, quickly. */
static void test_regexp_match_limit(void **state)
{
	(void)state;
	write_map("slow", "/^(a+)+$/ REJECT slow\n/./ OK\n");
	struct map *m = open_map("regexp:slow", NULL);
	char key[64];
	memset(key, 'a', 40);
	key[40] = 'b';
	key[41] = '\0';
	struct timespec t0, t1;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	assert_value(m, key, "OK");
	clock_gettime(CLOCK_MONOTONIC, &t1);
	assert_true(t1.tv_sec - t0.tv_sec < 5);
	map_free(&m);
}

/* ---- reload ------------------------------------------------------------------------- */

static void test_reload(void **state)
{
	(void)state;
	write_map("live", "a OK\n");
	struct map *m = open_map("file:live", NULL);
	assert_value(m, "a", "OK");
	assert_false(map_refresh_now(m)); /* unchanged */

	write_map("live", "a REJECT now\nb OK\n");
	assert_true(map_refresh_now(m));
	assert_value(m, "a", "REJECT now");
	assert_int_equal(map_size(m), 2);

	/* A version with a problem is refused: the loaded one stays, and it
	 * is not read again until it changes. */
	write_map("live", "a DUNNO\nb BROKEN\n");
	assert_false(map_refresh_now(m));
	assert_value(m, "a", "REJECT now");
	assert_false(map_refresh_now(m));

	/* Changed within the last second: maybe still being written, so it
	 * waits for a later look. */
	write_aged("live", "a DEFER\n", 0);
	assert_false(map_refresh_now(m));
	assert_value(m, "a", "REJECT now");
	write_map("live", "a DEFER\n");
	assert_true(map_refresh_now(m));
	assert_value(m, "a", "DEFER");

	/* The file goes away: the loaded version serves on. */
	char path[256];
	snprintf(path, sizeof(path), "%s/live", dir);
	assert_int_equal(unlink(path), 0);
	assert_false(map_refresh_now(m));
	assert_value(m, "a", "DEFER");
	write_map("live", "a OK\n");
	assert_true(map_refresh_now(m));
	assert_value(m, "a", "OK");
	map_free(&m);

	/* A lookup looks at the file by itself, at most once a second. */
	write_map("autore", "/k/ OK\n");
	m = open_map("regexp:autore", NULL);
	write_map("autore", "/k/ REJECT changed\n");
	assert_value(m, "k", "OK");
	sleep(1);
	usleep(100000);
	assert_value(m, "k", "REJECT changed");
	map_free(&m);
}

/* ---- access values ------------------------------------------------------------------ */

static void assert_result(const char *value, enum access_action action, int code,
			  const char *status, const char *text)
{
	struct access_result r;
	const char *why = access_parse(value, &r);
	if (why != NULL)
		fail_msg("\"%s\": %s", value, why);
	assert_int_equal(r.action, action);
	assert_int_equal(r.code, code);
	if (status != NULL)
		assert_string_equal(r.status, status);
	assert_string_equal(r.text, text);
}

static void assert_bad_result(const char *value, const char *want)
{
	struct access_result r;
	const char *why = access_parse(value, &r);
	if (why == NULL || strstr(why, want) == NULL)
		fail_msg("\"%s\": expected \"%s\", got %s", value, want, why ? why : "no problem");
}

static void test_access_values(void **state)
{
	(void)state;
	assert_result("OK", ACCESS_OK, 0, NULL, "");
	assert_result("ok", ACCESS_OK, 0, NULL, "");
	assert_result("1234", ACCESS_OK, 0, NULL, ""); /* all-numerical: OK, as Postfix */
	assert_result("DUNNO", ACCESS_DUNNO, 0, NULL, "");
	assert_result("REJECT", ACCESS_REFUSE, 554, "5.7.1", "");
	assert_result("Reject go away", ACCESS_REFUSE, 554, "5.7.1", "go away");
	assert_result("DEFER", ACCESS_REFUSE, 450, "4.7.1", "");
	assert_result("DEFER busy now", ACCESS_REFUSE, 450, "4.7.1", "busy now");
	assert_result("550 5.7.0 no", ACCESS_REFUSE, 550, "5.7.0", "no");
	assert_result("550 no", ACCESS_REFUSE, 550, "5.7.1", "no");
	assert_result("451 4.3.2 later", ACCESS_REFUSE, 451, "4.3.2", "later");
	assert_result("553 5.1.234 x", ACCESS_REFUSE, 553, "5.1.234", "x");
	assert_result("DISCARD", ACCESS_DISCARD, 0, NULL, "");
	assert_result("HOLD look at it", ACCESS_HOLD, 0, NULL, "look at it");
	assert_result("WARN odd one", ACCESS_WARN, 0, NULL, "odd one");
	assert_bad_result("OK then", "OK takes no text");
	assert_bad_result("DUNNO x", "DUNNO takes no text");
	assert_bad_result("421 4.7.0 bye", "421 closes the connection");
	assert_bad_result("550 4.7.1 x", "class");
	assert_bad_result("5x0 x", "reply code");
	assert_bad_result("PERMIT", "unknown action");
	assert_bad_result("", "empty value");
	char big[600];
	memset(big, 'x', sizeof(big));
	memcpy(big, "REJECT ", 7);
	big[sizeof(big) - 1] = '\0';
	const char *why = access_check_value(big);
	assert_non_null(why);
	assert_non_null(strstr(why, "longer than 400"));
	assert_null(access_check_value("REJECT short"));
}

/* ---- lookup order --------------------------------------------------------------------- */

static struct mail_address parse_address(const char *path)
{
	struct mail_address a;
	const char *why;
	if (address_parse_path(path, strlen(path), ADDR_ALLOW_NULL | ADDR_ALLOW_BARE_POSTMASTER,
			       &a, &why) < 0)
		fail_msg("%s: %s", path, why);
	return a;
}

static void assert_found(const char *got, const buf_t *key, const char *want_value,
			 const char *want_key)
{
	if (want_value == NULL) {
		if (got != NULL)
			fail_msg("expected nothing, found \"%s\" by \"%s\"", got, buf_cstr(key));
		return;
	}
	if (got == NULL)
		fail_msg("expected \"%s\" by key \"%s\", found nothing", want_value, want_key);
	assert_string_equal(got, want_value);
	assert_string_equal(buf_cstr(key), want_key);
}

static void test_lookup_order(void **state)
{
	(void)state;
	write_map("order", "joe@sub.example.com   REJECT full\n"
		  "sub.example.com       REJECT domain\n"
		  "example.com           REJECT parent\n"
		  ".example.net          REJECT dot-parent\n"
		  "ann@                  REJECT user\n"
		  "<>                    REJECT null\n"
		  "postmaster            OK\n"
		  "mx.example.org        OK\n"
		  "192.0.2               REJECT net24\n"
		  "198.51                REJECT net16\n"
		  "2001:db8:             REJECT v6net\n"
		  "[192.0.2.9]           REJECT literal\n");
	struct map *m = open_map("file:order", NULL);
	buf_t key = BUF_INIT;
	struct mail_address a;

	a = parse_address("<joe@sub.example.com>");
	assert_found(access_lookup_address(m, &a, &key), &key, "REJECT full", "joe@sub.example.com");
	a = parse_address("<Bob@SUB.example.com>");
	assert_found(access_lookup_address(m, &a, &key), &key, "REJECT domain", "sub.example.com");
	a = parse_address("<bob@deep.down.example.com>");
	assert_found(access_lookup_address(m, &a, &key), &key, "REJECT parent", "example.com");
	a = parse_address("<bob@example.net>"); /* .example.net: subdomains only */
	assert_found(access_lookup_address(m, &a, &key), &key, NULL, NULL);
	a = parse_address("<bob@a.example.net>");
	assert_found(access_lookup_address(m, &a, &key), &key, "REJECT dot-parent", ".example.net");
	a = parse_address("<ann@elsewhere.test>");
	assert_found(access_lookup_address(m, &a, &key), &key, "REJECT user", "ann@");
	a = parse_address("<\"ann\"@elsewhere.test>"); /* quoting that unquotes plainly */
	assert_found(access_lookup_address(m, &a, &key), &key, "REJECT user", "ann@");
	a = parse_address("<>");
	assert_found(access_lookup_address(m, &a, &key), &key, "REJECT null", "<>");
	a = parse_address("<Postmaster>");
	assert_found(access_lookup_address(m, &a, &key), &key, "OK", "Postmaster");
	a = parse_address("<x@[192.0.2.9]>");
	assert_found(access_lookup_address(m, &a, &key), &key, "REJECT literal", "[192.0.2.9]");

	assert_found(access_lookup_name(m, "MX.example.org", &key), &key, "OK", "mx.example.org");
	assert_found(access_lookup_name(m, "mx.example.org.", &key), &key, "OK", "mx.example.org");
	assert_found(access_lookup_name(m, "a.b.example.com", &key), &key, "REJECT parent",
		     "example.com");
	assert_found(access_lookup_name(m, "[192.0.2.9]", &key), &key, "REJECT literal",
		     "[192.0.2.9]");
	assert_found(access_lookup_name(m, "[192.0.2.8]", &key), &key, NULL, NULL);

	assert_found(access_lookup_client(m, "192.0.2.44", NULL, &key), &key, "REJECT net24",
		     "192.0.2");
	assert_found(access_lookup_client(m, "198.51.100.1", NULL, &key), &key, "REJECT net16",
		     "198.51");
	assert_found(access_lookup_client(m, "2001:db8::1", NULL, &key), &key, "REJECT v6net",
		     "2001:db8:");
	assert_found(access_lookup_client(m, "203.0.113.1", NULL, &key), &key, NULL, NULL);
	/* The host name comes first. */
	assert_found(access_lookup_client(m, "192.0.2.44", "mx.example.org", &key), &key, "OK",
		     "mx.example.org");
	map_free(&m);

	/* cidr: and regexp: maps are asked with whole keys. */
	write_map("order.cidr", "192.0.2.0/24 REJECT net\n");
	m = open_map("cidr:order.cidr", NULL);
	assert_found(access_lookup_client(m, "192.0.2.5", NULL, &key), &key, "REJECT net",
		     "192.0.2.5");
	assert_found(access_lookup_name(m, "[192.0.2.5]", &key), &key, "REJECT net", "192.0.2.5");
	a = parse_address("<x@192.0.2.5.example>");
	assert_found(access_lookup_address(m, &a, &key), &key, NULL, NULL);
	map_free(&m);
	write_map("order.re", "/^example\\.com$/ REJECT whole\n/^joe@/ REJECT joe\n");
	m = open_map("regexp:order.re", NULL);
	a = parse_address("<bob@example.com>"); /* no domain-only lookup */
	assert_found(access_lookup_address(m, &a, &key), &key, NULL, NULL);
	a = parse_address("<joe@x.test>");
	assert_found(access_lookup_address(m, &a, &key), &key, "REJECT joe", "joe@x.test");
	assert_found(access_lookup_name(m, "example.com", &key), &key, "REJECT whole",
		     "example.com");
	assert_found(access_lookup_name(m, "sub.example.com", &key), &key, NULL, NULL);
	map_free(&m);
	buf_free(&key);
}

static void test_canonical_name(void **state)
{
	(void)state;
	char *n = map_canonical_name("file:a/../b//c", "/etc/postern");
	assert_string_equal(n, "file:/etc/postern/b/c");
	free(n);
	n = map_canonical_name("pcre:/x/y", "/etc");
	assert_string_equal(n, "regexp:/x/y");
	free(n);
	assert_null(map_canonical_name("btree:/x", "/"));
	assert_null(map_canonical_name("cidr:", "/"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_file_map),
		cmocka_unit_test(test_file_map_problems),
		cmocka_unit_test(test_cidr_map),
		cmocka_unit_test(test_regexp_map),
		cmocka_unit_test(test_regexp_map_problems),
		cmocka_unit_test(test_regexp_match_limit),
		cmocka_unit_test(test_reload),
		cmocka_unit_test(test_access_values),
		cmocka_unit_test(test_lookup_order),
		cmocka_unit_test(test_canonical_name),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}

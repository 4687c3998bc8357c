/*
 * test_milter_spool.c - the milter server's spool and its milter_listen
 * setting: header fields and body chunks from the MTA become the content
 * postern's queue stores (LF line ends, a CR LF cut between two chunks is
 * still one line end), the bounds refuse what is too big, the names are
 * counted for the removals a verdict asks for; milter_listen takes
 * unix:/PATH and inet:HOST:PORT and says what is wrong with anything else.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <unistd.h>

#include "milter/milter_server.h"
#include "milter/milter_spool.h"
#include "testutil.h"

TESTUTIL_PRIVATE_DIR("milter-spool")

static const struct milter_spool_limits roomy = { 1 << 20, 1 << 16, 100 };

/* The file's bytes. */
static char *content(const struct milter_spool *s)
{
	char *out = calloc(1, s->size + 1);
	assert_int_equal(pread(s->ro_fd, out, s->size + 1, 0), (ssize_t)s->size);
	return out;
}

static void test_fields_and_body_with_lf(void **state)
{
	(void)state;
	struct milter_spool s;
	assert_int_equal(milter_spool_open(&s, &roomy, dir), 0);
	assert_int_equal(strlen(s.id), 19);
	assert_int_equal(milter_spool_header(&s, "Received", "from a\r\n\tby b"), MILTER_SPOOL_OK);
	assert_int_equal(milter_spool_header(&s, "Subject", " spaced"), MILTER_SPOOL_OK);
	assert_int_equal(milter_spool_header(&s, "X-Spam-Flag", "YES"), MILTER_SPOOL_OK);
	assert_int_equal(milter_spool_header(&s, "x-spam-flag", "no"), MILTER_SPOOL_OK);
	assert_int_equal(milter_spool_end_of_header(&s), MILTER_SPOOL_OK);
	/* a CR LF cut between chunks, a lone CR kept, a CR at the very end kept */
	const char *chunks[] = { "line one\r", "\nline two\rstill\r\n", "\r", "\nend\r" };
	for (size_t i = 0; i < 4; i++)
		assert_int_equal(milter_spool_body(&s, (const unsigned char *)chunks[i],
						   strlen(chunks[i])), MILTER_SPOOL_OK);
	assert_int_equal(milter_spool_flush(&s), 0);
	char *got = content(&s);
	assert_string_equal(got, "Received: from a\n\tby b\nSubject: spaced\nX-Spam-Flag: YES\n"
				 "x-spam-flag: no\n\nline one\nline two\rstill\n\nend\r");
	free(got);
	assert_int_equal(milter_spool_count(&s, "X-SPAM-FLAG"), 2);
	assert_int_equal(milter_spool_count(&s, "Subject"), 1);
	assert_int_equal(milter_spool_count(&s, "To"), 0);
	milter_spool_close(&s);
	assert_int_equal(s.fd, -1);
}

static void test_body_without_end_of_header(void **state)
{
	(void)state;
	struct milter_spool s;
	assert_int_equal(milter_spool_open(&s, &roomy, dir), 0);
	milter_spool_header(&s, "A", "1");
	milter_spool_body(&s, (const unsigned char *)"x\r\n", 3);
	assert_int_equal(milter_spool_header(&s, "Late", "field"), MILTER_SPOOL_OK);
	assert_int_equal(milter_spool_flush(&s), 0);
	char *got = content(&s);
	assert_string_equal(got, "A: 1\n\nx\n");
	free(got);
	milter_spool_close(&s);
}

static void test_message_size_limit(void **state)
{
	(void)state;
	struct milter_spool_limits small = { 40, 1 << 16, 100 };
	struct milter_spool s;
	assert_int_equal(milter_spool_open(&s, &small, dir), 0);
	assert_int_equal(milter_spool_header(&s, "Subject", "hi"), MILTER_SPOOL_OK);
	assert_int_equal(milter_spool_body(&s, (const unsigned char *)"0123456789012345678\r\n",
					   21), MILTER_SPOOL_OK);
	/* 12 + 1 + 20 bytes so far, 10 more are past 40 */
	assert_int_equal(milter_spool_body(&s, (const unsigned char *)"more text\r\n", 11),
			 MILTER_SPOOL_TOO_BIG);
	/* sticky */
	assert_int_equal(milter_spool_body(&s, (const unsigned char *)"x", 1), MILTER_SPOOL_TOO_BIG);
	assert_true(s.size <= 40);
	milter_spool_close(&s);
}

static void test_trace_field_is_not_the_messages(void **state)
{
	(void)state;
	struct milter_spool_limits small = { 30, 1 << 16, 1 };
	struct milter_spool s;
	assert_int_equal(milter_spool_open(&s, &small, dir), 0);
	const char *trace = "Received: from helo ([192.0.2.1])\n\tby mta with ESMTP id Q1; date\n";
	milter_spool_trace(&s, trace);
	milter_spool_trace(&s, "Received: twice\n"); /* only the first one */
	/* one field allowed, 30 bytes of message: the trace counts for neither */
	assert_int_equal(milter_spool_header(&s, "Subject", "hello"), MILTER_SPOOL_OK);
	assert_int_equal(milter_spool_body(&s, (const unsigned char *)"twelve bytes", 12),
			 MILTER_SPOOL_OK);
	assert_int_equal(milter_spool_flush(&s), 0);
	assert_int_equal(s.names.count, 1);
	assert_int_equal(milter_spool_count(&s, "Received"), 0);
	assert_int_equal(s.size - s.trace_size, 28);
	char *got = content(&s);
	assert_int_equal(strncmp(got, trace, strlen(trace)), 0);
	assert_string_equal(got + strlen(trace), "Subject: hello\n\ntwelve bytes");
	free(got);
	assert_int_equal(milter_spool_body(&s, (const unsigned char *)"four", 4),
			 MILTER_SPOOL_TOO_BIG);
	milter_spool_close(&s);
}

static void test_header_bounds(void **state)
{
	(void)state;
	struct milter_spool_limits l = { 1 << 20, 64, 3 };
	struct milter_spool s;
	milter_spool_init(&s, &l);
	assert_int_equal(milter_spool_header(&s, "A", "1"), MILTER_SPOOL_OK);
	assert_int_equal(milter_spool_header(&s, "B", "2"), MILTER_SPOOL_OK);
	assert_int_equal(milter_spool_header(&s, "C", "3"), MILTER_SPOOL_OK);
	assert_int_equal(milter_spool_header(&s, "D", "4"), MILTER_SPOOL_HEADER_TOO_BIG);
	milter_spool_close(&s);
	milter_spool_init(&s, &l);
	char big[80];
	memset(big, 'v', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	assert_int_equal(milter_spool_header(&s, "Big", big), MILTER_SPOOL_HEADER_TOO_BIG);
	milter_spool_close(&s);
}

static void test_listen_forms(void **state)
{
	(void)state;
	struct milter_listen l;
	char err[160];
	assert_int_equal(milter_listen_parse("unix:/run/postern/milter.sock", &l, err,
					     sizeof(err)), 0);
	assert_true(l.is_unix);
	assert_string_equal(l.path, "/run/postern/milter.sock");
	assert_int_equal(milter_listen_parse("inet:127.0.0.1:8891", &l, err, sizeof(err)), 0);
	assert_false(l.is_unix);
	assert_string_equal(l.conn, "inet:8891@127.0.0.1");
	assert_string_equal(l.host, "127.0.0.1");
	assert_string_equal(l.port, "8891");
	assert_int_equal(milter_listen_parse("inet:[::1]:8891", &l, err, sizeof(err)), 0);
	assert_string_equal(l.conn, "inet6:8891@::1");
	assert_true(l.v6);
	assert_int_equal(milter_listen_parse("inet:localhost:10025", &l, err, sizeof(err)), 0);
	assert_string_equal(l.conn, "inet:10025@localhost");
}

/* The milter process binds as user: a port it may not bind is refused
 * (with the kernel's usual net.ipv4.ip_unprivileged_port_start). */
static void test_listen_privileged_port(void **state)
{
	(void)state;
	struct milter_listen l;
	char err[160];
	long start = -1;
	FILE *f = fopen("/proc/sys/net/ipv4/ip_unprivileged_port_start", "r");
	if (f != NULL) {
		if (fscanf(f, "%ld", &start) != 1)
			start = -1;
		fclose(f);
	}
	if (start != 1024)
		skip(); /* a container that lets every account bind any port */
	assert_int_equal(milter_listen_parse("inet:127.0.0.1:25", &l, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "port 25 is below 1024"));
	assert_int_equal(milter_listen_parse("inet:[::1]:1023", &l, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "port 1023 is below 1024"));
	assert_int_equal(milter_listen_parse("inet:127.0.0.1:1024", &l, err, sizeof(err)), 0);
}

static void test_listen_mistakes(void **state)
{
	(void)state;
	struct milter_listen l;
	char err[160];
	static const struct {
		const char *spec, *says;
	} bad[] = {
		{ "unix:relative.sock", "absolute" },
		{ "/run/milter.sock", "expected unix:/PATH or inet:HOST:PORT" },
		{ "inet:127.0.0.1", "expected inet:HOST:PORT" },
		{ "inet:127.0.0.1:x25", "must be a number" },
		{ "inet:8891", "expected inet:HOST:PORT" },
		{ "inet:127.0.0.1:0", "from 1 to 65535" },
		{ "inet:127.0.0.1:70000", "from 1 to 65535" },
		{ "inet:::1:25", "brackets" },
		{ "inet:[::1:25", "brackets" },
		{ "inet:bad host:25", "bad host" },
		{ "local:/x", "expected unix:/PATH" },
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		err[0] = '\0';
		assert_int_equal(milter_listen_parse(bad[i].spec, &l, err, sizeof(err)), -1);
		if (strstr(err, bad[i].says) == NULL)
			fail_msg("%s: \"%s\" does not say \"%s\"", bad[i].spec, err, bad[i].says);
	}
	char longpath[200] = "unix:/";
	memset(longpath + 6, 'p', 150);
	longpath[156] = '\0';
	assert_int_equal(milter_listen_parse(longpath, &l, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "too long"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_fields_and_body_with_lf),
		cmocka_unit_test(test_body_without_end_of_header),
		cmocka_unit_test(test_message_size_limit),
		cmocka_unit_test(test_trace_field_is_not_the_messages),
		cmocka_unit_test(test_header_bounds),
		cmocka_unit_test(test_listen_forms),
		cmocka_unit_test(test_listen_mistakes),
		cmocka_unit_test(test_listen_privileged_port),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}

/*
 * test_bounce.c - the RFC 3464 report: its MIME structure, the
 * delivery-status fields, the quoted headers, the boundary choice, and the
 * bounce queued as a new message from <>.
 */
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "testutil.h"

#include "lib/buf.h"
#include "lib/safeio.h"
#include "lib/xalloc.h"
#include "queue/bounce.h"
#include "queue/queue.h"
#include "queue/queue_file.h"

struct fixture {
	char *spool;
	int fd;
	struct qf_msg msg;
};

static const char original[] =
	"Received: from c.example ([192.0.2.9]) by mx.example.test\n"
	"From: Sender <sender@remote.test>\n"
	"Subject: tricky --=_0123456789ABCDEF012/mx.example.test\n"
	"\n"
	"SECRET BODY TEXT\n";

static int setup_full(void **state, const char *sender, bool dsn, const char *content,
		      size_t content_len);

static int setup_with_sender(void **state, const char *sender)
{
	return setup_full(state, sender, false, original, sizeof(original) - 1);
}

static int setup_full(void **state, const char *sender, bool dsn, const char *content,
		      size_t content_len)
{
	struct fixture *f = xcalloc(1, sizeof(*f));
	char tmpl[] = "/tmp/postern-test-bounce-XXXXXX";
	char id[QUEUE_ID_LEN + 1], *err = NULL;
	strlist_t rcpts = { NULL, 0 };

	assert_non_null(mkdtemp(tmpl));
	f->spool = xstrdup(tmpl);
	assert_int_equal(queue_dirs_create(f->spool, &err), 0);
	strlist_add(&rcpts, "nobody@example.test");
	strlist_add(&rcpts, "list@example.test");
	struct queue_envelope env = {
		.arrival_us = 1700000000000000ull, .client_addr = "192.0.2.9",
		.client_helo = "c.example", .protocol = "ESMTP", .sender = sender,
		.recipients = &rcpts,
	};
	static const struct queue_rcpt_dsn rcpt_dsn[2] = {
		{ DSN_NOTIFY_FAILURE, "rfc822;Nobody@Example.Test" }, { 0, NULL },
	};
	if (dsn) {
		env.dsn_ret = DSN_RET_FULL;
		env.dsn_envid = "ENV-42";
		env.rcpt_dsn = rcpt_dsn;
	}
	queue_id_new(id);
	struct queue_writer *w = queue_writer_open(f->spool, id, &env, &err);
	assert_non_null(w);
	assert_int_equal(queue_writer_write(w, content, content_len, &err), 0);
	assert_int_equal(queue_writer_commit(&w, &err), 0);
	strlist_free(&rcpts);
	buf_t path = BUF_INIT;
	buf_printf(&path, "%s/queue/%s", f->spool, id);
	f->fd = open(path.data, O_RDONLY);
	buf_free(&path);
	assert_true(f->fd >= 0);
	assert_int_equal(qf_read(f->fd, &f->msg, &err), 0);
	*state = f;
	return 0;
}

static int setup(void **state)
{
	return setup_with_sender(state, "sender@remote.test");
}

static int setup_null_sender(void **state)
{
	return setup_with_sender(state, "");
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	close(f->fd);
	qf_msg_free(&f->msg);
	testutil_rmtree(f->spool);
	free(f->spool);
	free(f);
	return 0;
}

static const struct bounce_item items[] = {
	{ "nobody@example.test", NULL, NULL, "5.1.1 unknown user", NULL },
	{ "gone@example.test", "list@example.test", NULL,
	  "4.4.7 delivery time expired, last error: 4.2.2 mailbox full", NULL },
};

static struct bounce_request make_request(struct fixture *f)
{
	struct bounce_request req = {
		.spool_dir = f->spool, .hostname = "mx.example.test",
		.msg = &f->msg, .queue_fd = f->fd, .items = items, .count = 2,
		.now_us = 1700000100000000ull,
	};
	return req;
}

static size_t count_of(const char *hay, const char *needle)
{
	size_t n = 0, len = strlen(needle);

	for (const char *p = strstr(hay, needle); p != NULL; p = strstr(p + len, needle))
		n++;
	return n;
}

static void assert_contains(const char *hay, const char *needle)
{
	if (strstr(hay, needle) == NULL)
		fail_msg("missing \"%s\" in:\n%s", needle, hay);
}

static void test_status_and_date(void **state)
{
	char code[16];
	buf_t b = BUF_INIT;

	(void)state;
	bounce_status_code("5.1.1 unknown user", "5.0.0", code, sizeof(code));
	assert_string_equal(code, "5.1.1");
	bounce_status_code("4.4.7", "5.0.0", code, sizeof(code));
	assert_string_equal(code, "4.4.7");
	bounce_status_code("5.123.456 x", "5.0.0", code, sizeof(code));
	assert_string_equal(code, "5.123.456");
	bounce_status_code("5.1234.1 x", "5.0.0", code, sizeof(code));
	assert_string_equal(code, "5.0.0");
	bounce_status_code("3.1.1 x", "5.0.0", code, sizeof(code));
	assert_string_equal(code, "5.0.0");
	bounce_status_code("unknown user", "5.0.0", code, sizeof(code));
	assert_string_equal(code, "5.0.0");
	bounce_status_code("5.1.1x", "5.0.0", code, sizeof(code));
	assert_string_equal(code, "5.0.0");

	bounce_format_date(&b, 0);
	assert_string_equal(buf_cstr(&b), "Thu, 01 Jan 1970 00:00:00 +0000");
	buf_reset(&b);
	bounce_format_date(&b, 1700000000123456ull);
	assert_string_equal(buf_cstr(&b), "Tue, 14 Nov 2023 22:13:20 +0000");
	buf_free(&b);
}

static void test_report_structure(void **state)
{
	struct fixture *f = *state;
	struct bounce_request req = make_request(f);
	buf_t out = BUF_INIT;
	char *err = NULL;
	const char *bid = "0123456789ABCDEF012";

	assert_int_equal(bounce_build(&out, &req, bid, &err), 0);
	const char *t = buf_cstr(&out);
	assert_null(strchr(t, '\r')); /* LF only inside the queue */
	assert_int_equal(strncmp(t, "Received: by mx.example.test (postern) id "
				    "0123456789ABCDEF012;\n\t", 63), 0);
	assert_contains(t, "\nFrom: Mail Delivery System <MAILER-DAEMON@mx.example.test>\n");
	assert_contains(t, "\nTo: <sender@remote.test>\n");
	assert_contains(t, "\nAuto-Submitted: auto-replied\n");
	assert_contains(t, "\nMIME-Version: 1.0\n");
	assert_contains(t, "\nContent-Type: multipart/report; report-type=delivery-status;\n"
			   "\tboundary=\"");

	/* The boundary must not occur in the quoted headers: the original
	 * Subject holds the first candidate, so it was lengthened. */
	const char *bstart = strstr(t, "boundary=\"") + 10;
	const char *bend = strchr(bstart, '"');
	char *boundary = xstrndup(bstart, (size_t)(bend - bstart));
	assert_string_equal(boundary, "=_0123456789ABCDEF012/mx.example.test/1");
	buf_t delim = BUF_INIT, close_delim = BUF_INIT;
	buf_printf(&delim, "\n--%s\n", boundary);
	buf_printf(&close_delim, "\n--%s--\n", boundary);
	assert_int_equal(count_of(t, delim.data), 3);
	assert_int_equal(count_of(t, close_delim.data), 1);
	size_t tail = strlen(close_delim.data);
	assert_string_equal(t + out.len - tail, close_delim.data);

	/* The three parts in order. */
	const char *human = strstr(t, "Content-Type: text/plain; charset=us-ascii\n");
	const char *dsn = strstr(t, "Content-Type: message/delivery-status\n\n");
	const char *hdrs = strstr(t, "Content-Type: text/rfc822-headers\n\n");
	assert_non_null(human);
	assert_non_null(dsn);
	assert_non_null(hdrs);
	assert_true(human < dsn && dsn < hdrs);
	assert_contains(human, "<nobody@example.test>:\n    5.1.1 unknown user\n");
	assert_contains(human, "<gone@example.test> (sent to <list@example.test>):\n");

	/* message/delivery-status: per-message fields, then per recipient. */
	assert_contains(dsn, "\n\nReporting-MTA: dns; mx.example.test\n");
	assert_contains(dsn, "\nArrival-Date: Tue, 14 Nov 2023 22:13:20 +0000\n");
	assert_contains(dsn, "\n\nFinal-Recipient: rfc822; nobody@example.test\n"
			     "Action: failed\nStatus: 5.1.1\n"
			     "Diagnostic-Code: smtp; 550 5.1.1 unknown user\n");
	assert_contains(dsn, "\n\nOriginal-Recipient: rfc822; list@example.test\n"
			     "Final-Recipient: rfc822; gone@example.test\n"
			     "Action: failed\nStatus: 4.4.7\n");
	assert_null(strstr(dsn, "Original-Envelope-Id:")); /* no ENVID given */
	assert_int_equal(count_of(dsn, "Original-Recipient:"), 1);

	/* The original header section, not its body. */
	assert_contains(hdrs, "\n\nReceived: from c.example ([192.0.2.9]) by mx.example.test\n"
			      "From: Sender <sender@remote.test>\n");
	assert_null(strstr(t, "SECRET BODY TEXT"));

	buf_free(&delim);
	buf_free(&close_delim);
	free(boundary);
	buf_free(&out);
}

static void test_bounce_queued_from_null_sender(void **state)
{
	struct fixture *f = *state;
	struct bounce_request req = make_request(f);
	char bid[QUEUE_ID_LEN + 1], *err = NULL;
	struct qf_msg m;

	if (bounce_send(&req, bid, &err) != 0)
		fail_msg("bounce_send: %s", err);
	assert_true(queue_id_valid(bid));
	buf_t path = BUF_INIT;
	buf_printf(&path, "%s/queue/%s", f->spool, bid);
	int fd = open(path.data, O_RDONLY);
	assert_true(fd >= 0);
	assert_int_equal(qf_read(fd, &m, &err), 0);
	assert_string_equal(m.sender, "");
	assert_int_equal(m.rcpt_count, 1);
	assert_string_equal(m.rcpts[0].addr, "sender@remote.test");
	assert_int_equal(m.rcpts[0].status, QF_RCPT_PENDING);
	buf_t headers = BUF_INIT;
	assert_int_equal(qf_read_headers(fd, &m, 65536, &headers, &err), 0);
	assert_contains(buf_cstr(&headers), "\nSubject: Undelivered Mail Returned to Sender\n");
	buf_free(&headers);
	qf_msg_free(&m);
	close(fd);
	buf_free(&path);
}

static void test_never_bounce_to_null(void **state)
{
	struct fixture *f = *state;
	struct bounce_request req = make_request(f);
	char bid[QUEUE_ID_LEN + 1], *err = NULL;

	assert_int_equal(bounce_send(&req, bid, &err), -1);
	assert_non_null(err);
	free(err);
}

static int setup_dsn(void **state)
{
	return setup_full(state, "sender@remote.test", true, original, sizeof(original) - 1);
}

/* A message larger than BOUNCE_FULL_MAX with RET=FULL. */
static int setup_dsn_huge(void **state)
{
	size_t len = BOUNCE_FULL_MAX + 100;
	char *big = xmalloc(len);
	memset(big, 'x', len);
	memcpy(big, "Subject: huge\n\n", 16);
	for (size_t i = 100; i < len; i += 100)
		big[i] = '\n';
	int rc = setup_full(state, "sender@remote.test", true, big, len);
	free(big);
	return rc;
}

/* RET=FULL returns the whole message as message/rfc822; ENVID and ORCPT
 * are echoed; RET=HDRS (or none) returns the header section only. */
static void test_ret_full_envid_orcpt(void **state)
{
	struct fixture *f = *state;
	struct bounce_item it[] = { { "nobody@example.test", NULL, f->msg.rcpts[0].dsn_orcpt,
				      "5.1.1 unknown user", NULL } };
	struct bounce_request req = make_request(f);
	buf_t out = BUF_INIT;
	char *err = NULL;

	req.items = it;
	req.count = 1;
	assert_int_equal(bounce_build(&out, &req, "0123456789ABCDEF012", &err), 0);
	const char *t = buf_cstr(&out);
	assert_contains(t, "\nOriginal-Envelope-Id: ENV-42\n");
	assert_contains(t, "\n\nOriginal-Recipient: rfc822; Nobody@Example.Test\n"
			   "Final-Recipient: rfc822; nobody@example.test\nAction: failed\n");
	assert_contains(t, "Content-Type: message/rfc822\n\nReceived: from c.example");
	assert_contains(t, "\nSECRET BODY TEXT\n");
	assert_contains(t, "Your message is attached.");
	buf_free(&out);

	/* the same message with RET=HDRS */
	f->msg.dsn_ret = DSN_RET_HDRS;
	assert_int_equal(bounce_build(&out, &req, "0123456789ABCDEF012", &err), 0);
	t = buf_cstr(&out);
	assert_contains(t, "Content-Type: text/rfc822-headers\n");
	assert_null(strstr(t, "SECRET BODY TEXT"));
	buf_free(&out);

	/* a delay warning or a success report carries the headers only,
	 * whatever RET says; Action and Status follow the kind */
	f->msg.dsn_ret = DSN_RET_FULL;
	req.kind = BOUNCE_DELAYED;
	req.retry_until = 1700432000;
	it[0].reason = "4.2.2 mailbox full";
	assert_int_equal(bounce_build(&out, &req, "0123456789ABCDEF012", &err), 0);
	t = buf_cstr(&out);
	assert_contains(t, "\nSubject: Delayed Mail (still being retried)\n");
	assert_contains(t, "\nAction: delayed\nStatus: 4.2.2\n");
	assert_contains(t, "\nWill-Retry-Until: ");
	assert_null(strstr(t, "SECRET BODY TEXT"));
	buf_free(&out);
	req.kind = BOUNCE_DELIVERED;
	it[0].reason = "delivered to maildir";
	assert_int_equal(bounce_build(&out, &req, "0123456789ABCDEF012", &err), 0);
	t = buf_cstr(&out);
	assert_contains(t, "\nSubject: Successful Mail Delivery Report\n");
	assert_contains(t, "\nAction: delivered\nStatus: 2.0.0\n");
	assert_null(strstr(t, "Diagnostic-Code:"));
	/* delivered here, into a mailbox: no remote MTA took part (RFC 3464
	 * 2.3.5), so none is named (certainly not ourselves) */
	assert_null(strstr(t, "Remote-MTA:"));
	assert_null(strstr(t, "SECRET BODY TEXT"));
	buf_free(&out);
	/* passed to a peer without DSN: "relayed", naming that peer */
	req.kind = BOUNCE_RELAYED;
	it[0].reason = "250 2.0.0 Ok: queued as 4XyZ";
	it[0].remote_mta = "inner.example.test";
	assert_int_equal(bounce_build(&out, &req, "0123456789ABCDEF012", &err), 0);
	t = buf_cstr(&out);
	assert_contains(t, "\nSubject: Relayed Mail Report\n");
	assert_contains(t, "\nAction: relayed\nStatus: 2.0.0\nRemote-MTA: dns; inner.example.test\n");
	assert_null(strstr(t, "Diagnostic-Code:"));
	assert_null(strstr(t, "SECRET BODY TEXT"));
	buf_free(&out);
}

/* RET=FULL on a message above BOUNCE_FULL_MAX: its headers only, and
 * the report says why. */
static void test_ret_full_too_big(void **state)
{
	struct fixture *f = *state;
	struct bounce_request req = make_request(f);
	buf_t out = BUF_INIT;
	char *err = NULL;

	req.count = 1;
	assert_int_equal(bounce_build(&out, &req, "0123456789ABCDEF012", &err), 0);
	const char *t = buf_cstr(&out);
	assert_contains(t, "Content-Type: text/rfc822-headers\n");
	assert_contains(t, "only its headers\nare attached.");
	assert_true(out.len < 100000);
	buf_free(&out);
}

/* UTF-8 addresses: message/global-delivery-status with utf-8 address
 * types (RFC 6533); a double bounce goes to the postmaster. */
static void test_utf8_and_double_bounce(void **state)
{
	struct fixture *f = *state;
	struct bounce_item it[] = { { "j\xc3\xa9r\xc3\xb4me@example.test", NULL,
				      "utf-8;J\xc3\xa9r\xc3\xb4me@Example.Test", "5.1.1 unknown user",
				      NULL } };
	struct bounce_request req = make_request(f);
	buf_t out = BUF_INIT;
	char *err = NULL, bid[QUEUE_ID_LEN + 1];

	req.items = it;
	req.count = 1;
	assert_int_equal(bounce_build(&out, &req, "0123456789ABCDEF012", &err), 0);
	const char *t = buf_cstr(&out);
	assert_contains(t, "report-type=global-delivery-status;");
	assert_contains(t, "Content-Type: message/global-delivery-status\n");
	assert_contains(t, "\nOriginal-Recipient: utf-8; J\xc3\xa9r\xc3\xb4me@Example.Test\n"
			   "Final-Recipient: utf-8; j\xc3\xa9r\xc3\xb4me@example.test\n");
	buf_free(&out);

	/* a utf-8 ORCPT in an ASCII report: the non-QCHARs as \x{HEX} */
	struct bounce_item ascii[] = { { "x@example.test", NULL, "utf-8;a+b\\c@example.test",
					 "5.1.1 unknown user", NULL } };
	req.items = ascii;
	assert_int_equal(bounce_build(&out, &req, "0123456789ABCDEF012", &err), 0);
	assert_contains(buf_cstr(&out), "Content-Type: message/delivery-status\n");
	assert_contains(buf_cstr(&out), "\nOriginal-Recipient: utf-8; a\\x{2B}b\\x{5C}c@example.test\n");
	buf_free(&out);
	req.items = it;

	req.kind = BOUNCE_DOUBLE;
	req.recipient = "postmaster@example.test";
	assert_int_equal(bounce_send(&req, bid, &err), 0);
	buf_t path = BUF_INIT;
	buf_printf(&path, "%s/queue/%s", f->spool, bid);
	int fd = open(path.data, O_RDONLY);
	struct qf_msg m;
	assert_int_equal(qf_read(fd, &m, &err), 0);
	assert_string_equal(m.sender, "");
	assert_string_equal(m.rcpts[0].addr, "postmaster@example.test");
	assert_int_equal(m.origin, QUEUE_ORIGIN_DOUBLE_BOUNCE);
	qf_msg_free(&m);
	close(fd);
	buf_free(&path);
}

/* RFC 2046: a boundary has 1 to 70 characters. The host name is part of
 * ours, and a host name may have 253: the report must still be MIME. */
static void test_boundary_within_70_characters(void **state)
{
	struct fixture *f = *state;
	struct bounce_request req = make_request(f);
	buf_t out = BUF_INIT;
	char *err = NULL;
	const char *host = "a-rather-long-mail-exchanger-name.datacentre-7.eu-west.example.test";

	req.hostname = host;
	assert_int_equal(bounce_build(&out, &req, "0123456789ABCDEF012", &err), 0);
	const char *t = buf_cstr(&out);
	const char *b = strstr(t, "boundary=\"");
	assert_non_null(b);
	b += strlen("boundary=\"");
	const char *e = strchr(b, '"');
	assert_non_null(e);
	size_t blen = (size_t)(e - b);
	if (blen < 1 || blen > 70)
		fail_msg("boundary of %zu characters: %.*s", blen, (int)blen, b);
	char delim[80];
	snprintf(delim, sizeof(delim), "\n--%.*s\n", (int)blen, b);
	assert_int_equal(count_of(t, delim), 3); /* three parts */
	snprintf(delim, sizeof(delim), "\n--%.*s--\n", (int)blen, b);
	assert_int_equal(count_of(t, delim), 1);
	assert_contains(t, "From: Mail Delivery System <MAILER-DAEMON@a-rather-long-mail-exchanger");
	buf_free(&out);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_status_and_date),
		cmocka_unit_test_setup_teardown(test_report_structure, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bounce_queued_from_null_sender,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_never_bounce_to_null,
						setup_null_sender, teardown),
		cmocka_unit_test_setup_teardown(test_ret_full_envid_orcpt, setup_dsn, teardown),
		cmocka_unit_test_setup_teardown(test_boundary_within_70_characters, setup, teardown),
		cmocka_unit_test_setup_teardown(test_ret_full_too_big, setup_dsn_huge, teardown),
		cmocka_unit_test_setup_teardown(test_utf8_and_double_bounce, setup_null_sender,
						teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

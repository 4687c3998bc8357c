/*
 * test_report.c - postern report's line parser and counters: every kind
 * of log line it understands (as log.c and the roles write them), the
 * lines it must count as not understood, field values that try to look
 * like other fields, and the bounded top tables.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "report/report.h"
#include "report/report_top.h"

#define T "2026-11-30T21:56:47.293Z "
#define QID "661857C7BC0A5004CEE: "

static void feed(struct report *r, const char *line)
{
	report_feed_line(r, line, strlen(line), "test.log", r->lines.total + 1);
}

/* The count of key in table t (0 if absent). */
static uint64_t table_count(const struct report *r, enum report_table t, const char *key)
{
	const struct report_top *top = &r->tables[t];
	for (size_t i = 0; i < top->used; i++)
		if (strcmp(top->items[i].key, key) == 0)
			return top->items[i].count;
	return 0;
}

#define ASSERT_COUNT(r, t, key, want)                                                  \
	do {                                                                           \
		uint64_t got_ = table_count((r), (t), (key));                           \
		if (got_ != (uint64_t)(want))                                          \
			fail_msg("%s[%s] = %llu, expected %llu", report_table_names[t], \
				 (key), (unsigned long long)got_,                      \
				 (unsigned long long)(want));                          \
	} while (0)

static void test_header_forms(void **state)
{
	(void)state;
	struct report r;
	report_init(&r, 16);
	feed(&r, T "postern/smtp[1]: info: connect client=192.0.2.1 port=4000");
	/* syslog's prefix, with a host name and no level word */
	feed(&r, "Nov 30 07:12:01 mx1 postern/smtp[77]: connect client=192.0.2.2 port=1");
	feed(&r, T "postern/master[9]: info: postern starting: hostname=mx");
	feed(&r, "--- test harness: start 21:56:47 ---");
	feed(&r, T "postfix/smtpd[1]: connect from x[192.0.2.1]");
	feed(&r, "");
	feed(&r, T "postern/smtp[1]: info: 661857C7BC0A5004CEE: something new happened");
	assert_int_equal(r.c.connections, 2);
	assert_int_equal(r.hourly[21][RH_RECEIVED], 0);
	assert_int_equal(r.lines.total, 7);
	assert_int_equal(r.lines.events, 2);
	assert_int_equal(r.lines.daemon, 1);
	assert_int_equal(r.lines.not_understood, 4);
	assert_int_equal(r.sample_count, 4);
	assert_string_equal(r.samples[0].where, "test.log:4");
	assert_string_equal(r.samples[3].where, "test.log:7");
	ASSERT_COUNT(&r, RT_CLIENTS, "192.0.2.1", 1);
	ASSERT_COUNT(&r, RT_CLIENTS, "192.0.2.2", 1);
	assert_string_equal(r.first_time, "2026-11-30T21:56:47.293Z");
	report_free(&r);
}

static void test_received_and_dispositions(void **state)
{
	(void)state;
	struct report r;
	report_init(&r, 16);
	feed(&r, T "postern/smtp[1]: info: " QID "client=192.0.2.1 helo=a.test "
		   "from=<s@Remote.Test> status=accepted");
	feed(&r, T "postern/smtp[1]: info: " QID "to=<alice@example.test> status=accepted");
	feed(&r, T "postern/smtp[1]: info: " QID "accepted from=<s@Remote.Test> size=125 "
		   "nrcpt=1 protocol=ESMTP delay=0.007 flow=0.000 commit=0.003");
	feed(&r, T "postern/smtp[1]: info: " QID "accepted from=<> size=5000 nrcpt=1 "
		   "protocol=ESMTPS delay=0.003 flow=0.000 commit=0.002 disposition=quarantine "
		   "client=192.0.2.1");
	feed(&r, T "postern/smtp[1]: info: " QID "accepted from=<h@x.test> size=70000 nrcpt=2 "
		   "protocol=SMTP delay=0.003 flow=0.000 commit=0.002 disposition=hold "
		   "client=2001:db8::1");
	feed(&r, T "postern/smtp[1]: info: " QID "discarded from=<v@x.test> size=10 nrcpt=1 "
		   "reason=virus");
	assert_int_equal(r.c.transactions, 1);
	assert_int_equal(r.c.recipients_accepted, 1);
	assert_int_equal(r.c.received, 3);
	assert_int_equal(r.c.quarantined, 1);
	assert_int_equal(r.c.held, 1);
	assert_int_equal(r.c.discarded, 1);
	assert_int_equal(r.c.bytes_received, 125 + 5000 + 70000);
	assert_int_equal(r.size_hist[0], 1);  /* < 1K */
	assert_int_equal(r.size_hist[2], 1);  /* 4K - 16K */
	assert_int_equal(r.size_hist[4], 1);  /* 64K - 256K */
	assert_int_equal(r.hourly[21][RH_RECEIVED], 3);
	ASSERT_COUNT(&r, RT_MESSAGE_CLIENTS, "192.0.2.1", 1);
	ASSERT_COUNT(&r, RT_MESSAGE_CLIENTS, "2001:db8::1", 1);
	ASSERT_COUNT(&r, RT_SENDERS, "s@Remote.Test", 1);
	ASSERT_COUNT(&r, RT_SENDERS, "<>", 1);
	ASSERT_COUNT(&r, RT_SENDER_DOMAINS, "remote.test", 1);
	ASSERT_COUNT(&r, RT_SENDER_DOMAINS, "x.test", 1);
	assert_int_equal(r.lines.not_understood, 0);
	report_free(&r);
}

static void test_rejections_of_every_stage(void **state)
{
	(void)state;
	struct report r;
	report_init(&r, 16);
	feed(&r, T "postern/smtp[1]: info: " QID "reject: RCPT client=192.0.2.7 "
		   "from=<bad@spammer.test> to=<alice@example.test> code=554 5.7.1 "
		   "reason=check_sender_access restriction=check_sender_access "
		   "list=sender_restrictions map=file:/etc/senders key=bad@spammer.test");
	feed(&r, T "postern/smtp[1]: info: client=192.0.2.8 reject: MAIL from=<x@y> code=550 "
		   "5.7.1 reason=blocked_sender");
	feed(&r, T "postern/smtp[1]: info: client=192.0.2.8 reject: helo=bad code=504 5.5.2 "
		   "reason=non_fqdn_helo restriction=reject_non_fqdn_helo list=helo_restrictions");
	feed(&r, T "postern/smtp[1]: info: client=192.0.2.9 reject: connect code=554 5.5.1 "
		   "reason=early_talker");
	feed(&r, T "postern/smtp[1]: info: client=192.0.2.9 reject: unauthorised pipelining "
		   "code=503 5.5.0 reason=unauth_pipelining");
	feed(&r, T "postern/smtp[1]: info: " QID "reject: end-of-data client=192.0.2.7 "
		   "from=<s@x> size=193 code=550 5.7.0 reason=virus");
	feed(&r, T "postern/smtp[1]: info: " QID "reject: DATA client=192.0.2.7 from=<s@x> "
		   "code=451 4.7.1 reason=greylisted");
	feed(&r, T "postern/smtp[1]: info: " QID "reject: BDAT client=192.0.2.7 from=<s@x> "
		   "code=552 5.3.4 reason=too_big");
	assert_int_equal(r.c.rejected, 8);
	assert_int_equal(r.c.rejected_temporary, 1);
	assert_int_equal(r.hourly[21][RH_REJECTED], 8);
	ASSERT_COUNT(&r, RT_REJ_REASON, "check_sender_access", 1);
	ASSERT_COUNT(&r, RT_REJ_REASON, "unauth_pipelining", 1);
	ASSERT_COUNT(&r, RT_REJ_STAGE, "RCPT", 1);
	ASSERT_COUNT(&r, RT_REJ_STAGE, "MAIL", 1);
	ASSERT_COUNT(&r, RT_REJ_STAGE, "HELO", 1);
	ASSERT_COUNT(&r, RT_REJ_STAGE, "connect", 1);
	ASSERT_COUNT(&r, RT_REJ_STAGE, "pipelining", 1);
	ASSERT_COUNT(&r, RT_REJ_STAGE, "end-of-data", 1);
	ASSERT_COUNT(&r, RT_REJ_STAGE, "DATA", 1);
	ASSERT_COUNT(&r, RT_REJ_STAGE, "BDAT", 1);
	ASSERT_COUNT(&r, RT_REJ_RESTRICTION, "check_sender_access", 1);
	ASSERT_COUNT(&r, RT_REJ_RESTRICTION, "reject_non_fqdn_helo", 1);
	ASSERT_COUNT(&r, RT_REJECTED_CLIENTS, "192.0.2.7", 4);
	ASSERT_COUNT(&r, RT_REJECTED_CLIENTS, "192.0.2.8", 2);
	ASSERT_COUNT(&r, RT_REJECTED_CLIENTS, "192.0.2.9", 2);
	assert_int_equal(r.lines.events, 8);
	report_free(&r);
}

/* An address may hold spaces and text that looks like another field. */
static void test_fields_inside_addresses_are_not_fields(void **state)
{
	(void)state;
	struct report r;
	report_init(&r, 16);
	feed(&r, T "postern/smtp[1]: info: " QID "reject: RCPT client=192.0.2.7 "
		   "from=<\"x reason=forged restriction=forged\"@y.test> to=<a@b> code=550 5.1.1 "
		   "reason=unknown_user restriction=reject_unlisted_recipient");
	feed(&r, T "postern/smtp[1]: info: " QID "accepted from=<\"a size=1 b\"@c.test> "
		   "size=2048 nrcpt=1 protocol=ESMTP delay=0.1 flow=0 commit=0");
	ASSERT_COUNT(&r, RT_REJ_REASON, "unknown_user", 1);
	ASSERT_COUNT(&r, RT_REJ_REASON, "forged", 0);
	ASSERT_COUNT(&r, RT_REJ_RESTRICTION, "reject_unlisted_recipient", 1);
	assert_int_equal(r.c.bytes_received, 2048);
	ASSERT_COUNT(&r, RT_SENDERS, "\"a size=1 b\"@c.test", 1);
	ASSERT_COUNT(&r, RT_SENDER_DOMAINS, "c.test", 1);
	report_free(&r);
}

static void test_deliveries(void **state)
{
	(void)state;
	struct report r;
	report_init(&r, 16);
	feed(&r, T "postern/qmgr[2]: info: " QID "to=<alice@example.test> relay=maildir "
		   "delay=0.01 attempts=1 status=sent (delivered to maildir)");
	feed(&r, T "postern/qmgr[2]: info: " QID "to=<bob@Example.TEST> orig_to=<team@example.test> "
		   "relay=maildir delay=75.20 attempts=2 status=sent (delivered to maildir)");
	feed(&r, T "postern/qmgr[2]: info: " QID "to=<x@remote.test> relay=none delay=3.00 "
		   "attempts=1 status=deferred (4.4.1 remote delivery not available yet)");
	feed(&r, T "postern/qmgr[2]: info: " QID "to=<nosuchuser@example.test> "
		   "orig_to=<broken@example.test> relay=maildir delay=0.02 attempts=1 "
		   "status=bounced (5.1.1 mailbox unknown)");
	feed(&r, T "postern/qmgr[2]: info: " QID "to=<a@b> relay=x delay=1 attempts=1 "
		   "status=teleported (somewhere)");
	feed(&r, T "postern/qmgr[2]: info: " QID "bounce 661857C7C7FE4004CEF sent to <carol@x>");
	feed(&r, T "postern/qmgr[2]: info: " QID "bounce dropped: sender is <> (a bounce is never "
		   "bounced), 1 failed recipient");
	feed(&r, T "postern/qmgr[2]: info: " QID "sender is <>: double bounce "
		   "661857C7C7FE4004CE0 sent to <postmaster@example.test>");
	feed(&r, T "postern/qmgr[2]: warning: " QID "double bounce dropped: it could not be "
		   "delivered to the postmaster");
	feed(&r, T "postern/qmgr[2]: info: " QID "success report 661857C7C7FE4004CE1 sent to "
		   "<carol@x>");
	feed(&r, T "postern/qmgr[2]: info: " QID "relay report 661857C7C7FE4004CE3 sent to "
		   "<carol@x>");
	feed(&r, T "postern/qmgr[2]: info: " QID "delay warning 661857C7C7FE4004CE2 sent to "
		   "<carol@x>");
	feed(&r, T "postern/qmgr[2]: info: " QID "no bounce for 2 failed recipients: NOTIFY did "
		   "not ask for one");
	feed(&r, T "postern/qmgr[2]: info: " QID "no delay warning: NOTIFY did not ask for one");
	feed(&r, T "postern/qmgr[2]: info: " QID "retrying now, as a command asked");
	feed(&r, T "postern/qmgr[2]: info: " QID "removed");
	feed(&r, T "postern/qmgr[2]: info: " QID "removed stale incoming file (receiver died)");
	feed(&r, T "postern/qmgr[2]: info: " QID "released into the queue");
	assert_int_equal(r.c.delivered, 2);
	assert_int_equal(r.c.deferred, 1);
	assert_int_equal(r.c.bounced, 1);
	assert_int_equal(r.c.bounce_notices, 1);
	assert_int_equal(r.c.bounces_dropped, 2);
	assert_int_equal(r.c.double_bounces, 1);
	assert_int_equal(r.c.success_notices, 2); /* one delivered here, one relayed */
	assert_int_equal(r.c.delay_warnings, 1);
	assert_int_equal(r.c.removed, 1);
	assert_int_equal(r.c.released, 1);
	assert_int_equal(r.delay_hist[0], 1); /* < 0.1 s */
	assert_int_equal(r.delay_hist[4], 1); /* 1 - 10 min */
	ASSERT_COUNT(&r, RT_RECIPIENTS, "bob@Example.TEST", 1);
	ASSERT_COUNT(&r, RT_RECIPIENT_DOMAINS, "example.test", 2);
	ASSERT_COUNT(&r, RT_RELAYS, "maildir", 2);
	ASSERT_COUNT(&r, RT_DEFER_REASONS, "4.4.1 remote delivery not available yet", 1);
	ASSERT_COUNT(&r, RT_BOUNCE_REASONS, "5.1.1 mailbox unknown", 1);
	/* an outcome nobody taught the report is not understood */
	assert_int_equal(r.lines.not_understood, 1);
	assert_string_equal(r.samples[0].where, "test.log:5");
	report_free(&r);
}

static void test_scan_verdicts(void **state)
{
	(void)state;
	struct report r;
	report_init(&r, 16);
	feed(&r, T "postern/smtp[1]: info: " QID "scan action=accept hits=spam:score=0.0 "
		   "headers=3 delay=0.004 mime=0.000");
	feed(&r, T "postern/smtp[1]: info: " QID "scan action=reject reason=virus status=5.7.0 "
		   "hits=virus:Postern.Test.EICAR.UNOFFICIAL headers=0 delay=0.001");
	feed(&r, T "postern/smtp[1]: info: " QID "scan action=quarantine reason=spam "
		   "hits=spam:score=6.5,spam:T_CLICK,spam:T_PILLS headers=4 delay=0.001");
	feed(&r, T "postern/smtp[1]: info: " QID "scan action=reject reason=spam status=5.7.1 "
		   "hits=spam:score=-2.5,spam:T_GTUBE,rule:block_exe headers=0 delay=0.001");
	feed(&r, T "postern/smtp[1]: warning: " QID "scan action=tempfail reason=scan_timeout "
		   "delay=30.000 (the scan did not finish)");
	feed(&r, T "postern/smtp[1]: info: " QID "scan action=accept hits=- headers=0 delay=0.1");
	assert_int_equal(r.c.scanned, 6);
	assert_int_equal(r.c.spam_scored, 3);
	assert_int_equal(r.score_hist[0], 1);  /* < 0 */
	assert_int_equal(r.score_hist[1], 1);  /* 0 - 1 */
	assert_int_equal(r.score_hist[7], 1);  /* 6 - 7 */
	ASSERT_COUNT(&r, RT_SCAN_ACTIONS, "accept", 2);
	ASSERT_COUNT(&r, RT_SCAN_ACTIONS, "reject", 2);
	ASSERT_COUNT(&r, RT_SCAN_ACTIONS, "tempfail", 1);
	ASSERT_COUNT(&r, RT_VIRUSES, "Postern.Test.EICAR.UNOFFICIAL", 1);
	ASSERT_COUNT(&r, RT_REJ_VIRUS, "Postern.Test.EICAR.UNOFFICIAL", 1);
	ASSERT_COUNT(&r, RT_SPAM_RULES, "spam:T_PILLS", 1);
	ASSERT_COUNT(&r, RT_REJ_RULE, "spam:T_PILLS", 0);
	ASSERT_COUNT(&r, RT_REJ_RULE, "spam:T_GTUBE", 1);
	ASSERT_COUNT(&r, RT_REJ_RULE, "rule:block_exe", 1);
	report_free(&r);
}

static void test_dns_lists_and_greylisting(void **state)
{
	(void)state;
	struct report r;
	report_init(&r, 16);
	feed(&r, T "postern/smtp[1]: info: client=192.0.2.5 dnsbl: 192.0.2.5 listed score=2 "
		   "threshold=1 action=reject: bl.test(127.0.0.2)*1 other.test(127.0.0.4)*1");
	feed(&r, T "postern/smtp[1]: info: " QID "client=192.0.2.5 dnsbl: 192.0.2.5 listed "
		   "score=1 threshold=1 action=warn: bl.test(127.0.0.2)*1");
	feed(&r, T "postern/smtp[1]: info: client=192.0.2.6 dnsbl: 192.0.2.6 score=0 "
		   "threshold=1: bl.test(no answer) (passed)");
	feed(&r, T "postern/smtp[1]: info: " QID "client=192.0.2.5 rhsbl: spam.test listed "
		   "score=1 threshold=1 action=tempfail: dbl.test(127.0.1.2)*1");
	feed(&r, T "postern/smtp[1]: info: " QID "greylist: client=192.0.2.5 network=192.0.2.0/24 "
		   "from=<a@b> to=<c@d> new, try again in 60s");
	assert_int_equal(r.c.dns_listed, 3);
	assert_int_equal(r.c.greylisted, 1);
	ASSERT_COUNT(&r, RT_REJ_DNS_LIST, "bl.test", 1);
	ASSERT_COUNT(&r, RT_REJ_DNS_LIST, "other.test", 1);
	ASSERT_COUNT(&r, RT_REJ_DNS_LIST, "dbl.test", 1);
	assert_int_equal(r.lines.not_understood, 0);
	report_free(&r);
}

/* What the restriction lists log without refusing, and errors about a
 * message, are known: never "not understood". */
static void test_warnings_holds_and_errors(void **state)
{
	(void)state;
	struct report r;
	report_init(&r, 16);
	feed(&r, T "postern/smtp[1]: info: " QID "reject_warning: RCPT client=192.0.2.1 "
		   "helo=<h> from=<a@b> to=<c@d> code=554 5.7.1 restriction=x list=y: text");
	feed(&r, T "postern/smtp[1]: warning: " QID "warn: RCPT client=192.0.2.1 helo=<h> "
		   "restriction=check_client_access list=client_restrictions: look");
	feed(&r, T "postern/smtp[1]: info: " QID "hold_warning: DATA client=192.0.2.1 helo=<h>");
	feed(&r, T "postern/smtp[1]: info: " QID "hold: DATA client=192.0.2.1 helo=<h> "
		   "restriction=check_sender_access list=sender_restrictions: review");
	feed(&r, T "postern/qmgr[2]: error: " QID "corrupt queue file moved to corrupt/: bad");
	feed(&r, T "postern/master[3]: fatal: cannot bind 127.0.0.1:25");
	assert_int_equal(r.c.warnings, 3);
	assert_int_equal(r.c.errors, 2);
	assert_int_equal(r.lines.events, 4);
	assert_int_equal(r.lines.daemon, 2);
	assert_int_equal(r.lines.not_understood, 0);
	report_free(&r);
}

static void test_too_long_and_control_bytes(void **state)
{
	(void)state;
	struct report r;
	report_init(&r, 16);
	size_t n = REPORT_LINE_MAX + 10;
	char *big = malloc(n);
	memset(big, 'a', n);
	report_feed_line(&r, big, n, "big.log", 1);
	report_feed_too_long(&r, big, 100, "big.log", 2);
	free(big);
	feed(&r, T "postern/smtp[1]: info: " QID "\x01\x02\x7f\xff");
	assert_int_equal(r.lines.total, 3);
	assert_int_equal(r.lines.too_long, 2);
	assert_int_equal(r.lines.not_understood, 3);
	assert_int_equal(strlen(r.samples[0].text), 200);
	assert_non_null(strstr(r.samples[2].text, "???"));
	report_free(&r);
}

/* A sender address may hold any UTF-8 (SMTPUTF8), U+009B included: a
 * terminal may take that C1 control for CSI, so the text report must not
 * pass C1 controls through (nor the HTML one). */
static void test_text_output_has_no_c1_controls(void **state)
{
	(void)state;
	struct report r;
	report_init(&r, 16);
	feed(&r, T "postern/smtp[1]: info: " QID "accepted from=<a\xc2\x9b" "2J@x.test> size=1 "
		 "nrcpt=1 protocol=UTF8SMTP client=192.0.2.1");
	feed(&r, "not postern \xc2\x9b" "2J \xc3\xa9");
	buf_t out = BUF_INIT;
	report_write_text(&r, 10, &out);
	assert_null(memmem(out.data, out.len, "\xc2\x9b", 2));
	assert_non_null(memmem(out.data, out.len, "a?2J@x.test", 11));
	assert_non_null(memmem(out.data, out.len, "\xc3\xa9", 2)); /* other UTF-8 stays */
	buf_reset(&out);
	report_write_html(&r, 10, &out);
	assert_null(memmem(out.data, out.len, "\xc2\x9b", 2));
	buf_free(&out);
	report_free(&r);
}

/* Traffic per day: in calendar order, bounded to REPORT_DAYS_MAX days. */
static void test_days(void **state)
{
	(void)state;
	struct report *r = malloc(sizeof(*r));
	report_init(r, 16);
	feed(r, "2026-12-01T01:00:00.000Z postern/qmgr[2]: info: " QID "removed");
	feed(r, "2026-12-01T01:00:00.000Z postern/qmgr[2]: info: " QID "to=<a@b> relay=maildir "
		"delay=1 attempts=1 status=sent (ok)");
	feed(r, "2026-11-30T23:00:00.000Z postern/qmgr[2]: info: " QID "to=<a@b> relay=maildir "
		"delay=1 attempts=1 status=sent (ok)");
	feed(r, "Dec  2 10:00:00 mx postern/qmgr[2]: " QID "to=<a@b> relay=maildir delay=1 "
		"attempts=1 status=bounced (5.1.1 no)");
	feed(r, "Nov 29 10:00:00 mx postern/qmgr[2]: " QID "to=<a@b> relay=maildir delay=1 "
		"attempts=1 status=sent (ok)");
	assert_int_equal(r->day_count, 4);
	assert_int_equal(r->hourly[10][RH_DELIVERED], 1);
	assert_int_equal(r->hourly[10][RH_BOUNCED], 1);
	buf_t out = BUF_INIT;
	report_write_json(r, 10, &out);
	const char *daily = strstr(buf_cstr(&out), "\"daily\":[");
	assert_non_null(daily);
	/* ISO days first, in order; then syslog days by month and day */
	const char *a = strstr(daily, "2026-11-30"), *b = strstr(daily, "2026-12-01");
	const char *c = strstr(daily, "Nov 29"), *d = strstr(daily, "Dec  2");
	assert_true(a != NULL && b != NULL && c != NULL && d != NULL);
	assert_true(a < b && b < c && c < d);
	buf_reset(&out);
	report_write_html(r, 10, &out);
	assert_non_null(strstr(buf_cstr(&out), "<title>Traffic per day</title>"));
	buf_free(&out);
	report_free(r);
	/* past REPORT_DAYS_MAX days, events count in the totals only */
	report_init(r, 16);
	for (int i = 0; i < REPORT_DAYS_MAX + 10; i++) {
		char line[256];
		snprintf(line, sizeof(line), "%04d-01-01T10:00:00.000Z postern/qmgr[2]: info: "
			 QID "to=<a@b> relay=maildir delay=1 attempts=1 status=sent (ok)", 1000 + i);
		feed(r, line);
	}
	assert_int_equal(r->day_count, REPORT_DAYS_MAX);
	assert_int_equal(r->days_dropped, 10);
	assert_int_equal(r->c.delivered, REPORT_DAYS_MAX + 10);
	report_free(r);
	free(r);
}

static void test_top_table_is_exact_below_capacity(void **state)
{
	(void)state;
	struct report_top t;
	report_top_init(&t, 8);
	for (int i = 0; i < 100; i++) {
		char key[16];
		snprintf(key, sizeof(key), "k%d", i % 8);
		report_top_add(&t, key, strlen(key), (uint64_t)(i % 8) + 1);
	}
	const struct report_top_item *items[8];
	size_t n = report_top_sorted(&t, items, 8);
	assert_int_equal(n, 8);
	assert_true(report_top_exact(&t));
	assert_string_equal(items[0]->key, "k7");
	assert_int_equal(items[0]->count, 12 * 8); /* k7 seen 12 times, +8 each */
	assert_int_equal(items[7]->count, 13 * 1);     /* k0 seen 13 times, +1 each */
	report_top_free(&t);
}

/* A million distinct keys never hold more than the capacity, and a key
 * heavier than total/capacity survives with a count no lower than true. */
static void test_top_table_is_bounded_and_keeps_heavy_hitters(void **state)
{
	(void)state;
	struct report_top t;
	report_top_init(&t, 50);
	uint64_t heavy = 0;
	for (int i = 0; i < 1000000; i++) {
		char key[32];
		if (i % 10 == 0) {
			report_top_add(&t, "heavy@hitter.test", 17, 1);
			heavy++;
		} else {
			int len = snprintf(key, sizeof(key), "u%d@x.test", i);
			report_top_add(&t, key, (size_t)len, 1);
		}
	}
	assert_int_equal(t.used, 50);
	assert_false(report_top_exact(&t));
	const struct report_top_item *items[1];
	assert_int_equal(report_top_sorted(&t, items, 1), 1);
	assert_string_equal(items[0]->key, "heavy@hitter.test");
	assert_true(items[0]->count >= heavy);
	assert_true(items[0]->count - items[0]->error <= heavy);
	/* keys are cut at REPORT_TOP_KEY_MAX */
	char longkey[1000];
	memset(longkey, 'z', sizeof(longkey));
	report_top_add(&t, longkey, sizeof(longkey), 1000000);
	assert_int_equal(report_top_sorted(&t, items, 1), 1);
	assert_int_equal(strlen(items[0]->key), REPORT_TOP_KEY_MAX);
	report_top_free(&t);
}

static void test_json_has_the_promised_keys(void **state)
{
	(void)state;
	struct report r;
	report_init(&r, 16);
	feed(&r, T "postern/smtp[1]: info: " QID "accepted from=<s@x> size=1 nrcpt=1 protocol=SMTP "
		   "delay=0 flow=0 commit=0 disposition=quarantine");
	buf_t out = BUF_INIT;
	report_write_json(&r, 10, &out);
	const char *j = buf_cstr(&out);
	assert_true(strncmp(j, "{\"received\":1,\"delivered\":0,\"deferred\":0,\"bounced\":0,"
			       "\"rejected\":0,\"quarantined\":1,", 80) == 0);
	buf_reset(&out);
	report_write_html(&r, 10, &out);
	assert_non_null(strstr(buf_cstr(&out), "<tr id=\"count-quarantined\">"));
	assert_null(strstr(buf_cstr(&out), "<script"));
	buf_free(&out);
	report_free(&r);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_header_forms),
		cmocka_unit_test(test_received_and_dispositions),
		cmocka_unit_test(test_rejections_of_every_stage),
		cmocka_unit_test(test_fields_inside_addresses_are_not_fields),
		cmocka_unit_test(test_deliveries),
		cmocka_unit_test(test_scan_verdicts),
		cmocka_unit_test(test_dns_lists_and_greylisting),
		cmocka_unit_test(test_warnings_holds_and_errors),
		cmocka_unit_test(test_too_long_and_control_bytes),
		cmocka_unit_test(test_text_output_has_no_c1_controls),
		cmocka_unit_test(test_days),
		cmocka_unit_test(test_top_table_is_exact_below_capacity),
		cmocka_unit_test(test_top_table_is_bounded_and_keeps_heavy_hitters),
		cmocka_unit_test(test_json_has_the_promised_keys),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

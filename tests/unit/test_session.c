/*
 * test_session.c - the waiting session, in process: a real SMTP session on
 * one end of a socketpair, a test client on the other, and a fake check
 * that answers "pending" and finishes only when the test says so. Checks
 * that pipelined commands wait for the verdict, that a client leaving
 * while a check is pending releases it (run under ASan by check-asan),
 * that the deadline applies the default action, and the reply of every
 * verdict, at every stage that has one. The behaviour checks: early
 * talkers (with and without greet_pause), unauthorised pipelining, and
 * error replies held back longer and longer until error_limit.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "testutil.h"

#include "lib/buf.h"
#include "lib/config.h"
#include "lib/safeio.h"
#include "lib/xalloc.h"
#include "mail/recipients.h"
#include "queue/notice.h"
#include "queue/notifier.h"
#include "queue/queue_file.h"
#include "smtp/session.h"

/* A check that always waits, until fake_finish(). */
struct fake_check {
	struct policy_call *call;  /* pending, or NULL */
	unsigned asked, cancelled;
};

static enum policy_verdict fake_run(struct policy_call *call, void *arg)
{
	struct fake_check *f = arg;
	f->asked++;
	f->call = call;
	return POLICY_PENDING;
}

static void fake_cancel(struct policy_call *call, void *arg)
{
	struct fake_check *f = arg;
	(void)call;
	f->cancelled++;
	f->call = NULL;
}

struct fixture {
	char *dir;
	struct config cfg;
	struct recipient_tables *tables;
	struct event_base *base;
	struct smtp_server srv;
	struct fake_check fake;
	struct notice_template *tpl; /* when notices are on */
	int notify[2];    /* the queue manager's notify pipe */
	int client;       /* the test's end of the socketpair */
	bool client_eof;  /* the server closed its side */
	buf_t received;   /* what the client has read and not yet taken */
};

static struct fixture fx;

static void write_text(const char *path, const char *text)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	assert_true(fd >= 0);
	assert_int_equal(safeio_write_all(fd, text, strlen(text)), 0);
	close(fd);
}

/* A server whose stage `stage` has the fake check; extra config lines. */
static void start(enum policy_stage stage, const char *extra_config)
{
	char tmpl[] = "/tmp/postern-test-session-XXXXXX";
	memset(&fx, 0, sizeof(fx));
	fx.dir = xstrdup(mkdtemp(tmpl));
	char *conf = safeio_path_join(fx.dir, "postern.conf");
	char *users = safeio_path_join(fx.dir, "users");
	buf_t text = BUF_INIT;
	buf_printf(&text, "hostname = mx.example.test\nlocal_domains = example.test\n"
		   "spool_dir = spool\nmail_root = mail\nusers_file = users\n"
		   "mynetworks = 127.0.0.0/8\n"
		   /* These tests pipeline from the first line: that is not
		    * what they are about (test_unauth_pipelining_* are). */
		   "%s%s", strstr(extra_config, "reject_unauth_pipelining") != NULL ? ""
			   : "reject_unauth_pipelining = no\n", extra_config);
	write_text(conf, buf_cstr(&text));
	write_text(users, "alice@example.test:{PLAIN}x::::::\n");
	assert_int_equal(config_load(conf, &fx.cfg, stderr), 0);
	struct recipients_owner owner = { "the test user", getuid(), getgid() };
	fx.tables = recipients_load(fx.cfg.users_file, "", &owner, stderr);
	assert_non_null(fx.tables);
	char *err = NULL;
	assert_int_equal(queue_dirs_create(fx.cfg.spool_dir, &err), 0);
	fx.base = event_base_new();
	fx.srv.base = fx.base;
	fx.srv.cfg = &fx.cfg;
	fx.srv.notify_fd = -1;
	policy_env_init(&fx.srv.policy, &fx.cfg, fx.tables, fx.base);
	struct policy_check fake = { "fake", fake_run, fake_cancel, &fx.fake };
	policy_env_add(&fx.srv.policy, stage, &fake);
	fx.srv.committer = queue_committer_new(fx.base, 1);
	assert_int_equal(pipe(fx.notify), 0);
	fx.srv.notify_fd = fx.notify[1];
	fx.tpl = notice_template_load(fx.cfg.notify_template, stderr);
	assert_non_null(fx.tpl);
	fx.srv.notifier = notifier_new(fx.base, &fx.cfg, fx.tpl, fx.srv.committer, fx.notify[1]);

	/* A TCP connection over loopback, so that a client can reset it. */
	struct sockaddr_in addr = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(0x7f000001) };
	socklen_t alen = sizeof(addr);
	int lfd = socket(AF_INET, SOCK_STREAM, 0);
	assert_int_equal(bind(lfd, (struct sockaddr *)&addr, sizeof(addr)), 0);
	assert_int_equal(listen(lfd, 1), 0);
	assert_int_equal(getsockname(lfd, (struct sockaddr *)&addr, &alen), 0);
	fx.client = socket(AF_INET, SOCK_STREAM, 0);
	assert_int_equal(connect(fx.client, (struct sockaddr *)&addr, sizeof(addr)), 0);
	int server_fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK);
	assert_true(server_fd >= 0);
	close(lfd);
	fcntl(fx.client, F_SETFL, O_NONBLOCK);
	struct sockaddr_in peer = { .sin_family = AF_INET, .sin_port = htons(40000),
				    .sin_addr.s_addr = htonl(0xC0000201) }; /* 192.0.2.1 */
	smtp_session_start(&fx.srv, server_fd, (struct sockaddr *)&peer, sizeof(peer));
	buf_free(&text);
	free(conf);
	free(users);
}

static void stop(void)
{
	if (fx.client >= 0)
		close(fx.client);
	smtp_server_close_all(&fx.srv);
	event_base_loop(fx.base, EVLOOP_NONBLOCK);
	queue_committer_free(&fx.srv.committer);
	notifier_free(&fx.srv.notifier);
	notice_template_free(&fx.tpl);
	close(fx.notify[0]);
	close(fx.notify[1]);
	event_base_free(fx.base);
	recipients_free(&fx.tables);
	config_free(&fx.cfg);
	buf_free(&fx.received);
	testutil_rmtree(fx.dir);
	free(fx.dir);
}

/* Run the server's loop and collect what the client receives, for ms. */
static void pump(int ms)
{
	struct timespec start, now;
	clock_gettime(CLOCK_MONOTONIC, &start);
	for (;;) {
		event_base_loop(fx.base, EVLOOP_NONBLOCK);
		char chunk[4096];
		ssize_t n;
		while (fx.client >= 0 && (n = read(fx.client, chunk, sizeof(chunk))) > 0)
			buf_append(&fx.received, chunk, (size_t)n);
		if (fx.client >= 0 && n == 0)
			fx.client_eof = true;
		clock_gettime(CLOCK_MONOTONIC, &now);
		long elapsed = (now.tv_sec - start.tv_sec) * 1000 +
			       (now.tv_nsec - start.tv_nsec) / 1000000;
		if (elapsed >= ms)
			return;
		struct pollfd p = { fx.client, POLLIN, 0 };
		poll(&p, fx.client >= 0 ? 1 : 0, 5);
	}
}

static size_t count_lines(void)
{
	size_t n = 0;
	for (size_t i = 0; i < fx.received.len; i++)
		n += fx.received.data[i] == '\n';
	return n;
}

/* Pump until n reply lines have arrived (or 5 s); return them, taken. */
static char *take_lines(size_t n)
{
	for (int i = 0; i < 500 && count_lines() < n; i++)
		pump(10);
	if (count_lines() < n)
		fail_msg("expected %zu reply lines, got: %s", n, buf_cstr(&fx.received));
	size_t end = 0, seen = 0;
	while (seen < n)
		seen += fx.received.data[end++] == '\n';
	char *out = xstrndup(fx.received.data, end);
	memmove(fx.received.data, fx.received.data + end, fx.received.len - end);
	fx.received.len -= end;
	return out;
}

static void expect_lines(size_t n, const char *prefix)
{
	char *got = take_lines(n);
	if (strncmp(got, prefix, strlen(prefix)) != 0)
		fail_msg("expected \"%s...\", got \"%s\"", prefix, got);
	free(got);
}

static void say(const char *text)
{
	assert_int_equal(safeio_write_all(fx.client, text, strlen(text)), 0);
}

static void finish(enum policy_verdict v, int code, const char *status, const char *text)
{
	assert_non_null(fx.fake.call);
	struct policy_call *call = fx.fake.call;
	fx.fake.call = NULL;
	if (code != 0)
		policy_call_set(call, code, status, "fake", "%s", text);
	policy_call_finish(call, v);
}

static size_t files_in(const char *folder)
{
	char *path = safeio_path_join(fx.cfg.spool_dir, folder);
	size_t n = 0;
	DIR *d = opendir(path);
	struct dirent *de;
	while (d != NULL && (de = readdir(d)) != NULL)
		n += de->d_name[0] != '.';
	if (d != NULL)
		closedir(d);
	free(path);
	return n;
}

/* ---- the tests -------------------------------------------------------------- */

static void test_pipelined_commands_wait_for_the_verdict(void **state)
{
	(void)state;
	start(POLICY_RCPT, "");
	expect_lines(1, "220 ");
	say("EHLO client.test\r\nMAIL FROM:<a@remote.test>\r\n"
	    "RCPT TO:<alice@example.test>\r\nNOOP\r\nRSET\r\n");
	char *got = take_lines(9); /* EHLO (8 lines) and MAIL */
	assert_non_null(strstr(got, "250 2.1.0 Ok"));
	free(got);
	pump(200);
	assert_int_equal(fx.fake.asked, 1);
	assert_int_equal(fx.received.len, 0); /* RCPT pending: NOOP and RSET wait */
	finish(POLICY_DUNNO, 0, "", "");
	expect_lines(1, "250 2.1.5 Ok");
	expect_lines(1, "250 2.0.0 Ok"); /* NOOP */
	expect_lines(1, "250 2.0.0 Ok"); /* RSET */
	stop();
}

static void test_client_leaving_while_pending_releases_the_check(void **state)
{
	(void)state;
	start(POLICY_RCPT, "");
	expect_lines(1, "220 ");
	say("HELO client.test\r\nMAIL FROM:<a@remote.test>\r\nRCPT TO:<alice@example.test>\r\n");
	expect_lines(2, "250 mx.example.test");
	pump(100);
	assert_non_null(fx.fake.call);
	/* The client goes away with a reset: the session ends, the pending
	 * check is cancelled, and nothing touches the session afterwards. */
	struct linger lg = { 1, 0 };
	setsockopt(fx.client, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
	close(fx.client);
	fx.client = -1;
	for (int i = 0; i < 100 && fx.srv.session_count > 0; i++)
		pump(10);
	assert_int_equal(fx.srv.session_count, 0);
	assert_int_equal(fx.fake.cancelled, 1);
	assert_null(fx.fake.call);
	stop();
}

static void test_half_closed_client_still_gets_its_replies(void **state)
{
	(void)state;
	start(POLICY_RCPT, "");
	expect_lines(1, "220 ");
	say("HELO client.test\r\nMAIL FROM:<a@remote.test>\r\n"
	    "RCPT TO:<alice@example.test>\r\nQUIT\r\n");
	shutdown(fx.client, SHUT_WR);
	expect_lines(2, "250 mx.example.test");
	pump(100);
	finish(POLICY_REJECT, 550, "5.7.1", "not this one");
	expect_lines(1, "550 5.7.1 not this one");
	expect_lines(1, "221 2.0.0 Bye");
	stop();
}

static void test_deadline_applies_tempfail(void **state)
{
	(void)state;
	start(POLICY_RCPT, "policy_timeout = 1s\n");
	expect_lines(1, "220 ");
	say("HELO client.test\r\nMAIL FROM:<a@remote.test>\r\nRCPT TO:<alice@example.test>\r\n");
	expect_lines(2, "250 mx.example.test");
	pump(700);
	assert_int_equal(fx.received.len, 0);
	expect_lines(1, "451 4.7.1 ");
	assert_int_equal(fx.fake.cancelled, 1);
	stop();
}

static void test_deadline_applies_accept(void **state)
{
	(void)state;
	start(POLICY_RCPT, "policy_timeout = 1s\npolicy_default_action = accept\n");
	expect_lines(1, "220 ");
	say("HELO client.test\r\nMAIL FROM:<a@remote.test>\r\nRCPT TO:<alice@example.test>\r\n");
	expect_lines(2, "250 mx.example.test");
	expect_lines(1, "250 2.1.5 Ok");
	stop();
}

static void test_banner_waits_for_the_connect_verdict(void **state)
{
	(void)state;
	start(POLICY_CONNECT, "early_talker_action = log\n");
	say("EHLO early.talker\r\n"); /* before the banner */
	pump(200);
	assert_int_equal(fx.received.len, 0);
	finish(POLICY_DUNNO, 0, "", "");
	expect_lines(1, "220 mx.example.test ESMTP");
	expect_lines(8, "250-mx.example.test"); /* the early EHLO, answered after */
	stop();
}

static void test_connect_refused(void **state)
{
	(void)state;
	start(POLICY_CONNECT, "");
	pump(50);
	finish(POLICY_REJECT, 554, "5.7.1", "go away");
	expect_lines(1, "554 5.7.1 go away");
	for (int i = 0; i < 100 && !fx.client_eof; i++)
		pump(10);
	assert_true(fx.client_eof);
	close(fx.client); /* the server was waiting for this to let go */
	fx.client = -1;
	for (int i = 0; i < 100 && fx.srv.session_count > 0; i++)
		pump(10);
	assert_int_equal(fx.srv.session_count, 0);
	stop();
}

static uint64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void wait_client_eof(void)
{
	for (int i = 0; i < 300 && !fx.client_eof; i++)
		pump(10);
	assert_true(fx.client_eof);
}

static void test_early_talker_is_refused(void **state)
{
	(void)state;
	start(POLICY_CONNECT, ""); /* the connect check waits: the client talks */
	say("EHLO early.talker\r\n");
	expect_lines(1, "554 5.5.1 mx.example.test Error: you talked before the greeting");
	assert_int_equal(fx.fake.cancelled, 1); /* the pending check let go */
	wait_client_eof();
	stop();
}

static void test_greet_pause_holds_the_banner(void **state)
{
	(void)state;
	start(POLICY_HELO, "greet_pause = 1s\n");
	uint64_t t0 = now_ms();
	pump(500);
	assert_int_equal(fx.received.len, 0);
	expect_lines(1, "220 mx.example.test ESMTP");
	assert_true(now_ms() - t0 >= 950);
	stop();
}

static void test_greet_pause_catches_an_early_talker(void **state)
{
	(void)state;
	start(POLICY_HELO, "greet_pause = 3s\n");
	uint64_t t0 = now_ms();
	pump(200);
	say("HELO early.talker\r\n");
	expect_lines(1, "554 5.5.1 ");
	assert_true(now_ms() - t0 < 2500); /* at once, not after the pause */
	wait_client_eof();
	stop();
}

static void test_early_talker_logged_only(void **state)
{
	(void)state;
	start(POLICY_HELO, "greet_pause = 1s\nearly_talker_action = log\n");
	say("NOOP\r\n");
	expect_lines(1, "220 mx.example.test ESMTP");
	expect_lines(1, "250 2.0.0 Ok");
	stop();
}

static void test_unauth_pipelining_with_ehlo(void **state)
{
	(void)state;
	start(POLICY_DATA, "reject_unauth_pipelining = yes\n");
	expect_lines(1, "220 ");
	say("EHLO client.test\r\nMAIL FROM:<a@remote.test>\r\n"); /* before the EHLO reply */
	expect_lines(8, "250-mx.example.test");
	expect_lines(1, "503 5.5.0 Error: improper use of SMTP command pipelining");
	wait_client_eof();
	stop();
}

static void test_unauth_pipelining_after_helo_lets_quit_through(void **state)
{
	(void)state;
	start(POLICY_DATA, "reject_unauth_pipelining = yes\n");
	expect_lines(1, "220 ");
	say("HELO client.test\r\nQUIT\r\n");
	expect_lines(1, "250 mx.example.test");
	expect_lines(1, "221 2.0.0 Bye");
	stop();
}

static void test_pipelining_after_the_ehlo_reply(void **state)
{
	(void)state;
	start(POLICY_DATA, "reject_unauth_pipelining = yes\n");
	expect_lines(1, "220 ");
	say("EHLO client.test\r\n");
	expect_lines(8, "250-mx.example.test");
	say("MAIL FROM:<a@remote.test>\r\nRCPT TO:<alice@example.test>\r\nNOOP\r\n");
	expect_lines(1, "250 2.1.0 Ok");
	expect_lines(1, "250 2.1.5 Ok");
	expect_lines(1, "250 2.0.0 Ok");
	stop();
}

/* Send line, return how long its reply took, in ms. */
static uint64_t timed(const char *line, const char *expect)
{
	uint64_t t0 = now_ms();
	say(line);
	expect_lines(1, expect);
	return now_ms() - t0;
}

static void test_error_delays_grow_then_421(void **state)
{
	(void)state;
	start(POLICY_DATA, "soft_error_limit = 1\nerror_delay = 1s\nerror_limit = 4\n");
	expect_lines(1, "220 ");
	say("EHLO client.test\r\n");
	expect_lines(8, "250-mx.example.test");
	assert_true(timed("FOO\r\n", "500 5.5.2") < 500);        /* error 1: at once */
	uint64_t t = timed("FOO\r\nNOOP\r\n", "500 5.5.2"); /* error 2: 1 s */
	assert_true(t >= 950 && t < 1800);
	expect_lines(1, "250 2.0.0 Ok"); /* the NOOP waited behind it */
	t = timed("FOO\r\n", "500 5.5.2");                       /* error 3: 2 s */
	assert_true(t >= 1950 && t < 2800);
	t = timed("FOO\r\n", "500 5.5.2");                       /* error 4: the limit */
	assert_true(t < 500);
	expect_lines(1, "421 4.7.0 mx.example.test Error: too many errors");
	wait_client_eof();
	stop();
}

/* A connect refusal marked at_rcpt (a DNS blocklist listing): the banner
 * as usual, the session goes on, every RCPT gets the refusal, nothing
 * is queued. */
static void test_connect_refusal_given_at_rcpt(void **state)
{
	(void)state;
	start(POLICY_CONNECT, "");
	pump(50);
	assert_non_null(fx.fake.call);
	policy_call_reply(fx.fake.call)->at_rcpt = true;
	finish(POLICY_REJECT, 554, "5.7.1", "Client host [192.0.2.1] is listed by bl.test");
	expect_lines(1, "220 mx.example.test ESMTP");
	say("EHLO client.test\r\nMAIL FROM:<a@remote.test>\r\nRCPT TO:<alice@example.test>\r\n"
	    "RCPT TO:<postmaster>\r\nDATA\r\n");
	expect_lines(8, "250-mx.example.test");
	expect_lines(1, "250 2.1.0 Ok");
	expect_lines(1, "554 5.7.1 Client host [192.0.2.1] is listed by bl.test");
	expect_lines(1, "554 5.7.1 Client host [192.0.2.1] is listed by bl.test");
	expect_lines(1, "554 5.5.1 "); /* no valid recipients */
	say("RSET\r\nMAIL FROM:<b@remote.test>\r\nRCPT TO:<alice@example.test>\r\nQUIT\r\n");
	expect_lines(1, "250 2.0.0 Ok");
	expect_lines(1, "250 2.1.0 Ok");
	expect_lines(1, "554 5.7.1 Client host [192.0.2.1] is listed by bl.test");
	expect_lines(1, "221 2.0.0 Bye");
	assert_int_equal(fx.fake.asked, 1);
	assert_int_equal(files_in("queue"), 0);
	stop();
}

/* One message through, the fake check at the end of data answering v. */
static void message_with_verdict(enum policy_verdict v, int code, const char *status,
				 const char *expect)
{
	start(POLICY_END_OF_DATA, "");
	expect_lines(1, "220 ");
	say("HELO client.test\r\nMAIL FROM:<a@remote.test>\r\nRCPT TO:<alice@example.test>\r\n"
	    "DATA\r\n");
	expect_lines(4, "250 mx.example.test");
	say("Subject: verdicts\r\n\r\nbody\r\n.\r\n");
	pump(100);
	assert_non_null(fx.fake.call);
	if (v == POLICY_TAG) {
		strlist_add(&policy_call_reply(fx.fake.call)->headers, "X-Test-Tag: yes");
		strlist_add(&policy_call_reply(fx.fake.call)->remove_headers, "X-Forged");
	}
	finish(v, code, status, "verdict text");
	expect_lines(1, expect);
}

static void test_eod_reject_and_tempfail(void **state)
{
	(void)state;
	message_with_verdict(POLICY_REJECT, 550, "5.7.1", "550 5.7.1 verdict text");
	assert_int_equal(files_in("queue") + files_in("incoming"), 0);
	stop();
	message_with_verdict(POLICY_TEMPFAIL, 451, "4.7.1", "451 4.7.1 verdict text");
	assert_int_equal(files_in("queue") + files_in("incoming"), 0);
	stop();
}

static void test_eod_accept_discard_hold_quarantine(void **state)
{
	(void)state;
	static const struct { enum policy_verdict v; const char *folder; } cases[] = {
		{ POLICY_DUNNO, "queue" }, { POLICY_ACCEPT, "queue" },
		{ POLICY_HOLD, "hold" }, { POLICY_QUARANTINE, "quarantine" },
		{ POLICY_DISCARD, NULL },
	};
	for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
		message_with_verdict(cases[i].v, 0, "", "250 2.0.0 Ok: queued as ");
		size_t total = files_in("queue") + files_in("hold") + files_in("quarantine") +
			       files_in("incoming");
		if (cases[i].folder == NULL)
			assert_int_equal(total, 0); /* discarded: accepted, never kept */
		else if (files_in(cases[i].folder) != 1 || total != 1)
			fail_msg("verdict %s: not exactly one file in %s/",
				 policy_verdict_name(cases[i].v), cases[i].folder);
		stop();
	}
}

static void test_eod_tag_removes_then_adds_header_records(void **state)
{
	(void)state;
	message_with_verdict(POLICY_TAG, 0, "", "250 2.0.0 Ok: queued as ");
	char *dir = safeio_path_join(fx.cfg.spool_dir, "queue");
	DIR *d = opendir(dir);
	struct dirent *de;
	char *path = NULL;
	while ((de = readdir(d)) != NULL)
		if (de->d_name[0] != '.')
			path = safeio_path_join(dir, de->d_name);
	closedir(d);
	assert_non_null(path);
	int fd = open(path, O_RDONLY);
	struct qf_msg m;
	char *err = NULL;
	assert_int_equal(qf_read(fd, &m, &err), 0);
	/* The removal first: it counts the fields as received. */
	assert_int_equal(m.edit_count, 2);
	assert_int_equal(m.edits[0].type, QF_REC_DEL_HEADER);
	assert_int_equal(m.edits[0].where, 0);
	assert_string_equal(m.edits[0].text, "X-Forged");
	assert_int_equal(m.edits[1].type, QF_REC_ADD_HEADER);
	assert_string_equal(m.edits[1].text, "X-Test-Tag: yes");
	qf_msg_free(&m);
	close(fd);
	free(path);
	free(dir);
	stop();
}

/* ---- quarantine notes and the administrator's notices ------------------------ */

/* The fake check's verdict with a reason key and hits, as the scan
 * check gives them (hits: NULL-terminated). */
static void finish_scan(enum policy_verdict v, int code, const char *status,
			const char *reason, const char *text, const char *const *hits)
{
	assert_non_null(fx.fake.call);
	struct policy_call *call = fx.fake.call;
	fx.fake.call = NULL;
	policy_call_set(call, code, status, reason, "%s", text);
	for (size_t i = 0; hits != NULL && hits[i] != NULL; i++)
		strlist_add(&policy_call_reply(call)->hits, hits[i]);
	policy_call_finish(call, v);
}

/* One message from sender in the open session, up to the end of data. */
static void send_message(const char *sender, const char *subject)
{
	buf_t b = BUF_INIT;
	buf_printf(&b, "MAIL FROM:<%s>\r\nRCPT TO:<alice@example.test>\r\nDATA\r\n"
		   "Subject: %s\r\nFrom: <%s>\r\n\r\nbody\r\n.\r\n", sender, subject, sender);
	say(b.data);
	buf_free(&b);
	expect_lines(3, "250 2.1.0");
	for (int i = 0; i < 100 && fx.fake.call == NULL; i++)
		pump(10);
}

/* The only (or the n-th, by name) queue file of folder, read. */
static char *file_in(const char *folder, size_t n)
{
	char *dir = safeio_path_join(fx.cfg.spool_dir, folder);
	DIR *d = opendir(dir);
	struct dirent *de;
	strlist_t names = { NULL, 0 };
	while ((de = readdir(d)) != NULL)
		if (de->d_name[0] != '.')
			strlist_add(&names, de->d_name);
	closedir(d);
	assert_true(n < names.count);
	/* ids sort by time: oldest first */
	for (size_t i = 0; i < names.count; i++)
		for (size_t k = i + 1; k < names.count; k++)
			if (strcmp(names.items[k], names.items[i]) < 0) {
				char *t = names.items[i];
				names.items[i] = names.items[k];
				names.items[k] = t;
			}
	char *path = safeio_path_join(dir, names.items[n]);
	strlist_free(&names);
	free(dir);
	return path;
}

/* Wait until folder holds n files (5 s). */
static void wait_files(const char *folder, size_t n)
{
	for (int i = 0; i < 500 && files_in(folder) < n; i++)
		pump(10);
	if (files_in(folder) != n)
		fail_msg("%zu files in %s/, expected %zu", files_in(folder), folder, n);
}

/* A notice's envelope and content. */
static void read_notice(const char *path, struct qf_msg *m, buf_t *content)
{
	char *err = NULL;
	int fd = open(path, O_RDONLY);
	assert_true(fd >= 0);
	assert_int_equal(qf_read(fd, m, &err), 0);
	char chunk[8192];
	long n;
	for (uint64_t pos = 0; (n = qf_read_content(fd, m, pos, chunk, sizeof(chunk))) > 0;
	     pos += (uint64_t)n)
		buf_append(content, chunk, (size_t)n);
	close(fd);
}

static void assert_contains(const buf_t *b, const char *needle)
{
	if (strstr(buf_cstr(b), needle) == NULL)
		fail_msg("\"%s\" not in:\n%s", needle, buf_cstr(b));
}

static const char *const virus_hits[] = { "virus:Eicar-Test-Signature", "attachment:eicar.com",
					  NULL };

/* A quarantine verdict: the file in quarantine/ says why (q record),
 * and the administrator's notice is queued from <> with the
 * placeholders filled, announced without a flow token. */
static void test_quarantine_note_and_admin_notice(void **state)
{
	(void)state;
	start(POLICY_END_OF_DATA, "notify_admin = postmaster@example.test\n");
	expect_lines(1, "220 ");
	say("HELO client.test\r\n");
	expect_lines(1, "250 ");
	send_message("a@remote.test", "Invoice \x1b[31m March");
	finish_scan(POLICY_QUARANTINE, 0, "", "virus", "virus found: Eicar-Test-Signature",
		    virus_hits);
	expect_lines(1, "250 2.0.0 Ok: queued as ");
	wait_files("queue", 1);

	char *path = file_in("quarantine", 0), *err = NULL;
	int fd = open(path, O_RDONLY);
	struct qf_msg m;
	assert_int_equal(qf_read(fd, &m, &err), 0);
	close(fd);
	assert_int_equal(m.note.verdict, QF_NOTE_QUARANTINE);
	assert_string_equal(m.note.check, "fake");
	assert_string_equal(m.note.reason, "virus");
	assert_string_equal(m.note.text, "virus found: Eicar-Test-Signature");
	assert_int_equal(m.note.hits.count, 2);
	assert_string_equal(m.note.hits.items[1], "attachment:eicar.com");
	char quarantined[QUEUE_ID_LEN + 1];
	memcpy(quarantined, m.id, sizeof(quarantined));
	qf_msg_free(&m);
	free(path);

	buf_t content = BUF_INIT;
	path = file_in("queue", 0);
	read_notice(path, &m, &content);
	assert_string_equal(m.sender, "");
	assert_string_equal(m.protocol, "LOCAL");
	assert_int_equal(m.rcpt_count, 1);
	assert_string_equal(m.rcpts[0].addr, "postmaster@example.test");
	assert_contains(&content, "\nTo: <postmaster@example.test>\n");
	assert_contains(&content, "\nAuto-Submitted: auto-generated\n");
	assert_contains(&content, "\nSubject: [mx.example.test] quarantined: virus found: "
				  "Eicar-Test-Signature\n");
	assert_contains(&content, "  Virus:       Eicar-Test-Signature\n");
	assert_contains(&content, "  Attachment:  eicar.com\n");
	assert_contains(&content, "  Rule:        (none)\n");
	assert_contains(&content, "  Sender:      a@remote.test\n");
	assert_contains(&content, "  Recipients:  alice@example.test\n");
	assert_contains(&content, "  Subject:     Invoice ?[31m March\n"); /* no escape reaches it */
	assert_contains(&content, "  Client:      192.0.2.1 (HELO client.test)\n");
	buf_t want = BUF_INIT;
	buf_printf(&want, "  Queue id:    %s\n", quarantined);
	assert_contains(&content, want.data);
	buf_reset(&want);
	buf_printf(&want, "postern quarantine release %s", quarantined);
	assert_contains(&content, want.data);
	/* announced to the queue manager, owing no flow token */
	unsigned char rec[QF_NOTIFY_LEN * 2];
	char id[QUEUE_ID_LEN + 1];
	unsigned flags;
	assert_int_equal(read(fx.notify[0], rec, sizeof(rec)), (ssize_t)sizeof(rec));
	assert_true(qf_notify_decode(rec, id, &flags)); /* the quarantined message */
	assert_string_equal(id, quarantined);
	assert_true(qf_notify_decode(rec + QF_NOTIFY_LEN, id, &flags)); /* the notice */
	assert_string_equal(id, m.id);
	assert_int_equal(flags, QF_NOTIFY_NO_TOKEN);
	qf_msg_free(&m);
	buf_free(&content);
	buf_free(&want);
	free(path);
	stop();
}

/* Refused for a virus: the notice still names the Subject: (read back
 * from the file before it is removed); a refusal that is not about a
 * virus gets none. */
static void test_virus_refusal_notice(void **state)
{
	(void)state;
	start(POLICY_END_OF_DATA, "notify_admin = postmaster@example.test\n");
	expect_lines(1, "220 ");
	say("HELO client.test\r\n");
	expect_lines(1, "250 ");
	send_message("a@remote.test", "Refused one");
	finish_scan(POLICY_REJECT, 550, "5.7.0", "virus", "virus found: Eicar-Test-Signature",
		    virus_hits);
	expect_lines(1, "550 5.7.0 virus found: Eicar-Test-Signature");
	wait_files("queue", 1);
	assert_int_equal(files_in("incoming"), 0);
	assert_int_equal(files_in("quarantine"), 0);
	buf_t content = BUF_INIT;
	struct qf_msg m;
	char *path = file_in("queue", 0);
	read_notice(path, &m, &content);
	assert_contains(&content, "\nSubject: [mx.example.test] refused: virus found: ");
	assert_contains(&content, "  Subject:     Refused one\n");
	assert_contains(&content, "nothing of it was kept here");
	qf_msg_free(&m);
	buf_free(&content);
	free(path);
	/* a refusal for anything else: no notice */
	send_message("b@remote.test", "Spam");
	finish_scan(POLICY_REJECT, 550, "5.7.1", "content_rule", "rule no_exe", NULL);
	expect_lines(1, "550 5.7.1 rule no_exe");
	pump(200);
	assert_int_equal(files_in("queue"), 1);
	assert_int_equal(files_in("incoming"), 0);
	stop();
}

/* notify_sender = yes: the sender is told of a quarantine by a rule, but
 * never of a virus (its sender is forged), and never <>. */
static void test_sender_notices(void **state)
{
	static const char *const rule_hits[] = { "rule:no_exe", "attachment:a.exe", NULL };
	(void)state;
	start(POLICY_END_OF_DATA, "notify_admin = postmaster@example.test\nnotify_sender = yes\n");
	expect_lines(1, "220 ");
	say("HELO client.test\r\n");
	expect_lines(1, "250 ");
	send_message("a@remote.test", "rule");
	finish_scan(POLICY_QUARANTINE, 0, "", "content_rule", "rule no_exe", rule_hits);
	expect_lines(1, "250 2.0.0");
	wait_files("queue", 1);
	send_message("forged@remote.test", "virus");
	finish_scan(POLICY_QUARANTINE, 0, "", "virus", "virus found: X", virus_hits);
	expect_lines(1, "250 2.0.0");
	wait_files("queue", 2);
	struct qf_msg m;
	buf_t content = BUF_INIT;
	char *path = file_in("queue", 0);
	read_notice(path, &m, &content);
	assert_int_equal(m.rcpt_count, 2);
	assert_string_equal(m.rcpts[0].addr, "postmaster@example.test");
	assert_string_equal(m.rcpts[1].addr, "a@remote.test");
	assert_contains(&content, "  Rule:        no_exe\n");
	qf_msg_free(&m);
	free(path);
	path = file_in("queue", 1);
	read_notice(path, &m, &content);
	assert_int_equal(m.rcpt_count, 1);
	assert_string_equal(m.rcpts[0].addr, "postmaster@example.test");
	qf_msg_free(&m);
	free(path);
	buf_free(&content);
	stop();

	/* no administrator, a virus: nobody at all */
	start(POLICY_END_OF_DATA, "notify_sender = yes\n");
	expect_lines(1, "220 ");
	say("HELO client.test\r\n");
	expect_lines(1, "250 ");
	send_message("forged@remote.test", "virus");
	finish_scan(POLICY_QUARANTINE, 0, "", "virus", "virus found: X", virus_hits);
	expect_lines(1, "250 2.0.0");
	pump(200);
	assert_int_equal(files_in("queue"), 0);
	stop();
}

/* A burst: notify_rate_limit notices, the rest counted in one summary at
 * the end of the window (shortened here to 1 s). */
static void test_notice_rate_bound(void **state)
{
	(void)state;
	start(POLICY_END_OF_DATA, "notify_admin = postmaster@example.test\nnotify_rate_limit = 2\n");
	notifier_set_window(fx.srv.notifier, 1000);
	expect_lines(1, "220 ");
	say("HELO client.test\r\n");
	expect_lines(1, "250 ");
	for (int i = 0; i < 5; i++) {
		send_message("v@remote.test", "burst");
		finish_scan(POLICY_REJECT, 550, "5.7.0", "virus", "virus found: X", virus_hits);
		expect_lines(1, "550 5.7.0");
	}
	wait_files("queue", 2);
	pump(300);
	assert_int_equal(files_in("queue"), 2); /* not one more within the window */
	assert_int_equal(files_in("incoming"), 0);
	wait_files("queue", 3); /* the summary, at the end of the window */
	struct qf_msg m;
	buf_t content = BUF_INIT;
	char *path = file_in("queue", 2);
	read_notice(path, &m, &content);
	assert_string_equal(m.sender, "");
	assert_string_equal(m.rcpts[0].addr, "postmaster@example.test");
	assert_contains(&content, "Subject: [mx.example.test] 3 more notices held back in the "
				  "last minute\n");
	assert_contains(&content, "refused  from <v@remote.test>: virus found: X\n");
	qf_msg_free(&m);
	buf_free(&content);
	free(path);
	/* the next window sends again */
	send_message("v@remote.test", "later");
	finish_scan(POLICY_REJECT, 550, "5.7.0", "virus", "virus found: X", virus_hits);
	expect_lines(1, "550 5.7.0");
	wait_files("queue", 4);
	stop();
}

static void test_every_stage_can_wait(void **state)
{
	(void)state;
	/* HELO, MAIL, DATA wait too; a refusal at DATA ends the transaction. */
	start(POLICY_HELO, "");
	expect_lines(1, "220 ");
	say("HELO client.test\r\nNOOP\r\n");
	pump(100);
	assert_int_equal(fx.received.len, 0);
	finish(POLICY_REJECT, 550, "5.7.1", "bad helo");
	expect_lines(1, "550 5.7.1 bad helo");
	expect_lines(1, "250 2.0.0 Ok");
	stop();

	start(POLICY_MAIL, "");
	expect_lines(1, "220 ");
	say("HELO client.test\r\nMAIL FROM:<a@remote.test>\r\nRCPT TO:<alice@example.test>\r\n");
	expect_lines(1, "250 mx.example.test");
	pump(100);
	finish(POLICY_TEMPFAIL, 451, "4.7.1", "later");
	expect_lines(1, "451 4.7.1 later");
	expect_lines(1, "503 5.5.1"); /* no transaction for the RCPT */
	stop();

	start(POLICY_DATA, "");
	expect_lines(1, "220 ");
	say("HELO client.test\r\nMAIL FROM:<a@remote.test>\r\nRCPT TO:<alice@example.test>\r\n"
	    "DATA\r\n");
	expect_lines(3, "250 mx.example.test");
	pump(100);
	finish(POLICY_REJECT, 554, "5.7.1", "no data");
	expect_lines(1, "554 5.7.1 no data");
	say("RCPT TO:<alice@example.test>\r\n");
	expect_lines(1, "503 5.5.1");
	stop();
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_pipelined_commands_wait_for_the_verdict),
		cmocka_unit_test(test_quarantine_note_and_admin_notice),
		cmocka_unit_test(test_virus_refusal_notice),
		cmocka_unit_test(test_sender_notices),
		cmocka_unit_test(test_notice_rate_bound),
		cmocka_unit_test(test_client_leaving_while_pending_releases_the_check),
		cmocka_unit_test(test_half_closed_client_still_gets_its_replies),
		cmocka_unit_test(test_deadline_applies_tempfail),
		cmocka_unit_test(test_deadline_applies_accept),
		cmocka_unit_test(test_banner_waits_for_the_connect_verdict),
		cmocka_unit_test(test_connect_refused),
		cmocka_unit_test(test_early_talker_is_refused),
		cmocka_unit_test(test_greet_pause_holds_the_banner),
		cmocka_unit_test(test_greet_pause_catches_an_early_talker),
		cmocka_unit_test(test_early_talker_logged_only),
		cmocka_unit_test(test_unauth_pipelining_with_ehlo),
		cmocka_unit_test(test_unauth_pipelining_after_helo_lets_quit_through),
		cmocka_unit_test(test_pipelining_after_the_ehlo_reply),
		cmocka_unit_test(test_error_delays_grow_then_421),
		cmocka_unit_test(test_connect_refusal_given_at_rcpt),
		cmocka_unit_test(test_eod_reject_and_tempfail),
		cmocka_unit_test(test_eod_accept_discard_hold_quarantine),
		cmocka_unit_test(test_eod_tag_removes_then_adds_header_records),
		cmocka_unit_test(test_every_stage_can_wait),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
